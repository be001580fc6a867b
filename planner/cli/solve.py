"""`planner solve CLUSTER JOB`: search the plan space and print the best plans."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from planner.cli.options import (
    EXIT_NO_FIT,
    EXIT_OK,
    ClusterArg,
    JobArg,
    JsonOption,
    ObjectiveOption,
    SolverOption,
    TimeLimitOption,
    choice,
    emit_json,
    handles_input_errors,
    title,
)
from planner.cli.searching import search_job
from planner.cost.inputs import load_inputs
from planner.engines import EMIT_KINDS
from planner.engines.emit import write_emits
from planner.report import json as report_json
from planner.report import tables
from planner.search import OBJECTIVES, SOLVERS
from planner.spec.errors import InputError


@handles_input_errors
def solve(
    cluster: Path = ClusterArg,
    job: Path = JobArg,
    top: int = typer.Option(5, "--top", min=1, help="How many distinct plans to return."),
    objective: str = ObjectiveOption,
    time_limit: Optional[float] = TimeLimitOption,
    solver: str = SolverOption,
    emit: Optional[str] = typer.Option(None, "--emit", show_default=False,
                                       help="deepspeed | megatron | torchrun: write launch files for the best plan."),
    out: Optional[Path] = typer.Option(None, "--out", help="Directory for --emit (created).", show_default=False),
    as_json: bool = JsonOption,
) -> None:
    """Search the plan space; print the best plans with per-GPU memory by term."""
    choice(objective, OBJECTIVES, "--objective")
    choice(solver, SOLVERS, "--solver")
    if emit is not None:
        choice(emit, EMIT_KINDS, "--emit")
    if (emit is None) != (out is None):
        raise InputError("--emit and --out go together", field="--emit" if emit is None else "--out")
    inputs = load_inputs(cluster, job)
    result, _, explanation = search_job(inputs, objective, top, solver, time_limit, show_progress=not as_json)
    # Launch files for the best plan; rendered in full before anything is written (bad input
    # writes nothing), and nothing at all when no plan fits.
    written = write_emits(emit, result.plans[0], inputs, out) if emit is not None and result.plans else []
    if as_json:
        document = report_json.solve_document(result, explanation)
        if emit is not None:
            document["emitted"] = [str(p) for p in written]
        emit_json(document)
    else:
        console = tables.console()
        console.print(tables.solve_view(result, title(inputs), explanation))
        for path in written:
            console.print(f"wrote {path}")
        if emit is not None and not result.plans:
            console.print(f"--emit {emit}: nothing written, no plan fits")
    raise typer.Exit(EXIT_OK if result.plans else EXIT_NO_FIT)
