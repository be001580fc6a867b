"""The table both solvers read: the candidate plans as layouts with integer coefficients
(layouts.py), and the cluster's capacities in the same units (KiB)."""
from __future__ import annotations

from collections.abc import Callable, Iterable

from planner.cost import memo
from planner.cost.cluster import Cluster
from planner.cost.plan import Plan
from planner.cost.workload import Workload
from planner.search.layouts import KiB, Layout, build_layouts, plan_values
from planner.search.objectives import OBJECTIVES

__all__ = ["OBJECTIVES", "Layout", "build_table", "capacity_kib", "host_capacity_kib", "plan_values"]


def build_table(plans: Iterable[Plan], workload: Workload, cluster: Cluster, objective: str = "step-time",
                progress: Callable[[int], None] | None = None, screen: bool = True) -> list[Layout]:
    """Layouts of the given candidate plans; `screen`: see layouts.build_layouts. The model terms
    that read few plan keys are computed once for the table (planner/cost/memo.py)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}")
    with memo.session():
        return build_layouts(plans, workload, cluster, objective, progress, screen)


def capacity_kib(cluster: Cluster) -> int:
    return cluster.capacity // KiB


def host_capacity_kib(cluster: Cluster) -> int | None:
    return None if cluster.host_memory is None else cluster.host_memory // KiB
