"""Capacity planning: for GPU counts from the fewest that fit upward, the best plan, its
throughput, and the days and cost to train the job's token budget.

Each GPU count is a full search (the same one `planner solve` runs); the counts are the fewest
that fit (found with the memory model alone, `search.sizing`) and then doublings of it.
A loop, not GPU count and type as solver variables: every (type, count) needs its own layout
table (dp, the network and the stage coefficients change with the count), building the tables
is most of the time (CP-SAT takes a tenth of a second per count on the reference cases,
benchmarks/solve.py), and the table wants the best plan of every row, not one optimum. Each
row's table is built only as far as its best plan needs (search/bounded.py).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hardware import Accelerator
from planner.cost import memo
from planner.cost.cluster import Cluster
from planner.cost.evaluate import Evaluation
from planner.cost.workload import Workload
from planner.search import JobDefaults, parallel, search
from planner.search.bounded import best_plan_search
from planner.search.objectives import bounded_applies
from planner.search.sizing import grown, smallest_fitting_cluster, some_plan_fits
from planner.search.space import candidates
from planner.spec.job import Constraint

SECONDS_PER_DAY = 86_400
FALLBACK_NIC_GBPS = 100.0
"""Scale-out per node for parts without a typical training NIC in the catalog: one 100 Gbps
Ethernet port (PCIe workstation parts: RTX, L4, L40S)."""


@dataclass(frozen=True)
class CapacityRow:
    gpu: str
    gpus: int
    nodes: int
    best: Evaluation | None
    """The best plan at this size, or None when nothing fits or no layout divides the batch."""
    price_per_gpu_hour: float | None
    tokens: float | None
    """The job's token budget."""

    @property
    def tokens_per_s(self) -> float:
        return self.best.time.tokens_per_s if self.best else 0.0

    @property
    def days(self) -> float | None:
        if self.best is None or not self.tokens:
            return None
        return self.tokens / self.tokens_per_s / SECONDS_PER_DAY

    @property
    def cost(self) -> float | None:
        if self.days is None or self.price_per_gpu_hour is None:
            return None
        return self.days * 24 * self.gpus * self.price_per_gpu_hour


def cluster_for(gpu: Accelerator, template: Cluster | None, price: float | None) -> Cluster:
    """One node of `gpu`: the template's node and network when given, else the catalog's typical
    node (GPUs per node, one NIC per GPU at the part's typical rate, InfiniBand)."""
    if template is not None:
        domain = max(template.scale_up_domain, gpu.scale_up_domain) \
            if gpu.scale_up_domain > template.gpus_per_node else template.gpus_per_node
        return Cluster(
            gpu=gpu, gpus_per_node=template.gpus_per_node, nodes=1, scale_up_kind=gpu.scale_up_kind,
            scale_up_domain=domain, scale_up_bandwidth=gpu.scale_up_bandwidth,
            per_peer_bandwidth=gpu.per_peer_bandwidth, nic_kind=template.nic_kind,
            nic_bandwidth_per_node=template.nic_bandwidth_per_node, nics_per_node=template.nics_per_node,
            memory_reserve=template.memory_reserve, host_memory=template.host_memory,
            price_per_gpu_hour=price if price is not None else template.price_per_gpu_hour)
    gpn = gpu.typical_gpus_per_node
    if gpu.nic_gbps_per_gpu:
        nic_kind, nics, per_node = "infiniband", gpn, gpu.nic_gbps_per_gpu * 1e9 / 8 * gpn
    else:
        nic_kind, nics, per_node = "ethernet", 1, FALLBACK_NIC_GBPS * 1e9 / 8
    return Cluster(
        gpu=gpu, gpus_per_node=gpn, nodes=1, scale_up_kind=gpu.scale_up_kind,
        scale_up_domain=gpu.scale_up_domain if gpu.scale_up_domain > gpn else gpn,
        scale_up_bandwidth=gpu.scale_up_bandwidth, per_peer_bandwidth=gpu.per_peer_bandwidth,
        nic_kind=nic_kind, nic_bandwidth_per_node=per_node, nics_per_node=nics,
        memory_reserve=0, host_memory=None, price_per_gpu_hour=price)


def sizes_to_try(workload: Workload, node: Cluster, defaults: JobDefaults, constraints: dict[str, Constraint],
                 max_gpus: int) -> list[Cluster]:
    """The fewest GPUs that fit, then doublings up to `max_gpus`.

    Inside one node the counts are powers of two from 1 GPU; beyond it, whole nodes.
    """
    sizes: list[Cluster] = []
    gpn = node.gpus_per_node
    count = 1
    while count < gpn and count <= max_gpus:
        small = node.with_size(1, count)
        if sizes or some_plan_fits(workload, small, defaults, constraints):
            sizes.append(small)
        count *= 2
    if gpn > max_gpus:
        return sizes
    first = node if (sizes or some_plan_fits(workload, node, defaults, constraints)) else \
        smallest_fitting_cluster(workload, node, defaults, constraints)
    if first is None:
        return sizes
    factor = 1
    while first.world * factor <= max_gpus:
        sizes.append(grown(first, factor))
        factor *= 2
    return sizes


