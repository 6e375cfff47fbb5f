"""The fexport command line: the only place that prints or exits.

`fexport vgg16 --layer block5_pool ...` is `fexport export vgg16 ...`: a first argument that is
not a command name is taken as the model of the default command, export.
"""

from __future__ import annotations

import os
import sys

import typer

from fexport.errors import FexportError
from fexport.extras import missing_message

from . import bench as bench_commands
from . import export as export_commands
from . import extract as extract_commands
from . import quantize as quantize_commands
from . import serve as serve_commands

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Turn a Keras model into a fast, verified ONNX image feature extractor.")
for group in (export_commands, extract_commands, bench_commands, quantize_commands,
              serve_commands):
    for name, command in group.COMMANDS.items():
        app.command(name=name)(command)

DEFAULT_COMMAND = "export"


def _with_default_command(argv: list[str]) -> list[str]:
    commands = {command.name or command.callback.__name__ for command in app.registered_commands}
    if argv and not argv[0].startswith("-") and argv[0] not in commands:
        return [DEFAULT_COMMAND, *argv]
    return argv


def main(argv=None) -> None:
    argv = _with_default_command(list(sys.argv[1:] if argv is None else argv))
    debug = os.environ.get("FEXPORT_DEBUG") == "1"
    try:
        app(args=argv, prog_name="fexport")  # typer itself exits 2 on usage errors
    except FexportError as exc:
        if debug:
            raise
        _fail(f"error: {exc}", exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except ModuleNotFoundError as exc:  # an optional package imported without `require`
        if debug or missing_message(exc) is None:
            raise
        _fail(f"error: {missing_message(exc)}", 1)
    except Exception as exc:  # the edge of the program: one line, unless debugging
        if debug:
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (run with FEXPORT_DEBUG=1 for the "
              "traceback, and please report it)", 1)


def _fail(message: str, code: int) -> None:
    print(f"fexport: {message}", file=sys.stderr)
    sys.exit(code)
