"""The framework rules: every broken rule is named; legal plans pass; each rule reads only the plan
keys it names."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.cost.cluster import build_cluster
from planner.cost.plan import OFFLOAD_CHOICES, PLAN_KEYS, QUANT_CHOICES, RECOMPUTE_POLICIES, ParallelDims, Plan
from planner.cost.workload import Workload
from planner.engines.profiles import PROFILES, engine_workload
from planner.engines.rules import DEGREE_RULES, RULES, plan_problems
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
    assert_named(plan, workload, fragment)


def assert_named(plan, workload, fragment):
    """The plan has no problem (`fragment` None), or one that says `fragment`."""
    problems = plan_problems(plan, workload, H100x8)
    if fragment is None:
        assert problems == []
    else:
        assert any(fragment in p for p in problems), problems


def titan():
    return engine_workload(wl(), "torchtitan")


@pytest.mark.parametrize("plan, workload, fragment", [
    # torch.distributed.pipelining runs the schedule once per local batch; Megatron-Core once per step.
    (Plan(parallel=ParallelDims(pp=2, dp=4), gas=4, pipeline_runs=2), wl(),
     "megatron runs the step's micro-batches in one pipeline schedule"),
    (Plan(parallel=ParallelDims(pp=2, dp=4), zero=3, gas=4, pipeline_runs=2, framework="torchtitan"), titan(), None),
    (Plan(parallel=ParallelDims(dp=8), zero=3, gas=2, pipeline_runs=2, framework="torchtitan"), titan(),
     "pipeline_runs (2) needs pp > 1"),
    (Plan(parallel=ParallelDims(pp=2, dp=4), zero=3, gas=4, pipeline_runs=3, framework="torchtitan"), titan(),
     "pipeline_runs (3) must divide the micro-batches per step (4)"),
    # Schedule1F1B refuses fewer micro-batches than stages; interleaving needs whole rounds of pp.
    (Plan(parallel=ParallelDims(pp=2, dp=4), zero=3, gas=4, pipeline_runs=4, framework="torchtitan"), titan(),
     "1F1B needs at least pp (2) micro-batches per pipeline run, got 1"),
    (Plan(parallel=ParallelDims(pp=4, dp=2), zero=3, gas=8, pipeline_runs=1, framework="torchtitan"), titan(), None),
    (Plan(parallel=ParallelDims(pp=4, vpp=2, dp=2), zero=3, gas=8, pipeline_runs=4, framework="torchtitan"), titan(),
     "micro-batches per pipeline run (2) must be a multiple of pp (4) to interleave"),
    (Plan(parallel=ParallelDims(pp=4, vpp=2, dp=2), zero=3, gas=8, pipeline_runs=2, framework="torchtitan"), titan(),
     None),
    (Plan(parallel=ParallelDims(pp=2, dp=4), zero=3, gas=4, pipeline_runs=0, framework="torchtitan"), titan(),
     "pipeline_runs must be >= 1"),
])
def test_pipeline_runs_follow_the_engines_schedules(plan, workload, fragment):
    assert_named(plan, workload, fragment)


def test_hardware_support_is_checked():
    plan = Plan(parallel=ParallelDims(dp=8), gas=2, precision="bf16")
    assert any("no bf16 support" in p for p in plan_problems(plan, wl(), V100x8))
    assert any("no fp8 tensor cores" in p for p in plan_problems(plan.with_(precision="fp8"), wl(), V100x8))
    assert plan_problems(plan.with_(precision="fp16"), wl(), V100x8) == []


degrees = st.integers(1, 8)
plans = st.builds(
    Plan,
    parallel=st.builds(ParallelDims, tp=degrees, pp=degrees, dp=st.integers(1, 16), cp=st.integers(1, 4),
                       ep=degrees, vpp=st.integers(1, 4), sp=st.booleans()),
    zero=st.integers(0, 4), recompute=st.sampled_from(RECOMPUTE_POLICIES), mbs=st.integers(1, 8),
    gas=st.integers(1, 16), lora_rank=st.sampled_from([0, 8]), quant=st.sampled_from(QUANT_CHOICES),
    precision=st.sampled_from(["bf16", "fp16", "fp8", "fp32", "bf16-autocast", "bf16-pure"]),
    offload=st.sampled_from(OFFLOAD_CHOICES + ("params",)), optimizer=st.sampled_from(["adamw", "adamw8bit", "sgd"]),
    first_stage_layers=st.none() | st.integers(0, 6), last_stage_layers=st.none() | st.integers(0, 6),
    recompute_layers=st.none() | st.lists(st.integers(-1, 3), max_size=4).map(tuple),
    etp=st.none() | st.integers(0, 4),
    recompute_modules=st.none() | st.sampled_from([("mlp",), ("core_attn", "bogus")]),
    offload_activation_layers=st.integers(-1, 2), moment_dtype=st.sampled_from(["fp32", "bf16"]),
    fp8_param_gather=st.booleans(), pipeline_runs=st.integers(1, 4), framework=st.sampled_from(sorted(PROFILES)))
RULE_SETS = {"plan_problems": DEGREE_RULES + RULES, **{name: p.checks for name, p in PROFILES.items()}}


def test_every_rule_reads_plan_keys():
    for rules in RULE_SETS.values():
        for rule in rules:
            assert set(rule.reads) <= set(PLAN_KEYS), rule


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans, plans, st.sampled_from(["debug", "debug-moe", "qwen3-0.6b"]), st.sampled_from(["pretrain", "lora"]),
       st.sampled_from([1000, 4096]), st.sampled_from(sorted(PROFILES)), st.sampled_from([H100x8, V100x8]))
def test_a_rule_reads_no_key_but_those_it_names(plan, other, model, training, seq_len, engine, cluster):
    """The search keeps a rule's verdicts by the values of `reads` alone (search/admit.py): a plan
    that takes those values from `plan` and every other from `other` gets the same reasons."""
    workload = engine_workload(wl(model, training, seq=seq_len), engine)
    for rules in RULE_SETS.values():
        for rule in rules:
            mixed = other.with_(**{k: getattr(plan, k) for k in rule.reads})
            assert rule.check(mixed, workload, cluster) == rule.check(plan, workload, cluster), rule


@settings(max_examples=200, deadline=None)
@given(plans, st.sampled_from(sorted(PROFILES)))
def test_plan_problems_is_its_rules_in_order(plan, engine):
    """The degrees first, alone where one breaks; then every rule's reasons in the order of RULES."""
    workload = engine_workload(wl("debug-moe"), engine)
    degrees = [m for rule in DEGREE_RULES for m in rule.check(plan, workload, H100x8)]
    assert degrees == []
    reasons = plan_problems(plan, workload, H100x8)
    assert reasons == [m for rule in RULES for m in rule.check(plan, workload, H100x8)]
    assert plan_problems(plan.with_(gas=0), workload, H100x8) == ["gas must be >= 1"]
