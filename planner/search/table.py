"""The candidate table both solvers read: every legal plan with its costs as integers.

Costs come from the pure models (memory.py, timing.py) and enter the CP-SAT model as scaled
integers (DESIGN.md "How the solver earns its place"); brute force reads the same integers, so
the two agree exactly wherever both run.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from planner.cluster import Cluster
from planner.evaluate import Evaluation, evaluate
from planner.plan import PLAN_KEYS, Plan
from planner.workload import Workload

MiB = 2**20
OBJECTIVES = ("step-time", "comm", "memory", "cost")


def plan_values(plan: Plan) -> dict[str, object]:
    return {key: getattr(plan, key) for key in PLAN_KEYS}


def objective_value(objective: str, ev: Evaluation) -> int:
    """The integer the solver minimizes: microseconds, or MiB for `memory`."""
    if objective == "step-time":
        return int(round(ev.time.step * 1e6))
    if objective == "comm":
        return int(round(ev.time.comm_exposed * 1e6))
    if objective == "memory":
        return int(math.ceil(ev.memory.total / MiB))
    if objective == "cost":
        # GPU-microseconds per step: with the cluster fixed, this ranks like step time; capacity
        # planning varies the GPU count and so makes it differ.
        return int(round(ev.time.step * 1e6)) * ev.plan.parallel.world
    raise ValueError(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}")


@dataclass(frozen=True)
class Row:
    evaluation: Evaluation
    values: dict[str, object]
    memory_mib: int
    """Peak per-GPU bytes of the most loaded stage, rounded up to MiB."""
    host_mib: int
    """Host bytes per node for offload, rounded up to MiB."""
    cost: int


def build_table(plans: Iterable[Plan], workload: Workload, cluster: Cluster, objective: str,
                progress: Callable[[int], None] | None = None) -> list[Row]:
    rows = []
    for i, plan in enumerate(plans):
        ev = evaluate(plan, workload, cluster)
        rows.append(Row(
            evaluation=ev,
            values=plan_values(plan),
            memory_mib=int(math.ceil(ev.memory.total / MiB)),
            host_mib=int(math.ceil(ev.host_bytes_per_node / MiB)),
            cost=objective_value(objective, ev),
        ))
        if progress is not None:
            progress(i + 1)
    return rows


def capacity_mib(cluster: Cluster) -> int:
    return cluster.capacity // MiB


def host_capacity_mib(cluster: Cluster) -> int | None:
    return None if cluster.host_memory is None else cluster.host_memory // MiB
