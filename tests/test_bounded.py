"""The best plans from a table built only as far as they need (planner/search/bounded.py): the
step-time floor is under every layout's own bound, and the best plan (capacity) or the best five
with the other families' bests (solve) are the full table's, to the plan, the step time, the
memory and the reasons, on the reference cases and on random jobs of every engine."""
from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
from conftest import EXAMPLES, small_jobs
from hypothesis import HealthCheck, given, settings

from planner.cost import memo
from planner.cost.cluster import build_cluster
from planner.cost.inputs import load_inputs
from planner.cost.memory.estimate import estimate_memory, least_recomputed_layers, memory_floor, state_floor
from planner.cost.plan import ParallelDims, Plan
from planner.cost.timing.floor import (
    FloorBounds,
    _keyed_microbatch_floor,
    _sequence_class,
    keyed_step_floor,
    step_floor,
)
from planner.cost.timing.partitioned import partitioned_step_floor
from planner.cost.workload import JobDefaults, Workload
from planner.engines.profiles import engine_workload
from planner.model import load_architecture
from planner.search import candidate_table, search
from planner.search.bounded import (
    FLOOR_SHARE,
    MEMORY_SHARE,
    Built,
    Part,
    SharedCosts,
    _Bar,
    _covers,
    _dealt,
    best_plan_search,
    bounded_build,
    bounded_result,
    bounded_search,
    layout_keys,
    time_floor_us,
)
from planner.search.layouts import KiB, TableBuilder
from planner.search.point import least_recompute, lower_bound
from planner.search.runners_up import layout_best
from planner.search.space import candidate_plans, candidates
from planner.search.table import capacity_kib, host_capacity_kib
from planner.spec.cluster import ClusterSpec

BF16_ADAMW = JobDefaults(precision="bf16", optimizer="adamw", lora_ranks=(0,), quant="none")


def _reference(engine: str, model: str, nodes: int, batch: int, training: str = "pretrain"):
    cluster = build_cluster(ClusterSpec(gpu="h100_sxm_80gb", gpus_per_node=8, nodes=nodes,
                                        inter_node={"nic_gbps": 400, "nics_per_node": 8, "kind": "infiniband"}
                                        if nodes > 1 else None))
    wl = engine_workload(Workload(arch=load_architecture(model), training=training, seq_len=4096,
                                  global_batch=batch), engine)
    return wl, cluster, BF16_ADAMW


REFERENCES = [
    ("megatron", "llama3-8b", 8, 256),
    ("fsdp2", "llama3-8b", 8, 256, "full"),
    ("torchtitan", "llama3-70b", 8, 256),
    ("deepspeed", "llama3-70b", 4, 128),
    ("megatron", "mixtral-8x7b", 2, 64),
    ("megatron", "llama3.1-405b", 16, 128),  # memory-bound: the cheapest floors fit nowhere
]


@pytest.mark.parametrize("reference", REFERENCES, ids=lambda r: "-".join(map(str, r[:3])))
def test_the_floor_is_under_every_layouts_bound(reference):
    """FLOOR_SHARE × floor ≤ the least cost of any partition and recompute count of the layout
    (point.lower_bound, over the table's fitted and rounded coefficients)."""
    wl, cluster, defaults = _reference(*reference)
    layers = wl.arch.num_layers
    with memo.session():
        rows = candidate_table(wl, cluster, defaults, {}, "step-time")
        timed = [lay for lay in rows if lay.timed]
        assert timed
        for layout in timed:
            floor_us = FLOOR_SHARE * 1e6 * step_floor(layout.plan, wl, cluster)
            assert floor_us <= lower_bound(layout, "step-time", layers), layout.plan


