"""One job's search as the commands run it: candidates, the cost table (with a progress bar on a
terminal), the solver, and the explanation when nothing fits."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from planner.cost import memo
from planner.cost.cluster import Cluster
from planner.cost.inputs import Inputs
from planner.cost.workload import JobDefaults, Workload
from planner.engines.profiles import ENGINES, engines_for
from planner.search import SolveResult
from planner.search.explain import describe_plan
from planner.search.layouts import Layout
from planner.search.objectives import bounded_applies
from planner.search.parallel import Workers, forks, tell
from planner.search.stacks import (
    EngineCandidates,
    EngineComparison,
    EngineOutcome,
    compare,
    engine_candidates,
    explained,
    explanation,
    finish_bounded,
    merged,
    search_engine,
)
from planner.search.table import build_table, worth_workers
from planner.spec.job import Constraint

if TYPE_CHECKING:
    from rich.progress import Progress


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
               show_progress: bool, frameworks: tuple[str, ...] | None = None, jobs: int = 1,
               whole_table: bool = False) -> JobSearch:
    """The best plans of a job on its engine (every engine under `auto`, or `frameworks`), and
    why none fits when none does; a progress bar on stderr while the engines are searched.

    A step-time search by CP-SAT builds each engine's table only as far as its plans need
    (search_engine); `whole_table` builds all of it (a report draws every plan).
    With `jobs` > 1 the work goes to worker processes (planner/search/parallel.py), split where
    it is: a whole table of table.PARALLEL_PLANS candidates or more (Megatron's on a large
    cluster or a mixture of experts, hundreds of times any other engine's) is built by all the
    workers, the engines then searched one after another here; a bounded build of SHARED_PLANS
    candidates or more in `jobs` shares of its layouts (bounded.Part), searched here once all
    are in; otherwise each engine's search is a task of its own. The outcomes are put together
    in the same order either way. The result's time is wall time: the searches, then the
    explanation."""
    c, d, k = inputs.cluster, inputs.defaults, inputs.job.constraints
    top = capped_top(top, MAX_TOP)
    names = frameworks or engines_for(inputs.framework)
    bars = _EngineBars(names, enabled=show_progress)
    start = time.perf_counter()
    candidates = [engine_candidates(name, inputs.workload, c, d, k) for name in names]
    whole_table = whole_table or not bounded_applies(objective, solver)
    large = whole_table and any(worth_workers(len(found.plans)) for found in candidates)
    engine_jobs, table_jobs = (1, jobs) if large else (min(jobs, len(names)), 1)
    # A bounded search of many candidates is built in shares of its layouts, a worker each (bounded.Part).
    shared = {i: _shares(found, jobs) for i, found in enumerate(candidates)
              if not whole_table and jobs > 1 and not found.cannot_run and len(found.plans) >= SHARED_PLANS}
    if shared:
        engine_jobs = jobs
    if engine_jobs > 1 and not whole_table:
        # The bounded build's modules (numpy with them), loaded once here for the workers to
        # inherit: each would load them for its builds, and this process for the search over
        # what they built. Not the solver: a process that has run CP-SAT is not forked.
        import planner.search.bounded  # noqa: F401
    found: dict[int, EngineOutcome] = {}
    built: dict[int, dict[int, object]] = {i: {} for i in shared}
    try:
        with Workers(engine_jobs, on_message=bars.update, on_idle=bars.tick,
                     shared=(inputs.workload, c, d, k, *candidates,
                             *(part for parts in shared.values() for part in parts))) as workers:
            # The largest first: an engine's shares, then the engines in the order of their candidates.
            for i in sorted(range(len(names)), key=lambda i: -len(candidates[i].plans)):
                for part in shared.get(i, ()):
                    workers.submit((i, part.index), _search_share, names[i], c, k, top, candidates[i], part)
                if i in shared:
                    continue
                if engine_jobs > 1 and not whole_table and not candidates[i].cannot_run and candidates[i].plans:
                    workers.submit(i, _build_engine, names[i], c, d, k, top, time_limit, candidates[i])
                else:
                    workers.submit(i, _search_engine, names[i], inputs.workload, c, d, k, objective, top, solver,
                                   time_limit, table_jobs, candidates[i], whole_table)
            for key, outcome in workers.results():
                if isinstance(key, tuple):  # a share of an engine's build
                    i, part = key
                    built[i][part] = outcome
                    if len(built[i]) < len(shared[i]):
                        _load_solver()
                        continue
                    bars.update((names[i], None, len(candidates[i].plans)))
                    outcome = finish_bounded(names[i], candidates[i], c, d, k, [built[i][j] for j in sorted(built[i])],
                                             top=top, time_limit=time_limit, start=start,
                                            table=lambda plans, wl: build_table(plans, wl, c, objective))
                else:
                    i = key
                    if not isinstance(outcome, EngineOutcome):  # a build of plans that fit: searched here
                        _load_solver()
                        outcome = finish_bounded(names[i], candidates[i], c, d, k, [outcome], top=top,
                                                 time_limit=time_limit, start=start,
                                                 table=lambda plans, wl: build_table(plans, wl, c, objective))
                found[i] = outcome
                bars.done(names[i])
    finally:
        bars.close()
    searched = time.perf_counter() - start
    outcomes = [found[i] for i in range(len(names))]
    if not any(o.best is not None for o in outcomes):
        # Why nothing fits, in full for the first engine that can run the job (the others say
        # in a line why they cannot, or that nothing of theirs fits); its time is the search's.
        first = next((i for i, o in enumerate(outcomes) if o.result is not None), None)
        if first is not None:
            outcomes[first] = explained(outcomes[first], c, d, k)
    result = merged(outcomes, objective, top, searched_seconds=searched)
    return JobSearch(result=result, outcomes=tuple(outcomes), explanation=explanation(outcomes))


SHARED_PLANS = 2000
"""Candidates from which a bounded search is built in shares of its layouts, one per worker: the
README example's Megatron-Core candidates, 5,337, take 0.7 s in one process and 0.34 s in each of
two shares; below a few thousand, a share's process and the layouts it sends back cost about
what it saves."""


def _shares(found: EngineCandidates, jobs: int) -> list:
    """The shares of an engine's bounded build, with the costs they solve in shared memory where
    the workers will inherit it (forked), else each alone."""
    from planner.search.bounded import Part, SharedCosts, layout_keys

    dealt = layout_keys(found.plans)
    parts = min(jobs, len(dealt))
    costs = SharedCosts(parts) if forks() else None
    return [Part(index, parts, dealt, costs) for index in range(parts)]


def _load_solver() -> None:
    """Loads CP-SAT (OR-Tools, some 0.05 s) in this process once a share of a build is in: the
    search over what the shares built needs it, and the finished share's CPU is free while the
    others run (with every CPU busy, loading it sooner only slows the shares)."""
    import planner.search.cpsat  # noqa: F401


def _search_share(name: str, cluster: Cluster, constraints: dict[str, Constraint], top: int,
                  found: EngineCandidates, part) -> object:
    """One share of engine `name`'s bounded build (bounded.bounded_build), telling how far it is."""
    from planner.search.bounded import bounded_build

    told = 0

    def advance(done: int) -> None:
        nonlocal told
        if done - told >= PROGRESS_EVERY:
            told = done
            tell(_ShareProgress(name, part.index, done, len(found.plans)))
    return bounded_build(found.plans, found.workload, cluster, constraints, top=top, other_families=True, part=part,
                         progress=advance)


def _build_engine(name: str, cluster: Cluster, defaults: JobDefaults, constraints: dict[str, Constraint], top: int,
                  time_limit: float | None, found: EngineCandidates) -> object:
    """Engine `name`'s bounded build in a worker (bounded.bounded_build), handed back where some
    plan it built fits: the search over it needs CP-SAT, which the parent loads once for every
    engine rather than each worker for its own (0.1 s of a second's answer). Where none fits,
    the search here, the whole table with it (the explanation reads every layout)."""
    from planner.search.bounded import bounded_build

    start = time.perf_counter()
    told = 0

    def advance(done: int) -> None:
        nonlocal told
        if done == 0 or done - told >= PROGRESS_EVERY or done == len(found.plans):
            told = done
            tell((name, done, len(found.plans)))
    with memo.session():
        built = bounded_build(found.plans, found.workload, cluster, constraints, top=top, other_families=True,
                              progress=advance)
        if any(point is not None for _, point in built.points):
            return built
        outcome = finish_bounded(name, found, cluster, defaults, constraints, [built], top=top, time_limit=time_limit,
                                 start=start, table=lambda plans, wl: build_table(plans, wl, cluster, "step-time"))
    tell((name, None, len(found.plans)))
    return outcome


@dataclass(frozen=True)
class _ShareProgress:
    """The plans a share of an engine's build has done (its engine's bar adds up the shares')."""

    name: str
    index: int
    done: int
    total: int


def _search_engine(name: str, workload: Workload, cluster: Cluster, defaults: JobDefaults,
                   constraints: dict[str, Constraint], objective: str, top: int, solver: str,
                   time_limit: float | None, table_jobs: int = 1,
                   candidates: EngineCandidates | None = None, whole_table: bool = False) -> EngineOutcome:
    """One engine's search (search_engine), telling how far its cost table is (parallel.tell);
    a whole table built by `table_jobs` worker processes (never from inside one)."""
    told = 0

    def advance(done: int, total: int) -> None:
        nonlocal told
        if done == 0 or done - told >= PROGRESS_EVERY or done == total:
            told = done
            tell((name, done, total))
        if done == total:
            tell((name, None, total))  # the table is built: the solver runs

    def table(plans, wl):
        advance(0, len(plans))
        return build_table(plans, wl, cluster, objective, lambda done: advance(done, len(plans)), jobs=table_jobs)
    outcome = search_engine(name, workload, cluster, defaults, constraints, objective=objective, top=top,
                            solver=solver, time_limit=time_limit, table=table, candidates=candidates,
                            progress=advance, whole_table=whole_table)
    # The layouts are read where every plan is drawn (whole_table) or nothing fits (the
    # explanation); otherwise they would only cross back from a worker process, pickled.
    return outcome if whole_table or outcome.best is None else replace(outcome, rows=())


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


PROGRESS_EVERY = 50
"""Plans between two progress reports of a cost table (each redraws the bar, or crosses a pipe)."""


class _EngineBars:
    """A progress bar per engine on stderr (rich; off when not a TTY): its cost table's plans
    evaluated, then `solving` until its search is done. It appears once the first second has
    passed, so after the worker processes started from a process without threads (rich redraws
    from a thread of its own)."""

    DELAY_S = 1.0

    def __init__(self, names: tuple[str, ...], enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.several = len(names) > 1
        self.start = time.perf_counter()
        self.state: dict[str, tuple[int | None, int]] = {}
        self.shares: dict[str, dict[int, int]] = {}  # engine -> its shares' plans done
        self.bar: Progress | None = None
        self.tasks: dict = {}

    def update(self, message: tuple[str, int | None, int] | _ShareProgress) -> None:
        if isinstance(message, _ShareProgress):
            shares = self.shares.setdefault(message.name, {})
            shares[message.index] = message.done
            message = (message.name, sum(shares.values()), message.total)
        name, done, total = message
        self.state[name] = (done, total)
        self.tick()

    def done(self, name: str) -> None:
        self.state.pop(name, None)
        if self.bar is not None and name in self.tasks:
            self.bar.remove_task(self.tasks.pop(name))

    def tick(self) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            if time.perf_counter() - self.start < self.DELAY_S:
                return
            # Loaded only for a bar drawn: a search answering within the delay, or to a pipe, never needs it.
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            from planner.report import tables

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=tables.console(stderr=True), transient=True)
            self.bar.start()
        for name, (done, total) in self.state.items():
            what = f"{name} plans" if self.several else "plans"
            label = f"solving ({name})" if done is None and self.several else "solving" if done is None \
                else f"evaluating {what}"
            if name not in self.tasks:
                self.tasks[name] = self.bar.add_task(label, total=total)
            self.bar.update(self.tasks[name], description=label, completed=total if done is None else done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


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
