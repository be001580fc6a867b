"""One search per engine, and the engines compared: with `framework: auto` every engine that can
run the job is searched (its own candidates, memory and time traits), the plans ranked together,
and each engine's best plan set against the winner's (step time ratio, headroom), or the reason
it cannot run the job.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from planner.cost import memo
from planner.cost.cluster import Cluster
from planner.cost.evaluate import Evaluation
from planner.cost.plan import Plan
from planner.cost.workload import JobDefaults, Workload
from planner.engines.profiles import PROFILES, cannot_run, engine_workload
from planner.search import exact_objective, reasons, search
from planner.search.explain import explain_infeasible
from planner.search.objectives import bounded_applies
from planner.search.result import PHASES, SolveResult
from planner.search.space import candidates, default_optimizers, default_precisions
from planner.spec.job import Constraint

if TYPE_CHECKING:
    from planner.search.layouts import Layout  # numpy: loaded with the first table, not for the reports


@dataclass(frozen=True)
class EngineOutcome:
    """One engine's search: its result, or why it cannot run the job."""

    framework: str
    workload: Workload
    """The job as this engine runs it (its traits)."""
    result: SolveResult | None
    """None when the engine cannot run the job at all (`cannot_run`)."""
    rows: tuple[Layout, ...] = ()
    cannot_run: str | None = None
    explanation: str | None = None
    """Why no plan of this engine fits, when none does."""

    @property
    def title(self) -> str:
        return PROFILES[self.framework].title

    @property
    def best(self) -> Evaluation | None:
        return self.result.plans[0] if self.result is not None and self.result.plans else None

    @property
    def why_not(self) -> str | None:
        """Why this engine has no plan: it cannot run the job, or nothing of it fits."""
        if self.cannot_run:
            return self.cannot_run
        if self.best is None:
            if self.result.status == "time limit" and not self.explanation:
                return "the solver's time limit ran out before it found a plan"
            return self.explanation or ("no plan fits within the job's constraints"
                                        if any(c.startswith("constraints.") for c in self.result.conflict)
                                        else "no plan fits in memory")
        return None


@dataclass(frozen=True)
class EngineComparison:
    """An engine's best plan against the winning engine's (JSON `engines`)."""

    framework: str
    title: str
    best: Evaluation | None
    step_time_ratio: float | None
    """Its best step time over the winner's (1.0 for the winner)."""
    headroom: int | None
    """Bytes left on its best plan's tightest GPU."""
    why_not: str | None

    def summary(self, winner: str | None) -> str:
        """`DeepSpeed: 31% slower, fits with 6.2 GiB headroom` (or why it cannot run)."""
        if self.best is None:
            return f"{self.title}: {self.why_not}"
        room = f"fits with {self.headroom / 2**30:.1f} GiB headroom"
        if self.framework == winner:
            return f"{self.title}: best, {room}"
        ratio = self.step_time_ratio
        pace = f"{ratio - 1:.0%} slower" if ratio >= 1.005 else (f"{1 - ratio:.0%} faster step" if ratio <= 0.995
                                                                  else "as fast")
        return f"{self.title}: {pace}, {room}"


@dataclass(frozen=True)
class EngineCandidates:
    """What an engine would search for the job: its candidate plans, or why it cannot run it."""

    name: str
    workload: Workload
    """The job as the engine runs it (engine_workload)."""
    plans: Sequence[Plan]
    """space.Candidates: each plan built when first read."""
    cannot_run: str | None = None


def engine_candidates(name: str, workload: Workload, cluster: Cluster, defaults: JobDefaults,
                      constraints: dict[str, Constraint]) -> EngineCandidates:
    wl = engine_workload(workload, name)
    why = cannot_run(name, wl, defaults, constraints, default_precisions(defaults.precision, cluster),
                     default_optimizers(defaults.optimizer))
    if why:
        return EngineCandidates(name, wl, (), why)
    return EngineCandidates(name, wl, candidates(wl, cluster, defaults, constraints))


def search_engine(name: str, workload: Workload, cluster: Cluster, defaults: JobDefaults,
                  constraints: dict[str, Constraint], *, objective: str, top: int, solver: str,
                  time_limit: float | None, table: Callable[[list, Workload], list[Layout]],
                  candidates: EngineCandidates | None = None, progress: Callable[[int, int], None] | None = None,
                  whole_table: bool = False) -> EngineOutcome:
    """Engine `name`'s search of the job. `table` builds the whole cost table of its candidates
    (the commands show a progress bar while it runs); `candidates`: engine_candidates when the
    caller has them. A step-time search by CP-SAT builds only the part of the table its plans
    can come from (bounded.py, telling `progress(plans done, plans)`), unless `whole_table` is asked
    for (a report draws every plan) or nothing fits (the explanation reads every layout)."""
    start = time.perf_counter()
    found = candidates or engine_candidates(name, workload, cluster, defaults, constraints)
    wl = found.workload
    if found.cannot_run:
        return EngineOutcome(name, wl, None, cannot_run=found.cannot_run)
    plans = found.plans
    if plans and bounded_applies(objective, solver) and not whole_table:
        from planner.search.bounded import bounded_build

        told = None
        if progress is not None:
            progress(0, len(plans))
            told = lambda done: progress(done, len(plans))  # noqa: E731
        with memo.session():
            built = bounded_build(plans, wl, cluster, constraints, top=top, other_families=True, progress=told)
            return finish_bounded(name, found, cluster, defaults, constraints, [built], top=top,
                                  time_limit=time_limit, table=table, start=start)
    return _whole_table(name, found, cluster, defaults, constraints, objective=objective, top=top, solver=solver,
                        time_limit=time_limit, table=table, start=start)


