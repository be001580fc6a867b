import pytest

from planner.cost.plan import KEY_ALIASES, PLAN_KEYS, ParallelDims, Plan, PlanError


def test_world_size_check_names_every_factor():
    dims = ParallelDims(tp=8, pp=16, dp=4)
    with pytest.raises(PlanError, match=r"dp\(4\) \* cp\(1\) \* tp\(8\) \* pp\(16\) = 512 != world size\(256\)"):
        dims.check(world=256)


@pytest.mark.parametrize("dims, message", [
    (ParallelDims(tp=1, sp=True), "needs tp > 1"),
    (ParallelDims(vpp=2), "needs pp > 1"),
    (ParallelDims(dp=4, ep=3), "must divide"),
    (ParallelDims(tp=0), ">= 1"),
])
def test_inconsistent_degrees_are_rejected(dims, message):
    with pytest.raises(PlanError, match=message):
        dims.check()


def test_plan_reads_parallel_keys_and_derives_global_batch():
    plan = Plan(parallel=ParallelDims(tp=2, dp=4), mbs=2, gas=8)
    assert (plan.tp, plan.dp, plan.pp) == (2, 4, 1)
    assert plan.global_batch == 64
    changed = plan.with_(tp=4, zero=3)
    assert (changed.tp, changed.zero, changed.dp) == (4, 3, 4)
    assert plan.key() != changed.key()


def test_plan_keys_are_the_interface_keys():
    # docs/cli.md `--plan SPEC` keys; `lora` there is the JSON's `lora_rank`.
    interface = "tp pp dp cp ep vpp sp zero recompute mbs gas lora quant precision offload optimizer".split()
    # The pipeline partition and per-stage recompute counts.
    stages = ["first_stage_layers", "last_stage_layers", "recompute_layers"]
    # Megatron-Core's execution choices that today's published layouts use.
    execution = ["etp", "recompute_modules", "offload_activation_layers", "moment_dtype", "fp8_param_gather"]
    # torch.distributed.pipelining's accumulation: one run of the schedule per local batch.
    execution += ["pipeline_runs"]
    assert {KEY_ALIASES.get(k, k) for k in interface + stages + execution + ["framework"]} == set(PLAN_KEYS)


@pytest.mark.parametrize("first, last, expected", [
    (None, None, None), (6, 6, (6, 10, 10, 6)), (2, None, (2, 10, 10, 10)), (None, 5, (9, 9, 9, 5))])
def test_uneven_partitions_follow_megatron_first_and_last(first, last, expected):
    plan = Plan(parallel=ParallelDims(pp=4), first_stage_layers=first, last_stage_layers=last)
    assert plan.layer_partition(32) == expected


def test_a_partition_that_does_not_divide_is_an_error():
    with pytest.raises(PlanError, match="do not split evenly"):
        Plan(parallel=ParallelDims(pp=4), first_stage_layers=5, last_stage_layers=6).layer_partition(32)


def test_recomputed_layers_per_stage():
    plan = Plan(parallel=ParallelDims(pp=2), recompute="full", recompute_layers=(3, 0))
    assert (plan.recomputed_layers(0, 8), plan.recomputed_layers(1, 8)) == (3, 0)
    assert Plan(parallel=ParallelDims(pp=2), recompute="full").recomputed_layers(1, 8) == 8
    assert Plan(parallel=ParallelDims(pp=2), recompute="selective").recomputed_layers(0, 8) == 0


def test_plan_keys_name_every_field_of_a_plan_in_order():
    from dataclasses import fields

    from planner.spec.plan_keys import PARALLEL_KEYS
    assert PARALLEL_KEYS == tuple(f.name for f in fields(ParallelDims))
    assert PLAN_KEYS == PARALLEL_KEYS + tuple(f.name for f in fields(Plan) if f.name != "parallel")


def test_a_constraint_on_expert_tp_reads_the_degree_the_experts_run_at():
    plan = Plan(parallel=ParallelDims(tp=2, dp=4))
    assert (plan.constraint_value("etp"), plan.with_(etp=1).constraint_value("etp")) == (2, 1)
    assert plan.constraint_value("tp") == 2 and plan.constraint_value("pipeline_runs") == 1
    from planner.search.layouts import plan_values  # the table's copy, which the search's constraints read
    for p in (plan, plan.with_(etp=1), plan.with_(pp=2, dp=2, gas=4, pipeline_runs=2)):
        assert plan_values(p) == {key: p.constraint_value(key) for key in PLAN_KEYS}
