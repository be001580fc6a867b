"""One optimizer step on the pipeline stage that sets the pace: compute, recompute, exposed
communication, bubble, optimizer and offload (see the package docstring)."""
from __future__ import annotations

from dataclasses import dataclass

from planner.cost import calibration as cal
from planner.cost import memo
from planner.cost.cluster import Cluster
from planner.cost.comm import (
    CommBytes,
    DPTraffic,
    Traffic,
    activation_bytes,
    cp_traffic,
    deepspeed_zero3_tensors,
    dp_traffic,
    ep_traffic,
    pp_traffic,
    total_link_bytes,
    total_seconds,
    total_wire_bytes,
    tp_traffic,
)
from planner.cost.engine import deferred_sync
from planner.cost.memory import layer_activation_bytes_per_token, workload_state_bytes
from planner.cost.plan import Plan, PlanError
from planner.cost.precisions import QUANTIZED_PRECISIONS
from planner.cost.shard import StageShard, stage_shards
from planner.cost.timing.compute import (
    StageCompute,
    compute_key,
    experts_in_8_bits,
    linear_flops_share,
    recompute_flops_per_token,
    stage_compute,
)
from planner.cost.timing.optimizer import (
    optimizer_and_offload,
    stage_params,
    updated_params,
)
from planner.cost.timing.pipeline import (
    Schedule,
    bubble_fraction,
    check_schedule,
    default_schedule,
)
from planner.cost.workload import Workload
from planner.model.flops import forward_flops_per_token, training_flops_per_token
from planner.model.frozen import evolve

MFU_PEAK_DTYPE = {"fp8": "bf16", "mxfp8": "bf16", "nvfp4": "bf16", "fp16": "fp16", "fp32": "fp32"}
"""Reference peak of MFU/HFU: the bf16 dense peak for every 16-bit precision (Megatron, PaLM
App. B report against the 16-bit peak), fp16's for fp16, and peak("fp32") for fp32 training.
fp8 and mxfp8 run the linear layers on the 8-bit units, whose peak is twice bf16's: their
reference is the peak each FLOP runs at (`reference_peak`), so that MFU stays a fraction of what
the hardware can do (against the bf16 peak an fp8 step may pass 1)."""


def reference_peak(plan: Plan, workload: Workload, cluster: Cluster) -> float:
    """FLOP/s of one GPU if every model FLOP ran at the peak of the unit that runs it: fp8's (or
    mxfp8's) for the linear layers of fp8 training (the routed experts only where the engine
    quantizes them: compute.experts_in_8_bits), the bf16 (fp16, fp32) peak for the rest."""
    gpu = cluster.gpu
    base = gpu.peak(MFU_PEAK_DTYPE.get(plan.precision, "bf16"))
    if plan.precision not in QUANTIZED_PRECISIONS or not gpu.supports(plan.precision):
        return base
    share = linear_flops_share(workload.arch, workload.seq_len, workload.layer_windows,
                               routed=experts_in_8_bits(workload.engine.kernels))
    return 1 / (share / gpu.peak(plan.precision) + (1 - share) / base)


@dataclass(frozen=True)
class TimeBreakdown:
    """One optimizer step, seconds, on the pipeline stage that sets the pace."""

    step: float
    """Wall time of a step: compute + recompute + tp + cp + ep + bubble + pp + dp + optimizer
    + offload."""
    compute: float
    """Forward and backward of all micro-batches on the slowest stage, without recompute."""
    recompute: float
    """Activation recomputation (full: one more forward; selective: the attention core)."""
    bubble: float
    """Pipeline fill and drain: (p−1)/v · (t_F + t_B) of one micro-batch [MEG21 §2.2]."""
    comm_exposed: float
    """tp + cp + ep + pp + dp: communication not hidden behind compute."""
    tp: float
    cp: float
    ep: float
    pp: float
    dp: float
    optimizer: float
    """Optimizer step on the GPU, HBM-bound."""
    offload: float
    """CPU offload: gradients down, parameters up, CPU optimizer (exposed)."""
    tokens_per_s: float
    mfu: float
    """Model FLOPs per second / (GPUs × reference peak); recompute not counted [PALM App. B]."""
    hfu: float
    """As MFU with the recompute FLOPs counted [SEL22 §6.3]."""
    model_flops: float
    """Model FLOPs of one step on all GPUs (training_flops_per_token × tokens)."""
    schedule: str = "1f1b"
    """Pipeline schedule the bubble was computed for (`SCHEDULES`)."""


