"""Step-time model: properties, and published Megatron runs (validation/data/runs.yaml, [SEL22] Table 5)."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.cost.cluster import build_cluster
from planner.cost.plan import ParallelDims, Plan, PlanError
from planner.cost.timing import SCHEDULES, estimate_time, layer_efficiency
from planner.cost.workload import Workload
from planner.engines.profiles import engine_traits
from planner.model.architecture import Architecture, Attention, MoE
from planner.spec.cluster import ClusterSpec

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


def run(arch, cluster, global_batch, seq=SEQ, schedule=None, **plan):
    par = {k: plan.pop(k) for k in list(plan) if k in ("tp", "pp", "dp", "cp", "ep", "vpp", "sp")}
    dims = ParallelDims(**par)
    mbs = plan.pop("mbs", 1)
    p = Plan(parallel=dims, mbs=mbs, gas=global_batch // (mbs * dims.dp), **plan)
    wl = Workload(arch=arch, training="pretrain", seq_len=seq, global_batch=global_batch)
    return estimate_time(p, wl, cluster, schedule=schedule)


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


@pytest.mark.parametrize("engine", ["megatron", "torchtitan"])
@pytest.mark.parametrize("vpp", [1, 2])
def test_each_pipeline_run_fills_and_drains_the_pipeline(engine, vpp):
    """torch.distributed.pipelining runs the schedule once per local batch (torchtitan's gradient
    accumulation under PP): r runs of m/r micro-batches idle r times as long as one run of all m
    [MEG21 eq. 1 per run] and send the fill's activations r times; torchtitan also syncs the
    data-parallel side after each run (stage.py `last_backward`), where Megatron-Core's traits do
    it once per step. The micro-batches' own work is the same."""
    traits = engine_traits(engine)
    wl = Workload(arch=SMALL, training="pretrain", seq_len=SEQ, global_batch=64, engine=traits)
    # ZeRO-2 under PP (torchtitan's FSDP without resharding): a gather of the weights per sync.
    base = Plan(parallel=ParallelDims(tp=2, pp=4, dp=4, vpp=vpp, sp=True), zero=2, mbs=1, gas=16, framework=engine)
    (one, _), (four, _) = (estimate_time(base.with_(pipeline_runs=r), wl, h100(2)) for r in (1, 4))
    assert four.bubble == pytest.approx(4 * one.bubble) and four.bubble > 0
    assert four.pp == pytest.approx(4 * one.pp) and four.pp > 0
    assert (four.compute, four.tp, four.optimizer) == (one.compute, one.tp, one.optimizer)
    if traits.step_collectives_per_run:
        assert four.dp > one.dp
    else:
        assert four.dp == one.dp
    assert four.step - one.step == pytest.approx((four.bubble - one.bubble) + (four.pp - one.pp)
                                                 + (four.dp - one.dp))


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
    # [ZERO]: DDP 2Ψ, ZeRO-1 RS + AG 2Ψ, ZeRO-3 2 AG + RS 3Ψ, with 16-bit weights and gradients.
    cl = selene(2)
    ddp = run(SMALL, cl, 16, dp=16, precision="fp16")[1].dp
    z1 = run(SMALL, cl, 16, dp=16, zero=1, precision="fp16")[1].dp
    z3 = run(SMALL, cl, 16, dp=16, zero=3, precision="fp16")[1].dp
    assert z1 == pytest.approx(ddp)
    assert z3 == pytest.approx(1.5 * ddp)
    # ZeRO-3 gathers again every micro-batch.
    z3_acc = run(SMALL, cl, 64, dp=16, zero=3, precision="fp16")[1].dp
    assert z3_acc == pytest.approx(4 * z3)


def test_gradients_cross_the_wire_in_the_frameworks_reduce_dtype():
    # Megatron-LM all-reduces bf16 models' gradients in fp32 (arguments.py: "accumulate and
    # all-reduce gradients in fp32 for bfloat16 data type"); DeepSpeed reduces the 16-bit ones.
    cl = selene(2)
    fp16 = run(SMALL, cl, 16, dp=16, precision="fp16")[1].dp
    assert run(SMALL, cl, 16, dp=16, precision="bf16")[1].dp == pytest.approx(2 * fp16)
    # Distributed optimizer: fp32 reduce-scatter + bf16 all-gather = 3/4 of the fp32 all-reduce.
    assert run(SMALL, cl, 16, dp=16, zero=1, precision="bf16")[1].dp == pytest.approx(1.5 * fp16)
    deepspeed = Workload(arch=SMALL, training="pretrain", seq_len=SEQ, global_batch=16,
                         engine=engine_traits("deepspeed"))
    _, b = estimate_time(Plan(parallel=ParallelDims(dp=16)), deepspeed, cl)
    assert b.dp == pytest.approx(fp16)


