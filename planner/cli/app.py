"""The `planner` command: one Typer application with a module per command (docs/cli.md).

Each command module defines a plain function; this module registers them, so no command
imports the application back.
"""
from __future__ import annotations

import sys
import warnings

import typer

from planner.cli import capacity, catalog, check, estimate, infer, params, report, solve
from planner.cli.options import DEBUG, guards_internal_errors

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Plan how to train a language model on a GPU cluster, and check that it fits, before a GPU-hour is spent.",
)

for command in (solve.solve, estimate.estimate, catalog.gpus, catalog.models, capacity.capacity, infer.infer,
                params.params, check.check, report.report):
    app.command()(guards_internal_errors(command))


@app.callback()
def options(debug: bool = typer.Option(False, "--debug", help="Show the traceback of an internal error (exit 3).")
            ) -> None:
    """Plan how to train a language model on a GPU cluster, and check that it fits, before a GPU-hour is spent."""
    DEBUG.set(debug)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings are for people at a terminal: one line on stderr, no source line."""
    print(f"warning: {message}", file=sys.stderr)


def main() -> None:
    warnings.showwarning = _show_warning
    app()


if __name__ == "__main__":
    main()
