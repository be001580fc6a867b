"""One plan, fully evaluated: memory per stage, time, and whether it fits."""
from __future__ import annotations

from dataclasses import dataclass

from planner.cost.cluster import Cluster
from planner.cost.memory import MemoryBreakdown, StageMemory, estimate_memory
from planner.cost.plan import Plan
from planner.cost.timing import CommBytes, TimeBreakdown, estimate_time
from planner.cost.workload import Workload

GiB = 2**30


@dataclass(frozen=True)
class Evaluation:
    plan: Plan
    stages: tuple[StageMemory, ...]
    capacity: int
    """Bytes a plan may use per GPU (usable memory less the cluster's reserve)."""
    host_capacity: int | None
    """Host bytes per node for offload, when the cluster says."""
    gpus_per_node: int
    time: TimeBreakdown
    comm_bytes: CommBytes

    @property
    def peak_stage(self) -> StageMemory:
        return max(self.stages, key=lambda s: s.memory.total)

    @property
    def memory(self) -> MemoryBreakdown:
        return self.peak_stage.memory

    @property
    def host_bytes_per_node(self) -> int:
        return max(s.host_bytes for s in self.stages) * self.gpus_per_node

    @property
    def fits_gpu(self) -> bool:
        return self.memory.total <= self.capacity

    @property
    def fits_host(self) -> bool:
        return self.host_capacity is None or self.host_bytes_per_node <= self.host_capacity

    @property
    def fits(self) -> bool:
        return self.fits_gpu and self.fits_host

    def why_not(self) -> str | None:
        """The overflow in words, or None when the plan fits."""
        if self.fits:
            return None
        if not self.fits_gpu:
            stage = self.peak_stage
            mem = stage.memory.as_dict()
            terms = {k: v for k, v in mem.items() if k != "total"}
            largest = max(terms, key=terms.get)
            where = f"pipeline stage {stage.stage}" if len(self.stages) > 1 else "each GPU"
            return (f"{where} needs {mem['total'] / GiB:.2f} GiB but {self.capacity / GiB:.2f} GiB is usable:"
                    f" {(mem['total'] - self.capacity) / GiB:.2f} GiB over; the largest term is"
                    f" {largest.replace('_', ' ')} at {terms[largest] / GiB:.2f} GiB")
        return (f"CPU offload needs {self.host_bytes_per_node / GiB:.1f} GiB of host memory per node but"
                f" {self.host_capacity / GiB:.1f} GiB is available: {(self.host_bytes_per_node - self.host_capacity) / GiB:.1f} GiB over")


def evaluate(plan: Plan, workload: Workload, cluster: Cluster) -> Evaluation:
    if plan.framework != workload.engine.name:
        # A plan is evaluated with its own engine's traits, so that memory and time describe the
        # stack that launches it (planner.engines.profiles.engine_workload).
        raise ValueError(f"a {plan.framework} plan evaluated with {workload.engine.name}'s traits")
    stages = tuple(estimate_memory(plan, workload, cluster))
    time, comm = estimate_time(plan, workload, cluster)
    return Evaluation(
        plan=plan,
        stages=stages,
        capacity=cluster.capacity,
        host_capacity=cluster.host_memory,
        gpus_per_node=cluster.gpus_per_node,
        time=time,
        comm_bytes=comm,
    )
