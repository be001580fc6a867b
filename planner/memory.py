"""Per-GPU memory of a training plan, per pipeline stage, each term separate.

Model states follow the ZeRO paper (Rajbhandari et al. 2019, arXiv 1910.02054, §3 and §5);
activations follow Korthikanti et al. 2022 (arXiv 2205.05198, §4 and Table 2), re-derived per
saved tensor for modern layers (SwiGLU, GQA, RMSNorm, flash attention, MoE, MLA); the pipeline's
in-flight micro-batches follow Megatron-LM's schedules (megatron/core/pipeline_parallel/schedules.py).

What a step keeps depends on the framework that runs it (`Workload.framework`):
  megatron   Megatron-Core / Transformer Engine: fused norms and cross entropy, 16-bit parameters
             with fp32 main weights in the optimizer, a persistent gradient buffer, fused Adam.
  hf         Hugging Face transformers modules trained by PyTorch (Trainer, accelerate, plain
             loops): eager RMSNorm and SwiGLU, SDPA, torch.autocast under DDP or FSDP2's
             MixedPrecisionPolicy, gradients allocated in backward (zero_grad(set_to_none=True)),
             foreach AdamW. Measured with PyTorch's MemTracker in validation/memory/.
  deepspeed  the same Hugging Face modules on DeepSpeed's engine: 16-bit modules, ZeRO partitions
             with an fp32 gradient copy for the optimizer step, fused Adam.
The peak is the largest of the step's phases (end of forward, start of backward, backward through
the layers, optimizer step); `StageMemory.phase` names it and `StageMemory.detail` itemizes it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache

from planner.cluster import Cluster
from planner.model.architecture import Architecture
from planner.model.params import ALL_LINEAR, LORA_TARGETS, attention_linears, embedding_params, layer_params, \
    lora_params, mlp_linears, output_params
from planner.plan import Plan
from planner.shard import StageShard, stage_shards
from planner.partial import NORMS, ROUTER, PartialTraining, partial_trainable
from planner.workload import Workload

GiB = 2**30
"""Names of the norm weights and the MoE router among the trainable modules of a layer."""
FRAMEWORKS = ("megatron", "hf", "deepspeed")

# (weight, gradient, fp32 master) bytes per trainable parameter, by training precision.
# Mixed precision keeps 16-bit weights and gradients and an fp32 master copy (ZeRO §3: 2 + 2 + 4
# before the optimizer's 12 - 4 = 8 bytes of Adam moments); fp8 training (Transformer Engine)
# keeps the same 16-bit parameters and fp32 master weights, casting to fp8 per GEMM (DeepSeek-V3
# §3.3; TE docs). bf16-autocast keeps fp32 weights and gradients (torch.autocast).
PRECISION_STATE_BYTES: dict[str, tuple[int, int, int]] = {
    "bf16": (2, 2, 4),
    "fp16": (2, 2, 4),
    "fp8": (2, 2, 4),
    "fp32": (4, 4, 0),
    "bf16-pure": (2, 2, 0),
    "bf16-autocast": (4, 4, 0),
}
MIXED = ("bf16", "fp16", "fp8")

# Megatron-LM's gradient buffer under bf16 parameters: fp32 (see `state_bytes`).
MEGATRON_BF16_GRAD_BYTES = 4

# Storage bytes per frozen base-weight parameter (LoRA/QLoRA), with quantization scales:
# int8: bitsandbytes LLM.int8 keeps one fp32 scale per output row (negligible, counted as 0);
# nf4: 4-bit codes + double-quantized absmax per 64 weights, 0.127 extra bits/param
# (QLoRA, arXiv 2305.14314, §3); fp8: 1 byte + a per-tensor scale.
QUANT_WEIGHT_BYTES: dict[str, float] = {"int8": 1.0, "nf4": 0.5 + 0.127 / 8, "fp8": 1.0}


def optimizer_state_bytes(optimizer: str, precision: str, hidden: int) -> float:
    """Optimizer bytes per trainable parameter, master weights excluded.

    Adam/AdamW: two moments in fp32 (ZeRO §3), bf16 when training is pure bf16; bitsandbytes
    8-bit Adam: two 1-byte moments plus one fp32 absmax per 2048-element block (Dettmers et al.
    2021, arXiv 2110.02861); SGD with momentum: one buffer; Adafactor: factored second moment,
    rows + cols per matrix, about 2/h of a value per parameter (Shazeer & Stern 2018).
    """
    state_dtype = _state_dtype_bytes(precision)
    if optimizer in ("adamw", "adam"):
        return 2 * state_dtype
    if optimizer == "adamw8bit":
        return 2 * (1 + 4 / 2048)
    if optimizer == "sgd-momentum":
        return state_dtype
    if optimizer == "sgd":
        return 0.0
    if optimizer == "adafactor":
        return state_dtype * 2 / hidden
    raise ValueError(f"unknown optimizer {optimizer!r}")


def _state_dtype_bytes(precision: str) -> int:
    """Optimizer states take the dtype of the parameters they update: bf16 only in pure bf16."""
    return 2 if precision == "bf16-pure" else 4


# Runtime allowance, shown as its own term (REFERENCES.md "Practice that changes the real peak"):
# the CUDA context and NCCL communicator buffers (0.3-1 GiB per process), plus a fraction of the
# live tensor bytes lost to caching-allocator fragmentation (cost-model.md §4 suggests 5-10%;
# no published measurement pins it, so it stays a visible constant).
CUDA_CONTEXT_BYTES = int(0.75 * GiB)
FRAGMENTATION = 0.05

# Communication buckets: PyTorch DDP's default bucket_cap_mb=25 (two buckets in flight).
DDP_BUCKET_BYTES = 2 * 25 * 2**20

# DeepSpeed ZeRO-3 steps the optimizer one sub-group of parameters at a time, each with its fp32
# gradient copy (`sub_group_size` default 1e9, deepspeed/runtime/zero/config.py; stage3.py
# `_prepare_fp32_grad_for_sub_group`).
DEEPSPEED_SUB_GROUP_PARAMS = 10**9


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes on one GPU at its peak (INTERFACE.md `memory`)."""

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


