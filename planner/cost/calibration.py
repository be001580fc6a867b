"""The few efficiency constants of the time model, in one place, each with its source.

Shorthand as in docs/methodology.md: [MLE] Bekman, *Machine Learning Engineering*
(github.com/stas00/ml-engineering); [NCCL] NCCL `src/graph/tuning.cc`; [CAL] Calculon;
[SEL22] Korthikanti et al. 2022 (arXiv 2205.05198). Nothing here is fitted to a single run: the
validation runs in `validation/data/runs.yaml` are predicted with these values as they stand.
"""
from __future__ import annotations

# ----------------------------------------------------------------------------- compute

GEMM_FRACTION_OF_MAMF = 0.84
"""Achieved GEMM throughput inside a training layer / best-shape GEMM throughput (MAMF).

Derived from the one published per-layer timing we have, [SEL22] Table 4 (22B GPT layer, TP 8,
b = 4, s = 2048, h = 6144, A100), once the layer's memory-bound work is taken
out explicitly (the element-wise and unfused-attention bytes below at HBM_EFFICIENCY): forward
with SP 7.2 ms = TP collectives 1.5 ms + GEMMs + element-wise bytes, and selective recompute
+1.3 ms = the attention core's batched GEMMs + its 13 bytes per score. Solving the two gives
GEMMs at 0.84 × MAMF (228 TFLOP/s) and HBM at 0.80 of peak; `validation/calibrate.py` prints
the derivation and how the other Table 4 cells come out (forward +3 %, backward +5 to +9 %).
Replaces the earlier lump `0.7 × MAMF` (the same Table 4 read as one layer rate), which folded the same layer's
softmax, dropout and norms into the GEMM rate."""

HBM_EFFICIENCY = 0.8
"""Achieved / datasheet HBM bandwidth of the memory-bound kernels of a layer (norms, residual
adds, dropout, activation functions, unfused softmax). Derived with GEMM_FRACTION_OF_MAMF from
[SEL22] Table 4 (1.64 TB/s of 2.04 on A100 80GB); applied to every GPU (assumption)."""

ELEMENTWISE_BYTES_PER_TOKEN: dict[str, float] = {
    # HBM bytes per token per layer of the forward's memory-bound kernels, per hidden unit
    # (16-bit activations; Megatron-LM fused kernels). Norms: read + write 2 + 2, two per layer.
    "norms": 2 * 4,
    # Residual (bias-dropout-add): read branch output and residual, write the sum 2 + 2 + 2, plus
    # a 1-byte dropout mask; two per layer.
    "residual": 2 * 7,
}
"""Replicated on every TP rank, divided by t only with sequence parallelism — which is why
[SEL22] Table 4's forward drops from 7.7 ms to 7.2 ms with SP (our bytes: 0.56 ms)."""
ACTIVATION_BYTES_PER_FFN_UNIT: dict[str, float] = {
    "gelu": 4,   # fused bias-GeLU: read 2, write 2 per FFN unit
    "gated": 6,  # SwiGLU: read gate and up 2 + 2, write 2
}
"""MLP activation function, per token per FFN unit; divided by t (the FFN is split)."""
ELEMENTWISE_BACKWARD_FACTOR = 1.0
"""Backward bytes of the element-wise kernels / forward bytes. A residual add's backward needs no
kernel (the gradient flows to both branches); norm and dropout backward read the incoming
gradient (and the saved input or mask) and write one gradient — about the forward's bytes.
[SEL22] Table 4 agrees: SP shortens the forward by 0.5 ms but the backward by only 0.1 ms."""

UNFUSED_ATTENTION_BYTES_PER_SCORE: dict[str, float] = {
    # HBM bytes per element of the b·a·s×s score matrix (16-bit) when attention is NOT fused
    # (Megatron-LM before FlashAttention: baddbmm, fused scale-mask-softmax, dropout, bmm).
    # Forward: QK^T writes 2; softmax reads 2 writes 2; dropout reads 2, writes 2 + 1-byte mask;
    # probs·V reads 2.
    "forward": 13,
    # Backward: dP written 2, probs read for dV 2; dropout backward 2 + 1 + 2; softmax backward
    # reads probs and grad 2 + 2, writes 2; dS read for dQ and dK 2 + 2.
    "backward": 19,
}
"""The unfused kernels also compute the full s×s scores (the causal mask is applied after),
twice the causal FLOPs counted as model FLOPs. FlashAttention keeps scores on chip: neither
the bytes nor the masked half are paid."""