@pytest.mark.parametrize("reference", REFERENCES, ids=lambda r: "-".join(map(str, r[:3])))
def test_the_time_floor_is_under_every_layouts_best_point(reference):
    """time_floor_us (the step floor and the fewest layers a layout must recompute to fit) ≤ the
    cost of the layout's best point (runners_up.layout_best, over its fitted and rounded
    coefficients); and it is above the step floor alone where a layout must recompute."""
    wl, cluster, defaults = _reference(*reference)
    cap, host_cap, layers = capacity_kib(cluster), host_capacity_kib(cluster), wl.arch.num_layers
    raised = 0
    builder = TableBuilder(wl, cluster)
    with memo.session():
        rows = candidate_table(wl, cluster, defaults, {}, "step-time")
        for layout in (lay for lay in rows if lay.timed and not lay.exact):
            point = layout_best(layout, {}, cap, host_cap, "step-time", layers)
            floor_us = time_floor_us(layout, wl, cluster, cap, builder.lows(layout.plan))
            if point is not None:
                assert floor_us <= point.cost, layout.plan
            raised += floor_us > FLOOR_SHARE * 1e6 * step_floor(layout.plan, wl, cluster)
    assert raised or reference[1] == "llama3-8b"  # where some layout must recompute to fit


def _memory_floor_holds(wl, cluster, defaults):
    """MEMORY_SHARE × state_floor and × memory_floor ≤ the least memory of any partition and
    recompute count of every layout of the table (point.lower_bound for memory, over its fitted
    and rounded coefficients); and least_recomputed_layers at the capacity over MEMORY_SHARE ≤
    the fewest layers the layout recomputes to fit (point.least_recompute). Returns how many
    layouts the latter says must recompute."""
    layers, cap = wl.arch.num_layers, capacity_kib(cluster)
    builder = TableBuilder(wl, cluster)
    recomputing = 0
    with memo.session():
        rows = candidate_table(wl, cluster, defaults, {}, "step-time", screen=False)
        assert rows
        for layout in rows:
            least = lower_bound(layout, "memory", layers)
            assert MEMORY_SHARE * state_floor(layout.plan, wl, cluster) / KiB <= least, layout.plan
            assert MEMORY_SHARE * memory_floor(layout.plan, wl, cluster) / KiB <= least, layout.plan
            lows = builder.lows(layout.plan)  # as the search asks for it
            assert MEMORY_SHARE * memory_floor(layout.plan, wl, cluster, lows) / KiB <= least, layout.plan
            if not layout.exact:
                fewest = least_recomputed_layers(layout.plan, wl, cluster, cluster.capacity / MEMORY_SHARE)
                assert fewest <= least_recompute(layout, cap, layers), layout.plan
                recomputing += fewest > 0
    return recomputing


def _partitioned_floor_holds(wl, cluster, defaults) -> int:
    """FLOOR_SHARE × the step floor over a layout's partitions, each stage recomputing the fewest
    layers its memory floor needs at the capacity over MEMORY_SHARE (timing/partitioned.py), ≤
    the cost of the layout's best point, on every layout of the table that fits somewhere.
    Returns how many it puts above the step floor
    with the fewest layers recomputed over the whole pipeline (`time_floor_us` without lows)."""
    cap, host_cap, layers = capacity_kib(cluster), host_capacity_kib(cluster), wl.arch.num_layers
    builder = TableBuilder(wl, cluster)
    tighter = 0
    with memo.session():
        rows = candidate_table(wl, cluster, defaults, {}, "step-time")
        for layout in (lay for lay in rows if lay.timed and not lay.exact):
            point = layout_best(layout, {}, cap, host_cap, "step-time", layers)
            floor_s = partitioned_step_floor(layout.plan, wl, cluster, cluster.capacity / MEMORY_SHARE,
                                             builder.lows(layout.plan))
            if point is None:
                continue
            assert FLOOR_SHARE * 1e6 * floor_s <= point.cost, layout.plan
            tighter += FLOOR_SHARE * 1e6 * floor_s > time_floor_us(layout, wl, cluster, cap)
    return tighter


