"""Inference memory on one GPU: weights at the serving precision, KV cache, the activations of one
forward pass and the CUDA context; how many GPUs a model needs and the largest batch or context.

Weights + KV cache `2 · layers · kv_heads · head_dim · seq · batch · bytes` (a key and a value of
[batch, kv_heads, seq, head_dim] per layer, transformers cache_utils.py; MLA: `layers · (kv_lora_rank
+ qk_rope_head_dim) · seq · batch · bytes`, arXiv 2405.04434 §2.1) + activations/workspace, and the
1.2× rule-of-thumb allowance (EleutherAI, "Transformer Math 101", 2023, "Inference"). What each
tensor-parallel GPU holds follows vLLM's layers (vllm/model_executor/layers/linear.py,
vocab_parallel_embedding.py, models/deepseek_v2.py).
Weights are stored at a `Precision`: one of PRECISIONS, chosen by the user, or the WeightFormat a
config.json's quantization_config declares (planner/model/quantization.py). Layer windows and the
context limit come from planner/model/context.py. Pure functions: no files, no printing.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import lru_cache

from planner.cost.memory import CUDA_CONTEXT_BYTES
from planner.cost.shard import stage_layer_counts
from planner.model.architecture import Architecture, Attention
from planner.model.params import (
    attention_linears,
    embedding_params,
    layer_params,
    mlp_linears,
    norm_params,
)
from planner.model.quantization import WeightFormat, quantized_linear_bytes

PRECISIONS = ("bf16", "fp16", "fp32", "fp8", "int8", "int4", "nf4")
KV_DTYPES = ("auto", "bf16", "fp16", "fp8", "int8", "fp32")

# Bytes per element, each dtype's storage size (int4/nf4: two per byte): the seed's arithmetic.
NOMINAL_BYTES: dict[str, Fraction] = {
    "fp32": Fraction(4), "bf16": Fraction(2), "fp16": Fraction(2), "fp8": Fraction(1),
    "int8": Fraction(1), "int4": Fraction(1, 2), "nf4": Fraction(1, 2),
}
KV_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1}

AWQ_GROUP = 128
"""int4: weights per fp16 scale and 4-bit zero point along the input dim (AutoAWQ q_group_size)."""
NF4_BLOCK = 64
"""nf4: weights per absmax (bitsandbytes 4-bit blocksize; QLoRA, arXiv 2305.14314, §3)."""
NF4_NESTED_BLOCK = 256
"""nf4 double quantization: 8-bit absmax values per fp32 second-level scale (QLoRA §3)."""
Precision = str | WeightFormat
"""A name from PRECISIONS, or a checkpoint's stored format (whose other tensors are 16-bit)."""
MAX_SEARCH = 2**40
"""Upper end of the largest-batch/context search (tokens or sequences): no GPU holds this."""


def rule_of_thumb_weight_bytes(params: int, precision: Precision, allowance: Fraction | None = None) -> int:
    """The seed's arithmetic: params × bytes per element (× the allowance), no scales, no KV.
    A stored format counts its code bits for every parameter.

    7e9 params × 4 B = 28e9 B = 28 GB = 26.08 GiB; × 1.2 = 33.6 GB (docs/examples.md, the seed table).
    """
    per_param = (precision.nominal_bytes_per_param if isinstance(precision, WeightFormat)
                 else NOMINAL_BYTES[precision])
    return math.ceil(params * per_param * (allowance or 1))


def precision_label(precision: Precision) -> str:
    return precision.label if isinstance(precision, WeightFormat) else precision


def dense_bytes(precision: Precision) -> int:
    """Bytes of the tensors no scheme quantizes (embeddings, lm_head, norms, router, biases):
    fp32 when serving fp32, else 16-bit (bf16/fp16, also beside a stored format)."""
    return 4 if precision == "fp32" else 2


def resolve_kv_dtype(kv_dtype: str, precision: Precision) -> str:
    """'auto' caches K/V in the compute dtype (vLLM `kv_cache_dtype="auto"`): fp32 or fp16 when
    serving those, bf16 otherwise (quantized weights compute in 16 bits)."""
    if kv_dtype != "auto":
        return kv_dtype
    return precision if precision in ("fp32", "fp16") else "bf16"


