"""`planner solve ... --emit deepspeed|megatron|torchrun --out DIR`, and `planner check`
of the example ZeRO-3 config: launch files for the best plan, nothing written on bad input or
when nothing fits; the OOM reported with the nearest fitting change as a diff."""
from __future__ import annotations

import json
import os

from conftest import EXAMPLES
from typer.testing import CliRunner

from planner.cli.app import app
from planner.cost.inputs import load_inputs
from planner.engines.deepspeed import parse_deepspeed_config
from planner.engines.megatron import parse_megatron

runner = CliRunner()
CLUSTERS, JOBS = EXAMPLES / "clusters", EXAMPLES / "jobs"
ONE_NODE = CLUSTERS / "h100-1node.yaml"
FINETUNE_8B = JOBS / "llama3-8b-full-finetune.yaml"
ZERO3_AUTO = EXAMPLES / "deepspeed" / "zero3-hf-auto.json"
TWO_NODES = {"gpu": "h100_sxm_80gb", "gpus_per_node": 8, "nodes": 2,
             "inter_node": {"nic_gbps": 400, "nics_per_node": 8, "kind": "infiniband"}}
SMALL_PRETRAIN = {"model": "llama3.2-1b", "training": "pretrain", "seq_len": 4096, "global_batch": 64}


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def run_json(*args):
    result = run(*args, "--json")
    return result, json.loads(result.stdout) if result.stdout.strip() else None


def plan_keys(doc_or_plan) -> dict:
    """The plan keys a launch file carries, from a JSON plan document or a Plan."""
    if isinstance(doc_or_plan, dict):
        d = doc_or_plan
        return {**d["parallel"], "zero": d["zero"], "recompute": d["recompute"], "mbs": d["mbs"],
                "gas": d["gas"], "precision": d["precision"], "offload": d["offload"]}
    p = doc_or_plan
    par = p.parallel
    return {"tp": par.tp, "pp": par.pp, "dp": par.dp, "cp": par.cp, "ep": par.ep, "vpp": par.vpp, "sp": par.sp,
            "zero": p.zero, "recompute": p.recompute, "mbs": p.mbs, "gas": p.gas, "precision": p.precision,
            "offload": p.offload}


# ----------------------------------------------------------------------------- solve --emit

def test_solve_emits_a_deepspeed_config_of_the_best_plan(tmp_path):
    out = tmp_path / "launch"
    result, doc = run_json("solve", ONE_NODE, FINETUNE_8B, "--top", "1", "--framework", "deepspeed",
                           "--emit", "deepspeed", "--out", out)
    assert result.exit_code == 0, result.output
    assert doc["emitted"] == [str(out / name) for name in ("ds_config.json", "training_args.json",
                                                           "deepspeed_launch.sh")]
    assert os.access(out / "deepspeed_launch.sh", os.X_OK)
    config = json.loads((out / "ds_config.json").read_text())
    # The global batch: stated where DeepSpeed's own arithmetic agrees with the HF Trainer's
    # (no tensor or context parallelism), else left to DeepSpeed, which multiplies it out.
    p = doc["plans"][0]["parallel"]
    assert config["train_micro_batch_size_per_gpu"] * config["gradient_accumulation_steps"] * p["dp"] == 64
    assert config.get("train_batch_size", 64) == 64
    assert ("train_batch_size" in config) == (p["tp"] * p["cp"] == 1)
    # What DeepSpeed will run is the plan the solver ranked first.
    parsed = parse_deepspeed_config(config, load_inputs(ONE_NODE, FINETUNE_8B))
    assert plan_keys(parsed.plan) == plan_keys(doc["plans"][0])


def test_solve_emits_megatron_arguments_and_a_torchrun_line(tmp_path, write_yaml):
    cluster = write_yaml("cluster.yaml", TWO_NODES)
    job = write_yaml("job.yaml", {**SMALL_PRETRAIN, "constraints": {"zero": [0, 1]}})
    _, doc = run_json("solve", cluster, job, "--top", "1", "--framework", "megatron")
    best = doc["plans"][0]
    out = tmp_path / "megatron"
    result = run("solve", cluster, job, "--top", "1", "--framework", "megatron", "--emit", "megatron", "--out", out)
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'megatron_launch.sh'}" in " ".join(result.stdout.split())
    assert os.access(out / "megatron_launch.sh", os.X_OK)
    _, parsed = parse_megatron(out / "megatron_launch.sh", load_inputs(cluster, job))
    assert plan_keys(parsed.plan) == plan_keys(best)

    result = run("solve", cluster, job, "--top", "1", "--emit", "torchrun", "--out", out)
    assert result.exit_code == 0, result.output
    script = out / "torchrun.sh"
    assert "--nnodes 2" in script.read_text() and "--nproc-per-node 8" in script.read_text()
    assert os.access(script, os.X_OK)


