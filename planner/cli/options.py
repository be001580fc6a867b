"""What the commands share: exit codes, options and arguments, and how an answer or an error is printed.

Exit codes (docs/cli.md): 0 success (a plan found / fits), 1 no plan fits / does not fit, 2 bad input,
3 an internal error (a bug: never an answer, so a script can tell it from 1).
"""
from __future__ import annotations

import functools
import json
from contextvars import ContextVar
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from planner.cost.inputs import Inputs

# What the commands share is imported where it is used: the application imports this module, and
# `planner --help`, `gpus` or `params` should not load the input models or the tables for it.

EXIT_OK, EXIT_NO_FIT, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3
DEBUG: ContextVar[bool] = ContextVar("debug", default=False)
"""The global `--debug` option: internal errors raise with their traceback."""
MESSAGE_CHARACTERS = 2000
"""Longest error printed; values echoed inside are cut shorter where they are named."""

JsonOption = typer.Option(False, "--json", help="Print exactly one JSON document on stdout (its keys: docs/cli.md).")
ClusterArg = typer.Argument(..., help="cluster.yaml: GPU type, GPUs per node, nodes, network.", show_default=False)
JobArg = typer.Argument(..., help="job.yaml: model, training mode, sequence length, global batch, constraints.",
                        show_default=False)
ObjectiveOption = typer.Option("step-time", "--objective", help="step-time | comm | memory | cost")
SolverOption = typer.Option("cp-sat", "--solver", help="cp-sat | brute (enumerates the same space).")
TimeLimitOption = typer.Option(None, "--time-limit", min=0.01, help="Solver time limit, seconds.")
MAX_JOBS = 256
"""`--jobs` at most: each worker process holds its own tables and caches, and none helps beyond
the machine's cores."""
JobsOption = typer.Option(
    None, "--jobs", min=1, max=MAX_JOBS, show_default=False,
    help="Worker processes for the independent searches (each engine, GPU type and count). Default: the CPUs"
         " this process may use; 1 searches in this process.")
FrameworkOption = typer.Option(
    None, "--framework", show_default=False,
    help="The engine: megatron | deepspeed | fsdp2 | torchtitan | auto (every engine that can run the job,"
         " compared). Default: the job's `framework:` (auto when it has none). Aliases such as megatron-lm,"
         " nemo, ds, hf, accelerate, fsdp, titan work too.")


def fail(message: str, as_json: bool, code: int = EXIT_BAD_INPUT) -> None:
    from rich.text import Text

    from planner.report import tables

    if len(message) > MESSAGE_CHARACTERS:
        message = f"{message[:MESSAGE_CHARACTERS]}… ({len(message):,} characters)"
    if as_json:
        print(json.dumps({"error": message}))
    # The message is printed as written: `{sp: [false]}` is YAML, not rich markup; on one line
    # (soft wrap: a terminal folds it, a log keeps it whole for grep, whatever the path's length).
    line = Text("error:", style="bold red")
    line.append(f" {message}")
    tables.console(stderr=True).print(line, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def handles_input_errors(command):
    """Bad input becomes one paragraph on stderr and exit 2, never a traceback."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from planner.spec.errors import InputError

        try:
            return command(*args, **kwargs)
        except InputError as exc:
            fail(str(exc), kwargs.get("as_json", False))
    return wrapper


def guards_internal_errors(command):
    """An unexpected exception is a bug, not an answer: one line on stderr and exit 3, never a
    traceback, unless the global `--debug` option asks for one."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # typer.Exit (a RuntimeError) carries the exit code; typer reports its own errors
        except Exception as exc:
            if DEBUG.get():
                raise
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            fail(f"internal error: {reason[:300]}; please report it on the project's issue tracker with the"
                 " command and its input files (`planner --debug ...` shows the traceback)",
                 kwargs.get("as_json", False), EXIT_INTERNAL)
    return wrapper


def emit_json(document: dict) -> None:
    """One strict JSON document (RFC 8259 has no NaN or Infinity): a non-finite number here is a
    bug the inputs' bounds should have prevented, and raises rather than printing invalid JSON."""
    print(json.dumps(document, indent=2, allow_nan=False))


def choice(value: str, valid: tuple[str, ...], option: str) -> str:
    from planner.spec.errors import InputError, unknown_name

    if value not in valid:
        raise InputError(unknown_name("value", value, valid), field=option)
    return value


def title(inputs: Inputs) -> str:
    from planner.cost.partial import describe as describe_partial

    c = inputs.cluster
    training = inputs.job.training
    if inputs.workload.partial is not None:
        training += f" ({describe_partial(inputs.workload.partial, inputs.workload.arch)})"
    engine = "" if inputs.framework == "auto" else f" · {inputs.framework}"
    return (f"{inputs.workload.arch.name} · {training} · seq {inputs.workload.seq_len:,} · "
            f"global batch {inputs.workload.global_batch:,} on {c.nodes} × {c.gpus_per_node} {c.gpu.id}{engine}")
