"""Model states per trainable parameter: weights, gradients, master weights, optimizer moments
(ZeRO paper, Rajbhandari et al. 2019, arXiv 1910.02054, §3 and §5), frozen and quantized base weights."""
from __future__ import annotations

from planner.cost.engine import EngineTraits
from planner.cost.plan import Plan
from planner.cost.precisions import QUANTIZED_PRECISIONS
from planner.cost.shard import StageShard
from planner.cost.workload import Workload
from planner.model.params import layer_params, lora_params

# (weight, gradient, fp32 master) bytes per trainable parameter, by training precision.
# Mixed precision keeps 16-bit weights and gradients and an fp32 master copy (ZeRO §3: 2 + 2 + 4
# before the optimizer's 12 - 4 = 8 bytes of Adam moments); fp8 training (Transformer Engine)
# keeps the same 16-bit parameters and fp32 master weights, casting to fp8 per GEMM (DeepSeek-V3
# §3.3; TE docs), with per-tensor scales (fp8) or a scale per 32 elements (mxfp8: the scales of
# the quantized copies, not of the parameters; nvfp4 likewise, 4-bit copies with a scale per 16).
# bf16-autocast keeps fp32 weights and gradients
# (torch.autocast).
PRECISION_STATE_BYTES: dict[str, tuple[int, int, int]] = {
    "bf16": (2, 2, 4),
    "fp16": (2, 2, 4),
    "fp8": (2, 2, 4),
    "mxfp8": (2, 2, 4),
    "nvfp4": (2, 2, 4),
    "fp32": (4, 4, 0),
    "bf16-pure": (2, 2, 0),
    "bf16-autocast": (4, 4, 0),
}
MIXED = ("bf16", "fp16", "fp8", "mxfp8", "nvfp4")
BF16_PARAMETERS = ("bf16", *QUANTIZED_PRECISIONS)
"""Precisions whose parameters are bf16: bf16 mixed precision, and fp8 training, which casts them per GEMM."""

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
    state_dtype = state_dtype_bytes(precision)
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


def state_dtype_bytes(precision: str) -> int:
    """Optimizer states take the dtype of the parameters they update: bf16 only in pure bf16."""
    return 2 if precision == "bf16-pure" else 4

# DeepSpeed ZeRO-3 steps the optimizer one sub-group of parameters at a time, each with its fp32
# gradient copy (`sub_group_size` default 1e9, deepspeed/runtime/zero/config.py; stage3.py
# `_prepare_fp32_grad_for_sub_group`).
DEEPSPEED_SUB_GROUP_PARAMS = 10**9


def state_bytes(engine: EngineTraits, precision: str) -> tuple[int, int, int, int]:
    """(weight, gradient, master, fp32 gradient copy) bytes per trainable parameter.

    The engine's traits (planner/cost/engine.py) decide the extras; their sources:
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
    DeepSpeed bf16-pure (bf16.bf16_master_weights_and_grads with bf16_optimizer_states) still
    clones its partition of the weights as the master copy and reduces gradients into a partition
    buffer, both in bf16 (stage_1_and_2.py: `weights_partition ... dtype=self.master_weights_and_grads_dtype`):
    2 + 2 + 2 + 2, before 2 + 2 bytes of Adam moments.
    """
    if engine.fp32_parameters and precision in MIXED:
        return 4, 4, 0, 0
    if engine.kernels == "deepspeed" and precision == "bf16-pure":
        return 2, 2, 2, 2
    weight, grad, master = PRECISION_STATE_BYTES[precision]
    if engine.fp32_grad_accumulation and precision in BF16_PARAMETERS:
        grad = MEGATRON_BF16_GRAD_BYTES
    fp32_grad = 4 if engine.fp32_gradient_copy and master else 0
    return weight, grad, master, fp32_grad


def workload_state_bytes(workload: Workload, plan: Plan, hidden: int) -> tuple[float, int, float, int, float]:
    """(weight, gradient, master, fp32 gradient copy, optimizer) bytes per trainable parameter:
    `state_bytes` and `optimizer_state_bytes`, with the dtypes the launch file sets
    (Workload.states) in their place."""
    weight, grad, master, fp32_grad = state_bytes(workload.engine, plan.precision)
    optimizer = optimizer_state_bytes(plan.optimizer, plan.precision, hidden)
    if plan.moment_dtype == "bf16" and plan.optimizer in ("adamw", "adam"):
        # Megatron's precision-aware optimizer keeps both Adam moments in bf16
        # (megatron/core/optimizer/optimizer_config.py exp_avg_dtype / exp_avg_sq_dtype).
        optimizer = 2 * 2
    own = workload.states
    if own is None:
        return weight, grad, master, fp32_grad, optimizer
    if own.moments is not None and plan.optimizer in ("adamw", "adam"):
        optimizer = own.moments
    return (weight, grad if own.gradient is None else own.gradient,
            master if own.master is None else own.master, fp32_grad, optimizer)


def frozen_and_trainable(plan: Plan, workload: Workload, shard: StageShard) -> tuple[float, float, float]:
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
            quantized += (p.total - p.norms - p.routed_experts) / tp + p.routed_experts / (plan.expert_tp * plan.parallel.ep)
    return adapters, shard.total - quantized, quantized


def deepspeed_fp32_grads(plan: Plan, nbytes: float, per_param: int) -> float:
    """DeepSpeed ZeRO-3 holds the fp32 gradient copy of one optimizer sub-group at a time."""
    if plan.zero == 3 and per_param:
        return min(nbytes, per_param * DEEPSPEED_SUB_GROUP_PARAMS)
    return nbytes