@dataclass(frozen=True)
class Kernels:
    """What the framework's kernels save for backward, by precision (see the module docstring)."""

    framework: str
    act: int
    """Bytes per element of saved matmul outputs and attention tensors."""
    residual: int
    """Bytes per element of the residual stream (fp32 under torch.autocast: fp32 parameters)."""
    autocast: bool
    """torch.autocast: each linear saves its own bf16 cast of an fp32 input, and the bf16 copies
    of the weights stay cached until the autocast region ends (or backward frees them)."""


def kernels(framework: str, precision: str, zero: int = 0) -> Kernels:
    """The activation dtypes of a framework at a training precision.

    megatron and deepspeed run 16-bit modules (fp32 only for fp32 training). hf: `bf16-pure` casts
    the model to bf16; `bf16-autocast` keeps fp32 parameters and runs torch.autocast; `bf16`
    (PyTorch-native mixed precision) is torch.autocast under DDP (ZeRO 0-2) and FSDP2's
    MixedPrecisionPolicy(param bf16, reduce fp32) under ZeRO-3, which casts parameters when it
    gathers them and then runs pure-bf16 modules (tools/README.md: same per-layer bytes).
    """
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r}; valid: {', '.join(FRAMEWORKS)}")
    if precision == "fp32":
        return Kernels(framework, 4, 4, False)
    if framework == "hf" and (precision == "bf16-autocast" or (precision in MIXED and zero < 3)):
        return Kernels(framework, 2, 4, True)
    if framework == "deepspeed" and precision == "bf16-autocast":
        return Kernels(framework, 2, 4, True)
    return Kernels(framework, 2, 2, False)


def state_bytes(framework: str, precision: str) -> tuple[int, int, int, int]:
    """(weight, gradient, master, fp32 gradient copy) bytes per trainable parameter.

    hf mixed precision keeps fp32 parameters, which are the master weights (torch.autocast; FSDP2
    MixedPrecisionPolicy keeps fp32 sharded parameters and reduces gradients in fp32): 4 + 4.
    DeepSpeed's mixed-precision optimizers step on an fp32 copy of the gradient partition
    (stage_1_and_2.py `single_partition_of_fp32_groups[i].grad`, stage3.py
    `_prepare_fp32_grad_for_sub_group`, bf16_optimizer.py `fp32_groups_gradients`): 4 more.
    Megatron-LM accumulates and all-reduces gradients in fp32 whenever the parameters are bf16
    (megatron/training/arguments.py: "accumulate and all-reduce gradients in fp32 for bfloat16
    data type"; the main_grad buffer of megatron/core/distributed/param_and_grad_buffer.py), so
    bf16 and fp8 (bf16 parameters) keep 4-byte gradients: 2 + 4 + 4 + 8 = 18 B/param, as
    Megatron's theoretical_memory_usage.py counts. fp16 keeps fp16 gradients (its default).
    """
    if framework == "hf" and precision in MIXED:
        return 4, 4, 0, 0
    weight, grad, master = PRECISION_STATE_BYTES[precision]
    if framework == "megatron" and precision in ("bf16", "fp8"):
        grad = MEGATRON_BF16_GRAD_BYTES
    fp32_grad = 4 if framework == "deepspeed" and master else 0
    return weight, grad, master, fp32_grad


def _tokens_per_gpu(plan: Plan, workload: Workload) -> float:
    """Tokens of one micro-batch on one GPU before TP sharding: b * s / cp."""
    return plan.mbs * workload.seq_len / plan.parallel.cp


def _adapted(plan: Plan, workload: Workload | None) -> frozenset[str] | None:
    """Module names carrying LoRA adapters; None when every weight trains."""
    if workload is None or not workload.trains_adapters:
        return None
    names: set[str] = set()
    for target in workload.lora_targets:
        names.update(LORA_TARGETS if target == ALL_LINEAR else (target,))
    return frozenset(names)


