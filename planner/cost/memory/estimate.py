"""The peak bytes of every pipeline stage: model states sharded by ZeRO stage, offload to the host,
and the largest phase of the step (see the package docstring)."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property

from planner.cost import memo
from planner.cost.cluster import Cluster
from planner.cost.engine import deferred_sync
from planner.cost.memory.activations import inflight_microbatches, layer_activation_bytes, tokens_per_gpu
from planner.cost.memory.kernels import kernels
from planner.cost.memory.phases import activation_key, peak_phase
from planner.cost.memory.runtime import runtime_bytes
from planner.cost.memory.states import (
    MIXED,
    QUANT_WEIGHT_BYTES,
    deepspeed_fp32_grads,
    frozen_and_trainable,
    state_dtype_bytes,
    workload_state_bytes,
)
from planner.cost.partial import PartialTraining, partial_trainable
from planner.cost.plan import Plan
from planner.cost.precisions import fp8_weight_bytes, te_recipe
from planner.cost.shard import StageShard, end_shards, layer_shard, stage_shards
from planner.cost.workload import Workload
from planner.model.params import layer_params, lora_params


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes on one GPU at its peak (docs/cli.md, a plan's `memory`)."""

    weights: int
    gradients: int
    optimizer: int
    master_weights: int
    activations: int
    buffers: int
    runtime: int

    @property
    def total(self) -> int:
        return (self.weights + self.gradients + self.optimizer + self.master_weights
                + self.activations + self.buffers + self.runtime)

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}


@dataclass(frozen=True)
class StageMemory:
    stage: int
    layers: int
    recompute_layers: int
    memory: MemoryBreakdown
    host_bytes: int
    """Bytes this GPU keeps in host memory (CPU offload)."""
    phase: str = "backward start"
    """The phase of the step at which this GPU peaks: forward end, backward start, backward
    layers (recomputing or walking back through the layers) or optimizer step."""
    detail: dict[str, int] = field(default_factory=dict, compare=False, hash=False)
    """The terms of `memory` itemized at that phase (bytes), e.g. activations = layers +
    logits + logits_grad + autocast_weight_copies; optimizer = optimizer_states + optimizer_step_temp."""


def estimate_memory(plan: Plan, workload: Workload, cluster: Cluster, *,
                    partial: PartialTraining | None = None,
                    only_stages: tuple[int, ...] | None = None) -> list[StageMemory]:
    """Peak bytes per GPU for every pipeline stage.

    `partial`: train only these parameters of a full fine-tune (`PartialTraining`); None trains
    what `workload.training` says (everything, or the LoRA adapters). `only_stages`: only these
    pipeline stages, in order (the search probes the first, second and last)."""
    partial = _partial(workload, partial)
    sizes = _StateSizes.of(plan, workload, cluster)
    k = kernels(workload.engine, plan.precision, plan.zero)
    tokens = tokens_per_gpu(plan, workload)
    act_key = activation_key(plan, workload)  # the activations' memo key, the same for every stage
    stages = []
    for shard in stage_shards(plan, workload.arch, only_stages):
        terms, host = _stage_states(plan, workload, sizes, shard, partial)
        phase, memory_terms, detail = peak_phase(plan, workload, shard, tokens, k, terms, sizes.weight_b, partial,
                                                 act_key)
        live = sum(memory_terms.values())
        runtime_terms = runtime_bytes(plan, workload, cluster.gpu.id, live)
        runtime = sum(runtime_terms.values())
        detail = {**detail, **runtime_terms}
        stages.append(StageMemory(
            stage=shard.stage,
            layers=shard.num_layers,
            recompute_layers=plan.recomputed_layers(shard.stage, shard.num_layers),
            memory=MemoryBreakdown(**{name: int(v) for name, v in memory_terms.items()}, runtime=int(runtime)),
            host_bytes=int(host),
            phase=phase,
            detail={name: int(v) for name, v in detail.items()},
        ))
    return stages


STEP_STATES = ("weights", "fp8_weight_cache", "gradients", "fp32_gradient_copy", "optimizer_states", "master_weights")
"""The model states every GPU holds at its optimizer step, which every phase of `peak_phase` is at
least as large as or is itself (Megatron's and DeepSpeed's one phase holds them all)."""


