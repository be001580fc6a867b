"""One job's search as the commands run it: candidates, the cost table (with a progress bar on a
terminal), the solver, and the explanation when nothing fits."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from planner.cost.inputs import Inputs
from planner.engines.profiles import ENGINES, engines_for
from planner.report import tables
from planner.search import SolveResult
from planner.search.explain import describe_plan
from planner.search.layouts import Layout
from planner.search.stacks import (
    EngineComparison,
    EngineOutcome,
    compare,
    explained,
    explanation,
    merged,
    search_engine,
)
from planner.search.table import build_table


@dataclass(frozen=True)
class JobSearch:
    """A job searched on its engine, or on every engine (`framework: auto`)."""

    result: SolveResult
    """The best plans of all the engines searched, ranked together."""
    outcomes: tuple[EngineOutcome, ...]
    explanation: str | None
    """Why no plan fits, when none does."""

    @property
    def rows(self) -> list[Layout]:
        return [row for o in self.outcomes for row in o.rows]

    @property
    def engines(self) -> list[EngineComparison] | None:
        """Each engine's best against the winner's, when several engines were searched."""
        return compare(list(self.outcomes)) if len(self.outcomes) > 1 else None

    def outcome(self, framework: str) -> EngineOutcome | None:
        return next((o for o in self.outcomes if o.framework == framework), None)


def search_job(inputs: Inputs, objective: str, top: int, solver: str, time_limit: float | None,
               show_progress: bool, frameworks: tuple[str, ...] | None = None) -> JobSearch:
    """The best plans of a job on its engine (every engine under `auto`, or `frameworks`), and
    why none fits when none does; a progress bar on stderr while the layouts are evaluated. The
    result's time covers all of it: the tables, the solver and the explanation."""
    c, d, k = inputs.cluster, inputs.defaults, inputs.job.constraints
    top = capped_top(top, MAX_TOP)
    names = frameworks or engines_for(inputs.framework)
    outcomes = []
    for name in names:
        def table(plans, workload, name=name):
            label = f"evaluating {name} plans" if len(names) > 1 else "evaluating plans"
            with _progress(len(plans), label, enabled=show_progress) as advance:
                return build_table(plans, workload, c, objective, advance)
        outcomes.append(search_engine(name, inputs.workload, c, d, k, objective=objective, top=top, solver=solver,
                                      time_limit=time_limit, table=table))
    if not any(o.best is not None for o in outcomes):
        # Why nothing fits, in full for the first engine that can run the job (the others say
        # in a line why they cannot, or that nothing of theirs fits); its time is the search's.
        first = next((i for i, o in enumerate(outcomes) if o.result is not None), None)
        if first is not None:
            outcomes[first] = explained(outcomes[first], c, d, k)
    result = merged(outcomes, objective, top)
    return JobSearch(result=result, outcomes=tuple(outcomes), explanation=explanation(outcomes))


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


def nearest_text(kind: str, inputs: Inputs, objective: str = "step-time") -> str:
    """The best plan engine `kind` runs for the job, in words, for a refusal to emit another's
    plan: a search with that engine alone."""
    if kind not in ENGINES:
        return ""
    found = search_job(inputs, objective, 1, "cp-sat", None, show_progress=False, frameworks=(kind,))
    outcome = found.outcomes[0]
    if outcome.best is None:
        return f". {outcome.title} has no plan for this job: {outcome.why_not}"
    ev = outcome.best
    return (f". The best plan {outcome.title} runs: {describe_plan(ev.plan)}, peak {ev.memory.total / 2**30:.2f} GiB"
            f" of {ev.capacity / 2**30:.2f} GiB, step {ev.time.step:.3f} s; plan for it with `--framework {kind}`"
            f" (or `framework: {kind}` in the job)")