MAMF_FRACTION: dict[str, dict[str, float]] = {
    # Maximum achievable matmul FLOP/s / dense peak, best shape, torch ([MLE]
    # compute/accelerator/README.md, the MAMF table). Keys are catalog id prefixes.
    "a100_sxm": {"bf16": 0.869},
    "a100_pcie": {"bf16": 0.811},
    "h100_sxm": {"bf16": 0.803, "fp8": 0.709},
    "h800_sxm": {"bf16": 0.803, "fp8": 0.709},  # same silicon as H100 SXM (NVLink capped only)
    "h200": {"bf16": 0.803, "fp8": 0.734},
    "b200": {"bf16": 0.776, "fp8": 0.763},
    "gb200": {"bf16": 0.729, "fp8": 0.723},
    "b300": {"bf16": 0.786, "fp8": 0.745},
    "mi300x": {"bf16": 0.514},
    "mi325x": {"bf16": 0.604},
    "mi355x": {"bf16": 0.68},
    "gaudi2": {"bf16": 0.969, "fp8": 0.955},
    "gaudi3": {"bf16": 0.741},
}
DEFAULT_MAMF_FRACTION = 0.75
"""Parts without a published MAMF sweep: about the median of the table above (assumption)."""

GEMM_HALF_EFFICIENCY_S = 2e-6
"""A GEMM reaches half of its large-size efficiency when it would take this long at peak
(launch, tail and wave-quantization costs). Our fit of `F / (F + peak·t_half)` to Calculon's
A100 matmul table [CAL] `a100_80g.json` (1 GFLOP → 0.60, 16 → 0.90, ≥128 → 0.95 of peak,
i.e. 0.63 / 0.95 / 1.0 relative): 0.6 GFLOP on a 312 TFLOP/s part ≈ 2 µs."""


FLASH_ATTENTION_FRACTION: dict[str, tuple[float, float]] = {
    # (forward, backward) FLOP/s of the fused attention kernel / dense bf16 peak at its best
    # measured point: causal, head dim 128, sequences of 16K tokens, FLOPs counted as its
    # benchmarks count them (forward 4·d per score; backward 2.5 times that, its five matmuls
    # against the forward's two: flash-attn 2.8.3 hopper/benchmark_attn.py prints every
    # backward at `2.5 * nFLOPS`). How the rate falls at shorter sequences, other head dims and
    # windows is in planner/cost/timing/attention.py.
    # FlashAttention-3 on H100 SXM5 (Shah et al. 2024, arXiv 2407.08608, Figs. 5-6, read from the
    # plots: about 640 TFLOP/s forward and 500 backward of 989 at 16K).
    "h100": (0.647, 0.505),
    "h800": (0.647, 0.505),
    "h200": (0.647, 0.505),
    # FlashAttention-2 on A100 (Dao 2023, arXiv 2307.08691, abstract and §4.1: 50-73 % of the
    # A100's peak; the forward reaches the top of that range at long sequences and head dim 128).
    # Backward: the forward's rate times FA3's measured backward/forward ratio on H100 (500 / 640;
    # an assumption: FA2's backward has the same extra dQ/dK/dV passes and atomics), 0.57 —
    # inside the paper's range.
    "a100": (0.73, 0.57),
}
"""Parts not listed run the attention core at the GEMM rate (no published sweep to use)."""

FLASH_ATTENTION_8K_OF_16K: tuple[float, float] = (610 / 640, 470 / 500)
"""(forward, backward) rate at 8K tokens / rate at 16K, causal, head dim 128: FlashAttention-3 on
H100 (Shah et al. 2024, Figs. 5-6, read from the plots: about 610 and 470 TFLOP/s at 8K against
640 and 500 at 16K). The kernel's work outside its loop over key tiles, per query row, follows
from it (planner/cost/timing/attention.py `overhead_keys`); applied to FlashAttention-2 on A100
as well (assumption: the same tiles and the same work around them)."""

TENSOR_FLOPS_PER_EXP: dict[str, float] = {
    # Dense bf16 tensor-core FLOPs per exponential of the special-function units, per SM and
    # clock: Hopper 4096 (989 TFLOP/s = 132 SMs × 1.83 GHz × 4096) and Ampere 2048 (312 = 108 ×
    # 1.41 GHz × 2048) against 16 exp2 per SM and clock on both (CUDA C++ Programming Guide,
    # "Arithmetic Instructions", throughput of native arithmetic instructions, compute
    # capability 8.0 and 9.0). FlashAttention-3 (Shah et al. 2024, §3.1) names it: 989 TFLOP/s of
    # matmul against 3.9 TFLOP/s of exponentials, so at head dim 128 the exponentials take half
    # as long as the matmuls; narrower heads do fewer matmul FLOPs per exponential.
    "h100": 256, "h800": 256, "h200": 256,
    "a100": 128,
}


def flash_attention_fraction(gpu_id: str) -> tuple[float, float] | None:
    """(forward, backward) fraction of bf16 peak the fused attention kernel reaches at its best
    measured point (FLASH_ATTENTION_FRACTION), or None."""
    for prefix, fractions in FLASH_ATTENTION_FRACTION.items():
        if gpu_id.startswith(prefix):
            return fractions
    return None


