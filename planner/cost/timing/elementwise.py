"""Memory-bound work of a layer and the host's kernel launches, by kernel family.

The GEMMs of a layer run at tensor-core speed (`compute.py`); everything between them — norms,
residual adds, rotary embeddings, the MLP activation, fp8 casts, the MoE router and token
permutation, the loss — moves bytes through HBM and is timed as bytes / achieved bandwidth.
How many bytes depends on what fuses them: Megatron-Core runs Transformer Engine's fused
kernels (`megatron`, `deepspeed`: Megatron-LM's GPT modules), PyTorch eager modules run one
kernel per operator (`hf`: Hugging Face, torchtitan and NeMo AutoModel models under FSDP2),
less what the engine fuses (EngineTraits: NeMo AutoModel's RoPE, RMSNorm and expert SwiGLU).

Counts are bytes per token, forward, 16-bit activations, read + write of every operand, derived
operator by operator from the modules' source (cited per term). Backward moves about the
forward's bytes for fused kernels (calibration.ELEMENTWISE_BACKWARD_FACTOR, [SEL22] Table 4)
and twice them for eager operators (`EAGER_BACKWARD_FACTOR`); fp8 casts are counted apart,
forward and backward each (`LayerBytes`).
"""
from __future__ import annotations

from dataclasses import dataclass

from planner.cost import calibration as cal
from planner.cost.precisions import MX_BLOCK, NVFP4_BYTES_PER_ELEMENT
from planner.model.architecture import Architecture

EAGER_BACKWARD_FACTOR = 2.0
"""Backward bytes / forward bytes of an eager element-wise operator: autograd's backward of a
pointwise op reads the incoming gradient and the saved operand(s) and writes one gradient per
input (torch/csrc/autograd/generated: mul's backward computes grad·other and grad·self, two
outputs from three reads), about twice the forward's read + write."""


EXPERT_BIAS_BYTES_PER_ELEMENT = 28.0
"""HBM bytes per element of the routed experts' output (top_k · h per token) that Megatron-Core
spends adding fc2's bias weighted by the routing probability, expert by expert in eager PyTorch
(megatron/core/transformer/moe/experts.py `TEGroupedMLP._apply_bias`: `t + b * p` over
`torch.split`, `torch.cat`, `.to(dtype)`). The probabilities are fp32, so the chain runs in fp32:
b·p writes 4; the add reads 2 + 4 and writes 4; cat reads and writes 4 + 4; the cast back reads 4
and writes 2."""


EXPERT_SORT_BYTES_PER_ELEMENT = 8.0
"""HBM bytes per element of the routed copies (top_k · h per token) that Megatron-Core's alltoall
dispatcher spends ordering them by local expert: what the all-to-all delivers arrives grouped by
source rank, so `dispatch_postprocess` gathers each (rank, expert) chunk into expert order and
`combine_preprocess` restores the rank order before the combine (megatron/core/transformer/moe/
token_dispatcher.py, `sort_chunks_by_idxs`, moe_utils.py: one fused copy with
`moe_permute_fusion`, `torch.cat` of the chunks without it). Each is a 16-bit copy, read 2 and
written 2, on the way in and on the way out; only with more than one local expert."""
EXPERT_SORT_PROBABILITY_BYTES = 8.0
"""The fp32 routing probability of each routed copy sorted with its token on the way in
(`fused_sort_chunks_by_index_with_probs`): read 4, write 4."""


@dataclass(frozen=True)
class LayerBytes:
    """HBM bytes per token of one layer's forward, split by how they shard."""

    residual_stream: float
    """Norms and residual adds over the hidden state: replicated on every TP rank unless SP."""
    sharded: float
    """Query/key norms, rotary embedding, MLP activation, MoE routing and permutation: divided by
    tp (and etp for experts)."""
    cast_residual: float = 0.0
    """fp8 casts of the forward over the hidden state (the norm outputs): shards like
    `residual_stream`; backward reuses what they wrote."""
    cast_sharded: float = 0.0
    """fp8 casts of the forward that shard like `sharded`."""
    backward_residual: float = 0.0
    """Backward-only bytes over the hidden state (fp8 casts of output gradients), beyond the
    forward's other bytes times the backward factor; shards like `residual_stream`."""
    backward_sharded: float = 0.0
    """Backward-only bytes that shard like `sharded`."""


