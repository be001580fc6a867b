"""The table's speedups change no answer: the top-5 plans and their objectives on reference cases
equal those recorded before the memoized terms, stored hashes and quick copies
(tests/data/reference_top5.json, written by the search of that time); and on random small jobs
a table built with every memo on equals one computed afresh, term by term, and so do the plans
CP-SAT ranks from each."""
import json
from pathlib import Path

import pytest
from conftest import small_jobs
from hypothesis import HealthCheck, given, settings

from planner.cost.inputs import load_inputs
from planner.engines.profiles import engine_workload
from planner.search import search
from planner.search.cpsat import solve_cpsat
from planner.search.layouts import build_layouts
from planner.search.space import candidate_plans
from planner.search.table import build_table, capacity_kib, host_capacity_kib

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


def jobs():
    return small_jobs([1024, 4096], ["h100_sxm_80gb", "rtx4090"], [1, 2, 4, 8], 8)


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
