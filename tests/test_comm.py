"""Collective formulas against hand computation; placement; per-dimension volumes."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.cost import calibration as cal
from planner.cost.cluster import build_cluster
from planner.cost.comm import Group, Traffic, bus_factor, collective_time, group_placement, pp_traffic, tp_traffic
from planner.cost.plan import ParallelDims, Plan
from planner.cost.topology import latency_s, ring_steps
from planner.model.architecture import Architecture, Attention
from planner.spec.cluster import ClusterSpec

GB = 1e9
S = 2**30  # 1 GiB payload


def cluster(gpu="a100_sxm_80gb", nodes=1, nic_gbps=200, **kw):
    inter = {"nic_gbps": nic_gbps, "nics_per_node": 8} if nodes > 1 else None
    return build_cluster(ClusterSpec(gpu=gpu, gpus_per_node=8, nodes=nodes, inter_node=inter, **kw))


def plan(**dims) -> Plan:
    return Plan(parallel=ParallelDims(**dims))


def arch(hidden=4096, heads=32, kv_heads=32) -> Architecture:
    return Architecture(name="t", family="llama", hidden=hidden, num_layers=4, vocab=32000,
                        ffn=4 * hidden, attention=Attention(heads, kv_heads, hidden // heads))


def test_bus_factors_and_steps():
    assert bus_factor("all_reduce", 8) == pytest.approx(2 * 7 / 8)
    for op in ("reduce_scatter", "all_gather", "all_to_all"):
        assert bus_factor(op, 4) == pytest.approx(3 / 4)
    assert bus_factor("send_recv", 8) == 1
    assert ring_steps("all_reduce", 8) == 14
    assert ring_steps("all_gather", 8) == 7
    assert ring_steps("send_recv", 8) == 1


def test_placement_megatron_order():
    c = cluster(nodes=16)
    p = plan(tp=2, cp=2, dp=8, pp=4, ep=4)
    assert group_placement(p, "tp", c) == Group(2, 2, 1)
    assert group_placement(p, "cp", c) == Group(2, 2, 1)  # stride 2: ranks 0, 2
    assert group_placement(p, "ep", c) == Group(4, 4, 1)  # stride 2 over cp then dp: 0, 2, 4, 6
    assert group_placement(p, "dp", c) == Group(8, 2, 4)  # stride 4: two per node, 4 nodes
    assert group_placement(p, "dp_cp", c) == Group(16, 4, 4)
    assert group_placement(p, "edp", c) == Group(4, 1, 4)  # stride 8: one per node
    assert group_placement(p, "pp", c) == Group(4, 1, 4)  # stride 32


def test_ring_all_reduce_inside_a100_node():
    c = cluster()
    t = collective_time("all_reduce", S, Group(8, 8, 1), c)
    alpha = cal.ALPHA_BASE_S + 14 * cal.ALPHA_STEP_S["scale_up"]
    assert t == pytest.approx(alpha + 2 * 7 / 8 * S / (0.80 * 300 * GB))
    # nccl-tests busbw of this case: 234.9 GB/s measured (runs.yaml a100-8gpu-allreduce).
    busbw = 2 * 7 / 8 * 17179869184 / collective_time("all_reduce", 17179869184, Group(8, 8, 1), c)
    assert busbw / GB == pytest.approx(234.9, rel=0.05)


def test_inter_node_group_uses_nic_bandwidth():
    c = cluster(nodes=4)
    dp = group_placement(plan(tp=8, dp=4), "dp", c)
    assert dp == Group(4, 1, 4)
    t = collective_time("all_reduce", S, dp, c)
    nic = 200e9 / 8 * cal.LINK_EFFICIENCY["infiniband"]  # one 200G NIC per GPU
    alpha = cal.ALPHA_BASE_S + 4 * cal.ALPHA_STEP_S["network"]  # tree: 2·log2(4) steps
    assert t == pytest.approx(alpha + 2 * 3 / 4 * S / nic)
    assert latency_s("all_reduce", dp) == pytest.approx(alpha)


def test_hierarchical_all_reduce():
    c = cluster(nodes=2)
    g = group_placement(plan(tp=2, dp=8), "dp", c)
    assert g == Group(8, 4, 2)
    up = 0.80 * 300 * GB
    nic = 25 * GB * cal.LINK_EFFICIENCY["infiniband"]
    intra = 2 * 3 / 4 * S / up  # RS + AG inside the node
    inter = 2 * 1 / 2 * (S / 4) / nic  # AR of the 1/g shard across 2 nodes
    expected = 0.5 * (max(intra, inter) + intra + inter)
    assert collective_time("all_reduce", S, g, c) - latency_s("all_reduce", g) == pytest.approx(expected)
    # Between the optimistic (overlapped) and the pessimistic (serial) bound.
    assert max(intra, inter) < expected < intra + inter


def test_hierarchical_reduce_scatter_and_all_to_all():
    c = cluster(nodes=2)
    g = Group(8, 4, 2)
    up, nic = 0.80 * 300 * GB, 25 * GB * cal.LINK_EFFICIENCY["infiniband"]
    intra, inter = 3 / 4 * S / up, 1 / 2 * (S / 4) / nic
    rs = collective_time("reduce_scatter", S, g, c) - latency_s("reduce_scatter", g)
    assert rs == pytest.approx(0.5 * (max(intra, inter) + intra + inter))
    intra, inter = S * 3 / 8 / up, S * 4 / 8 / nic
    a2a = collective_time("all_to_all", S, g, c) - latency_s("all_to_all", g)
    assert a2a == pytest.approx(0.5 * (max(intra, inter) + intra + inter))


def test_intra_node_is_faster_than_inter_node():
    c = cluster(nodes=2)
    assert collective_time("all_reduce", S, Group(8, 8, 1), c) < collective_time("all_reduce", S, Group(8, 1, 8), c)


def test_mesh_bandwidth_grows_with_peers():
    c = cluster(gpu="mi300x")
    peer = c.per_peer_bandwidth
    for n in (2, 4, 8):
        t = collective_time("all_gather", S, Group(n, n, 1), c) - latency_s("all_gather", Group(n, n, 1))
        assert t == pytest.approx((n - 1) / n * S / (cal.LINK_EFFICIENCY["xgmi"] * min(448 * GB, (n - 1) * peer)))


def test_nvls_all_reduce_on_hopper():
    c = cluster(gpu="h100_sxm_80gb")
    t = collective_time("all_reduce", S, Group(8, 8, 1), c) - latency_s("all_reduce", Group(8, 8, 1))
    assert t == pytest.approx(2 * 7 / 8 * S / (1.07 * 450 * GB))
    t4 = collective_time("all_reduce", S, Group(4, 4, 1), c) - latency_s("all_reduce", Group(4, 4, 1))
    assert t4 == pytest.approx(2 * 3 / 4 * S / (0.80 * 450 * GB))  # ring below NVLS_MIN_GPUS


def test_trivial_groups_cost_nothing():
    c = cluster()
    assert collective_time("all_reduce", S, Group(1, 1, 1), c) == 0
    assert collective_time("all_reduce", 0, Group(8, 8, 1), c) == 0
    assert Traffic("all_reduce", S, Group(1, 1, 1), 4).wire_bytes == 0


def test_group_across_nodes_without_network_fails():
    with pytest.raises(ValueError, match="inter-node"):
        collective_time("all_reduce", S, Group(16, 8, 2), cluster())


def test_tp_bytes_rise_with_tp_within_a_node():
    c, a = cluster(), arch()
    wire = [sum(t.wire_bytes for t in tp_traffic(plan(tp=t), a, 2048, c)) for t in (1, 2, 4, 8)]
    assert wire[0] == 0
    assert wire[1] < wire[2] < wire[3]
    # [MEG21 §3.2]: 8·b·s·h·(t−1)/t elements per layer per micro-batch, 2 bytes each.
    assert wire[3] == pytest.approx(8 * 2048 * 4096 * 7 / 8 * 2)


def test_sequence_parallel_moves_the_same_bytes():
    c, a = cluster(), arch()
    plain = sum(t.wire_bytes for t in tp_traffic(plan(tp=8), a, 2048, c))
    sp = sum(t.wire_bytes for t in tp_traffic(plan(tp=8, sp=True), a, 2048, c))
    assert sp == pytest.approx(plain)


def test_pp_message_is_scattered_over_tp():
    c, a = cluster(nodes=2), arch()
    (t,) = pp_traffic(plan(tp=8, pp=2), a, 2048, c)
    assert t.op == "send_recv" and t.count == 2
    assert t.payload_bytes == pytest.approx(2048 * 4096 * 2 / 8)
    assert t.group == Group(2, 1, 2)


def test_all_gather_across_nodes_is_a_ring():
    # NCCL has no tree for all-gather / reduce-scatter; PAT only with one rank per node.
    g = Group(1536, 8, 192)  # ZeRO-3 over 192 nodes of 8
    intra_steps, inter_steps = 1535 - 191, 191
    expected = cal.ALPHA_BASE_S + intra_steps * cal.ALPHA_STEP_S["scale_up"] + inter_steps * cal.ALPHA_STEP_S["network"]
    for op in ("all_gather", "reduce_scatter"):
        assert latency_s(op, g) == pytest.approx(expected)
    # All-reduce over the same group may use the tree: 2·⌈log2 192⌉ = 16 network steps.
    tree = cal.ALPHA_BASE_S + intra_steps * 2 * cal.ALPHA_STEP_S["scale_up"] + 16 * cal.ALPHA_STEP_S["network"]
    assert latency_s("all_reduce", g) == pytest.approx(tree)
    # One rank per node: PAT, ⌈log2 192⌉ = 8 network steps.
    assert latency_s("all_gather", Group(192, 1, 192)) == pytest.approx(cal.ALPHA_BASE_S + 8 * cal.ALPHA_STEP_S["network"])


def test_link_bytes_split_by_fabric():
    inside = Traffic("all_reduce", S, Group(8, 8, 1), 2)
    assert inside.link_bytes == (pytest.approx(2 * 2 * 7 / 8 * S), 0.0)
    across = Traffic("all_gather", S, Group(16, 1, 16))
    assert across.link_bytes == (0.0, pytest.approx(15 / 16 * S))
    two_level = Traffic("reduce_scatter", S, Group(16, 4, 4))
    up, out = two_level.link_bytes
    assert up == pytest.approx(3 / 4 * S)  # inside the node over 4 GPUs
    assert out == pytest.approx(3 / 4 * S / 4)  # the 1/g shard over 4 nodes
    a2a = Traffic("all_to_all", S, Group(16, 8, 2))
    assert a2a.link_bytes == (pytest.approx(S * 7 / 16), pytest.approx(S * 8 / 16))
    assert Traffic("send_recv", S, Group(2, 1, 2), 3).link_bytes == (0.0, pytest.approx(3 * S))


# ------------------------------------------------------------------- topology kinds (methodology §5.1, §5.2)

def test_nic_kind_sets_the_network_efficiency():
    def dp_all_reduce(kind: str) -> float:
        c = build_cluster(ClusterSpec(gpu="h100_sxm_80gb", gpus_per_node=8, nodes=4,
                                      inter_node={"nic_gbps": 400, "nics_per_node": 8, "kind": kind}))
        g = group_placement(plan(tp=8, dp=4), "dp", c)
        return collective_time("all_reduce", S, g, c) - latency_s("all_reduce", g)

    ib = dp_all_reduce("infiniband")
    assert ib == pytest.approx(2 * 3 / 4 * S / (50 * GB * 0.92))  # NDR ring 46-48 of 50 GB/s
    for kind in ("roce", "efa", "ethernet"):
        assert dp_all_reduce(kind) == pytest.approx(ib * 0.92 / cal.LINK_EFFICIENCY[kind])
        assert dp_all_reduce(kind) > ib


def test_nvl72_keeps_model_parallel_groups_of_up_to_72_on_nvlink():
    c = build_cluster(ClusterSpec(gpu="gb200_nvl72_per_gpu", gpus_per_node=4, nodes=36,
                                  inter_node={"nic_gbps": 400, "nics_per_node": 4}))
    # EP 64 over 16 trays of 4 GPUs: one NVLink domain, no NIC on the path.
    ep = group_placement(plan(ep=64, dp=144), "ep", c)
    assert ep == Group(64, 64, 1)
    a2a = Traffic("all_to_all", S, ep)
    assert a2a.link_bytes == (pytest.approx(63 / 64 * S), 0.0)
    assert collective_time("all_to_all", S, ep, c) == pytest.approx(
        latency_s("all_to_all", ep) + 63 / 64 * S / (0.80 * 900 * GB))
    # The same group on 8-GPU HGX B200 nodes crosses 8 nodes over the NICs.
    hgx = build_cluster(ClusterSpec(gpu="b200_hgx", gpus_per_node=8, nodes=18,
                                    inter_node={"nic_gbps": 400, "nics_per_node": 8}))
    assert group_placement(plan(ep=64, dp=144), "ep", hgx) == Group(64, 8, 8)
    assert collective_time("all_to_all", S, Group(64, 8, 8), hgx) > 3 * collective_time("all_to_all", S, ep, c)
    # Two racks: the data-parallel group of TP-8 ranks holds 9 per rack.
    assert group_placement(plan(tp=8, dp=18), "dp", c) == Group(18, 9, 2)


def test_pcie_box_collectives_run_at_pcie_speed():
    box = build_cluster(ClusterSpec(gpu="l40s_48gb", gpus_per_node=8))
    assert (box.scale_up_kind, box.scale_up_bandwidth) == ("pcie", pytest.approx(31 * GB))
    g = Group(8, 8, 1)
    t = collective_time("all_reduce", S, g, box) - latency_s("all_reduce", g)
    assert t == pytest.approx(2 * 7 / 8 * S / (cal.LINK_EFFICIENCY["pcie"] * 31 * GB))
    # No NVLS on PCIe; and an NVLink node is an order of magnitude faster for the same group.
    nvlink = collective_time("all_reduce", S, g, cluster(gpu="h100_sxm_80gb"))
    assert collective_time("all_reduce", S, g, box) > 10 * nvlink


def test_gaudi_mesh_gives_a_group_of_n_its_n_minus_1_links():
    c = cluster(gpu="gaudi3")
    assert c.scale_up_kind == "roce-mesh" and c.per_peer_bandwidth == pytest.approx(75 * GB)
    for n in (2, 4, 8):
        g = Group(n, n, 1)
        t = collective_time("reduce_scatter", S, g, c) - latency_s("reduce_scatter", g)
        line = min(525 * GB, (n - 1) * 75 * GB)
        assert t == pytest.approx((n - 1) / n * S / (cal.LINK_EFFICIENCY["roce-mesh"] * line))
    # Point-to-point (pipeline) traffic gets one peer link.
    p2p = collective_time("send_recv", S, Group(2, 2, 1), c) - latency_s("send_recv", Group(2, 2, 1))
    assert p2p == pytest.approx(S / (cal.LINK_EFFICIENCY["roce-mesh"] * 75 * GB))


# ----------------------------------------------------------------------------- CP ring and EP all-to-all by hand

def test_context_parallel_ring_sends_by_hand():
    from planner.cost.comm import cp_traffic
    c, a = cluster(), arch(hidden=4096, heads=32, kv_heads=8)  # GQA: 8 KV heads of 128
    (t,) = cp_traffic(plan(tp=2, cp=4), a, 8192, c)
    # 3(c−1) sends per layer per micro-batch of K and V for this TP rank's 4 KV heads, s/c tokens.
    assert (t.op, t.count) == ("send_recv", 9)
    assert t.payload_bytes == pytest.approx(8192 / 4 * (4 * 2 * 128) * 2)
    assert t.group == Group(4, 4, 1)  # stride tp = 2, inside the node
    assert cp_traffic(plan(tp=2), a, 8192, c) == ()


def test_expert_all_to_all_scales_with_top_k():
    import dataclasses

    from planner.cost.comm import ep_traffic
    from planner.model.architecture import MoE
    c = cluster(nodes=2)
    for top_k in (1, 2, 8):
        a = dataclasses.replace(arch(), moe=MoE(num_experts=16, top_k=top_k, expert_ffn=1024))
        (t,) = ep_traffic(plan(dp=16, ep=16), a, 4096, c)
        # Dispatch + combine, forward + backward: 4 all-to-alls of b·s·k·h·q per rank (methodology §5.3).
        assert (t.op, t.count) == ("all_to_all", 4)
        assert t.payload_bytes == pytest.approx(4096 * top_k * 4096 * 2 * cal.MOE_IMBALANCE)
        assert t.group == Group(16, 8, 2)
        assert t.wire_bytes == pytest.approx(4 * 15 / 16 * t.payload_bytes)


def test_one_layers_gather_achieves_less_bandwidth_across_more_ranks():
    # ZeRO-3 gathers one layer at a time: at a fixed layer size the per-rank shard shrinks with the
    # group while the ring's n − 1 latency steps grow, so the achieved bus bandwidth falls.
    layer = 175e9 / 96 * 2  # one GPT-3 layer in bf16
    busbw = []
    for nodes in (8, 64, 192):
        c = cluster(nodes=nodes)
        g = Group(8 * nodes, 8, nodes)
        busbw.append(bus_factor("all_gather", g.size) * layer / collective_time("all_gather", layer, g, c))
    assert busbw[0] > busbw[1] > busbw[2]
    assert busbw[2] < 0.85 * busbw[0]


def test_deepspeed_zero3_fetches_each_large_tensor_and_reduces_every_tensor():
    # A GPT-2 layer (h = 1024): fused qkv 1024x3072, proj 1024x1024, fc1 1024x4096, fc2 4096x1024
    # weights are >= 1e5 elements and gathered one each; their 4 biases (3072, 1024, 4096, 1024)
    # and the 2 LayerNorms' weights and biases (1024 each) stay gathered (DeepSpeed
    # stage3_param_persistence_threshold) but each of the 12 gradients is reduce-scattered.
    from planner.cost.comm import deepspeed_zero3_tensors
    gpt2 = Architecture(name="gpt", family="gpt2", hidden=1024, num_layers=2, vocab=50304, ffn=4096,
                        attention=Attention(16, 16, 64, qkv_bias=True, out_bias=True), gated_mlp=False,
                        mlp_bias=True, norm="layernorm", tied_embeddings=True, position="learned",
                        max_positions=2048)
    assert deepspeed_zero3_tensors(gpt2, 0, 2, cal.DEEPSPEED_ZERO3_PERSISTENCE_THRESHOLD) == (4, 12)
    # Llama-style: separate q, k, v, o and gate, up, down, no biases, 2 RMSNorms: 7 and 9.
    llama = arch(hidden=4096, heads=32, kv_heads=8)
    assert deepspeed_zero3_tensors(llama, 0, 1, cal.DEEPSPEED_ZERO3_PERSISTENCE_THRESHOLD) == (7, 9)


def test_tp8_over_two_trays_rides_nvlink_inside_an_nvl72_domain_and_the_nic_without_it():
    def trays(**kw):
        return build_cluster(ClusterSpec(gpu="gb200_nvl72_per_gpu", gpus_per_node=4, nodes=18,
                                         inter_node={"nic_gbps": 400, "nics_per_node": 4}, **kw))

    tp8 = plan(tp=8, dp=9)
    rack = trays(scale_up_domain=72)
    g = group_placement(tp8, "tp", rack)
    assert g == Group(8, 8, 1)
    assert Traffic("all_reduce", S, g).link_bytes == (pytest.approx(2 * 7 / 8 * S), 0.0)
    # NVLink at 900 GB/s per direction with the Blackwell NVLS efficiency (8 GPUs: full ramp).
    nvlink = collective_time("all_reduce", S, g, rack)
    assert nvlink == pytest.approx(latency_s("all_reduce", g)
                                   + 2 * 7 / 8 * S / (cal.NVLS_ALLREDUCE_EFFICIENCY["gb200"] * 900 * GB))
    # The same trays without the domain: 4 per tray on NVLink, the rest over one 400G NIC per GPU.
    split = trays(scale_up_domain=4)
    h = group_placement(tp8, "tp", split)
    assert h == Group(8, 4, 2)
    assert Traffic("all_reduce", S, h).link_bytes == (pytest.approx(2 * 3 / 4 * S), pytest.approx(S / 4))
    intra = 2 * 3 / 4 * S / (cal.LINK_EFFICIENCY["nvlink"] * 900 * GB)
    inter = (S / 4) / (cal.LINK_EFFICIENCY["infiniband"] * 50 * GB)
    assert collective_time("all_reduce", S, h, split) == pytest.approx(
        latency_s("all_reduce", h) + 0.5 * (max(intra, inter) + intra + inter))
    assert collective_time("all_reduce", S, h, split) > 3 * nvlink


def test_alltoall_dispatcher_sends_every_copy_over_the_network_deepep_once_per_node():
    # EP 32 over 4 nodes, top-8: Megatron-Core's alltoall dispatcher sends each of a token's 8
    # copies to its expert's rank, 24/32 of them off the node; DeepEP / HybridEP send it once to
    # each other node holding any of its experts, 3 · (1 − (3/4)^8) = 2.70 copies on average.
    import dataclasses

    from planner.cost.comm import ep_traffic, remote_domain_share
    from planner.cost.topology import latency_s, network_bandwidth, scale_up_bandwidth
    from planner.model.architecture import MoE
    c = cluster(gpu="h100_sxm_80gb", nodes=4, nic_gbps=400)
    a = dataclasses.replace(arch(), moe=MoE(num_experts=128, top_k=8, expert_ffn=1024))
    p = plan(dp=32, ep=32)
    (plain,) = ep_traffic(p, a, 4096, c, "alltoall")
    (dedup,) = ep_traffic(p, a, 4096, c, "deduplicated")
    assert plain.remote_share is None and dedup.remote_share == pytest.approx(3 * (1 - 0.75**8) / 8)
    s = plain.payload_bytes
    assert plain.link_bytes[1] == pytest.approx(4 * s * 24 / 32)
    assert dedup.link_bytes[1] == pytest.approx(4 * s * remote_domain_share(8, 4))
    # The deduplicating dispatchers forward over NVLink while the network is busy (DeepSeek-V3
    # §3.2.2): the longer of the two levels; the plain all-to-all is half serial.
    g = dedup.group
    intra = s * 31 / 32 / scale_up_bandwidth("all_to_all", 8, c)
    inter = s * remote_domain_share(8, 4) / network_bandwidth(c)
    assert dedup.seconds(c) == pytest.approx(4 * (latency_s("all_to_all", g) + max(intra, inter)))
    assert plain.seconds(c) > 2 * dedup.seconds(c)


def test_group_limited_routing_reaches_fewer_domains():
    # DeepSeek-V3 (arXiv 2412.19437 §2.1.2): 8 experts from 4 of 8 groups. EP 64 over 8 nodes
    # holds one group per node: a token reaches 4 nodes, its own among them half the time, so
    # 3.5 other nodes on average, against 7 · (1 − (7/8)^8) = 4.59 with unrestricted routing.
    from planner.cost.comm import remote_domain_share

    assert remote_domain_share(8, 8, 8, 4) == pytest.approx(3.5 / 8)
    assert remote_domain_share(8, 8) == pytest.approx(7 * (1 - (7 / 8) ** 8) / 8)
    # Two groups per node (EP 32 over 4 nodes): another node is missed when neither of its
    # groups is chosen, C(6, 4) / C(8, 4) = 15/70.
    assert remote_domain_share(8, 4, 8, 4) == pytest.approx(3 * (1 - 15 / 70) / 8)
    # Groups spanning two nodes each (16 nodes): experts spread over the 8 nodes of the 4 groups.
    assert remote_domain_share(8, 16, 8, 4) == pytest.approx(8 * (1 - (7 / 8) ** 8) * 15 / 16 / 8)
    # No limit (all groups usable), one domain, or groups that fit no domain layout: unrestricted.
    assert remote_domain_share(8, 8, 8, 8) == remote_domain_share(8, 8)
    assert remote_domain_share(8, 1, 8, 4) == 0.0
    assert remote_domain_share(8, 3, 8, 4) == remote_domain_share(8, 3)


@given(k=st.integers(1, 16), d=st.integers(1, 64), g_exp=st.integers(0, 6), g_top=st.integers(1, 64))
@settings(max_examples=200, deadline=None)
def test_group_limit_never_sends_more_than_unrestricted_routing(k, d, g_exp, g_top):
    from planner.cost.comm import remote_domain_share

    groups = 2**g_exp
    limited = remote_domain_share(k, d, groups, min(g_top, groups))
    assert 0.0 <= limited <= remote_domain_share(k, d) + 1e-12
    assert limited * k <= d - 1 + 1e-9


def test_expert_tensor_parallelism_gathers_the_delivered_tokens():
    # Megatron-Core's alltoall dispatcher all-gathers what the all-to-all delivered over the
    # expert-TP group and reduce-scatters the experts' output (token_dispatcher.py): etp > 1
    # adds that traffic on the innermost ranks, etp = 1 has none, and the all-to-all is the same.
    import dataclasses

    from planner.cost.comm import ep_traffic
    from planner.model.architecture import MoE
    c = cluster(gpu="h100_sxm_80gb", nodes=2, nic_gbps=400)
    a = dataclasses.replace(arch(), moe=MoE(num_experts=64, top_k=4, expert_ffn=1024))
    sp = dict(tp=2, dp=8, ep=8, sp=True)
    (alone,) = ep_traffic(Plan(parallel=ParallelDims(**sp), etp=1), a, 4096, c)
    a2a, gather, scatter = ep_traffic(Plan(parallel=ParallelDims(**sp), etp=2), a, 4096, c)
    assert a2a.payload_bytes == alone.payload_bytes  # each TP rank routes its 1/tp of the tokens
    assert (gather.op, scatter.op, gather.count + scatter.count) == ("all_gather", "reduce_scatter", 4)
    assert gather.group == Group(2, 2, 1) and gather.payload_bytes == 2 * alone.payload_bytes
    # The expert-EP group sits etp apart: etp = 2 spreads the 8 ranks over both nodes.
    assert (alone.group.domains, a2a.group.domains) == (1, 2)


def test_fsdp_under_a_pipeline_schedule_syncs_once_per_run():
    """torch.distributed.pipelining keeps gradient sync and resharding off through a run's
    backwards and reduces once at its end (EngineTraits.pipeline_deferred_sync): ZeRO-2 and 3
    reduce-scatter per run, not per micro-batch; ZeRO-3 still re-gathers in each backward where
    forward resharded."""
    from planner.cost.comm import dp_traffic

    cluster = build_cluster(ClusterSpec(gpu="h100_sxm_80gb", gpus_per_node=8, nodes=2,
                                        inter_node={"nic_gbps": 400, "nics_per_node": 8}))
    sizes = dict(dense_grads=1e9, expert_grads=0.0, dense_gather=2e9, expert_gather=0.0, grad_bytes=4, layers=8)
    for zero in (2, 3):
        plan = Plan(parallel=ParallelDims(pp=4, dp=4), zero=zero, gas=8, framework="torchtitan")
        per_microbatch = dp_traffic(plan, cluster, **sizes)
        deferred = dp_traffic(plan, cluster, **sizes, deferred=True)
        assert [t.op for t in per_microbatch.microbatch_backward][-1] == "reduce_scatter"
        assert [t.op for t in deferred.step_backward] == ["reduce_scatter"]
        assert [t.op for t in deferred.step_forward] == ["all_gather"] and deferred.microbatch_forward == ()
        assert [t.op for t in deferred.microbatch_backward] == (["all_gather"] if zero == 3 else [])
        assert dp_traffic(plan, cluster, **sizes, deferred=True, regather=False).microbatch_backward == ()
