"""Sizing by the most sharded plans: the same answer as the whole space, on every engine, and the
fewest GPUs for Llama-3.1-405B."""
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.cost.cluster import build_cluster
from planner.cost.memory import estimate_memory
from planner.cost.workload import JobDefaults, Workload
from planner.engines.profiles import PROFILES, engine_workload
from planner.model import load_architecture
from planner.search.sizing import grown, sizing_plans, smallest_fitting_cluster, some_plan_fits
from planner.spec.cluster import ClusterSpec
from planner.spec.job import Constraint

BF16_ADAMW = JobDefaults(precision="bf16", optimizer="adamw", lora_ranks=(0,), quant="none")


@st.composite
def jobs(draw):
    engine = draw(st.sampled_from(sorted(PROFILES)))
    model = draw(st.sampled_from(["debug", "debug-moe", "llama3.2-1b", "qwen3-0.6b"]))
    training = draw(st.sampled_from([t for t in ("pretrain", "full", "lora") if t in PROFILES[engine].training]))
    wl = engine_workload(Workload(arch=load_architecture(model), training=training,
                                  seq_len=draw(st.sampled_from([512, 2048, 8192])),
                                  global_batch=draw(st.sampled_from([4, 8, 16])),
                                  lora_targets=("q_proj", "v_proj") if training == "lora" else ()), engine)
    defaults = replace(BF16_ADAMW, lora_ranks=(16,)) if training == "lora" else BF16_ADAMW
    # Usable memory from a few GiB to a whole H100: fit and no fit both common.
    cluster = build_cluster(ClusterSpec(gpu="h100_sxm_80gb", gpus_per_node=draw(st.sampled_from([1, 2, 4])),
                                        memory_reserve_gib=draw(st.sampled_from([0.0, 60.0, 72.0, 76.0, 78.0, 79.0])),
                                        host_memory_gib=512))
    constraints = {}
    if draw(st.booleans()):
        constraints["offload"] = Constraint(values=("none",))
    if draw(st.booleans()):
        constraints["mbs"] = Constraint(min=2)
    if draw(st.booleans()):
        constraints["recompute"] = Constraint(values=(draw(st.sampled_from(["none", "selective", "full"])),))
    return wl, cluster, defaults, constraints


def peak(plan, wl, cluster) -> int:
    return max(s.memory.total for s in estimate_memory(plan, wl, cluster))


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(jobs())
def test_the_most_sharded_plans_need_the_least_memory_of_the_space(job):
    """The least peak over the most sharded plans is the least over every plan, and the fit they
    decide is the whole space's, at the drawn capacity."""
    wl, cluster, defaults, constraints = job
    every = list(sizing_plans(wl, cluster, defaults, constraints, most_sharded=False))
    sharded = list(sizing_plans(wl, cluster, defaults, constraints))
    assert set(sharded) <= set(every)
    assert min((peak(p, wl, cluster) for p in sharded), default=None) == \
        min((peak(p, wl, cluster) for p in every), default=None)
    assert some_plan_fits(wl, cluster, defaults, constraints) == \
        some_plan_fits(wl, cluster, defaults, constraints, most_sharded=False)


@pytest.mark.slow
def test_the_fewest_gpus_for_405b_pretraining():
    """From two H100: 32 GPUs fit on Megatron-Core (the distributed optimizer offloaded, host
    memory not bounded), 24 do not, by the whole space as by its most sharded plans."""
    cluster = build_cluster(ClusterSpec(gpu="h100_sxm_80gb", gpus_per_node=2))
    wl = engine_workload(Workload(arch=load_architecture("llama3.1-405b"), training="pretrain", seq_len=8192,
                                  global_batch=2048), "megatron")
    smallest = smallest_fitting_cluster(wl, cluster, BF16_ADAMW, {})
    assert smallest is not None and smallest.world == 32
    assert some_plan_fits(wl, smallest, BF16_ADAMW, {}, most_sharded=False)
    assert not some_plan_fits(wl, grown(cluster, 12), BF16_ADAMW, {}, most_sharded=False)
    assert not some_plan_fits(wl, grown(cluster, 15), BF16_ADAMW, {}, most_sharded=False)
