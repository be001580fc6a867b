"""Per-GPU memory of a training plan, per pipeline stage, each term separate.

Model states follow the ZeRO paper (Rajbhandari et al. 2019, arXiv 1910.02054, §3 and §5);
activations follow Korthikanti et al. 2022 (arXiv 2205.05198, §4 and Table 2), re-derived per
saved tensor for modern layers (SwiGLU, GQA, RMSNorm, flash attention, MoE, MLA); the pipeline's
in-flight micro-batches follow Megatron-LM's schedules (megatron/core/pipeline_parallel/schedules.py).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

from planner.cluster import Cluster
from planner.model.architecture import Architecture
from planner.model.params import layer_params, lora_params
from planner.plan import Plan
from planner.shard import StageShard, stage_shards
from planner.workload import Workload

GiB = 2**30

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
    state_dtype = 2 if precision == "bf16-pure" else 4
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


# Runtime allowance, shown as its own term (REFERENCES.md "Practice that changes the real peak"):
# the CUDA context and NCCL communicator buffers (0.3-1 GiB per process), plus a fraction of the
# live tensor bytes lost to caching-allocator fragmentation (cost-model.md §4 suggests 5-10%;
# no published measurement pins it, so it stays a visible constant).
CUDA_CONTEXT_BYTES = int(0.75 * GiB)
FRAGMENTATION = 0.05

# Communication buckets: PyTorch DDP's default bucket_cap_mb=25 (two buckets in flight).
DDP_BUCKET_BYTES = 2 * 25 * 2**20


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


def _tokens_per_gpu(plan: Plan, workload: Workload) -> float:
    """Tokens of one micro-batch on one GPU before TP sharding: b * s / cp."""
    return plan.mbs * workload.seq_len / plan.parallel.cp


def layer_activation_bytes_per_token(arch: Architecture, index: int, plan: Plan) -> float:
    """Bytes saved for backward by one layer per token (16-bit activations, no dropout).

    Korthikanti et al. 2022 Table 2 counts, per token of a GPT layer, 34h + 5as bytes; without
    dropout masks (2 x h bytes) and with flash attention (no s x s scores; a fp32 log-sum-exp
    per head instead) the same tensors give, for any layer shape:
      norms          2 x 2h      inputs of the two norms
      attention      2h          QKV input (norm output)
                     2q + 2kv    Q and K;   2kv V;   2q  attention output = out-proj input
                     4a          fp32 log-sum-exp per head (flash attention)
      MLP            2h          fc1 input
                     gated: 4i (fc1 output, gate and up) + 2i (fc2 input); plain: 2i + 2i
    (check: GPT with q = kv = h, i = 4h gives 32h = 34h - 2h of dropout masks.)
    With TP the sharded tensors divide by t; SP also divides the norm and matmul inputs by t
    (Korthikanti §4.2.2). Selective recompute drops the attention core (the log-sum-exp and
    output) and full recompute keeps only the layer input.
    """
    return _layer_activation_bytes_per_token(arch, index, plan.parallel.tp, plan.parallel.sp, plan.recompute)


@lru_cache(maxsize=65536)
def _layer_activation_bytes_per_token(arch: Architecture, index: int, tp: int, sp: bool, recompute: str) -> float:
    h = arch.hidden
    att = arch.attention
    seq_sharded = 1 / tp if sp else 1.0  # tensors of the residual stream: SP-sharded or replicated

    if recompute == "full":
        return 2 * h * seq_sharded

    replicated = (2 * 2 * h + 2 * h + 2 * h) * seq_sharded  # two norm inputs, QKV input, fc1 input
    if att.is_mla:
        # MLA: the compressed q and kv latents (and their norms' inputs) feed the up-projections.
        latent = (att.q_lora_rank or 0) + att.kv_lora_rank + att.qk_rope_head_dim
        replicated += 2 * 2 * latent
        q = att.num_heads * att.head_dim
        k = att.num_heads * att.head_dim
        v = att.num_heads * att.value_head_dim
        attention = 2 * q + 2 * k + 2 * v
        attention_core = 2 * v + 4 * att.num_heads
    else:
        attention = 2 * att.q_dim + 2 * att.kv_dim + 2 * att.kv_dim
        attention_core = 2 * att.q_dim + 4 * att.num_heads
    if recompute == "none":
        attention += attention_core
    else:
        # Selective: Megatron's core-attention checkpoint recomputes the attention core; its
        # output stays alive as the out-projection's input only when the next op keeps it, so
        # count it once as the out-projection input.
        attention += 2 * (att.num_heads * att.value_head_dim)

    mlp = _mlp_activation_bytes_per_token(arch, index)
    return replicated + (attention + mlp) / tp


def _mlp_activation_bytes_per_token(arch: Architecture, index: int) -> float:
    """MLP bytes per token excluding the (replicated) fc1 input."""
    def ffn_bytes(i: int) -> float:
        return (4 * i + 2 * i) if arch.gated_mlp else (2 * i + 2 * i)

    if not arch.is_moe_layer(index):
        return ffn_bytes(arch.ffn)
    moe = arch.moe
    h = arch.hidden
    # Router: fp32 logits and probabilities over E experts; each token is dispatched to top_k
    # experts (permuted input and un-permuted output, 2h each) whose FFN activations are those of
    # a dense FFN of the expert size (Megatron-Core token dispatcher; capacity factor 1).
    routed = moe.top_k * (2 * h + 2 * h + ffn_bytes(moe.expert_ffn))
    router = 2 * 4 * moe.num_experts
    shared = ffn_bytes(moe.shared_ffn) if moe.shared_ffn else 0
    return routed + router + shared


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


def estimate_memory(plan: Plan, workload: Workload, cluster: Cluster) -> list[StageMemory]:
    """Peak bytes per GPU for every pipeline stage."""
    arch = workload.arch
    weight_b, grad_b, master_b = PRECISION_STATE_BYTES[plan.precision]
    opt_b = optimizer_state_bytes(plan.optimizer, plan.precision, arch.hidden)
    dp_shard = plan.parallel.dp * plan.parallel.cp  # Megatron shards the optimizer over dp x cp
    expert_dp_shard = max(1, dp_shard // plan.parallel.ep)
    tokens = _tokens_per_gpu(plan, workload)
    stages = []
    for shard in stage_shards(plan, arch):
        trainable, frozen, quantized = _frozen_and_trainable(plan, workload, shard)
        if workload.trains_adapters:
            dense_trainable, expert_trainable = trainable, 0.0
            frozen_bytes = frozen * weight_b + quantized * QUANT_WEIGHT_BYTES.get(plan.quant, weight_b)
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
        weights = sharded(weight_b, 3) + (frozen_bytes / dp_shard if plan.zero == 3 else frozen_bytes)
        gradients = sharded(grad_b, 2)
        optimizer = sharded(opt_b, 1)
        master = sharded(master_b, 1)
        host = 0.0
        if plan.offload in ("optimizer", "optimizer+params"):
            host += optimizer + master  # ZeRO-Offload keeps fp32 states on the CPU
            optimizer = master = 0.0
        if plan.offload == "optimizer+params":
            host += weights  # ZeRO-Infinity: parameters live on the host, fetched per layer
            weights = 0.0

        activations = _stage_activation_bytes(plan, workload, shard, tokens)
        buffers = _buffer_bytes(plan, workload, shard, weight_b)
        live = weights + gradients + optimizer + master + activations + buffers
        runtime = CUDA_CONTEXT_BYTES + FRAGMENTATION * live
        stages.append(StageMemory(
            stage=shard.stage,
            layers=shard.num_layers,
            recompute_layers=shard.num_layers if plan.recompute == "full" else 0,
            memory=MemoryBreakdown(
                weights=int(weights), gradients=int(gradients), optimizer=int(optimizer),
                master_weights=int(master), activations=int(activations), buffers=int(buffers),
                runtime=int(runtime)),
            host_bytes=int(host),
        ))
    return stages


def _stage_activation_bytes(plan: Plan, workload: Workload, shard: StageShard, tokens: float) -> float:
    arch = workload.arch
    layers = range(shard.first_layer, shard.first_layer + shard.num_layers)
    per_microbatch = tokens * sum(layer_activation_bytes_per_token(arch, i, plan) for i in layers)
    inflight = inflight_microbatches(plan, shard.stage)
    total = inflight * per_microbatch
    tp, sp = plan.parallel.tp, plan.parallel.sp
    if plan.recompute == "full" and shard.num_layers:
        # Recomputing a layer in backward rebuilds its full activations, whose input is the
        # checkpoint already counted: one layer's working set on top of the checkpoints.
        unrecomputed = plan.with_(recompute="none")
        checkpoint = layer_activation_bytes_per_token(arch, shard.first_layer, plan)
        total += tokens * (max(layer_activation_bytes_per_token(arch, i, unrecomputed) for i in layers) - checkpoint)
    if shard.stage == 0:
        # Embedding output (the first layer's input), per in-flight micro-batch.
        total += inflight * tokens * 2 * arch.hidden / (tp if sp else 1)
    if shard.stage == plan.parallel.pp - 1:
        # Logits: 16-bit matmul output plus the fp32 copy the cross entropy keeps for backward,
        # vocab-parallel over TP (Korthikanti §4.3: 4 s b V / t in fp32, plus the 2-byte output).
        total += tokens * (2 + 4) * arch.vocab / tp
    return total


def _buffer_bytes(plan: Plan, workload: Workload, shard: StageShard, weight_b: int) -> float:
    """Communication buffers: DDP/ZeRO-1/2 gradient buckets; ZeRO-3 gathers whole layers.

    ZeRO-3 / FSDP all-gathers one layer's parameters for compute and prefetches the next
    (DeepSpeed stage3 prefetch; FSDP2 keeps one layer unsharded plus one in flight).
    """
    if plan.zero < 3:
        return DDP_BUCKET_BYTES if plan.parallel.dp > 1 else 0.0
    arch = workload.arch
    layers = range(shard.first_layer, shard.first_layer + shard.num_layers)
    largest = max((layer_params(arch, i).total for i in layers), default=0)
    return 2 * largest * weight_b / (plan.parallel.tp * max(1, plan.parallel.ep if arch.moe else 1))