def test_fp8_is_faster_on_hopper():
    bf16 = run(gpt(8192, 64, 8), h100(), 8, tp=8, precision="bf16")[0]
    fp8 = run(gpt(8192, 64, 8), h100(), 8, tp=8, precision="fp8")[0]
    assert fp8.compute < 0.8 * bf16.compute
    assert fp8.tokens_per_s > bf16.tokens_per_s
    # MFU against the peak each FLOP runs at: fp8's linear layers are measured against the fp8 units.
    assert fp8.mfu < bf16.mfu <= 1


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


def _step_on_links(arch, plan, nic_gbps: float, nvlink_scale: float) -> float:
    """Step seconds on 8 nodes of 8 A100 with the given NIC rate and NVLink scaled from 300 GB/s."""
    spec = ClusterSpec(gpu="a100_sxm_80gb", gpus_per_node=8, nodes=8,
                       inter_node={"nic_gbps": nic_gbps, "nics_per_node": 8},
                       intra_node={"bandwidth": 300e9 * nvlink_scale})
    return run(arch, build_cluster(spec), 256, **dict(plan))[0].step


@pytest.mark.parametrize("plan", PLANS_FOR_PROPERTIES)
def test_more_bandwidth_never_slows_a_plan(plan):
    arch = gpt(4096, 32, 16)

    def step(nic_gbps: float, nvlink_scale: float) -> float:
        return _step_on_links(arch, plan, nic_gbps, nvlink_scale)

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


# ----------------------------------------------------------------------------- pipeline schedules

def test_bubble_fractions_by_hand():
    from planner.cost.timing import bubble_fraction
    assert bubble_fraction("1f1b", 4, 8) == pytest.approx(3 / 8)  # [MEG21] eq. 1
    assert bubble_fraction("interleaved", 4, 8, v=2) == pytest.approx(3 / 16)
    # ZB-H1 at T_F = T_B = T_W: (p−1)(F + B − 2W) = a third of 1F1B's (p−1)(F + B) ([ZB] §3).
    assert bubble_fraction("zb-h1", 4, 8, w_share=1 / 3) == pytest.approx(3 / 8 / 3)
    assert bubble_fraction("zb-h1", 4, 8, w_share=0.0) == pytest.approx(3 / 8)  # no W pass: 1F1B
    # DualPipe: (p/2 − 1)(F&B + B − 3W) = 3·(1 + 2/3 − 1) in thirds of a micro-batch, p = 8.
    assert bubble_fraction("dualpipe", 8, 16, w_share=1 / 3) == pytest.approx(3 * (2 / 3) / 16)
    assert bubble_fraction("1f1b", 1, 8) == 0.0


@settings(max_examples=200, deadline=None)
@given(schedule=st.sampled_from(SCHEDULES), p=st.sampled_from([2, 4, 6, 8, 16, 32]),
       v=st.integers(1, 4), w=st.floats(0, 0.5), m=st.integers(1, 256), more=st.integers(1, 256))
def test_more_microbatches_never_raise_the_bubble_fraction_of_any_schedule(schedule, p, v, w, m, more):
    from planner.cost.timing import bubble_fraction
    v = v if schedule == "interleaved" else 1
    assert bubble_fraction(schedule, p, m + more, v, w) <= bubble_fraction(schedule, p, m, v, w)


def test_zero_bubble_and_dualpipe_shorten_the_bubble():
    # GEMM-bound layers (h = 8192 over TP 8): W is close to a third of a micro-batch's work.
    cl = selene(4)
    plans = {s: run(gpt(8192, 64, 8), cl, 32, tp=8, pp=4, schedule=s)[0] for s in ("1f1b", "zb-h1", "dualpipe")}
    assert plans["zb-h1"].bubble < 0.6 * plans["1f1b"].bubble
    assert plans["dualpipe"].bubble < plans["1f1b"].bubble
    assert plans["zb-h1"].compute == pytest.approx(plans["1f1b"].compute)  # same work, less idle
    assert plans["zb-h1"].step < plans["1f1b"].step