def _rmsnorm_eager_bytes_per_unit() -> float:
    # LlamaRMSNorm / torchtitan RMSNorm: x.float() r2 w4; pow(2) r4 w4; mean r4; x * rsqrt r4 w4;
    # .to(bf16) r4 w2; * weight r2 w2 (transformers models/llama/modeling_llama.py).
    return 2 + 4 + 4 + 4 + 4 + 4 + 4 + 4 + 2 + 2 + 2


def layer_bytes(arch: Architecture, index: int, framework: str, fp8: str | None, *, fused_rope: bool = False,
                fused_norm: bool = False, fused_moe_activation: bool = False,
                expert_sort: bool = False, fp8_transpose: bool = True, expert_passes: int = 0) -> LayerBytes:
    """Forward HBM bytes per token of layer `index` outside the GEMMs and the attention core.
    `fp8`: Transformer Engine's quantization recipe (precisions.te_recipe), None in 16 bits;
    `fp8_transpose`: tensor scaling writes each cast tensor transposed too (precisions.fp8_transposes).
    `fused_rope`, `fused_norm`, `fused_moe_activation`: eager modules with those kernels fused
    (EngineTraits). `expert_sort`: the routed copies are sorted by local expert after the
    all-to-all and back before the combine (`EXPERT_SORT_BYTES_PER_ELEMENT`). `expert_passes`:
    expert MLPs per token (engine.expert_passes; 0: top_k)."""
    h = arch.hidden
    passes = expert_passes or (arch.moe.top_k if arch.is_moe_layer(index) else 0)
    att = arch.attention
    eager = framework == "hf"
    if eager:
        fused = fused_norm and arch.norm == "rmsnorm"
        norm = cal.ELEMENTWISE_BYTES_PER_TOKEN["norms"] / 2 if fused else (
            _rmsnorm_eager_bytes_per_unit() if arch.norm == "rmsnorm" else 8)
        norms = arch.norms_per_layer * norm * h
        residual = 2 * 6 * h  # two adds: read 2 + 2, write 2
    else:
        # Fused TE / Megatron norms and bias-dropout-add ([SEL22] Table 4 derivation).
        norms = cal.ELEMENTWISE_BYTES_PER_TOKEN["norms"] * h * arch.norms_per_layer / 2
        residual = cal.ELEMENTWISE_BYTES_PER_TOKEN["residual"] * h
    qk_norms = 0.0
    if att.qk_norm in ("head", "projection") and not att.is_mla:
        # RMSNorm over the queries and keys (Qwen3 per head, OLMo-2 over the projection), split
        # with the heads: eager as the layer norms above, or Transformer Engine's fused norm
        # (read 2, write 2).
        qk_norms = (att.q_dim + att.kv_dim) * (norm if eager else 4)
    rotary = 0.0
    if arch.position == "rope":
        width = (att.rotary_dim or att.head_dim) if not att.is_mla else att.qk_rope_head_dim
        heads = att.num_heads + (att.num_kv_heads if not att.is_mla else 1)
        # TE fused RoPE reads and writes q and k once (2 + 2); HF's q·cos + rotate_half(q)·sin
        # runs mul, slice, neg, cat, mul, add: 26 bytes per rotated element.
        rotary = heads * width * (26 if eager and not fused_rope else 4)
    ffn_units = _ffn_units(arch, index, passes)
    gated = arch.gated_mlp
    if eager and arch.is_moe_layer(index) and fused_moe_activation and arch.mlp_activation == "silu" and gated:
        # Routed experts fused (read gate and up, write the product); the shared expert eager.
        shared = arch.moe.shared_ffn
        activation = (cal.ACTIVATION_BYTES_PER_FFN_UNIT["gated"] * (ffn_units - shared)
                      + _eager_activation_bytes(arch) * shared)
    elif eager and arch.is_moe_layer(index) and fused_moe_activation:
        # Eager activation, then the routing weight: times the fp32 probability r2 w4, cast r4 w2.
        shared = arch.moe.shared_ffn
        activation = (_eager_activation_bytes(arch) + 12) * (ffn_units - shared) + _eager_activation_bytes(arch) * shared
    elif eager:
        activation = _eager_activation_bytes(arch) * ffn_units
    else:
        activation = cal.ACTIVATION_BYTES_PER_FFN_UNIT["gated" if gated else "gelu"] * ffn_units
    casts = norm_casts = backward_casts = backward_norm_casts = 0.0
    if fp8 == "mxfp8":
        # MXFP8 block scaling needs no amax before its cast: each GEMM input is quantized in one
        # pass, read 2 and written 1 row-wise + 1 column-wise with an e8m0 scale per 32 elements
        # each way (MX_SCALES; transformer_engine 2.8 csrc/quantizer.cpp `MXFP8Quantizer::quantize`,
        # one `nvte_quantize_v2`). The norms write 16 bits and are quantized after them
        # (csrc/extensions/normalization.cpp: MXFP8 is `UNFUSED` unless NVTE_NORM_FWD_USE_CUDNN),
        # as the attention output is: 2 + 2 + 2 per element as under current scaling, without its
        # amax pass. The MLP activation writes its fp8 output itself (activation.cpp: MXFP8 is
        # `FULLY_FUSED`): 2 bytes written where the 16-bit output was, no cast.
        casts = (6 + MX_SCALES) * att.num_heads * att.value_head_dim + MX_SCALES * ffn_units
        norm_casts = 2 * (6 + MX_SCALES) * h
        # Backward: each output gradient quantized in one pass (read 2, write 2), the activation's
        # gradient written in fp8 by dact itself (activation.cpp, backward: `FULLY_FUSED`).
        backward_casts = (4 + MX_SCALES) * (att.q_dim + 2 * att.kv_dim) + (2 if gated else 1) * MX_SCALES * ffn_units
        backward_norm_casts = 2 * (4 + MX_SCALES) * h
    elif fp8 == "nvfp4":
        # NVFP4 with the recipe's random Hadamard transform (NVFP4_QUANTIZE_BYTES): no norm or
        # activation writes 4 bits itself (csrc/extensions/normalization.cpp, activation.cpp:
        # `UNFUSED` when the quantizer transforms), so the norms and the attention output write
        # 16 bits first (2 more), and the activation's 16-bit output is quantized after it.
        written = 2 + NVFP4_QUANTIZE_BYTES
        casts = written * att.num_heads * att.value_head_dim + NVFP4_QUANTIZE_BYTES * ffn_units
        norm_casts = 2 * written * h
        # Backward: every output gradient quantized the same way (with stochastic rounding, in
        # the cast itself), dact's included (it writes 16 bits).
        backward_casts = NVFP4_QUANTIZE_BYTES * ((att.q_dim + 2 * att.kv_dim) + (2 if gated else 1) * ffn_units)
        backward_norm_casts = 2 * NVFP4_QUANTIZE_BYTES * h
    elif fp8:
        # Transformer Engine's current scaling (FP8-CS, what today's Megatron-Bridge recipes run)
        # needs a tensor's amax before its cast, so nothing quantizes in the kernel that writes
        # it: each GEMM input is written in 16 bits, then read and written 1 row-wise, + 1
        # transposed where the GPU's fp8 GEMMs take one layout (Hopper: the transposed copy feeds
        # the weight gradient; none on Blackwell, csrc/quantizer.cpp `Float8Quantizer`:
        # `with_transpose = columnwise_usage && !nvte_is_non_tn_fp8_gemm_supported()`). The norms
        # and activations write their amax as they go (transformer_engine
        # csrc/extensions/normalization.cpp `FUSED_NORM_AMAX_FP8`, activation.cpp
        # `FUSED_ACTIVATION_AMAX_FP8`): 2 + 2 + (1 + 1) per element on Hopper; the attention
        # output needs an amax pass first: 2 more.
        cast = 2 + 2 + (2 if fp8_transpose else 1)
        casts = (cast + 2) * att.num_heads * att.value_head_dim + cast * ffn_units
        norm_casts = 2 * cast * h  # the QKV and fc1 inputs
        # Backward: the output gradient of every GEMM is quantized the same way for its dgrad and
        # wgrad GEMMs: amax read 2, cast read 2 and write 1 (+ 1) (h-sized for the out-projection
        # and fc2, q + 2 kv for QKV, 2 or 1 × FFN units for fc1; dact writes its amax).
        backward_casts = cast * (att.q_dim + 2 * att.kv_dim) + (2 if gated else 1) * cast * ffn_units
        backward_norm_casts = 2 * cast * h
    moe = 0.0
    if arch.is_moe_layer(index):
        k, e = passes, arch.moe.num_experts
        # Router logits, softmax and top-k in fp32 (~3 passes over E), permute (read h, write k
        # copies), unpermute with the routing weights (read k copies, write h): 16-bit tokens.
        moe = 12 * e + 2 * h * (1 + k) + 2 * h * (k + 1)
        if fp8:
            # The permuted tokens quantized for fc1: read 2, write both usages (NVFP4: three
            # reads, NVFP4_QUANTIZE_BYTES).
            if fp8 == "nvfp4":
                moe += NVFP4_QUANTIZE_BYTES * k * h
            else:
                writes = 2 + MX_SCALES if fp8 == "mxfp8" else 2 if fp8_transpose else 1
                moe += (2 + writes) * k * h
            # Each expert's rows padded to a multiple of 16 (32 under MXFP8, 128 under NVFP4:
            # megatron/core/fp4_utils.py `get_fp4_align_size`) for the GEMMs and the output
            # unpadded (megatron/core/transformer/moe/experts.py Fp8Padding / Fp8Unpadding):
            # a copy of the experts' input and of their output, read 2 and written 2, unless the
            # router pads (moe_router_padding_for_fp8, off in Megatron-Bridge's H100 recipes;
            # transformer_engine/pytorch/module/fp8_padding.py returns the input when aligned).
            moe += 2 * 4 * k * h
        if expert_sort:
            moe += k * (EXPERT_SORT_BYTES_PER_ELEMENT * h + EXPERT_SORT_PROBABILITY_BYTES)
        if arch.moe.expert_bias and not eager:
            moe += k * h * EXPERT_BIAS_BYTES_PER_ELEMENT
        elif arch.moe.expert_bias:
            # Grouped expert GEMMs have no bias epilogue: each bias is added after its GEMM, a
            # read and a write of the GEMM's output per routed copy (transformers GptOssExperts
            # `bmm(...) + bias`; NeMo AutoModel components/moe/experts.py `_apply_bias`, one
            # Triton kernel that also weights the down projection's by the routing probability).
            fc1_width = (2 if gated else 1) * arch.moe.expert_ffn
            moe += k * 4 * (fc1_width + h)
    return LayerBytes(residual_stream=norms + residual, sharded=qk_norms + rotary + activation + moe,
                      cast_residual=norm_casts, cast_sharded=casts,
                      backward_residual=backward_norm_casts, backward_sharded=backward_casts)


