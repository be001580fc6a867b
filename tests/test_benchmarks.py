"""Error budget on today's engines (validation/data/benchmarks.yaml through validation/benchmarks.py,
the code path of `planner estimate`), and no prediction above the hardware on any plan."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.cost.cluster import build_cluster
from planner.cost.evaluate import evaluate
from planner.cost.plan import ParallelDims, Plan
from planner.cost.timing.compute import COMPUTE_DTYPE, layer_efficiency
from planner.cost.workload import Workload
from planner.engines.profiles import engine_traits
from planner.engines.rules import plan_problems
from planner.model import load_architecture
from planner.spec.cluster import ClusterSpec

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"validation_{name}", ROOT / "validation" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


benchmarks = _load("benchmarks")

MEDIAN_BUDGET = 0.087
"""Median |error| the model holds today (docs/benchmarks.md: 8.7 %); the target is
benchmarks.MEDIAN_TARGET. It was 9.7 % while the AutoModel rows that accumulate gradients under PP
drained the pipeline once per step instead of once per local batch (Plan.pipeline_runs), and 8.2 % while the attention kernel's backward was charged 2 forward
FLOPs at a rate measured on 2.5 (planner/cost/timing/attention.py): charged as measured, with
its whole tiles, the rows it slows (dense Llama, 4K-token MoE) sit on both sides of the median."""
WITHIN_20_PERCENT = 22
"""Rows within ±20 % today, of 28."""
WORST_BUDGET = 1.5
"""Worst |error| today (Qwen3-30B-A3B PP2 VP24 of release 25.11, +149 %: docs/benchmarks.md)."""
NOT_FITTING = {
    # Published layouts the memory model still overflows (docs/benchmarks.md, "Likely causes").
    "mb-h100-gpt-oss-120b-bf16-gbs512", "tt-a100-llama2-13b-bf16-ac-none",
}


@pytest.fixture(scope="module")
def results():
    return benchmarks.run_all()


def test_every_row_is_predicted_as_a_legal_plan(results):
    assert len(results) == 28
    for r in results:
        assert not r.problems, f"{r.case.id}: {r.problems}"
    # Layouts that could not be written before: EP wider than DP, FSDP with PP, expert TP 1.
    by_id = {r.case.id: r for r in results}
    qwen = by_id["mb-h100-qwen3-235b-a22b-fp8cs-gbs2048"].case.plan
    assert (qwen.ep, qwen.dp, qwen.expert_tp, qwen.expert_dp) == (32, 16, 1, 1)
    dsv3 = by_id["am-h100-deepseek-v3-bf16-1024gpu"].case.plan
    assert (dsv3.pp, dsv3.zero) == (4, 3)
    # AutoModel accumulates local batches of 8 under PP: GA 4, one pipeline run each.
    assert (dsv3.pipeline_runs, dsv3.microbatches_per_run) == (4, 8)
    # DeepSeek-V3's layout Et|(tt|)*30mL: 7 layers on the first rank, 6 on the last.
    assert by_id["mb-h100-deepseek-v3-fp8cs"].case.plan.layer_partition(61)[::7] == (7, 6)


def test_error_budget(results):
    median, worst = benchmarks.summary(results)
    assert median <= MEDIAN_BUDGET
    assert worst <= WORST_BUDGET
    assert sum(abs(r.error) <= benchmarks.MAX_TARGET for r in results) >= WITHIN_20_PERCENT
    # The dense Megatron-Core rows, the best described, sit within 9.2 % (8 % before the attention
    # backward was charged as measured; their TP overlap is not modelled: docs/benchmarks.md).
    dense = [r for r in results if r.case.engine == "megatron" and r.case.workload.arch.moe is None
             and r.case.plan.zero == 1]
    assert len(dense) == 4 and all(abs(r.error) <= 0.092 for r in dense)
    # The A100 torchtitan rows (FlashAttention-2, FSDP2's buffer copies) within 7 %.
    a100 = [r for r in results if r.case.gpu.startswith("a100")]
    assert len(a100) == 6 and all(abs(r.error) <= 0.07 for r in a100)


@pytest.mark.xfail(strict=True, reason="targets not reached yet: see docs/benchmarks.md, 'Outside the budget'")
def test_targets(results):
    assert benchmarks.failures(results) == []


def test_published_layouts_fit_except_the_known_ones(results):
    overflowing = {r.case.id for r in results if not r.evaluation.fits}
    assert overflowing <= NOT_FITTING


def test_no_row_above_the_hardware(results):
    for r in results:
        t = r.evaluation.time
        assert 0 < t.mfu <= t.hfu <= 1, r.case.id


_CLUSTER = build_cluster(ClusterSpec(gpu="h100_sxm_80gb", gpus_per_node=8, nodes=4,
                                     inter_node={"nic_gbps": 400, "nics_per_node": 8}))
_ARCHS = {name: load_architecture(name) for name in ("debug", "debug-moe", "llama3-8b", "qwen3-30b-a3b")}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(_ARCHS)), tp=st.sampled_from([1, 2, 4]), pp=st.sampled_from([1, 2]),
       ep=st.sampled_from([1, 2, 4, 8]), mbs=st.sampled_from([1, 2, 4]), seq=st.sampled_from([512, 4096, 16384]),
       precision=st.sampled_from(["bf16", "fp8"]), recompute=st.sampled_from(["none", "selective", "full"]),
       framework=st.sampled_from(["megatron", "fsdp2"]), zero=st.sampled_from([0, 1, 3]))
def test_no_plan_runs_above_the_hardware(name, tp, pp, ep, mbs, seq, precision, recompute, framework, zero):
    arch = _ARCHS[name]
    dp = _CLUSTER.world // (tp * pp)
    workload = Workload(arch=arch, training="pretrain", seq_len=seq, global_batch=dp * mbs * 4,
                        engine=engine_traits(framework))
    plan = Plan(parallel=ParallelDims(tp=tp, pp=pp, dp=dp, ep=ep if arch.moe else 1, sp=tp > 1), zero=zero,
                recompute=recompute, mbs=mbs, gas=4, precision=precision, framework=framework)
    if plan_problems(plan, workload, _CLUSTER):
        return
    t = evaluate(plan, workload, _CLUSTER).time
    # MFU and HFU are shares of what each unit can do at its peak: never above 1.
    assert 0 < t.mfu <= t.hfu <= 1
    # Every GEMM below its unit's peak, whatever its size.
    for flops in (1e3, 1e9, 1e15):
        assert 0 < layer_efficiency(_CLUSTER.gpu, COMPUTE_DTYPE[precision], flops) < 1


def test_megatron_execution_keys_parse_and_change_memory_and_time():
    from types import SimpleNamespace

    from planner.cost.inputs import parse_plan_spec
    from planner.cost.workload import JobDefaults
    from planner.spec.errors import InputError

    case = next(c for c in benchmarks.load_cases() if c.id == "mb-h100-llama3-70b-fp8-gbs256")
    inputs = SimpleNamespace(cluster=case.cluster, workload=case.workload, framework="megatron",
                             defaults=JobDefaults(precision="fp8", optimizer="adamw", lora_ranks=(0,), quant="none"))
    plan = parse_plan_spec("tp=4,pp=8,vpp=5,sp,zero=1,offload_activation_layers=5,moment_dtype=bf16,"
                           "fp8_param_gather", inputs)
    assert (plan.offload_activation_layers, plan.moment_dtype, plan.fp8_param_gather) == (5, "bf16", True)
    assert parse_plan_spec("tp=4,pp=8,vpp=5,sp,zero=1", inputs).fp8_param_gather is None  # the engine's default
    base = evaluate(case.plan.with_(fp8_param_gather=False), case.workload, case.cluster)
    ev = evaluate(plan, case.workload, case.cluster)
    # Offloaded activations, bf16 moments and fp8 weights (no cached fp8 copy beside 16-bit ones)
    # all shrink the peak; the host link costs time.
    assert ev.memory.activations < base.memory.activations
    assert ev.memory.optimizer < base.memory.optimizer and ev.memory.weights < base.memory.weights
    assert ev.time.step > base.time.step
    selective = parse_plan_spec("tp=4,pp=8,vpp=5,sp,zero=1,recompute=selective,recompute_modules=layernorm/core_attn",
                                inputs)
    assert selective.recompute_modules == ("layernorm", "core_attn")
    assert (evaluate(selective, case.workload, case.cluster).memory.activations < base.memory.activations)
    with pytest.raises(InputError, match="recompute_modules"):
        parse_plan_spec("recompute=selective,recompute_modules=attention", inputs)
