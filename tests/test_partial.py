"""Partial fine-tuning from job.yaml (`trainable`): spec checks, memory and time through the CLI."""
import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from planner.cli.app import app
from planner.cost.evaluate import evaluate
from planner.cost.inputs import load_inputs
from planner.cost.memory import estimate_memory
from planner.cost.partial import PartialTraining, describe
from planner.cost.plan import ParallelDims, Plan
from planner.model import get_preset

ROOT = Path(__file__).resolve().parents[1]
H100 = ROOT / "examples" / "clusters" / "h100-1node.yaml"
runner = CliRunner()


def _job(tmp_path, **fields) -> Path:
    job = {"model": "mixtral-8x7b", "training": "full", "seq_len": 4096, "global_batch": 64, **fields}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


@pytest.mark.parametrize("fields, field, fragment", [
    ({"training": "lora", "trainable": {"router": True}}, "trainable", "needs training: full"),
    ({"trainable": {"layers": [0, 1]}}, "trainable", "nothing would train"),
    ({"trainable": {"layers": [32], "experts": 1}}, "trainable.layers", "mixtral-8x7b has layers 0 to 31"),
    ({"trainable": {"experts": 9}}, "trainable.experts", "9 experts per layer, but mixtral-8x7b has 8"),
    ({"model": "llama3-8b", "trainable": {"router": True}}, "trainable.router", "llama3-8b is dense"),
    ({"trainable": {"routers": True}}, "trainable", "routers"),
])
def test_bad_trainable_exits_2_naming_the_field(tmp_path, fields, field, fragment):
    result = runner.invoke(app, ["solve", str(H100), str(_job(tmp_path, **fields))])
    assert result.exit_code == 2
    assert field in result.output and fragment in result.output
    assert "Traceback" not in result.output


def test_job_trainable_reaches_the_memory_model(tmp_path):
    inputs = load_inputs(H100, _job(tmp_path, trainable={"layers": [0, 1, 2, 3, 4, 5], "experts": 2}))
    partial = inputs.workload.partial
    assert partial == PartialTraining(layers=(0, 1, 2, 3, 4, 5), experts=2)
    # Seed case B: 6 layers x 2 experts of 176,160,768 parameters.
    assert partial.trainable_params(inputs.workload.arch) == 12 * 176_160_768
    plan = Plan(parallel=ParallelDims(dp=8), zero=3, mbs=1, gas=8)
    from_job = estimate_memory(plan, inputs.workload, inputs.cluster)
    explicit = estimate_memory(plan, replace(inputs.workload, partial=None), inputs.cluster, partial=partial)
    assert [s.memory.total for s in from_job] == [s.memory.total for s in explicit]
    full = estimate_memory(plan, replace(inputs.workload, partial=None), inputs.cluster)
    assert from_job[0].memory.optimizer < full[0].memory.optimizer / 20


def test_partial_backward_is_cheaper_than_full_and_grows_with_what_trains(tmp_path):
    plan = Plan(parallel=ParallelDims(dp=8), zero=3, mbs=1, gas=8)
    steps = {}
    for name, trainable in (("router", {"router": True}), ("six", {"layers": [0, 1, 2, 3, 4, 5], "experts": 2}),
                            ("late", {"layers": [30, 31], "attention": True})):
        inputs = load_inputs(H100, _job(tmp_path, trainable=trainable))
        steps[name] = evaluate(plan, inputs.workload, inputs.cluster).time
    full_inputs = load_inputs(H100, _job(tmp_path))
    full = evaluate(plan, full_inputs.workload, full_inputs.cluster).time
    # Same forward everywhere; the backward shrinks to input gradients plus the trained weights'.
    assert {round(t.compute, 6) for t in steps.values()} != {round(full.compute, 6)}
    assert steps["router"].compute < full.compute
    assert steps["router"].compute < steps["six"].compute < full.compute
    # Training only the last two layers skips the backward of the 30 below them.
    assert steps["late"].compute < steps["router"].compute


def test_weight_grad_fraction_by_hand():
    arch = get_preset("mixtral-8x7b")
    partial = PartialTraining(layers=(0,), experts=2)
    # A token passes through 2 of 8 experts: the 2 trained ones see 2/8 of the routed tokens.
    assert partial.active_trainable_linear(arch, 0) == 2 * 176_160_768 * 2 / 8
    assert partial.active_trainable_linear(arch, 1) == 0


def test_title_says_what_trains(tmp_path):
    result = runner.invoke(app, ["solve", str(H100), str(_job(tmp_path, trainable={"router": True})), "--top", "1"])
    assert result.exit_code == 0, result.output
    assert "full (partial: router; 1,048,576 trainable)" in result.output
    assert describe(PartialTraining(layers=(0, 2), attention=True), get_preset("llama3-8b")).startswith(
        "partial: attention, layers 0,2;")


def test_examples_of_the_seed_cases_solve(tmp_path):
    for name in ("mixtral-8x7b-router-only.yaml", "mixtral-8x7b-six-layers-two-experts.yaml"):
        result = runner.invoke(app, ["solve", str(H100), str(ROOT / "examples" / "jobs" / name), "--json", "--top", "1"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["plans"][0]["fits"]
