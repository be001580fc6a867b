"""Compute seconds of one micro-batch on one GPU of a stage: GEMMs at peak × η, memory-bound kernels
at HBM bandwidth, recompute (docs/methodology.md §6.1)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from planner.cost import calibration as cal
from planner.cost import memo
from planner.cost.cluster import Cluster
from planner.cost.comm import ep_traffic, total_seconds
from planner.cost.engine import expert_passes
from planner.cost.memory.activations import matmul_widths
from planner.cost.plan import Plan
from planner.cost.precisions import QUANTIZED_PRECISIONS, fp8_transposes, te_recipe
from planner.cost.shard import StageShard, stage_shards
from planner.cost.timing import elementwise as elt
from planner.cost.timing.attention import flash_kernel
from planner.cost.workload import Workload
from planner.model.architecture import Architecture
from planner.model.flops import layer_flops, logits_flops, routed_weights_per_token
from planner.model.frozen import evolve

COMPUTE_DTYPE = {"bf16": "bf16", "bf16-pure": "bf16", "bf16-autocast": "bf16",
                 "fp16": "fp16", "fp8": "fp8", "mxfp8": "mxfp8", "nvfp4": "nvfp4", "fp32": "fp32"}
"""Tensor-core dtype of the GEMMs per training precision. fp8 and mxfp8 (Transformer Engine) run the
linear layers in fp8 and attention and the output layer in bf16; fp32 uses what
`Accelerator.peak("fp32")` gives (TF32 where the part has it)."""


def layer_efficiency(gpu, dtype: str, gemm_flops: float) -> float:
    """η: achieved / peak FLOP/s of a layer's GEMMs on one GPU (methodology §6.1).

    η = GEMM_FRACTION_OF_MAMF (0.84) × MAMF fraction × size factor, the size factor F / (F + peak·t_half) falling for
    GEMMs of F FLOPs that last only microseconds (calibration.GEMM_HALF_EFFICIENCY_S). The
    layer's memory-bound kernels are timed apart, at HBM bandwidth (`stage_compute`).
    """
    return _Rate(gpu, dtype).efficiency(gemm_flops)


_RATES = memo.new_cache()
_FLASH = memo.new_cache()


def _rate(gpu, dtype: str) -> _Rate:
    """The GPU's `_Rate` for a dtype, once per search (memo.py)."""
    return memo.lookup(_RATES, (gpu, dtype), lambda: _Rate(gpu, dtype))


class _Rate:
    """Peak and large-GEMM efficiency of one GPU and dtype."""

    def __init__(self, gpu, dtype: str):
        if dtype in QUANTIZED_PRECISIONS and not gpu.supports(dtype):
            dtype = "bf16"
        self.peak = gpu.peak(dtype)
        self.large = cal.GEMM_FRACTION_OF_MAMF * cal.mamf_fraction(gpu.id, dtype)
        self.half_flops = self.peak * cal.GEMM_HALF_EFFICIENCY_S

    def efficiency(self, gemm_flops: float) -> float:
        return self.large * gemm_flops / (gemm_flops + self.half_flops)

    def seconds(self, flops: float, gemm_flops: float) -> float:
        """Seconds for `flops` done as GEMMs of `gemm_flops` each."""
        return flops / (self.peak * self.efficiency(gemm_flops)) if flops > 0 else 0.0


@lru_cache(maxsize=256)
def _layer_flops_per_token(arch: Architecture, seq_len: int,
                           windows: tuple[int | None, ...] | None = None) -> tuple[tuple[float, float], ...]:
    """(linear, attention) forward FLOPs per token of every layer (causal attention, each
    layer's window)."""
    out = []
    for i in range(arch.num_layers):
        lf = layer_flops(arch, i, seq_len, window=windows[i] if windows else None)
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


_STAGE_COMPUTE = memo.new_cache()


def compute_key(plan: Plan) -> Plan:
    """The plan with the keys `stage_compute` never reads reset: the data-parallel size and the
    steps' micro-batch count, ZeRO, offload, the optimizer and its moments, fp8 gathers, activation
    offload, LoRA rank and quantization (the workload says whether adapters train), the end
    stages' layer counts (the shard carries its layers) and the engine (the workload's traits
    name its kernels). It reads tp, pp, cp, ep, sp, expert TP (the MoE layers' collectives that
    the host's launches overlap), the micro-batch, the precision and the recompute policy, layers
    and modules."""
    return evolve(plan, parallel=evolve(plan.parallel, dp=1, vpp=1), zero=0, gas=1, lora_rank=0, quant="none",
                   offload="none", optimizer="adamw", first_stage_layers=None, last_stage_layers=None,
                   offload_activation_layers=0, moment_dtype="fp32", fp8_param_gather=False, framework="megatron")