def linear_weight_bytes(d_in: int, d_out: int, bias: bool, precision: Precision) -> int:
    """Bytes of one `d_in × d_out` linear layer stored at `precision`, scales included.

    One scheme per precision; biases stay 16-bit in every quantized format:
      fp8   e4m3 codes + one fp32 scale per tensor (vLLM Fp8LinearMethod, per-tensor scaling)
      int8  LLM.int8 codes + one fp32 absmax per output row (Dettmers et al. 2022, arXiv
            2208.07339 §3; bitsandbytes Int8Params.SCB)
      int4  AWQ GEMM format (Lin et al. 2023, arXiv 2306.00978; AutoAWQ WQLinear_GEMM): packed
            4-bit codes, per group of 128 inputs an fp16 scale and a 4-bit zero point per output
            (2.5 B / 128 weights = 0.156 extra bits per weight)
      nf4   bitsandbytes NF4 with double quantization (QLoRA §3): 4-bit codes, an 8-bit absmax per
            64 weights and an fp32 scale per 256 absmax values, 8/64 + 32/(64·256) = 0.127 extra
            bits per weight; per-tensor constants (the 16-value code book) are left out
    """
    if isinstance(precision, WeightFormat):
        return quantized_linear_bytes(d_in, d_out, bias, precision)
    n = d_in * d_out
    if precision in ("fp32", "bf16", "fp16"):
        return (n + (d_out if bias else 0)) * dense_bytes(precision)
    bias_b = 2 * d_out if bias else 0
    if n == 0:
        return bias_b
    if precision == "fp8":
        return n + 4 + bias_b
    if precision == "int8":
        return n + 4 * d_out + bias_b
    if precision == "int4":
        groups = math.ceil(d_in / AWQ_GROUP) * d_out
        return math.ceil(n / 2) + 2 * groups + math.ceil(groups / 2) + bias_b
    if precision == "nf4":
        blocks = math.ceil(n / NF4_BLOCK)
        return math.ceil(n / 2) + blocks + 4 * math.ceil(blocks / NF4_NESTED_BLOCK) + bias_b
    raise ValueError(f"unknown precision {precision!r}")