def _offloading_floor_holds(wl, cluster, defaults) -> int:
    """A candidate that offloads has a floor over the partitions no higher than its twin that does
    not (the search works out the offloading one alone: bounded.partitioned_floor_us). Returns the
    pairs checked."""
    builder = TableBuilder(wl, cluster)
    capacity = cluster.capacity / MEMORY_SHARE
    pairs = 0
    with memo.session():
        for plan in candidates(wl, cluster, defaults, {}):
            if plan.offload == "none" or builder.never_built(plan):
                continue
            lows = builder.lows(plan)
            twin = plan.with_(offload="none")
            assert (partitioned_step_floor(plan, wl, cluster, capacity, lows)
                    <= partitioned_step_floor(twin, wl, cluster, capacity, lows)), plan
            pairs += 1
    return pairs


def _least_memory_plans_hold(wl, cluster, defaults) -> int:
    """Where every plan Candidates.least_memory_plans gives a layout fits in no partition (an
    infinite floor over the partitions), none of the layout's plans does: the search reads such
    a layout's rows only where nothing fits (bounded `fits_nowhere`). Returns the plans checked."""
    builder = TableBuilder(wl, cluster)
    capacity = cluster.capacity / MEMORY_SHARE
    checked = 0
    with memo.session():
        plans = candidates(wl, cluster, defaults, {})

        def floor_s(plan: Plan) -> float:
            return partitioned_step_floor(plan, wl, cluster, capacity, builder.lows(plan))
        start = 0
        for k in range(len(plans.layout_plans())):
            size = plans.layout_size(k)
            if all(floor_s(plan) == math.inf for plan in plans.least_memory_plans(k)):
                for i in range(start, start + size):
                    assert floor_s(plans[i]) == math.inf, plans[i]
                    checked += 1
            start += size
    return checked


@pytest.mark.parametrize("reference", REFERENCES, ids=lambda r: "-".join(map(str, r[:3])))
def test_a_layout_whose_least_memory_plans_fit_nowhere_has_no_plan_that_fits(reference):
    checked = _least_memory_plans_hold(*_reference(*reference))
    assert checked or reference[1] not in ("mixtral-8x7b", "llama3.1-405b")  # those have layouts too small


@pytest.mark.slow
def test_a_large_mixture_of_experts_layouts_that_fit_nowhere():
    """DeepSeek-V3 in fp8 on 256 H100: a fifth of its layouts fit nowhere."""
    wl, cluster, _ = _reference("megatron", "deepseek-v3", 32, 1024)
    assert _least_memory_plans_hold(wl, cluster, replace(BF16_ADAMW, precision="fp8")) > 1000


@pytest.mark.parametrize("reference", REFERENCES, ids=lambda r: "-".join(map(str, r[:3])))
def test_an_offloading_plans_partitioned_floor_is_no_higher_than_its_twins(reference):
    assert _offloading_floor_holds(*_reference(*reference))


@pytest.mark.parametrize("reference", REFERENCES, ids=lambda r: "-".join(map(str, r[:3])))
def test_the_partitioned_floor_is_under_every_layouts_best_point(reference):
    tighter = _partitioned_floor_holds(*_reference(*reference))
    assert tighter or reference[0] in ("fsdp2", "deepspeed")  # no pipeline searched there


@pytest.mark.slow
def test_the_partitioned_floor_of_a_large_mixture_of_experts_in_fp8():
    """DeepSeek-V3 in fp8 and bf16 on 256 H100: the leading dense block on the first stage, the
    other stages recomputing most of their MoE layers to fit."""
    wl, cluster, _ = _reference("megatron", "deepseek-v3", 32, 1024)
    assert _partitioned_floor_holds(wl, cluster, replace(BF16_ADAMW, precision="fp8")) > 1000


