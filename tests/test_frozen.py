"""Frozen dataclasses that hash once, and `evolve`, the search's quick `dataclasses.replace`:
the same objects, the same hashes, as the generated methods give."""
import pickle
from dataclasses import dataclass, fields, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from planner.cost.plan import ParallelDims, Plan
from planner.model import load_architecture
from planner.model.frozen import evolve, hash_once
from planner.spec.plan_keys import PARALLEL_KEYS

plans = st.builds(
    Plan,
    parallel=st.builds(ParallelDims, tp=st.integers(1, 8), pp=st.integers(1, 8), dp=st.integers(1, 64),
                       ep=st.integers(1, 8), vpp=st.integers(1, 4), sp=st.booleans()),
    zero=st.integers(0, 3), recompute=st.sampled_from(["none", "selective", "full"]), mbs=st.integers(1, 8),
    gas=st.integers(1, 64), offload=st.sampled_from(["none", "optimizer"]),
    first_stage_layers=st.none() | st.integers(1, 4), recompute_layers=st.none() | st.tuples(st.integers(0, 3)))


@given(plans, st.integers(0, 3), st.integers(1, 8), st.integers(1, 16))
def test_evolve_builds_what_replace_builds(plan, zero, mbs, dp):
    hash(plan)  # a stored hash must not travel to the copy
    expected = replace(plan, parallel=replace(plan.parallel, dp=dp), zero=zero, mbs=mbs)
    got = evolve(plan, parallel=evolve(plan.parallel, dp=dp), zero=zero, mbs=mbs)
    assert got == expected and hash(got) == hash(expected) and type(got) is Plan
    assert got.key() == expected.key()
    assert plan.with_(dp=dp, zero=zero) == replace(plan, parallel=replace(plan.parallel, dp=dp), zero=zero)


@given(plans)
def test_a_plan_reads_its_degrees_through_and_its_key_is_every_field(plan):
    assert [getattr(plan, k) for k in PARALLEL_KEYS] == [getattr(plan.parallel, k) for k in PARALLEL_KEYS]
    assert plan.key() == ((tuple(getattr(plan.parallel, k) for k in PARALLEL_KEYS),)
                          + tuple(getattr(plan, f.name) for f in fields(Plan) if f.name != "parallel"))
    with pytest.raises(AttributeError):
        plan.world  # noqa: B018 (the degrees' product is ParallelDims', not read through)


def test_evolve_refuses_unknown_fields_and_checked_classes():
    with pytest.raises(TypeError, match="no field"):
        evolve(Plan(parallel=ParallelDims()), tpp=2)
    with pytest.raises(TypeError, match="__post_init__"):
        evolve(load_architecture("debug"), hidden=128)


@hash_once
@dataclass(frozen=True)
class _Pair:
    a: int
    b: tuple


@given(st.integers(), st.tuples(st.integers(), st.text()))
def test_a_stored_hash_is_the_fields_hash_and_stays_out_of_pickles(a, b):
    pair = _Pair(a, b)
    assert hash(pair) == hash(pair) == hash((a, b))
    assert pair == _Pair(a, b) and "_hash_once" in pair.__dict__
    copy = pickle.loads(pickle.dumps(pair))
    assert copy == pair and "_hash_once" not in copy.__dict__


def test_the_plan_the_searchs_caches_key_on_hashes_once():
    """Plan and its degrees are `hash_once` classes: a search hashes the same plans and their
    memo keys hundreds of thousands of times (planner/cost/memo.py)."""
    plan = Plan(parallel=ParallelDims(tp=2, dp=4))
    hash(plan)
    assert "_hash_once" in plan.__dict__ and "_hash_once" in plan.parallel.__dict__
