"""How many GPUs a job needs: the memory model alone, stopping at the first plan that fits."""
from __future__ import annotations

from planner.cost.cluster import Cluster
from planner.cost.memory import estimate_memory
from planner.cost.workload import Workload
from planner.search.layouts import KiB, fits_somewhere, memory_layout
from planner.search.partition import linear_lead
from planner.search.point import STAGE_KEYS
from planner.search.space import JobDefaults, candidate_plans
from planner.spec.job import Constraint

MAX_GROWTH = 64
"""Clusters up to this many times larger are tried."""


def some_plan_fits(workload: Workload, cluster: Cluster, defaults: JobDefaults,
                   constraints: dict[str, Constraint]) -> bool:
    """True as soon as one legal plan within the constraints fits in memory (memory model only):
    with the default partition, or, for pipelines recomputing every layer (the least memory),
    with any partition of the layers (layouts.fits_somewhere)."""
    lead = linear_lead(workload)
    for plan in candidate_plans(workload, cluster, defaults, constraints):
        if not all(c.allows(getattr(plan, k)) for k, c in constraints.items() if k not in STAGE_KEYS):
            continue
        if max(s.memory.total for s in estimate_memory(plan, workload, cluster)) <= cluster.capacity:
            return True
        if plan.parallel.pp > 1 and plan.recompute == "full" and lead is not None:
            layout, _, _ = memory_layout(plan, workload, cluster, lead)
            if layout.variable_partition and fits_somewhere(layout, cluster.capacity // KiB, workload.arch.num_layers):
                return True
    return False


def grown(cluster: Cluster, factor: int) -> Cluster:
    """The cluster with `factor` times the GPUs: more nodes, or a fuller node for small boxes."""
    if cluster.nodes > 1 or cluster.gpus_per_node >= 8:
        return cluster.with_size(cluster.nodes * factor)
    return cluster.with_size(1, cluster.gpus_per_node * factor)


def smallest_fitting_cluster(workload: Workload, cluster: Cluster, defaults: JobDefaults,
                             constraints: dict[str, Constraint]) -> Cluster | None:
    """Doubling up to 64x finds a size that fits; bisection then finds the fewest nodes
    (fit is close to monotone in the GPU count; divisibility of the batch can break ties)."""
    factor = 2
    while factor <= MAX_GROWTH and not some_plan_fits(workload, grown(cluster, factor), defaults, constraints):
        factor *= 2
    if factor > MAX_GROWTH:
        return None
    low, high = factor // 2, factor  # low does not fit, high does
    while high - low > 1:
        mid = (low + high) // 2
        if some_plan_fits(workload, grown(cluster, mid), defaults, constraints):
            high = mid
        else:
            low = mid
    return grown(cluster, high)