def _eager_activation_bytes(arch: Architecture) -> float:
    """HBM bytes per FFN unit per token of the MLP activation run as eager operators.

    SwiGLU / GeGLU: act(gate) r2 w2, times up r4 w2; a plain activation r2 w2, squared ReLU two
    of them (transformers activations.py `ReLUSquaredActivation`: relu, square). gpt-oss's clamped
    gate (transformers models/gpt_oss/modeling_gpt_oss.py `GptOssExperts`): gate.clamp r2 w2,
    up.clamp r2 w2, gate * alpha r2 w2, sigmoid r2 w2, gate * sigmoid r4 w2, up + 1 r2 w2,
    the product r4 w2: 32. xIELU in Python (`XIELUActivation._xielu_python`): x > 0 r2 w1,
    alpha_p·x r2 w2, times x r4 w2, beta·x twice r2 w2, two adds r4 w2, min(x, eps) r2 w2, expm1
    r2 w2, minus x r4 w2, times alpha_n r2 w2, where r5 w2: 58."""
    if arch.mlp_activation == "sigmoid_glu_clamped":
        return 32.0
    if arch.gated_mlp:
        return 10.0
    return _plain_activation_ops(arch)[0]


PLAIN_ACTIVATION_OPS: dict[str, tuple[float, int]] = {"relu2": (8.0, 2), "xielu": (58.0, 12)}
"""Ungated activations run as more than one eager operator: (HBM bytes per FFN unit and token,
kernels), as `_eager_activation_bytes` counts them; any other: one kernel, r2 w2."""


