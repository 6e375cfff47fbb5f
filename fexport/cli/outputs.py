"""What every command does with its output: the files it may replace, and where its lines go.

The flag rule: `--json` prints the command's result as one JSON document on stdout and nothing
else there; the lines meant for people then go to stderr, so a script can read stdout whole.
"""

from __future__ import annotations

import json
import os

import typer

from fexport.errors import UsageError


def refuse_existing(paths, overwrite) -> None:
    """Outputs are replaced only on request: an earlier export may be all someone has."""
    existing = [str(p) for p in paths if p and os.path.exists(p)]
    if existing and not overwrite:
        raise UsageError(f"{existing[0]} already exists; pass --overwrite to replace it, or "
                         "choose another output")


def say(line: str, as_json: bool = False) -> None:
    """A line for people: on stdout, or on stderr while stdout carries the JSON result."""
    typer.echo(line, err=as_json)


def print_json(result) -> None:
    """The command's result, the only thing on stdout under --json."""
    typer.echo(json.dumps(result, indent=1))
