"""The CP-SAT search against brute-force enumeration of the same space, and its explanations."""

from planner.cost.cluster import build_cluster
from planner.cost.workload import Workload
from planner.engines.profiles import engine_workload
from planner.model import load_architecture
from planner.search import JobDefaults, candidate_table, search
from planner.search.explain import explain_infeasible
from planner.spec.cluster import ClusterSpec
from planner.spec.job import Constraint

GiB = 2**30
BF16_ADAMW = JobDefaults(precision="bf16", optimizer="adamw", lora_ranks=(0,), quant="none")


def small_cluster(gpus_per_node: int, nodes: int, reserve_gib: float = 0.0, gpu: str = "rtx4090"):
    spec = ClusterSpec(gpu=gpu, gpus_per_node=gpus_per_node, nodes=nodes, memory_reserve_gib=reserve_gib,
                       inter_node={"nic_gbps": 100, "nics_per_node": 1, "kind": "ethernet"} if nodes > 1 else None)
    return build_cluster(spec)


def workload(model: str = "debug", seq_len: int = 512, global_batch: int = 16, training: str = "pretrain"):
    return Workload(arch=load_architecture(model), training=training, seq_len=seq_len, global_batch=global_batch)


# The solver-vs-brute-force property test lives in tests/test_solver_agreement.py.


def test_search_is_deterministic():
    cluster, wl = small_cluster(8, 1), workload("debug", 1024, 32)
    first = search(wl, cluster, BF16_ADAMW, {}, top=5)
    again = search(wl, cluster, BF16_ADAMW, {}, top=5)
    assert [e.plan for e in first.plans] == [e.plan for e in again.plans]
    assert first.status == "optimal"


def test_constraints_are_honoured():
    cluster, wl = small_cluster(8, 1), workload("debug", 1024, 32)
    constraints = {"tp": Constraint(values=(2,)), "zero": Constraint(values=(1,)), "recompute": Constraint(values=("full",))}
    result = search(wl, cluster, BF16_ADAMW, constraints, top=3)
    assert result.plans
    assert all(e.plan.tp == 2 and e.plan.zero == 1 and e.plan.recompute == "full" for e in result.plans)


def test_every_returned_plan_fits_and_keeps_the_global_batch():
    cluster, wl = small_cluster(4, 2), workload("debug-moe", 2048, 24)
    result = search(wl, cluster, BF16_ADAMW, {}, top=5)
    for ev in result.plans:
        assert ev.fits
        assert ev.plan.mbs * ev.plan.gas * ev.plan.dp == 24
        assert all(s.memory.total <= ev.capacity for s in ev.stages)


def test_infeasible_memory_is_explained_with_a_change_that_fits():
    # Without offload (ZeRO-Infinity would fit it in host memory), 8B full fine-tuning overflows 2 x 24 GB.
    # On an engine that also trains adapters (FSDP2 with PEFT), the explanation offers LoRA.
    cluster = small_cluster(2, 1)
    wl = engine_workload(workload("llama3-8b", 4096, 8, training="full"), "fsdp2")
    no_offload = {"offload": Constraint(values=("none",))}
    rows = candidate_table(wl, cluster, BF16_ADAMW, no_offload, "step-time")
    result = search(wl, cluster, BF16_ADAMW, no_offload, rows=rows)
    assert result.status == "infeasible" and result.conflict == ("memory",)
    text = explain_infeasible(rows, result.conflict, wl, cluster, BF16_ADAMW, no_offload)
    assert text.startswith("No plan fits in memory")
    assert "GiB more than the" in text
    assert "It would fit on" in text
    assert "LoRA" in text


def test_offload_is_in_the_space():
    # ZeRO-Infinity: DeepSpeed offloads parameters and optimizer (Megatron-LM offloads neither).
    cluster = small_cluster(2, 1)
    wl = engine_workload(workload("llama3-8b", 4096, 8, training="full"), "deepspeed")
    result = search(wl, cluster, BF16_ADAMW, {}, top=1)
    assert result.status == "optimal" and result.plans[0].plan.offload != "none"


def test_infeasible_constraints_are_named():
    cluster, wl = small_cluster(8, 1), workload("debug", 1024, 32)
    constraints = {"tp": Constraint(values=(8,)), "pp": Constraint(values=(8,))}
    rows = candidate_table(wl, cluster, BF16_ADAMW, constraints, "step-time")
    result = search(wl, cluster, BF16_ADAMW, constraints, rows=rows)
    assert result.status == "infeasible"
    assert set(result.conflict) <= {"constraints.tp", "constraints.pp"} and result.conflict
    text = explain_infeasible(rows, result.conflict, wl, cluster, BF16_ADAMW, constraints)
    assert "constraints" in text


def test_more_memory_never_worsens_the_best_plan():
    wl = workload("debug", 2048, 16)
    tight, roomy = small_cluster(4, 1, reserve_gib=22.5), small_cluster(4, 1)
    a = search(wl, tight, BF16_ADAMW, {})
    b = search(wl, roomy, BF16_ADAMW, {})
    assert b.plans
    if a.plans:
        assert b.plans[0].time.step <= a.plans[0].time.step
