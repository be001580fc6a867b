"""Pipeline depths are searched wherever some partition the engine runs exists: brute force over
every split of the layers agrees, on prime layer counts and counts one off a multiple of pp; an
engine that runs only even stages gets only even splits."""
import dataclasses
import itertools
from functools import lru_cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.cost.cluster import build_cluster
from planner.cost.plan import ParallelDims, Plan
from planner.cost.workload import JobDefaults, Workload
from planner.engines import profiles
from planner.engines.profiles import PROFILES, engine_workload
from planner.engines.rules import plan_problems
from planner.model import architecture_from_config, load_architecture
from planner.search import space
from planner.search.brute import solve_brute
from planner.search.cpsat import solve_cpsat
from planner.search.layouts import build_layout, lead_layers
from planner.search.point import Point
from planner.search.space import candidate_plans
from planner.search.table import build_table
from planner.spec.cluster import ClusterSpec
from planner.spec.job import Constraint

BF16_ADAMW = JobDefaults(precision="bf16", optimizer="adamw", lora_ranks=(0,), quant="none")
WORLD = 12
"""GPUs of the test cluster: pipeline depths 1, 2, 3, 4, 6 and 12."""
DEPTHS = (1, 2, 3, 4, 6, 12)
FEW = {"zero": Constraint(values=(1,)), "offload": Constraint(values=("none",)), "cp": Constraint(values=(1,)),
       "vpp": Constraint(values=(1, 2, 3))}


@lru_cache(maxsize=None)
def job(layers: int):
    config = dict(model_type="llama", hidden_size=128, intermediate_size=256, num_hidden_layers=layers,
                  num_attention_heads=4, num_key_value_heads=2, vocab_size=256, tie_word_embeddings=False)
    wl = engine_workload(Workload(arch=architecture_from_config(config, name=f"llama-{layers}"), training="pretrain",
                                  seq_len=1024, global_batch=24), "megatron")
    cluster = build_cluster(ClusterSpec(gpu="rtx4090", gpus_per_node=WORLD))
    return wl, cluster


def runs(wl: Workload, cluster, pp: int, vpp: int, counts: tuple[int, ...]) -> bool:
    """Megatron runs this split: the plan setting its end stages gets exactly these counts and
    passes every rule (rules.py and the engine's profile)."""
    layers = wl.arch.num_layers
    dp = WORLD // pp
    plan = Plan(parallel=ParallelDims(pp=pp, dp=dp, vpp=vpp), zero=1, mbs=1, gas=wl.global_batch // dp,
                framework="megatron", first_stage_layers=counts[0] if pp > 1 else None,
                last_stage_layers=counts[-1] if pp > 1 else None)
    return (not plan_problems(plan, wl, cluster) and not PROFILES["megatron"].problems(plan, wl)
            and (plan.layer_partition(layers) or (layers,)) == counts)


def splits(layers: int, pp: int):
    """Every split of the layers over pp stages, each at least one layer."""
    for cuts in itertools.combinations(range(1, layers), pp - 1):
        bounds = (0, *cuts, layers)
        yield tuple(b - a for a, b in zip(bounds, bounds[1:]))


layer_counts = st.one_of(st.sampled_from([5, 7, 11, 13]),
                         st.builds(lambda k, pp, d: k * pp + d, st.integers(1, 3), st.sampled_from([2, 3, 4, 6]),
                                   st.sampled_from([-1, 1])).filter(lambda n: 3 <= n <= 19))


