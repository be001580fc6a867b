"""The cluster as the models see it: one accelerator type, the fabrics, the memory budget.

Built from a `ClusterSpec` and the hardware catalog; frozen and free of I/O.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from hardware import Accelerator, UnknownAccelerator, get_accelerator
from planner.model.frozen import hash_once
from planner.spec.cluster import ClusterSpec, CustomGPU
from planner.spec.errors import InputError, unknown_name

GiB = 2**30


@hash_once
@dataclass(frozen=True)
class Cluster:
    gpu: Accelerator
    gpus_per_node: int
    nodes: int
    scale_up_kind: str
    """nvlink | xgmi | ici | roce-mesh | pcie."""
    scale_up_domain: int
    """Consecutive ranks that share the scale-up fabric, whole nodes: gpus_per_node for an HGX
    node, 72 for NVL72 racks whose compute trays hold 4 GPUs each."""
    scale_up_bandwidth: float
    """Per-GPU unidirectional bytes/s inside the domain."""
    per_peer_bandwidth: float | None
    """Point-to-point meshes (AMD XGMI, Gaudi): bytes/s to one peer; None for switched fabrics."""
    nic_kind: str
    """infiniband | roce | efa | ethernet | none (single node)."""
    nic_bandwidth_per_node: float
    """Scale-out bytes/s per node per direction, all NICs together."""
    nics_per_node: int
    memory_reserve: int
    """Bytes kept free on each GPU at the user's request."""
    host_memory: int | None
    """Host RAM per node in bytes, for CPU offload."""
    price_per_gpu_hour: float | None

    @property
    def world(self) -> int:
        return self.gpus_per_node * self.nodes

    @property
    def capacity(self) -> int:
        """Bytes a plan may use on each GPU: what the driver reports, less the user's reserve."""
        return self.gpu.usable_bytes - self.memory_reserve

    @property
    def nic_bandwidth_per_gpu(self) -> float:
        return self.nic_bandwidth_per_node / self.gpus_per_node

    def with_size(self, nodes: int, gpus_per_node: int | None = None) -> "Cluster":
        """The same cluster with another node count (capacity planning, suggestions).

        A single node grown to several gets the catalog's typical NIC per GPU as its network
        (or one 100 Gbps Ethernet port per node for parts without a typical scale-out NIC).
        """
        gpn = gpus_per_node or self.gpus_per_node
        domain = self.scale_up_domain if self.scale_up_domain > self.gpus_per_node else gpn
        network = {}
        if nodes > 1 and self.nic_bandwidth_per_node <= 0:
            if self.gpu.nic_gbps_per_gpu:
                network = dict(nic_kind="infiniband", nics_per_node=gpn,
                               nic_bandwidth_per_node=self.gpu.nic_gbps_per_gpu * 1e9 / 8 * gpn)
            else:
                network = dict(nic_kind="ethernet", nics_per_node=1, nic_bandwidth_per_node=100e9 / 8)
        return replace(self, nodes=nodes, gpus_per_node=gpn, scale_up_domain=domain, **network)


def resolve_accelerator(gpu: str | CustomGPU, file: str | None = None) -> Accelerator:
    """The catalog entry for an id, or a custom GPU (optionally based on a catalog entry)."""
    try:
        if isinstance(gpu, str):
            return get_accelerator(gpu)
        base = get_accelerator(gpu.base) if gpu.base else None
    except UnknownAccelerator as exc:
        field = "gpu" if isinstance(gpu, str) else "gpu.base"
        raise InputError(unknown_name("GPU", exc.name, exc.valid), file=file, field=field) from None
    return _custom(gpu, base, file)


def _custom(gpu: CustomGPU, base: Accelerator | None, file: str | None) -> Accelerator:
    needed = ("memory", "peak_tflops", "hbm_bandwidth")
    missing = [f for f in needed if base is None and getattr(gpu, f) is None]
    if missing:
        raise InputError(
            f"a custom GPU needs {', '.join(missing)} (or `base: <catalog id>` to start from)",
            file=file, field="gpu")
    fields: dict = {}
    if gpu.memory is not None:
        fields["memory_bytes"] = gpu.memory
        fields["usable_bytes"] = gpu.usable or int(gpu.memory * 0.99)
    elif gpu.usable is not None:
        fields["usable_bytes"] = gpu.usable
    if gpu.peak_tflops is not None:
        fields["peak_flops"] = {k: v * 1e12 for k, v in gpu.peak_tflops.items()}
    if gpu.hbm_bandwidth is not None:
        fields["hbm_bandwidth"] = gpu.hbm_bandwidth
    if gpu.host_link is not None:
        fields["host_link_bandwidth"] = gpu.host_link
    if gpu.scale_up is not None:
        if gpu.scale_up.kind is not None:
            fields["scale_up_kind"] = gpu.scale_up.kind
            fields["scale_up_topology"] = "pcie" if gpu.scale_up.kind == "pcie" else "switch"
        if gpu.scale_up.bandwidth is not None:
            fields["scale_up_bandwidth"] = gpu.scale_up.bandwidth
        if gpu.scale_up.domain is not None:
            fields["scale_up_domain"] = gpu.scale_up.domain
    if base is not None:
        return replace(base, id=gpu.id or f"{base.id}-custom", name=gpu.name or f"{base.name} (custom)", **fields)
    if "usable_bytes" not in fields or fields.get("usable_bytes", 0) > fields["memory_bytes"]:
        raise InputError("usable memory exceeds memory", file=file, field="gpu.usable")
    return Accelerator(
        id=gpu.id or "custom",
        name=gpu.name or gpu.id or "custom GPU",
        vendor="custom",
        scale_up_kind=fields.pop("scale_up_kind", "pcie"),
        scale_up_topology=fields.pop("scale_up_topology", "pcie"),
        scale_up_domain=fields.pop("scale_up_domain", 8),
        scale_up_bandwidth=fields.pop("scale_up_bandwidth", 32e9),
        per_peer_bandwidth=None,
        host_link_bandwidth=fields.pop("host_link_bandwidth", 32e9),
        nic_gbps_per_gpu=None,
        typical_gpus_per_node=8,
        source="cluster file",
        confidence="low",
        **fields,
    )


