"""What each parallel dimension sends per step (docs/methodology.md §5.3), as traffic on the groups of
`planner.cost.topology`; DeepSpeed ZeRO-3's per-tensor gathers. Sizes in bytes, times in seconds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from planner.cost import calibration as cal
from planner.cost.cluster import Cluster
from planner.cost.engine import MoeDispatch
from planner.cost.plan import Plan
from planner.cost.topology import (
    Group,
    Op,
    bus_factor,
    collective_time,
    group_placement,
)
from planner.model.architecture import Architecture


@dataclass(frozen=True)
class Traffic:
    """`count` identical collectives of one kind on one group."""

    op: Op
    payload_bytes: float
    group: Group
    count: float = 1
    remote_share: float | None = None
    """All-to-all across scale-up domains with per-domain deduplication (MoE dispatch): the share
    of the payload that crosses the network; None: (n − g)/n, a plain all-to-all."""

    @property
    def wire_bytes(self) -> float:
        """Bytes each GPU sends: count · f(op, n) · S (bytes on the wire per GPU, nccl-tests busbw)."""
        if self.group.size <= 1:
            return 0.0
        return self.count * bus_factor(self.op, self.group.size) * self.payload_bytes

    def seconds(self, cluster: Cluster) -> float:
        return self.count * collective_time(self.op, self.payload_bytes, self.group, cluster, self.remote_share)

    @property
    def link_bytes(self) -> tuple[float, float]:
        """(scale-up, scale-out) bytes each GPU sends: inside a domain all on the scale-up
        fabric; one member per domain (or send/recv across domains) all on the NIC; otherwise
        the two-level split of `collective_time` (intra RS/AG of S, inter of the S/g shard;
        all-to-all (g−1)/n of S inside, (n−g)/n out)."""
        n, g, k = self.group.size, self.group.per_domain, self.group.domains
        if n <= 1:
            return 0.0, 0.0
        if k == 1:
            return self.wire_bytes, 0.0
        if g == 1 or self.op == "send_recv":
            return 0.0, self.wire_bytes
        s = self.payload_bytes
        if self.op == "all_to_all" and self.remote_share is not None:
            up, out = s * (n - 1) / n, s * self.remote_share
        elif self.op == "all_to_all":
            up, out = s * (g - 1) / n, s * (n - g) / n
        else:
            up, out = bus_factor(self.op, g) * s, bus_factor(self.op, k) * s / g
        return self.count * up, self.count * out

    def scaled(self, factor: float) -> "Traffic":
        return Traffic(self.op, self.payload_bytes, self.group, self.count * factor, self.remote_share)


def total_seconds(traffic: tuple[Traffic, ...], cluster: Cluster) -> float:
    return sum(t.seconds(cluster) for t in traffic)


def total_wire_bytes(traffic: tuple[Traffic, ...]) -> float:
    return sum(t.wire_bytes for t in traffic)


def total_link_bytes(traffic: tuple[Traffic, ...]) -> tuple[float, float]:
    """(scale-up, scale-out) bytes of a set of collectives (`Traffic.link_bytes`)."""
    pairs = [t.link_bytes for t in traffic]
    return sum(p[0] for p in pairs), sum(p[1] for p in pairs)


@dataclass(frozen=True)
class CommBytes:
    """Bytes each GPU sends per training step, by parallel dimension (busiest stage), and by
    link class (`--objective comm`)."""

    dp: float
    tp: float
    pp: float
    cp: float
    ep: float
    scale_up: float = 0.0
    """All dimensions together, over the scale-up fabric (NVLink, XGMI ...), busiest stage."""
    scale_out: float = 0.0
    """All dimensions together, over the GPU's NIC (InfiniBand, RoCE, EFA ...), busiest stage.
    With two-level collectives these split the bytes as `Traffic.link_bytes` does, so
    scale_up + scale_out differs from `total` (flat ring volumes, nccl-tests busbw convention)."""

    @property
    def total(self) -> float:
        return self.dp + self.tp + self.pp + self.cp + self.ep


# ----------------------------------------------------------------------------- volumes (methodology §5.3)

def activation_bytes(precision: str) -> int:
    """Bytes per activation element on the wire: 16-bit except fp32 training (fp8 GEMMs keep
    bf16 activations between layers, Transformer Engine)."""
    return 4 if precision == "fp32" else 2


def tp_traffic(plan: Plan, arch: Architecture, seq_len: int, cluster: Cluster) -> tuple[Traffic, ...]:
    """One layer, one micro-batch, forward + backward: 4 all-reduces of b·(s/c)·h ([MEG19];
    [MEG21 §3.2] 8bsh(t−1)/t elements), or with SP 4 all-gathers + 4 reduce-scatters of the
    same tensor, same bytes ([SEL22 §4.2.2])."""
    if plan.tp == 1:
        return ()
    group = group_placement(plan, "tp", cluster)
    tensor = plan.mbs * seq_len / plan.cp * arch.hidden * activation_bytes(plan.precision)
    if plan.parallel.sp:
        return (Traffic("all_gather", tensor, group, 4), Traffic("reduce_scatter", tensor, group, 4))
    return (Traffic("all_reduce", tensor, group, 4),)


def cp_traffic(plan: Plan, arch: Architecture, seq_len: int, cluster: Cluster) -> tuple[Traffic, ...]:
    """One layer, one micro-batch: ring attention passes each rank's K,V chunk c−1 times in the
    forward, and K,V again plus dK,dV in the backward — 3(c−1) sends of 2·b·(s/c)·h_kv·q
    ([MCP]; h_kv of the KV heads this TP rank holds, GQA shrinks it)."""
    c = plan.cp
    if c == 1:
        return ()
    att = arch.attention
    kv_heads_local = max(1, att.num_kv_heads // plan.tp)
    kv_width = kv_heads_local * (att.head_dim + att.value_head_dim)  # K and V together
    chunk = plan.mbs * seq_len / c * kv_width * activation_bytes(plan.precision)
    return (Traffic("send_recv", chunk, group_placement(plan, "cp", cluster), 3 * (c - 1)),)


def ep_traffic(plan: Plan, arch: Architecture, seq_len: int, cluster: Cluster,
               dispatch: MoeDispatch = "deduplicated") -> tuple[Traffic, ...]:
    """One MoE layer, one micro-batch: dispatch + combine all-to-all in forward and backward,
    each b·(s/c)·top_k·h·q bytes per rank ([LLA]), (e−1)/e of it leaving the GPU. With SP
    each TP rank dispatches its 1/t of the tokens.

    Across scale-up domains, today's dispatchers (DeepEP, Megatron-Core's flex dispatcher with
    DeepEP or HybridEP) send a token once to each remote node that holds any of its experts and
    forward it over NVLink there (DeepSeek-V3, arXiv 2412.19437, §3.2.2): the network carries
    E[distinct remote domains] copies of a token, not top_k · (n − g)/n. Megatron-Core's
    alltoall dispatcher (`dispatch` "alltoall", EngineTraits.moe_dispatch) sends every copy to
    its expert's rank: top_k · (n − g)/n of them cross the network.

    Experts split over etp > 1 ranks (expert tensor parallelism) need every token they receive
    on each of those ranks: Megatron-Core's alltoall dispatcher all-gathers what the all-to-all
    delivered over the expert-TP group and reduce-scatters the experts' output before the combine
    (megatron/core/transformer/moe/token_dispatcher.py `MoEAlltoAllTokenDispatcher.
    dispatch_postprocess` / `combine_preprocess`, `gather_from_sequence_parallel_region` over
    `expt_tp`), the reverse in backward; the flex dispatcher sends each token to all etp ranks of
    its expert (`_initialize_metadata` expands the routing map over the TP × EP group), which
    for ranks of one scale-up domain is the same traffic on NVLink."""
    if plan.ep == 1 or arch.moe is None:
        return ()
    tokens = plan.mbs * seq_len / plan.cp / (plan.tp if plan.parallel.sp else 1)
    k = arch.moe.top_k
    held = tokens * k * arch.hidden * activation_bytes(plan.precision) * cal.MOE_IMBALANCE
    group = group_placement(plan, "ep", cluster)
    dedup = dispatch == "deduplicated" and group.domains > 1
    share = remote_domain_share(k, group.domains, arch.moe.route_groups, arch.moe.route_group_topk) if dedup else None
    a2a = Traffic("all_to_all", held, group, 4, share)
    etp = plan.expert_tp
    if etp == 1:
        return (a2a,)
    # The gathered tensor is etp ranks' deliveries; forward AG + RS, backward RS + AG.
    inner = group_placement(plan, "etp", cluster)
    return (a2a, Traffic("all_gather", held * etp, inner, 2), Traffic("reduce_scatter", held * etp, inner, 2))


def remote_domain_share(top_k: int, domains: int, groups: int = 1, group_topk: int = 1) -> float:
    """Share of a token's top_k copies that cross the network with per-domain deduplication:
    the expected number of distinct other domains among top_k experts spread uniformly over
    `domains` domains, (d − 1)·(1 − (1 − 1/d)^k), over k.

    Group-limited routing (`MoE.route_groups`, `route_group_topk`) takes a token's experts from
    g of G contiguous expert groups only, ranked by the sum of their top k/g affinities, so each
    chosen group receives experts (DeepSeek-V3, arXiv 2412.19437 §2.1.2: at most M = 4 nodes per
    token; megatron/core/transformer/moe/moe_utils.py `group_limited_topk`). Experts sit on the EP
    ranks in order, so with r = G/d groups per domain another domain is reached unless none of
    its r groups is chosen: (d − 1)·(1 − C(G − r, g)/C(G, g)); with groups spanning s = d/G
    domains each, the experts spread over the g·s domains of the chosen groups."""
    d = domains
    uniform = (d - 1) * (1 - (1 - 1 / d) ** top_k)
    if group_topk >= groups or top_k < group_topk or d <= 1:
        return uniform / top_k
    if groups % d == 0:
        r = groups // d
        remote = (d - 1) * (1 - math.comb(groups - r, group_topk) / math.comb(groups, group_topk))
    elif d % groups == 0:
        reach = group_topk * (d // groups)
        remote = reach * (1 - (1 - 1 / reach) ** top_k) * (d - 1) / d
    else:
        remote = uniform
    return min(remote, uniform) / top_k


def pp_traffic(plan: Plan, arch: Architecture, seq_len: int, cluster: Cluster) -> tuple[Traffic, ...]:
    """One stage boundary, one micro-batch: activations forward and gradients backward, each
    b·(s/c)·h·q, divided by t by the scatter/gather optimization (or SP) [MEG21 §4.1]."""
    if plan.pp == 1:
        return ()
    message = plan.mbs * seq_len / plan.cp * arch.hidden * activation_bytes(plan.precision) / plan.tp
    return (Traffic("send_recv", message, group_placement(plan, "pp", cluster), 2),)


@dataclass(frozen=True)
class DPTraffic:
    """Data-parallel collectives of one GPU, by when they run (what they can overlap with)."""

    step_backward: tuple[Traffic, ...]
    """Once per step, issued during the last micro-batch's backward (gradient buckets)."""
    step_forward: tuple[Traffic, ...]
    """Once per step, overlapping the next step's first forward (ZeRO-1/2 parameter gather)."""
    microbatch_forward: tuple[Traffic, ...]
    """Every micro-batch's forward (ZeRO-3 parameter gather)."""
    microbatch_backward: tuple[Traffic, ...]
    """Every micro-batch's backward (ZeRO-2 gradient reduce-scatter with accumulation; ZeRO-3
    parameter re-gather and gradient reduce-scatter)."""

    def wire_bytes(self, microbatches: int) -> float:
        per_mb = total_wire_bytes(self.microbatch_forward + self.microbatch_backward)
        return total_wire_bytes(self.step_backward + self.step_forward) + microbatches * per_mb

    def link_bytes(self, microbatches: int) -> tuple[float, float]:
        """(scale-up, scale-out) bytes of one step."""
        step_up, step_out = total_link_bytes(self.step_backward + self.step_forward)
        mb_up, mb_out = total_link_bytes(self.microbatch_forward + self.microbatch_backward)
        return step_up + microbatches * mb_up, step_out + microbatches * mb_out


