"""What a search reports about itself: its time by phase, whole (table, solver, explanation), and a
time limit that ran out, which is not infeasibility."""
import json

import pytest
from conftest import EXAMPLES
from typer.testing import CliRunner

from planner.cli.app import app
from planner.cost.cluster import build_cluster
from planner.cost.workload import Workload
from planner.engines.profiles import engine_workload
from planner.model import load_architecture
from planner.search import JobDefaults, candidate_table, cpsat, search
from planner.search.explain import explain_infeasible
from planner.search.result import PHASES, SolveResult
from planner.spec.cluster import ClusterSpec

runner = CliRunner()
BF16_ADAMW = JobDefaults(precision="bf16", optimizer="adamw", lora_ranks=(0,), quant="none")
SMALL = [str(EXAMPLES / "clusters" / "h100-1node.yaml"), str(EXAMPLES / "jobs" / "llama3-8b-full-finetune.yaml")]


@pytest.mark.parametrize("framework", ["megatron", "auto"])
def test_solve_seconds_is_the_whole_search_by_phase(framework):
    result = runner.invoke(app, ["solve", *SMALL, "--json", "--framework", framework])
    doc = json.loads(result.stdout)
    timing = doc["timing"]
    assert tuple(timing) == PHASES
    assert timing["table"] > 0 and timing["solver"] > 0 and timing["explain"] == 0
    assert doc["solve_seconds"] == pytest.approx(sum(timing.values()), abs=1e-9)
    plain = runner.invoke(app, ["solve", *SMALL, "--framework", framework])
    assert "searched in" in plain.stdout and "(table " in plain.stdout and ", solver " in plain.stdout


def test_the_explanation_is_part_of_the_time():
    result = runner.invoke(app, ["solve", str(EXAMPLES / "clusters" / "rtx4090-pcie-box.yaml"),
                                 str(EXAMPLES / "jobs" / "llama3.1-405b-full-finetune.yaml"), "--json",
                                 "--framework", "megatron"])
    doc = json.loads(result.stdout)
    assert result.exit_code == 1 and doc["status"] == "infeasible" and doc["explanation"]
    assert doc["timing"]["explain"] > 0
    assert doc["solve_seconds"] == pytest.approx(sum(doc["timing"].values()), abs=1e-9)


def _small_megatron_table():
    cluster = build_cluster(ClusterSpec(gpu="h100_sxm_80gb", gpus_per_node=8))
    wl = engine_workload(Workload(arch=load_architecture("llama3-8b"), training="pretrain", seq_len=8192,
                                  global_batch=64), "megatron")
    return wl, cluster, candidate_table(wl, cluster, BF16_ADAMW, {}, "step-time")


def test_a_time_limit_that_runs_out_before_any_plan_is_not_infeasibility(monkeypatch):
    wl, cluster, rows = _small_megatron_table()
    new_solver = cpsat._new_solver

    def no_work(time_limit=None, work_limit=None):  # out of time before it finds a solution
        solver = new_solver(time_limit, work_limit)
        solver.parameters.max_deterministic_time = 0.0
        return solver

    monkeypatch.setattr(cpsat, "_new_solver", no_work)
    result = search(wl, cluster, BF16_ADAMW, {}, time_limit=1e-9, rows=rows)
    assert result.status == "time limit" and not result.plans and result.conflict == ("time limit",)
    assert "time limit ran out" in explain_infeasible(rows, result.conflict, wl, cluster, BF16_ADAMW, {})
    monkeypatch.undo()
    assert search(wl, cluster, BF16_ADAMW, {}, rows=rows).status == "optimal"  # the same job, given the time


def test_a_time_limit_that_runs_out_after_a_plan_shows_it_unproven():
    """The solver starts from the exact incumbent (cpsat.solve_cpsat): out of time before the
    proof, that plan is shown, as feasible rather than optimal."""
    wl, cluster, rows = _small_megatron_table()
    limited = search(wl, cluster, BF16_ADAMW, {}, time_limit=1e-9, rows=rows)
    proven = search(wl, cluster, BF16_ADAMW, {}, rows=rows)
    assert limited.status in ("feasible", "optimal") and proven.status == "optimal"
    assert limited.plans[0].time.step >= proven.plans[0].time.step


def test_seconds_text_names_the_phases_that_took_time():
    result = SolveResult(status="infeasible", objective="step-time", plans=(), solve_seconds=1.5, candidates=0,
                         timing={"table": 1.0, "solver": 0.5, "explain": 0.0})
    assert result.seconds_text() == "1.50 s (table 1.00 s, solver 0.50 s)"
    explained = result.with_explanation_time(0.25)
    assert explained.seconds_text() == "1.75 s (table 1.00 s, solver 0.50 s, explanation 0.25 s)"
