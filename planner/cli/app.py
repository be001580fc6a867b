"""The `planner` command: one Typer application with a module per command (docs/cli.md).

Each command module defines a plain function; this module registers them by name and imports a
command's module only when that command runs, so `planner params` never loads the search or the
report, and `planner --help` lists the commands from their docstrings without loading any of
them. No command imports the application back.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import sys
import warnings
from pathlib import Path

import typer
from typer.core import TyperCommand, TyperGroup

from planner.cli.options import DEBUG, guards_internal_errors

COMMANDS = {
    # name: (module, function), in the order `planner --help` lists them
    "solve": ("planner.cli.solve", "solve"),
    "estimate": ("planner.cli.estimate", "estimate"),
    "gpus": ("planner.cli.catalog", "gpus"),
    "models": ("planner.cli.catalog", "models"),
    "capacity": ("planner.cli.capacity", "capacity"),
    "infer": ("planner.cli.infer", "infer"),
    "params": ("planner.cli.params", "params"),
    "check": ("planner.cli.check", "check"),
    "report": ("planner.cli.report", "report"),
}


def _docstring(module: str, function: str) -> str:
    """The command function's docstring, read from its source (parsed, never run) without
    importing the module."""
    source = Path(importlib.util.find_spec(module).origin).read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            return ast.get_docstring(node) or ""
    return ""


def _command(name: str) -> TyperCommand:
    """The command itself: its module imported, its options and arguments read from its signature."""
    module, function = COMMANDS[name]
    single = typer.Typer(add_completion=False)
    single.command(name=name)(guards_internal_errors(getattr(importlib.import_module(module), function)))
    command = typer.main.get_command(single)
    command.name = name
    return command


class _Summary(TyperCommand):
    """A command as `planner --help` lists it: its name and docstring, read only when a help page
    shows it. Whoever reads its options (the documentation's tests) gets the command's own, its
    module imported then."""

    @property
    def help(self) -> str:
        if self._help is None:
            self._help = _docstring(*COMMANDS[self.name])
        return self._help

    @help.setter
    def help(self, value: str | None) -> None:
        self._help = value  # None until a help page asks

    @property
    def params(self) -> list:
        return _command(self.name).params

    @params.setter
    def params(self, value: list) -> None:
        pass  # click sets the (empty) list of a summary; the options are the command's own


class _Commands(TyperGroup):
    """The commands by name: summaries (docstrings) until one is asked to run."""

    def __init__(self, **attrs) -> None:
        super().__init__(**attrs)
        for name in COMMANDS:
            self.commands[name] = _Summary(name=name)
        self._loaded: set[str] = set()

    def resolve_command(self, ctx, args):
        name = args[0] if args else None
        if name in COMMANDS and name not in self._loaded:
            self.commands[name] = _command(name)
            self._loaded.add(name)
        return super().resolve_command(ctx, args)


app = typer.Typer(
    cls=_Commands,
    add_completion=False,
    no_args_is_help=True,
    help="Plan how to train a language model on a GPU cluster, and check that it fits, before a GPU-hour is spent.",
)


@app.callback()
def options(debug: bool = typer.Option(False, "--debug", help="Show the traceback of an internal error (exit 3).")
            ) -> None:
    """Plan how to train a language model on a GPU cluster, and check that it fits, before a GPU-hour is spent."""
    DEBUG.set(debug)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings are for people at a terminal: one line on stderr, no source line."""
    print(f"warning: {message}", file=sys.stderr)


ONE_BLAS_THREAD = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")
"""The BLAS thread pools numpy would start when it loads, one thread each here (unless the user
set them): the search's arrays are small integer tables no BLAS routine touches, while OpenBLAS
starts a thread per core that spins a while after it loads, taking a core from the worker
processes (DeepSeek-V3's solve on 2 cores: 1.3 -> 1.1 s of CPU, 1.04 -> 0.86 s wall), and a
process is forked the safer without threads."""


def main() -> None:
    for name in ONE_BLAS_THREAD:
        os.environ.setdefault(name, "1")
    warnings.showwarning = _show_warning
    try:
        app()  # Typer ends with SystemExit and the exit code, as sys.exit does
    except SystemExit as done:
        _leave(done.code)
    _leave(0)


def _leave(code: int | str | None) -> None:
    """Ends the process with the command's exit code, without tearing the interpreter down: a
    search leaves some 10^5 objects, its worker pools' handles and the solver's and numpy's modules,
    which the interpreter would free one by one (0.05-0.1 s of a one-second `solve`). Every file
    a command writes is closed when it returns, and no exit handler of the planner's or its
    libraries' is needed once the worker pools are ended (parallel.Workers). Standard output and
    error are flushed first; a reader that went away (`| head`) is not an error."""
    if isinstance(code, str):  # sys.exit("message"): the message on stderr, exit 1
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # the reader closed the pipe, or the stream is closed
            pass
    os._exit(0 if code is None else code)


if __name__ == "__main__":
    main()