def kv_heads_per_gpu(num_kv_heads: int, tp: int) -> int:
    """KV heads one TP rank holds: split when tp divides them, else replicated so that each rank
    has one (vLLM QKVParallelLinear: num_kv_heads = max(1, total_num_kv_heads // tp_size))."""
    return max(1, num_kv_heads // tp)


def tensor_parallel_problem(arch: Architecture, tp: int) -> str | None:
    """Why `tp` cannot split this model's heads (vLLM's checks), or None when it can."""
    att = arch.attention
    if tp < 1:
        return f"must be >= 1, got {tp}"
    if att.num_heads % tp:
        return f"{tp} does not divide the {att.num_heads} attention heads of {arch.name}"
    if att.num_kv_heads % tp and tp % att.num_kv_heads:
        return (f"{tp} neither divides nor is a multiple of the {att.num_kv_heads} KV heads "
                f"of {arch.name}")
    return None


def tensor_parallel_degrees_upto(max_tp: int) -> tuple[int, ...]:
    """Powers of two up to `max_tp` (the GPU's scale-up domain: 8 in an HGX node)."""
    return tuple(2**k for k in range(max_tp.bit_length()))


def tensor_parallel_degrees(arch: Architecture, max_tp: int) -> tuple[int, ...]:
    """Powers of two up to `max_tp` that can split the model's heads."""
    return tuple(t for t in tensor_parallel_degrees_upto(max_tp) if tensor_parallel_problem(arch, t) is None)


# Sharding of the block's linear layers over TP ranks (vLLM): column-parallel split the outputs,
# row-parallel the inputs (bias kept whole on every rank); MLA's down-projections q_a_proj and
# kv_a_proj_with_mqa are ReplicatedLinear (vllm/model_executor/models/deepseek_v2.py).
_COLUMN = {"q_proj", "q_b_proj", "kv_b_proj", "gate_proj", "up_proj"}
_KV_HEADS = {"k_proj", "v_proj"}
_ROW = {"o_proj", "down_proj"}


def _sharded_bytes(linears: Mapping[str, tuple[int, int, bool]], precision: Precision, tp: int,
                   kv_heads: int) -> int:
    total = 0
    for name, (d_in, d_out, bias) in linears.items():
        if name in _COLUMN:
            d_out = math.ceil(d_out / tp)
        elif name in _KV_HEADS:
            d_out = d_out // kv_heads * kv_heads_per_gpu(kv_heads, tp)
        elif name in _ROW:
            d_in = math.ceil(d_in / tp)
        total += linear_weight_bytes(d_in, d_out, bias, precision)
    return total


def _linear_params(linears: Mapping[str, tuple[int, int, bool]]) -> int:
    return sum(d_in * d_out + (d_out if bias else 0) for d_in, d_out, bias in linears.values())


@lru_cache(maxsize=65536)
def layer_weight_bytes(arch: Architecture, index: int, precision: Precision, tp: int) -> int:
    """Bytes of block `index` on one TP rank. Quantized schemes store the linear layers of the
    block (attention, MLP, shared and routed experts; an experts-only format such as mxfp4 the
    routed experts alone, the rest 16-bit); every other parameter of the block (norms, the MoE
    router, gates, attention sinks) stays in the dense dtype, replicated on every rank (vLLM
    builds the router as an unquantized ReplicatedLinear; AutoAWQ skips `gate`)."""
    h, att = arch.hidden, arch.attention
    others = "bf16" if isinstance(precision, WeightFormat) and precision.experts_only else precision
    linears = [(attention_linears(att, h), 1, others)]
    if arch.is_moe_layer(index):
        moe = arch.moe
        # Every routed expert is split over TP like a dense MLP (vLLM FusedMoE, no expert parallel).
        linears += [(mlp_linears(h, moe.expert_ffn, arch.gated_mlp, moe.expert_bias), moe.num_experts, precision),
                    (mlp_linears(h, moe.shared_ffn, arch.gated_mlp, arch.mlp_bias), 1, others)]
    else:
        linears.append((mlp_linears(h, arch.ffn, arch.gated_mlp, arch.mlp_bias), 1, others))
    sharded = sum(n * _sharded_bytes(group, fmt, tp, att.num_kv_heads) for group, n, fmt in linears)
    rest = layer_params(arch, index).total - sum(n * _linear_params(group) for group, n, _ in linears)
    return sharded + rest * dense_bytes(precision)


def embedding_weight_bytes(arch: Architecture, precision: Precision, tp: int) -> int:
    """Token embedding, vocab-parallel (rows split over TP, no padding), with a learned position
    embedding and an embedding norm, if any (replicated); never quantized (bitsandbytes, AWQ and
    vLLM fp8 skip them)."""
    replicated = embedding_params(arch) - arch.vocab * arch.hidden
    return (math.ceil(arch.vocab / tp) * arch.hidden + replicated) * dense_bytes(precision)


def output_weight_bytes(arch: Architecture, precision: Precision, tp: int, separate_stage: bool) -> int:
    """Final norm and the vocab-parallel lm_head, kept in the dense dtype (bitsandbytes skips
    lm_head). Tied to the embedding it costs nothing more, unless it sits on another pipeline
    stage, which loads its own copy (vLLM ParallelLMHead.tie_weights under PP)."""
    rows = math.ceil(arch.vocab / tp)
    params = norm_params(arch, arch.hidden) + (rows if arch.lm_head_bias else 0)
    if not arch.tied_embeddings or separate_stage:
        params += rows * arch.hidden
    return params * dense_bytes(precision)


def layer_kv_bytes_per_token(att: Attention, kv_dtype: str, tp: int) -> int:
    """K and V cached for one token in one layer on one TP rank.

    MHA/GQA/MQA: kv_heads · (head_dim + v_head_dim) · bytes = 2 · kv_heads · head_dim · bytes.
    MLA (DeepSeek-V2/V3, arXiv 2405.04434 §2.1): the compressed latent and the shared RoPE key,
    (kv_lora_rank + qk_rope_head_dim) · bytes, whole on every TP rank since all heads read it
    (vLLM's MLA backend caches one latent "head"). fp8/int8 caches keep per-tensor scales only.
    """
    b = KV_BYTES[kv_dtype]
    if att.is_mla:
        return (att.kv_lora_rank + att.qk_rope_head_dim) * b
    return kv_heads_per_gpu(att.num_kv_heads, tp) * (att.head_dim + att.value_head_dim) * b


def kv_cache_bytes_per_token(arch: Architecture, kv_dtype: str, tp: int = 1) -> int:
    """K/V bytes of one token over all layers on one TP rank (before sliding-window caps)."""
    return arch.num_layers * layer_kv_bytes_per_token(arch.attention, kv_dtype, tp)


def cached_tokens(context: int, window: int | None) -> int:
    """Tokens a layer keeps: the whole context, or the last `window` of a sliding-window or
    chunked layer (vLLM's sliding-window KV manager; transformers' sliding cache layers)."""
    return context if window is None else min(context, window)


@lru_cache(maxsize=65536)
def layer_working_set_bytes_per_token(arch: Architecture, index: int, act_bytes: int, tp: int) -> int:
    """Bytes alive per token at the peak of one layer's forward (no autograd: nothing is saved).

    Tensors of the larger sub-block, per rank (TP splits heads and the FFN width):
      attention  residual h, norm output h, q, k, v, attention output (act_bytes each)
                 + fp32 log-sum-exp per head (flash attention)
      MLA        + the q latent and its norm, the KV latent and its norm, kv_b_proj's output:
                 vLLM's prefill path up-projects the latent to per-head keys and values
      MLP        residual h, norm output h, then act(gate) · up: 3 × ffn (gated) or 2 × ffn
      MoE        as the MLP per routed copy (top_k × (3 × expert ffn + h output)) plus the
                 shared expert's output h; fp32 router logits and probabilities per expert
    """
    h, att = arch.hidden, arch.attention
    heads = att.num_heads // tp
    q = heads * att.head_dim
    out = heads * att.value_head_dim
    if att.is_mla:
        # q latent and its norm; the KV latent with the RoPE key, and the normed latent
        latents = 2 * (att.q_lora_rank or 0) + (att.kv_lora_rank + att.qk_rope_head_dim) + att.kv_lora_rank
        kv_up = heads * (att.qk_nope_head_dim + att.value_head_dim)
        attention = 2 * h + latents + q + kv_up + q + out  # q, kv_b output, assembled k, output
    else:
        kv = kv_heads_per_gpu(att.num_kv_heads, tp)
        attention = 2 * h + q + kv * (att.head_dim + att.value_head_dim) + out
    attention_b = attention * act_bytes + 4 * heads

    def ffn(width: int) -> int:
        return (3 if arch.gated_mlp else 2) * math.ceil(width / tp)

    if not arch.is_moe_layer(index):
        return max(attention_b, (2 * h + ffn(arch.ffn)) * act_bytes)
    moe = arch.moe
    routed = (h if moe.shared_ffn else 0) + moe.top_k * (ffn(moe.expert_ffn) + h)
    mlp_b = (2 * h + max(ffn(moe.shared_ffn), routed)) * act_bytes + 2 * 4 * moe.num_experts
    return max(attention_b, mlp_b)


def logits_bytes(arch: Architecture, batch: int, act_bytes: int) -> int:
    """Logits of the last position of each sequence only: transformers' generate passes
    `logits_to_keep=1` in prefill and vLLM computes logits at the sampled positions. The
    16-bit output gathered over TP ranks plus the fp32 copy the sampler makes (vLLM Sampler)."""
    return batch * arch.vocab * (act_bytes + (4 if act_bytes < 4 else 0))


@dataclass(frozen=True)
class InferenceMemory:
    """Bytes on the most loaded GPU (docs/cli.md, `infer --json` `memory`)."""

    weights: int
    kv_cache: int
    activations: int
    """Peak working set of one forward over the whole batch × context (prefill)."""
    runtime: int
    """CUDA context, or the rule of thumb's allowance over the live bytes."""

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.activations + self.runtime

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}


