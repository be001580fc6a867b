"""One job's search as the commands run it: candidates, the cost table (with a progress bar on a
terminal), the solver, and the explanation when nothing fits."""
from __future__ import annotations

import sys
import time

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from planner.cost.inputs import Inputs
from planner.report import tables
from planner.search import SolveResult, search
from planner.search.explain import explain_infeasible
from planner.search.layouts import Layout
from planner.search.space import candidate_plans
from planner.search.table import build_table


def search_job(inputs: Inputs, objective: str, top: int, solver: str, time_limit: float | None,
               show_progress: bool) -> tuple[SolveResult, list[Layout], str | None]:
    """The best plans of a job, the candidate layouts searched, and why none fits when none does;
    a progress bar on stderr while the layouts are evaluated."""
    w, c, d, k = inputs.workload, inputs.cluster, inputs.defaults, inputs.job.constraints
    plans = list(candidate_plans(w, c, d, k))
    with _progress(len(plans), "evaluating plans", enabled=show_progress) as advance:
        rows = build_table(plans, w, c, objective, advance) if plans else []
    top = capped_top(top, len(rows))
    result = search(w, c, d, k, objective=objective, top=top, solver=solver, time_limit=time_limit, rows=rows)
    explanation = explain_infeasible(rows, result.conflict, w, c, d, k) if result.status == "infeasible" else None
    return result, rows, explanation


QUIET_TOP = 5
"""The commands' default --top: capping it to a small job's few layouts goes unsaid."""
MAX_TOP = 100
"""Plans ranked at most: each is one more CP-SAT solve (a fraction of a second to seconds), so a
thousand would take many minutes to print a table nobody reads to the end."""


def capped_top(top: int, layouts: int) -> int:
    """`--top` at most the candidate layouts (the solver finds one distinct plan per layout) and
    at most MAX_TOP, so `--top 1000000000` does not solve until every layout is spent. Says so on
    stderr (stdout may be a JSON document) when more than the default were asked for."""
    limit = min(max(layouts, 1), MAX_TOP)
    if top <= limit:
        return top
    if top > QUIET_TOP:
        print(f"note: --top {top:,}: showing at most {limit:,} plans ({layouts:,} candidate layouts; at most"
              f" {MAX_TOP} are ranked)", file=sys.stderr)
    return limit


class _progress:
    """A progress bar on stderr for searches that take more than a second (rich; off when not a
    TTY): it appears once the first second has passed."""

    DELAY_S = 1.0

    def __init__(self, total: int, label: str, enabled: bool):
        self.enabled = enabled and total > 0 and sys.stderr.isatty()
        self.total, self.label = total, label
        self.bar = None

    def __enter__(self):
        if not self.enabled:
            return None
        start = time.perf_counter()

        def advance(done: int) -> None:
            if self.bar is None:
                if time.perf_counter() - start < self.DELAY_S:
                    return
                self.bar = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                    console=tables.console(stderr=True), transient=True)
                self.bar.start()
                self.task = self.bar.add_task(self.label, total=self.total)
            if done % 50 == 0 or done == self.total:
                self.bar.update(self.task, completed=done)
        return advance

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False
