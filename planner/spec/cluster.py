"""cluster.yaml: the hardware a job runs on (docs/cli.md, "Input files").

Every number is finite and bounded: the bounds are wide of any machine built (a GPU of 1 PiB,
a cluster of 2^20 GPUs) but keep every product the models form within 64-bit integers, which
the CP-SAT solver needs. Integers are strict: `nodes: yes` is YAML for true, not 1.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

from planner.spec.units import parse_rate, parse_size

LinkKind = Literal["infiniband", "roce", "efa", "ethernet"]
ScaleUpKind = Literal["nvlink", "xgmi", "ici", "roce-mesh", "pcie"]

MAX_WORLD = 2**20
"""GPUs in one cluster, at most (1,048,576)."""
MAX_NODES = 2**17
MAX_GPUS_PER_NODE = 2**10
MIN_MEMORY, MAX_MEMORY = 2**26, 2**50
"""A GPU's memory: 64 MiB to 1 PiB."""
MIN_RATE, MAX_RATE = 1e6, 1e15
"""A link's or memory's bandwidth: 1 MB/s to 1 PB/s (10^6 to 10^15 bytes/s)."""
MAX_TFLOPS = 1e6
"""Dense peak of one GPU, at most one exaFLOP/s (10^6 TFLOP/s)."""
PEAK_DTYPES = ("bf16", "fp16", "fp8", "tf32", "fp32", "int8", "mxfp8", "mxfp4", "nvfp4")
"""The dtypes the catalog gives peaks for (hardware/catalog.py DTYPES; a test holds them equal)."""
MAX_NAME = 256
"""Characters of an id or a name."""

Count = Annotated[int, Strict()]
Number = Annotated[float, Strict()]
"""Strict numbers: an int or a float, never a bool or a string (units are parsed before)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class InterNode(_Strict):
    """The scale-out network between nodes."""

    nic_gbps: Number = Field(ge=MIN_RATE * 8 / 1e9, le=MAX_RATE * 8 / 1e9)
    """Line rate of one NIC in Gbit/s (400 for NDR InfiniBand), 0.008 (1 MB/s) to 8,000,000 (1 PB/s).
    A string with a unit is accepted."""
    nics_per_node: Count = Field(default=8, gt=0, le=MAX_GPUS_PER_NODE)
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
    bandwidth: Number | None = Field(default=None, ge=MIN_RATE, le=MAX_RATE)
    """Per-GPU unidirectional bandwidth in bytes/s, 1 MB/s to 1 PB/s; accepts `450GB/s` or `100Gbps`."""
    domain: Count | None = Field(default=None, gt=0, le=MAX_WORLD)
    """A custom GPU's scale-up domain in GPUs (as the catalog's `domain`); a cluster states its
    own as `scale_up_domain`."""

    @field_validator("bandwidth", mode="before")
    @classmethod
    def _rate(cls, v):
        return parse_rate(v) if isinstance(v, str) else v


class CustomGPU(_Strict):
    """A GPU not in the catalog, or a catalog GPU with some figures changed (`base`)."""

    base: str | None = Field(default=None, max_length=MAX_NAME)
    """A catalog id to start from; every other field overrides it."""
    id: str | None = Field(default=None, max_length=MAX_NAME)
    """Short name used in tables and JSON (defaults to `<base>-custom`, or `custom`)."""
    name: str | None = Field(default=None, max_length=MAX_NAME)
    """Long name for people."""
    memory: Count | None = Field(default=None, ge=MIN_MEMORY, le=MAX_MEMORY)
    """Device memory in bytes (`80GiB`), 64 MiB to 1 PiB."""
    usable: Count | None = Field(default=None, ge=MIN_MEMORY, le=MAX_MEMORY)
    """Memory the driver reports, in bytes; defaults to 99% of `memory`."""
    peak_tflops: dict[Literal[PEAK_DTYPES], Annotated[Number, Field(gt=0, le=MAX_TFLOPS)]] | None = None
    """Dense peak TFLOP/s (10^12 FLOP/s, at most 10^6) by dtype: bf16, fp16, fp8, tf32, fp32, int8,
    mxfp8, mxfp4, nvfp4; a GPU without `base` needs bf16 or fp16."""
    hbm_bandwidth: Number | None = Field(default=None, ge=MIN_RATE, le=MAX_RATE)
    """Bytes/s (`3.35TB/s`), 1 MB/s to 1 PB/s."""
    scale_up: IntraNode | None = None
    """The GPU's scale-up fabric (kind, per-GPU bandwidth, domain size)."""
    host_link: Number | None = Field(default=None, ge=MIN_RATE, le=MAX_RATE)
    """PCIe host link, bytes/s per direction (`64GB/s`), 1 MB/s to 1 PB/s."""

    @field_validator("memory", "usable", mode="before")
    @classmethod
    def _size(cls, v):
        # `80GiB`, or a number of bytes written as a float (`8.6e10`)
        return parse_size(v) if isinstance(v, (str, float)) else v

    @field_validator("hbm_bandwidth", "host_link", mode="before")
    @classmethod
    def _rate(cls, v):
        return parse_rate(v) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _computes(self):
        # The catalog's rule (hardware/catalog.py): the models time every precision from a
        # 16-bit peak when the GPU has no peak of its own for it.
        if self.base is None and self.peak_tflops is not None and not {"bf16", "fp16"} & set(self.peak_tflops):
            raise ValueError("peak_tflops: a custom GPU without `base` needs a bf16 or fp16 peak")
        return self


