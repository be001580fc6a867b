"""Memoized model terms equal the terms computed afresh: on random plans of every engine, and
when the cache was filled by a plan differing only in the keys the memo's key leaves out."""
from dataclasses import replace

from conftest import small_jobs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.cost import memo
from planner.cost.evaluate import evaluate
from planner.cost.memory.activations import tokens_per_gpu
from planner.cost.memory.kernels import kernels
from planner.cost.memory.phases import _activation_terms, _fresh_activation_terms, activation_key
from planner.cost.shard import stage_shards
from planner.cost.timing.compute import _stage_compute, compute_key, stage_compute
from planner.engines.profiles import PROFILES
from planner.search.space import candidate_plans


@st.composite
def plans(draw):
    wl, cluster, defaults = draw(small_jobs([512, 4096], ["h100_sxm_80gb", "a100_sxm_80gb"], [2, 4, 8], 16))
    candidates = list(candidate_plans(wl, cluster, defaults, {}))
    plan = draw(st.sampled_from(candidates))
    if plan.pp > 1 and plan.recompute == "full" and draw(st.booleans()):
        plan = plan.with_(recompute_layers=tuple(draw(st.integers(0, 2)) for _ in range(plan.pp)))
    return wl, cluster, plan


def unread(draw, plan, key=compute_key):
    """The plan with every key the memo's key says the term ignores drawn anew: each key is
    drawn, and the change kept where `key` does not see it (so that resetting a key the term
    reads would show here as a wrong value)."""
    parallel = {"tp": st.integers(1, 8), "dp": st.integers(1, 64), "cp": st.integers(1, 4), "ep": st.integers(1, 8),
                "vpp": st.integers(1, 4), "sp": st.booleans()}
    keys = {"zero": st.integers(0, 3), "gas": st.integers(1, 64), "mbs": st.integers(1, 4),
            "lora_rank": st.integers(0, 64), "quant": st.sampled_from(["none", "nf4"]),
            "offload": st.sampled_from(["none", "optimizer", "optimizer+params"]),
            "optimizer": st.sampled_from(["adamw", "sgd"]), "etp": st.sampled_from([None, 1, 2]),
            "precision": st.sampled_from(["bf16", "fp8", "fp32"]), "recompute": st.sampled_from(["none", "full"]),
            "first_stage_layers": st.sampled_from([None, 1]), "last_stage_layers": st.sampled_from([None, 1]),
            "offload_activation_layers": st.integers(0, 2), "moment_dtype": st.sampled_from(["fp32", "bf16"]),
            "fp8_param_gather": st.booleans(), "framework": st.sampled_from(sorted(PROFILES))}
    other = plan
    for name, values in parallel.items():
        changed = replace(other, parallel=replace(other.parallel, **{name: draw(values)}))
        other = changed if key(changed) == key(plan) else other
    for name, values in keys.items():
        changed = replace(other, **{name: draw(values)})
        other = changed if key(changed) == key(plan) else other
    return other


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(plans(), st.data())
def test_a_stage_compute_read_from_the_memo_is_the_plans_own(job, data):
    wl, cluster, plan = job
    other = unread(data.draw, plan)
    for shard in stage_shards(plan, wl.arch):
        with memo.session():
            stage_compute(other, wl, cluster, shard)  # fills the cache under the shared key
            assert stage_compute(plan, wl, cluster, shard) == _stage_compute(plan, wl, cluster, shard)
        assert stage_compute(other, wl, cluster, shard) == _stage_compute(other, wl, cluster, shard)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(plans())
def test_a_plan_evaluated_in_a_session_is_evaluated_as_alone(job):
    wl, cluster, plan = job
    alone = evaluate(plan, wl, cluster)
    with memo.session():
        evaluate(plan.with_(zero=0 if plan.zero else 1, optimizer="sgd"), wl, cluster)
        assert evaluate(plan, wl, cluster) == alone


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(plans(), st.data())
def test_a_stages_activations_read_from_the_memo_are_the_plans_own(job, data):
    wl, _, plan = job
    other = unread(data.draw, plan, key=lambda p: activation_key(p, wl))

    def args(p, shard):
        return wl, shard, tokens_per_gpu(p, wl), kernels(wl.engine, p.precision, p.zero), wl.partial

    # The end stages' counts are the shard's to say: the other plan's own may not even split.
    laid_out = replace(other, first_stage_layers=plan.first_stage_layers, last_stage_layers=plan.last_stage_layers)
    for shard, other_shard in zip(stage_shards(plan, wl.arch), stage_shards(laid_out, wl.arch)):
        # The other plan's shard holds other parameters (ep) but the same layers: the memo's key
        # leaves the parameters out.
        other_shard = replace(other_shard, first_layer=shard.first_layer, num_layers=shard.num_layers)
        with memo.session():
            _activation_terms(other, *args(other, other_shard))  # fills the cache under the shared key
            assert _activation_terms(plan, *args(plan, shard)) == _fresh_activation_terms(plan, *args(plan, shard))