def _plain_activation_ops(arch: Architecture) -> tuple[float, int]:
    """(bytes per FFN unit, kernels) of the model's ungated activation run eagerly."""
    return PLAIN_ACTIVATION_OPS.get(arch.mlp_activation, (4.0, 1))


def _ffn_units(arch: Architecture, index: int, passes: int) -> float:
    """FFN units one token passes through the activation function in layer `index` (`passes`
    routed experts in an MoE layer)."""
    if not arch.is_moe_layer(index):
        return arch.ffn
    return passes * arch.moe.expert_ffn + arch.moe.shared_ffn


def loss_bytes_per_vocab(framework: str) -> float:
    """HBM bytes per token per vocabulary entry of the loss, forward and backward together.

    megatron: the fused vocab-parallel cross entropy reads the 16-bit logits, writes fp32
    exponentials, and in backward reads them and writes the 16-bit gradient: 2 + 4 + 4 + 2
    (megatron/core/fusions/fused_cross_entropy.py). hf: transformers' ForCausalLMLoss upcasts the
    logits (r2 w4), log_softmax takes a max and a sum pass and writes (r4 r4 w4), and backward
    reads the saved output and the gradient and writes fp32 then casts to 16 bits (r4 r4 w4,
    r4 w2): 40."""
    return 40.0 if framework == "hf" else 12.0