@settings(max_examples=16, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(layer_counts)
def test_the_depths_searched_are_those_some_runnable_split_allows(layers):
    wl, cluster = job(layers)
    plans = list(candidate_plans(wl, cluster, BF16_ADAMW, FEW))
    runnable = {(pp, vpp) for pp in DEPTHS for vpp in ((1,) if pp == 1 else (1, 2, 3))
                if pp <= layers and any(runs(wl, cluster, pp, vpp, c) for c in splits(layers, pp))}
    assert {(p.pp, p.vpp) for p in plans} == runnable
    # Every candidate runs as it stands: the default split where the engine takes it, else its own.
    for plan in plans:
        assert not plan_problems(plan, wl, cluster) and not PROFILES["megatron"].problems(plan, wl)


@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(layer_counts, st.integers(min_value=200_000, max_value=3_000_000), st.integers(1, 3))
def test_the_solver_chooses_among_the_runnable_splits_as_brute_force_does(layers, capacity_kib, top):
    wl, cluster = job(layers)
    rows = build_table(candidate_plans(wl, cluster, BF16_ADAMW, FEW), wl, cluster, screen=False)
    brute = solve_brute(rows, {}, capacity_kib, None, top, "step-time", layers)
    status, found, _ = solve_cpsat(rows, {}, capacity_kib, None, top, "step-time", layers)
    assert [p.cost for p in found] == [p.cost for p in brute]
    for point in found:
        plan = point.plan(layers)
        assert not plan_problems(plan, wl, cluster), plan
        counts = plan.layer_partition(layers)
        if counts is not None:  # the split the solver chose is the one the plan launches
            assert runs(wl, cluster, plan.pp, plan.vpp, counts)


def test_an_engine_of_even_stages_gets_only_even_splits(monkeypatch):
    """The profile says whether the engine runs uneven stages: one that does not is searched at
    the depths that divide the layers, every layout's partition fixed at the even split."""
    even_only = dataclasses.replace(PROFILES["megatron"], uneven_stages=False)
    monkeypatch.setitem(profiles.PROFILES, "megatron", even_only)
    monkeypatch.setitem(space.PROFILES, "megatron", even_only)
    for layers in (11, 12):
        wl, cluster = job(layers)
        plans = list(candidate_plans(wl, cluster, BF16_ADAMW, FEW))
        assert {p.pp for p in plans} == {pp for pp in DEPTHS if layers % pp == 0}
        assert all(p.first_stage_layers is None and p.last_stage_layers is None for p in plans)
        rows = build_table(plans, wl, cluster, screen=False)
        assert all(not row.variable_partition for row in rows if row.pp > 1)
        _, found, _ = solve_cpsat(rows, {}, 3_000_000, None, 3, "step-time", layers)
        assert found and all(point.plan(layers).layer_partition(layers) is None for point in found)


def test_deepseek_v3_on_2048_gpus_searches_its_published_pipelines():
    """DeepSeek-V3 (61 layers, the first 3 dense) on 2,048 H800: pipelines of up to 16 stages
    are searched with 64-way expert parallelism, and Megatron-Bridge's recipe layout (PP 8, VP 4,
    `Et|(tt|)*30mL`: 7 layers on the first stage, 8 on each middle one, 6 on the last) is a point
    of the space."""
    wl = engine_workload(Workload(arch=load_architecture("deepseek-v3"), training="pretrain", seq_len=4096,
                                  global_batch=15360), "megatron")
    cluster = build_cluster(ClusterSpec(gpu="h800_sxm_80gb", gpus_per_node=8, nodes=256,
                                        inter_node={"nic_gbps": 400, "nics_per_node": 8}))
    limits = {"ep": Constraint(values=(64,)), "vpp": Constraint(values=(1, 4)), "cp": Constraint(values=(1,))}
    plans = [p for p in candidate_plans(wl, cluster, BF16_ADAMW, limits) if p.tp == 2]
    assert {p.pp for p in plans} == {1, 2, 4, 8, 16}  # 32 stages leave dp = 32, too few for ep = 64
    plan = next(p for p in plans if (p.tp, p.pp, p.vpp, p.zero, p.recompute, p.mbs) == (2, 8, 4, 1, "full", 1))
    (layout,) = build_layout(plan, wl, cluster, lead_layers(wl.arch))
    assert layout.variable_partition and all(c.low <= n for c, n in zip(layout.classes, (7, 8, 6)))
    published = Point(layout=layout, layers=(7, 8, 6), recomputed=(0, 0, 0), cost=0).plan(61)
    assert not plan_problems(published, wl, cluster) and not PROFILES["megatron"].problems(published, wl)
    assert published.layer_partition(61) == (7,) + (8,) * 6 + (6,)