def test_the_partitioned_floor_counts_each_stages_recompute():
    """DeepSeek-V3 in fp8 on 2,048 H800 (its benchmark case): TP 1, PP 16, EP 8 at one
    sequence per micro-batch keeps every layer's activations by the mean of the stages (no
    layer to recompute), while its second stage, 15 micro-batches in flight, holds at least four
    MoE layers (61 on 16 stages, three dense ones on the first) and fits only recomputing three:
    the floor over the partitions is within 5 % of the layout's best point, a third above the
    step floor."""
    inputs = load_inputs(EXAMPLES.parent / "benchmarks" / "cases" / "h800-256nodes.yaml",
                         EXAMPLES.parent / "benchmarks" / "cases" / "deepseek-v3-fp8.yaml", "megatron")
    wl, cluster = inputs.workload, inputs.cluster
    plan = Plan(parallel=ParallelDims(tp=1, pp=16, dp=128, ep=8), zero=1, recompute="full", mbs=1, gas=120,
                precision="fp8", first_stage_layers=3, last_stage_layers=2, fp8_param_gather=True,
                framework="megatron")
    builder = TableBuilder(wl, cluster)
    capacity = cluster.capacity / MEMORY_SHARE
    with memo.session():
        assert least_recomputed_layers(plan, wl, cluster, capacity) == 0
        floor_s = partitioned_step_floor(plan, wl, cluster, capacity, builder.lows(plan))
        layout = TableBuilder(wl, cluster).add(plan)[0]
        point = layout_best(layout, {}, capacity_kib(cluster), host_capacity_kib(cluster), "step-time",
                            wl.arch.num_layers)
        assert point.recomputed == (3, 3, 2)
        assert 0.95 * point.cost < 1e6 * floor_s <= point.cost
        assert floor_s > 1.3 * step_floor(plan, wl, cluster)


def _floor_bounds_hold(wl, cluster, defaults) -> int:
    """Over every floor key of the candidates: the micro-batch floor per sequence never rises
    with the micro-batch among keys alike in all else (FloorBounds' premise, which a share's
    subset of the keys relies on at any largest micro-batch), and FloorBounds.bound ≤ the key's
    step floor. Returns the keys checked."""
    with memo.session():
        plans = candidates(wl, cluster, defaults, {})
        keys = {key: i for shapes in plans.screening()[1].values() for key, i in shapes.items()}
        classes: dict[tuple, list[tuple[int, float]]] = {}
        for key, i in keys.items():
            floor = _keyed_microbatch_floor(key, lambda i=i: plans[i], wl, cluster)
            classes.setdefault(_sequence_class(key), []).append((key[8], floor))
        for per_mbs in classes.values():
            per_mbs.sort()
            for (m, f), (m2, f2) in zip(per_mbs, per_mbs[1:]):
                assert f2 / m2 <= f / m * (1 + 1e-12), (m, f, m2, f2)
        bounds = FloorBounds(keys.items(), plans.__getitem__, wl, cluster)
        for key, i in keys.items():
            assert bounds.bound(key) <= keyed_step_floor(key, lambda i=i: plans[i], wl, cluster), key
    return len(keys)


@pytest.mark.parametrize("reference", REFERENCES, ids=lambda r: "-".join(map(str, r[:3])))
def test_the_floor_bounds_are_under_every_step_floor(reference):
    assert _floor_bounds_hold(*_reference(*reference))


def test_the_floor_bounds_of_a_large_mixture_of_experts_in_fp8():
    """DeepSeek-V3 in fp8 (and bf16) on 256 H100: 62 (tp, cp, ep) classes, the host's launches
    and the deduplicated all-to-alls of many local experts."""
    wl, cluster, _ = _reference("megatron", "deepseek-v3", 32, 1024)
    assert _floor_bounds_hold(wl, cluster, replace(BF16_ADAMW, precision="fp8")) > 1000