FP8_CURRENT_SCALING_QUANTIZE_KERNELS = 3
"""Kernels Transformer Engine launches to quantize one tensor under fp8 current scaling: its
amax, the scale from the amax, the cast (row-wise and transposed together)
(transformer_engine 2.8 csrc/quantizer.cpp `Float8CurrentScalingQuantizer::quantize`:
`nvte_compute_amax_with_config`, `nvte_compute_scale_from_amax`, `nvte_quantize_v2`). A grouped
GEMM's inputs are quantized one expert at a time: the fused multi-tensor cast serves delayed
scaling only (csrc/extensions/cast.cpp `multi_tensor_quantize_impl`)."""

MXFP8_QUANTIZE_KERNELS = 1
"""Kernels Transformer Engine launches to quantize one tensor under MXFP8: one, the block scales
computed as it casts (csrc/quantizer.cpp `MXFP8Quantizer::quantize`); a grouped GEMM's inputs one
expert at a time as well (csrc/extensions/cast.cpp `multi_tensor_quantize_impl`: a fused kernel
for delayed scaling only)."""

MX_SCALES = 2 / MX_BLOCK
"""Bytes per element of the e8m0 scales an MXFP8 cast writes: one per 32 elements for the
row-wise copy and one for the column-wise copy."""

NVFP4_QUANTIZE_BYTES = 3 * 2 + 2 * NVFP4_BYTES_PER_ELEMENT
"""HBM bytes per element to quantize a 16-bit tensor to NVFP4 with both usages, as Transformer
Engine's recipe does for GEMM inputs and output gradients (random Hadamard transform on the
column-wise usage, transformer_engine 2.8 common/recipe `NVFP4BlockScaling`): its amax after the
transform is needed before any cast, so the tensor is read three times — both amaxes in one pass
(`nvte_hadamard_transform_amax`), the row-wise cast (`nvte_quantize_v2`), the transformed
column-wise cast (`nvte_hadamard_transform_cast_fusion_columnwise`) — and written as two 4-bit
usages with their e4m3 scales (csrc/quantizer.cpp `NVFP4Quantizer::quantize_impl`): 7.125. The
16 × 16 transform is a tensor-core product inside the cast; its FLOPs are not counted."""

NVFP4_QUANTIZE_KERNELS = 3
"""Kernels of one NVFP4 quantization with the transform: the amax pass and the two casts
(`NVFP4Quantizer::quantize_impl`); a grouped GEMM's inputs are quantized expert by expert
(csrc/extensions/cast.cpp: the fused multi-tensor cast serves delayed scaling only)."""

MOE_PREPROCESS_KERNELS = 12
"""Kernels of Megatron-Core's alltoall dispatcher before its synchronization
(megatron/core/transformer/moe/token_dispatcher.py `MoEAlltoAllTokenDispatcher.preprocess`):
the per-expert token counts (a sum over the routing map), the per-rank input splits (reshape and
sum), the all-gather of every rank's counts over the EP group, the slice of the local experts'
counts and its per-rank and per-expert sums (3), then `_maybe_dtoh_and_synchronize` copies the
counts and splits to the host on a side stream (4 copies and an event)."""


