"""cluster.yaml: the hardware a job runs on (docs/cli.md, "Input files")."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator

from planner.spec.units import parse_rate, parse_size

LinkKind = Literal["infiniband", "roce", "efa", "ethernet"]
ScaleUpKind = Literal["nvlink", "xgmi", "ici", "roce-mesh", "pcie"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InterNode(_Strict):
    """The scale-out network between nodes."""

    nic_gbps: float = Field(gt=0)
    """Line rate of one NIC in Gbit/s (400 for NDR InfiniBand). A string with a unit is accepted."""
    nics_per_node: PositiveInt = 8
    """NICs of the scale-out network per node (DGX H100: 8, one per GPU)."""
    kind: LinkKind = "infiniband"
    """infiniband, roce, efa or ethernet: sets the achievable fraction of line rate."""

    @field_validator("nic_gbps", mode="before")
    @classmethod
    def _gbps(cls, v):
        return parse_rate(v) * 8 / 1e9 if isinstance(v, str) else v


class IntraNode(_Strict):
    """Overrides of the catalog's scale-up fabric (a PCIe box of GPUs that have NVLink, say)."""

    kind: ScaleUpKind | None = None
    """nvlink, xgmi, ici, roce-mesh or pcie (defaults to the catalog's)."""
    bandwidth: float | None = Field(default=None, gt=0)
    """Per-GPU unidirectional bandwidth in bytes/s; accepts `450GB/s` or `100Gbps`."""
    domain: PositiveInt | None = None
    """A custom GPU's scale-up domain in GPUs (as the catalog's `domain`); a cluster states its
    own as `scale_up_domain`."""

    @field_validator("bandwidth", mode="before")
    @classmethod
    def _rate(cls, v):
        return parse_rate(v) if isinstance(v, str) else v


class CustomGPU(_Strict):
    """A GPU not in the catalog, or a catalog GPU with some figures changed (`base`)."""

    base: str | None = None
    """A catalog id to start from; every other field overrides it."""
    id: str | None = None
    """Short name used in tables and JSON (defaults to `<base>-custom`, or `custom`)."""
    name: str | None = None
    """Long name for people."""
    memory: int | None = Field(default=None, gt=0)
    """Device memory in bytes (`80GiB`)."""
    usable: int | None = Field(default=None, gt=0)
    """Memory the driver reports, in bytes; defaults to 99% of `memory`."""
    peak_tflops: dict[str, float] | None = None
    """Dense peak TFLOP/s (1e12) by dtype: bf16, fp16, fp8, tf32, fp32."""
    hbm_bandwidth: float | None = Field(default=None, gt=0)
    """Bytes/s (`3.35TB/s`)."""
    scale_up: IntraNode | None = None
    """The GPU's scale-up fabric (kind, per-GPU bandwidth, domain size)."""
    host_link: float | None = Field(default=None, gt=0)
    """PCIe host link, bytes/s per direction (`64GB/s`)."""

    @field_validator("memory", "usable", mode="before")
    @classmethod
    def _size(cls, v):
        return parse_size(v) if isinstance(v, str) else v

    @field_validator("hbm_bandwidth", "host_link", mode="before")
    @classmethod
    def _rate(cls, v):
        return parse_rate(v) if isinstance(v, str) else v


class ClusterSpec(_Strict):
    """A homogeneous cluster: `nodes` nodes of `gpus_per_node` GPUs of one type."""

    gpu: str | CustomGPU
    """An id from `planner gpus`, or a mapping of the same fields for a custom GPU."""
    gpus_per_node: PositiveInt = 8
    """GPUs in one node (one server)."""
    nodes: PositiveInt = 1
    """Nodes in the cluster; the world size is nodes × gpus_per_node."""
    scale_up_domain: PositiveInt | None = None
    """GPUs on one scale-up fabric (NVLink ...): whole nodes, so a multiple of gpus_per_node, at most
    the world (72 for a GB200/GB300 NVL72 rack of 4-GPU trays). Defaults to the GPU's catalog
    domain where it spans nodes (NVL72, TPU pods), else the node."""
    inter_node: InterNode | None = None
    """Required when nodes > 1."""
    intra_node: IntraNode | None = None
    """Overrides of the GPU's scale-up fabric inside a node (a PCIe box, say)."""
    memory_reserve_gib: float = Field(default=0.0, ge=0)
    """GiB kept free on each GPU on top of the modelled runtime allowance."""
    host_memory_gib: float | None = Field(default=None, gt=0)
    """Host RAM per node in GiB, for CPU offload."""
    price_per_gpu_hour: float | None = Field(default=None, ge=0)
    """Price of one GPU-hour, for cost in `capacity`."""

    @property
    def world(self) -> int:
        return self.gpus_per_node * self.nodes
