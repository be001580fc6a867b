"""Search the plan space: candidates -> layouts with linear stage costs -> CP-SAT (or brute
force) -> ranked plans with the reasons the runners-up lose, or why none fits."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from planner.cost.cluster import Cluster
from planner.cost.evaluate import Evaluation, evaluate
from planner.cost.plan import Plan
from planner.cost.workload import JobDefaults, Workload
from planner.engines.profiles import PROFILES
from planner.search.objectives import OBJECTIVES, SOLVERS, exact_objective
from planner.search.result import SolveResult
from planner.spec.job import Constraint

if TYPE_CHECKING:
    from planner.search.layouts import Layout

# The table (numpy) and the solver (OR-Tools) load with the first search, not with this package:
# the commands that only read its names (objectives, solvers, how a plan is described) stay quick.


def launched(plan: Plan, num_layers: int) -> Plan:
    return PROFILES[plan.framework].launched(plan, num_layers)

__all__ = ["OBJECTIVES", "SOLVERS", "JobDefaults", "SolveResult", "candidate_table", "exact_objective", "search"]


def candidate_table(workload: Workload, cluster: Cluster, defaults: JobDefaults,
                    constraints: dict[str, Constraint], objective: str,
                    progress: Callable[[int], None] | None = None, screen: bool = True) -> list[Layout]:
    from planner.search.space import candidate_plans
    from planner.search.table import build_table

    plans = candidate_plans(workload, cluster, defaults, constraints)
    return build_table(plans, workload, cluster, objective, progress, screen)


def search(workload: Workload, cluster: Cluster, defaults: JobDefaults,
           constraints: dict[str, Constraint], *, objective: str = "step-time", top: int = 5,
           solver: str = "cp-sat", time_limit: float | None = None,
           rows: list[Layout] | None = None, table_seconds: float = 0.0,
           other_families: bool = True, bounds: list[int] | None = None,
           candidates: int | None = None) -> SolveResult:
    """The best `top` distinct layouts, each with its best partition and recompute counts.

    `rows`: the cost table when the caller built it, in `table_seconds`; the result's timing
    counts it with the solver's own seconds. `other_families` False leaves out the reasons the
    best plans of other (tp, pp) families lose (two more solves), for callers that show only
    the best plan. `bounds`: each row's lower bound for the objective (point.lower_bound), when
    the caller has them. `candidates`: the legal plans the rows were built from, when the caller
    built them (else the rows are counted)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}")
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; valid: {', '.join(SOLVERS)}")
    from planner.search.runners_up import known_points

    start = time.perf_counter()
    if rows is None:
        from planner.search.space import candidate_plans
        from planner.search.table import build_table

        plans = list(candidate_plans(workload, cluster, defaults, constraints))
        rows, candidates = build_table(plans, workload, cluster, objective), len(plans)
        table_seconds = time.perf_counter() - start
    start = time.perf_counter()
    with known_points():
        return _search_rows(rows, workload, cluster, constraints, objective, top, solver, time_limit, table_seconds,
                            other_families, bounds, candidates, start)


def _search_rows(rows: list[Layout], workload: Workload, cluster: Cluster, constraints: dict[str, Constraint],
                 objective: str, top: int, solver: str, time_limit: float | None, table_seconds: float,
                 other_families: bool, bounds: list[int] | None, candidates: int | None,
                 start: float) -> SolveResult:
    from planner.search.brute import solve_brute
    from planner.search.point import lower_bound, untimed_unfit
    from planner.search.table import capacity_kib, host_capacity_kib

    cap, host_cap = capacity_kib(cluster), host_capacity_kib(cluster)
    layers = workload.arch.num_layers
    conflict: tuple[str, ...] = ()
    if solver == "brute":
        points = solve_brute(rows, constraints, cap, host_cap, top, objective, layers)
        status = "optimal" if points else "infeasible"
    elif not constraints and rows and all(untimed_unfit(lay, cap, objective) for lay in rows):
        # The table itself proves that nothing fits: no layout fits anywhere in GPU memory
        # (layouts.fits_somewhere, exact for memory), and memory is then the solver's only
        # assumption, its whole core.
        status, points, conflict = "infeasible", [], ("memory",)
    else:
        from planner.search.cpsat import solve_cpsat

        # Each layout's lower bound, once per table: the solver's lazy rounds and the other
        # families' branch and bound both order the layouts by it.
        if bounds is None:
            bounds = [lower_bound(lay, objective, layers) for lay in rows]
        status, points, conflict = solve_cpsat(rows, constraints, cap, host_cap, top, objective, layers, time_limit,
                                               bounds)
    if conflict == ("time limit",):
        status = "time limit"  # ran out before a plan or a proof that none fits: not infeasibility
    # The models evaluate each plan in full and the plans are shown in that order: the stage
    # coefficients are exact for memory, while a DP collective's exposure, max(0, comm − overlap ×
    # compute), bends with the recompute count and the coefficients take its chord (at most a
    # few per cent over; tests/test_solver_agreement.py). A plan the full model would place
    # over capacity is dropped rather than shown.
    # Each plan as its engine launches it (a profile may round what its flags cannot say).
    evaluated = [(p, evaluate(launched(p.plan(layers), layers), workload, cluster)) for p in points]
    evaluated = sorted(((p, ev) for p, ev in evaluated if ev.fits_gpu), key=lambda pe: exact_objective(pe[1], objective))
    seen: set[tuple] = set()
    evaluated = [(p, ev) for p, ev in evaluated if not (ev.plan.key() in seen or seen.add(ev.plan.key()))]
    plans = tuple(ev for _, ev in evaluated)
    if points and not plans:
        status, conflict = "infeasible", ("memory",)
    why = reasons(plans, objective)
    if plans and solver == "cp-sat" and other_families:
        why += tuple(f"best of another family, {text}" for text in reasons(
            (plans[0],) + _other_families(rows, bounds, plans, constraints, cap, host_cap, objective, workload,
                                          cluster),
            objective))
    solver_seconds = time.perf_counter() - start
    return SolveResult(
        status=status,
        objective=objective,
        plans=plans,
        solve_seconds=table_seconds + solver_seconds,
        candidates=len(rows) if candidates is None else candidates,
        conflict=conflict,
        reasons=why,
        objective_values=tuple(p.cost for p, _ in evaluated),
        timing={"table": table_seconds, "solver": solver_seconds, "explain": 0.0},
    )