def layer_kernels(arch: Architecture, index: int, framework: str, fp8: str | None, local_experts: int,
                  alltoall: bool = True) -> float:
    """GPU kernels the host launches for one layer's forward (`backward_kernels` for backward).
    `alltoall`: Megatron-Core's alltoall dispatcher, whose preprocessing runs as separate kernels
    (DeepEP and HybridEP compute their layouts inside their own dispatch kernels).

    megatron (Transformer Engine): norm+QKV GEMM, RoPE, attention, out GEMM, residual, norm+fc1,
    activation, fc2, residual and TP collectives, ~12; fp8's current scaling adds a scale update
    per GEMM, MXFP8 a quantization of the QKV, out-projection and fc1 inputs (the activation
    writes fc2's), NVFP4 three kernels for each of the four GEMM inputs (NVFP4_QUANTIZE_KERNELS).
    A MoE layer adds the router (~8: GEMM, softmax, top-k, aux loss), the dispatcher's
    preprocessing (`MOE_PREPROCESS_KERNELS`) and what `moe_kernels_after_sync`
    counts. hf eager: one kernel per operator — RMSNorm ~7, RoPE ~10 for q and k, SwiGLU 2, each
    projection 1; its MoE layers (DeepEP experts) the router and what follows it.
    """
    eager = framework == "hf"
    norm = 7 if eager and arch.norm == "rmsnorm" else 1
    count = arch.norms_per_layer * norm + (4 if eager else 1) + (10 if eager else 1) + 2
    count += 3 if eager else 1  # q, k, v projections (fused QKV in TE)
    if not arch.is_moe_layer(index):
        plain = _plain_activation_ops(arch)[1] if eager else 1
        count += (3 if arch.gated_mlp else 2) + (2 if eager and arch.gated_mlp else plain)
        if fp8 == "nvfp4":  # the QKV, out-projection, fc1 and fc2 inputs, three kernels each
            return count + 4 * NVFP4_QUANTIZE_KERNELS
        return count + 3 if fp8 == "mxfp8" else count * (1.5 if fp8 else 1.0)
    preprocess = MOE_PREPROCESS_KERNELS if alltoall and not eager else 0
    return count + 8 + preprocess + moe_kernels_after_sync(arch, fp8, local_experts)


def _expert_kernels(fp8: str | None, local_experts: int, backward: bool = False) -> float:
    """Kernels of the routed experts' two grouped GEMMs (fused gate/up, down), one GEMM per local
    expert (transformer_engine/pytorch/module/grouped_linear.py `general_grouped_gemm`), each
    input quantized expert by expert under fp8 (`FP8_CURRENT_SCALING_QUANTIZE_KERNELS`,
    `MXFP8_QUANTIZE_KERNELS` or `NVFP4_QUANTIZE_KERNELS`; grouped NVFP4 inputs are allocated and
    cast one by one, csrc/extensions/cast.cpp `split_quantize`). Backward runs a data-gradient and
    a weight-gradient GEMM per expert and quantizes each expert's output gradient
    (grouped_linear.py `_GroupedLinear.backward`)."""
    quantize = {"mxfp8": MXFP8_QUANTIZE_KERNELS, "nvfp4": NVFP4_QUANTIZE_KERNELS}.get(
        fp8, FP8_CURRENT_SCALING_QUANTIZE_KERNELS if fp8 else 0)
    return 2 * local_experts * ((2 if backward else 1) + quantize)


def backward_kernels(arch: Architecture, index: int, framework: str, fp8: str | None, local_experts: int,
                     alltoall: bool = True) -> float:
    """GPU kernels the host launches for one layer's backward: about two per forward kernel
    (autograd runs an input-gradient and a weight-gradient kernel per GEMM and the backward of
    each element-wise kernel), the routed experts' as `_expert_kernels` counts them."""
    forward = layer_kernels(arch, index, framework, fp8, local_experts, alltoall)
    if framework == "hf" or not arch.is_moe_layer(index):
        return 2 * forward
    experts = _expert_kernels(fp8, local_experts)
    return 2 * (forward - experts) + _expert_kernels(fp8, local_experts, backward=True)


def moe_kernels_after_sync(arch: Architecture, fp8: str | None, local_experts: int) -> float:
    """Kernels of a MoE layer's forward that the host launches after the token dispatcher has
    synchronized with the device: permute, the all-to-alls of tokens and probabilities, the sort
    by local expert, combine and unpermute (~6); the experts' grouped GEMMs (`_expert_kernels`);
    the activation and the residual (2); the shared expert's GEMMs and activation (4).

    Megatron-Core's alltoall dispatcher copies the token counts to the host and waits for them
    (megatron/core/transformer/moe/token_dispatcher.py `MoEAlltoAllTokenDispatcher.
    _maybe_dtoh_and_synchronize`: `d2h_event.synchronize()` at `cuda_sync_point`, before the
    first permutation unless the router is captured in a CUDA graph): the all-to-all's split
    sizes and the grouped GEMM's `m_splits` are host lists. The device's queue is empty at that
    point, so these kernels run no faster than the host issues them.

    Experts with biases (GPT-OSS) add fc2's bias and the routing weight expert by expert in
    Python, `t + b * p` over `torch.split(...)` and one `torch.cat` (megatron/core/transformer/
    moe/experts.py `TEGroupedMLP._apply_bias`): two kernels per local expert and two more."""
    count = 6 + _expert_kernels(fp8, local_experts) + 2
    if arch.moe.expert_bias:
        count += 2 * local_experts + 2
    if arch.moe.shared_ffn:
        count += 4
    return count