def _exposed(comm_s: float, compute_s: float) -> float:
    """Communication left after hiding behind `compute_s` up to the overlap fraction (methodology §6.2)."""
    return max(0.0, comm_s - cal.OVERLAP_FRACTION * compute_s)


def _layerwise_exposed(comm_s: float, compute_s: float, layers: int) -> float:
    """ZeRO-3 collectives issued layer by layer with a prefetch depth of one (per layer:
    Σ max(0, T_AG,layer − t_layer)): layer i+1's collective runs during layer i's
    compute and must finish before layer i+1 starts; the first one has nothing to hide behind.
    `comm_s` and `compute_s` are whole-stage totals, spread evenly over the layers."""
    if comm_s <= 0:
        return 0.0
    n = max(1, layers)
    per_comm, per_compute = comm_s / n, compute_s / n
    return per_comm + (n - 1) * _exposed(per_comm, per_compute)


def _activation_offload_seconds(plan: Plan, workload: Workload, cluster: Cluster, shard: StageShard) -> float:
    """Seconds to move one micro-batch's offloaded activations over the host link, one way
    (Megatron-Core cpu_offloading_num_layers: down after each layer's forward, up before its
    backward, on a side stream that overlaps the neighbouring layers' compute)."""
    n = min(plan.offload_activation_layers, shard.num_layers)
    if n == 0:
        return 0.0
    tokens = plan.mbs * workload.seq_len / plan.cp
    per_token = sum(layer_activation_bytes_per_token(workload.arch, i, plan, workload)
                    for i in range(shard.first_layer, shard.first_layer + n))
    return tokens * per_token / (cluster.gpu.host_link_bandwidth * cal.HOST_LINK_EFFICIENCY)


def _fsdp2_copy_seconds(plan: Plan, workload: Workload, cluster: Cluster, weights: tuple[float, float, float, float],
                        grad_b: float) -> tuple[float, float]:
    """(forward, backward) seconds of one micro-batch's FSDP2 buffer copies on the compute stream.

    FSDP2 all-gathers into one flat buffer and copies each parameter out of it before the layer
    runs (torch/distributed/fsdp/_fully_shard/_fsdp_collectives.py `foreach_all_gather_copy_out`,
    `split_with_sizes_copy`, in `wait_for_unshard` on the current stream): the gathered bytes
    read and written once per gather, forward and, resharded after forward (ZeRO-3), backward.
    Before each reduce-scatter it copies the unsharded gradients into the flat input in the
    reduce dtype (`foreach_reduce_scatter_copy_in`, `chunk_cat`, on the current stream): read in
    the compute dtype, written in `grad_b` bytes. Megatron's and DeepSpeed's buffers are the
    parameters' own storage: nothing to copy."""
    if plan.zero < 2 or workload.engine.zero3_gather != "fsdp2":
        return 0.0, 0.0
    dense, expert, dense_gather, expert_gather = weights
    sharded = (plan.dp * plan.cp > 1, plan.expert_dp > 1)
    gathered = dense_gather * sharded[0] + expert_gather * sharded[1]
    grads = dense * sharded[0] + expert * sharded[1]
    hbm = cluster.gpu.hbm_bandwidth * cal.HBM_EFFICIENCY
    copy_out = 2 * gathered / hbm if plan.zero == 3 else 0.0
    copy_in = grads * (activation_bytes(plan.precision) + grad_b) / hbm
    return copy_out, copy_out + copy_in


def _synchronized_seconds(traffic: tuple[Traffic, ...], cluster: Cluster) -> float:
    """Collectives that run alone on the device, each issued through torch.distributed's list API
    (one tensor view per rank, copied by one host operation each): NCCL time + n · HOST_OP_S."""
    host = sum(t.count * t.group.size * cal.HOST_OP_S for t in traffic if t.group.size > 1)
    return total_seconds(traffic, cluster) + host


