"""Step-time model: properties, and published Megatron runs (data/runs.yaml, [SEL22] Table 5)."""
from __future__ import annotations

import dataclasses

import pytest

from planner.cluster import build_cluster
from planner.model.architecture import Architecture, Attention, MoE
from planner.plan import ParallelDims, Plan, PlanError
from planner.spec.cluster import ClusterSpec
from planner.timing import estimate_time, layer_efficiency
from planner.workload import Workload

SEQ = 2048


def gpt(hidden: int, heads: int, layers: int) -> Architecture:
    """A Megatron GPT (GPT-2 family): LayerNorm, learned positions, biases, 4h MLP, tied output."""
    return Architecture(
        name=f"gpt-{hidden}x{layers}", family="gpt2", hidden=hidden, num_layers=layers,
        vocab=51200, ffn=4 * hidden,
        attention=Attention(heads, heads, hidden // heads, qkv_bias=True, out_bias=True),
        gated_mlp=False, mlp_bias=True, norm="layernorm", tied_embeddings=True,
        position="learned", max_positions=SEQ,
    )


def selene(nodes: int):
    """DGX A100 80GB nodes with 8x 200 Gb/s HDR InfiniBand (Selene)."""
    return build_cluster(ClusterSpec(gpu="a100_sxm_80gb", gpus_per_node=8, nodes=nodes,
                                     inter_node={"nic_gbps": 200, "nics_per_node": 8}))


def h100(nodes: int = 1):
    inter = {"nic_gbps": 400, "nics_per_node": 8} if nodes > 1 else None
    return build_cluster(ClusterSpec(gpu="h100_sxm_80gb", gpus_per_node=8, nodes=nodes, inter_node=inter))


def run(arch, cluster, global_batch, seq=SEQ, **plan):
    par = {k: plan.pop(k) for k in list(plan) if k in ("tp", "pp", "dp", "cp", "ep", "vpp", "sp")}
    dims = ParallelDims(**par)
    mbs = plan.pop("mbs", 1)
    p = Plan(parallel=dims, mbs=mbs, gas=global_batch // (mbs * dims.dp), **plan)
    return estimate_time(p, Workload(arch=arch, training="pretrain", seq_len=seq, global_batch=global_batch), cluster)


SMALL = gpt(2048, 16, 8)


# ----------------------------------------------------------------------------- properties

def test_step_positive_and_tokens_per_s():
    t, _ = run(SMALL, selene(1), 64, tp=2, dp=4, mbs=2)
    assert t.step > 0
    assert t.tokens_per_s == pytest.approx(64 * SEQ / t.step)
    assert 0 < t.mfu <= t.hfu < 1


def test_breakdown_adds_up_to_step():
    for plan in (dict(tp=8, pp=4, vpp=2, dp=2, sp=True, recompute="selective"),
                 dict(tp=2, dp=32, zero=3, recompute="full"),
                 dict(tp=4, cp=2, dp=8, zero=1)):
        t, _ = run(gpt(4096, 32, 16), selene(8), 256, **plan)
        parts = (t.compute + t.recompute + t.bubble + t.tp + t.cp + t.ep + t.pp + t.dp
                 + t.optimizer + t.offload)
        assert parts == pytest.approx(t.step)
        assert t.comm_exposed == pytest.approx(t.tp + t.cp + t.ep + t.pp + t.dp)


def test_bubble_falls_as_gas_rises():
    cl = selene(4)
    # Fixed micro-batch: the bubble's share of the step falls as (p−1)/m.
    shares = [(t.bubble / t.step) for t, _ in (run(SMALL, cl, gb, tp=8, pp=4, mbs=1) for gb in (4, 8, 32))]
    assert shares[0] > shares[1] > shares[2]
    # Fixed global batch: smaller micro-batches, more of them, a shorter bubble.
    bubbles = [run(SMALL, cl, 32, tp=8, pp=4, mbs=mbs)[0].bubble for mbs in (8, 4, 1)]
    assert bubbles[0] > bubbles[1] > bubbles[2]
    # Interleaving divides it by v.
    plain = run(SMALL, cl, 32, tp=8, pp=4)[0]
    inter = run(SMALL, cl, 32, tp=8, pp=4, vpp=2)[0]
    assert inter.bubble == pytest.approx(plain.bubble / 2, rel=0.05)


def test_recompute_costs_time():
    cl = selene(1)
    deep = gpt(2048, 16, 48)  # the output layer (not recomputed) stays a few % of the compute
    steps = [run(deep, cl, 16, tp=8, recompute=r)[0] for r in ("none", "selective", "full")]
    assert steps[0].recompute == 0
    assert steps[0].step < steps[1].step < steps[2].step
    # Full recompute adds one forward: a third of the GEMMs, a half of the element-wise
    # kernels (their backward costs about one forward).
    assert steps[2].compute / 3 < steps[2].recompute < 0.4 * steps[2].compute
    assert steps[2].hfu > steps[2].mfu


def test_more_tp_within_node_raises_tp_bytes():
    cl = selene(1)
    tp_bytes = [run(SMALL, cl, 8 // t, tp=t, dp=8 // t)[1].tp for t in (1, 2, 4, 8)]  # gas = 1
    assert tp_bytes[0] == 0
    assert tp_bytes[1] < tp_bytes[2] < tp_bytes[3]


def test_zero3_moves_one_and_a_half_times_ddp():
    cl = selene(2)
    ddp = run(SMALL, cl, 16, dp=16)[1].dp
    z1 = run(SMALL, cl, 16, dp=16, zero=1)[1].dp
    z3 = run(SMALL, cl, 16, dp=16, zero=3)[1].dp
    assert z1 == pytest.approx(ddp)
    assert z3 == pytest.approx(1.5 * ddp)
    # ZeRO-3 gathers again every micro-batch.
    z3_acc = run(SMALL, cl, 64, dp=16, zero=3)[1].dp
    assert z3_acc == pytest.approx(4 * z3)


def test_fp8_is_faster_on_hopper():
    bf16 = run(gpt(8192, 64, 8), h100(), 8, tp=8, precision="bf16")[0]
    fp8 = run(gpt(8192, 64, 8), h100(), 8, tp=8, precision="fp8")[0]
    assert fp8.compute < 0.8 * bf16.compute
    assert fp8.mfu > bf16.mfu  # both against the bf16 peak


def test_size_factor_penalizes_small_gemms():
    gpu = selene(1).gpu
    big, small = layer_efficiency(gpu, "bf16", 1e12), layer_efficiency(gpu, "bf16", 1e8)
    assert big == pytest.approx(0.84 * 0.869, rel=0.01)
    assert small < 0.3 * big


def test_offload_adds_host_transfers():
    on_gpu = run(SMALL, selene(1), 8, dp=8, zero=2)[0]
    off = run(SMALL, selene(1), 8, dp=8, zero=2, offload="optimizer")[0]
    assert on_gpu.offload == 0 and off.optimizer == 0
    assert off.step > on_gpu.step


def test_moe_all_to_all_is_exposed():
    moe = dataclasses.replace(gpt(2048, 16, 4), moe=MoE(num_experts=8, top_k=2, expert_ffn=4096))
    t, b = run(moe, h100(2), 32, dp=16, ep=8)
    assert t.ep > 0 and b.ep > 0
    dense, _ = run(moe, h100(2), 32, dp=16, ep=1)
    assert dense.ep == 0


def test_context_parallel_bytes():
    t, b = run(gpt(4096, 32, 8), h100(2), 8, seq=16384, tp=8, cp=2)
    assert b.cp > 0 and t.cp >= 0


def test_global_batch_must_match():
    p = Plan(parallel=ParallelDims(dp=8), gas=2)
    with pytest.raises(PlanError, match="global batch"):
        estimate_time(p, Workload(arch=SMALL, training="pretrain", seq_len=SEQ, global_batch=8), selene(1))


# ----------------------------------------------------------------------------- kernels and properties
# Published runs ([SEL22], [MEG21]) are predicted in tests/test_validation_runs.py.

def test_unfused_attention_costs_hbm_time():
    cl, arch = selene(1), gpt(2304, 24, 4)
    flash = run(arch, cl, 8, dp=8)[0]
    unfused_wl = Workload(arch=arch, training="pretrain", seq_len=SEQ, global_batch=8, attention_kernel="unfused")
    unfused = estimate_time(Plan(parallel=ParallelDims(dp=8)), unfused_wl, cl)[0]
    # Small hidden size, long sequence: the s×s traffic is a large share of the layer.
    assert unfused.compute > 1.3 * flash.compute
    assert unfused.mfu < flash.mfu  # model FLOPs are the same (causal); the time is not


def test_sequence_parallel_splits_norms_and_residuals():
    arch = gpt(6144, 64, 4)
    plain = run(arch, selene(1), 4, tp=8, mbs=4)[0]
    sp = run(arch, selene(1), 4, tp=8, mbs=4, sp=True)[0]
    assert sp.compute < plain.compute
    assert sp.tp == pytest.approx(plain.tp, rel=0.05)  # same bytes on the wire


PLANS_FOR_PROPERTIES = (
    dict(tp=8, pp=4, vpp=2, dp=2, sp=True, recompute="selective"),
    dict(tp=2, dp=32, zero=3, recompute="full"),
    dict(tp=4, cp=2, dp=8, zero=1),
    dict(tp=8, pp=2, dp=4, zero=1, recompute="full"),
    dict(dp=64, zero=2, mbs=2),
)


@pytest.mark.parametrize("plan", PLANS_FOR_PROPERTIES)
def test_more_bandwidth_never_slows_a_plan(plan):
    arch = gpt(4096, 32, 16)

    def step(nic_gbps: float, nvlink_scale: float) -> float:
        spec = ClusterSpec(gpu="a100_sxm_80gb", gpus_per_node=8, nodes=8,
                           inter_node={"nic_gbps": nic_gbps, "nics_per_node": 8},
                           intra_node={"bandwidth": 300e9 * nvlink_scale})
        return run(arch, build_cluster(spec), 256, **dict(plan))[0].step

    steps_nic = [step(g, 1.0) for g in (25, 100, 200, 400, 800)]
    assert all(a >= b for a, b in zip(steps_nic, steps_nic[1:]))
    steps_nvl = [step(200, f) for f in (0.25, 0.5, 1.0, 2.0)]
    assert all(a >= b for a, b in zip(steps_nvl, steps_nvl[1:]))


@pytest.mark.parametrize("plan", [dict(tp=8, pp=4), dict(tp=8, pp=4, vpp=2), dict(tp=4, pp=8, sp=True, recompute="selective")])
def test_more_microbatches_never_raise_the_bubble_fraction(plan):
    cl = selene(4)
    fractions = [(t.bubble / t.step) for t, _ in (run(SMALL, cl, 8 * m, mbs=1, **plan) for m in (1, 2, 3, 4, 8, 16, 32))]
    assert all(a >= b for a, b in zip(fractions, fractions[1:]))


def test_comm_bytes_by_link_class():
    cl = selene(2)
    _, inside = run(SMALL, cl, 16, tp=8, dp=2)
    # TP inside the node rides NVLink only; the dp=2 gradient all-reduce crosses the NICs.
    assert inside.scale_up == pytest.approx(inside.tp)
    assert inside.scale_out == pytest.approx(inside.dp)
    _, spread = run(SMALL, cl, 16, tp=2, dp=8)
    # dp=8 of stride 2: 4 members per node, 2 nodes: a two-level all-reduce on both fabrics.
    assert spread.scale_up > spread.tp and spread.scale_out > 0
    _, single = run(SMALL, selene(1), 8, dp=8)
    assert single.scale_out == 0 and single.scale_up == pytest.approx(single.dp)
