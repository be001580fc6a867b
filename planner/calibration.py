"""The few efficiency constants of the time model, in one place, each with its source.

Shorthand as in `references/cost-model.md` (section numbers refer to it): [MLE] Bekman,
*Machine Learning Engineering*; [NCCL] NCCL `src/graph/tuning.cc`; [CAL] Calculon;
[SEL22] Korthikanti et al. 2022. Nothing here is fitted to a single run: the validation runs
in `data/runs.yaml` are predicted with these values as they stand.
"""
from __future__ import annotations

# ----------------------------------------------------------------------------- compute

LAYER_FRACTION_OF_MAMF = 0.7
"""Whole-layer throughput / best-shape GEMM throughput (MAMF). Derived in §3.3 from [SEL22]
Table 4 (22B layer on A100: 55% fwd - 61% bwd of peak after removing TP comm, MAMF 86.9%);
it absorbs the non-GEMM work (norms, softmax, dropout, GeLU) of a layer."""

MAMF_FRACTION: dict[str, dict[str, float]] = {
    # Maximum achievable matmul FLOP/s / dense peak, best shape, torch [MLE] compute/accelerator
    # (cost-model §3.3; data/hardware.yaml `measured`). Keys are catalog id prefixes.
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
A100 matmul table [CAL] `a100_80g.json` (§3.3: 1 GFLOP → 0.60, 16 → 0.90, ≥128 → 0.95 of peak,
i.e. 0.63 / 0.95 / 1.0 relative): 0.6 GFLOP on a 312 TFLOP/s part ≈ 2 µs."""


def mamf_fraction(gpu_id: str, dtype: str) -> float:
    """Best-shape GEMM fraction of dense peak for a catalog GPU and compute dtype.

    fp8 without a published figure falls back to the bf16 fraction; fp16/fp32(tf32) use bf16's.
    """
    for prefix in sorted(MAMF_FRACTION, key=len, reverse=True):
        if gpu_id.startswith(prefix):
            table = MAMF_FRACTION[prefix]
            return table.get(dtype, table["bf16"])
    return DEFAULT_MAMF_FRACTION


# ----------------------------------------------------------------------------- communication

LINK_EFFICIENCY: dict[str, float] = {
    # Achieved bus bandwidth / per-GPU unidirectional line rate, large messages (§6.2, §1.5).
    "nvlink": 0.80,      # A100 ring AR 0.78, H200 AR/AG/RS 0.80-0.82 [MLE]
    "xgmi": 0.70,        # AMD Infinity Fabric mesh, §6.2 default
    "pcie": 0.80,        # §6.2 default; PCIe Gen5 H2D measured 0.88 [MLE]
    "ici": 0.80,         # no published busbw in our references: assumed equal to NVLink ring
    "roce-mesh": 0.75,   # Gaudi on-chip RoCE ports, §6.2 RoCE default
    "infiniband": 0.92,  # NDR 46-48 GB/s of 50, HDR ~24 of 25 per NIC (nccl-tests #160, #290)
    "roce": 0.75,        # §6.2 EFA/RoCE default
    "efa": 0.75,         # EFA hierarchical AR ~0.73-0.74 of 50 GB/s per accelerator [MLE]
    "ethernet": 0.75,    # assumed as RoCE
}

NVLS_ALLREDUCE_EFFICIENCY: dict[str, float] = {
    # NVLink SHARP all-reduce busbw / unidirectional NVLink on a full 8-GPU node (§6.2, §1.5):
    # H200 480 GB/s on 450 (1.07, we take §6.2's 1.05); B200 838-846 on 900 (0.93).
    "h100": 1.05, "h200": 1.05, "h800": 1.05, "h20": 1.05,
    "b200": 0.93, "gb200": 0.93, "b300": 0.93,
}
NVLS_MIN_GPUS = 4
"""NVLS reaches its full-node efficiency at 8 GPUs and falls to the ring value at 4-5 GPUs
(§6.2; NCCL uses NVLS only above ~4-6 GPUs [MLE SHARP]); linear in between."""

ALPHA_BASE_S = 8.4e-6
"""NCCL Simple-protocol base latency per collective, ring and tree ([NCCL] tuning.cc, §1.3)."""
ALPHA_STEP_S: dict[str, float] = {
    # Per-step hardware latency, NCCL Simple protocol ([NCCL] tuning.cc, §1.3): NVLink 3.4 µs,
    # network 14 µs; other scale-up fabrics assumed like NVLink (XGMI, ICI) or PCIe-like.
    "scale_up": 3.4e-6,
    "network": 14e-6,
}

OVERLAP_FRACTION = 0.8
"""Share of a compute phase that can hide communication issued during it: DP gradient buckets
during backward, ZeRO-3 prefetch, ring-attention KV transfer (§6.5, `o ≈ 0.8`)."""

MOE_IMBALANCE = 1.0
"""Factor on expert all-to-all bytes for uneven routing (§6.4 `imbalance`). No published default
in our references; 1.0 means balanced routing (capacity factor 1)."""

# ----------------------------------------------------------------------------- host / offload

HOST_LINK_EFFICIENCY = 0.88
"""PCIe host<->device achieved / line rate: H200 Gen5 H2D 55.4 of 63 GB/s [MLE] (§1.5)."""

HOST_MEMORY_BANDWIDTH_PER_GPU = 20e9
"""Bytes/s of host DRAM one GPU's CPU optimizer can stream (assumption: a dual-socket server's
~200-400 GB/s shared by 8 GPU processes at ~50% achieved). CPU Adam is memory-bound."""

OPTIMIZER_BYTES_PER_PARAM: dict[str, float] = {
    # HBM bytes moved per trainable parameter by one optimizer step with fp32 master weights
    # (§6.5): Adam reads p32, m, v, g16 and writes p32, m, v, p16 = 28 B. The others count the
    # same way from their states (names as in planner.memory.optimizer_state_bytes).
    "adamw": 28, "adam": 28,
    "adamw8bit": 16,     # 1-byte moments: read p32, m8, v8, g16; write p32, m8, v8, p16
    "sgd-momentum": 20,  # read p32, buf, g16; write p32, buf, p16
    "sgd": 12,           # read p32, g16; write p32, p16
    "adafactor": 12,     # no momentum, factored 2nd moment (~0 B): as SGD
}
DEFAULT_OPTIMIZER_BYTES_PER_PARAM = 28
PURE_16BIT_OPTIMIZER_FACTOR = 0.5
"""bf16-pure training keeps weights and states in 16 bits: half the bytes of the fp32 step."""
