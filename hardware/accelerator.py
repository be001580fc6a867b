"""One accelerator of the catalog, in the units the models use: bytes, FLOP/s, bytes/s."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ScaleUpKind = Literal["nvlink", "xgmi", "ici", "roce-mesh", "pcie"]
Topology = Literal["switch", "mesh", "torus", "pcie"]

GiB = 2**30
GB = 10**9


@dataclass(frozen=True)
class Accelerator:
    """A GPU/accelerator and its scale-up domain.

    Bandwidths are per GPU and unidirectional (what collective bus bandwidth compares with:
    nccl-tests doc/PERFORMANCE.md; ml-engineering network/README.md "Unidirectional vs
    Bidirectional"). Peak FLOP/s are dense (no 2:4 sparsity).
    """

    id: str
    name: str
    vendor: str
    memory_bytes: int
    """Device memory as labelled by the vendor, in bytes (80 GB label -> 80 GiB of HBM)."""
    usable_bytes: int
    """What the driver reports as total (nvidia-smi / cudaMemGetInfo), before any framework use."""
    peak_flops: dict[str, float] = field(hash=False)
    """Dense peak FLOP/s by compute dtype: keys among bf16, fp16, fp8, tf32, fp32, int8, and the
    block-scaled formats mxfp8, mxfp4 (OCP MX: one e8m0 scale per 32 elements) and nvfp4 (one
    e4m3 scale per 16 elements)."""
    hbm_bandwidth: float
    """Device memory bandwidth, bytes/s (theoretical peak)."""
    scale_up_kind: ScaleUpKind
    scale_up_topology: Topology
    scale_up_domain: int
    """GPUs reachable over the scale-up fabric (8 for an HGX node, 72 for NVL72)."""
    scale_up_bandwidth: float
    """Per-GPU unidirectional scale-up bandwidth, bytes/s, all links together."""
    per_peer_bandwidth: float | None
    """Mesh topologies (AMD XGMI, Gaudi): unidirectional bytes/s to one peer; a group of n
    GPUs gets (n-1) links (ml-engineering network/README.md)."""
    host_link_bandwidth: float
    """PCIe host<->device unidirectional bytes/s (CPU offload)."""
    nic_gbps_per_gpu: float | None
    """Typical scale-out NIC line rate per GPU in Gbit/s, when the part has a typical node."""
    typical_gpus_per_node: int
    source: str
    """Primary URL of the figures."""
    confidence: Literal["high", "medium", "low"] = "medium"
    notes: str = field(default="", compare=False)
    tdp_watts: float | None = None
    """Board power (TDP / TBP) in watts, where the sources give one figure."""
    figure_sources: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    """Where each figure comes from, by figure (memory, peak_tflops, hbm, scale_up, tdp ...),
    for entries that cite their figures one by one."""

    def peak(self, dtype: str) -> float:
        """Dense peak FLOP/s for a compute dtype; falls back as the hardware does.

        bf16 on parts without bf16 tensor cores (V100, T4) runs as fp16; fp8 without fp8 support
        runs at the bf16/fp16 rate, and a block-scaled format without hardware support at the fp8
        rate, else the bf16/fp16 one (the scales applied outside the tensor cores).
        """
        order = {
            "mxfp8": ("mxfp8", "fp8", "bf16", "fp16"),
            "mxfp4": ("mxfp4", "fp8", "bf16", "fp16"),
            "nvfp4": ("nvfp4", "fp8", "bf16", "fp16"),
            "fp8": ("fp8", "bf16", "fp16"),
            "bf16": ("bf16", "fp16"),
            "fp16": ("fp16", "bf16"),
            "fp32": ("tf32", "fp32"),
            "tf32": ("tf32", "fp32"),
            "int8": ("int8", "fp8", "bf16", "fp16"),
        }.get(dtype, (dtype,))
        for key in order:
            value = self.peak_flops.get(key)
            if value:
                return value
        raise KeyError(f"{self.id}: no peak FLOP/s for {dtype}")

    def supports(self, dtype: str) -> bool:
        """True when the part has native tensor-core support for `dtype` (`mxfp8` only where the
        tensor cores apply the block scales themselves: Blackwell, CDNA 4; not Hopper)."""
        return bool(self.peak_flops.get(dtype))