def test_zero_bubble_gains_nothing_without_weight_gradients():
    # LoRA: the frozen base weights have no W pass to fill the bubble with.
    wl = Workload(arch=SMALL, training="lora", seq_len=SEQ, global_batch=32, lora_targets=("q_proj", "v_proj"))
    p = Plan(parallel=ParallelDims(tp=8, pp=4), gas=32, lora_rank=8)
    one, _ = estimate_time(p, wl, selene(4), schedule="1f1b")
    zb, _ = estimate_time(p, wl, selene(4), schedule="zb-h1")
    assert zb.bubble == pytest.approx(one.bubble)


def test_dualpipe_hides_the_expert_all_to_all():
    moe = dataclasses.replace(gpt(2048, 16, 8), moe=MoE(num_experts=8, top_k=2, expert_ffn=4096))
    one, _ = run(moe, h100(4), 64, pp=2, dp=16, ep=8, schedule="1f1b")
    dual, b = run(moe, h100(4), 64, pp=2, dp=16, ep=8, schedule="dualpipe")
    assert one.ep > 0 and dual.ep < one.ep
    assert (one.schedule, dual.schedule) == ("1f1b", "dualpipe")
    assert run(moe, h100(4), 64, pp=2, vpp=2, dp=16, ep=8)[0].schedule == "interleaved"  # the default
    assert b.ep > 0  # the bytes still move


@pytest.mark.parametrize("plan, message", [
    (dict(tp=8, pp=4, vpp=2, schedule="zb-h1"), "interleaved"),
    (dict(tp=8, pp=3, dp=1, schedule="dualpipe"), "even"),
    (dict(tp=8, pp=4, schedule="gpipe"), "unknown pipeline schedule"),
])
def test_schedules_the_plan_cannot_run(plan, message):
    with pytest.raises(PlanError, match=message):
        run(gpt(2048, 16, 12), selene(4), 32, **plan)


# ----------------------------------------------------------------------------- properties (hypothesis)

@settings(max_examples=60, deadline=None)
@given(plan=st.sampled_from(PLANS_FOR_PROPERTIES), nic=st.sampled_from([12.5, 25, 50, 100, 200, 400, 800]),
       faster_nic=st.floats(1.0, 8.0), nvlink=st.floats(0.1, 4.0), faster_nvlink=st.floats(1.0, 4.0))
def test_more_bandwidth_never_slows_a_plan_hypothesis(plan, nic, faster_nic, nvlink, faster_nvlink):
    arch = gpt(4096, 32, 16)

    def step(nic_gbps: float, nvlink_scale: float) -> float:
        return _step_on_links(arch, plan, nic_gbps, nvlink_scale)

    base = step(nic, nvlink)
    assert step(nic * faster_nic, nvlink) <= base * (1 + 1e-12)
    assert step(nic, nvlink * faster_nvlink) <= base * (1 + 1e-12)


@settings(max_examples=60, deadline=None)
@given(plan=st.sampled_from([dict(tp=8, pp=4), dict(tp=8, pp=4, vpp=2), dict(tp=4, pp=8, sp=True),
                             dict(tp=8, pp=4, schedule="zb-h1"), dict(tp=8, pp=4, schedule="dualpipe"),
                             dict(tp=2, pp=4, dp=4, zero=1, recompute="full")]),
       m=st.integers(1, 32), more=st.integers(1, 32))
def test_more_microbatches_never_raise_the_step_bubble_fraction_hypothesis(plan, m, more):
    cl = selene(4)
    dp = plan.get("dp", 1)

    def fraction(gas: int) -> float:
        t, _ = run(SMALL, cl, gas * dp, mbs=1, **dict(plan))
        return t.bubble / t.step

    assert fraction(m + more) <= fraction(m) + 1e-12


# ----------------------------------------------------------------------------- ZeRO-3 mechanisms

def _zero3(nodes: int, mbs: int = 1, gas: int = 1, nic_gbps: float = 200):
    """A 16-layer 6.4B GPT, ZeRO-3 over every GPU, full recompute."""
    spec = ClusterSpec(gpu="a100_sxm_80gb", gpus_per_node=8, nodes=nodes,
                       inter_node={"nic_gbps": nic_gbps, "nics_per_node": 8})
    cl = build_cluster(spec)
    dp = 8 * nodes
    return run(gpt(8192, 64, 8), cl, mbs * gas * dp, mbs=mbs, dp=dp, zero=3, recompute="full")


def test_zero3_gathers_are_latency_bound_at_large_dp():
    # Same work per GPU, more ranks: each layer's all-gather and reduce-scatter is a ring of n − 1
    # steps across the nodes, so the exposed data-parallel time grows with the group.
    exposed = [_zero3(nodes, mbs=1)[0].dp for nodes in (2, 16, 128)]
    assert exposed[0] < exposed[1] < exposed[2]