def tensor_flops_per_exp(gpu_id: str) -> float | None:
    """Tensor FLOPs per exponential of one SM and clock (TENSOR_FLOPS_PER_EXP), or None."""
    for prefix, ratio in TENSOR_FLOPS_PER_EXP.items():
        if gpu_id.startswith(prefix):
            return ratio
    return None


def mamf_fraction(gpu_id: str, dtype: str) -> float:
    """Best-shape GEMM fraction of dense peak for a catalog GPU and compute dtype.

    fp8 without a published figure falls back to the bf16 fraction; fp16/fp32(tf32) use bf16's.
    mxfp8 takes fp8's: the same tensor-core instructions at the same rate, the block scales read
    in the GEMM itself (tcgen05.mma kind::mxf8f6f4; no MAMF sweep of block-scaled GEMMs is
    published). nvfp4 takes fp8's fraction of its own (twice as high) peak: an assumption, no
    MAMF sweep of fp4 GEMMs is published either.
    """
    for prefix in sorted(MAMF_FRACTION, key=len, reverse=True):
        if gpu_id.startswith(prefix):
            table = MAMF_FRACTION[prefix]
            if dtype in ("mxfp8", "nvfp4"):
                dtype = "fp8"
            return table.get(dtype, table["bf16"])
    return DEFAULT_MAMF_FRACTION


HOST_KERNEL_S: dict[str, float] = {
    # Host seconds to issue one GPU kernel from the training loop, by kernel family: a layer
    # whose kernels run shorter than this is paced by the host (elementwise.layer_kernels).
    # PyTorch's eager dispatch of one operator costs ~5-10 µs of CPU (Python, dispatcher,
    # cudaLaunchKernel); Transformer Engine's C++ paths are about as long per launch.
    # Calibrated on the rows of validation/data/benchmarks.yaml as a whole (docs/benchmarks.md).
    "megatron": 10e-6,
    "deepspeed": 10e-6,
    "hf": 10e-6,
}

# ----------------------------------------------------------------------------- communication

LINK_EFFICIENCY: dict[str, float] = {
    # Achieved bus bandwidth / per-GPU unidirectional line rate, large messages (methodology §5.2).
    "nvlink": 0.80,      # A100 ring AR 0.78, H200 AR/AG/RS 0.80-0.82 [MLE]
    "xgmi": 0.70,        # AMD Infinity Fabric mesh: assumed, no published busbw used
    "pcie": 0.80,        # assumed; PCIe Gen5 H2D measured 0.88 [MLE]
    "ici": 0.80,         # no published busbw in our references: assumed equal to NVLink ring
    "roce-mesh": 0.75,   # Gaudi on-chip RoCE ports: assumed as RoCE
    "infiniband": 0.92,  # NDR 46-48 GB/s of 50, HDR ~24 of 25 per NIC (nccl-tests #160, #290)
    "roce": 0.75,        # assumed as EFA (below)
    "efa": 0.75,         # EFA hierarchical AR ~0.73-0.74 of 50 GB/s per accelerator [MLE]
    "ethernet": 0.75,    # assumed as RoCE
}

NVLS_ALLREDUCE_EFFICIENCY: dict[str, float] = {
    # NVLink SHARP all-reduce busbw / unidirectional NVLink on a full 8-GPU node [MLE]:
    # H200 480 GB/s on 450 (1.07); B200 838-846 on 900 (0.93).
    # Hopper: fitted to runs.yaml h200-8gpu-allreduce-nvls (482.3 GB/s on 450: 1.072;
    # validation/calibrate.py).
    "h100": 1.07, "h200": 1.07, "h800": 1.07, "h20": 1.07,
    "b200": 0.93, "gb200": 0.93, "b300": 0.93,
}
NVLS_MIN_GPUS = 4
"""NVLS reaches its full-node efficiency at 8 GPUs and falls to the ring value at 4-5 GPUs
(NCCL uses NVLS only above ~4-6 GPUs [MLE SHARP]); linear in between (assumed)."""

