"""How many GPUs a job needs: the memory model alone, at the most sharded plans of each size.

Whether anything fits on n GPUs is decided by the plans of least memory among the legal ones:
a plan that recomputes nothing never needs less than the same plan recomputing every layer
(each layer keeps its full activations instead of its input, and the one layer rebuilt in
backward is already among them), and a larger micro-batch never needs less than the smallest
(in-flight micro-batches times tokens per micro-batch), except where gradients are not kept
between steps: a step of one micro-batch then holds them only in backward, so that micro-batch
is kept too (space.candidate_plans `least_memory`). ZeRO stage, offload, sequence parallelism
and the parallel degrees are all kept: their memory is not ordered in general (ZeRO-3 adds
gathered-layer buffers). Those plans are evaluated most sharded first, so a size that fits is
found among the first few; tests/test_sizing.py holds their answer to the whole space's.
"""
from __future__ import annotations

from collections.abc import Iterator

from planner.cost import memo
from planner.cost.cluster import Cluster
from planner.cost.memory import estimate_memory
from planner.cost.plan import OFFLOAD_CHOICES, Plan
from planner.cost.workload import Workload
from planner.search.layouts import KiB, fits_somewhere, memory_layout
from planner.search.partition import linear_lead
from planner.search.point import STAGE_KEYS
from planner.search.space import JobDefaults, candidate_plans
from planner.spec.job import Constraint

MAX_GROWTH = 64
"""Clusters up to this many times larger are tried."""


_RECOMPUTE_MEMORY = {"full": 0, "selective": 1, "none": 2}
"""Recompute policies from least to most saved activations."""


def some_plan_fits(workload: Workload, cluster: Cluster, defaults: JobDefaults,
                   constraints: dict[str, Constraint], *, most_sharded: bool = True) -> bool:
    """True as soon as one legal plan within the constraints fits in memory (memory model only):
    with its own partition, or, for pipelines recomputing every layer (the least memory), with
    any partition of the layers (layouts.fits_somewhere). `most_sharded`: only the plans that can
    need the least memory (module docstring); False checks the whole space."""
    lead = linear_lead(workload)
    return any(_fits(plan, workload, cluster, lead)
               for plan in sizing_plans(workload, cluster, defaults, constraints, most_sharded))


def _fits(plan: Plan, workload: Workload, cluster: Cluster, lead: int | None) -> bool:
    # The first stage alone settles most plans that do not fit: it holds the embedding and the
    # most micro-batches in flight. Only when it fits are the other stages worked out.
    later = tuple(range(1, plan.parallel.pp))
    if _stages_fit(plan, workload, cluster, (0,)) and (not later or _stages_fit(plan, workload, cluster, later)):
        return True
    if plan.parallel.pp > 1 and plan.recompute == "full" and lead is not None:
        layout, _, _ = memory_layout(plan, workload, cluster, lead)
        return layout.variable_partition and fits_somewhere(layout, cluster.capacity // KiB, workload.arch.num_layers)
    return False


def _stages_fit(plan: Plan, workload: Workload, cluster: Cluster, stages: tuple[int, ...]) -> bool:
    return max(s.memory.total for s in estimate_memory(plan, workload, cluster, only_stages=stages)) <= cluster.capacity


def sizing_plans(workload: Workload, cluster: Cluster, defaults: JobDefaults, constraints: dict[str, Constraint],
                 most_sharded: bool = True) -> Iterator[Plan]:
    """The legal plans within the constraints whose fit decides a size: the most sharded first
    (offload, ZeRO stage, recompute, micro-batch, model-parallel ranks), or every plan."""
    plans = [p for p in candidate_plans(workload, cluster, defaults, constraints, least_memory=most_sharded)
             if all(c.allows(p.constraint_value(k)) for k, c in constraints.items() if k not in STAGE_KEYS)]
    if most_sharded:
        plans.sort(key=lambda p: (-OFFLOAD_CHOICES.index(p.offload), -p.zero, _RECOMPUTE_MEMORY[p.recompute], p.mbs,
                                  -p.parallel.tp * p.parallel.pp))
    yield from plans


FULL_NODE_GPUS = 8
"""GPUs in the servers a small box grows into (HGX and DGX baseboards, MI300X platforms)."""


def grown(cluster: Cluster, factor: int) -> Cluster:
    """The cluster with `factor` times the GPUs: more nodes; a small box first fills one server
    of FULL_NODE_GPUS, then grows by such servers (or by boxes like it when the count does not
    fill whole servers)."""
    if cluster.nodes > 1 or cluster.gpus_per_node >= FULL_NODE_GPUS:
        return cluster.with_size(cluster.nodes * factor)
    total = cluster.gpus_per_node * factor
    if total <= FULL_NODE_GPUS:
        return cluster.with_size(1, total)
    if total % FULL_NODE_GPUS == 0:
        return cluster.with_size(total // FULL_NODE_GPUS, FULL_NODE_GPUS)
    return cluster.with_size(factor, cluster.gpus_per_node)


def smallest_fitting_cluster(workload: Workload, cluster: Cluster, defaults: JobDefaults,
                             constraints: dict[str, Constraint]) -> Cluster | None:
    """Doubling up to 64x finds a size that fits; bisection then finds the fewest nodes
    (fit is close to monotone in the GPU count; divisibility of the batch can break ties).
    One memo session spans the sizes: the activation terms, most of the memory model's work,
    do not read the data-parallel size (memory/phases.py `activation_key`)."""
    with memo.session():
        return _smallest_fitting(workload, cluster, defaults, constraints)


def _smallest_fitting(workload: Workload, cluster: Cluster, defaults: JobDefaults,
                      constraints: dict[str, Constraint]) -> Cluster | None:
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