def test_zero3_first_gather_is_exposed_however_long_the_layers_compute():
    # Huge micro-batches hide every gather behind the previous layer's compute but the first of
    # each micro-batch's forward (and the last reduce-scatter of its backward).
    t, _ = _zero3(4, mbs=16)
    assert t.dp > 0
    t2, _ = _zero3(4, mbs=16, gas=2)
    assert t2.dp == pytest.approx(2 * t.dp, rel=1e-6)  # re-gathered every micro-batch


def test_zero3_exposure_falls_with_bandwidth_and_compute():
    slow = _zero3(16, mbs=1, nic_gbps=25)[0]
    fast = _zero3(16, mbs=1, nic_gbps=400)[0]
    assert slow.dp > 3 * fast.dp
    assert _zero3(16, mbs=4)[0].dp / 4 < _zero3(16, mbs=1)[0].dp  # more compute per gather


def test_offload_moves_gradients_and_weights_over_pcie_by_hand():
    from planner.cost import calibration as cal
    from planner.model import count_params
    cl = selene(1)
    t, _ = run(SMALL, cl, 8, dp=8, zero=2, offload="optimizer", precision="fp16")
    updated = count_params(SMALL).total / 8  # ZeRO-Offload: each GPU steps its 1/dp partition on the CPU
    host = cl.gpu.host_link_bandwidth * cal.HOST_LINK_EFFICIENCY  # PCIe Gen4 x16, 0.88 achieved
    expected = (updated * (2 + 2) / host  # fp16 gradients down, fp16 weights up
                + updated * cal.OPTIMIZER_BYTES_PER_PARAM["adamw"] / cal.HOST_MEMORY_BANDWIDTH_PER_GPU)
    assert t.offload == pytest.approx(expected, rel=1e-6)
    # Offloaded parameters (ZeRO-Infinity) also come up for every micro-batch's forward and backward.
    params, _ = run(SMALL, cl, 16, dp=8, zero=3, offload="optimizer+params", precision="fp16")
    opt_only, _ = run(SMALL, cl, 16, dp=8, zero=3, offload="optimizer", precision="fp16")
    assert params.offload - opt_only.offload == pytest.approx(2 * 2 * count_params(SMALL).total * 2 / 8 / host,
                                                              rel=1e-6)


def test_deepspeed_zero3_collectives_are_per_tensor_exposed_and_pay_n_host_ops():
    """Hand-computed DeepSpeed ZeRO-3 step on one 8-GPU A100 node (calibration.DEEPSPEED_ZERO3).

    GPT h = 1024, 2 layers, fp16, full recompute, b = 1, gas = 2 on 8 GPUs: per micro-batch
    2 × 4 weight gathers (forward, backward) + 12 gradient reduce-scatters per layer = 40
    collectives, each inside NVLink: α = 25 µs + 7 × 3.4 µs = 48.8 µs, plus 8 list-API host
    operations of 16.6 µs = 132.8 µs; bytes (7/8)·S at 0.8 × 300 GB/s for the 2Ψ + 2Ψ of the
    two gathers and the 2Ψ of the fp16 reduce-scatter. All of it exposed (no overlap)."""
    from planner.cost import calibration as cal
    from planner.model.params import count_params

    arch = dataclasses.replace(gpt(1024, 16, 2), vocab=50304)
    node = build_cluster(ClusterSpec(gpu="a100_sxm_80gb", gpus_per_node=8, nodes=1))
    plan = Plan(parallel=ParallelDims(dp=8), zero=3, recompute="full", mbs=1, gas=2, precision="fp16")
    wl = Workload(arch=arch, training="pretrain", seq_len=SEQ, global_batch=16,
                  engine=dataclasses.replace(engine_traits("deepspeed"), release="0.3"))
    t, _ = estimate_time(plan, wl, node)
    psi = count_params(arch).total
    per_collective = 25e-6 + 7 * 3.4e-6 + 8 * 16.6e-6
    bytes_s = (7 / 8) * (2 * psi + 2 * psi + 2 * psi) / (0.8 * 300e9)
    assert cal.HOST_OP_S == pytest.approx(16.6e-6)
    assert t.dp == pytest.approx(2 * (40 * per_collective + bytes_s), rel=1e-9)
    # Same plan as FSDP2: one flat gather per layer, overlapped with compute: far less exposed.
    t_hf, _ = estimate_time(plan, dataclasses.replace(wl, engine=engine_traits("fsdp2")), node)
    assert t_hf.dp < 0.5 * t.dp
    # Current DeepSpeed (no past release): the same per-tensor collectives, prefetched behind
    # the layers' compute and without per-rank host copies: between FSDP and DeepSpeed 0.3.
    t_now, _ = estimate_time(plan, dataclasses.replace(wl, engine=engine_traits("deepspeed")), node)
    assert t_hf.dp <= t_now.dp < 0.5 * t.dp


