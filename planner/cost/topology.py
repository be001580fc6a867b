"""Where each parallel group sits and what a collective costs on it.

Placement follows Megatron-LM's rank order tp → cp → ep (inside dp) → dp → pp, innermost first
(megatron/core/parallel_state.py). Collective time is the α-β model of docs/methodology.md §5.2
(Thakur et al. 2005; NCCL's latencies) on the bottleneck domain; groups that span scale-up domains
use the two-level (hierarchical) form ([MLE] network/README.md). Sizes in bytes, times in seconds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from planner.cost import calibration as cal
from planner.cost.cluster import Cluster
from planner.cost.plan import Plan

Op = Literal["all_reduce", "reduce_scatter", "all_gather", "all_to_all", "send_recv"]
Dim = Literal["tp", "cp", "ep", "dp", "pp", "dp_cp", "edp", "etp"]
"""Parallel groups: the five degrees, plus `dp_cp` (dense gradients are reduced over dp × cp,
Megatron-Core's data-parallel-with-context group), `edp` (expert data parallel, dp·cp/ep) and
`etp` (expert tensor parallel, the innermost ranks of the expert grid)."""


@dataclass(frozen=True)
class Group:
    """One communication group as the fabric sees it."""

    size: int
    """Ranks in the group (n)."""
    per_domain: int
    """Members of the group that share one scale-up domain (g)."""
    domains: int
    """Scale-up domains (nodes, or NVL72 racks) the group spans (k)."""


def _stride_and_size(plan: Plan, dim: Dim) -> tuple[int, int]:
    p = plan.parallel
    etp = plan.expert_tp
    return {
        "tp": (1, p.tp),
        "cp": (p.tp, p.cp),
        # The expert grid (megatron/core/parallel_state.py, order tp-ep-dp-pp for experts): the
        # ep ranks sit etp apart inside tp × dp × cp, the expert-data-parallel ones etp · ep apart.
        "ep": (etp, p.ep),
        "dp": (p.tp * p.cp, p.dp),
        "dp_cp": (p.tp, p.cp * p.dp),
        "edp": (etp * p.ep, plan.expert_dp),
        "etp": (1, etp),
        "pp": (p.tp * p.cp * p.dp, p.pp),
    }[dim]


def group_placement(plan: Plan, dim: Dim, cluster: Cluster) -> Group:
    """Size, members per scale-up domain and domains spanned by the group of `dim`.

    A group is `size` ranks `stride` apart, stride = product of the inner degrees (methodology §5.1).
    Degrees and domain sizes are assumed to divide each other (powers of two, or a group inside
    a domain), as they do for launchable layouts.
    """
    stride, size = _stride_and_size(plan, dim)
    domain = cluster.scale_up_domain
    if stride * size <= domain:
        per_domain = size
    else:
        per_domain = max(1, min(size, domain // stride))
    return Group(size=size, per_domain=per_domain, domains=math.ceil(size / per_domain))


# ----------------------------------------------------------------------------- α-β model

def bus_factor(op: Op, n: int) -> float:
    """Bytes each rank moves per payload byte (nccl-tests PERFORMANCE.md busbw factors)."""
    if op == "all_reduce":
        return 2 * (n - 1) / n
    if op in ("reduce_scatter", "all_gather", "all_to_all"):
        return (n - 1) / n
    return 1.0  # send_recv


def ring_steps(op: Op, n: int) -> int:
    """Latency steps of the ring algorithm ([NCCL] tuning.cc nsteps): AR 2(n−1), RS/AG/A2A n−1, send/recv 1."""
    if op == "send_recv":
        return 1
    return 2 * (n - 1) if op == "all_reduce" else n - 1


def _tree_steps(op: Op, k: int) -> int:
    # Tree (AR) / PAT (AG, RS) latency grows with log2 of the nodes (NCCL tuning.cc).
    depth = max(1, math.ceil(math.log2(k)))
    return 2 * depth if op == "all_reduce" else depth


def _has_log_algorithm(op: Op, group: Group) -> bool:
    """Whether NCCL has a logarithmic-latency algorithm for this collective across domains.

    All-reduce: tree / NVLS-tree. All-gather and reduce-scatter: only PAT, and only with one
    rank per node (NCCL ≥ 2.23); otherwise ring, whose latency grows with every rank (tuning.cc:
    one latency step per ring step). All-to-all and send/recv are point-to-point.
    """
    if op == "all_reduce":
        return True
    return op in ("all_gather", "reduce_scatter") and group.per_domain == 1


def latency_s(op: Op, group: Group) -> float:
    """α term: NCCL's base + per-step latencies, intra- vs inter-domain steps ([NCCL] tuning.cc).

    NCCL's ring charges nInterSteps = ring_steps(op, nodes) at the network rate and the rest at
    the NVLink rate. Across domains, where NCCL has a tree-like algorithm (`_has_log_algorithm`)
    we charge the smaller of the ring and tree step counts, as NCCL switches to it when latency
    dominates; ZeRO-3's all-gathers over a 1,536-GPU data-parallel group pay all 1,535 ring
    steps.
    """
    total = ring_steps(op, group.size)
    if group.domains == 1:
        return cal.ALPHA_BASE_S + total * cal.ALPHA_STEP_S["scale_up"]
    inter_ring = ring_steps(op, group.domains)
    inter = min(inter_ring, _tree_steps(op, group.domains)) if _has_log_algorithm(op, group) else inter_ring
    intra = max(0, total - inter_ring)
    return (cal.ALPHA_BASE_S + intra * cal.ALPHA_STEP_S["scale_up"]
            + inter * cal.ALPHA_STEP_S["network"])


def scale_up_bandwidth(op: Op, n: int, cluster: Cluster) -> float:
    """Achieved per-GPU bytes/s of an n-GPU group inside one scale-up domain: e_dom · B_dom.

    Meshes (AMD XGMI, Gaudi) give a group (n−1) peer links ([MLE] network/README.md); NVLink all-reduce on
    NVLS-capable parts (Hopper, Blackwell) ramps from the ring efficiency at 4 GPUs to the NVLS
    one at 8 (calibration.NVLS_MIN_GPUS).
    """
    kind = cluster.scale_up_kind
    line = cluster.scale_up_bandwidth
    if cluster.per_peer_bandwidth and op != "send_recv":
        line = min(line, (n - 1) * cluster.per_peer_bandwidth)
    elif cluster.per_peer_bandwidth:
        line = min(line, cluster.per_peer_bandwidth)
    eff = cal.LINK_EFFICIENCY.get(kind, cal.LINK_EFFICIENCY["pcie"])
    nvls = _nvls_efficiency(cluster.gpu.id) if kind == "nvlink" and op == "all_reduce" else None
    if nvls is not None and n > cal.NVLS_MIN_GPUS:
        ramp = min(1.0, (n - cal.NVLS_MIN_GPUS) / (8 - cal.NVLS_MIN_GPUS))
        eff = eff + ramp * (nvls - eff)
    return eff * line


def _nvls_efficiency(gpu_id: str) -> float | None:
    for prefix, eff in cal.NVLS_ALLREDUCE_EFFICIENCY.items():
        if gpu_id.startswith(prefix):
            return eff
    return None


def network_bandwidth(cluster: Cluster) -> float:
    """Achieved scale-out bytes/s per GPU: NIC bandwidth per GPU (rail-optimized) · e_nic."""
    if cluster.nic_bandwidth_per_node <= 0:
        raise ValueError("a group spans several scale-up domains but the cluster has no"
                         " inter-node network (inter_node)")
    return cluster.nic_bandwidth_per_gpu * cal.LINK_EFFICIENCY.get(cluster.nic_kind, 0.75)


def collective_time(op: Op, payload_bytes: float, group: Group, cluster: Cluster,
                    remote_share: float | None = None) -> float:
    """Seconds for one collective: α·steps + f(op, n)·S / (e_dom·B_dom) (methodology §5.2).

    `payload_bytes` S is the full tensor for all_reduce / reduce_scatter / all_gather, the bytes
    each rank holds for all_to_all, and the message for send_recv (nccl-tests conventions).
    A group inside one domain uses the scale-up fabric; a group with one member per domain rides
    the NICs (one per GPU); otherwise the two-level form ([MLE] network/README.md) — intra-domain RS/AG over the
    scale-up fabric and the 1/g shard across domains over the NICs — combined as
    0.5·(max + sum) of the two terms (an assumption between the overlapped and serial bounds);
    a deduplicated all-to-all pipelines its two levels: max.
    """
    n, g, k = group.size, group.per_domain, group.domains
    if n <= 1 or payload_bytes <= 0:
        return 0.0
    alpha = latency_s(op, group)
    if k == 1:
        return alpha + bus_factor(op, n) * payload_bytes / scale_up_bandwidth(op, n, cluster)
    nic = network_bandwidth(cluster)
    if g == 1 or op == "send_recv":
        return alpha + bus_factor(op, n) * payload_bytes / nic
    up = scale_up_bandwidth(op, g, cluster)
    if op == "all_to_all" and remote_share is not None:
        # Deduplicated dispatch (comm.ep_traffic): remote_share of the payload crosses the network
        # once per domain; NVLink carries every copy to its GPU, forwarding what arrives from the
        # network while the next chunk is in flight: the two run fully overlapped (DeepSeek-V3,
        # arXiv 2412.19437 §3.2.2; DeepEP's normal kernels).
        intra = payload_bytes * (n - 1) / n / up
        inter = payload_bytes * remote_share / nic
        return alpha + max(intra, inter)
    if op == "all_to_all":
        # (g−1)/n of the rank's data stays in its domain, (n−g)/n leaves it.
        intra = payload_bytes * (g - 1) / n / up
        inter = payload_bytes * (n - g) / n / nic
    else:
        intra = bus_factor(op, g) * payload_bytes / up
        inter = bus_factor(op, k) * (payload_bytes / g) / nic
    return alpha + 0.5 * (max(intra, inter) + intra + inter)