@dataclass(frozen=True)
class _Stage:
    compute: StageCompute
    tp: float
    cp: float
    ep: float
    dp_microbatch: float
    forward: float
    """t_F: forward of one micro-batch with its exposed communication."""
    backward: float
    """t_B: backward (+ recompute) of one micro-batch with its exposed communication."""
    dp_step: float
    optimizer: float
    offload: float
    bytes: CommBytes | None
    """None where the caller asked for seconds alone."""


def _stage(plan: Plan, workload: Workload, cluster: Cluster, shard: StageShard,
           per_layer: dict[str, tuple[Traffic, ...]], seconds: dict[str, float],
           keys: tuple[Plan, Plan], schedule: Schedule | None = None, count_bytes: bool = True) -> _Stage:
    """The stage's step; `seconds`: each dimension's `per_layer` traffic in seconds (the same for
    every stage of the plan). `count_bytes` False leaves the bytes on the wire out (None): the search's
    stage seconds never read them, and totalling every link of every dimension is a fifth of a
    stage's cost. `keys`: the plan's memo keys (`_memo_keys`), the same for every stage."""
    compute_memo, data_parallel_memo = keys
    c = stage_compute(plan, workload, cluster, shard, compute_memo)
    m, layers = plan.gas, shard.num_layers
    offload_s = _activation_offload_seconds(plan, workload, cluster, shard)
    # Share of the stage's layers recomputed in full (all of them unless recompute_layers says).
    share = plan.recomputed_layers(shard.stage, layers) / layers if layers else 0.0
    redo = 1 + 0.5 * share  # full recompute repeats the forward's collectives (half of them)
    # TP and EP: on the critical path, half in forward, half in backward (methodology §6.2).
    tp = layers * seconds["tp"]
    ep = shard.moe_layers * seconds["ep"]
    if schedule == "dualpipe" or workload.engine.ep_overlap:
        # DualPipe pairs a forward and a backward chunk so that each one's all-to-all runs under
        # the other's compute (DeepSeek-V3 §3.2.1), and so does Megatron-Core's combined 1F1B
        # (EngineTraits.ep_overlap): exposed only beyond the overlap fraction.
        ep = _exposed(ep, c.forward + c.backward + c.recompute)
    # CP: (c−1) KV sends in forward, 2(c−1) in backward, hidden behind the attention core.
    cp_total = layers * seconds["cp"]
    cp_f = _exposed(cp_total / 3, c.attention_forward)
    cp_b = _exposed(2 * cp_total / 3, 2 * c.attention_forward) + cp_f * share
    d = _data_parallel(plan, workload, cluster, shard, data_parallel_memo)
    if d.synchronized:
        dp_f, dp_b = d.microbatch_forward_s, d.microbatch_backward_s
    elif plan.zero == 3:
        # Backward: layer i−1's re-gather and layer i+1's reduce-scatter share the links during
        # layer i; the last reduce-scatter is exposed like the first gather.
        dp_f = _layerwise_exposed(d.microbatch_forward_s, c.forward, layers)
        dp_b = _layerwise_exposed(d.microbatch_backward_s, c.backward + c.recompute, layers)
    else:
        dp_f = _exposed(d.microbatch_forward_s, c.forward)
        dp_b = _exposed(d.microbatch_backward_s, c.backward + c.recompute)
    t_f = c.forward + d.copy_forward_s + tp / 2 + ep / 2 + cp_f + dp_f + _exposed(offload_s, c.forward)
    t_b = (c.backward + c.recompute + d.copy_backward_s + (tp + ep) * (redo - 0.5) + cp_b + dp_b
           + _exposed(offload_s, c.backward))
    # Once per step (once per pipeline run where the engine syncs each run): gradient buckets
    # behind the last backward, ZeRO-1/2 gathers behind the next forward.
    syncs = plan.pipeline_runs if workload.engine.step_collectives_per_run else 1
    dp_step = syncs * (_exposed(d.step_backward_s, c.backward + c.recompute)
                       + _exposed(d.step_forward_s, c.forward))
    return _Stage(compute=c, tp=tp * redo, cp=cp_f + cp_b, ep=ep * redo, dp_microbatch=dp_f + dp_b,
                  forward=t_f, backward=t_b, dp_step=dp_step, optimizer=d.optimizer_s,
                  offload=d.offload_s,
                  bytes=_stage_bytes(plan, shard, per_layer, d.traffic, m, layers, redo, share, schedule)
                  if count_bytes else None)