@pytest.mark.parametrize("reference", REFERENCES, ids=lambda r: "-".join(map(str, r[:3])))
def test_the_memory_floor_is_under_every_layouts_least_memory(reference):
    recomputing = _memory_floor_holds(*_reference(*reference))
    assert recomputing  # some layout of every reference must recompute to fit


@pytest.mark.slow
def test_the_memory_floor_is_under_every_layouts_least_memory_of_a_leading_dense_block():
    """DeepSeek-V3 (three dense layers first, on the first stage) on 256 H100: every layout,
    the partitioned floor included."""
    assert _memory_floor_holds(*_reference("megatron", "deepseek-v3", 32, 1024))


def test_the_partitioned_floor_counts_whole_middle_stages():
    """DeepSeek-V3 (61 layers, three dense ones first) on 32 pipeline stages of 2,048 H800: every
    partition leaves one layer to each middle stage and 31 to the ends, so the fuller end holds
    16 layers' states, which no GPU holds; the weighted mean of the stages (a fraction of a
    layer each) puts the plan under the capacity. Under every partition's least memory still
    (the reference and random jobs above)."""
    inputs = load_inputs(EXAMPLES.parent / "benchmarks" / "cases" / "h800-256nodes.yaml",
                         EXAMPLES.parent / "benchmarks" / "cases" / "deepseek-v3-bf16.yaml", "megatron")
    wl, cluster = inputs.workload, inputs.cluster
    plan = Plan(parallel=ParallelDims(tp=2, pp=32, dp=32, sp=True), framework="megatron", zero=1,
                recompute="full", gas=480, first_stage_layers=15, last_stage_layers=16)
    lows = TableBuilder(wl, cluster).lows(plan)
    assert lows == (3, 1, 1)
    with memo.session():
        assert memory_floor(plan, wl, cluster) < cluster.capacity < memory_floor(plan, wl, cluster, lows)
        assert memory_floor(plan, wl, cluster, lows) <= MEMORY_SHARE ** -1 * min(
            m.memory.total for m in [max(estimate_memory(plan.with_(first_stage_layers=f, last_stage_layers=31 - f),
                                                         wl, cluster), key=lambda m: m.memory.total)
                                     for f in range(3, 31)])


@pytest.mark.parametrize("engine", ["megatron", "fsdp2"])
@pytest.mark.parametrize("recompute", ["full", "selective"])
def test_on_one_stage_the_memory_floor_leaves_out_only_what_it_names(engine, recompute):
    """One stage holds every layer: the floor is the estimate of the plan (recomputing all of
    them, under full recompute), less the buffers, the activations besides the layers' (the
    embedding's, the logits', the working set ...) and the runtime's bytes on those; and the
    state floor is far under it where the activations of a long sequence dominate."""
    wl, cluster, _ = _reference(engine, "llama3-8b", 1, 64)
    wl = replace(wl, seq_len=16384)
    plan = Plan(parallel=ParallelDims(tp=2, dp=4), zero=1, recompute=recompute, mbs=2, gas=8, framework=engine)
    peak = estimate_memory(plan, wl, cluster)[0]
    left_out = peak.memory.buffers + peak.memory.activations - peak.detail["layers"] + peak.memory.runtime
    floor = memory_floor(plan, wl, cluster)
    assert peak.memory.total - left_out <= floor <= peak.memory.total
    if recompute == "selective":
        assert state_floor(plan, wl, cluster) < 0.5 * floor


def _same_best(wl, cluster, defaults, constraints=None):
    """The best plan alone (capacity's search) as the full table's."""
    constraints = constraints or {}
    plans = list(candidate_plans(wl, cluster, defaults, constraints))
    with memo.session():
        full = search(wl, cluster, defaults, constraints, top=1, other_families=False)
    bounded, rows = best_plan_search(plans, wl, cluster, defaults, constraints)
    _same_result(bounded, full)
    return len(rows), len(candidate_table(wl, cluster, defaults, constraints, "step-time"))