def runtime_bytes(live: int, allowance: Fraction | None) -> int:
    """Without an allowance: the CUDA context (planner.cost.memory.runtime.CUDA_CONTEXT_BYTES, an
    assumption). With one (1.2): the rule of thumb's extra `live × (allowance − 1)`, which
    stands for the context, allocator and framework together."""
    if allowance is None:
        return CUDA_CONTEXT_BYTES
    return math.ceil(live * allowance) - live


@dataclass(frozen=True)
class Serving:
    """What is served: a model at a precision, a batch of sequences of `context` tokens."""

    arch: Architecture
    precision: Precision
    kv_dtype: str
    """Resolved cache dtype (never 'auto')."""
    batch: int
    """Sequences decoded together."""
    context: int
    """Tokens per sequence, prompt plus generated; the prefill runs it in one forward."""
    windows: tuple[int | None, ...]
    """Tokens each layer caches at most (None: all); see planner.model.context.layer_windows."""
    allowance: Fraction | None = None

    @property
    def act_bytes(self) -> int:
        return dense_bytes(self.precision)


def stage_memory(s: Serving, tp: int, layers: range, first: bool, last: bool,
                 separate_head: bool) -> InferenceMemory:
    """One GPU holding `layers` (a pipeline stage; all layers when pp = 1) at TP degree `tp`."""
    arch = s.arch
    weights = sum(layer_weight_bytes(arch, i, s.precision, tp) for i in layers)
    weights += embedding_weight_bytes(arch, s.precision, tp) if first else 0
    weights += output_weight_bytes(arch, s.precision, tp, separate_head) if last else 0
    per_token = layer_kv_bytes_per_token(arch.attention, s.kv_dtype, tp)
    kv = s.batch * per_token * sum(cached_tokens(s.context, s.windows[i]) for i in layers)
    tokens = s.batch * s.context
    per_token_peak = max((layer_working_set_bytes_per_token(arch, i, s.act_bytes, tp) for i in layers),
                         default=0)
    activations = tokens * per_token_peak
    if last:
        activations = max(activations, logits_bytes(arch, s.batch, s.act_bytes))
    live = weights + kv + activations
    return InferenceMemory(weights, kv, activations, runtime_bytes(live, s.allowance))


