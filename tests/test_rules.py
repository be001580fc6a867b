"""The framework rules: every broken rule is named; legal plans pass."""
import pytest

from planner.cost.cluster import build_cluster
from planner.cost.plan import ParallelDims, Plan
from planner.cost.workload import Workload
from planner.engines.rules import plan_problems
from planner.model import load_architecture
from planner.spec.cluster import ClusterSpec

H100x8 = build_cluster(ClusterSpec(gpu="h100_sxm_80gb", gpus_per_node=8))
V100x8 = build_cluster(ClusterSpec(gpu="v100_sxm2_32gb", gpus_per_node=8))


def wl(model="llama3-8b", training="pretrain", batch=16, seq=4096):
    return Workload(arch=load_architecture(model), training=training, seq_len=seq, global_batch=batch)


def test_a_legal_plan_has_no_problems():
    plan = Plan(parallel=ParallelDims(tp=2, pp=2, dp=2, sp=True), zero=1, gas=8)
    assert plan_problems(plan, wl(), H100x8) == []


@pytest.mark.parametrize("plan, workload, fragment", [
    (Plan(parallel=ParallelDims(dp=4), gas=4), wl(), "!= world size(8)"),
    (Plan(parallel=ParallelDims(tp=8), gas=16), wl("qwen3-30b-a3b"), "key/value heads (4) must divide by tp (8)"),
    (Plan(parallel=ParallelDims(dp=8), gas=3), wl(), "!= global batch (16)"),
    (Plan(parallel=ParallelDims(pp=2, dp=4), zero=2, gas=4), wl(), "zero 2 cannot be combined with pp > 1"),
    (Plan(parallel=ParallelDims(pp=8, vpp=5), gas=16), wl(), "must fill its vpp (5) chunks"),
    (Plan(parallel=ParallelDims(pp=8, vpp=2), gas=4, mbs=4), wl(), "must be a multiple of pp (8)"),
    (Plan(parallel=ParallelDims(dp=8, ep=2), gas=2), wl(), "ep > 1 needs a mixture-of-experts model"),
    (Plan(parallel=ParallelDims(dp=8), gas=2, offload="optimizer"), wl(), "CPU offload needs zero >= 1"),
    (Plan(parallel=ParallelDims(dp=8), zero=1, gas=2, offload="optimizer+params"), wl(), "needs zero 3"),
    (Plan(parallel=ParallelDims(dp=8), gas=2), wl(training="lora"), "needs a LoRA rank"),
    (Plan(parallel=ParallelDims(dp=8), gas=2, quant="nf4"), wl(), "quant nf4 quantizes frozen base weights"),
    (Plan(parallel=ParallelDims(dp=8, cp=1), gas=2, precision="fp8"), wl(), None),
    (Plan(parallel=ParallelDims(dp=8), gas=2, first_stage_layers=4), wl(), "need pp > 1"),
    (Plan(parallel=ParallelDims(pp=4, dp=2), gas=8, first_stage_layers=5, last_stage_layers=6), wl(),
     "do not split evenly"),
    (Plan(parallel=ParallelDims(pp=4, dp=2), gas=8, first_stage_layers=6, last_stage_layers=6), wl(), None),
    (Plan(parallel=ParallelDims(pp=2, dp=4), gas=4, recompute_layers=(2, 2)), wl(), "needs recompute full"),
    (Plan(parallel=ParallelDims(pp=2, dp=4), gas=4, recompute="full", recompute_layers=(2,)), wl(),
     "gives 1 stages, pp is 2"),
    (Plan(parallel=ParallelDims(pp=4, vpp=4, dp=2), gas=8, first_stage_layers=2, last_stage_layers=6), wl(),
     "must fill its vpp (4) chunks"),
])
def test_each_rule_names_what_is_wrong(plan, workload, fragment):
    problems = plan_problems(plan, workload, H100x8)
    if fragment is None:
        assert problems == []
    else:
        assert any(fragment in p for p in problems), problems


def test_hardware_support_is_checked():
    plan = Plan(parallel=ParallelDims(dp=8), gas=2, precision="bf16")
    assert any("no bf16 support" in p for p in plan_problems(plan, wl(), V100x8))
    assert any("no fp8 tensor cores" in p for p in plan_problems(plan.with_(precision="fp8"), wl(), V100x8))
    assert plan_problems(plan.with_(precision="fp16"), wl(), V100x8) == []