def stage_compute(plan: Plan, workload: Workload, cluster: Cluster, shard: StageShard,
                  key: Plan | None = None) -> StageCompute:
    """Compute seconds of one micro-batch on one GPU of a stage (methodology §6.1); memoized within
    a search (planner/cost/memo.py) on every input it reads (`key`: the plan's `compute_key`,
    when the caller has it)."""
    key = key if key is not None else compute_key(plan)
    return memo.lookup(_STAGE_COMPUTE, (key, workload, cluster, shard),
                       lambda: _stage_compute(plan, workload, cluster, shard, key))


_LAYER_TERMS = memo.new_cache()


def _stage_compute(plan: Plan, workload: Workload, cluster: Cluster, shard: StageShard,
                   key: Plan | None = None) -> StageCompute:
    """Compute seconds of one micro-batch on one GPU of a stage (methodology §6.1): the sums of its
    layers' terms (`_LayerTerms`, shared by the plans of one `compute_key`, `key` when the caller
    has it, whatever layers they recompute), the output layer's on the last stage."""
    key = key if key is not None else compute_key(plan)
    terms = _layer_terms(plan, workload, cluster, key)
    fwd = bwd = attn = redo = wgrad = part = 0.0
    recomputed = plan.recomputed_layers(shard.stage, shard.num_layers)  # the stage's first layers
    for n, i in enumerate(range(shard.first_layer, shard.first_layer + shard.num_layers)):
        t_f, t_b, t_w, t_att, t_sel = terms.layer(i)
        fwd += t_f
        redo += t_f if n < recomputed else 0.0
        part += t_sel
        bwd += t_b
        wgrad += t_w
        attn += t_att
    # Full: the layers' forward again; selective: what its modules recompute; none: 0 (methodology §6.1).
    recompute = {"full": redo, "selective": part}.get(plan.recompute, 0.0)
    if shard.stage == plan.pp - 1:
        fwd += terms.output_forward
        bwd += terms.loss_backward
        bwd += terms.output_backward
        wgrad += terms.output_weight_grad
    return StageCompute(forward=fwd, backward=bwd, recompute=recompute, attention_forward=attn,
                         weight_grad=wgrad)


def _terms_key(key: Plan) -> Plan:
    """The memo key of a plan's `_LayerTerms`: its compute key with what the terms never read
    reset. They read the recompute policy only to time selective recompute (`_selective_seconds`),
    so a plan that recomputes layers in full and one that recomputes none share them, as do the
    search's probes of one layout (layouts.py: none, all, one layer per stage)."""
    if key.recompute == "selective":
        return evolve(key, recompute_layers=None)
    return evolve(key, recompute="none", recompute_layers=None, recompute_modules=None)


def model_compute(plan: Plan, workload: Workload, cluster: Cluster, key: Plan | None = None) -> float:
    """Forward and backward seconds of one micro-batch through every layer and the output layer,
    recompute left out: the sum over the pipeline's stages of `stage_compute`'s forward and
    backward, whatever the partition (timing/floor.py)."""
    return _layer_terms(plan, workload, cluster, key if key is not None else compute_key(plan)).model_compute()


_KIND_COUNTS = memo.new_cache()


def least_layer_forward(plan: Plan, workload: Workload, cluster: Cluster) -> float:
    """The least forward seconds of one micro-batch through one layer under the plan, over the
    layers: what recomputing a layer adds to its stage's compute at the least (`stage_compute`
    counts each recomputed layer's forward again; timing/floor.py)."""
    terms = _layer_terms(plan, workload, cluster, compute_key(plan))
    return min(terms.layer(i)[0] for i, _ in memo.lookup(_KIND_COUNTS, workload, terms._kind_counts))


def layer_seconds(plan: Plan, workload: Workload, cluster: Cluster, index: int) -> tuple[float, float, float]:
    """(forward, backward, selective recompute) seconds of one micro-batch through layer `index`
    under the plan: what `stage_compute` sums for it (timing/partitioned.py)."""
    t_f, t_b, _, _, t_sel = _layer_terms(plan, workload, cluster, compute_key(plan)).layer(index)
    return t_f, t_b, t_sel