def test_flash_attention_runs_at_its_measured_rate_on_hopper(monkeypatch):
    # FlashAttention-3 on H100 (calibration.FLASH_ATTENTION_FRACTION): forward 640 and backward
    # 500 TFLOP/s of 989 at 16K tokens, below the GEMM rate; FlashAttention-2 on A100 forward at
    # its reported 73 %, backward below it; parts without a sweep keep the GEMM rate.
    from planner.cost import calibration as cal

    assert cal.flash_attention_fraction("h100_sxm_80gb") == (0.647, 0.505)
    forward, backward = cal.flash_attention_fraction("a100_sxm_80gb")
    assert forward == 0.73 and 0.5 <= backward < forward  # inside FA2's 50-73 %
    assert cal.flash_attention_fraction("mi300x") is None
    wl = Workload(arch=gpt(4096, 32, 4), training="pretrain", seq_len=32768, global_batch=8)
    plan = Plan(parallel=ParallelDims(tp=8), mbs=1, gas=8)
    with_kernel, _ = estimate_time(plan, wl, h100())
    monkeypatch.setattr(cal, "FLASH_ATTENTION_FRACTION", {})
    at_gemm_rate, _ = estimate_time(plan, wl, h100())
    # At 32K tokens attention is most of the FLOPs: the slower kernel shows in the compute.
    assert with_kernel.compute > 1.05 * at_gemm_rate.compute
    assert with_kernel.model_flops == at_gemm_rate.model_flops


def test_alltoall_dispatcher_sync_serializes_attention_and_expert_launches(monkeypatch):
    # Megatron-Core's alltoall dispatcher waits for the device before permuting
    # (token_dispatcher.py `_maybe_dtoh_and_synchronize`): the experts' launches cannot overlap
    # the attention block's device time, so with the host as fast as the layer's GPU work the
    # forward takes longer than both whenever the attention block outlasts the host's launches
    # before the sync (32K tokens, 32 local experts: the experts' launches are most of the host's).
    from planner.cost import calibration as cal
    from planner.cost.shard import stage_shards
    from planner.cost.timing import elementwise as elt
    from planner.cost.timing.compute import stage_compute

    # A tiny vocabulary: the output layer adds nothing, the two identical layers are the forward.
    arch = dataclasses.replace(gpt(2048, 16, 2), vocab=128, moe=MoE(num_experts=64, top_k=8, expert_ffn=512))
    node = h100()
    wl = Workload(arch=arch, training="pretrain", seq_len=32768, global_batch=8)
    ep, local = 2, 32

    def forward(host_s: float) -> float:
        monkeypatch.setitem(cal.HOST_KERNEL_S, "megatron", host_s)
        plan = Plan(parallel=ParallelDims(dp=8, ep=ep), mbs=1, gas=1)
        return stage_compute(plan, wl, node, stage_shards(plan, arch)[0]).forward

    from planner.cost.comm import ep_traffic, total_seconds

    gpu = forward(0.0)
    after = elt.moe_kernels_after_sync(arch, False, local)
    assert elt.layer_kernels(arch, 0, "megatron", False, local) - after < after
    # While the device runs the layer's dispatch and combine the host goes on issuing: launches
    # after the sync that outlast them by half the layer's GPU time.
    plan = Plan(parallel=ParallelDims(dp=8, ep=ep), mbs=1, gas=1)
    a2a = total_seconds(ep_traffic(plan, arch, wl.seq_len, node), node) / 2
    host = (gpu / arch.num_layers / 2 + a2a) / after
    every = (elt.layer_kernels(arch, 0, "megatron", False, local) * host - a2a) * arch.num_layers
    assert forward(host) > 1.1 * max(gpu, every)