def layer_activation_bytes_per_token(arch: Architecture, index: int, plan: Plan,
                                     workload: Workload | None = None, *,
                                     partial: PartialTraining | None = None) -> float:
    """Bytes saved for backward by one layer per token (no dropout), for the workload's framework.

    Megatron (Korthikanti et al. 2022 Table 2 counts 34h + 5as bytes per token of a GPT layer;
    without dropout masks (2 x h bytes) and with flash attention (no s x s scores; a fp32
    log-sum-exp per head instead) the same tensors give, for any layer shape, with e bytes per
    16-bit element):
      norms          2 x e h     inputs of the two norms (fused TE norms save their input)
      attention      e h         QKV input (norm output)
                     e q + 2 e kv  Q, K and V;   e q  attention output = out-proj input
                     4a          fp32 log-sum-exp per head (flash attention)
      MLP            e h         fc1 input
                     gated: 2 e i (fc1 output, gate and up) + e i (fc2 input); plain: e i + e i
    (check: GPT with q = kv = h, i = 4h gives 32h = 34h - 2h of dropout masks.)
    Hugging Face modules (`_hf_layer_bytes`) save more: see there. With TP the sharded tensors
    divide by t; SP also divides the norm and matmul inputs by t (Korthikanti §4.2.2). Selective
    recompute drops the attention core (the log-sum-exp and output) and full recompute keeps only
    the layer input. LoRA: a frozen linear without an adapter keeps no input (autograd saves a
    matmul input only for its weight gradient), a frozen norm weight needs no normalized copy,
    each adapter keeps its rank-r output, and nothing before the first layer needs a gradient.
    Partial fine-tuning (`partial`) is the same rule with the trainable modules in place of the
    adapters: layers before the first trainable one keep nothing at all.
    """
    framework = workload.framework if workload is not None else "megatron"
    if partial is not None:
        first = partial.first_trainable_layer(arch)
        if first is None or index < first:
            return 0.0
        adapted, input_grad = partial.layer_modules(arch, index), index > first
    else:
        adapted = _adapted(plan, workload)
        input_grad = adapted is None or index > 0
    return _layer_activation_bytes_per_token(
        arch, index, plan.parallel.tp, plan.parallel.sp, plan.recompute,
        kernels(framework, plan.precision, plan.zero), adapted, plan.lora_rank, input_grad)


@lru_cache(maxsize=65536)
def _layer_activation_bytes_per_token(arch: Architecture, index: int, tp: int, sp: bool, recompute: str,
                                      k: Kernels, adapted: frozenset[str] | None, rank: int,
                                      input_grad: bool = True) -> float:
    h = arch.hidden
    seq_sharded = 1 / tp if sp else 1.0  # tensors of the residual stream: SP-sharded or replicated
    if recompute == "full":
        # The checkpoint: the layer input in the residual stream's dtype (Megatron: 2h).
        return k.residual * h * seq_sharded
    if k.framework == "megatron":
        replicated, sharded = _megatron_layer_bytes(arch, index, recompute, k.act, adapted, rank, input_grad)
    else:
        replicated, sharded = _hf_layer_bytes(arch, index, recompute, k, adapted, rank, input_grad)
    return replicated * seq_sharded + sharded / tp


def _mla_latent(att) -> int:
    """Width of MLA's compressed q and kv latents (with the decoupled RoPE key) per token."""
    return (att.q_lora_rank or 0) + att.kv_lora_rank + att.qk_rope_head_dim


def _attention_saved(att, e: float) -> tuple[float, float]:
    """(q, k, v saved for the attention core, the core's output and fp32 log-sum-exp) in bytes per
    token at e bytes per element: the FlashAttention inputs and what its backward needs."""
    if att.is_mla:
        q = att.num_heads * att.head_dim
        return e * (q + q + att.num_heads * att.value_head_dim), e * att.num_heads * att.value_head_dim + 4 * att.num_heads
    return e * (att.q_dim + 2 * att.kv_dim), e * att.q_dim + 4 * att.num_heads


def _needs_grad(adapted: frozenset[str] | None, *names: str) -> int:
    """How many of these linears need their input saved (trainable, or carrying an adapter)."""
    return len(names) if adapted is None else sum(n in adapted for n in names)


