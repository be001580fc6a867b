"""The engines as users name them and as the models see them: profiles, names, `framework: auto`
and its comparison, `estimate` on an engine, and refusals that say what the engine runs instead."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from planner.cli.app import app
from planner.cost.engine import EngineTraits
from planner.cost.inputs import load_inputs
from planner.cost.memory import estimate_memory
from planner.cost.plan import ParallelDims, Plan
from planner.engines import FrameworkJob
from planner.engines.profiles import ENGINES, PROFILES, default_engine, engine_workload, profile
from planner.spec.errors import InputError
from planner.spec.plan_keys import resolve_framework

runner = CliRunner()
NODE = {"gpu": "h100_sxm_80gb", "gpus_per_node": 8, "nodes": 1}
PRETRAIN = {"model": "llama3.2-1b", "training": "pretrain", "seq_len": 4096, "global_batch": 64}
LORA = {"model": "llama3.2-1b", "training": "lora", "seq_len": 4096, "global_batch": 16}


def run_json(*args):
    result = runner.invoke(app, [str(a) for a in args] + ["--json"])
    return result, json.loads(result.stdout) if result.stdout.strip() else None


def test_the_models_defaults_are_megatron_cores_profile():
    assert PROFILES["megatron"].traits == EngineTraits()
    assert tuple(PROFILES) == ENGINES


@pytest.mark.parametrize("said, engine", [
    ("megatron-core", "megatron"), ("Megatron-LM", "megatron"), ("mcore", "megatron"), ("NeMo", "megatron"),
    ("megatron_bridge", "megatron"), ("ds", "deepspeed"), ("hf", "fsdp2"), ("accelerate", "fsdp2"),
    ("transformers", "fsdp2"), ("trainer", "fsdp2"), ("fsdp", "fsdp2"), ("titan", "torchtitan"), ("auto", "auto"),
])
def test_names_users_say_map_onto_the_engines(said, engine):
    assert resolve_framework(said) == engine


def test_a_typo_is_bad_input_with_the_close_names(write_yaml):
    with pytest.raises(InputError, match=r"did you mean deepspeed"):
        resolve_framework("deepsped")
    cluster = write_yaml("cluster.yaml", NODE)
    job = write_yaml("job.yaml", {**PRETRAIN, "framework": "torchtitn"})
    result = runner.invoke(app, ["solve", str(cluster), str(job)])
    assert result.exit_code == 2 and "did you mean torchtitan" in " ".join(result.output.split())
    result = runner.invoke(app, ["solve", str(cluster), str(write_yaml("ok.yaml", PRETRAIN)), "--framework", "megatorn"])
    assert result.exit_code == 2 and "--framework" in result.output and "did you mean megatron" in result.output


def test_the_same_plan_keeps_what_each_engine_keeps():
    # One ZeRO-1 plan of a full fine-tune, per engine: Megatron's fp32 main_grad (4 B) against
    # DeepSpeed's 16-bit gradients with an fp32 partition copy, and FSDP2's fp32 parameters (no master copy).
    inputs = load_inputs_from({**PRETRAIN, "training": "full"})
    plan = Plan(parallel=ParallelDims(dp=8), zero=0, mbs=1, gas=8)
    params = {}
    for name in ("megatron", "deepspeed", "fsdp2"):
        (stage,) = estimate_memory(plan.with_(framework=name), engine_workload(inputs.workload, name), inputs.cluster)
        params[name] = stage.memory
    # gradients: Megatron 4 B/param; DeepSpeed 2 B + its 4 B fp32 copy (unsharded at ZeRO 0).
    assert 3 * params["megatron"].gradients == 2 * params["deepspeed"].gradients
    assert params["fsdp2"].master_weights == 0 and params["fsdp2"].weights == 2 * params["megatron"].weights


def load_inputs_from(job: dict):
    import tempfile
    from pathlib import Path

    import yaml
    root = Path(tempfile.mkdtemp())
    (root / "cluster.yaml").write_text(yaml.safe_dump(NODE))
    (root / "job.yaml").write_text(yaml.safe_dump(job))
    return load_inputs(root / "cluster.yaml", root / "job.yaml")


def test_auto_compares_every_engine_and_says_why_one_cannot_run(write_yaml):
    cluster, job = write_yaml("cluster.yaml", NODE), write_yaml("job.yaml", LORA)
    result, doc = run_json("solve", cluster, job, "--top", "3")
    assert result.exit_code == 0, result.output
    engines = {e["framework"]: e for e in doc["engines"]}
    assert set(engines) == set(ENGINES)
    assert engines["megatron"]["plan"] is None and "does not run lora" in engines["megatron"]["why_not"]
    ran = [e for e in engines.values() if e["plan"] is not None]
    assert min(e["step_time_ratio"] for e in ran) == 1.0
    best = doc["plans"][0]
    assert engines[best["framework"]]["step_time_ratio"] == 1.0
    for e in ran:  # each engine's best against the winner, from its own plan
        assert e["step_time_ratio"] == pytest.approx(e["plan"]["time"]["step"] / best["time"]["step"])
        assert e["headroom"] == e["plan"]["memory"]["capacity"] - e["plan"]["memory"]["total"]
    plain = " ".join(runner.invoke(app, ["solve", str(cluster), str(job), "--top", "3"]).stdout.split())
    assert "Engines:" in plain and "Megatron-Core does not run lora training" in plain
    assert all(e["summary"] in plain for e in engines.values())
    assert any(e["summary"].endswith("best, fits with " + f"{e['headroom'] / 2**30:.1f} GiB headroom") for e in ran)


def test_one_engine_searches_only_what_it_launches(write_yaml):
    cluster, job = write_yaml("cluster.yaml", NODE), write_yaml("job.yaml", PRETRAIN)
    result, doc = run_json("solve", cluster, job, "--top", "5", "--framework", "deepspeed")
    assert result.exit_code == 0 and "engines" not in doc
    assert all(p["framework"] == "deepspeed" and p["parallel"]["pp"] == 1 and not p["parallel"]["sp"]
               for p in doc["plans"])
    result, doc = run_json("solve", cluster, write_yaml("m.yaml", {**PRETRAIN, "framework": "mcore"}), "--top", "5")
    assert all(p["framework"] == "megatron" and p["zero"] <= 1 for p in doc["plans"])


def test_estimate_runs_the_plan_on_its_engine(write_yaml):
    cluster, job = write_yaml("cluster.yaml", NODE), write_yaml("job.yaml", {**PRETRAIN, "training": "full"})
    _, ds = run_json("estimate", cluster, job, "--plan", "zero=1,mbs=1,framework=ds")
    _, mc = run_json("estimate", cluster, job, "--plan", "zero=1,mbs=1", "--framework", "megatron")
    assert ds["framework"] == "deepspeed" and mc["framework"] == "megatron"
    # ZeRO-1: Megatron's fp32 main_grad (4 B/param) against DeepSpeed's 16-bit gradients and the
    # fp32 copy of its 1/8 partition (2 + 4/8 B/param).
    assert ds["memory"]["gradients"] * 8 == pytest.approx(mc["memory"]["gradients"] * 5, rel=1e-9)
    result = runner.invoke(app, ["estimate", str(cluster), str(job), "--plan", "zero=3,framework=megatron"])
    assert result.exit_code == 2
    assert "Megatron-Core cannot run this plan: ZeRO stage zero=3 (it runs zero in 0, 1)" in " ".join(result.output.split())


def test_auto_estimates_on_the_engine_that_runs_the_layout_fastest(write_yaml):
    inputs = load_inputs_from(LORA)
    plan = Plan(parallel=ParallelDims(dp=8), mbs=1, gas=2, lora_rank=16, framework="auto")
    chosen = default_engine(plan, inputs.workload, inputs.cluster)
    assert chosen != "megatron"  # Megatron-LM does not train LoRA adapters
    cluster, job = write_yaml("cluster.yaml", NODE), write_yaml("job.yaml", LORA)
    _, doc = run_json("estimate", cluster, job, "--plan", "mbs=1")
    assert doc["framework"] == chosen


def test_a_file_job_carries_its_engines_name_and_traits():
    inputs = load_inputs_from(PRETRAIN)
    fj = FrameworkJob(framework="ds", file="x.json", plan=Plan(parallel=ParallelDims(dp=8), gas=8),
                      workload=inputs.workload, warnings=())
    assert fj.framework == fj.plan.framework == fj.workload.engine.name == "deepspeed"
    assert fj.workload.engine == profile("deepspeed").traits


def test_capacity_labels_each_row_with_its_engine(write_yaml):
    job = write_yaml("job.yaml", {**PRETRAIN, "tokens": "1B"})
    result, doc = run_json("capacity", job, "--gpu", "h100", "--max-gpus", "8", "--framework", "fsdp2")
    assert result.exit_code == 0, result.output
    assert doc["rows"] and all(r["plan"]["framework"] == "fsdp2" for r in doc["rows"] if r["plan"])