def _scale_up_domain(spec: ClusterSpec, gpu: Accelerator, kind: str, file: str | None) -> int:
    """GPUs sharing the scale-up fabric: the cluster's `scale_up_domain`; else the catalog's
    domain where it spans nodes (NVL72, TPU pods), up to the world; else the node."""
    gpn, world = spec.gpus_per_node, spec.world
    valid = f"valid: a multiple of gpus_per_node ({gpn}) from {gpn} to the {world} GPUs of the cluster"
    if spec.scale_up_domain is not None:
        domain = spec.scale_up_domain
        if domain % gpn:
            raise InputError(f"{domain} GPUs is not a whole number of {gpn}-GPU nodes; {valid}",
                             file=file, field="scale_up_domain")
        if domain > world:
            raise InputError(f"{domain} GPUs exceeds the cluster's {spec.nodes} × {gpn} = {world}; {valid}",
                             file=file, field="scale_up_domain")
        if kind == "pcie" and domain > gpn:
            raise InputError(f"a PCIe fabric does not span nodes; valid: {gpn} (the node)",
                             file=file, field="scale_up_domain")
        return domain
    if kind == "pcie" or gpu.scale_up_domain <= gpn:
        return gpn
    domain = min(gpu.scale_up_domain, world)
    if domain % gpn:
        raise InputError(f"{gpu.id}'s {gpu.scale_up_domain}-GPU scale-up domain is not a whole number of"
                         f" {gpn}-GPU nodes; set scale_up_domain ({valid})", file=file, field="gpus_per_node")
    return domain


def build_cluster(spec: ClusterSpec, file: str | None = None) -> Cluster:
    """The model-side cluster from a validated spec."""
    gpu = resolve_accelerator(spec.gpu, file)
    intra = spec.intra_node
    kind = intra.kind if intra and intra.kind else gpu.scale_up_kind
    bandwidth = intra.bandwidth if intra and intra.bandwidth else gpu.scale_up_bandwidth
    if intra and intra.kind == "pcie" and not intra.bandwidth:
        bandwidth = gpu.host_link_bandwidth
    if intra and intra.domain is not None:
        raise InputError("the scale-up domain of a cluster is `scale_up_domain` (GPUs, whole nodes),"
                         " not intra_node.domain", file=file, field="intra_node.domain")
    domain = _scale_up_domain(spec, gpu, kind, file)
    per_peer = gpu.per_peer_bandwidth if kind == gpu.scale_up_kind else None
    if spec.inter_node is not None:
        nic_kind = spec.inter_node.kind
        nic_bw = spec.inter_node.nic_gbps * 1e9 / 8 * spec.inter_node.nics_per_node
        nics = spec.inter_node.nics_per_node
    else:
        nic_kind, nic_bw, nics = "none", 0.0, 0
    reserve = int(round(spec.memory_reserve_gib * GiB))
    if reserve >= gpu.usable_bytes:
        raise InputError(
            f"{spec.memory_reserve_gib:g} GiB leaves nothing of the {gpu.usable_bytes / GiB:.2f} GiB usable on {gpu.id}",
            file=file, field="memory_reserve_gib")
    return Cluster(
        gpu=gpu,
        gpus_per_node=spec.gpus_per_node,
        nodes=spec.nodes,
        scale_up_kind=kind,
        scale_up_domain=domain,
        scale_up_bandwidth=bandwidth,
        per_peer_bandwidth=per_peer,
        nic_kind=nic_kind,
        nic_bandwidth_per_node=nic_bw,
        nics_per_node=nics,
        memory_reserve=reserve,
        host_memory=int(spec.host_memory_gib * GiB) if spec.host_memory_gib else None,
        price_per_gpu_hour=spec.price_per_gpu_hour,
    )