def serving_memory(s: Serving, tp: int = 1, pp: int = 1) -> InferenceMemory:
    """The most loaded GPU with `tp`-way tensor and `pp`-way pipeline parallelism (layers split
    evenly, the first stage with the embedding, the last with the lm_head and logits)."""
    stages, start = [], 0
    for stage, count in enumerate(stage_layer_counts(s.arch.num_layers, pp)):
        layers = range(start, start + count)
        stages.append(stage_memory(s, tp, layers, stage == 0, stage == pp - 1, pp > 1))
        start += count
    return max(stages, key=lambda m: m.total)


def weights_only_memory(params: int, precision: Precision, allowance: Fraction | None,
                        gpus: int = 1) -> InferenceMemory:
    """A bare parameter count: the seed's weights arithmetic split over `gpus`; no shapes, so no
    KV cache, activations or quantization scales."""
    weights = math.ceil(rule_of_thumb_weight_bytes(params, precision) / gpus)
    return InferenceMemory(weights, 0, 0, runtime_bytes(weights, allowance))


@dataclass(frozen=True)
class Layout:
    tp: int
    pp: int

    @property
    def gpus(self) -> int:
        return self.tp * self.pp


def smallest_layout(fits: Callable[[int, int], bool], tps: Iterable[int], max_pp: int) -> Layout | None:
    """The GPUs a model needs: the smallest TP degree (a power of two within the GPU's scale-up
    domain, as serving engines deploy it) that fits; beyond that, the largest of them times the
    fewest pipeline stages that fit (vLLM's multi-node recipe: --tensor-parallel-size 8
    --pipeline-parallel-size N). None when even `max_pp` stages do not fit."""
    tps = sorted(tps)
    for t in tps:
        if fits(t, 1):
            return Layout(t, 1)
    return next((Layout(tps[-1], p) for p in range(2, max_pp + 1) if fits(tps[-1], p)), None)


def largest_fitting(total_at: Callable[[int], int], capacity: int) -> int:
    """The largest n >= 1 whose `total_at(n)` fits `capacity` (0 if n = 1 does not); `total_at`
    must not decrease with n. Doubling, then bisection."""
    if total_at(1) > capacity:
        return 0
    low, high = 1, 2
    while high <= MAX_SEARCH and total_at(high) <= capacity:
        low, high = high, high * 2
    if high > MAX_SEARCH:
        return MAX_SEARCH
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if total_at(mid) <= capacity else (low, mid)
    return low