def state_floor(plan: Plan, workload: Workload, cluster: Cluster) -> float:
    """Bytes below which no stage partition, recompute count or micro-batch of the plan brings its
    fullest GPU: the pipeline stages' mean of the model states they hold at the optimizer step
    (STEP_STATES), with the runtime's bytes at that many live bytes (affine in them,
    `runtime_bytes`). Activations and buffers, never negative, are left out. The states are
    linear in a stage's parameters, so their sum over the stages is at least that of the whole
    model as one stage (a tied embedding's copy on the last stage only adds), and the fullest
    stage holds at least the mean. The search sets a layout aside without building it where
    this is above the GPU's capacity (search/bounded.py; tests/test_bounded.py checks it under
    every layout's least memory)."""
    whole = stage_shards(plan.with_(pp=1, vpp=1, first_stage_layers=None, last_stage_layers=None), workload.arch)[0]
    states, _ = _stage_states(plan, workload, _StateSizes.of(plan, workload, cluster), whole, _partial(workload, None))
    held = sum(states[name] for name in STEP_STATES) / plan.parallel.pp
    return held + sum(runtime_bytes(plan, workload, cluster.gpu.id, held).values())


FORWARD_STATES = ("weights", "fp8_weight_cache", "optimizer_states", "master_weights")
"""The model states every phase of `peak_phase` holds: where gradients are not kept between
steps, a one-micro-batch step has none until its backward."""


def memory_floor(plan: Plan, workload: Workload, cluster: Cluster,
                 lows: tuple[int, int, int] | None = None) -> float:
    """Bytes below which no stage partition or recompute count of the plan brings its fullest GPU,
    the activations of its in-flight micro-batches counted with its model states.

    Every stage's peak holds, at one phase (`peak_phase`), the states of `held` (all of them
    where gradients persist or accumulate, FORWARD_STATES in a one-micro-batch step of the
    others) and its layers' saved activations: ι_s in-flight micro-batches (`inflight_
    microbatches`) of τ tokens, at least a_i bytes per token of each layer i it holds (its least:
    the checkpoint where every layer recomputes). Both are linear in the layers the stage holds:

        F_s = β_s + Σ_{i in s} (σ_i + ι_s·τ·a_i)

    (σ_i: layer i's states on one GPU; β_s: the embedding on the first stage, the output layer on
    the last). The fullest stage holds at least any weighted mean of the stages, and with weights
    w_s that sum to 1, Σ_s w_s·F_s ≥ Σ_s w_s·β_s + Σ_i min_s w_s·(σ_i + ι_s·τ·a_i), whatever the
    partition. The weights are those that balance stages of the mean layer, w_s ∝ 1/(σ + ι_s·τ·a),
    under which that bound is the least peak of a partition in real numbers. Far from the one-
    stage states' mean of `state_floor` where activations dominate (1F1B's first stage keeps p
    micro-batches). Also left out, never negative: buffers, the embedding's and the logits'
    activations, recompute's working set. The runtime's bytes are those at that many live bytes
    (affine in them). Never below `state_floor` (the optimizer step's states, where gradients
    appear in backward), which is all a plan training part of the model (`partial`) gets.
    With `lows`, the fewest layers the (first, middle, last) stages hold in every partition
    searched, also never below `_partitioned_floor`, which counts the middle stages' one whole
    count.
    The search sets a layout aside unbuilt where this is above the GPU's capacity
    (search/bounded.py; tests/test_bounded.py checks it under every layout's least memory)."""
    if workload.partial is not None:
        return state_floor(plan, workload, cluster)
    stages = _WeightedStages.of(plan, workload, cluster)
    least = _least_activation_bytes(plan, workload)
    kinds = [(count, sigma, least(first)) for first, count, sigma in stages.kinds]
    weights = stages.weights(kinds)
    held_bytes = sum(count * stages.least_share(weights, sigma, a) for count, sigma, a in kinds)
    held_bytes += stages.ends_share(weights)
    if lows is not None:
        held_bytes = max(held_bytes, _partitioned_floor(plan, stages, least, lows))
    bound = held_bytes + sum(runtime_bytes(plan, workload, cluster.gpu.id, held_bytes).values())
    return max(bound, memo.lookup(_STATE_FLOORS, (_state_key(plan), workload, cluster),
                                  lambda: state_floor(plan, workload, cluster)))


