"""What is not a model state or an activation: communication buffers (DDP buckets, ZeRO-3 gathers)
and the runtime of the process (CUDA context, GEMM workspaces, NCCL buffers, allocator fragmentation)."""
from __future__ import annotations

from functools import lru_cache

from planner.cost.engine import deferred_sync
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
MiB = 2**20

# ----------------------------------------------------------------------------- runtime
# What a training process holds on the GPU besides tensors, from documented behaviour; shown
# as the `runtime` term, itemized in StageMemory.detail. Every figure is per process (one GPU).

CUDA_CONTEXT_BYTES = int(0.75 * GiB)
"""A CUDA context with every kernel module of PyTorch and its libraries loaded eagerly (CUDA
before 12.2 without CUDA_MODULE_LOADING=LAZY): what `planner infer` charges a serving process."""

CUDA_CONTEXT_LAZY_BYTES: dict[str, int] = {
    # The context of a training process with lazy module loading (CUDA C++ Programming Guide,
    # "Lazy Loading": CUDA_MODULE_LOADING=LAZY, the default from CUDA 12.2, loads a kernel's module
    # only when it first runs): the driver's per-context state plus the modules a training step
    # uses, about 0.5-0.6 GiB on Hopper and 0.4-0.5 GiB on Ampere as nvidia-smi reports for a
    # process that has run a step. Keys are catalog id prefixes.
    "h100": int(0.55 * GiB), "h200": int(0.55 * GiB), "h800": int(0.55 * GiB),
    "a100": int(0.45 * GiB),
}
DEFAULT_CUDA_CONTEXT_BYTES = int(0.6 * GiB)
"""Parts without a figure above (assumption: a little above Hopper's)."""

CUBLAS_WORKSPACE_BYTES = 32 * MiB
"""cuBLAS workspace of PyTorch's handle on the compute stream: 32 MiB on Hopper (cuBLAS docs,
`cublasSetWorkspace`: 32 MiB recommended for Hopper; PyTorch's CUBLAS_WORKSPACE_CONFIG default
:4096:8 there), 4 MiB x 2 + 16 KiB x 8 before it; taken at 32 MiB for every part (an upper value)."""
TE_CUBLASLT_WORKSPACE_BYTES = 32 * MiB
TE_GEMM_STREAMS = 4
"""Transformer Engine's cuBLASLt workspace, 32 MiB on Hopper per stream
(transformer_engine/pytorch/module/base.py `get_cublas_workspace_size_bytes`), on its main stream
and the side streams its grouped GEMMs run on (`_NUM_MAX_UB_STREAMS`/num_gemm_streams: 4)."""

NCCL_CHANNEL_BUFFER_BYTES = 4 * MiB + 4_915_200 + 524_288
"""One NCCL connection's receive buffers, one per protocol: Simple NCCL_BUFFSIZE = 4 MiB (NCCL
docs, environment variables), LL128 4,915,200 B and LL 524,288 B (nccl src/include/device.h
DEFAULT_LL128_BUFFSIZE, DEFAULT_LL_BUFFSIZE)."""
NCCL_RING_CHANNELS = 16
"""Channels of a collective communicator (NCCL_MIN_NCHANNELS/NCCL_MAX_NCHANNELS): NCCL opens
16-32 on an NVSwitch node and 2 per NIC across nodes; 16 taken for every communicator."""
NCCL_P2P_CHANNELS_PER_PEER = 2
"""Channels per peer of point-to-point traffic (send/recv, all-to-all): NCCL_NCHANNELS_PER_NET_PEER
default 2 (NCCL docs); p2p runs the Simple protocol only, one 4 MiB buffer per channel."""

ALLOCATOR_FRAGMENTATION: dict[str, float] = {
    # Share of live bytes the caching allocator holds in cached but unusable blocks.
    # Default allocator: fixed segments (2 MiB for small blocks, rounded large ones) split and
    # cached; no published measurement pins the loss (an assumption at 5%, a visible constant).
    "default": 0.05,
    # PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True maps 2 MiB pages into one growing segment
    # per stream, so freed ranges are reused whatever their size: only page rounding and the
    # per-stream split remain (PyTorch docs, "CUDA memory management", expandable_segments).
    "expandable": 0.02,
}
FRAMEWORK_ALLOCATOR: dict[str, str] = {
    # Megatron-Bridge's launch environment sets expandable_segments:True for its recipes (every
    # Megatron-Core row of validation/data/benchmarks.yaml); Hugging Face / FSDP2 and DeepSpeed
    # training runs with PyTorch's default allocator unless the user sets it.
    "megatron": "expandable", "hf": "default", "deepspeed": "default",
}