def plan_capacity(workload: Workload, defaults: JobDefaults, constraints: dict[str, Constraint],
                  nodes: list[Cluster], *, max_gpus: int, objective: str = "step-time",
                  solver: str = "cp-sat", progress: Callable[[str], None] | None = None,
                  jobs: int = 1) -> list[CapacityRow]:
    """One row per GPU type and GPU count; `progress` names each size searched. The terms that do
    not read the cluster (a stage's activations, planner/cost/memo.py) are computed once for
    every size and type (once per worker process with `jobs` > 1)."""
    def searched(_, cluster: Cluster, *counts: int) -> None:
        progress(f"{cluster.gpu.id} × {cluster.world}")

    return plan_capacities([workload], defaults, constraints, nodes, max_gpus=max_gpus, objective=objective,
                           solver=solver, progress=searched if progress is not None else None, jobs=jobs)[0]


def plan_capacities(workloads: list[Workload], defaults: JobDefaults, constraints: dict[str, Constraint],
                    nodes: list[Cluster], *, max_gpus: int, objective: str = "step-time", solver: str = "cp-sat",
                    progress: Callable[[int, Cluster, int, int], None] | None = None,
                    jobs: int = 1) -> list[list[CapacityRow]]:
    """The rows of each workload (the job as each engine runs it), as `plan_capacity` gives them.

    The sizes (memory model only, no solver) are found here first, in one memo session: a GPU
    type's sizing reuses the terms the previous one memoized (a stage's activations do not read
    the cluster; the 405B reference case sizes A100 in 0.3 s after H100, 0.8 s alone), and
    forked workers inherit them. Then every search (workload × GPU type × count) is a task of
    its own for `jobs` worker processes (search/parallel.py): fine tasks share a few cores best,
    as one engine's largest searches take ten times its smallest. `progress(workload index,
    cluster, searches done, searches in all)` after each search."""
    with memo.session():
        sizes = {(w, n): sizes_to_try(workload, node, defaults, constraints, max_gpus)
                 for w, workload in enumerate(workloads) for n, node in enumerate(nodes)}
        tasks = [(w, n, i) for (w, n), found in sizes.items() for i in range(len(found))]
        best: dict[tuple[int, int, int], Evaluation | None] = {}
        shared = (*workloads, *(cluster for found in sizes.values() for cluster in found), defaults, constraints)
        with parallel.Workers(min(jobs, len(tasks)), shared=shared) as workers:
            for w, n, i in tasks:
                workers.submit((w, n, i), _best_plan, workloads[w], sizes[w, n][i], defaults, constraints,
                               objective, solver)
            for (w, n, i), ev in workers.results():
                best[w, n, i] = ev
                if progress is not None:
                    progress(w, sizes[w, n][i], len(best), len(tasks))
    return [_rows(workload, [(node, sizes[w, n], [best[w, n, i] for i in range(len(sizes[w, n]))])
                             for n, node in enumerate(nodes)])
            for w, workload in enumerate(workloads)]


def _best_plan(workload: Workload, cluster: Cluster, defaults: JobDefaults, constraints: dict[str, Constraint],
               objective: str, solver: str) -> Evaluation | None:
    # The row shows the best plan alone: no runners-up, no other families to compare. For the
    # step time, the table is built only where a plan could beat the best found (bounded.py).
    if bounded_applies(objective, solver):
        result, _ = best_plan_search(candidates(workload, cluster, defaults, constraints), workload, cluster,
                                     defaults, constraints)
    else:
        result = search(workload, cluster, defaults, constraints, objective=objective, top=1, solver=solver,
                        other_families=False)
    return result.plans[0] if result.plans else None


def _rows(workload: Workload, found: list[tuple[Cluster, list[Cluster], list[Evaluation | None]]]) -> list[CapacityRow]:
    rows = []
    for node, sizes, bests in found:
        if not sizes:
            rows.append(CapacityRow(gpu=node.gpu.id, gpus=0, nodes=0, best=None,
                                    price_per_gpu_hour=node.price_per_gpu_hour, tokens=workload.tokens))
        for cluster, ev in zip(sizes, bests):
            rows.append(CapacityRow(gpu=cluster.gpu.id, gpus=cluster.world, nodes=cluster.nodes, best=ev,
                                    price_per_gpu_hour=cluster.price_per_gpu_hour, tokens=workload.tokens))
    return rows
