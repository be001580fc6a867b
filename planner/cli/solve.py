"""`planner solve CLUSTER JOB`: search the plan space and print the best plans, each with its engine."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from planner.cli.options import (
    EXIT_NO_FIT,
    EXIT_OK,
    ClusterArg,
    FrameworkOption,
    JobArg,
    JobsOption,
    JsonOption,
    ObjectiveOption,
    SolverOption,
    TimeLimitOption,
    choice,
    emit_json,
    handles_input_errors,
    title,
)
from planner.cli.searching import JobSearch, nearest_text, search_job
from planner.cost.evaluate import Evaluation
from planner.cost.inputs import Inputs, load_inputs
from planner.engines.profiles import ENGINES, PROFILES
from planner.report import json as report_json
from planner.search.objectives import OBJECTIVES, SOLVERS
from planner.search.parallel import worker_count
from planner.spec.errors import InputError


@handles_input_errors
def solve(
    cluster: Path = ClusterArg,
    job: Path = JobArg,
    top: int = typer.Option(5, "--top", min=1, help="How many distinct plans to return."),
    objective: str = ObjectiveOption,
    time_limit: Optional[float] = TimeLimitOption,
    solver: str = SolverOption,
    framework: Optional[str] = FrameworkOption,
    jobs: Optional[int] = JobsOption,
    emit: Optional[str] = typer.Option(None, "--emit", show_default=False,
                                       help="megatron | deepspeed | fsdp2 | torchtitan | torchrun: write launch files: an"
                                            " engine's for its best plan, torchrun's for the best plan."),
    out: Optional[Path] = typer.Option(None, "--out", help="Directory for --emit (created).", show_default=False),
    as_json: bool = JsonOption,
) -> None:
    """Search the plan space; print the best plans with their engine and per-GPU memory by term."""
    choice(objective, OBJECTIVES, "--objective")
    choice(solver, SOLVERS, "--solver")
    if emit is not None:
        from planner.engines.emit import check_kind, write_emits  # the emitters load only with --emit
        check_kind(emit)
    if (emit is None) != (out is None):
        raise InputError("--emit and --out go together", field="--emit" if emit is None else "--out")
    inputs = load_inputs(cluster, job, framework)
    found = search_job(inputs, objective, top, solver, time_limit, show_progress=not as_json,
                       jobs=worker_count(jobs))
    result = found.result
    # Launch files; rendered in full before anything is written (bad input writes nothing), and
    # nothing at all when no plan fits.
    target = _emit_target(emit, found, inputs) if emit is not None else None
    written = (write_emits(emit, target, inputs, out, nearest=lambda kind: nearest_text(kind, inputs, objective))
               if target is not None else [])
    if as_json:
        document = report_json.solve_document(result, found.explanation, found.engines)
        if emit is not None:
            document["emitted"] = [str(p) for p in written]
            document["emitted_plan"] = report_json.plan_document(target) if target is not None else None
        emit_json(document)
    else:
        # The terminal's views (rich) load only for them: a --json answer never needs them.
        from rich.text import Text

        from planner.report import tables

        console = tables.console()
        console.print(tables.solve_view(result, title(inputs), found.explanation, found.engines))
        if target is not None and result.plans and target is not result.plans[0]:
            console.print(Text(f"--emit {emit}: {PROFILES[emit].title}'s best plan, not #1:"
                               f" {tables.describe_layout(target)}"))
        for path in written:
            console.print(Text(f"wrote {path}"))
        if emit is not None and target is None:
            console.print(Text(f"--emit {emit}: nothing written, no plan fits"))
    raise typer.Exit(EXIT_OK if result.plans else EXIT_NO_FIT)


def _emit_target(kind: str, found: JobSearch, inputs: Inputs) -> Evaluation | None:
    """The plan `--emit kind` writes: torchrun's is the best plan; an engine's is its own best.
    When the search was for another engine, the refusal names the best plan `kind` runs."""
    if kind not in ENGINES:
        return found.result.plans[0] if found.result.plans else None
    outcome = found.outcome(kind)
    if outcome is None:
        searched = ", ".join(o.framework for o in found.outcomes)
        raise InputError(f"the plans are {searched}'s and {PROFILES[kind].title} launches its own: use"
                         f" --framework {kind} or auto{nearest_text(kind, inputs, found.result.objective)}",
                         field="--emit")
    if outcome.cannot_run is not None:
        raise InputError(f"{outcome.cannot_run}; nothing written", field="--emit")
    return outcome.best