def _same_plans(wl, cluster, defaults, constraints=None, top=5):
    """The `top` best plans and the other families' bests (solve's search) as the full table's."""
    constraints = constraints or {}
    plans = list(candidate_plans(wl, cluster, defaults, constraints))
    with memo.session():
        full = search(wl, cluster, defaults, constraints, top=top)
    bounded, rows, whole = bounded_search(plans, wl, cluster, defaults, constraints, top=top, other_families=True)
    _same_result(bounded, full)
    assert bounded.reasons == full.reasons  # the runners-up and the other families' bests, in words
    table = candidate_table(wl, cluster, defaults, constraints, "step-time")
    assert whole == (len(rows) == len(table))
    return len(rows), len(table)


def _same_split(wl, cluster, defaults, splits=((2, True),), constraints=None, top=5) -> list[int]:
    """A build dealt out in `parts` shares of its layouts (each its own process in a search, one after
    another here), with or without the costs they solve shared, for each (parts, shared) of
    `splits`: the full table's answer. The layouts each split built."""
    constraints = constraints or {}
    plans = candidates(wl, cluster, defaults, constraints)
    with memo.session():
        full = search(wl, cluster, defaults, constraints, top=top)
    sizes = []
    for parts, shared in splits:
        costs = SharedCosts(parts) if shared else None
        built = []
        for k in range(parts):
            with memo.session():
                built.append(bounded_build(plans, wl, cluster, constraints, top=top, other_families=True,
                                           part=Part(k, parts, layout_keys(plans), costs)))
        assert sum(len(b.made) for b in built) == len({i for b in built for i in b.made})  # disjoint shares
        with memo.session():
            split, rows, _ = bounded_result(built, plans, wl, cluster, defaults, constraints, top=top,
                                            other_families=True, time_limit=None, start=0.0)
        _same_result(split, full)
        assert split.reasons == full.reasons
        sizes.append(len(rows))
    return sizes


@pytest.mark.parametrize("reference", REFERENCES, ids=lambda r: "-".join(map(str, r[:3])))
def test_a_build_dealt_out_in_shares_is_the_full_tables(reference):
    alone, together, three = _same_split(*_reference(*reference), splits=((2, False), (2, True), (3, True)))
    # Reading the other shares' costs, the shares stop sooner on these jobs.
    assert together <= alone


def test_a_share_stopped_under_the_answers_bar_is_built_again_by_it():
    """Where a share left plans out by a bar below that of every cost the shares solved
    (bounded._covers), the search builds that share again, by that bar at the least: the full
    table's answer still."""
    wl, cluster, defaults = _reference("megatron", "mixtral-8x7b", 2, 64)
    plans = candidates(wl, cluster, defaults, {})
    with memo.session():
        full = search(wl, cluster, defaults, {}, top=5)
    built = []
    for k in range(2):
        with memo.session():
            built.append(bounded_build(plans, wl, cluster, {}, top=5, other_families=True,
                                       part=Part(k, 2, layout_keys(plans))))
    built[0] = replace(built[0], bar_us=0.0)
    assert not _covers(built, 5, True)
    with memo.session():
        split, _, _ = bounded_result(built, plans, wl, cluster, defaults, {}, top=5, other_families=True,
                                     time_limit=None, start=0.0)
    _same_result(split, full)
    assert split.reasons == full.reasons


def _same_result(bounded, full):
    assert bounded.status == full.status
    assert [ev.plan for ev in bounded.plans] == [ev.plan for ev in full.plans]
    assert [ev.time.step for ev in bounded.plans] == [ev.time.step for ev in full.plans]
    assert [ev.memory for ev in bounded.plans] == [ev.memory for ev in full.plans]
    assert bounded.objective_values == full.objective_values
    assert bounded.candidates == full.candidates  # the legal plans, however many were built