def _megatron_layer_bytes(arch: Architecture, index: int, recompute: str, e: int,
                          adapted: frozenset[str] | None, rank: int, input_grad: bool = True) -> tuple[float, float]:
    """(replicated, TP-sharded) bytes per token of a Megatron/TE layer (see the caller)."""
    h = arch.hidden
    att = arch.attention
    first_frozen = not input_grad
    norms = e * h * (1 if first_frozen else 2)  # inputs of the two norms
    qkv_input = e * h if _needs_grad(adapted, "q_proj", "k_proj", "v_proj") else 0
    replicated = norms + qkv_input
    if att.is_mla:
        # MLA: the compressed q and kv latents (and their norms' inputs) feed the up-projections.
        replicated += 2 * e * _mla_latent(att)
    attention, attention_core = _attention_saved(att, e)
    if recompute == "none":
        attention += attention_core
    else:
        # Selective: Megatron's core-attention checkpoint recomputes the attention core; its
        # output stays alive as the out-projection's input.
        attention += e * att.num_heads * att.value_head_dim

    def ffn_bytes(i: int) -> float:
        # gated: fc1 output (gate and up) 2 e i + fc2 input e i; plain: fc1 output + fc2 input
        fc2_input = e * i if _needs_grad(adapted, "down_proj") else 0
        return (2 * e * i if arch.gated_mlp else e * i) + fc2_input

    fc1_input = e * h if _needs_grad(adapted, "gate_proj", "up_proj") or arch.is_moe_layer(index) else 0
    replicated += fc1_input + _adapter_bytes(arch, e, adapted, rank)
    if not arch.is_moe_layer(index):
        return replicated, attention + ffn_bytes(arch.ffn)
    moe = arch.moe
    # Router: fp32 logits and probabilities over E experts; each token is dispatched to top_k
    # experts (permuted input and un-permuted output, e h each) whose FFN activations are those of
    # a dense FFN of the expert size (Megatron-Core token dispatcher; capacity factor 1).
    routed = moe.top_k * (2 * e * h + ffn_bytes(moe.expert_ffn))
    router = 2 * 4 * moe.num_experts
    shared = ffn_bytes(moe.shared_ffn) if moe.shared_ffn else 0
    return replicated, attention + routed + router + shared


def _adapter_bytes(arch: Architecture, e: int, adapted: frozenset[str] | None, rank: int) -> float:
    """LoRA: each adapter keeps its rank-r output A x for B's gradient."""
    if adapted is None:
        return 0.0
    names = set(attention_linears(arch.attention, arch.hidden)) | {"gate_proj", "up_proj", "down_proj"}
    return e * rank * len(adapted & names)


def _norm_bytes(arch: Architecture, k: Kernels, weight_trains: bool) -> float:
    """One Hugging Face norm over h features, per token.

    RMSNorm (LlamaRMSNorm and kin) upcasts its input to fp32 (4h, the input itself when it is
    fp32), saves rsqrt (4) and, for the weight's gradient, the normalized input in the input
    dtype (residual bytes x h). LayerNorm (aten native_layer_norm) saves its input, mean and rstd.
    """
    h = arch.hidden
    if arch.norm == "layernorm":
        return k.residual * h + 8
    return 4 * h + 4 + (k.residual * h if weight_trains else 0)


def _hf_layer_bytes(arch: Architecture, index: int, recompute: str, k: Kernels,
                    adapted: frozenset[str] | None, rank: int, input_grad: bool = True) -> tuple[float, float]:
    """(replicated, TP-sharded) bytes per token saved by a Hugging Face decoder layer.

    Per saved tensor (transformers 5.24, torch 2.13; tools/README.md and validation/memory/, exact
    on 10 shapes): with e bytes per activation and r per residual element,
      norms        2 x (4h + r h + 4)     (see _norm_bytes)
      linear inputs  r h per group sharing the norm output (q/k/v; gate/up or router); under
                   torch.autocast each linear saves its own bf16 cast instead: 2h x 3 and 2h x 2
      attention    e q + 2 e kv (SDPA's q, k, v) + e q (output, the o_proj input) + 4a (fp32 lse);
                   q/k RMSNorm per head: 4q + e q + 4a and 4kv + e kv + 4g more
      SwiGLU       gate, SiLU(gate), up and their product (the down_proj input): 4 e i
      MoE (grouped_mm experts)  router probabilities 4E (fp32) and top-k indices 8 top_k; per
                   routed copy the gathered input e h, gate_up 2 e i, SiLU e i, product e i,
                   the expert output e h (kept for the routing-weight product), 3 int64 indices
                   and the routing weight (32 bytes)
    which gives sb(20h + 4kv + 8i) + 8sb + 4asb for pure-bf16 Llama (q = h), sb(30h + 4kv + 8i)
    + 8sb + 4asb under autocast and sb(32h + 8kv + 16i) + 8sb + 4asb in fp32.
    """
    h, e = arch.hidden, k.act
    att = arch.attention
    full = adapted is None or NORMS in adapted  # the norm weights train

    def inputs(n: int) -> float:
        if n == 0:
            return 0.0
        return 2 * h * n if k.autocast else k.residual * h

    # The first norm of a layer whose input needs no gradient keeps only what its weight's gradient needs.
    first_norm = _norm_bytes(arch, k, full) if input_grad else (k.residual * arch.hidden if full else 0)
    # No gradient reaches the attention block of the first trainable layer when nothing in it trains
    # (partial fine-tuning of the MLP, experts or router only): autograd records nothing there.
    attention_graph = input_grad or full or bool(_needs_grad(adapted, *attention_linears(att, h)))
    norms = first_norm + (_norm_bytes(arch, k, full) if attention_graph else 0)
    qkv = _needs_grad(adapted, "q_proj", "k_proj", "v_proj")
    replicated = norms + inputs(qkv) + _adapter_bytes(arch, e, adapted, rank)
    if att.is_mla:
        replicated += 2 * e * _mla_latent(att)  # as for Megatron: not validated against HF's MLA modules
    attention, core = _attention_saved(att, e)
    if not att.is_mla:
        if att.qk_norm == "head":
            attention += (4 * att.q_dim + (e * att.q_dim if full else 0) + 4 * att.num_heads
                          + 4 * att.kv_dim + (e * att.kv_dim if full else 0) + 4 * att.num_kv_heads)
        elif att.qk_norm == "projection":
            # one RMSNorm over all of q and one over all of k (OLMo-2): 4w + e w + 4 each
            attention += sum(4 * w + (e * w if full else 0) + 4 for w in (att.q_dim, att.kv_dim))
    attention += core if recompute == "none" else e * att.num_heads * att.value_head_dim
    if not attention_graph:
        attention = 0.0

    def swiglu(i: int) -> float:
        product = e * i if _needs_grad(adapted, "down_proj") else 0
        return (3 * e * i if arch.gated_mlp else e * i) + product

    if not arch.is_moe_layer(index):
        replicated += inputs(_needs_grad(adapted, "gate_proj", "up_proj") if arch.gated_mlp
                             else _needs_grad(adapted, "up_proj"))
        return replicated, attention + swiglu(arch.ffn)
    moe = arch.moe
    replicated += inputs(_needs_grad(adapted, ROUTER))  # the router's input (experts gather their rows from it)
    router = 4 * moe.num_experts + 8 * moe.top_k
    routed = moe.top_k * (2 * e * h + swiglu(moe.expert_ffn) + 32)
    if not attention_graph and not _needs_grad(adapted, "gate_proj", "up_proj", "down_proj"):
        # Frozen experts on an input without gradient: only their outputs, for the router's gradient.
        routed = moe.top_k * (e * h + 32)
    shared = swiglu(moe.shared_ffn) + (e if moe.shared_expert_gate else 0) if moe.shared_ffn else 0
    return replicated, attention + router + routed + shared