def output_seconds(plan: Plan, workload: Workload, cluster: Cluster) -> float:
    """Forward and backward seconds of one micro-batch through the output layer and the loss:
    what `stage_compute` adds on the last stage."""
    terms = _layer_terms(plan, workload, cluster, compute_key(plan))
    return terms.output_forward + terms.loss_backward + terms.output_backward


def _layer_terms(plan: Plan, workload: Workload, cluster: Cluster, key: Plan) -> _LayerTerms:
    """The plan's `_LayerTerms`, memoized within a search on `_terms_key`."""
    return memo.lookup(_LAYER_TERMS, (_terms_key(key), workload, cluster), lambda: _LayerTerms(plan, workload, cluster))


class _LayerTerms:
    """Compute seconds of one micro-batch of each layer and of the output layer, under one plan
    (methodology §6.1); a layer's are worked out when a stage first asks for them.

    Per layer: the GEMMs at peak × η, plus the memory-bound kernels at achieved HBM bandwidth —
    norms and residual adds (replicated over TP unless SP), the MLP activation, and, when the
    attention is unfused, the s×s score traffic (calibration: SEL22 Table 4 derivation).
    Reads neither the stage nor how many of its layers recompute.
    """

    def __init__(self, plan: Plan, workload: Workload, cluster: Cluster):
        arch, gpu = workload.arch, cluster.gpu
        self.plan, self.workload, self.arch = plan, workload, arch
        tp = plan.tp
        dtype = COMPUTE_DTYPE.get(plan.precision, "bf16")
        self.rate = _rate(gpu, dtype)
        self.rate16 = rate16 = _rate(gpu, "bf16" if dtype in QUANTIZED_PRECISIONS else dtype)  # attention, output layer
        self.hbm = hbm = gpu.hbm_bandwidth * cal.HBM_EFFICIENCY
        seq = workload.seq_len
        self.tokens = tokens = plan.mbs * seq / plan.cp  # tokens of this GPU's micro-batch (b·s/c)
        # Backward of a GEMM: the input gradient (1× forward) and, for weights that train, the weight
        # gradient (1× forward). Partial fine-tuning has no backward at all below the first layer
        # that trains (nothing there needs a gradient); None: nothing trains in the layers.
        partial = workload.partial
        self.first_trained = first_trained = partial.first_trainable_layer(arch) if partial is not None else 0
        self.mlp_mats = 3 if arch.gated_mlp else 2
        self.per_layer = _layer_flops_per_token(arch, seq, workload.layer_windows)
        unfused = workload.attention_kernel == "unfused"
        # Unfused kernels compute the whole s×s matrix (mask applied after): 2× the causal FLOPs,
        # and move every score through HBM (calibration.UNFUSED_ATTENTION_BYTES_PER_SCORE).
        self.attention_factor = 2.0 if unfused else 1.0
        # fp8 training keeps the attention core in 16 bits (Transformer Engine's fp8_dpa is off unless
        # asked for): the same fused kernel at the same measured rate as bf16 training.
        self.flash = None if unfused else memo.lookup(_FLASH, gpu, lambda: flash_kernel(gpu))
        scores = plan.mbs * arch.attention.num_heads / tp * (seq / plan.cp) * seq if unfused else 0.0
        self.score_f = scores * cal.UNFUSED_ATTENTION_BYTES_PER_SCORE["forward"] / hbm
        self.score_b = scores * cal.UNFUSED_ATTENTION_BYTES_PER_SCORE["backward"] / hbm
        self.framework = framework = workload.engine.kernels  # the kernel family
        # Transformer Engine's casts around each GEMM, by recipe (elementwise.layer_bytes).
        self.fp8 = te_recipe(plan.precision, framework)
        self.fp8_transpose = fp8_transposes(gpu.id)
        # Routed experts run in 8 bits where the engine quantizes their grouped GEMMs
        # (experts_in_8_bits); elsewhere at the 16-bit rate.
        self.routed_rate = self.rate if experts_in_8_bits(framework) else self.rate16
        self.host = cal.HOST_KERNEL_S.get(framework, cal.HOST_KERNEL_S["megatron"])
        self.residual_split = tp if plan.parallel.sp else 1  # norms and residual adds: replicated unless SP
        self.eager_b = elt.EAGER_BACKWARD_FACTOR if framework == "hf" else cal.ELEMENTWISE_BACKWARD_FACTOR
        # Dispatch + combine of one MoE layer in one pass (half of ep_traffic's four all-to-alls).
        self.a2a_pass = total_seconds(ep_traffic(plan, arch, seq, cluster, workload.engine.moe_dispatch), cluster) / 2
        self._layers: dict[int, tuple[float, float, float, float, float]] = {}
        self._kinds: dict[object, tuple[float, float, float, float, float]] = {}
        self._model: float | None = None
        # Output layer on the last stage; embedding lookup is negligible (methodology §6.1).
        logits = logits_flops(arch) * tokens / tp
        t_out = rate16.seconds(logits, logits)
        # The loss over the vocabulary is memory-bound (elementwise.loss_bytes_per_vocab).
        t_loss = tokens * arch.vocab / tp * elt.loss_bytes_per_vocab(framework) / hbm
        output_trains = partial.output if partial is not None else not workload.trains_adapters
        self.output_forward = t_out + t_loss / 3
        self.loss_backward = 2 * t_loss / 3
        self.output_backward = ((first_trained is not None) + output_trains) * t_out
        self.output_weight_grad = output_trains * t_out

    def layer(self, i: int) -> tuple[float, float, float, float, float]:
        """(forward, backward, weight gradients, attention forward, selective recompute) seconds
        of layer `i`; backward and weight gradients 0.0 below the first layer that trains."""
        try:
            return self._layers[i]
        except KeyError:
            pass
        kind = self.kind(i)
        try:
            out = self._kinds[kind]
        except KeyError:
            out = self._kinds[kind] = self._layer(i)
        self._layers[i] = out
        return out

    def model_compute(self) -> float:
        """Forward and backward seconds of every layer and the output layer (`model_compute`)."""
        if self._model is None:
            layers = 0.0
            for i, count in memo.lookup(_KIND_COUNTS, self.workload, self._kind_counts):
                t_f, t_b, *_ = self.layer(i)
                layers += count * (t_f + t_b)
            self._model = layers + self.output_forward + self.loss_backward + self.output_backward
        return self._model

    def _kind_counts(self) -> tuple[tuple[int, int], ...]:
        """The first layer of each `kind` and how many layers are of it (the workload's alone)."""
        counts: dict[object, list[int]] = {}
        for i in range(self.arch.num_layers):
            counts.setdefault(self.kind(i), [i, 0])[1] += 1
        return tuple((i, count) for i, count in counts.values())

    def kind(self, i: int) -> object:
        """What `_layer` reads of the index `i`: whether the layer routes to experts, its
        attention window (the kernel's tiles) and its FLOPs per token; under partial fine-tuning,
        which modules train varies by layer too, so there the index itself. Layers of one kind
        have the same terms: DeepSeek-V3's 61 layers are of two kinds."""
        if self.workload.partial is not None:
            return i
        windows = self.workload.layer_windows
        return self.arch.is_moe_layer(i), windows[i] if windows else None, self.per_layer[i]

    def _layer(self, i: int) -> tuple[float, float, float, float, float]:
        plan, workload, arch = self.plan, self.workload, self.arch
        tp, ep, tokens, hbm, host = plan.tp, plan.ep, self.tokens, self.hbm, self.host
        framework, fp8, residual_split = self.framework, self.fp8, self.residual_split
        linear_pt, attention_pt = self.per_layer[i]
        attention = self.attention_factor * attention_pt * tokens / tp
        moe_layer = arch.is_moe_layer(i)
        experts_local = arch.moe.num_experts // ep if moe_layer else 1
        passes = expert_passes(arch, workload.engine.transformers_modules) if moe_layer else 0
        t_dense, t_routed = _linear_seconds(self.rate, self.routed_rate, arch, i, linear_pt, tokens, tp, plan,
                                            experts_local, self.mlp_mats, passes)
        t_lin = t_dense + t_routed
        if self.flash is None:
            t_att = self.rate16.seconds(attention, attention)
            t_att_b = 2 * t_att
        else:  # fused attention at the kernel's own measured rate, on its whole tiles (attention.py)
            windows = workload.layer_windows
            t_att, t_att_b = self.flash.seconds(arch.attention, workload.seq_len, windows[i] if windows else None,
                                                tokens * arch.attention.num_heads / tp)
        alltoall = workload.engine.moe_dispatch == "alltoall"
        # Megatron-Core's alltoall dispatcher reorders the delivered copies by local expert
        # (elementwise.EXPERT_SORT_BYTES_PER_ELEMENT); DeepEP / HybridEP write them in that order.
        sort = framework == "megatron" and alltoall and ep > 1 and experts_local > 1
        lb = elt.layer_bytes(arch, i, framework, fp8, fused_rope=workload.engine.fused_rope,
                             fused_norm=workload.engine.fused_norm,
                             fused_moe_activation=workload.engine.fused_moe_activation, expert_sort=sort,
                             fp8_transpose=self.fp8_transpose, expert_passes=passes)
        t_elt = tokens * (lb.residual_stream / residual_split + lb.sharded / tp) / hbm
        t_cast = tokens * (lb.cast_residual / residual_split + lb.cast_sharded / tp) / hbm
        t_cast_b = tokens * (lb.backward_residual / residual_split + lb.backward_sharded / tp) / hbm
        # The host launches every kernel; a layer whose kernels are shorter than their launches
        # runs at the host's pace (elementwise.layer_kernels, backward_kernels). While the
        # device runs the layer's expert all-to-alls (timed in step.py, `a2a` each way) the host
        # goes on issuing: only host time beyond them is charged here.
        t_host = elt.layer_kernels(arch, i, framework, fp8, experts_local, alltoall) * host
        t_host_b = elt.backward_kernels(arch, i, framework, fp8, experts_local, alltoall) * host
        a2a = self.a2a_pass if moe_layer else 0.0
        t_f = max(t_lin + t_att + self.score_f + t_elt + t_cast, t_host - a2a)
        if moe_layer and framework == "megatron" and ep > 1:
            # The alltoall dispatcher waits for the device before its permutation
            # (elementwise.moe_kernels_after_sync): the attention block's device time and the
            # host's launches of the experts' kernels follow one another instead of overlapping.
            # Those launches overlap the dispatch all-to-all only: the combine is issued after
            # them (moe_layer.py: dispatch, experts, combine), half of the layer's `a2a`.
            before = t_dense + t_att + self.score_f + tokens * lb.residual_stream / residual_split / hbm
            t_f = max(t_f, before + elt.moe_kernels_after_sync(arch, fp8, experts_local) * host - a2a / 2)
        selective = (_selective_seconds(plan, arch, i, framework, t_lin, t_att + self.score_f, t_elt + t_cast)
                     if plan.recompute == "selective" else 0.0)
        backward = weight_grad = 0.0
        if self.first_trained is not None and i >= self.first_trained:
            weight_grad = _trained_share(workload, i, linear_pt) * t_lin
            backward = max(t_lin + weight_grad + t_att_b + self.score_b + self.eager_b * t_elt + t_cast_b,
                           t_host_b - a2a)
        return t_f, backward, weight_grad, t_att + self.score_f, selective


