"""Compute seconds of one micro-batch on one GPU of a stage: GEMMs at peak × η, memory-bound kernels
at HBM bandwidth, recompute (docs/methodology.md §6.1)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from planner.cost import calibration as cal
from planner.cost.cluster import Cluster
from planner.cost.plan import Plan
from planner.cost.shard import StageShard, stage_shards
from planner.cost.workload import Workload
from planner.model.architecture import Architecture
from planner.model.flops import layer_flops, logits_flops

COMPUTE_DTYPE = {"bf16": "bf16", "bf16-pure": "bf16", "bf16-autocast": "bf16",
                 "fp16": "fp16", "fp8": "fp8", "fp32": "fp32"}
"""Tensor-core dtype of the GEMMs per training precision. fp8 (Transformer Engine) runs the
linear layers in fp8 and attention and the output layer in bf16; fp32 uses what
`Accelerator.peak("fp32")` gives (TF32 where the part has it)."""


def layer_efficiency(gpu, dtype: str, gemm_flops: float) -> float:
    """η: achieved / peak FLOP/s of a layer's GEMMs on one GPU (methodology §6.1).

    η = GEMM_FRACTION_OF_MAMF (0.84) × MAMF fraction × size factor, the size factor F / (F + peak·t_half) falling for
    GEMMs of F FLOPs that last only microseconds (calibration.GEMM_HALF_EFFICIENCY_S). The
    layer's memory-bound kernels are timed apart, at HBM bandwidth (`stage_compute`).
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
class StageCompute:
    forward: float
    backward: float
    recompute: float
    attention_forward: float
    """Attention-core forward seconds (what ring attention hides its transfers behind)."""
    weight_grad: float = 0.0
    """Part of `backward` that computes weight gradients (W of zero-bubble schedules): one
    forward's worth of every trained GEMM; none for LoRA's frozen weights."""


def stage_compute(plan: Plan, workload: Workload, cluster: Cluster, shard: StageShard) -> StageCompute:
    """Compute seconds of one micro-batch on one GPU of a stage (methodology §6.1).

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
    # Full: the layers' forward again; selective: the attention core again; none: 0 (methodology §6.1).
    recompute = {"full": redo, "selective": attn}.get(plan.recompute, 0.0)
    if shard.stage == plan.pp - 1:
        # Output layer on the last stage; embedding lookup is negligible (methodology §6.1).
        logits = logits_flops(arch) * tokens / tp
        t_out = rate16.seconds(logits, logits)
        fwd += t_out
        output_trains = partial.output if partial is not None else not workload.trains_adapters
        bwd += ((first_trained is not None) + output_trains) * t_out
        wgrad += output_trains * t_out
    return StageCompute(forward=fwd, backward=bwd, recompute=recompute, attention_forward=attn,
                         weight_grad=wgrad)


def _trained_share(workload: Workload, index: int, linear_flops_per_token: float) -> float:
    """Share of layer `index`'s GEMM FLOPs whose weights train: all of them, none for LoRA/QLoRA
    (frozen base weights; the adapters' own GEMMs are negligible), the trained modules' for
    partial fine-tuning."""
    if workload.partial is not None:
        return workload.partial.weight_grad_fraction(workload.arch, index, linear_flops_per_token)
    return 0.0 if workload.trains_adapters else 1.0


def recompute_flops_per_token(plan: Plan, arch: Architecture, seq_len: int) -> float:
    per_layer = _layer_flops_per_token(arch, seq_len)
    if plan.recompute == "full":
        share = sum(plan.recomputed_layers(s.stage, s.num_layers) for s in stage_shards(plan, arch)) / arch.num_layers
        return share * sum(lin + att for lin, att in per_layer)
    if plan.recompute == "selective":
        return sum(att for _, att in per_layer)
    return 0.0