def inflight_microbatches(plan: Plan, stage: int) -> float:
    """Micro-batches of this stage's layers alive at the stage's activation peak.

    1F1B (PipeDream-Flush): stage r runs p - r warm-up forwards before its first backward.
    Interleaved with v chunks (Megatron schedules.py): (p - r - 1) * 2 + (v - 1) * p + 1 chunks of
    L/(p v) layers, i.e. p (1 + (p - 1)/(p v)) layer-groups on the first stage (Korthikanti §4.2.3).
    Never more than the micro-batches of the step.
    """
    p, v, m = plan.parallel.pp, plan.parallel.vpp, plan.gas
    if v == 1:
        return float(min(m, p - stage))
    chunks = (p - stage - 1) * 2 + (v - 1) * p + 1
    return min(chunks, m * v) / v


def _frozen_and_trainable(plan: Plan, workload: Workload, shard: StageShard) -> tuple[float, float, float]:
    """(trainable params, frozen params, frozen quantized params) held by one GPU of the stage."""
    if not workload.trains_adapters:
        return shard.total, 0.0, 0.0
    arch = workload.arch
    tp = plan.parallel.tp
    adapters = sum(
        lora_params(arch, i, plan.lora_rank, workload.lora_targets)
        for i in range(shard.first_layer, shard.first_layer + shard.num_layers)
    ) / tp
    # Quantization applies to the linear layers of the blocks; embeddings, norms and the output
    # layer stay in the compute dtype (bitsandbytes replaces nn.Linear modules, skipping lm_head).
    quantized = 0.0
    if plan.quant != "none":
        for i in range(shard.first_layer, shard.first_layer + shard.num_layers):
            p = layer_params(arch, i)
            quantized += (p.total - p.norms - p.routed_experts) / tp + p.routed_experts / (tp * plan.parallel.ep)
    return adapters, shard.total - quantized, quantized


