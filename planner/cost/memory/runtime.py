"""What is not a model state or an activation: communication buffers (DDP buckets, ZeRO-3 gathers),
the CUDA context and the caching allocator's fragmentation."""
from __future__ import annotations

from planner.cost.memory.kernels import Kernels
from planner.cost.memory.states import MIXED
from planner.cost.plan import Plan
from planner.cost.shard import StageShard
from planner.cost.workload import Workload
from planner.model.architecture import Architecture
from planner.model.params import (
    attention_linears,
    layer_params,
    mlp_linears,
    output_params,
)

GiB = 2**30
"""Names of the norm weights and the MoE router among the trainable modules of a layer."""


# Runtime allowance, shown as its own term (REFERENCES.md "Practice that changes the real peak"):
# the CUDA context and NCCL communicator buffers (0.3-1 GiB per process), plus a fraction of the
# live tensor bytes lost to caching-allocator fragmentation (cost-model.md §4 suggests 5-10%;
# no published measurement pins it, so it stays a visible constant).
CUDA_CONTEXT_BYTES = int(0.75 * GiB)
FRAGMENTATION = 0.05

# Communication buckets: PyTorch DDP's default bucket_cap_mb=25 (two buckets in flight).
DDP_BUCKET_BYTES = 2 * 25 * 2**20


def buffer_bytes(plan: Plan, workload: Workload, shard: StageShard, weight_b: int,
                  k: Kernels) -> dict[str, float]:
    """Communication buffers: DDP/ZeRO-1/2 gradient buckets; ZeRO-3 gathered parameters.

    By the engine's `zero3_gather` (planner/cost/engine.py):
    layers (Megatron): ZeRO-3 gathers one layer's parameters for compute and prefetches the next.
    fsdp2 (FSDP2 `fully_shard` per decoder layer and on the root): the root's parameters
    (embedding, final norm, lm_head) stay unsharded from forward through backward, and a layer is
    gathered while the next one's all-gather is in flight (implicit prefetch), in the compute dtype.
    modules (DeepSpeed): parameters are gathered per module; its own estimator (stage3.py
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
    if workload.engine.zero3_gather == "layers":
        return {"zero3_gathered_layers": 2 * largest * weight_b / (tp * ep)}
    gathered = 2 if plan.precision in MIXED else weight_b  # MixedPrecisionPolicy casts on gather
    if workload.engine.zero3_gather == "fsdp2":
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