def _selective_seconds(plan: Plan, arch: Architecture, index: int, framework: str, t_lin: float,
                       t_att: float, t_elt: float) -> float:
    """Forward seconds selective recompute repeats in one layer.

    Megatron-Core (`recompute_modules`, transformer_config.py): core_attn the attention core;
    layernorm, moe_act and the other element-wise modules their memory-bound kernels (all of
    the layer's at most); mlp / moe the MLP's GEMMs too. hf (torchtitan's per-operator policy,
    `memory.activations._hf_op_selective_bytes`): every element-wise kernel and every second
    matmul (k, o, up: their share of the layer's GEMM FLOPs); MoE layers: the attention core."""
    if framework == "hf":
        if arch.is_moe_layer(index):
            return t_att
        h, widths = arch.hidden, matmul_widths(arch)
        inputs = (h, h, h, arch.attention.q_dim) + ((h, h, arch.ffn) if arch.gated_mlp else (h, arch.ffn))
        flops = [w * d for w, d in zip(widths, inputs, strict=True)]
        return t_lin * sum(flops[1::2]) / sum(flops) + t_elt
    out = t_att if plan.recomputes("core_attn") else 0.0
    if any(plan.recomputes(m) for m in ("layernorm", "moe_act", "mla_up_proj", "shared_experts")):
        out += t_elt
    if plan.recomputes("mlp") or plan.recomputes("moe"):
        out += t_lin / 2  # about the MLP's share of a layer's GEMMs
    return out


