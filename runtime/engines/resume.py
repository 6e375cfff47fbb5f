"""What a resumed run must share with the interrupted one, checked the same way by every
engine: each setting compared, and a difference refused in the words a user knows it by."""

from __future__ import annotations

import itertools
import json
import os

from fexport.errors import OutputError


def prepare(store, mode, identity, keys, settings, outputs) -> bool:
    """True when an interrupted run in `store` is to be continued; else, after refusing to
    replace what mode "new" must keep, a fresh store is created (False). `outputs`: the files
    or folders a finished run leaves."""
    if mode == "resume" and store.exists():
        check_same_run(store, identity, keys, settings)
        return True
    if mode == "new" and store.exists():
        raise OutputError(f"an interrupted run of {store.output} left {store.path}: pass "
                          "--resume to continue it, or --overwrite to start again")
    existing = [path for path in outputs if os.path.lexists(path)]
    if existing and mode != "overwrite":
        hint = "nothing to resume (no interrupted run is stored); " if mode == "resume" else ""
        raise OutputError(f"{existing[0]} already exists: {hint}pass --overwrite to replace "
                          "it, or choose another output")
    store.create(identity, keys)
    return False


def check_same_run(store, identity: dict, keys: list, settings: dict) -> None:
    """Refuse to resume `store` (a ShardStore: identity(), keys(), output, path) when one of
    `settings` ({identity key: the user's words for it}) differs from `identity`."""
    stored = store.identity()
    for name, words in settings.items():
        if stored.get(name) != identity.get(name):
            change = _describe_change(name, stored, identity, store, keys)
            raise OutputError(f"cannot resume {store.output}: {words} differs from the "
                              f"interrupted run's ({change}); rerun with the same model, "
                              "inputs and options, or pass --overwrite to start again")


def _describe_change(name, stored, identity, store, keys) -> str:
    if name == "inputs_sha256":
        first, then, now = _first_difference(store.keys(), keys)
        return (f"{stored.get('inputs')} inputs then, {identity.get('inputs')} now; input "
                f"#{first} was {then}, is {now}")
    then, now = stored.get(name), identity.get(name)
    if name == "model_sha256":
        return f"sha256 {str(then)[:12]}... then, {now[:12]}... now"
    return f"{json.dumps(then)} then, {json.dumps(now)} now"


def _first_difference(old, new) -> tuple[int, str, str]:
    """(index, the old key there, the new one) where two key lists, or listings read as they
    go (files/listing.py iterates its keys), first differ; "(none)" for the side that has
    ended."""
    for index, (then, now) in enumerate(itertools.zip_longest(old, new)):
        if then != now:
            return index, _shown(then), _shown(now)
    return 0, "(none)", "(none)"  # the same keys: only the hash's format differs


def _shown(key) -> str:
    return "(none)" if key is None else repr(key)