def estimate_memory(plan: Plan, workload: Workload, cluster: Cluster, *,
                    partial: PartialTraining | None = None,
                    only_stages: tuple[int, ...] | None = None) -> list[StageMemory]:
    """Peak bytes per GPU for every pipeline stage.

    `partial`: train only these parameters of a full fine-tune (`PartialTraining`); None trains
    what `workload.training` says (everything, or the LoRA adapters). `only_stages`: only these
    pipeline stages, in order (the search probes the first, second and last)."""
    partial = partial if partial is not None else workload.partial
    if partial is not None and workload.trains_adapters:
        raise ValueError("partial fine-tuning and LoRA adapters do not combine; choose one")
    arch = workload.arch
    framework = workload.framework
    k = kernels(framework, plan.precision, plan.zero)
    weight_b, grad_b, master_b, fp32_grad_b = state_bytes(framework, plan.precision)
    opt_b = optimizer_state_bytes(plan.optimizer, plan.precision, arch.hidden)
    dp_shard = plan.parallel.dp * plan.parallel.cp  # Megatron shards the optimizer over dp x cp
    expert_dp_shard = max(1, dp_shard // plan.parallel.ep)
    tokens = _tokens_per_gpu(plan, workload)
    stages = []
    for shard in stage_shards(plan, arch):
        if only_stages is not None and shard.stage not in only_stages:
            continue
        trainable, frozen, quantized = _frozen_and_trainable(plan, workload, shard)
        if partial is not None:
            dense_trainable, expert_trainable = partial_trainable(plan, arch, shard, partial)
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
        terms = {
            "weights": sharded(weight_b, 3) + (frozen_bytes / dp_shard if plan.zero == 3 else frozen_bytes),
            "gradients": sharded(grad_b, 2),
            "fp32_gradient_copy": _deepspeed_fp32_grads(plan, sharded(fp32_grad_b, 1), fp32_grad_b),
            "optimizer_states": sharded(opt_b, 1),
            "master_weights": sharded(master_b, 1),
            # PyTorch's foreach AdamW allocates one more copy of the (local) parameters in step():
            # torch._foreach_sqrt(exp_avg_sq) (torch/optim/adamw.py `_multi_tensor_adamw`).
            "optimizer_step_temp": (sharded(_state_dtype_bytes(plan.precision), 1)
                                    if framework == "hf" and plan.optimizer in ("adamw", "adam") else 0.0),
        }
        host = 0.0
        if plan.offload in ("optimizer", "optimizer+params"):
            # ZeRO-Offload keeps fp32 states on the CPU and steps there (arXiv 2101.06840 §4). DeepSpeed
            # ZeRO-2/3 copies each reduced gradient partition straight into the fp32 gradients on the
            # host, for every sub-group (stage_1_and_2.py `async_inplace_copy_grad_to_fp32_buffer_from_gpu`,
            # stage3.py `partition_grads`): no 16-bit gradient partition is kept, and the host holds
            # 4 + 4 + 8 = 16 B/param/N, as DeepSpeed's estimator counts (before its 1.5 buffer factor).
            # FSDP2's CPUOffloadPolicy moves the sharded gradients with the parameters.
            if framework == "deepspeed" and fp32_grad_b:
                terms["fp32_gradient_copy"] = sharded(fp32_grad_b, 1)
            moved = ["optimizer_states", "master_weights", "fp32_gradient_copy", "optimizer_step_temp"]
            if framework == "deepspeed" and plan.zero >= 2:
                terms["gradients"] = 0.0
            if framework == "hf" and plan.offload == "optimizer+params":
                moved.append("gradients")
            if plan.offload == "optimizer+params":
                moved.append("weights")  # ZeRO-Infinity: parameters live on the host, fetched per layer
            for name in moved:
                host += terms[name] if name != "optimizer_step_temp" else 0.0
                terms[name] = 0.0
        phase, memory_terms, detail = _peak_phase(plan, workload, shard, tokens, k, terms, weight_b, partial)
        live = sum(memory_terms.values())
        runtime = CUDA_CONTEXT_BYTES + FRAGMENTATION * live
        detail = {**detail, "cuda_context": CUDA_CONTEXT_BYTES, "fragmentation": int(FRAGMENTATION * live)}
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


def _deepspeed_fp32_grads(plan: Plan, nbytes: float, per_param: int) -> float:
    """DeepSpeed ZeRO-3 holds the fp32 gradient copy of one optimizer sub-group at a time."""
    if plan.zero == 3 and per_param:
        return min(nbytes, per_param * DEEPSPEED_SUB_GROUP_PARAMS)
    return nbytes


def _peak_phase(plan: Plan, workload: Workload, shard: StageShard, tokens: float, k: Kernels,
                states: dict[str, float], weight_b: int,
                partial: PartialTraining | None = None) -> tuple[str, dict[str, float], dict[str, float]]:
    """The phase of the step with the most live bytes: (name, MemoryBreakdown terms, itemized terms).

    Megatron and DeepSpeed keep their gradient buffers for the whole step and step with fused
    Adam: their peak is the start of backward with every term present. Under hf the gradients
    only exist from backward on (unless accumulated over micro-batches), so the peak is one of:
      forward end      states + saved activations + all autocast weight copies (the autocast
                       cache lives until the forward ends, recomputed layers included)
      backward start   states + saved activations + the loss's fp32 gradients (logits_grad)
      backward layers  states + the output layer's gradients + saved activations + the working
                       set of the layer being recomputed (full recompute)
      optimizer step   states + all gradients + the foreach temporary
    """
    act = _activation_terms(plan, workload, shard, tokens, k, partial)
    buffers = _buffer_bytes(plan, workload, shard, weight_b, k)
    all_grads = {"gradients": states["gradients"], "fp32_gradient_copy": states["fp32_gradient_copy"]}

    def phase(grads: dict[str, float], acts: dict[str, float], buf: dict[str, float], temp: float = 0.0):
        parts = {
            "weights": {"weights": states["weights"]},
            "gradients": grads,
            "optimizer": {"optimizer_states": states["optimizer_states"], "optimizer_step_temp": temp},
            "master_weights": {"master_weights": states["master_weights"]},
            "activations": acts,
            "buffers": buf,
        }
        memory = {term: sum(p.values()) for term, p in parts.items()}
        detail = {name: v for p in parts.values() for name, v in p.items() if v}
        return memory, detail

    saved = {n: act[n] for n in ("layers", "embedding", "final_norm", "logits")}
    if workload.framework != "hf":
        acts = {**saved, "logits_grad": act["logits_grad"], "recompute_working_set": act["recompute_working_set"],
                "autocast_weight_copies": act["autocast_weight_copies_saved"]}
        return ("backward start", *phase(all_grads, acts, buffers))

    lazy = plan.gas == 1  # zero_grad(set_to_none=True): gradients appear in backward
    fwd_grads = {} if lazy else all_grads
    candidates = {
        "forward end": phase(fwd_grads, {**saved, "autocast_weight_copies": act["autocast_weight_copies"]}, buffers),
        "backward start": phase(fwd_grads, {**saved, "logits_grad": act["logits_grad"],
                                            "autocast_weight_copies": act["autocast_weight_copies_saved"]}, buffers),
        "backward layers": phase(
            {**fwd_grads, "output_layer_grad": act["output_layer_grad"] if lazy else 0.0},
            {"layers": act["layers"], "embedding": act["embedding"],
             "autocast_weight_copies": act["autocast_weight_copies_layers"],
             "recompute_working_set": act["recompute_working_set"]}, buffers),
        "optimizer step": phase(all_grads, {}, {n: v for n, v in buffers.items() if n == "ddp_buckets"},
                                states["optimizer_step_temp"]),
    }
    name = max(candidates, key=lambda n: sum(candidates[n][0].values()))
    return (name, *candidates[name])


def _linear_params(arch: Architecture, index: int) -> int:
    p = layer_params(arch, index)
    return p.total - p.norms


def _activation_terms(plan: Plan, workload: Workload, shard: StageShard, tokens: float, k: Kernels,
                      partial: PartialTraining | None = None) -> dict[str, float]:
    """Activation bytes of one GPU of the stage, by kind."""
    arch = workload.arch
    tp, sp = plan.parallel.tp, plan.parallel.sp
    adapted = _adapted(plan, workload)
    first, last = shard.stage == 0, shard.stage == plan.parallel.pp - 1
    layers = range(shard.first_layer, shard.first_layer + shard.num_layers)
    # Partial recompute (recompute_layers): the stage's first layers are recomputed, the rest keep
    # everything (Megatron --recompute-method block).
    recomputed = plan.recomputed_layers(shard.stage, shard.num_layers)
    kept = plan.with_(recompute="none") if plan.recompute == "full" else plan
    per_token = [layer_activation_bytes_per_token(arch, i, plan if n < recomputed else kept, workload, partial=partial)
                 for n, i in enumerate(layers)]
    inflight = inflight_microbatches(plan, shard.stage)
    out = dict.fromkeys(("layers", "embedding", "final_norm", "logits", "logits_grad", "recompute_working_set",
                         "autocast_weight_copies", "autocast_weight_copies_saved",
                         "autocast_weight_copies_layers", "output_layer_grad"), 0.0)
    out["layers"] = inflight * tokens * sum(per_token)
    if recomputed:
        # Recomputing a layer in backward rebuilds its full activations, whose input is the
        # checkpoint already counted: one layer's working set on top of the checkpoints.
        unrecomputed = plan.with_(recompute="none")
        out["recompute_working_set"] = tokens * (
            max(layer_activation_bytes_per_token(arch, i, unrecomputed, workload, partial=partial) for i in layers)
            - per_token[0])
    vocab = arch.vocab / tp
    if workload.framework == "megatron":
        if first:
            # Embedding output (the first layer's input), per in-flight micro-batch.
            out["embedding"] = inflight * tokens * k.act * arch.hidden / (tp if sp else 1)
        if last:
            # Logits: the matmul output plus the fp32 copy the fused cross entropy keeps for
            # backward, vocab-parallel over TP (Korthikanti §4.3: 4 s b V / t in fp32).
            out["logits"] = tokens * (k.act + 4) * vocab
        return out
    if last:
        # HF: the final norm and the lm_head input (when lm_head trains); the logits the model
        # returns (e bytes) and the fp32 log-softmax cross entropy saves (transformers
        # ForCausalLMLoss upcasts the logits); backward starts with two fp32 b s V gradients
        # (of the log-softmax output and of the logits) alive together (MemTracker `Temp`).
        head_trains = adapted is None and (partial is None or partial.output)
        h_in = arch.hidden * (2 if k.autocast else k.residual) if head_trains else 0
        out["final_norm"] = tokens * (_norm_bytes(arch, k, head_trains) + h_in) / (tp if sp else 1)
        out["logits"] = tokens * (k.act + 4) * vocab
        out["logits_grad"] = tokens * 8 * vocab
        out["output_layer_grad"] = _output_grad_bytes(plan, workload, k) if partial is None or partial.output else 0.0
    if k.autocast and not (adapted is not None and plan.precision in MIXED):
        # torch.autocast caches a bf16 copy of every linear weight it casts until the autocast
        # region (the forward) ends; matmuls save them for backward, so without recompute they
        # live until each layer's backward (tools/README.md: +2 B/param). Recompute drops them
        # with the cache and rebuilds one layer's copies; lm_head's stay saved.
        # Partial fine-tuning in mixed precision keeps frozen weights in bf16, which autocast uses as
        # they are: only the trainable (fp32) linears get a bf16 copy.
        only_trainable = partial is not None and plan.precision in MIXED
        layer_copies = [2 * (sum(partial.trainable_linear(arch, i)) if only_trainable else _linear_params(arch, i))
                        / tp for i in layers]
        head = 2 * output_params(arch) / tp if last and (not only_trainable or partial.output) else 0.0
        out["autocast_weight_copies"] = sum(layer_copies) + head
        recomputed = plan.recompute == "full"
        out["autocast_weight_copies_saved"] = head + (0.0 if recomputed else sum(layer_copies))
        out["autocast_weight_copies_layers"] = max(layer_copies, default=0.0) if recomputed else sum(layer_copies)
    return out


def _output_grad_bytes(plan: Plan, workload: Workload, k: Kernels) -> float:
    """Gradients of the output layer, the first ones backward allocates (hf, full training)."""
    if workload.trains_adapters:
        return 0.0
    arch = workload.arch
    params = output_params(arch) / plan.parallel.tp
    if plan.zero == 3:
        # FSDP2 reduce-scatters the root module's gradients only when its backward ends.
        return params * k.act
    return params * state_bytes(workload.framework, plan.precision)[1] / (plan.parallel.dp if plan.zero >= 2 else 1)


def _buffer_bytes(plan: Plan, workload: Workload, shard: StageShard, weight_b: int,
                  k: Kernels) -> dict[str, float]:
    """Communication buffers: DDP/ZeRO-1/2 gradient buckets; ZeRO-3 gathered parameters.

    megatron: ZeRO-3 gathers one layer's parameters for compute and prefetches the next.
    hf (FSDP2 `fully_shard` per decoder layer and on the root): the root's parameters
    (embedding, final norm, lm_head) stay unsharded from forward through backward, and a layer is
    gathered while the next one's all-gather is in flight (implicit prefetch), in the compute dtype.
    deepspeed: parameters are gathered per module; its own estimator (stage3.py
    `estimate_zero3_model_states_mem_needs`) holds 4 bytes per parameter of the largest module: the
    module in use and the one prefetched, in 16 bits.
    """
    if plan.zero < 3:
        return {"ddp_buckets": DDP_BUCKET_BYTES} if plan.parallel.dp > 1 else {}
    arch = workload.arch
    tp = plan.parallel.tp
    ep = max(1, plan.parallel.ep if arch.moe else 1)
    layers = range(shard.first_layer, shard.first_layer + shard.num_layers)
    largest = max((layer_params(arch, i).total for i in layers), default=0)
    if workload.framework == "megatron":
        return {"zero3_gathered_layers": 2 * largest * weight_b / (tp * ep)}
    gathered = 2 if plan.precision in MIXED else weight_b  # MixedPrecisionPolicy casts on gather
    if workload.framework == "hf":
        root = 0.0
        if shard.stage == 0:
            root += arch.vocab * arch.hidden
        if shard.stage == plan.parallel.pp - 1:
            root += output_params(arch)
        return {"fsdp_root_params": root * gathered / tp, "zero3_gathered_layers": 2 * largest * gathered / (tp * ep)}
    return {"zero3_gathered_modules": 2 * gathered * largest_module_params(arch) / tp}


def largest_module_params(arch: Architecture) -> int:
    """Parameters held directly by the largest Hugging Face module (DeepSpeed's `largest layer`):
    the embedding or lm_head, a projection, or a layer's fused routed experts (3-D parameters)."""
    sizes = [arch.vocab * arch.hidden]
    for i in range(arch.num_layers):
        sizes += [d_in * d_out for d_in, d_out, _ in attention_linears(arch.attention, arch.hidden).values()]
        p = layer_params(arch, i)
        if arch.is_moe_layer(i):
            sizes.append(p.routed_experts)
            if arch.moe.shared_ffn:
                sizes += [a * b for a, b, _ in mlp_linears(arch.hidden, arch.moe.shared_ffn, arch.gated_mlp, False).values()]
        else:
            sizes += [a * b for a, b, _ in mlp_linears(arch.hidden, arch.ffn, arch.gated_mlp, False).values()]
    return max(sizes)