@pytest.mark.parametrize("reference", REFERENCES, ids=lambda r: "-".join(map(str, r[:3])))
def test_the_best_plan_is_the_full_tables(reference):
    _same_best(*_reference(*reference))


@pytest.mark.parametrize("reference", REFERENCES, ids=lambda r: "-".join(map(str, r[:3])))
def test_the_best_plans_and_other_families_are_the_full_tables(reference):
    _same_plans(*_reference(*reference))


def test_solve_builds_part_of_the_table_where_the_plans_it_shows_are_cheap():
    """Mixtral-8x7B on 64 H100 (623 of 2,981 layouts): five plans and the best of two more
    families cost less than the floor of most layouts, which are then never built."""
    built, full = _same_plans(*_reference("megatron", "mixtral-8x7b", 8, 256))
    assert built < full / 4


def test_a_job_whose_best_plan_is_cheap_builds_a_small_table():
    """Llama-3-8B on 64 H100: the best plan (TP 2, no pipeline) costs less than the floor of
    almost every other layout, which is then never built."""
    built, full = _same_best(*_reference("megatron", "llama3-8b", 8, 256))
    assert built < full / 10


def test_constraints_and_a_job_that_fits_nowhere(tmp_path):
    inputs = load_inputs(EXAMPLES / "clusters" / "h100-1node.yaml", EXAMPLES / "jobs" / "llama3-8b-full-finetune.yaml",
                         "megatron")
    from planner.spec.job import Constraint
    _same_best(inputs.workload, inputs.cluster, inputs.defaults, {"tp": Constraint(values=(2, 4)),
                                                                  "zero": Constraint(values=(1,))})
    tiny = build_cluster(ClusterSpec(gpu="rtx4090", gpus_per_node=1))
    wl = engine_workload(Workload(arch=load_architecture("llama3-70b"), training="pretrain", seq_len=4096,
                                  global_batch=8), "megatron")
    _same_best(wl, tiny, BF16_ADAMW)
    _same_plans(inputs.workload, inputs.cluster, inputs.defaults, {"tp": Constraint(values=(2, 4))}, top=3)
    _same_plans(wl, tiny, BF16_ADAMW)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(job=small_jobs(seq_lens=[512, 2048], gpus=["h100_sxm_80gb", "a100_sxm_40gb", "l4"], gpus_per_node=[1, 2, 8],
                      lora_rank=16))
def test_random_jobs_of_every_engine(job):
    _memory_floor_holds(*job)
    _floor_bounds_hold(*job)
    _same_best(*job)
    _same_plans(*job)
    _same_split(*job)
    _partitioned_floor_holds(*job)
    _offloading_floor_holds(*job)
    _least_memory_plans_hold(*job)


def test_a_cut_table_without_plans_falls_back_to_the_whole_table(monkeypatch):
    """Where the table built holds no plan the full models keep (the solver's points all over
    capacity once evaluated in full), an engine's search builds the whole table, which the
    explanation of why nothing fits reads."""
    from planner.search import bounded, stacks
    from planner.search.table import build_table

    inputs = load_inputs(EXAMPLES / "clusters" / "h100-1node.yaml", EXAMPLES / "jobs" / "llama3-8b-full-finetune.yaml",
                         "megatron")
    real = bounded.bounded_result

    def cut(*args, **kwargs):
        result, rows, _ = real(*args, **kwargs)
        return replace(result, plans=(), status="infeasible"), rows[:1], False
    monkeypatch.setattr(bounded, "bounded_result", cut)
    built: list[int] = []

    def table(plans, wl):
        built.append(len(plans))
        return build_table(plans, wl, inputs.cluster)
    outcome = stacks.search_engine("megatron", inputs.workload, inputs.cluster, inputs.defaults, {},
                                   objective="step-time", top=5, solver="cp-sat", time_limit=None, table=table)
    wl = engine_workload(inputs.workload, "megatron")
    assert built and outcome.result.plans  # searched again, whole
    assert len(outcome.rows) == len(candidate_table(wl, inputs.cluster, inputs.defaults, {}, "step-time"))


