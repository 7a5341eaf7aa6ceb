"""One way for every ``xas-*`` command line to report an error: one line on stderr, exit 2.

Each CLI builds its app with ``typer.Typer(cls=GuardedGroup, ...)``: any exception a command
lets escape (the project's errors, and library errors such as a truncated ``.npz``, invalid
JSON or UTF-8, a path that is not a folder) is printed as ``error: <what went wrong>`` and the
process exits with status 2. The traceback is shown only with ``--debug`` (an option of each
app) or ``XAS_DEBUG=1``. Only light modules are imported here (no numpy, zarr or torch), so
that a user error answers before any heavy import.
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import NoReturn

import click
import typer
from typer.core import TyperGroup

#: set by an app's ``--debug`` option (or the environment): show tracebacks
DEBUG_ENV = "XAS_DEBUG"


def debug_enabled() -> bool:
    """True when tracebacks are wanted (``--debug`` or ``XAS_DEBUG=1``)."""
    return os.environ.get(DEBUG_ENV, "").strip() not in ("", "0", "false", "no")


def set_debug(enabled: bool) -> None:
    """Called by an app's ``--debug`` option: later errors keep their traceback."""
    if enabled:
        os.environ[DEBUG_ENV] = "1"


def fail(message: object) -> NoReturn:
    """Print ``error: message`` (one line) on stderr and exit with status 2."""
    text = " ".join(str(message).split()) or "unknown error"
    typer.secho(f"error: {text}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _os_error(exc: OSError) -> str:
    where = exc.filename if exc.filename is not None else ""
    what = exc.strerror or str(exc)
    fix = "check the path and its permissions"
    if isinstance(exc, FileNotFoundError):
        fix = "check the path"
    elif isinstance(exc, NotADirectoryError):
        fix = "a part of the path is a file, not a folder: check the path"
    return f"{where}: {what}; {fix}" if where else f"{what}; {fix}"


def describe(exc: BaseException) -> str:
    """One line naming the problem of ``exc`` and its likely fix."""
    if isinstance(exc, UnicodeDecodeError):
        return (
            f"the input is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at position "
            f"{exc.start}); save it as UTF-8 or check that it is the right file"
        )
    if isinstance(exc, json.JSONDecodeError):
        return f"the input is not valid JSON ({exc}); it may be truncated: write it again"
    if isinstance(exc, zipfile.BadZipFile | EOFError):
        return (
            f"the archive is truncated or not an .npz/zip file ({exc or type(exc).__name__}); "
            "download or write it again"
        )
    if isinstance(exc, OSError):
        return _os_error(exc)
    if isinstance(exc, MemoryError):
        return "out of memory; use a smaller input or a machine with more memory"
    if type(exc).__module__.split(".")[0] in (
        "xas_data",
        "xas_features",
        "xas_models",
        "xas_train",
        "xas_eval",
    ):
        return str(exc)  # the project's errors name the problem and the fix
    if isinstance(exc, ValueError | KeyError | TypeError) and type(exc).__module__ != "builtins":
        return f"{exc} ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc} (rerun with --debug for the traceback)"


def report(exc: BaseException) -> NoReturn:
    """Re-raise ``exc`` with ``--debug``; else :func:`fail` with :func:`describe`."""
    if debug_enabled():
        raise exc
    fail(describe(exc))


#: exits and usage errors that click/typer report themselves
_PASS_THROUGH = (
    click.exceptions.Exit,
    click.ClickException,
    click.Abort,
    typer.Exit,
    getattr(typer, "Abort", click.Abort),
)


class GuardedGroup(TyperGroup):
    """A Typer group whose commands never end in a traceback (see the module docstring)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except _PASS_THROUGH:
            raise
        except Exception as exc:  # noqa: BLE001 - every escaping error becomes one line
            report(exc)


DebugOpt = typer.Option("--debug", help="show the full traceback of an error (also: XAS_DEBUG=1)")
