"""A floor under a plan's step time over the partitions the search gives it: each stage holds
whole layers and recomputes at least what its memory needs.

The step floor of timing/floor.py is the stages' mean: it lets a stage hold a fraction of a layer
and leaves recompute to a count bounded over the whole pipeline (memory.estimate.
least_recomputed_layers), which the weighted mean of the stages lets fall to nothing where the
first stages, with the most micro-batches in flight, must recompute most of their layers.
Where the layers are a head block and one kind K after it (memory.estimate.StageRecompute), every
partition the search gives is (f, m, …, m, l) with each class at least its low (partition.
partitions), and the step waits on its slowest stage: at least step_microbatches × the largest
of the first, second and last stages' t_F + t_B (step.py `_stage`), each of which holds

    its layers' forward and backward, TP collectives and (unless the engine overlaps them) expert
    all-to-alls; for each layer it recomputes in full, a forward more (the least of its layers')
    and half of its collectives again (`redo`); selective recompute's forwards; the output layer
    and loss on the last stage

while everything else it adds is never negative. Each stage recomputes at least the fewest
layers that bring the bytes `memory_floor` counts on it under the capacity (StageRecompute.least);
the floor is the least over the partitions of the slowest of the three. The search reads it
before building a plan whose stages must recompute to fit (search/bounded.py), where the mean
floor sits a third under the plan's cost: DeepSeek-V3 on 16 stages recomputes three of the four
layers of its second stage.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from functools import cached_property

from planner.cost import memo
from planner.cost.cluster import Cluster
from planner.cost.comm import ep_traffic, total_seconds, tp_traffic
from planner.cost.memory.estimate import StageRecompute
from planner.cost.plan import Plan
from planner.cost.timing.compute import layer_seconds, output_seconds
from planner.cost.timing.floor import floor_key
from planner.cost.workload import Workload

_FLOORS = memo.new_cache()


def partitioned_step_floor(plan: Plan, workload: Workload, cluster: Cluster, capacity: float,
                           lows: tuple[int, int, int] | None) -> float:
    """Seconds no partition the search gives the plan (`lows`: the fewest layers of the first,
    middle and last stages, search/layouts.py TableBuilder.lows; None where the layers are not
    linear) and no recompute count that fits `capacity` bytes beats; 0.0 where the plan's layers
    are not a head block and one kind, inf where no partition fits. Memoized within a search."""
    if lows is None:
        return 0.0
    return memo.lookup(_FLOORS, (plan, workload, cluster, capacity, lows),
                       lambda: _floor(plan, workload, cluster, capacity, lows))


def _floor(plan: Plan, workload: Workload, cluster: Cluster, capacity: float, lows: tuple[int, int, int]) -> float:
    need = StageRecompute.of(plan, workload, cluster, capacity)
    if need is None or need.head_first > lows[0]:
        return 0.0
    # The layers' times are read only where some partition fits (most plans that fit nowhere
    # are told by the stages' caps alone, `_StageTimes.most`).
    layers, pp = workload.arch.num_layers, plan.parallel.pp
    stages = _StageTimes(lambda: memo.lookup(_TIMES, (floor_key(plan)[4:], plan.recompute, plan.recompute_modules,
                                                      need.head_first, workload, cluster),
                                             lambda: _LayerTimes(plan, workload, cluster, need.head_first)),
                         need, layers)
    head = need.head_first
    first_low, mid_low, last_low = lows
    if pp == 1:
        slowest = stages.first(layers - head, with_output=True) if stages.most(0) >= layers - head else math.inf
    elif pp == 2:
        slowest = _ends(stages, layers - head, first_low - head, last_low, last=1)
    else:
        slowest = math.inf
        # The middle counts from the most a middle stage holds (`_StageTimes.most`) down, the
        # most first (fewer leave more to the end stages), to the fewest that leave the end
        # stages no more than theirs add up to: any other count leaves some stage fitting at no
        # recompute count.
        ends_most = stages.most(0) + stages.most(2)
        fewest = max(mid_low, -(-(layers - head - ends_most) // (pp - 2)))
        for mid in range(min((layers - first_low - last_low) // (pp - 2), stages.most(1)), fewest - 1, -1):
            kind_layers = layers - (pp - 2) * mid - head
            if stages.ends_least(kind_layers) >= slowest:
                break
            middle = stages.kind_only(1, mid)
            if middle < slowest:
                slowest = min(slowest, max(middle, _ends(stages, kind_layers, first_low - head, last_low, last=2)))
    return plan.step_microbatches * slowest


def _ends(stages: _StageTimes, kind_layers: int, first_low: int, last_low: int, last: int) -> float:
    """The least over splits of `kind_layers` layers of kind K between the first stage (after the
    head, at least `first_low` of them) and the last (at least `last_low`) of the slower of the
    two: the first's time grows with its share, the last's falls, so the least is where they
    cross (a bisection), among the splits where each holds no more than it can (`most`)."""
    lo, hi = max(first_low, kind_layers - stages.most(last)), min(kind_layers - last_low, stages.most(0))
    if lo > hi:
        return math.inf
    while lo < hi:  # the fewest layers on the first stage where it is the slower
        mid = (lo + hi) // 2
        if stages.first(mid) >= stages.kind_only(last, kind_layers - mid, with_output=True):
            hi = mid
        else:
            lo = mid + 1
    best = max(stages.first(lo), stages.kind_only(last, kind_layers - lo, with_output=True))
    if lo > first_low:
        best = min(best, max(stages.first(lo - 1), stages.kind_only(last, kind_layers - lo + 1, with_output=True)))
    return best


class _LayerTimes:
    """What a stage's t_F + t_B floor reads of its layers, the same for every plan of one floor
    key (timing/floor.py: the degrees, sequence parallelism, the micro-batch, the precision, the
    experts' TP, the engine) and recompute policy: each layer's forward and backward with its
    collectives (and selective recompute), its forward, its collectives."""

    def __init__(self, plan: Plan, workload: Workload, cluster: Cluster, head_layers: int):
        arch, seq = workload.arch, workload.seq_len
        bare = plan.with_(recompute="none", recompute_layers=None, recompute_modules=None)
        self.tp = total_seconds(tp_traffic(bare, arch, seq, cluster), cluster)
        self.ep = 0.0 if workload.engine.ep_overlap else total_seconds(
            ep_traffic(bare, arch, seq, cluster, workload.engine.moe_dispatch), cluster)
        selective = plan.recompute == "selective"

        def layer(i: int) -> tuple[float, float, float]:
            t_f, t_b, t_sel = layer_seconds(plan, workload, cluster, i)
            comm = self.tp + (self.ep if arch.is_moe_layer(i) else 0.0)
            return t_f + t_b + comm + (t_sel if selective else 0.0), t_f, comm

        self.kind = layer(arch.num_layers - 1)
        self.kind_moe = arch.is_moe_layer(arch.num_layers - 1)
        heads = [layer(i) for i in range(head_layers)]
        self.head_seconds = sum(t for t, _, _ in heads)
        self.head_forwards = sorted(f for _, f, _ in heads)
        self.head_moe = sum(arch.is_moe_layer(i) for i in range(head_layers))
        self.head_layers = head_layers
        self.output = output_seconds(plan, workload, cluster)


_TIMES = memo.new_cache()


class _StageTimes:
    """t_F + t_B floors of one micro-batch on the stages `StageRecompute` lists, by the layers of
    kind K they hold (the first also the head), each recomputing the fewest layers that fit."""

    def __init__(self, times: Callable[[], _LayerTimes], need: StageRecompute, layers: int):
        self.need, self.layers, self._times = need, layers, times
        self._most: dict[int, int] = {}

    @cached_property
    def times(self) -> _LayerTimes:
        return self._times()

    def most(self, stage: int) -> int:
        """The most layers of kind K the `stage`-th stage listed holds at some recompute count
        (the first also the head), -1 where it holds none: what a stage cannot recompute of
        each layer only adds up as it holds more (StageRecompute.least is finite up to a count
        and infinite beyond). Found from StageRecompute.least alone: a bisection, from the
        count its terms give where the stage holds no head (checked on either side)."""
        if stage not in self._most:
            self._most[stage] = self._head_most() if stage == 0 else self._kind_most(stage)
        return self._most[stage]

    def _fits(self, stage: int, layers: int) -> bool:
        return self.need.least(stage, layers, head=stage == 0) < math.inf

    def _head_most(self) -> int:
        lo, hi = -1, self.layers
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._fits(0, mid):
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _kind_most(self, stage: int) -> int:
        need = self.need
        room = need.limit - need.ends[stage]
        # Each layer adds its held bytes, less what recomputing it saves where whole layers are.
        saving = need.saving * need.inflight[stage] if need.full and need.saving > 0 else 0.0
        per_layer = need.per_layer[stage] - saving
        count = self.layers if per_layer <= 0 else max(-1, min(self.layers, math.floor(room / per_layer)))
        while count < self.layers and self._fits(stage, count + 1):
            count += 1
        while count >= 0 and not self._fits(stage, count):
            count -= 1
        return count

    def ends_least(self, layers: int) -> float:
        """Under the slower of the first and the last stage sharing `layers` of kind K (the first
        also the head), whatever the split: their mean without recompute."""
        times = self.times
        return (times.head_seconds + layers * times.kind[0] + times.output) / 2

    def kind_only(self, stage: int, layers: int, with_output: bool = False) -> float:
        """A stage holding `layers` of kind K alone (`stage`: its index among those listed)."""
        recomputed = self.need.least(stage, layers, head=False)
        if recomputed == math.inf:
            return math.inf
        times = self.times
        t, forward, comm = times.kind
        return layers * t + recomputed * (forward + comm / 2) + (times.output if with_output else 0.0)

    def first(self, layers: int, with_output: bool = False) -> float:
        """The first stage holding the head and `layers` of kind K: it recomputes its cheapest
        forwards at the least (the engine recomputes a stage's first layers)."""
        recomputed = self.need.least(0, layers, head=True)
        if recomputed == math.inf:
            return math.inf
        times = self.times
        t = times.kind[0]
        redo = 0.0
        if recomputed:
            r = int(recomputed)
            moe = times.head_moe + (layers if times.kind_moe else 0)
            redo = (self._cheapest_forwards(r, layers)
                    + r * (times.tp + times.ep * moe / (times.head_layers + layers)) / 2)
        return times.head_seconds + layers * t + redo + (times.output if with_output else 0.0)

    def _cheapest_forwards(self, count: int, layers: int) -> float:
        """The least sum of `count` forwards among the head's and `layers` of kind K."""
        forward = self.times.kind[1]
        below = [f for f in self.times.head_forwards if f <= forward]
        above = [f for f in self.times.head_forwards if f > forward]
        taken = below[:count]
        of_kind = min(count - len(taken), layers)
        return sum(taken) + of_kind * forward + sum(above[:count - len(taken) - of_kind])