def dp_traffic(plan: Plan, cluster: Cluster, *, dense_grads: float, expert_grads: float,
               dense_gather: float, expert_gather: float, grad_bytes: float,
               layers: int = 1, gathers_per_layer: float = 1, reduces_per_layer: float = 1,
               deferred: bool = False, regather: bool = True) -> DPTraffic:
    """Gradient and parameter collectives of one GPU over its data-parallel groups ([ZERO]; methodology §5.3).

    `*_grads`: trainable parameters this GPU holds (dense ones reduce over dp × cp, experts over
    the expert-data-parallel group); `*_gather`: bytes of parameters ZeRO gathers (the updated
    trainable ones for ZeRO-1/2, every held parameter for ZeRO-3).
    DDP: one all-reduce per step; ZeRO-1: reduce-scatter + all-gather, same volume [ZERO];
    ZeRO-2: the reduce-scatter repeats per micro-batch with accumulation [MLE]; ZeRO-3: 2
    all-gathers + 1 reduce-scatter per micro-batch, 1.5× DDP per pass [ZERO], [ZERO++], issued
    layer by layer (FSDP units / DeepSpeed modules): `layers` collectives of 1/layers of the
    bytes each, every one paying the full latency of the group. Full recompute adds no third
    gather: a layer is recomputed right before its backward, under the one backward gather (FSDP2
    unshards in the pre-backward hook and skips the recomputed forward's; DeepSpeed keeps the
    fetched parameters within stage3_max_reuse_distance, 1e9 elements by default — and so does
    re-gather weights followed by more than ~5e8 elements in their layer, e.g. GPT-3 175B's qkv,
    proj and fc1, not modelled: docs/validation.md, ZeRO-3 (DeepSpeed)).
    `gathers_per_layer` / `reduces_per_layer`: ZeRO-3 collectives per layer and pass — 1 for a
    framework that gathers a layer's parameters as one flat buffer (FSDP units, Megatron), the
    number of parameter tensors for DeepSpeed's per-parameter fetch (`deepspeed_zero3_tensors`):
    the bytes split over more collectives, each paying the group's full latency.
    `deferred` (FSDP under torch.distributed.pipelining, EngineTraits.pipeline_deferred_sync):
    ZeRO-2/3 reduce-scatter once per run after its last backward and gather once before its
    first forward; ZeRO-3 gathers again in each micro-batch's backward where the engine reshards
    after forward (`regather`), since nothing reshards after a backward until the run ends.
    """
    dense, expert = group_placement(plan, "dp_cp", cluster), group_placement(plan, "edp", cluster)
    zero3 = plan.zero == 3
    gather_split = max(1.0, layers * gathers_per_layer) if zero3 else 1
    reduce_split = max(1.0, layers * reduces_per_layer) if zero3 else 1

    def both(op: Op, dense_bytes: float, expert_bytes: float, split: float) -> tuple[Traffic, ...]:
        out = (Traffic(op, dense_bytes / split, dense, split),)
        return out + ((Traffic(op, expert_bytes / split, expert, split),) if expert_bytes > 0 else ())

    reduce_ = both("reduce_scatter", dense_grads * grad_bytes, expert_grads * grad_bytes, reduce_split)
    gather = both("all_gather", dense_gather, expert_gather, gather_split)
    none: tuple[Traffic, ...] = ()
    if plan.zero == 0:
        return DPTraffic(both("all_reduce", dense_grads * grad_bytes, expert_grads * grad_bytes, 1),
                         none, none, none)
    if plan.zero == 1 or (plan.zero == 2 and (plan.gas == 1 or deferred)):
        return DPTraffic(reduce_, gather, none, none)
    if deferred:
        return DPTraffic(reduce_, gather, none, gather if regather else none)
    if plan.zero == 2:
        return DPTraffic(none, gather, none, reduce_)
    return DPTraffic(none, none, gather, gather + reduce_)