def test_emitting_another_engines_plan_is_refused_with_the_best_plan_it_runs(tmp_path):
    # Plans searched for DeepSpeed; Megatron-LM launches its own: exit 2, nothing written, and the
    # refusal names the best plan Megatron-Core runs (a search with that engine) and how to plan for it.
    out = tmp_path / "never"
    result = run("solve", ONE_NODE, FINETUNE_8B, "--top", "1", "--framework", "deepspeed", "--emit", "megatron",
                 "--out", out)
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "The best plan Megatron-Core runs: tp=" in message and "--framework megatron" in message
    assert not out.exists()


def test_auto_emits_the_best_plan_of_the_engine_asked_for(tmp_path):
    # Under framework auto the best plan may be another engine's: --emit deepspeed writes DeepSpeed's best.
    out = tmp_path / "launch"
    result, doc = run_json("solve", ONE_NODE, FINETUNE_8B, "--top", "1", "--emit", "deepspeed", "--out", out)
    assert result.exit_code == 0, result.output
    ds = next(e for e in doc["engines"] if e["framework"] == "deepspeed")
    assert doc["emitted_plan"] == ds["plan"] and doc["emitted_plan"]["framework"] == "deepspeed"
    parsed = parse_deepspeed_config(json.loads((out / "ds_config.json").read_text()), load_inputs(ONE_NODE, FINETUNE_8B))
    assert plan_keys(parsed.plan) == plan_keys(ds["plan"])


def test_refusal_hints_are_valid_yaml_printed_as_written():
    # `{sp: [false]}` is YAML: parsed back it is the constraint, and rich markup does not eat `[false]`.
    import yaml

    from planner.cost.plan import ParallelDims, Plan
    from planner.engines.emit import constraints_hint
    hint = constraints_hint("deepspeed", Plan(parallel=ParallelDims(tp=2, dp=4, sp=True), recompute="selective"))
    assert yaml.safe_load(hint) == {"constraints": {"sp": [False], "recompute": ["none", "full"]}}
    import contextlib
    import io

    import typer

    from planner.cli.options import fail
    from planner.spec.errors import InputError
    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer), contextlib.suppress(typer.Exit):
        fail(InputError(f"add `{hint}` to the job").args[0], as_json=False)
    assert "{sp: [false], recompute: [none, full]}" in " ".join(buffer.getvalue().split())


def test_bad_emit_options_exit_2_before_anything_is_written(tmp_path):
    out = tmp_path / "never"
    cases = [
        (("--emit", "fsdp", "--out", out), "--emit"),
        # An engine the job's search did not cover: its own best plan is unknown.
        (("--framework", "deepspeed", "--emit", "megatron", "--out", out), "--framework megatron"),
        (("--emit", "deepspeed"), "--emit and --out go together"),
        (("--out", out), "--emit and --out go together"),
    ]
    for extra, expected in cases:
        result = run("solve", ONE_NODE, FINETUNE_8B, *extra)
        assert result.exit_code == 2, extra
        assert expected in result.output, extra
    # A missing job file: bad input, nothing written.
    result = run("solve", ONE_NODE, tmp_path / "missing.yaml", "--emit", "deepspeed", "--out", out)
    assert result.exit_code == 2
    assert not out.exists()
    # --out naming a file.
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    result = run("solve", ONE_NODE, FINETUNE_8B, "--top", "1", "--emit", "deepspeed", "--out", a_file)
    assert result.exit_code == 2 and "not a directory" in " ".join(result.output.split())
    assert a_file.read_text() == "keep me"


def test_nothing_is_written_when_no_plan_fits(tmp_path, write_yaml):
    out = tmp_path / "never"
    job = write_yaml("job.yaml", {"model": "llama3-70b", "training": "full", "seq_len": 4096, "global_batch": 8})
    args = ("solve", CLUSTERS / "rtx4090-pcie-box.yaml", job, "--emit", "deepspeed", "--out", out)
    result, doc = run_json(*args)
    assert result.exit_code == 1
    assert doc["status"] == "infeasible" and doc["emitted"] == []
    plain = run(*args)
    assert plain.exit_code == 1 and "nothing written, no plan fits" in " ".join(plain.stdout.split())
    assert not out.exists()


def test_solve_without_emit_keeps_its_document():
    _, doc = run_json("solve", ONE_NODE, FINETUNE_8B, "--top", "1")
    assert "emitted" not in doc


# ----------------------------------------------------------------------------- check of the ZeRO-3 example

def test_zero3_example_that_ooms_is_reported_with_the_nearest_fitting_change(tmp_path):
    # The HF Trainer's ZeRO-3 config at --per_device_train_batch_size 4, no gradient checkpointing,
    # on one H100 node: activations overflow; the nearest fitting plans come as diffs of the file's.
    args = ("check", ONE_NODE, FINETUNE_8B, "--deepspeed", ZERO3_AUTO, "--micro-batch", "4")
    result, doc = run_json(*args)
    assert result.exit_code == 1
    assert doc["fits"] is False and doc["headroom"] < 0
    assert "largest term is activations" in doc["why_not"]
    assert doc["suggestions"] and all(s["fits"] for s in doc["suggestions"])
    nearest = doc["suggestions"][0]["changes"]
    assert nearest and len(nearest) <= 2
    assert all(before != after for before, after in nearest.values())
    assert any(key in nearest for key in ("mbs", "recompute", "offload", "tp"))
    plain = " ".join(run(*args).stdout.split())
    assert "does not fit" in plain and "Nearest plans that fit" in plain and "→" in plain

    # --emit writes the nearest fitting plan, which DeepSpeed reads back as that plan.
    out = tmp_path / "fixed"
    result, doc = run_json(*args, "--emit", "deepspeed", "--out", out)
    assert result.exit_code == 1 and str(out / "ds_config.json") in doc["emitted"]
    fixed = parse_deepspeed_config(json.loads((out / "ds_config.json").read_text()),
                                   load_inputs(ONE_NODE, FINETUNE_8B))
    assert plan_keys(fixed.plan) == plan_keys(doc["suggestions"][0])