def test_fp8_current_scaling_quantizes_each_experts_input_apart():
    # Transformer Engine quantizes a grouped GEMM's inputs expert by expert under fp8 current
    # scaling (amax, scale, cast: csrc/quantizer.cpp), so each expert's GEMM costs the host four
    # launches in forward; backward runs dgrad and wgrad per expert and quantizes its gradient.
    from planner.cost.timing import elementwise as elt

    arch = _moe()
    for local in (1, 8, 16):
        bf16 = elt.moe_kernels_after_sync(arch, False, local)
        fp8 = elt.moe_kernels_after_sync(arch, True, local)
        assert fp8 - bf16 == 2 * local * elt.FP8_CURRENT_SCALING_QUANTIZE_KERNELS == 6 * local
        forward = elt.layer_kernels(arch, 0, "megatron", True, local)
        # Backward: twice the layer's other kernels, five per expert per grouped GEMM.
        assert elt.backward_kernels(arch, 0, "megatron", True, local) == 2 * (forward - 8 * local) + 10 * local
    # DeepEP and HybridEP compute their layouts inside their dispatch kernels: no preprocessing.
    assert (elt.layer_kernels(arch, 0, "megatron", True, 8) - elt.layer_kernels(arch, 0, "megatron", True, 8, False)
            == elt.MOE_PREPROCESS_KERNELS)
    # Dense layers and eager modules keep two backward launches per forward one.
    dense = dataclasses.replace(arch, moe=None)
    assert elt.backward_kernels(dense, 0, "megatron", True, 1) == 2 * elt.layer_kernels(dense, 0, "megatron", True, 1)
    assert elt.backward_kernels(arch, 0, "hf", False, 8) == 2 * elt.layer_kernels(arch, 0, "hf", False, 8)


def test_alltoall_dispatcher_sorts_copies_by_local_expert():
    # token_dispatcher.py sort_chunks_by_idxs: every routed copy copied into expert order and back
    # (read 2, write 2 each way) with its fp32 probability on the way in (read 4, write 4).
    from planner.cost.timing import elementwise as elt

    arch = _moe()
    plain = elt.layer_bytes(arch, 0, "megatron", False).sharded
    sorted_ = elt.layer_bytes(arch, 0, "megatron", False, expert_sort=True).sharded
    assert sorted_ - plain == 8 * (8 * 2048 + 8)
    node = h100()

    def forward(experts: int, dispatch: str) -> float:
        from planner.cost.shard import stage_shards
        from planner.cost.timing.compute import stage_compute

        moe_arch = _moe(num_experts=experts)
        engine = dataclasses.replace(engine_traits("megatron"), moe_dispatch=dispatch)
        wl = Workload(arch=moe_arch, training="pretrain", seq_len=4096, global_batch=8, engine=engine)
        plan = Plan(parallel=ParallelDims(dp=8, ep=8), mbs=1, gas=1)
        return stage_compute(plan, wl, node, stage_shards(plan, moe_arch)[0]).forward

    # Only where a rank holds several experts and the alltoall dispatcher delivers by source rank.
    assert forward(64, "alltoall") > forward(64, "deduplicated")
    assert forward(8, "alltoall") == forward(8, "deduplicated")


# ----------------------------------------------------------------------------- engines' kernels

def _moe(**moe) -> Architecture:
    base = dict(num_experts=64, top_k=8, expert_ffn=512)
    return dataclasses.replace(gpt(2048, 16, 2), vocab=128, gated_mlp=True, mlp_bias=False, position="rope", norm="rmsnorm",
                               moe=MoE(**{**base, **moe}))


def test_expert_biases_cost_megatrons_fp32_per_expert_adds():
    # TEGroupedMLP._apply_bias: b·p written 4, t + b·p read 2 + 4 written 4, cat read 4 written 4,
    # the cast back read 4 written 2: 28 bytes per routed output element (top_k · h per token).
    from planner.cost.timing import elementwise as elt

    plain, biased = _moe(), _moe(expert_bias=True)
    extra = elt.layer_bytes(biased, 0, "megatron", False).sharded - elt.layer_bytes(plain, 0, "megatron", False).sharded
    assert extra == 28 * 8 * 2048
    # Eager (hf) grouped experts add each bias after its GEMM: read 2, write 2 per element of the
    # fc1 output (gate and up, 2 × 512) and of the fc2 output (h), per routed copy.
    extra_hf = elt.layer_bytes(biased, 0, "hf", False).sharded - elt.layer_bytes(plain, 0, "hf", False).sharded
    assert extra_hf == 8 * 4 * (2 * 512 + 2048)