def finish_bounded(name: str, found: EngineCandidates, cluster: Cluster, defaults: JobDefaults,
                   constraints: dict[str, Constraint], parts: list, *, top: int, time_limit: float | None,
                   table: Callable[[list, Workload], list[Layout]], start: float) -> EngineOutcome:
    """Engine `name`'s step-time search from what its bounded build made (`parts`: bounded.Built,
    one, or one per share built in a worker process, bounded.Part); `start`: when it began."""
    from planner.search.bounded import bounded_result

    result, rows, whole = bounded_result(parts, found.plans, found.workload, cluster, defaults, constraints,
                                         top=top, other_families=True, time_limit=time_limit, start=start)
    # A table cut short holds every plan of the answer; where that answer is that nothing fits
    # (the solver's points all over capacity in the full models), the explanation wants the
    # whole table.
    if result.plans or whole:
        return EngineOutcome(name, found.workload, result, tuple(rows))
    return _whole_table(name, found, cluster, defaults, constraints, objective="step-time", top=top,
                        solver="cp-sat", time_limit=time_limit, table=table, start=start)


def _whole_table(name: str, found: EngineCandidates, cluster: Cluster, defaults: JobDefaults,
                 constraints: dict[str, Constraint], *, objective: str, top: int, solver: str,
                 time_limit: float | None, table: Callable[[list, Workload], list[Layout]],
                 start: float) -> EngineOutcome:
    plans = found.plans
    rows = table(list(plans), found.workload) if plans else []
    result = search(found.workload, cluster, defaults, constraints, objective=objective, top=top, solver=solver,
                    time_limit=time_limit, rows=rows, table_seconds=time.perf_counter() - start,
                    candidates=len(plans))
    return EngineOutcome(name, found.workload, result, tuple(rows))


def explained(outcome: EngineOutcome, cluster: Cluster, defaults: JobDefaults,
              constraints: dict[str, Constraint]) -> EngineOutcome:
    """The outcome with the full explanation of why none of its plans fits (explain.py: it
    searches other cluster sizes, so it is asked for only where it is shown)."""
    if outcome.result is None or outcome.result.status not in ("infeasible", "time limit"):
        return outcome
    start = time.perf_counter()
    text = explain_infeasible(list(outcome.rows), outcome.result.conflict, outcome.workload, cluster, defaults,
                              constraints)
    return replace(outcome, explanation=text,
                   result=outcome.result.with_explanation_time(time.perf_counter() - start))


def merged(outcomes: list[EngineOutcome], objective: str, top: int,
           searched_seconds: float | None = None) -> SolveResult:
    """The engines' plans ranked together by the full models: the best `top`.

    `searched_seconds`: the wall time of the engines' searches, which may have run at once
    (planner/search/parallel.py). The time is then that wall time, split between the table and
    the solver as the engines' own seconds in each are, and the explanation's after it: the
    phases add up to the time the user waited, not to the CPU seconds of the engines."""
    ran = [o for o in outcomes if o.result is not None]
    if len(ran) == 1 and len(outcomes) == 1:
        return ran[0].result
    plans = sorted((ev for o in ran for ev in o.result.plans), key=lambda ev: exact_objective(ev, objective))[:top]
    values = {id(ev): v for o in ran for ev, v in zip(o.result.plans, o.result.objective_values)}
    statuses = {o.result.status for o in ran if o.result.plans}
    if plans:
        status = "optimal" if statuses == {"optimal"} else "feasible"
    else:
        status = "time limit" if any(o.result.status == "time limit" for o in ran) else "infeasible"
    conflict = next((o.result.conflict for o in ran if o.result.conflict), ()) if not plans else ()
    timing = {phase: sum(o.result.timing.get(phase, 0.0) for o in ran) for phase in PHASES}
    own = timing["table"] + timing["solver"]
    if searched_seconds is not None and own:
        share = timing["table"] / own
        timing.update(table=searched_seconds * share, solver=searched_seconds * (1 - share))
    return SolveResult(
        status=status, objective=objective, plans=tuple(plans),
        solve_seconds=sum(timing.values()), timing=timing,
        candidates=sum(o.result.candidates for o in ran), conflict=conflict,
        reasons=reasons(tuple(plans), objective),
        objective_values=tuple(values.get(id(ev), 0) for ev in plans),
    )


def compare(outcomes: list[EngineOutcome]) -> list[EngineComparison]:
    """Each engine's best plan against the fastest engine's best (step time)."""
    bests = [o.best for o in outcomes if o.best is not None]
    fastest = min((ev.time.step for ev in bests), default=None)
    out = []
    for o in outcomes:
        ev = o.best
        out.append(EngineComparison(
            framework=o.framework, title=o.title, best=ev,
            step_time_ratio=ev.time.step / fastest if ev is not None and fastest else None,
            headroom=ev.capacity - ev.memory.total if ev is not None else None, why_not=o.why_not))
    return out


def explanation(outcomes: list[EngineOutcome]) -> str | None:
    """Why nothing fits on any engine: the first engine's explanation that can run the job, with
    the reasons of the others."""
    if any(o.best is not None for o in outcomes):
        return None
    ran = [o for o in outcomes if o.result is not None]
    if len(outcomes) == 1:
        return outcomes[0].explanation or outcomes[0].why_not
    lead = ran[0].explanation if ran else None
    others = [f"{o.title}: {o.why_not}" for o in outcomes if o is not (ran[0] if ran else None)]
    head = f"{ran[0].title}: {lead}" if lead else "No engine can run this job."
    return " ".join([head] + [f"{text}." if not text.endswith(".") else text for text in others])