def test_zero3_example_that_fits_reports_its_headroom():
    args = ("check", ONE_NODE, FINETUNE_8B, "--deepspeed", ZERO3_AUTO, "--micro-batch", "1",
            "--gradient-checkpointing")
    result, doc = run_json(*args)
    assert result.exit_code == 0
    assert doc["fits"] is True and doc["suggestions"] == []
    assert doc["headroom"] == doc["memory"]["capacity"] - doc["memory"]["total"] > 0
    assert "headroom" in run(*args).stdout


# ----------------------------------------------------------------------------- --objective comm

def test_objective_comm_minimizes_exposed_communication_and_reports_bytes_by_link(write_yaml):
    cluster = write_yaml("cluster.yaml", TWO_NODES)
    job = write_yaml("job.yaml", SMALL_PRETRAIN)
    _, comm = run_json("solve", cluster, job, "--objective", "comm", "--top", "3", "--solver", "brute")
    _, step = run_json("solve", cluster, job, "--top", "1", "--solver", "brute")
    assert comm["objective"] == "comm"
    exposed = [p["time"]["comm_exposed"] for p in comm["plans"]]
    assert exposed == sorted(exposed)
    assert exposed[0] <= step["plans"][0]["time"]["comm_exposed"]
    for p in comm["plans"] + step["plans"]:
        b = p["comm_bytes"]
        # Bytes per GPU per step on each link class, next to the per-dimension volumes.
        assert {"dp", "tp", "pp", "cp", "ep", "scale_up", "scale_out"} <= set(b)
        assert all(isinstance(v, int) and v >= 0 for v in b.values())
        assert b["scale_out"] > 0  # 16 GPUs on 2 nodes: some group crosses the network


# ------------------------------------------------------- models Megatron-Core builds, and how

def _job(tmp_path, model: str):
    job = tmp_path / f"{model}.yaml"
    job.write_text(json.dumps({**SMALL_PRETRAIN, "model": model, "seq_len": 2048}))
    return job


def test_megatron_is_left_out_for_a_model_it_builds_neither_way(tmp_path):
    """OLMo 2 normalizes whole q and k projections: pretrain_gpt.py's flags cannot say so and
    Megatron-Bridge has no OLMo 2 bridge. solve leaves Megatron-Core out, estimate refuses its
    plan, and both give the same reason."""
    job = _job(tmp_path, "olmo2-7b")
    why = ("models cannot build olmo2-7b: it has projection qk norm (beyond pretrain_gpt.py's flags),"
           " and megatron-bridge 0.6.2 has no bridge for olmo2")
    solved, doc = run_json("solve", ONE_NODE, job)
    assert solved.exit_code == 0
    megatron = next(e for e in doc["engines"] if e["framework"] == "megatron")
    assert megatron["plan"] is None and why in megatron["summary"]
    assert all(p["framework"] != "megatron" for p in doc["plans"])
    estimated, doc = run_json("estimate", ONE_NODE, job, "--plan", "tp=1,pp=2,zero=1,framework=megatron")
    assert estimated.exit_code == 2 and doc["error"] == f"--plan: Megatron-Core cannot run this plan: its {why}"


def test_a_model_only_megatron_bridge_builds_is_planned_and_its_launch_named(tmp_path):
    """Gemma 2's GeGLU and extra norms are beyond pretrain_gpt.py's flags, but Megatron-Bridge
    builds Gemma 2 from its checkpoint: the plan stands, and --emit megatron says where it runs
    (not that Megatron-Core should be planned for: it was)."""
    job, out = _job(tmp_path, "gemma2-9b"), tmp_path / "out"
    solved, doc = run_json("solve", ONE_NODE, job, "--framework", "megatron", "--emit", "megatron", "--out", out)
    assert solved.exit_code == 2 and not out.exists()
    assert doc["error"] == ("--emit: Megatron-LM's pretrain_gpt.py flags cannot build gemma2-9b: it has 4 norms per"
                            " layer, a gated gelu_pytorch_tanh MLP; Megatron-Bridge builds it from its Hugging Face"
                            " checkpoint (megatron-bridge 0.6.2, AutoBridge): launch the plan there")
    solved, doc = run_json("solve", ONE_NODE, job, "--framework", "megatron")
    assert solved.exit_code == 0 and doc["plans"][0]["framework"] == "megatron"