def test_eager_activation_bytes_by_activation_and_engine_fusions():
    from planner.cost.timing import elementwise as elt

    swiglu, clamped = _moe(), dataclasses.replace(_moe(), mlp_activation="sigmoid_glu_clamped")
    units = 8 * 512
    eager = elt.layer_bytes(swiglu, 0, "hf", False)
    # gpt-oss's clamped GEGLU runs seven eager operators: 32 bytes per unit against SwiGLU's 10.
    assert elt.layer_bytes(clamped, 0, "hf", False).sharded - eager.sharded == (32 - 10) * units
    # NeMo AutoModel: the experts' weighted SwiGLU fused (6 per unit), RoPE fused (4 per rotated
    # element against 26): 16 heads + 16 KV heads of 128.
    fused = elt.layer_bytes(swiglu, 0, "hf", False, fused_rope=True, fused_moe_activation=True)
    assert eager.sharded - fused.sharded == (10 - 6) * units + (26 - 4) * 32 * 128
    # A compiled RMSNorm reads and writes once (4 per unit) against eager's 36, over the two layer
    # norms of h.
    normed = elt.layer_bytes(swiglu, 0, "hf", False, fused_norm=True)
    assert eager.residual_stream - normed.residual_stream == (36 - 4) * 2 * 2048
    # ... and the clamped GEGLU stays eager, with the fp32 routing-weight product (12 more).
    am = elt.layer_bytes(clamped, 0, "hf", False, fused_rope=True, fused_moe_activation=True)
    assert am.sharded - fused.sharded == (32 + 12 - 6) * units


def test_plain_activations_run_as_their_eager_operators():
    """Squared ReLU is two eager operators (relu, square: 8 bytes per unit against GELU's 4) and
    Apertus's xIELU in Python twelve (58); Megatron-Core's fused kernels take 4 whatever it is."""
    from planner.cost.timing import elementwise as elt

    a = gpt(2048, 16, 2)  # plain MLP of 8192 units
    units = a.ffn
    relu2, xielu = (dataclasses.replace(a, mlp_activation=name) for name in ("relu2", "xielu"))
    gelu = elt.layer_bytes(a, 0, "hf", False).sharded
    assert elt.layer_bytes(relu2, 0, "hf", False).sharded - gelu == (8 - 4) * units
    assert elt.layer_bytes(xielu, 0, "hf", False).sharded - gelu == (58 - 4) * units
    assert elt.layer_bytes(xielu, 0, "megatron", False).sharded == elt.layer_bytes(a, 0, "megatron", False).sharded
    assert elt.layer_kernels(xielu, 0, "hf", None, 1) - elt.layer_kernels(a, 0, "hf", None, 1) == 11
    assert elt.layer_kernels(xielu, 0, "megatron", None, 1) == elt.layer_kernels(a, 0, "megatron", None, 1)


def test_fp8_current_scaling_casts_in_passes_of_their_own():
    from planner.cost.timing import elementwise as elt

    a = gpt(2048, 16, 2)  # plain MLP, 8192 FFN units, 16 heads of 128
    bf16, fp8 = elt.layer_bytes(a, 0, "megatron", False), elt.layer_bytes(a, 0, "megatron", True)
    # Forward: the attention output 8 per element (amax pass 2, then 16-bit read, both fp8
    # layouts written), the activation output 6, the two norm outputs 6 each.
    assert fp8.cast_sharded == 8 * 2048 + 6 * 8192 and fp8.cast_residual == 12 * 2048
    # Backward: every GEMM's output gradient, 6 per element: QKV (q + 2 kv), fc1, and the two
    # h-wide ones of the out-projection and fc2.
    assert fp8.backward_sharded == 6 * 3 * 2048 + 6 * 8192 and fp8.backward_residual == 12 * 2048
    assert (bf16.cast_sharded, bf16.cast_residual, bf16.backward_sharded) == (0, 0, 0)
    assert (fp8.residual_stream, fp8.sharded) == (bf16.residual_stream, bf16.sharded)
    # MoE: the permuted tokens quantized (4 per routed element) and, the router not padding to
    # 16 rows per expert, the experts' input padded and output unpadded (2 + 2 each).
    moe = _moe()
    extra = elt.layer_bytes(moe, 0, "megatron", True).sharded - elt.layer_bytes(moe, 0, "megatron", False).sharded
    assert extra == (4 + 8) * 8 * 2048


