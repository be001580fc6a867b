"""Search the plan space: candidates -> CP-SAT (or brute force) -> ranked plans, or why none fits."""
from __future__ import annotations

import time
from collections.abc import Callable

from planner.cluster import Cluster
from planner.search.brute import solve_brute
from planner.search.cpsat import solve_cpsat
from planner.search.result import SolveResult
from planner.search.space import JobDefaults, candidate_plans
from planner.search.table import OBJECTIVES, Row, build_table, capacity_mib, host_capacity_mib
from planner.spec.job import Constraint
from planner.workload import Workload

SOLVERS = ("cp-sat", "brute")

__all__ = ["OBJECTIVES", "SOLVERS", "JobDefaults", "SolveResult", "candidate_table", "search"]


def candidate_table(workload: Workload, cluster: Cluster, defaults: JobDefaults,
                    constraints: dict[str, Constraint], objective: str,
                    progress: Callable[[int], None] | None = None) -> list[Row]:
    plans = list(candidate_plans(workload, cluster, defaults, constraints))
    return build_table(plans, workload, cluster, objective, progress)


def search(workload: Workload, cluster: Cluster, defaults: JobDefaults,
           constraints: dict[str, Constraint], *, objective: str = "step-time", top: int = 5,
           solver: str = "cp-sat", time_limit: float | None = None,
           rows: list[Row] | None = None) -> SolveResult:
    """The best `top` distinct plans under memory and the user's constraints."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}")
    start = time.perf_counter()
    if rows is None:
        rows = candidate_table(workload, cluster, defaults, constraints, objective)
    cap, host_cap = capacity_mib(cluster), host_capacity_mib(cluster)
    conflict: tuple[str, ...] = ()
    if solver == "brute":
        best = solve_brute(rows, constraints, cap, host_cap, top)
        status = "optimal" if best else "infeasible"
    elif solver == "cp-sat":
        status, best, conflict = solve_cpsat(rows, constraints, cap, host_cap, top, time_limit)
    else:
        raise ValueError(f"unknown solver {solver!r}; valid: {', '.join(SOLVERS)}")
    return SolveResult(
        status=status,
        objective=objective,
        plans=tuple(r.evaluation for r in best),
        solve_seconds=time.perf_counter() - start,
        candidates=len(rows),
        conflict=conflict,
    )