@dataclass(frozen=True)
class _DataParallel:
    """What a stage's data-parallel side costs before any of it hides behind compute: none of
    it reads the recompute policy or counts, so a layout's probes share it."""

    traffic: DPTraffic
    synchronized: bool
    """DeepSpeed 0.3's ZeRO-3: each collective alone on the device, never hidden."""
    microbatch_forward_s: float
    microbatch_backward_s: float
    step_backward_s: float
    step_forward_s: float
    copy_forward_s: float
    copy_backward_s: float
    optimizer_s: float
    offload_s: float


_DATA_PARALLEL = memo.new_cache()


def _memo_keys(plan: Plan) -> tuple[Plan, Plan]:
    """The keys a stage's compute and its data-parallel terms are memoized on."""
    return compute_key(plan), evolve(plan, recompute="none", recompute_layers=None, recompute_modules=None)


def _data_parallel(plan: Plan, workload: Workload, cluster: Cluster, shard: StageShard, key: Plan) -> _DataParallel:
    """`_fresh_data_parallel`, memoized within a search on the plan without its recompute keys (`key`)."""
    return memo.lookup(_DATA_PARALLEL, (key, workload, cluster, shard),
                       lambda: _fresh_data_parallel(plan, workload, cluster, shard))


def _fresh_data_parallel(plan: Plan, workload: Workload, cluster: Cluster, shard: StageShard) -> _DataParallel:
    layers = shard.num_layers
    # DP: ZeRO collectives of every micro-batch, hidden behind that pass's compute.
    weights = stage_params(plan, workload, shard)
    dense, expert, dense_gather, expert_gather = weights
    # Gradients cross the wire in the dtype the engine reduces them in (memory.state_bytes):
    # fp32 for Megatron-LM with bf16/fp8 parameters and for FSDP2's reduce_dtype, 16-bit otherwise.
    grad_b = workload_state_bytes(workload, plan, workload.arch.hidden)[1]
    deepspeed3 = plan.zero == 3 and workload.engine.zero3_per_tensor
    per_layer_collectives = (deepspeed_zero3_tensors(workload.arch, shard.first_layer, layers,
                                                     cal.DEEPSPEED_ZERO3_PERSISTENCE_THRESHOLD)
                             if deepspeed3 else (1, 1))
    dp: DPTraffic = dp_traffic(plan, cluster, dense_grads=dense, expert_grads=expert,
                               dense_gather=dense_gather, expert_gather=expert_gather,
                               grad_bytes=grad_b, layers=layers, gathers_per_layer=per_layer_collectives[0],
                               reduces_per_layer=per_layer_collectives[1],
                               deferred=deferred_sync(plan, workload.engine),
                               regather=workload.engine.reshard_after_forward)
    synchronized = deepspeed3 and workload.engine.release == "0.3"
    if synchronized:
        # DeepSpeed 0.3 ZeRO-3 (calibration.DEEPSPEED_ZERO3): per-tensor collectives, each behind a
        # device-wide synchronize, each with one host operation per rank of the group: exposed.
        # Current releases prefetch and coalesce: the per-tensor latencies, hidden like FSDP's.
        forward_s = _synchronized_seconds(dp.microbatch_forward, cluster)
        backward_s = _synchronized_seconds(dp.microbatch_backward, cluster)
    else:
        forward_s = total_seconds(dp.microbatch_forward, cluster)
        backward_s = total_seconds(dp.microbatch_backward, cluster)
    copy_f, copy_b = _fsdp2_copy_seconds(plan, workload, cluster, weights, grad_b)
    updated = updated_params(plan, dense, expert)
    optimizer, offload = optimizer_and_offload(plan, cluster, updated, dense_gather + expert_gather)
    return _DataParallel(traffic=dp, synchronized=synchronized, microbatch_forward_s=forward_s,
                         microbatch_backward_s=backward_s,
                         step_backward_s=total_seconds(dp.step_backward, cluster),
                         step_forward_s=total_seconds(dp.step_forward, cluster),
                         copy_forward_s=copy_f, copy_backward_s=copy_b, optimizer_s=optimizer, offload_s=offload)


