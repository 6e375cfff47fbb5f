"""fexport/errors.py: one base class, exit status 2 for usage errors and 1 for the rest."""

import inspect

import pytest

from fexport import errors
from fexport.extras import MissingDependencyError

ALL = [c for _, c in inspect.getmembers(errors, inspect.isclass)
       if issubclass(c, Exception) and c.__module__ == errors.__name__]


def test_every_error_is_a_fexport_error_with_its_exit_status():
    assert {errors.UsageError, errors.ImageError, errors.OutputError, errors.DeviceError,
            errors.ContractError, errors.ModelNotFoundError} <= set(ALL)
    for cls in ALL:
        assert issubclass(cls, errors.FexportError)
        assert cls.exit_code == (2 if cls is errors.UsageError else 1), cls


@pytest.mark.parametrize("cls", ALL)
def test_the_message_is_kept_as_it_is(cls):
    assert str(cls("what was received, what was expected, how to fix it")) == \
        "what was received, what was expected, how to fix it"


def test_a_verification_error_carries_its_report():
    report = {"max_rel": 0.5}
    assert errors.VerificationError("differs", report).report is report
    assert errors.VerificationError("differs").report is None


def test_a_missing_dependency_is_both_a_fexport_and_an_import_error():
    assert issubclass(MissingDependencyError, errors.FexportError)
    assert issubclass(MissingDependencyError, ImportError)


def test_whole_sentences_never_cuts_a_sentence():
    from fexport.errors import whole_sentences

    first = "This carries a potential risk of arbitrary code execution. "
    text = first * 3 + "If you trust the source, pass safe_mode=False to load it anyway."
    short = whole_sentences(text, limit=150)
    assert short.endswith(". [...]") and len(short) < len(text)
    assert short[:-len(" [...]")] in " ".join(text.split())
    assert whole_sentences("two\n  lines") == "two lines"
    assert whole_sentences("x" * 5000, limit=100) == "x" * 1000 + " [...]"