def test_a_family_bar_is_the_top_or_its_own_best_under_the_bar():
    """_Bar.of_family: a layout above the `top`-th cost and above its family's best is shown
    neither among the best nor as its family's best; never above the bar; infinite until `top`
    layouts are in."""
    bar = _Bar(top=2, families=2)
    bar.add(10, (1, 1))
    assert not bar.ranked and bar.of_family((1, 1)) == math.inf
    bar.add(12, (1, 2))
    assert bar.ranked and bar.value == math.inf  # no other family yet
    assert bar.of_family((1, 1)) == 12 and bar.of_family((1, 2)) == 12  # the top two's
    assert bar.of_family((2, 1)) == math.inf  # nothing known of it
    bar.add(20, (2, 1))
    assert bar.of_family((2, 1)) == 20
    bar.add(30, (4, 1))
    assert bar.value == 30 and bar.of_family((8, 1)) == 30  # the bar caps an unknown family
    bar.add(25, (2, 1))
    assert bar.of_family((2, 1)) == 20 and bar.value == 30  # a second layout of (2, 1) moves neither


def test_a_cheaper_layout_may_raise_the_bar_and_a_share_stopped_under_it_is_built_again():
    """The bar of a set of costs bounds no larger set's: a layout under the `top`-th brings its
    family among those shown, and the families beside them are then the next ones out. So a
    share that stopped by the bar of the costs it knew may have left out the best of such a
    family (bounded._covers), and the search then builds that share again by the higher bar."""
    bar = _Bar(top=2, families=1)
    for cost, shape in ((10, (1, 1)), (11, (1, 1)), (12, (2, 1)), (20, (4, 1))):
        bar.add(cost, shape)
    assert bar.value == 12  # (2, 1) beside the best
    bar.add(10.5, (2, 1))
    assert bar.value == 20  # (2, 1) among the best, (4, 1) beside them

    def built(costs, bar_us):
        points = [(SimpleNamespace(plan=SimpleNamespace(tp=tp, pp=pp)), SimpleNamespace(cost=cost))
                  for cost, (tp, pp) in costs]
        return Built(made={}, floored=[], complete=False, points=points, bar_us=bar_us)

    # Two families beside the best two (search.FAMILIES): (2, 1) and (4, 1), the bar 20.
    known = built([(10, (1, 1)), (11, (1, 1)), (12, (2, 1)), (20, (4, 1))], bar_us=20)
    assert _covers([known, built([(30, (8, 1))], bar_us=math.inf)], top=2, other_families=True)
    cheaper = built([(10.5, (2, 1)), (30, (8, 1))], bar_us=math.inf)  # (8, 1) is now beside them
    assert not _covers([known, cheaper], top=2, other_families=True)
    assert _covers([known, cheaper], top=2, other_families=False)  # the best two alone: 10.5 < 20


def test_shares_are_dealt_whole_classes_where_there_are_many():
    """bounded._dealt: with CLASSES_PER_SHARE (tp, cp, ep) classes per share or more, each class in
    one share, the shares within the largest class of one another and every layout dealt once;
    with fewer, layout by layout in turn."""
    many = [(tp, pp, 1, 1, ep, 1, None, None) for tp in (1, 2, 4) for ep in (1, 2, 4, 8) for pp in range(1, 1 + tp)]
    shares = _dealt(many, 2)
    assert sorted(key for share in shares for key in share) == sorted(many)
    classes = [{(k[0], k[3], k[4]) for k in share} for share in shares]
    assert not classes[0] & classes[1]
    assert abs(len(shares[0]) - len(shares[1])) <= 3  # the largest class: tp 4, four depths
    few = many[:5]
    assert _dealt(few, 2) == [few[0::2], few[1::2]]