def test_fsdp2_copies_gathered_parameters_and_gradients_on_the_compute_stream():
    # FSDP2 (foreach_all_gather_copy_out, foreach_reduce_scatter_copy_in): ZeRO-3 reads and
    # writes the gathered bf16 parameters once per gather (forward and backward), and copies
    # the bf16 gradients into the fp32 reduce-scatter input (2 + 4) once per micro-batch.
    from planner.cost import calibration as cal
    from planner.cost.timing.step import _fsdp2_copy_seconds

    node = h100()
    wl = Workload(arch=SMALL, training="pretrain", seq_len=SEQ, global_batch=8, engine=engine_traits("torchtitan"))
    plan = Plan(parallel=ParallelDims(dp=8), zero=3, mbs=1, gas=1, precision="bf16", framework="torchtitan")
    params = 1e9
    hbm = node.gpu.hbm_bandwidth * cal.HBM_EFFICIENCY
    f, b = _fsdp2_copy_seconds(plan, wl, node, (params, 0.0, 2 * params, 0.0), 4)
    assert f == pytest.approx(4 * params / hbm)
    assert b == pytest.approx(4 * params / hbm + 6 * params / hbm)
    # Megatron's gathers land in the parameters' own storage; one rank shards nothing.
    megatron = dataclasses.replace(wl, engine=engine_traits("megatron"))
    assert _fsdp2_copy_seconds(plan, megatron, node, (params, 0.0, 2 * params, 0.0), 4) == (0.0, 0.0)
    alone = plan.with_(dp=1, mbs=8)
    assert _fsdp2_copy_seconds(alone, wl, node, (params, 0.0, 2 * params, 0.0), 4) == (0.0, 0.0)


def test_combined_1f1b_hides_expert_all_to_alls_behind_the_other_micro_batch():
    # Megatron-Core's overlap_moe_expert_parallel_comm (EngineTraits.ep_overlap): as DualPipe,
    # the all-to-alls are exposed only beyond OVERLAP_FRACTION of the compute.
    from planner.cost.engine import EngineTraits

    arch = dataclasses.replace(_moe(), num_layers=4)
    node = h100(2)
    plan = Plan(parallel=ParallelDims(dp=16, ep=16), mbs=1, gas=8)
    wl = Workload(arch=arch, training="pretrain", seq_len=4096, global_batch=128)
    serial, _ = estimate_time(plan, wl, node)
    overlapped, _ = estimate_time(plan, dataclasses.replace(wl, engine=EngineTraits(ep_overlap=True)), node)
    assert serial.ep > 0 and overlapped.ep < serial.ep
    assert overlapped.step == pytest.approx(serial.step - (serial.ep - overlapped.ep))


@pytest.mark.parametrize("engine, experts_quantized", [("megatron", True), ("torchtitan", False)])
def test_fp8_runs_routed_experts_in_8_bits_only_where_the_engine_quantizes_them(engine, experts_quantized):
    """Megatron-Core's grouped expert GEMMs run in fp8; torchtitan's float8 converter swaps only its
    nn.Linear modules, so its experts' grouped GEMMs keep the 16-bit rate and only the dense ones
    speed up. The MFU reference peak follows: every FLOP at the peak of the unit that runs it."""
    from planner.cost.timing.compute import _LayerTerms, _linear_seconds, routed_flops_per_token
    from planner.cost.timing.step import reference_peak
    from planner.model import load_architecture

    arch, cluster = load_architecture("qwen3-30b-a3b"), h100()
    wl = Workload(arch=arch, training="pretrain", seq_len=4096, global_batch=64, engine=engine_traits(engine))
    plan = Plan(parallel=ParallelDims(dp=8, ep=8), zero=1 if engine == "megatron" else 3, gas=8,
                framework=engine)
    layer, tokens = 0, 4096
    assert routed_flops_per_token(arch, layer) == 8 * 2 * 3 * 2048 * 768  # top-8 of SwiGLU experts, h 2048, ffn 768
    seconds = {}
    for precision in ("fp8", "bf16"):
        terms = _LayerTerms(plan.with_(precision=precision), wl, cluster)
        seconds[precision] = _linear_seconds(terms.rate, terms.routed_rate, arch, layer, terms.per_layer[layer][0],
                                             tokens, 1, plan, arch.moe.num_experts // 8, terms.mlp_mats)
    (dense8, routed8), (dense16, routed16) = seconds["fp8"], seconds["bf16"]
    assert dense8 < dense16
    assert (routed8 < routed16) is experts_quantized and (routed8 == routed16) is not experts_quantized
    gpu = cluster.gpu
    peak = reference_peak(plan.with_(precision="fp8"), wl, cluster)
    assert gpu.peak("bf16") < peak < gpu.peak("fp8")
    others = "torchtitan" if engine == "megatron" else "megatron"
    other = reference_peak(plan.with_(precision="fp8", framework=others),
                           dataclasses.replace(wl, engine=engine_traits(others)), cluster)
    assert (peak > other) is experts_quantized
