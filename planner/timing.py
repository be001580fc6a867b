"""Step time of a training plan: compute, recompute, exposed communication, bubble, optimizer.

The model of cost-model.md §6.3-6.5: per micro-batch and pipeline stage, forward compute from
the layers' GEMM FLOPs on peak × η plus their memory-bound kernels (norms, residual adds, the
MLP activation and, for unfused attention, the s×s scores) at achieved HBM bandwidth; GEMM
backward = 2 × forward; recompute per policy; TP/EP collectives on the critical path; CP and DP
communication hidden behind compute up to an overlap fraction (ZeRO-3 layer by layer, prefetch
depth one; DeepSpeed's ZeRO-3 per parameter tensor and exposed, calibration.DEEPSPEED_ZERO3);
1F1B bubble (p−1)/v · (t_F + t_B), the slowest stage setting the pace. Constants
live in `planner.calibration` (derived in validation/calibrate.py); collectives in
`planner.comm`. Seconds and FLOPs throughout; validated in docs/validation.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from planner import calibration as cal
from planner.cluster import Cluster
from planner.comm import (
    CommBytes, DPTraffic, Traffic, cp_traffic, deepspeed_zero3_tensors, dp_traffic, ep_traffic,
    pp_traffic, total_link_bytes, total_seconds, total_wire_bytes, tp_traffic,
)
from planner.memory import PRECISION_STATE_BYTES, QUANT_WEIGHT_BYTES, state_bytes
from planner.model.architecture import Architecture
from planner.model.flops import forward_flops_per_token, layer_flops, logits_flops, training_flops_per_token
from planner.model.params import lora_params
from planner.partial import partial_trainable
from planner.plan import Plan, PlanError
from planner.shard import StageShard, stage_shards
from planner.workload import Workload

__all__ = ["SCHEDULES", "CommBytes", "Schedule", "TimeBreakdown", "bubble_fraction", "estimate_time",
           "layer_efficiency"]

Schedule = Literal["1f1b", "interleaved", "zb-h1", "dualpipe"]
SCHEDULES: tuple[Schedule, ...] = ("1f1b", "interleaved", "zb-h1", "dualpipe")
"""Pipeline schedules the bubble is modelled for: 1F1B (PipeDream-Flush) [MEG21 §2.2.1];
interleaved 1F1B with vpp chunks per rank [MEG21 §2.2.2]; ZB-H1, zero-bubble with backward split
into input (B) and weight (W) gradients at 1F1B's memory [ZB] arXiv 2401.10241 §3; DualPipe,
bidirectional with forward/backward chunks overlapped (DeepSeek-V3 arXiv 2412.19437 §3.2.1)."""

COMPUTE_DTYPE = {"bf16": "bf16", "bf16-pure": "bf16", "bf16-autocast": "bf16",
                 "fp16": "fp16", "fp8": "fp8", "fp32": "fp32"}
"""Tensor-core dtype of the GEMMs per training precision. fp8 (Transformer Engine) runs the
linear layers in fp8 and attention and the output layer in bf16; fp32 uses what
`Accelerator.peak("fp32")` gives (TF32 where the part has it)."""

MFU_PEAK_DTYPE = {"fp8": "bf16", "fp16": "fp16", "fp32": "fp32"}
"""Reference peak of MFU/HFU: the bf16 dense peak for every 16-bit and fp8 precision (common
practice: Megatron, PaLM App. B report against the 16-bit peak), fp16's for fp16, and
peak("fp32") for fp32 training."""


def bubble_fraction(schedule: Schedule, p: int, m: int, v: int = 1, w_share: float = 1 / 3) -> float:
    """Pipeline idle time of a step / its ideal time m·(t_F + t_B), for one schedule.

    `w_share` = t_W / (t_F + t_B): the weight-gradient share of a micro-batch's work (1/3 when
    the forward, input-gradient and weight-gradient passes take the same time). In units of one
    micro-batch's work, F + B_in + W = 1 with F = B_in = (1 − w)/2 and the full backward B = B_in + W:
    - 1F1B: (p−1)·(F + B)/m [MEG21 eq. 1]; interleaved: (p−1)/(v·m) [MEG21 §2.2.2].
    - ZB-H1: (p−1)·(F + B − 2W)/m ([ZB] §3; DeepSeek-V3 Table 2 "ZB1P"), 1/3 of 1F1B at equal
      passes; LoRA's frozen weights have no W pass (w = 0) and get 1F1B's bubble.
    - DualPipe: (p/2 − 1)·(F&B + B − 3W)/m (DeepSeek-V3 Table 2), F&B — a forward and a backward
      chunk overlapped — taken as F + B (the pairing hides communication, not compute); p even.
    The idle time does not depend on m, so the fraction never rises with more micro-batches.
    """
    if p <= 1:
        return 0.0
    if schedule == "1f1b":
        return (p - 1) / m
    if schedule == "interleaved":
        return (p - 1) / (v * m)
    w = min(max(w_share, 0.0), 0.5)
    backward = (1 - w) / 2 + w  # B: input + weight gradients
    if schedule == "zb-h1":
        return (p - 1) * (1 - 2 * w) / m
    if schedule == "dualpipe":
        return max(0, p // 2 - 1) * (1 + backward - 3 * w) / m
    raise ValueError(f"unknown pipeline schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")


def default_schedule(plan: Plan) -> Schedule:
    """What Megatron-LM runs for a plan: interleaved 1F1B when vpp > 1, else 1F1B."""
    return "interleaved" if plan.vpp > 1 else "1f1b"


def _check_schedule(plan: Plan, schedule: Schedule) -> None:
    if schedule not in SCHEDULES:
        raise PlanError(f"unknown pipeline schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    if schedule != "interleaved" and plan.vpp > 1:
        raise PlanError(f"vpp({plan.vpp}) > 1 is the interleaved schedule, not {schedule}")
    if schedule == "dualpipe" and plan.pp % 2:
        raise PlanError(f"DualPipe runs the pipeline from both ends: pp({plan.pp}) must be even")


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


def layer_efficiency(gpu, dtype: str, gemm_flops: float) -> float:
    """η: achieved / peak FLOP/s of a layer's GEMMs on one GPU (§6.3).

    η = GEMM_FRACTION_OF_MAMF (0.84) × MAMF fraction × size factor, the size factor F / (F + peak·t_half) falling for
    GEMMs of F FLOPs that last only microseconds (calibration.GEMM_HALF_EFFICIENCY_S). The
    layer's memory-bound kernels are timed apart, at HBM bandwidth (`_stage_compute`).
    """
    return _Rate(gpu, dtype).efficiency(gemm_flops)


class _Rate:
    """Peak and large-GEMM efficiency of one GPU and dtype, looked up once per stage."""

    def __init__(self, gpu, dtype: str):
        if dtype == "fp8" and not gpu.supports("fp8"):
            dtype = "bf16"
        self.peak = gpu.peak(dtype)
        self.large = cal.GEMM_FRACTION_OF_MAMF * cal.mamf_fraction(gpu.id, dtype)
        self.half_flops = self.peak * cal.GEMM_HALF_EFFICIENCY_S

    def efficiency(self, gemm_flops: float) -> float:
        return self.large * gemm_flops / (gemm_flops + self.half_flops)

    def seconds(self, flops: float, gemm_flops: float) -> float:
        """Seconds for `flops` done as GEMMs of `gemm_flops` each."""
        return flops / (self.peak * self.efficiency(gemm_flops)) if flops > 0 else 0.0


def _activation_units(arch: Architecture, index: int) -> float:
    """FFN units one token passes through the activation function in layer `index`."""
    if not arch.is_moe_layer(index):
        return arch.ffn
    return arch.moe.top_k * arch.moe.expert_ffn + arch.moe.shared_ffn


@lru_cache(maxsize=256)
def _layer_flops_per_token(arch: Architecture, seq_len: int) -> tuple[tuple[float, float], ...]:
    """(linear, attention) forward FLOPs per token of every layer (causal attention)."""
    out = []
    for i in range(arch.num_layers):
        lf = layer_flops(arch, i, seq_len)
        out.append((lf.linear, lf.attention))
    return tuple(out)


@dataclass(frozen=True)
class _StageCompute:
    forward: float
    backward: float
    recompute: float
    attention_forward: float
    """Attention-core forward seconds (what ring attention hides its transfers behind)."""
    weight_grad: float = 0.0
    """Part of `backward` that computes weight gradients (W of zero-bubble schedules): one
    forward's worth of every trained GEMM; none for LoRA's frozen weights."""


def _stage_compute(plan: Plan, workload: Workload, cluster: Cluster, shard: StageShard) -> _StageCompute:
    """Compute seconds of one micro-batch on one GPU of a stage (§6.3).

    Per layer: the GEMMs at peak × η, plus the memory-bound kernels at achieved HBM bandwidth —
    norms and residual adds (replicated over TP unless SP), the MLP activation, and, when the
    attention is unfused, the s×s score traffic (calibration: SEL22 Table 4 derivation).
    """
    arch, gpu = workload.arch, cluster.gpu
    tp, ep = plan.tp, plan.ep
    dtype = COMPUTE_DTYPE.get(plan.precision, "bf16")
    rate = _Rate(gpu, dtype)
    rate16 = _Rate(gpu, "bf16" if dtype == "fp8" else dtype)  # attention core, output layer
    hbm = gpu.hbm_bandwidth * cal.HBM_EFFICIENCY
    seq = workload.seq_len
    tokens = plan.mbs * seq / plan.cp  # tokens of this GPU's micro-batch (b·s/c)
    # Backward of a GEMM: the input gradient (1× forward) and, for weights that train, the weight
    # gradient (1× forward). Partial fine-tuning has no backward at all below the first layer
    # that trains (nothing there needs a gradient); None: nothing trains in the layers.
    partial = workload.partial
    first_trained = partial.first_trainable_layer(arch) if partial is not None else 0
    mlp_mats = 3 if arch.gated_mlp else 2
    per_layer = _layer_flops_per_token(arch, seq)
    unfused = workload.attention_kernel == "unfused"
    # Unfused kernels compute the whole s×s matrix (mask applied after): 2× the causal FLOPs,
    # and move every score through HBM (calibration.UNFUSED_ATTENTION_BYTES_PER_SCORE).
    attention_factor = 2.0 if unfused else 1.0
    fractions = None if unfused or dtype == "fp8" else cal.flash_attention_fraction(gpu.id)
    flash = None if fractions is None else tuple(f * gpu.peak("bf16") for f in fractions)
    scores = plan.mbs * arch.attention.num_heads / tp * (seq / plan.cp) * seq if unfused else 0.0
    score_f = scores * cal.UNFUSED_ATTENTION_BYTES_PER_SCORE["forward"] / hbm
    score_b = scores * cal.UNFUSED_ATTENTION_BYTES_PER_SCORE["backward"] / hbm
    # Norms and residual adds run on every TP rank's full b·s·h unless SP splits them.
    replicated = sum(cal.ELEMENTWISE_BYTES_PER_TOKEN.values()) * arch.hidden / (tp if plan.parallel.sp else 1)
    act = cal.ACTIVATION_BYTES_PER_FFN_UNIT["gated" if arch.gated_mlp else "gelu"]
    fwd = bwd = attn = redo = wgrad = 0.0
    recomputed = plan.recomputed_layers(shard.stage, shard.num_layers)  # the stage's first layers
    for n, i in enumerate(range(shard.first_layer, shard.first_layer + shard.num_layers)):
        linear_pt, attention_pt = per_layer[i]
        linear = linear_pt * tokens / tp
        attention = attention_factor * attention_pt * tokens / tp
        # GEMM launches: QKV and output projections, then the MLP matrices of each local expert.
        experts_local = arch.moe.num_experts // ep if arch.is_moe_layer(i) else 1
        gemms = 2 + mlp_mats * experts_local
        t_lin = rate.seconds(linear, linear / gemms)
        if flash is None:
            t_att = rate16.seconds(attention, attention)
            t_att_b = 2 * t_att
        else:  # fused attention at the kernel's own measured rate, not a GEMM's
            t_att, t_att_b = attention / flash[0], 2 * attention / flash[1]
        t_elt = tokens * (replicated + act * _activation_units(arch, i) / tp) / hbm
        fwd += t_lin + t_att + score_f + t_elt
        redo += t_lin + t_att + score_f + t_elt if n < recomputed else 0.0
        if first_trained is not None and i >= first_trained:
            trained = _trained_share(workload, i, linear_pt) * t_lin
            bwd += t_lin + trained + t_att_b + score_b + cal.ELEMENTWISE_BACKWARD_FACTOR * t_elt
            wgrad += trained
        attn += t_att + score_f
    # Full: the layers' forward again; selective: the attention core again; none: 0 (§6.3).
    recompute = {"full": redo, "selective": attn}.get(plan.recompute, 0.0)
    if shard.stage == plan.pp - 1:
        # Output layer on the last stage; embedding lookup is negligible (§6.3).
        logits = logits_flops(arch) * tokens / tp
        t_out = rate16.seconds(logits, logits)
        fwd += t_out
        output_trains = partial.output if partial is not None else not workload.trains_adapters
        bwd += ((first_trained is not None) + output_trains) * t_out
        wgrad += output_trains * t_out
    return _StageCompute(forward=fwd, backward=bwd, recompute=recompute, attention_forward=attn,
                         weight_grad=wgrad)


def _trained_share(workload: Workload, index: int, linear_flops_per_token: float) -> float:
    """Share of layer `index`'s GEMM FLOPs whose weights train: all of them, none for LoRA/QLoRA
    (frozen base weights; the adapters' own GEMMs are negligible), the trained modules' for
    partial fine-tuning."""
    if workload.partial is not None:
        return workload.partial.weight_grad_fraction(workload.arch, index, linear_flops_per_token)
    return 0.0 if workload.trains_adapters else 1.0


def _stage_params(plan: Plan, workload: Workload, shard: StageShard) -> tuple[float, float, float, float]:
    """(dense trainable, expert trainable, dense gathered bytes, expert gathered bytes) of a GPU.

    Gathered bytes are what ZeRO all-gathers: the trainable weights for ZeRO-1/2, every held
    weight for ZeRO-3 (frozen LoRA bases at their quantized size).
    """
    weight_b = PRECISION_STATE_BYTES[plan.precision][0]
    if workload.partial is not None:
        dense, expert = partial_trainable(plan, workload.arch, shard, workload.partial)
        held = (shard.dense + shard.expert) * weight_b
        return dense, expert, held if plan.zero == 3 else (dense + expert) * weight_b, 0.0
    if not workload.trains_adapters:
        dense, expert = shard.dense, shard.expert
        return dense, expert, dense * weight_b, expert * weight_b
    arch = workload.arch
    adapters = sum(lora_params(arch, i, plan.lora_rank, workload.lora_targets)
                   for i in range(shard.first_layer, shard.first_layer + shard.num_layers)) / plan.tp
    gathered = adapters * weight_b
    if plan.zero == 3:
        gathered += shard.total * QUANT_WEIGHT_BYTES.get(plan.quant, weight_b)
    return adapters, 0.0, gathered, 0.0


def _updated_params(plan: Plan, dense: float, expert: float) -> float:
    """Trainable parameters whose optimizer step runs on this GPU (ZeRO ≥ 1 shards them)."""
    if plan.zero == 0:
        return dense + expert
    dpc = plan.dp * plan.cp
    return dense / dpc + expert / max(1, dpc // plan.ep)


def _optimizer_bytes_per_param(plan: Plan) -> float:
    b = cal.OPTIMIZER_BYTES_PER_PARAM.get(plan.optimizer, cal.DEFAULT_OPTIMIZER_BYTES_PER_PARAM)
    return b * (cal.PURE_16BIT_OPTIMIZER_FACTOR if plan.precision == "bf16-pure" else 1.0)


def _optimizer_and_offload(plan: Plan, cluster: Cluster, updated: float, held_bytes: float) -> tuple[float, float]:
    """(GPU optimizer seconds, offload seconds) of one step (§6.5; ZeRO-Offload / -Infinity).

    GPU: optimizer bytes per parameter / achieved HBM bandwidth (HBM_EFFICIENCY). Offloaded: gradients down and 16-bit
    weights up over the host link, the step on the CPU at host-memory speed, all exposed;
    offloaded parameters also come up for every micro-batch's forward and backward.
    """
    opt_bytes = updated * _optimizer_bytes_per_param(plan)
    if plan.offload == "none":
        return opt_bytes / (cluster.gpu.hbm_bandwidth * cal.HBM_EFFICIENCY), 0.0
    weight_b, grad_b, _ = PRECISION_STATE_BYTES[plan.precision]
    host = cluster.gpu.host_link_bandwidth * cal.HOST_LINK_EFFICIENCY
    offload = updated * (grad_b + weight_b) / host + opt_bytes / cal.HOST_MEMORY_BANDWIDTH_PER_GPU
    if plan.offload == "optimizer+params":
        offload += 2 * plan.gas * held_bytes / (plan.dp * plan.cp) / host
    return 0.0, offload


def _exposed(comm_s: float, compute_s: float) -> float:
    """Communication left after hiding behind `compute_s` up to the overlap fraction (§6.5)."""
    return max(0.0, comm_s - cal.OVERLAP_FRACTION * compute_s)


def _layerwise_exposed(comm_s: float, compute_s: float, layers: int) -> float:
    """ZeRO-3 collectives issued layer by layer with a prefetch depth of one (§6.5: "ZeRO-3 per
    layer: Σ max(0, T_AG,layer − t_layer)"): layer i+1's collective runs during layer i's
    compute and must finish before layer i+1 starts; the first one has nothing to hide behind.
    `comm_s` and `compute_s` are whole-stage totals, spread evenly over the layers."""
    if comm_s <= 0:
        return 0.0
    n = max(1, layers)
    per_comm, per_compute = comm_s / n, compute_s / n
    return per_comm + (n - 1) * _exposed(per_comm, per_compute)


def _synchronized_seconds(traffic: tuple[Traffic, ...], cluster: Cluster) -> float:
    """Collectives that run alone on the device, each issued through torch.distributed's list API
    (one tensor view per rank, copied by one host operation each): NCCL time + n · HOST_OP_S."""
    host = sum(t.count * t.group.size * cal.HOST_OP_S for t in traffic if t.group.size > 1)
    return total_seconds(traffic, cluster) + host


@dataclass(frozen=True)
class _Stage:
    compute: _StageCompute
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
    bytes: CommBytes


def _stage(plan: Plan, workload: Workload, cluster: Cluster, shard: StageShard,
           per_layer: dict[str, tuple[Traffic, ...]], schedule: Schedule | None = None) -> _Stage:
    c = _stage_compute(plan, workload, cluster, shard)
    m, layers = plan.gas, shard.num_layers
    # Share of the stage's layers recomputed in full (all of them unless recompute_layers says).
    share = plan.recomputed_layers(shard.stage, layers) / layers if layers else 0.0
    redo = 1 + 0.5 * share  # full recompute repeats the forward's collectives (half of them)
    # TP and EP: on the critical path, half in forward, half in backward (§6.4).
    tp = layers * total_seconds(per_layer["tp"], cluster)
    ep = shard.moe_layers * total_seconds(per_layer["ep"], cluster)
    if schedule == "dualpipe":
        # DualPipe pairs a forward and a backward chunk so that each one's all-to-all runs under
        # the other's compute (DeepSeek-V3 §3.2.1): exposed only beyond the overlap fraction.
        ep = _exposed(ep, c.forward + c.backward + c.recompute)
    # CP: (c−1) KV sends in forward, 2(c−1) in backward, hidden behind the attention core.
    cp_total = layers * total_seconds(per_layer["cp"], cluster)
    cp_f = _exposed(cp_total / 3, c.attention_forward)
    cp_b = _exposed(2 * cp_total / 3, 2 * c.attention_forward) + cp_f * share
    # DP: ZeRO collectives of every micro-batch, hidden behind that pass's compute.
    weights = _stage_params(plan, workload, shard)
    dense, expert, dense_gather, expert_gather = weights
    # Gradients cross the wire in the dtype the framework reduces them in (memory.state_bytes):
    # fp32 for Megatron-LM with bf16/fp8 parameters and for FSDP2's reduce_dtype, 16-bit otherwise.
    grad_b = state_bytes(workload.framework, plan.precision)[1]
    deepspeed3 = plan.zero == 3 and workload.framework == "deepspeed"
    per_layer_collectives = (deepspeed_zero3_tensors(workload.arch, shard.first_layer, layers,
                                                     cal.DEEPSPEED_ZERO3_PERSISTENCE_THRESHOLD)
                             if deepspeed3 else (1, 1))
    dp: DPTraffic = dp_traffic(plan, cluster, dense_grads=dense, expert_grads=expert,
                               dense_gather=dense_gather, expert_gather=expert_gather,
                               grad_bytes=grad_b, layers=layers, gathers_per_layer=per_layer_collectives[0],
                               reduces_per_layer=per_layer_collectives[1])
    if deepspeed3 and workload.framework_release == "0.3":
        # DeepSpeed 0.3 ZeRO-3 (calibration.DEEPSPEED_ZERO3): per-tensor collectives, each behind a
        # device-wide synchronize, each with one host operation per rank of the group: exposed.
        # Current releases prefetch and coalesce: the per-tensor latencies, hidden like FSDP's.
        dp_f = _synchronized_seconds(dp.microbatch_forward, cluster)
        dp_b = _synchronized_seconds(dp.microbatch_backward, cluster)
    elif plan.zero == 3:
        # Backward: layer i−1's re-gather and layer i+1's reduce-scatter share the links during
        # layer i; the last reduce-scatter is exposed like the first gather.
        dp_f = _layerwise_exposed(total_seconds(dp.microbatch_forward, cluster), c.forward, layers)
        dp_b = _layerwise_exposed(total_seconds(dp.microbatch_backward, cluster), c.backward + c.recompute, layers)
    else:
        dp_f = _exposed(total_seconds(dp.microbatch_forward, cluster), c.forward)
        dp_b = _exposed(total_seconds(dp.microbatch_backward, cluster), c.backward + c.recompute)
    t_f = c.forward + tp / 2 + ep / 2 + cp_f + dp_f
    t_b = c.backward + c.recompute + (tp + ep) * (redo - 0.5) + cp_b + dp_b
    # Once per step: gradient buckets behind the last backward, ZeRO-1/2 gathers behind the
    # next forward.
    dp_step = (_exposed(total_seconds(dp.step_backward, cluster), c.backward + c.recompute)
               + _exposed(total_seconds(dp.step_forward, cluster), c.forward))
    updated = _updated_params(plan, dense, expert)
    optimizer, offload = _optimizer_and_offload(plan, cluster, updated, dense_gather + expert_gather)
    cp_redo = 1 + share / 3  # full recompute repeats the forward's (c−1) of 3(c−1) sends
    # Per step: (traffic, times it runs) of each dimension.
    chunks = 2 if schedule == "dualpipe" else plan.vpp  # DualPipe: two chunks per rank, both ways
    runs = {"tp": (per_layer["tp"], m * layers * redo), "pp": (per_layer["pp"], m * chunks),
            "cp": (per_layer["cp"], m * layers * cp_redo), "ep": (per_layer["ep"], m * shard.moe_layers * redo)}
    links = [dp.link_bytes(m)] + [tuple(n * b for b in total_link_bytes(t)) for t, n in runs.values()]
    comm_bytes = CommBytes(
        dp=dp.wire_bytes(m),
        **{dim: n * total_wire_bytes(t) for dim, (t, n) in runs.items()},
        scale_up=sum(up for up, _ in links),
        scale_out=sum(out for _, out in links),
    )
    return _Stage(compute=c, tp=tp * redo, cp=cp_f + cp_b, ep=ep * redo, dp_microbatch=dp_f + dp_b,
                  forward=t_f, backward=t_b, dp_step=dp_step, optimizer=optimizer,
                  offload=offload, bytes=comm_bytes)


def _recompute_flops_per_token(plan: Plan, arch: Architecture, seq_len: int) -> float:
    per_layer = _layer_flops_per_token(arch, seq_len)
    if plan.recompute == "full":
        share = sum(plan.recomputed_layers(s.stage, s.num_layers) for s in stage_shards(plan, arch)) / arch.num_layers
        return share * sum(lin + att for lin, att in per_layer)
    if plan.recompute == "selective":
        return sum(att for _, att in per_layer)
    return 0.0


def estimate_time(plan: Plan, workload: Workload, cluster: Cluster, *,
                  schedule: Schedule | None = None) -> tuple[TimeBreakdown, CommBytes]:
    """Step time and its breakdown, and bytes on the wire per GPU, for one plan (§6.5).

    T_step = m·(t_F + t_B)·(1 + bubble_fraction)|slowest stage + (p−1)·v·T_pp + max over stages
    of (DP exposed + optimizer + offload), with m = gas micro-batches per step; for 1F1B and
    interleaved 1F1B the bubble is (p−1)/v·(t_F + t_B). `schedule` defaults to what Megatron-LM
    runs for the plan (`default_schedule`).
    """
    if plan.global_batch != workload.global_batch:
        raise PlanError(f"mbs ({plan.mbs}) * gas ({plan.gas}) * dp ({plan.dp}) = {plan.global_batch}"
                        f" != global batch ({workload.global_batch})")
    schedule = schedule or default_schedule(plan)
    _check_schedule(plan, schedule)
    arch, seq = workload.arch, workload.seq_len
    p, v, m = plan.pp, plan.vpp, plan.gas
    per_layer = {
        "tp": tp_traffic(plan, arch, seq, cluster),
        "cp": cp_traffic(plan, arch, seq, cluster),
        "ep": ep_traffic(plan, arch, seq, cluster),
        "pp": pp_traffic(plan, arch, seq, cluster),
    }
    stages = [_stage(plan, workload, cluster, s, per_layer, schedule) for s in stage_shards(plan, arch)]
    pace = max(stages, key=lambda s: s.forward + s.backward)
    tail = max(stages, key=lambda s: s.dp_step + s.optimizer + s.offload)
    per_microbatch = pace.forward + pace.backward
    w_share = pace.compute.weight_grad / per_microbatch if per_microbatch > 0 else 0.0
    bubble = bubble_fraction(schedule, p, m, v, w_share) * m * per_microbatch
    # Pipeline p2p on the fill/drain path: (p−1) boundaries, ×v with interleaving, ×2 for
    # DualPipe's two chunks per rank (§6.4-6.5).
    pp = (p - 1) * (2 if schedule == "dualpipe" else v) * total_seconds(per_layer["pp"], cluster)
    step = m * per_microbatch + bubble + pp + tail.dp_step + tail.optimizer + tail.offload
    c = pace.compute
    dp = m * pace.dp_microbatch + tail.dp_step
    tokens = workload.global_batch * seq
    if workload.trains_adapters:
        # Frozen weights need no weight gradients: the backward is one forward's worth
        # (input gradients), so adapter training does 2x forward, not 3x (LoRA, arXiv 2106.09685 §4.2).
        model_flops = 2 * forward_flops_per_token(arch, seq) * tokens
    elif workload.partial is not None:
        # Partial fine-tuning: the same 2x forward, plus the trained GEMMs' weight gradients.
        model_flops = (2 * forward_flops_per_token(arch, seq)
                       + 2 * workload.partial.active_trainable_params(arch)) * tokens
    else:
        model_flops = training_flops_per_token(arch, seq) * tokens
    recompute_flops = _recompute_flops_per_token(plan, arch, seq) * tokens
    peak = cluster.gpu.peak(MFU_PEAK_DTYPE.get(plan.precision, "bf16")) * plan.parallel.world
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
    (m + (p−1)/v)·max microbatch + p2p + max tail. `stages`: only these, in order."""
    arch, seq = workload.arch, workload.seq_len
    per_layer = {
        "tp": tp_traffic(plan, arch, seq, cluster),
        "cp": cp_traffic(plan, arch, seq, cluster),
        "ep": ep_traffic(plan, arch, seq, cluster),
        "pp": pp_traffic(plan, arch, seq, cluster),
    }
    m = plan.gas
    out = tuple(
        StageSeconds(microbatch=s.forward + s.backward, tail=s.dp_step + s.optimizer + s.offload,
                     comm=m * (s.tp + s.cp + s.ep + s.dp_microbatch) + s.dp_step)
        for s in (_stage(plan, workload, cluster, shard, per_layer) for shard in stage_shards(plan, arch)
                  if stages is None or shard.stage in stages))
    return out, (plan.pp - 1) * plan.vpp * total_seconds(per_layer["pp"], cluster)
