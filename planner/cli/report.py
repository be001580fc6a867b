"""`planner report CLUSTER JOB --out DIR`: the search as a page to share, with PNGs of its charts.

Parse, load, search, render everything in memory, and only then write, atomically: bad input or a
failed write leaves DIR as it was.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

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
from planner.cli.searching import search_job
from planner.cost.evaluate import evaluate
from planner.cost.inputs import load_inputs
from planner.report import json as report_json
from planner.report import tables
from planner.report.html import InputFile
from planner.search.objectives import OBJECTIVES, SOLVERS
from planner.search.parallel import worker_count
from planner.spec.errors import InputError
from planner.spec.reading import path_kind, read_text
from planner.spec.writing import write_files

if TYPE_CHECKING:
    from planner.report.page import Report

PAGE_NAME = "report.html"


@handles_input_errors
def report(
    cluster: Path = ClusterArg,
    job: Path = JobArg,
    out: Path = typer.Option(..., "--out", help="Folder for report.html and the PNGs (created if missing).",
                             show_default=False),
    top: int = typer.Option(5, "--top", min=1, help="How many distinct plans to show."),
    objective: str = ObjectiveOption,
    time_limit: Optional[float] = TimeLimitOption,
    solver: str = SolverOption,
    framework: Optional[str] = FrameworkOption,
    jobs: Optional[int] = JobsOption,
    as_json: bool = JsonOption,
) -> None:
    """Write one self-contained HTML page, and PNGs of its charts: best plans, memory, time, every plan considered."""
    choice(objective, OBJECTIVES, "--objective")
    choice(solver, SOLVERS, "--solver")
    _check_out(out)
    inputs = load_inputs(cluster, job, framework)
    # matplotlib loads here, not when the CLI starts, so the other commands stay quick.
    from planner.report.page import build_report
    found = search_job(inputs, objective, top, solver, time_limit, show_progress=not as_json,
                       jobs=worker_count(jobs), whole_table=True)  # the page draws every plan
    result, explanation = found.result, found.explanation
    # A row is a layout whose partition and recompute counts the solver chooses; each is shown at
    # its default partition, evaluated in full by the same models with its engine's traits.
    considered = [evaluate(row.plan, o.workload, inputs.cluster) for o in found.outcomes for row in o.rows]
    page = build_report(title(inputs), result, considered, inputs.cluster.capacity, _input_files(cluster, job),
                        explanation)
    written = _write(page, out)
    if as_json:
        emit_json({**report_json.solve_document(result, explanation, found.engines),
                   "files": [str(p) for p in written]})
    else:
        _say_written(written, result.status, explanation)
    raise typer.Exit(EXIT_OK if result.plans else EXIT_NO_FIT)


def _check_out(out: Path) -> None:
    # Checked first so a wrong --out costs no search time.
    if path_kind(out) not in (None, "directory"):
        raise InputError(f"{out} exists and is not a folder; give a folder for report.html and the PNGs",
                         field="--out")


def _input_files(*paths: Path) -> list[InputFile]:
    # The files were read and validated by load_inputs; shown as the user wrote them.
    return [InputFile(path=str(p), text=read_text(p)) for p in paths]


def _write(page: "Report", out: Path) -> list[Path]:
    # Every file of the page is rendered; each goes in atomically (spec/writing.py), links at the
    # names replaced rather than followed, and a failure leaves no half report behind.
    return write_files(out, page.files(PAGE_NAME), field="--out")


def _say_written(written: list[Path], status: str, explanation: str | None) -> None:
    console = tables.console()
    page = next(p for p in written if p.name == PAGE_NAME)
    console.print(f"wrote {page} and {len(written) - 1} PNG charts beside it ({status})", highlight=False)
    if explanation:
        console.print(explanation, style="red", highlight=False)
