"""What to do with an input that cannot be read: one vocabulary from the CLI flag to the library.

`--on-error skip|fail`, `FeatureExtractor.stream(on_error=...)` and every engine's
`extract_to_file(on_error=...)` take the same two words, checked here and nowhere else.
"""

from __future__ import annotations

from fexport.errors import UsageError

SKIP, FAIL = "skip", "fail"
ON_ERROR = {SKIP: "record the bad input with its reason and go on",
            FAIL: "stop at the first bad input with its reason"}


def check_on_error(on_error) -> str:
    """`on_error` itself when it is one of the words; UsageError naming them otherwise."""
    if on_error not in ON_ERROR:
        words = "; ".join(f"{word!r}: {meaning}" for word, meaning in ON_ERROR.items())
        raise UsageError(f"on_error must be 'skip' or 'fail' ({words}), not {on_error!r}")
    return on_error