def _trained_share(workload: Workload, index: int, linear_flops_per_token: float) -> float:
    """Share of layer `index`'s GEMM FLOPs whose weights train: all of them, none for LoRA/QLoRA
    (frozen base weights; the adapters' own GEMMs are negligible), the trained modules' for
    partial fine-tuning."""
    if workload.partial is not None:
        return workload.partial.weight_grad_fraction(workload.arch, index, linear_flops_per_token)
    return 0.0 if workload.trains_adapters else 1.0


def _linear_seconds(rate: "_Rate", routed_rate: "_Rate", arch: Architecture, index: int, linear_pt: float,
                    tokens: float, tp: int, plan: Plan, experts_local: int, mlp_mats: int,
                    passes: int = 0) -> tuple[float, float]:
    """(dense, routed) GEMM seconds of one layer's linear layers on one GPU: attention
    projections and dense MLP as GEMMs of their own size; routed experts as E/ep GEMMs per
    matrix, each of the tokens that expert receives (a grouped GEMM with few tokens per expert
    runs far below peak).

    Expert tensor parallelism leaves both unchanged: with etp ranks per expert each receives etp
    times the tokens (gathered, comm.ep_traffic) for 1/etp of the expert's width, so a GPU's
    routed FLOPs, its E/ep local experts and each expert GEMM's FLOPs are those of etp = 1;
    with SP each TP rank routes its 1/tp of the tokens whatever etp is. `passes`: expert MLPs
    per token the engine runs (engine.expert_passes; 0: top_k), every expert in transformers'
    Llama 4, whose GEMMs then hold every token."""
    if not arch.is_moe_layer(index):
        linear = linear_pt * tokens / tp
        return rate.seconds(linear, linear / (2 + mlp_mats)), 0.0
    model_routed = routed_flops_per_token(arch, index) * tokens / tp
    rest = max(0.0, linear_pt * tokens / tp - model_routed)
    routed = model_routed * (passes or arch.moe.top_k) / arch.moe.top_k
    gemm = routed / (experts_local * mlp_mats)  # one expert's GEMM for its share of the tokens
    return rate.seconds(rest, rest / 4), routed_rate.seconds(routed, gemm)