def _stage_bytes(plan: Plan, shard: StageShard, per_layer: dict[str, tuple[Traffic, ...]], dp: DPTraffic,
                 m: int, layers: int, redo: float, share: float, schedule: Schedule | None) -> CommBytes:
    """Bytes on the wire per GPU of the stage over the step, by dimension and by fabric."""
    cp_redo = 1 + share / 3  # full recompute repeats the forward's (c−1) of 3(c−1) sends
    # Per step: (traffic, times it runs) of each dimension.
    chunks = 2 if schedule == "dualpipe" else plan.vpp  # DualPipe: two chunks per rank, both ways
    runs = {"tp": (per_layer["tp"], m * layers * redo), "pp": (per_layer["pp"], m * chunks),
            "cp": (per_layer["cp"], m * layers * cp_redo), "ep": (per_layer["ep"], m * shard.moe_layers * redo)}
    links = [dp.link_bytes(m)] + [tuple(n * b for b in total_link_bytes(t)) for t, n in runs.values()]
    return CommBytes(
        dp=dp.wire_bytes(m),
        **{dim: n * total_wire_bytes(t) for dim, (t, n) in runs.items()},
        scale_up=sum(up for up, _ in links),
        scale_out=sum(out for _, out in links),
    )


def estimate_time(plan: Plan, workload: Workload, cluster: Cluster, *,
                  schedule: Schedule | None = None) -> tuple[TimeBreakdown, CommBytes]:
    """Step time and its breakdown, and bytes on the wire per GPU, for one plan (methodology §6.3).

    T_step = m·(t_F + t_B)·(1 + bubble_fraction)|slowest stage + (p−1)·v·T_pp + max over stages
    of (DP exposed + optimizer + offload), with m = gas micro-batches per step; for 1F1B and
    interleaved 1F1B the bubble is (p−1)/v·(t_F + t_B). `schedule` defaults to what Megatron-LM
    runs for the plan (`default_schedule`).
    """
    # One session for the plan's stages: they share the per-layer compute terms (compute.py).
    with memo.session():
        return _estimate_time(plan, workload, cluster, schedule)


