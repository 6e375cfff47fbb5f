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