def deepspeed_zero3_tensors(arch: Architecture, first_layer: int, num_layers: int,
                            persistence_threshold: float) -> tuple[float, float]:
    """(gathered, reduced) parameter tensors per layer, averaged over a stage, for DeepSpeed ZeRO-3.

    DeepSpeed partitions every parameter tensor flat over the data-parallel group and fetches a
    sub-module's tensors one all-gather each (partition_parameters.py `_allgather_param`);
    tensors under `stage3_param_persistence_threshold` elements stay gathered and are never
    fetched. Every gradient is reduce-scattered on its own (`_reduce_scatter_gradient`), small
    ones included. Tensors: each linear's weight and bias, each norm's weight and bias; q, k, v
    as one fused tensor in families whose modules fuse them (GPT-2 `c_attn`, Megatron-LM's
    query_key_value, GPT-NeoX, Falcon, Phi-3), else three.
    """
    from planner.model.params import attention_linears, mlp_linears

    if num_layers <= 0:
        return 0.0, 0.0
    gathered = reduced = 0
    fused_qkv = arch.family in FUSED_QKV_FAMILIES
    h = arch.hidden
    for i in range(first_layer, first_layer + num_layers):
        shapes = dict(attention_linears(arch.attention, h))
        if fused_qkv and {"q_proj", "k_proj", "v_proj"} <= shapes.keys():
            q, k, v = (shapes.pop(n) for n in ("q_proj", "k_proj", "v_proj"))
            shapes = {"qkv": (h, q[1] + k[1] + v[1], q[2]), **shapes}
        linears = list(shapes.values())
        if arch.is_moe_layer(i):
            moe = arch.moe
            linears += list(mlp_linears(h, moe.expert_ffn, arch.gated_mlp, moe.expert_bias).values()) * moe.num_experts
            if moe.shared_ffn:
                linears += list(mlp_linears(h, moe.shared_ffn, arch.gated_mlp, moe.shared_expert_bias).values())
            linears.append((h, moe.num_experts, moe.router_bias))
        else:
            linears += list(mlp_linears(h, arch.ffn, arch.gated_mlp, arch.mlp_bias).values())
        tensors = []
        for d_in, d_out, bias in linears:
            tensors.append(d_in * d_out)
            tensors += [d_out] if bias else []
        tensors += [h] * arch.norms_per_layer * (2 if arch.norm == "layernorm" else 1)
        gathered += sum(1 for t in tensors if t >= persistence_threshold)
        reduced += len(tensors)
    return gathered / num_layers, reduced / num_layers


FUSED_QKV_FAMILIES = frozenset({"gpt2", "gpt_neox", "falcon", "phi3"})
"""Hugging Face model types (and Megatron-LM's GPT) whose attention holds q, k, v in one tensor."""