def cuda_context_bytes(gpu_id: str) -> int:
    for prefix, nbytes in CUDA_CONTEXT_LAZY_BYTES.items():
        if gpu_id.startswith(prefix):
            return nbytes
    return DEFAULT_CUDA_CONTEXT_BYTES


def nccl_buffer_bytes(plan: Plan, workload: Workload) -> float:
    """Receive buffers of the NCCL communicators a layout creates and uses (NCCL connects a
    communicator's channels when its first collective runs: NCCL_RUNTIME_CONNECT, default since
    2.22). Collectives (tp, the gradient group dp x cp, cp, the experts' gradient group, the
    embedding group tying the first and last stage): a ring's receive buffers on every channel;
    point-to-point (pp sends to both neighbours, ep's all-to-all to every peer): Simple buffers
    per peer and channel."""
    par = plan.parallel
    moe = workload.arch.moe is not None and par.ep > 1
    collectives = [par.tp, par.dp * par.cp, par.cp, plan.expert_dp if moe else 1,
                   2 if par.pp > 1 else 1]
    ring = sum(n > 1 for n in collectives) * NCCL_RING_CHANNELS * NCCL_CHANNEL_BUFFER_BYTES
    peers = (min(2, par.pp - 1) if par.pp > 1 else 0) + ((par.ep - 1) if moe else 0)
    return ring + peers * NCCL_P2P_CHANNELS_PER_PEER * 4 * MiB


def runtime_bytes(plan: Plan, workload: Workload, gpu_id: str, live: float) -> dict[str, float]:
    """What a training process holds besides its tensors, by item (bytes): CUDA context, cuBLAS
    and cuBLASLt workspaces, NCCL buffers, and the allocator's fragmentation of `live` bytes."""
    framework = workload.engine.kernels  # the kernel family
    workspaces = CUBLAS_WORKSPACE_BYTES
    if framework == "megatron":
        workspaces += TE_CUBLASLT_WORKSPACE_BYTES * (1 + TE_GEMM_STREAMS)
    fragmentation = ALLOCATOR_FRAGMENTATION[FRAMEWORK_ALLOCATOR.get(framework, "default")]
    return {"cuda_context": cuda_context_bytes(gpu_id), "gemm_workspaces": workspaces,
            "nccl_buffers": nccl_buffer_bytes(plan, workload), "fragmentation": fragmentation * live}


# Communication buckets: PyTorch DDP's default bucket_cap_mb=25 (two buckets in flight).
DDP_BUCKET_BYTES = 2 * 25 * 2**20


def buffer_bytes(plan: Plan, workload: Workload, shard: StageShard, weight_b: float,
                 k: Kernels) -> dict[str, float]:
    """Communication buffers, at least the buckets the launch file allocates (Workload.framework_buffers:
    DeepSpeed keeps its ZeRO reduce and all-gather buckets for the whole step)."""
    own = _own_buffers(plan, workload, shard, weight_b)
    extra = (workload.framework_buffers or 0) - sum(own.values())
    return {**own, "framework_buckets": extra} if extra > 0 else own


def _own_buffers(plan: Plan, workload: Workload, shard: StageShard, weight_b: float) -> dict[str, float]:
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
        reduced = plan.parallel.dp > 1 or (plan.zero > 0 and workload.engine.zero_buckets_without_dp)
        return {"ddp_buckets": DDP_BUCKET_BYTES} if reduced else {}
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
        if not workload.engine.reshard_after_forward or deferred_sync(plan, workload.engine):
            # Every layer stays gathered until its backward (or, under a pipeline schedule that
            # defers resharding, until the run ends): the dense parameters whole (tp aside), the
            # experts in their EP share when FSDP shards them beyond EP (ep < dp).
            kept = 0.0
            for i in layers:
                p = layer_params(arch, i)
                experts = p.routed_experts
                kept += (p.total - experts) / tp + (experts / (tp * ep) if plan.parallel.dp > ep else 0.0)
            return {"fsdp_root_params": root * gathered / tp, "fsdp_unsharded_layers": kept * gathered}
        return {"fsdp_root_params": root * gathered / tp, "zero3_gathered_layers": 2 * largest * gathered / (tp * ep)}
    return {"zero3_gathered_modules": 2 * gathered * largest_module_params(arch) / tp}


@lru_cache(maxsize=64)
def largest_module_params(arch: Architecture) -> int:
    """Parameters held directly by the largest Hugging Face module (DeepSpeed's `largest layer`):
    the embedding or lm_head, a projection, or a layer's fused routed experts (3-D parameters).
    Once per architecture: every ZeRO-3 plan of a DeepSpeed search reads it."""
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
