"""A floor under a plan's step time, from the few terms every stage always waits for.

A stage's t_F + t_B (step.py `_stage`) holds its layers' forward and backward compute, their
tensor-parallel collectives (on the critical path, once more for what full recompute repeats)
and, unless the engine overlaps them, their expert all-to-alls; everything else it adds
(recompute, exposed DP, CP and offload transfers, buffer copies) is never negative. The slowest
stage sets the pace, and the slowest is at least the mean of the stages, whatever the partition
and the recompute counts: a step of (m + runs·(p − 1)/v) micro-batches lasts at least that
factor times the sum of those terms over every layer, divided by p. The search builds a table
in the order of this floor where it wants the best plan alone (search/bounded.py): it needs
neither the plan's memory nor its data-parallel traffic, and its terms are shared by the plans
of one shape (memoized within a search, planner/cost/memo.py).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from planner.cost import memo
from planner.cost.cluster import Cluster
from planner.cost.comm import ep_traffic, total_seconds, tp_traffic
from planner.cost.plan import Plan, step_microbatches
from planner.cost.timing.compute import least_layer_forward, model_compute
from planner.cost.workload import Workload

_MICROBATCH = memo.new_cache()


def floor_key(plan: Plan) -> tuple:
    """What `step_floor` reads of the plan: plans alike in it have the same floor (a search's
    plans differ in far more: the ZeRO stage, recompute, offload, the optimizer ...)."""
    return shape_floor_key(plan, plan.mbs, plan.gas, plan.parallel.sp, plan.precision)


def shape_floor_key(layout: Plan, mbs: int, gas: int, sp: bool, precision: str) -> tuple:
    """`floor_key` of the layout's plan with this micro-batch, count, sequence parallelism and
    precision, without building it (space.Candidates.screening): the rest it reads of the
    degrees, the pipeline's runs, the experts' TP and the engine, which those four leave alone."""
    p = layout.parallel
    return (p.pp, p.vpp, gas, layout.pipeline_runs, p.tp, p.cp, p.ep, sp, mbs, precision, layout.expert_tp,
            layout.framework)


def step_floor(plan: Plan, workload: Workload, cluster: Cluster) -> float:
    """Seconds no partition or recompute count of the plan's layout can beat: the stages' mean of
    the terms `_microbatch_floor` sums, times the micro-batches of a step with the pipeline's fill
    and drain (Plan.step_microbatches)."""
    return keyed_step_floor(floor_key(plan), lambda: plan, workload, cluster)


def keyed_step_floor(key: tuple, plan: Callable[[], Plan], workload: Workload, cluster: Cluster) -> float:
    """`step_floor` of the plans of floor key `key`, one of them built by `plan()` only where their
    micro-batch floor (the key less its first four) is not known yet (the search's screening
    reads keys off the candidates' rows: space.Candidates.screening)."""
    pp, vpp, gas, runs = key[:4]
    return step_microbatches(gas, runs, pp, vpp) * _keyed_microbatch_floor(key, plan, workload, cluster) / pp


def _keyed_microbatch_floor(key: tuple, plan: Callable[[], Plan], workload: Workload, cluster: Cluster) -> float:
    """`_microbatch_floor` of the plans of floor key `key`, memoized on the key less its first four."""
    return memo.lookup(_MICROBATCH, (key[4:], workload, cluster), lambda: _microbatch_floor(plan(), workload, cluster))


KEY_MBS = 8
"""The micro-batch's position in a floor key (`shape_floor_key`)."""


def _sequence_class(key: tuple) -> tuple:
    """What a floor key's micro-batch floor reads but the micro-batch: the degrees, sequence
    parallelism, the precision, the experts' TP and the engine."""
    return key[4:KEY_MBS] + key[KEY_MBS + 1:]


class FloorBounds:
    """Lower bounds under `keyed_step_floor` for many floor keys, at the price of one micro-batch
    floor per class of keys alike in all but the micro-batch (`_sequence_class`): the search
    orders its screening groups by their floors and stops at the first above its bar, so a group
    needs its exact floor only where a bound says it may come before that (search/bounded.py).

    The micro-batch floor per sequence, f(m)/m, never rises with the micro-batch m: each term
    `_microbatch_floor` sums is a + b·m with a ≥ 0, or the larger of such terms. A GEMM of F
    FLOPs at η∞·F/(F + F½) of peak (compute._Rate) takes F/(peak·η∞) + F½/(peak·η∞); a collective
    α + S/B with its payload S in proportion to the tokens (topology.collective_time: two-level
    and deduplicated forms alike); the fused attention's rows, the element-wise kernels' bytes
    and the loss grow with the tokens; the host's launches per layer are a constant that paces
    a layer only where it is the larger term (a negative remainder never does). So for m ≤ M,
    f(m) ≥ m·f(M)/M: each class is bounded from the floor at its largest micro-batch among the
    keys given (tests/test_bounded.py checks f(m)/m on every class of the reference and random
    jobs)."""

    SHARE = 1 - 1e-12
    """Of the bound counted: m·(f(M)/M) may round a unit above f(M) where m = M."""

    def __init__(self, keys: Iterable[tuple[tuple, int]], plan: Callable[[int], Plan], workload: Workload,
                 cluster: Cluster):
        """`keys`: the floor keys to bound, each with the index of one plan of it, `plan(index)`
        building that plan where its micro-batch floor is computed."""
        largest: dict[tuple, tuple[tuple, int]] = {}
        for key, index in keys:
            cls = _sequence_class(key)
            known = largest.get(cls)
            if known is None or key[KEY_MBS] > known[0][KEY_MBS]:
                largest[cls] = (key, index)
        self._per_sequence = {
            cls: self.SHARE * _keyed_microbatch_floor(key, lambda i=index: plan(i), workload, cluster) / key[KEY_MBS]
            for cls, (key, index) in largest.items()}
        self._bounds: dict[tuple, float] = {}  # by key: the groups of a search share most of theirs

    def bound(self, key: tuple) -> float:
        """Seconds under `keyed_step_floor` of floor key `key`, whose class was given."""
        found = self._bounds.get(key)
        if found is None:
            pp, vpp, gas, runs = key[:4]
            found = self._bounds[key] = (step_microbatches(gas, runs, pp, vpp) * key[KEY_MBS]
                                         * self._per_sequence[_sequence_class(key)] / pp)
        return found


def recompute_floor(plan: Plan, workload: Workload, cluster: Cluster) -> float:
    """Seconds each layer the plan's stages recompute adds to `step_floor` at the least: its
    forward again in its stage's t_F + t_B (the least over the layers, `least_layer_forward`),
    counted as the floor counts a layer, times the micro-batches of a step over the stages."""
    return plan.step_microbatches * least_layer_forward(plan, workload, cluster) / plan.parallel.pp


def _microbatch_floor(plan: Plan, workload: Workload, cluster: Cluster) -> float:
    """Seconds of one micro-batch summed over every pipeline stage: each layer's forward and
    backward compute (no recompute), the output layer and loss, each layer's TP collectives and,
    unless the engine overlaps them with compute (EngineTraits.ep_overlap), each MoE layer's
    all-to-alls. Memoized (`_keyed_microbatch_floor`) on what it reads: the tensor, context and expert
    degrees and sequence parallelism, the micro-batch, the precision, the experts' TP and the
    engine; not the pipeline (a sum over every layer, whatever the stages hold) nor the
    data-parallel size (the TP group is the innermost, the EP group's placement reads its own
    degrees: topology.py)."""
    arch, seq = workload.arch, workload.seq_len
    bare = plan.with_(recompute="none", recompute_layers=None, recompute_modules=None)
    compute = model_compute(bare, workload, cluster)
    tp = arch.num_layers * total_seconds(tp_traffic(bare, arch, seq, cluster), cluster)
    ep = 0.0
    if not workload.engine.ep_overlap:
        ep = arch.num_moe_layers * total_seconds(ep_traffic(bare, arch, seq, cluster, workload.engine.moe_dispatch),
                                                 cluster)
    return compute + tp + ep
