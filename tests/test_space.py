"""The search space: checking each rule once per combination of the values it reads
(search/admit.py) admits exactly the plans that checking every plan of each layout's product with
`plan_problems` and the engine's `problems` admits, in the same order."""
import itertools
from dataclasses import replace

import pytest
from conftest import small_jobs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.cost.plan import OFFLOAD_CHOICES, QUANT_CHOICES
from planner.cost.timing.floor import floor_key
from planner.engines.profiles import PROFILES
from planner.engines.rules import plan_problems
from planner.search.bounded import screening_groups
from planner.search.space import EXECUTION_KEYS, candidate_plans, candidates, layouts
from planner.spec.job import Constraint

OPENED = {"cp": (1, 2, 4), "ep": (1, 2, 4, 8), "vpp": (1, 2, 3, 4), "offload": OFFLOAD_CHOICES,
          "quant": QUANT_CHOICES, "precision": ("bf16", "fp16", "fp8", "fp32", "bf16-autocast", "bf16-pure"),
          "optimizer": ("adamw", "adam", "adamw8bit", "sgd"), "lora_rank": (0, 8, 16), "mbs": (1, 2, 4)}
"""Values a job's constraints may open beyond the defaults, including ones the rules refuse."""

constraints = st.fixed_dictionaries({}, optional={
    key: st.lists(st.sampled_from(values), min_size=1, max_size=len(values), unique=True)
    .map(lambda chosen: Constraint(values=tuple(chosen))) for key, values in OPENED.items()})


def checked_one_by_one(workload, cluster, defaults, limits, least_memory):
    """Every plan of every layout's product that passes plan_problems and the engine's problems."""
    engine = PROFILES[workload.engine.name]
    names = [k for group in EXECUTION_KEYS for k in group]
    for layout in layouts(workload, cluster, defaults, limits, least_memory=least_memory):
        for combination in itertools.product(*layout.options):
            values = dict(zip(names, itertools.chain.from_iterable(combination)))
            plan = replace(layout.plan, parallel=replace(layout.plan.parallel, sp=values.pop("sp")), **values)
            if not plan_problems(plan, workload, cluster) and not engine.problems(plan, workload):
                yield plan


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(small_jobs([1000, 4096, 16384], ["h100_sxm_80gb", "rtx4090", "v100_sxm2_32gb"], [1, 2, 4, 8], 8),
       constraints, st.booleans())
def test_rules_checked_once_per_combination_admit_the_plans_checked_one_by_one(job, limits, least_memory):
    workload, cluster, defaults = job
    expected = list(checked_one_by_one(workload, cluster, defaults, limits, least_memory))
    got = list(candidate_plans(workload, cluster, defaults, limits, least_memory=least_memory))
    assert got == expected
    assert [p.key() for p in got] == [p.key() for p in expected]


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(small_jobs([1000, 4096, 16384], ["h100_sxm_80gb", "rtx4090"], [1, 2, 4, 8], 8), constraints, st.booleans(),
       st.data())
def test_the_candidates_build_each_plan_when_read_as_the_enumeration_does(job, limits, least_memory, data):
    """space.Candidates: the plans of `candidate_plans` in its order, each built when first read
    (a bounded search reads a few), and the screening groups the table builder would form from
    them (TableBuilder.group), found without building one."""
    workload, cluster, defaults = job
    found = candidates(workload, cluster, defaults, limits, least_memory=least_memory)
    plans = list(found)
    assert len(found) == len(plans)
    groups, shapes = found.screening()
    assert list(groups.values()) == list(screening_groups(plans).values())
    for group, members in groups.items():  # one plan of each floor key of the group, by its key
        keys = {floor_key(plans[i]) for i in members}
        assert set(shapes[group]) == keys
        assert all(floor_key(plans[i]) == key for key, i in shapes[group].items())
    if not plans:
        return
    for i in data.draw(st.lists(st.integers(-len(plans), len(plans) - 1), max_size=20)):
        assert found[i] == plans[i] and found[i] is found[i]
    assert found[-1] == plans[-1] and found[1:3] == plans[1:3]
    assert list(found) == plans  # plans read are the plans iterated
    with pytest.raises(IndexError):
        found[len(plans)]