ALPHA_BASE_S = 25e-6
"""Fixed latency per collective: fitted to runs.yaml h200-8gpu-allreduce-16mib (219.9 GB/s busbw
at 16 MiB) with NCCL's per-step latencies below kept (validation/calibrate.py). NCCL's own base
is 8.4 µs ([NCCL] tuning.cc baseLat); the rest is kernel launch and framework overhead, which
[MLE]'s sweeps include too (fitting `α + f·S/busbw` to its 8×H200 and 8×A100 all-reduce sweeps
gives 78-160 µs per all-reduce)."""
NCCL_BASE_LATENCY_S = 8.4e-6
"""NCCL's own fixed latency of a ring/tree collective, Simple protocol ([NCCL] tuning.cc
baseLat)."""
HOST_OP_S = ALPHA_BASE_S - NCCL_BASE_LATENCY_S
"""Host time of one framework-issued GPU operation (Python and dispatcher, launch): what the
fitted per-collective α above adds to NCCL's own base latency, 16.6 µs. Charged per rank where a
framework issues one operation per rank of the group (DeepSpeed ZeRO-3's list collectives,
`DEEPSPEED_ZERO3`)."""
ALPHA_STEP_S: dict[str, float] = {
    # Per-step hardware latency, NCCL Simple protocol ([NCCL] tuning.cc hwLat): NVLink 3.4 µs,
    # network 14 µs; other scale-up fabrics assumed like NVLink (XGMI, ICI) or PCIe-like.
    "scale_up": 3.4e-6,
    "network": 14e-6,
}

DEEPSPEED_ZERO3_PERSISTENCE_THRESHOLD = 100_000
"""Elements under which DeepSpeed ZeRO-3 keeps a parameter gathered on every rank and never
fetches it (`stage3_param_persistence_threshold`, default 1e5 in stage3.py since 0.3)."""

DEEPSPEED_ZERO3 = "per-parameter, synchronized"
"""How DeepSpeed ZeRO-3 runs its collectives in the time model — the ZeRO-3 of DeepSpeed 0.3.x
(early 2021), the only DeepSpeed whose published step times we validate ([MEG21] Table 2,
docs/validation.md), read from its source (deepspeed 0.3.13 runtime/zero/):
- one all-gather per partitioned parameter tensor as each sub-module runs, forward and backward
  (partition_parameters.py `_allgather_param`), one reduce-scatter per gradient tensor
  (`_reduce_scatter_gradient`), all on the flat data-parallel group: every one pays the full
  ring latency of that group (n − 1 steps, `comm.latency_s`);
- no overlap with compute: `_allgather_param` calls torch.cuda.synchronize() before every
  gather and stage3.py `fetch_sub_module` synchronizes the device again once the sub-module's
  gathers are in; the reduction stream's reduce-scatters are drained by the next gather's
  synchronize. The collectives' time adds to the step;
- torch.distributed's list API: each gather/reduce-scatter passes n tensor views (one per rank,
  a Python `narrow` loop), which ProcessGroupNCCL (torch ≤ 1.10) copies out of / into a flat
  buffer with one copy per rank: n host operations per collective, HOST_OP_S each, issued
  while the device waits.
DeepSpeed ≥ 0.6 coalesces a sub-module's gathers through `_all_gather_base`, buckets the
reduce-scatters and dropped the device-wide synchronizes; the planner has no framework-version
input yet, so `deepspeed` means this generation (its per-parameter latency is the part that
survives)."""

OVERLAP_FRACTION = 0.8
"""Share of a compute phase that can hide communication issued during it: DP gradient buckets
during backward, ZeRO-3 prefetch, ring-attention KV transfer. An assumption: no published
measurement of the overlap was used (methodology §6.2)."""

MOE_IMBALANCE = 1.0
"""Factor on expert all-to-all bytes for uneven routing (methodology §5.3 `imbalance`). No published default
in our references; 1.0 means balanced routing (capacity factor 1)."""

# ----------------------------------------------------------------------------- host / offload

HOST_LINK_EFFICIENCY = 0.88
"""PCIe host<->device achieved / line rate: H200 Gen5 H2D 55.4 of 63 GB/s [MLE]."""

HOST_MEMORY_BANDWIDTH_PER_GPU = 20e9
"""Bytes/s of host DRAM one GPU's CPU optimizer can stream (assumption: a dual-socket server's
~200-400 GB/s shared by 8 GPU processes at ~50% achieved). CPU Adam is memory-bound."""

OPTIMIZER_BYTES_PER_PARAM: dict[str, float] = {
    # HBM bytes moved per trainable parameter by one optimizer step with fp32 master weights
    # (methodology §6.3): Adam reads p32, m, v, g16 and writes p32, m, v, p16 = 28 B. The others count the
    # same way from their states (names as in planner.cost.memory.optimizer_state_bytes).
    "adamw": 28, "adam": 28,
    "adamw8bit": 16,     # 1-byte moments: read p32, m8, v8, g16; write p32, m8, v8, p16
    "sgd-momentum": 20,  # read p32, buf, g16; write p32, buf, p16
    "sgd": 12,           # read p32, g16; write p32, p16
    "adafactor": 12,     # no momentum, factored 2nd moment (~0 B): as SGD
}
DEFAULT_OPTIMIZER_BYTES_PER_PARAM = 28
PURE_16BIT_OPTIMIZER_FACTOR = 0.5
"""bf16-pure training keeps weights and states in 16 bits: half the bytes of the fp32 step."""