FAMILIES = 2
"""Other (tp, pp) families whose best plan is compared with the best in the reasons."""


def family(plan: Plan) -> tuple[int, int]:
    """The plan's shape for the reasons: its (tp, pp)."""
    return plan.tp, plan.pp


def _other_families(rows: list[Layout], bounds: list[int], plans: tuple[Evaluation, ...],
                    constraints: dict[str, Constraint],
                    cap: int, host_cap: int | None, objective: str, workload: Workload,
                    cluster: Cluster) -> tuple[Evaluation, ...]:
    """The best plans of the next (tp, pp) families: the runners-up of the top K are often the
    best layout with another ZeRO stage or recompute policy; these say why other shapes lose.
    Found as the runners-up are (runners_up.py), among the layouts of the other families."""
    from planner.search.runners_up import next_best

    layers = workload.arch.num_layers
    families = {family(ev.plan) for ev in plans}
    out: list[Evaluation] = []
    for _ in range(FAMILIES):
        rest = [i for i, lay in enumerate(rows) if family(lay.plan) not in families]
        found = next_best([rows[i] for i in rest], [bounds[i] for i in rest], 1, constraints, cap, host_cap,
                          objective, layers)
        if not found:
            break
        ev = evaluate(launched(found[0].plan(layers), layers), workload, cluster)
        families.add(family(ev.plan))
        if ev.fits_gpu:
            out.append(ev)
    return tuple(out)


TIME_TERMS = ("compute", "recompute", "bubble", "tp", "cp", "ep", "pp", "dp", "optimizer", "offload")


def reasons(plans: tuple[Evaluation, ...], objective: str) -> tuple[str, ...]:
    """Why each runner-up loses to the best plan: the step-time terms that differ most."""
    from planner.search.explain import describe_plan as describe  # explain imports this package
    if len(plans) < 2:
        return ()
    best = plans[0]
    out = []
    several = len({ev.plan.framework for ev in plans}) > 1  # name the engine when they differ

    def describe_plan(plan) -> str:
        return f"{plan.framework} {describe(plan)}" if several else describe(plan)

    for ev in plans[1:]:
        if objective == "memory":
            out.append(f"{describe_plan(ev.plan)}: {(ev.memory.total - best.memory.total) / 2**30:+.2f} GiB at its peak")
            continue
        diffs = {t: getattr(ev.time, t) - getattr(best.time, t) for t in TIME_TERMS}
        worse = sorted((t for t in diffs if diffs[t] > 0), key=lambda t: -diffs[t])[:2]
        better = sorted((t for t in diffs if diffs[t] < 0), key=lambda t: diffs[t])[:1]
        text = (f"{describe_plan(ev.plan)}: step {ev.time.step:.3f} s"
                f" ({(ev.time.step / best.time.step - 1):+.1%})")
        if worse:
            text += ", more " + " and ".join(f"{t} (+{diffs[t]:.3f} s)" for t in worse)
        if better:
            text += f", less {better[0]} ({diffs[better[0]]:.3f} s)"
        out.append(text)
    return tuple(out)