def _partitioned_floor(plan: Plan, stages: _WeightedStages, least: Callable[[int], float],
                       lows: tuple[int, int, int]) -> float:
    """Held bytes below which no partition the search gives the plan brings its fullest stage,
    where they take one form: p ≥ 3 stages split (f, m, …, m, l), the middle stages one whole
    count m (partition.partitions; Megatron's flags set the end stages alone), each class at
    least its low in `lows` (with interleaving, enough layers for the chunks), and every layer
    from the first stage's low on of one kind K (the stack's leading block, if any, on the first
    stage; a stage's layers are contiguous in the memory model, shard.stage_shards). The
    in-flight micro-batches ι_s fall from stage to stage, interleaved or not, so the second
    stage is the fullest middle one. Each stage holds at least F_s of
    `memory_floor` for its layers: the first β_0 + the layers before K's + (f − k)·c_0 (k: K's
    first layer), each middle m·c_1 and the last β_l + l·c_l, c_s = σ_K + ι_s·τ·a_K. For each
    whole m, with f + l = L − (p − 2)·m in real numbers, the fuller end stage is least where the
    two are equal (the first grows with f, the last falls): the fullest stage holds at least the
    larger of that and m·c_1, and the least of that over m is the floor. Where the weighted mean
    lets the middle stages hold a fraction of a layer each, this does not: DeepSeek-V3's 61
    layers on 32 stages leave one layer per middle stage and 31 to the ends. 0 where the plan's
    partitions do not take that form."""
    pp = plan.parallel.pp
    layers = stages.layers
    first_low, mid_low, last_low = lows
    if pp < 3:
        return 0.0
    tail = [kind for kind in stages.kinds if kind[0] + kind[1] == layers]  # the kind of the last layers
    if len(tail) != 1 or tail[0][0] > first_low:
        return 0.0
    k, _, sigma = tail[0]
    a = least(k)
    c_first, c_mid, c_last = (sigma + stages.inflight[s] * a for s in (0, 1, pp - 1))
    # The first stage's bytes at f layers: head + f·c_first.
    head = stages.ends[0] + sum(count * (s + stages.inflight[0] * least(first))
                                for first, count, s in stages.kinds if first != k) - k * c_first
    end = stages.ends[-1]
    floor = math.inf
    for mid in range(mid_low, (layers - first_low - last_low) // (pp - 2) + 1):
        rest = layers - (pp - 2) * mid
        first = (end + rest * c_last - head) / (c_first + c_last) if c_first + c_last > 0 else first_low
        first = min(max(first, first_low), rest - last_low)
        floor = min(floor, max(head + first * c_first, end + (rest - first) * c_last, mid * c_mid))
    return floor if floor < math.inf else 0.0


def least_recomputed_layers(plan: Plan, workload: Workload, cluster: Cluster, capacity: float) -> float:
    """The fewest layers a plan that recomputes whole layers (`full`) must recompute in all for
    every stage to fit in `capacity` bytes, at the least, over every partition and count per
    stage: 0 where keeping every layer's activations might fit (and for other policies), inf
    where recomputing every layer cannot.

    As in `memory_floor`, the fullest stage holds at least the weighted mean of the stages,
    Σ_s w_s·β_s + Σ_i c_i, where layer i adds c_i = min_s w_s·(σ_i + ι_s·τ·K_i) kept (K_i: the
    bytes per token it saves for backward) and min_s w_s·(σ_i + ι_s·τ·a_i) recomputed (a_i: its
    checkpoint's), whichever stage holds it; recomputing it lowers the mean by at most δ_i, the
    difference. Here the weights balance stages of the mean layer that keeps its activations.
    Every stage fits only where that mean does, with the runtime's bytes on it (affine in the
    live bytes): the fewest layers whose δ cover the excess, the largest first, in real numbers,
    then rounded up (the count is whole). Left out, never negative, as in `memory_floor`. The
    search adds this many layers' least forward to a plan's step-time floor before building it
    (search/bounded.py; tests/test_bounded.py checks it under every layout's least count)."""
    if plan.recompute != "full" or workload.partial is not None or plan.offload_activation_layers:
        return 0.0
    stages = _WeightedStages.of(plan, workload, cluster)
    keeping = layer_activation_bytes(workload.arch, plan.with_(recompute="none"), workload)
    least = _least_activation_bytes(plan, workload)
    kinds = [(count, sigma, keeping(first), least(first)) for first, count, sigma in stages.kinds]
    weights = stages.weights([(count, sigma, kept) for count, sigma, kept, _ in kinds])
    kept_bytes = stages.ends_share(weights)
    savings = []
    for count, sigma, kept, a in kinds:
        share = stages.least_share(weights, sigma, kept)
        kept_bytes += count * share
        savings.append((share - stages.least_share(weights, sigma, a), count))
    empty, per_byte = _runtime_line(plan, workload, cluster.gpu.id)
    excess = kept_bytes - (capacity - empty) / (1 + per_byte / 2**30)
    if excess <= 0:
        return 0.0
    layers = 0
    for saving, count in sorted(savings, reverse=True):
        if saving <= 0:
            break
        if excess <= count * saving:
            return float(math.ceil(layers + excess / saving - 1e-9))
        layers += count
        excess -= count * saving
    return math.inf


@dataclass(frozen=True)
class StageRecompute:
    """The fewest layers each of a plan's stages 0, 1 and p − 1 must recompute for the bytes
    `memory_floor` counts on it to fit, as a function of the layers it holds, where the plan's
    layers are a head block (every layer before the last kind's first: the leading dense block,
    layer 0) held by the first stage and one kind K after it: the partitions the search gives
    such a stack (partition.partitions).

    A stage s holding n layers of K (the first also the head) holds at least

        F_s = β_s + [s = 0]·Σ_head (σ_i + ι_s·τ·k_i) + n·(σ_K + ι_s·τ·k_K) − Σ_recomputed ι_s·τ·(k_i − a_i)

    (`memory_floor`'s terms; k_i: the bytes per token layer i saves for backward when it keeps
    its activations, a_i its checkpoint's where the policy recomputes whole layers), with the
    runtime's bytes at that many live bytes on it (affine in them). The fewest recomputed layers
    whose savings, the largest first, bring it under the capacity is what no partition or count
    of the search's goes under on that stage (tests/test_bounded.py checks the step floor this
    feeds, timing/partitioned.py, under every layout's best point)."""

    head_first: int
    """The first layer of kind K: the head's layers on the first stage."""
    ends: tuple[float, ...]
    """β of the stages listed (0, 1 and p − 1; 0 and 1 of two; the one): the embedding, nothing,
    the output layer (one stage: both)."""
    head: tuple[float, ...]
    """Each of those stages' bytes of the head, were it on it."""
    per_layer: tuple[float, ...]
    """σ_K + ι_s·τ·k_K of each."""
    head_savings: tuple[tuple[float, int], ...]
    """(k_i − a_i, layers) of the head's kinds, bytes per token."""
    saving: float
    """k_K − a_K, bytes per token."""
    inflight: tuple[float, ...]
    """ι_s·τ of each of those stages: the tokens of its in-flight micro-batches."""
    limit: float
    """Held bytes at which a stage's bytes with the runtime's reach the capacity."""
    full: bool
    """Whether the plan recomputes whole layers (else none can be recomputed)."""

    def least(self, stage: int, layers: int, head: bool) -> float:
        """The fewest layers the `stage`-th of the stages listed (`ends`) recomputes to fit holding
        `layers` of kind K, and the head where `head`: inf where recomputing them all does not."""
        excess = self.ends[stage] + layers * self.per_layer[stage] + (self.head[stage] if head else 0.0) - self.limit
        if excess <= 0:
            return 0.0
        if not self.full:
            return math.inf
        inflight = self.inflight[stage]
        if not head or not self.head_savings:
            saving = self.saving * inflight
            if saving <= 0 or excess > layers * saving:
                return math.inf
            return float(math.ceil(excess / saving - 1e-9))
        recomputed = 0
        for saving, count in self.savings:  # the largest first; count -1: the layers of kind K
            saving *= inflight
            count = layers if count < 0 else count
            if saving <= 0:
                break
            if excess <= count * saving:
                return float(recomputed + math.ceil(excess / saving - 1e-9))
            recomputed += count
            excess -= count * saving
        return math.inf

    @cached_property
    def savings(self) -> tuple[tuple[float, int], ...]:
        """(k_i − a_i, layers) of the head's kinds and (k_K − a_K, −1) of kind K, largest first."""
        return tuple(sorted(self.head_savings + ((self.saving, -1),), key=lambda s: -s[0]))

    @classmethod
    def of(cls, plan: Plan, workload: Workload, cluster: Cluster, capacity: float) -> StageRecompute | None:
        """None where the plan's layers are not a head block and one kind, or where what a stage
        holds is not its layers' (activation offload, partial fine-tuning)."""
        if workload.partial is not None or plan.offload_activation_layers:
            return None
        # What the micro-batch leaves alone, once per search: the states, the runtime, the policy.
        base = memo.lookup(_RECOMPUTE_BASES, (_state_key(plan), plan.recompute, plan.recompute_modules, plan.gas > 1,
                                              workload, cluster, capacity),
                           lambda: _RecomputeBase.of(plan, workload, cluster, capacity))
        if base is None:
            return None
        tokens = tokens_per_gpu(plan, workload)
        # Bytes per token read neither the states nor the pipeline's other stages: shared by the
        # plans of one activation key (their tokens too: memory.activations may read them).
        per_token = memo.lookup(_PER_TOKEN, (activation_key(plan, workload), tokens, base.firsts, workload),
                                lambda: _kept_and_least(plan, workload, base.firsts))
        inflight = tuple(inflight_microbatches(plan, s) * tokens for s in base.indices)
        kept_k, least_k = per_token[base.head_first]
        return cls(head_first=base.head_first, ends=base.ends,
                   head=tuple(sum(count * (s + n * per_token[first][0]) for first, count, s in base.head_kinds)
                              for n in inflight),
                   per_layer=tuple(base.sigma + n * kept_k for n in inflight),
                   head_savings=tuple((per_token[first][0] - per_token[first][1], count)
                                      for first, count, _ in base.head_kinds),
                   saving=kept_k - least_k, inflight=inflight, limit=base.limit, full=base.full)


_RECOMPUTE_BASES = memo.new_cache()


@dataclass(frozen=True)
class _RecomputeBase:
    """What `StageRecompute` reads of a plan but its micro-batch: kind K's first layer and held
    bytes σ_K, the head's kinds (first layer, layers, σ), the listed stages' indices and ends,
    the held bytes the capacity leaves, whether whole layers recompute, and the kinds' first
    layers."""

    head_first: int
    sigma: float
    head_kinds: tuple[tuple[int, int, float], ...]
    indices: tuple[int, ...]
    ends: tuple[float, ...]
    limit: float
    full: bool
    firsts: tuple[int, ...]

    @classmethod
    def of(cls, plan: Plan, workload: Workload, cluster: Cluster, capacity: float) -> _RecomputeBase | None:
        held = STEP_STATES if workload.engine.persistent_gradients or plan.gas > 1 else FORWARD_STATES
        kinds, stage_ends = memo.lookup(_FLOOR_STATES, (_state_key(plan), held, workload, cluster),
                                        lambda: _floor_states(plan, workload, cluster, held))
        layers = workload.arch.num_layers
        tail = [kind for kind in kinds if kind[0] + kind[1] == layers]
        if len(tail) != 1 or any(first > tail[0][0] for first, _, _ in kinds):
            return None
        k, _, sigma = tail[0]
        pp = plan.parallel.pp
        indices = (0,) if pp == 1 else (0, pp - 1) if pp == 2 else (0, 1, pp - 1)
        empty, per_byte = memo.lookup(_RUNTIME, (plan.parallel, plan.expert_tp, workload, cluster.gpu.id),
                                      lambda: _runtime_line(plan, workload, cluster.gpu.id))
        return cls(head_first=k, sigma=sigma, head_kinds=tuple(kind for kind in kinds if kind[0] != k),
                   indices=indices,
                   ends=tuple(stage_ends[0] if s == 0 else stage_ends[-1] if s == pp - 1 else 0.0 for s in indices),
                   limit=(capacity - empty) / (1 + per_byte / 2**30), full=plan.recompute == "full",
                   firsts=tuple(first for first, _, _ in kinds))


_PER_TOKEN = memo.new_cache()
_RUNTIME = memo.new_cache()


def _runtime_line(plan: Plan, workload: Workload, gpu_id: str) -> tuple[float, float]:
    """The runtime's bytes with no live bytes, and what each GiB of them adds (`runtime_bytes`
    is affine in them; it reads the plan's degrees and the experts' grid alone)."""
    empty = sum(runtime_bytes(plan, workload, gpu_id, 0.0).values())
    return empty, sum(runtime_bytes(plan, workload, gpu_id, float(2**30)).values()) - empty


def _kept_and_least(plan: Plan, workload: Workload, firsts: list[int]) -> dict[int, tuple[float, float]]:
    """(bytes per token a layer saves keeping its activations, its least: its checkpoint's where
    the policy recomputes whole layers) of the layers `firsts`, under the plan."""
    saving = layer_activation_bytes(workload.arch, plan, workload)
    if plan.recompute != "full":
        return {i: (saving(i), saving(i)) for i in firsts}
    keeping = layer_activation_bytes(workload.arch, plan.with_(recompute="none"), workload)
    return {i: (keeping(i), min(saving(i), keeping(i))) for i in firsts}


@dataclass(frozen=True)
class _WeightedStages:
    """What `memory_floor` and `least_recomputed_layers` weigh the pipeline stages by: each kind
    of layer's (first layer, layers, held state bytes σ on one GPU), the end stages' held
    states, and the tokens of each stage's in-flight micro-batches (fewer on every later stage)."""

    kinds: tuple[tuple[int, int, float], ...]
    ends: tuple[float, ...]
    inflight: tuple[float, ...]
    layers: int

    @classmethod
    def of(cls, plan: Plan, workload: Workload, cluster: Cluster) -> _WeightedStages:
        held = STEP_STATES if workload.engine.persistent_gradients or plan.gas > 1 else FORWARD_STATES
        kinds, ends = memo.lookup(_FLOOR_STATES, (_state_key(plan), held, workload, cluster),
                                  lambda: _floor_states(plan, workload, cluster, held))
        tokens = tokens_per_gpu(plan, workload) if not plan.offload_activation_layers else 0.0
        inflight = tuple(inflight_microbatches(plan, s) * tokens for s in range(plan.parallel.pp))
        return cls(kinds, ends, inflight, workload.arch.num_layers)

    def weights(self, kinds: list[tuple[int, float, float]]) -> tuple[float, float]:
        """(w_first, w_last) of weights summing to 1 over the stages that balance stages of the
        mean layer of `kinds` ((layers, σ, bytes per token)): w_s ∝ 1/(σ̄ + ι_s·τ·ā)."""
        states = sum(count * sigma for count, sigma, _ in kinds) / self.layers
        saved = sum(count * a for count, _, a in kinds) / self.layers
        inflight = self.inflight
        if states + inflight[-1] * saved <= 0:  # nothing held per layer
            return 1 / len(inflight), 1 / len(inflight)
        scale = sum(1 / (states + n * saved) for n in inflight)
        return 1 / ((states + inflight[0] * saved) * scale), 1 / ((states + inflight[-1] * saved) * scale)

    def least_share(self, weights: tuple[float, float], sigma: float, a: float) -> float:
        """min_s w_s·(σ + ι_s·τ·a): a layer's least weighted bytes over the stages. With the
        weights above, (σ + x_s·a) / ((σ̄ + x_s·ā)·scale) is monotonic in x_s: least at the
        first or the last stage."""
        return min(weights[0] * (sigma + self.inflight[0] * a), weights[1] * (sigma + self.inflight[-1] * a))

    def ends_share(self, weights: tuple[float, float]) -> float:
        """The end stages' weighted states: the embedding's and the output layer's."""
        ends = self.ends
        return weights[0] * ends[0] + weights[1] * ends[-1] if len(self.inflight) > 1 else ends[0]


_STATE_FLOORS = memo.new_cache()


_FLOOR_STATES = memo.new_cache()


def _state_key(plan: Plan) -> tuple:
    """The plan but what the model states never read: the micro-batch, recompute and the partition."""
    return plan.key_with(mbs=1, gas=1, recompute="none", recompute_layers=None, recompute_modules=None,
                         first_stage_layers=None, last_stage_layers=None, pipeline_runs=1)


def _floor_states(plan: Plan, workload: Workload, cluster: Cluster, held: tuple[str, ...]
                  ) -> tuple[tuple[tuple[int, int, float], ...], tuple[float, ...]]:
    """((first layer, layers, held bytes of one layer) of each kind of layer, the held bytes of
    the end stages' embedding and output layer) for `memory_floor`."""
    arch, p = workload.arch, plan.parallel
    if plan.zero == 3:
        # DeepSpeed ZeRO-3 holds one optimizer sub-group's fp32 gradients (deepspeed_fp32_grads),
        # a cap the sum of layers' shares would exceed.
        held = tuple(name for name in held if name != "fp32_gradient_copy")
    sizes = _StateSizes.of(plan, workload, cluster)

    def held_bytes(shard: StageShard) -> float:
        states, _ = _stage_states(plan, workload, sizes, shard, None)
        return sum(states[name] for name in held)
    kinds = memo.lookup(_LAYER_KINDS, (workload, plan.lora_rank), lambda: _layer_kinds(workload, plan.lora_rank))
    return (tuple((first, count, held_bytes(layer_shard(arch, first, p.tp, p.ep, plan.expert_tp)))
                  for first, count in kinds),
            tuple(held_bytes(shard) for shard in end_shards(arch, p.pp, p.tp, p.ep, plan.expert_tp)))


_LAYER_KINDS = memo.new_cache()


def _layer_kinds(workload: Workload, lora_rank: int) -> tuple[tuple[int, int], ...]:
    """(first layer, layers) of each kind of layer: alike in what one GPU's share of its states
    and its saved activations read of it, whatever the parallel degrees (its parameters by kind,
    whether it routes to experts, whether it is the first; with adapters, their parameters and
    the layer's by component)."""
    arch = workload.arch
    kinds: dict[tuple, list[int]] = {}
    for i in range(arch.num_layers):
        whole = layer_shard(arch, i, 1, 1, 1)  # layers alike whole are alike sharded
        kind: tuple = (whole.dense, whole.expert, whole.linear_dense, arch.is_moe_layer(i), i == 0)
        if workload.trains_adapters:
            kind += (lora_params(arch, i, lora_rank, workload.lora_targets), layer_params(arch, i))
        kinds.setdefault(kind, [i, 0])[1] += 1
    return tuple((first, count) for first, count in kinds.values())


def _least_activation_bytes(plan: Plan, workload: Workload):
    """Each layer's least saved bytes per token under the plan's recompute policy: recomputed
    where the policy recomputes whole layers (the checkpoint), else as it keeps them."""
    saving = layer_activation_bytes(workload.arch, plan, workload)
    if plan.recompute != "full":
        return saving
    keeping = layer_activation_bytes(workload.arch, plan.with_(recompute="none"), workload)
    return lambda i: min(saving(i), keeping(i))


def _partial(workload: Workload, partial: PartialTraining | None) -> PartialTraining | None:
    partial = partial if partial is not None else workload.partial
    if partial is not None and workload.trains_adapters:
        raise ValueError("partial fine-tuning and LoRA adapters do not combine; choose one")
    return partial


@dataclass(frozen=True)
class _StateSizes:
    """What a plan's stages read to size their model states: bytes per parameter of each state,
    the ZeRO shard groups, and whether gradients wait for the pipeline run's end."""

    weight_b: float
    grad_b: float
    master_b: float
    fp32_grad_b: float
    opt_b: float
    fp8_copy_b: float
    dp_shard: int
    expert_dp_shard: int
    deferred: bool

    @classmethod
    def of(cls, plan: Plan, workload: Workload, cluster: Cluster) -> _StateSizes:
        weight_b, grad_b, master_b, fp32_grad_b, opt_b = workload_state_bytes(workload, plan, workload.arch.hidden)
        recipe = te_recipe(plan.precision, workload.engine.kernels)
        return cls(weight_b=weight_b, grad_b=grad_b, master_b=master_b, fp32_grad_b=fp32_grad_b, opt_b=opt_b,
                   fp8_copy_b=fp8_weight_bytes(recipe, cluster.gpu.id) if recipe else 0.0,
                   dp_shard=plan.parallel.dp * plan.parallel.cp,  # Megatron shards the optimizer over dp x cp
                   expert_dp_shard=plan.expert_dp, deferred=deferred_sync(plan, workload.engine))


def _stage_states(plan: Plan, workload: Workload, sizes: _StateSizes, shard: StageShard,
                  partial: PartialTraining | None) -> tuple[dict[str, float], float]:
    """The model states of one stage's GPU (bytes by name, those offloaded at 0.0) and its bytes in
    host memory."""
    engine = workload.engine
    weight_b, grad_b, master_b, fp32_grad_b, opt_b = (sizes.weight_b, sizes.grad_b, sizes.master_b,
                                                      sizes.fp32_grad_b, sizes.opt_b)
    dp_shard, expert_dp_shard = sizes.dp_shard, sizes.expert_dp_shard
    trainable, frozen, quantized = frozen_and_trainable(plan, workload, shard)
    if partial is not None:
        dense_trainable, expert_trainable = partial_trainable(plan, workload.arch, shard, partial)
        frozen_b = 2 if plan.precision in MIXED else weight_b
        frozen_bytes = (shard.total - dense_trainable - expert_trainable) * frozen_b
    elif workload.trains_adapters:
        dense_trainable, expert_trainable = trainable, 0.0
        # Frozen base weights stay in the compute dtype: no fp32 copy of a weight that never steps.
        frozen_b = 2 if plan.precision in MIXED else weight_b
        frozen_bytes = frozen * frozen_b + quantized * QUANT_WEIGHT_BYTES.get(plan.quant, weight_b)
    else:
        dense_trainable, expert_trainable = shard.dense, shard.expert
        frozen_bytes = 0.0

    def sharded(nbytes_per_param: float, from_stage: int) -> float:
        """Bytes of trainable state, divided over the DP group from ZeRO stage `from_stage` on."""
        if plan.zero >= from_stage:
            return nbytes_per_param * (dense_trainable / dp_shard + expert_trainable / expert_dp_shard)
        return nbytes_per_param * (dense_trainable + expert_trainable)

    # ZeRO-1 shards optimizer states and master weights, ZeRO-2 gradients too, ZeRO-3 weights
    # (frozen base weights included: DeepSpeed ZeRO-3 and FSDP shard every parameter).
    # FSDP under a pipeline schedule accumulates every micro-batch's gradients unsharded, in
    # the reduce dtype, until the run's last backward (EngineTraits.pipeline_deferred_sync).
    gradients = grad_b * (dense_trainable + expert_trainable) if sizes.deferred else sharded(grad_b, 2)
    terms = {
        "weights": sharded(weight_b, 3) + (frozen_bytes / dp_shard if plan.zero == 3 else frozen_bytes),
        "gradients": gradients,
        "fp32_gradient_copy": deepspeed_fp32_grads(plan, sharded(fp32_grad_b, 1), fp32_grad_b),
        "optimizer_states": sharded(opt_b, 1),
        "master_weights": sharded(master_b, 1),
        # PyTorch's foreach AdamW allocates one more copy of the (local) parameters in step():
        # torch._foreach_sqrt(exp_avg_sq) (torch/optim/adamw.py `_multi_tensor_adamw`).
        "optimizer_step_temp": (sharded(state_dtype_bytes(plan.precision), 1)
                                if engine.optimizer_step_copy and plan.optimizer in ("adamw", "adam") else 0.0),
    }
    terms["fp8_weight_cache"] = 0.0
    if sizes.fp8_copy_b:
        # Transformer Engine's 8-bit form of each linear weight (precisions.fp8_weight_bytes).
        # With --fp8-param-gather the parameters are those fp8 tensors (fp8_model_init), so it
        # replaces their 16-bit bytes; without, Megatron-Core passes `is_first_microbatch` and TE
        # casts each weight once per step into a workspace it keeps for the whole run
        # (module/base.py `get_weight_workspace`, cache_name "weight").
        if plan.fp8_param_gather:
            terms["weights"] += (sizes.fp8_copy_b - weight_b) * (
                shard.linear_dense / dp_shard + shard.expert / expert_dp_shard if plan.zero == 3
                else shard.linear_dense + shard.expert)
        else:
            terms["fp8_weight_cache"] = sizes.fp8_copy_b * (shard.linear_dense + shard.expert)
    host = 0.0
    if plan.offload == "params":
        # ZeRO-3 offload_param alone: the 16-bit parameter partitions live on the host and are
        # fetched per module (deepspeed/runtime/zero/partition_parameters.py, offload_config.py);
        # master weights, optimizer states and gradients stay on the GPU.
        host, terms["weights"] = terms["weights"], 0.0
    elif plan.offload in ("optimizer", "optimizer+params"):
        # ZeRO-Offload keeps fp32 states on the CPU and steps there (arXiv 2101.06840 §4). DeepSpeed
        # ZeRO-2/3 copies each reduced gradient partition straight into the fp32 gradients on the
        # host, for every sub-group (stage_1_and_2.py `async_inplace_copy_grad_to_fp32_buffer_from_gpu`,
        # stage3.py `partition_grads`): no 16-bit gradient partition is kept, and the host holds
        # 4 + 4 + 8 = 16 B/param/N, as DeepSpeed's estimator counts (before its 1.5 buffer factor).
        # FSDP2's CPUOffloadPolicy moves the sharded gradients with the parameters.
        if engine.offload_gradients == "host_fp32" and fp32_grad_b:
            terms["fp32_gradient_copy"] = sharded(fp32_grad_b, 1)
        moved = ["optimizer_states", "master_weights", "fp32_gradient_copy", "optimizer_step_temp"]
        if engine.offload_gradients == "host_fp32" and plan.zero >= 2:
            terms["gradients"] = 0.0
        if engine.offload_gradients == "with_params" and plan.offload == "optimizer+params":
            moved.append("gradients")
        if plan.offload == "optimizer+params":
            moved.append("weights")  # ZeRO-Infinity: parameters live on the host, fetched per layer
        for name in moved:
            host += terms[name] if name != "optimizer_step_temp" else 0.0
            terms[name] = 0.0
    return terms, host
