"""Capacity planning: the fewest GPUs that fit, then doublings; days and cost from throughput."""
import json
from pathlib import Path

import pytest
from conftest import EXAMPLES
from typer.testing import CliRunner

from hardware import get_accelerator
from planner.cli.app import app
from planner.cost.inputs import load_job_inputs
from planner.engines.profiles import engine_workload
from planner.search.capacity import cluster_for, plan_capacity, sizes_to_try
from planner.spec.job import Constraint

runner = CliRunner()
JOB = EXAMPLES / "jobs" / "llama3-8b-full-finetune.yaml"


def test_sizes_start_at_the_fewest_gpus_that_fit():
    job = load_job_inputs(JOB)
    node = cluster_for(get_accelerator("h100_sxm_80gb"), None, 2.5)
    no_offload = {"offload": Constraint(values=("none",))}
    sizes = sizes_to_try(job.workload, node, job.defaults, no_offload, max_gpus=64)
    # 8B parameters x 16 bytes = 128 GB of model states: one 80 GB GPU cannot hold them...
    assert [c.world for c in sizes] == [2, 4, 8, 16, 32, 64]
    assert [c.nodes for c in sizes] == [1, 1, 1, 2, 4, 8]
    # ... unless ZeRO-Infinity keeps parameters and optimizer states in host memory.
    assert sizes_to_try(job.workload, node, job.defaults, {}, max_gpus=64)[0].world == 1


def test_days_and_cost_follow_from_throughput_and_price():
    job = load_job_inputs(JOB)
    node = cluster_for(get_accelerator("a100_sxm_80gb"), None, 1.6)
    rows = plan_capacity(job.workload, job.defaults, {}, [node], max_gpus=16)
    assert rows and all(r.best is not None and r.best.fits for r in rows)
    for r in rows:
        assert r.days == pytest.approx(job.workload.tokens / r.tokens_per_s / 86_400)
        assert r.cost == pytest.approx(r.days * 24 * r.gpus * 1.6)
    # More GPUs never take longer for this data-parallel job.
    days = [r.days for r in rows]
    assert days == sorted(days, reverse=True)


def test_capacity_json_and_plot(tmp_path):
    plot = tmp_path / "capacity.png"
    result = runner.invoke(app, ["capacity", str(JOB), "--gpu", "h100", "--price", "2.5", "--max-gpus", "8",
                                 "--plot", str(plot), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [r["gpus"] for r in doc["rows"]] == [1, 2, 4, 8]  # 1: ZeRO-Infinity offload
    for row in doc["rows"]:
        assert set(row) >= {"gpu", "gpus", "plan", "tokens_per_s", "days", "cost"}
        assert row["gpu"] == "h100_sxm_80gb" and row["plan"]["fits"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_capacity_table_says_gpus_and_days():
    result = runner.invoke(app, ["capacity", str(JOB), "--gpu", "h100", "--max-gpus", "4"])
    assert result.exit_code == 0
    assert "h100_sxm_80gb" in result.stdout and "days" in result.stdout


@pytest.mark.parametrize("args, fragment", [
    ([], "give at least one --gpu"),
    (["--gpu", "h10"], "unknown GPU 'h10'"),
    (["--gpu", "h100", "--gpu", "a100", "--price", "1", "--price", "2", "--price", "3"], "one --price for all"),
    (["--gpu", "h100", "--plot", "out.svg"], "name the file *.png"),
])
def test_capacity_bad_input(args, fragment):
    result = runner.invoke(app, ["capacity", str(JOB), *args])
    assert result.exit_code == 2
    assert fragment in result.stderr


def test_capacity_rows_are_those_recorded_before_the_shared_memo():
    """The rows (GPU, count, nodes, best plan, step time) as the capacity search gave them before
    one memo session spanned its sizes and its searches stopped comparing families
    (tests/data/reference_capacity.json), and before each search built its table only as far as
    its best plan needs (search/bounded.py). One row was re-recorded when CP-SAT's best plan
    became the first of equal cost in table order, as brute force ranks them (cpsat.py
    `_first_of_cost`): 2 H100, tp 2 with one data-parallel rank, ZeRO 0 where it said ZeRO 1,
    the same step time and memory to the byte."""
    ref = json.loads((Path(__file__).parent / "data" / "reference_capacity.json").read_text())
    job = load_job_inputs(Path(__file__).parents[1] / ref["job"])
    wl = engine_workload(job.workload, ref["framework"])
    nodes = [cluster_for(get_accelerator(g), None, ref["price"]) for g in ref["gpus"]]
    rows = plan_capacity(wl, job.defaults, job.job.constraints, nodes, max_gpus=ref["max_gpus"])
    got = [[r.gpu, r.gpus, r.nodes, repr(r.best.plan) if r.best else None, r.best.time.step if r.best else None]
           for r in rows]
    assert got == ref["rows"]