def _estimate_time(plan: Plan, workload: Workload, cluster: Cluster,
                   schedule: Schedule | None) -> tuple[TimeBreakdown, CommBytes]:
    if plan.global_batch != workload.global_batch:
        raise PlanError(f"mbs ({plan.mbs}) * gas ({plan.gas}) * dp ({plan.dp}) = {plan.global_batch}"
                        f" != global batch ({workload.global_batch})")
    schedule = schedule or default_schedule(plan)
    check_schedule(plan, schedule)
    arch, seq = workload.arch, workload.seq_len
    p, v, m = plan.pp, plan.vpp, plan.gas
    per_layer = {
        "tp": tp_traffic(plan, arch, seq, cluster),
        "cp": cp_traffic(plan, arch, seq, cluster),
        "ep": ep_traffic(plan, arch, seq, cluster, workload.engine.moe_dispatch),
        "pp": pp_traffic(plan, arch, seq, cluster),
    }
    seconds = {dim: total_seconds(t, cluster) for dim, t in per_layer.items()}
    keys = _memo_keys(plan)
    stages = [_stage(plan, workload, cluster, s, per_layer, seconds, keys, schedule) for s in stage_shards(plan, arch)]
    pace = max(stages, key=lambda s: s.forward + s.backward)
    tail = max(stages, key=lambda s: s.dp_step + s.optimizer + s.offload)
    per_microbatch = pace.forward + pace.backward
    w_share = pace.compute.weight_grad / per_microbatch if per_microbatch > 0 else 0.0
    # Each of the step's pipeline runs fills and drains the pipeline with its own micro-batches.
    runs = plan.pipeline_runs
    bubble = bubble_fraction(schedule, p, plan.microbatches_per_run, v, w_share) * m * per_microbatch
    # Pipeline p2p on the fill/drain path: (p−1) boundaries, ×v with interleaving, ×2 for
    # DualPipe's two chunks per rank (DeepSeek-V3, arXiv 2412.19437 §3.2.1), once per run.
    pp = runs * (p - 1) * (2 if schedule == "dualpipe" else v) * seconds["pp"]
    step = m * per_microbatch + bubble + pp + tail.dp_step + tail.optimizer + tail.offload
    c = pace.compute
    dp = m * pace.dp_microbatch + tail.dp_step
    tokens = workload.global_batch * seq
    if workload.trains_adapters:
        # Frozen weights need no weight gradients: the backward is one forward's worth
        # (input gradients), so adapter training does 2x forward, not 3x (LoRA, arXiv 2106.09685 §4.2).
        model_flops = 2 * forward_flops_per_token(arch, seq, windows=workload.layer_windows) * tokens
    elif workload.partial is not None:
        # Partial fine-tuning: the same 2x forward, plus the trained GEMMs' weight gradients.
        model_flops = (2 * forward_flops_per_token(arch, seq, windows=workload.layer_windows)
                       + 2 * workload.partial.active_trainable_params(arch)) * tokens
    else:
        model_flops = training_flops_per_token(arch, seq, windows=workload.layer_windows) * tokens
    recompute_flops = recompute_flops_per_token(plan, arch, seq, workload.layer_windows) * tokens
    peak = reference_peak(plan, workload, cluster) * plan.parallel.world
    breakdown = TimeBreakdown(
        step=step,
        compute=m * (c.forward + c.backward),
        recompute=m * c.recompute,
        bubble=bubble,
        comm_exposed=m * (pace.tp + pace.cp + pace.ep) + pp + dp,
        tp=m * pace.tp,
        cp=m * pace.cp,
        ep=m * pace.ep,
        pp=pp,
        dp=dp,
        optimizer=tail.optimizer,
        offload=tail.offload,
        tokens_per_s=tokens / step,
        mfu=model_flops / (step * peak),
        hfu=(model_flops + recompute_flops) / (step * peak),
        model_flops=model_flops,
        schedule=schedule,
    )
    busiest = CommBytes(**{f: max(getattr(s.bytes, f) for s in stages)
                           for f in ("dp", "tp", "pp", "cp", "ep", "scale_up", "scale_out")})
    return breakdown, busiest


@dataclass(frozen=True)
class StageSeconds:
    """One pipeline stage's share of a step (the search's per-stage coefficients)."""

    microbatch: float
    """t_F + t_B of one micro-batch: the slowest stage's sets the pace of the pipeline."""
    tail: float
    """Once per step: exposed DP collectives, optimizer step and offload."""
    comm: float
    """Exposed communication of the stage over the step (tp, cp, ep, dp)."""


def stage_seconds(plan: Plan, workload: Workload, cluster: Cluster, *,
                  stages: tuple[int, ...] | None = None) -> tuple[tuple[StageSeconds, ...], float]:
    """(per stage seconds, pipeline p2p seconds of the step): estimate_time's step is
    (m + runs·(p−1)/v)·max microbatch + p2p + max tail (runs: `Plan.pipeline_runs`). `stages`:
    only these, in order."""
    arch, seq = workload.arch, workload.seq_len
    per_layer = {
        "tp": tp_traffic(plan, arch, seq, cluster),
        "cp": cp_traffic(plan, arch, seq, cluster),
        "ep": ep_traffic(plan, arch, seq, cluster, workload.engine.moe_dispatch),
        "pp": pp_traffic(plan, arch, seq, cluster),
    }
    seconds = {dim: total_seconds(t, cluster) for dim, t in per_layer.items()}
    m = plan.gas
    keys = _memo_keys(plan)
    out = tuple(
        StageSeconds(microbatch=s.forward + s.backward, tail=s.dp_step + s.optimizer + s.offload,
                     comm=m * (s.tp + s.cp + s.ep + s.dp_microbatch) + s.dp_step)
        for s in (_stage(plan, workload, cluster, shard, per_layer, seconds, keys, count_bytes=False)
                  for shard in stage_shards(plan, arch, stages)))
    return out, plan.pipeline_runs * (plan.pp - 1) * plan.vpp * seconds["pp"]