class ClusterSpec(_Strict):
    """A homogeneous cluster: `nodes` nodes of `gpus_per_node` GPUs of one type."""

    gpu: Annotated[str, Field(max_length=MAX_NAME)] | CustomGPU
    """An id from `planner gpus`, or a mapping of the same fields for a custom GPU."""
    gpus_per_node: Count = Field(default=8, gt=0, le=MAX_GPUS_PER_NODE)
    """GPUs in one node (one server), at most 1,024."""
    nodes: Count = Field(default=1, gt=0, le=MAX_NODES)
    """Nodes in the cluster, at most 131,072; the world size is nodes × gpus_per_node, at most
    1,048,576 GPUs."""
    scale_up_domain: Count | None = Field(default=None, gt=0, le=MAX_WORLD)
    """GPUs on one scale-up fabric (NVLink ...): whole nodes, so a multiple of gpus_per_node, at most
    the world (72 for a GB200/GB300 NVL72 rack of 4-GPU trays). Defaults to the GPU's catalog
    domain where it spans nodes (NVL72, TPU pods), else the node."""
    inter_node: InterNode | None = None
    """Required when nodes > 1."""
    intra_node: IntraNode | None = None
    """Overrides of the GPU's scale-up fabric inside a node (a PCIe box, say)."""
    memory_reserve_gib: Number = Field(default=0.0, ge=0, le=MAX_MEMORY / 2**30)
    """GiB kept free on each GPU on top of the modelled runtime allowance (less than the GPU's
    usable memory)."""
    host_memory_gib: Number | None = Field(default=None, gt=0, le=MAX_MEMORY / 2**30)
    """Host RAM per node in GiB (2^30 bytes), for CPU offload; at most 1 PiB."""
    price_per_gpu_hour: Number | None = Field(default=None, ge=0, le=1e6)
    """Price of one GPU-hour, for cost in `capacity`; at most 1,000,000."""

    @model_validator(mode="after")
    def _world(self):
        if self.nodes * self.gpus_per_node > MAX_WORLD:
            raise ValueError(f"nodes × gpus_per_node = {self.nodes:,} × {self.gpus_per_node:,} ="
                             f" {self.nodes * self.gpus_per_node:,} GPUs; at most {MAX_WORLD:,}")
        return self

    @property
    def world(self) -> int:
        return self.gpus_per_node * self.nodes