def experts_in_8_bits(kernels: str) -> bool:
    """Whether fp8 training runs the routed experts' grouped GEMMs in 8 bits: Megatron-Core's
    TEGroupedLinear does. torchtitan's float8 and MX converters swap the nn.Linear modules
    (`quantize.linear.*`); its experts are grouped GEMMs over parameters, quantized only by the
    prototype `quantize.grouped_mm.*` converters (torchao nightly; the float8 one asserts pp 1 and
    cp 1: torchtitan components/quantization/float8.py), which the planner does not emit."""
    return kernels == "megatron"


def routed_flops_per_token(arch: Architecture, index: int) -> float:
    """Forward FLOPs per token of layer `index`'s routed experts (its top-k experts' GEMMs)."""
    return 2 * routed_weights_per_token(arch, index)


def linear_flops_share(arch: Architecture, seq_len: int, windows: tuple[int | None, ...] | None = None,
                       routed: bool = True) -> float:
    """Share of a token's forward FLOPs in the layers' weight GEMMs (what fp8 training runs in
    fp8), the routed experts' left out unless `routed`; the attention core and the output layer
    stay in bf16."""
    per_layer = _layer_flops_per_token(arch, seq_len, windows)
    total = sum(lin + att for lin, att in per_layer) + logits_flops(arch)
    linear = sum(lin for lin, _ in per_layer)
    if not routed:
        linear -= sum(routed_flops_per_token(arch, i) for i in range(arch.num_layers))
    return linear / total


def recompute_flops_per_token(plan: Plan, arch: Architecture, seq_len: int,
                              windows: tuple[int | None, ...] | None = None) -> float:
    per_layer = _layer_flops_per_token(arch, seq_len, windows)
    if plan.recompute == "full":
        share = sum(plan.recomputed_layers(s.stage, s.num_layers) for s in stage_shards(plan, arch)) / arch.num_layers
        return share * sum(lin + att for lin, att in per_layer)
    if plan.recompute == "selective":
        return sum(att for _, att in per_layer)
    return 0.0
