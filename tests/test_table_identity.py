"""The table's speedups change no answer: the top-5 plans and their objectives on reference cases
equal those recorded before the memoized terms, stored hashes and quick copies
(tests/data/reference_top5.json, written by the search of that time); and on random small jobs
a table built with every memo on equals one computed afresh, term by term, and so do the plans
CP-SAT ranks from each."""
import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.cost.cluster import build_cluster
from planner.cost.inputs import load_inputs
from planner.cost.workload import JobDefaults, Workload
from planner.engines.profiles import PROFILES, engine_workload
from planner.model import load_architecture
from planner.search import search
from planner.search.cpsat import solve_cpsat
from planner.search.layouts import build_layouts
from planner.search.space import candidate_plans
from planner.search.table import build_table, capacity_kib, host_capacity_kib
from planner.spec.cluster import ClusterSpec

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = json.loads((ROOT / "tests/data/reference_top5.json").read_text())


@pytest.mark.parametrize("case", sorted(REFERENCE))
def test_reference_cases_rank_the_recorded_plans(case):
    cluster_file, job_file, framework = case.split()
    inputs = load_inputs(ROOT / "benchmarks/cases" / cluster_file, ROOT / "benchmarks/cases" / job_file, framework)
    wl = engine_workload(inputs.workload, framework)
    result = search(wl, inputs.cluster, inputs.defaults, inputs.job.constraints, top=5)
    expected = REFERENCE[case]
    assert result.status == expected["status"]
    assert [repr(ev.plan) for ev in result.plans] == expected["plans"]
    assert list(result.objective_values) == expected["objectives"]


BF16_ADAMW = JobDefaults(precision="bf16", optimizer="adamw", lora_ranks=(8,), quant="none")


@st.composite
def jobs(draw):
    engine = draw(st.sampled_from(sorted(PROFILES)))
    training = draw(st.sampled_from([t for t in ("pretrain", "full", "lora") if t in PROFILES[engine].training]))
    wl = engine_workload(Workload(arch=load_architecture(draw(st.sampled_from(["debug", "debug-moe", "qwen3-0.6b"]))),
                                  training=training, seq_len=draw(st.sampled_from([1024, 4096])),
                                  global_batch=draw(st.sampled_from([8, 16])),
                                  lora_targets=("q_proj", "v_proj") if training == "lora" else ()), engine)
    defaults = BF16_ADAMW if training == "lora" else replace(BF16_ADAMW, lora_ranks=(0,))
    cluster = build_cluster(ClusterSpec(gpu=draw(st.sampled_from(["h100_sxm_80gb", "rtx4090"])),
                                        gpus_per_node=draw(st.sampled_from([1, 2, 4, 8]))))
    return wl, cluster, defaults


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(jobs())
def test_a_memoized_table_is_the_fresh_table(job):
    wl, cluster, defaults = job
    plans = list(candidate_plans(wl, cluster, defaults, {}))
    fresh = build_layouts(plans, wl, cluster)  # outside a memo session: every term computed anew
    memoized = build_table(plans, wl, cluster)
    assert memoized == fresh
    args = ({}, capacity_kib(cluster), host_capacity_kib(cluster), 5, "step-time", wl.arch.num_layers)
    if fresh:
        assert solve_cpsat(memoized, *args)[1] == solve_cpsat(fresh, *args)[1]
