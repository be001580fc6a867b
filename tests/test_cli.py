"""The `planner` command through its real entry point: outputs, JSON contract, exit codes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES
from typer.testing import CliRunner

from planner.cli.app import app
from planner.cost.plan import PLAN_KEYS as CONSTRAINT_KEYS

runner = CliRunner()
CLUSTERS, JOBS = EXAMPLES / "clusters", EXAMPLES / "jobs"
PLAN_KEYS = {"fits", "parallel", "zero", "recompute", "mbs", "gas", "lora_rank", "quant", "precision",
             "offload", "optimizer", "memory", "time", "throughput", "comm_bytes", "stages"}
MEMORY_KEYS = {"weights", "gradients", "optimizer", "master_weights", "activations", "buffers", "runtime",
               "total", "capacity"}


def run(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def run_json(*args: str):
    result = run(*args, "--json")
    return result, json.loads(result.stdout)


def test_console_script_is_installed_and_runs():
    script = Path(sys.executable).parent / "planner"
    out = subprocess.run([str(script), "params", "llama3-8b", "--json"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["total"] == 8_030_261_248


@pytest.mark.parametrize("model, total", [("llama3-8b", 8_030_261_248), ("llama3.1-405b", 405_853_388_800)])
def test_params_json_gives_exact_totals(model, total):
    result, doc = run_json("params", model)
    assert result.exit_code == 0
    assert doc["total"] == total and doc["active"] == total
    assert sum(doc["by_component"].values()) == total


def test_params_of_a_moe_model_reports_active():
    result, doc = run_json("params", "mixtral-8x7b")
    assert (doc["total"], doc["active"]) == (46_702_792_704, 12_879_925_248)


def test_params_reads_a_config_json(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "mistral", "vocab_size": 32000, "hidden_size": 4096,
                                  "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
                                  "num_key_value_heads": 8, "tie_word_embeddings": False}))
    result, doc = run_json("params", str(config))
    assert doc["total"] == 7_241_732_096  # Mistral-7B-v0.1, transformers meta-device count


def test_gpus_and_models_list_the_catalog_and_presets():
    result, doc = run_json("gpus")
    assert result.exit_code == 0 and len(doc["gpus"]) >= 25
    h100 = next(g for g in doc["gpus"] if g["id"] == "h100_sxm_80gb")
    assert h100["peak_flops"]["bf16"] == 989e12
    result, doc = run_json("models")
    names = {m["name"] for m in doc["models"]}
    assert {"llama2-7b", "llama2-13b", "llama2-70b", "llama3-8b", "llama3-70b", "llama3.1-405b", "mistral-7b",
            "mixtral-8x7b", "qwen3-8b", "qwen3-30b-a3b", "deepseek-v3", "gpt3-175b"} <= names
    assert "h100_sxm_80gb" in run("gpus").stdout


def test_solve_prints_plans_with_memory_in_gib():
    result = run("solve", CLUSTERS / "h100-8nodes-ib.yaml", JOBS / "llama3-70b-pretrain.yaml", "--top", "3",
                 "--framework", "megatron")  # the table; auto's comparison is tests/test_engines.py's
    assert result.exit_code == 0, result.output
    assert "Best plans" in result.stdout and "GiB" in result.stdout and "MFU" in result.stdout
    assert "activations" in result.stdout


def test_solve_json_follows_the_interface():
    result, doc = run_json("solve", CLUSTERS / "h100-8nodes-ib.yaml", JOBS / "llama3-70b-pretrain.yaml")
    assert result.exit_code == 0
    assert doc["status"] in ("optimal", "feasible") and doc["objective"] == "step-time"
    assert isinstance(doc["solve_seconds"], float) and doc["explanation"] is None
    assert 1 <= len(doc["plans"]) <= 5
    steps = [p["time"]["step"] for p in doc["plans"]]
    assert steps == sorted(steps)
    for plan in doc["plans"]:
        assert PLAN_KEYS <= set(plan) and MEMORY_KEYS <= set(plan["memory"])
        assert plan["fits"] and plan["memory"]["total"] <= plan["memory"]["capacity"]
        assert plan["parallel"]["tp"] in (1, 2, 4, 8)  # the job's constraint
        p = plan["parallel"]
        assert p["tp"] * p["pp"] * p["dp"] * p["cp"] == 64
        assert plan["mbs"] * plan["gas"] * p["dp"] == 512
        assert isinstance(plan["memory"]["total"], int)
        assert plan["memory"]["total"] == max(s["memory"]["total"] for s in plan["stages"])
        assert sum(s["layers"] for s in plan["stages"]) == 80


def test_solve_on_an_impossible_job_exits_1_and_explains():
    # One engine: the explanation sizes the cluster for the first engine that can run the job.
    result, doc = run_json("solve", CLUSTERS / "rtx4090-pcie-box.yaml", JOBS / "llama3.1-405b-full-finetune.yaml",
                           "--framework", "megatron")
    assert result.exit_code == 1
    assert doc["status"] == "infeasible" and doc["plans"] == []
    assert "No plan fits in memory" in doc["explanation"]
    plain = run("solve", CLUSTERS / "rtx4090-pcie-box.yaml", JOBS / "llama3.1-405b-full-finetune.yaml",
                "--framework", "megatron")
    assert plain.exit_code == 1 and "No plan fits" in plain.stdout


def test_brute_force_finds_the_same_best_objective():
    args = ("solve", CLUSTERS / "h100-1node.yaml", JOBS / "llama3-8b-full-finetune.yaml")
    _, cpsat = run_json(*args)
    _, brute = run_json(*args, "--solver", "brute")
    assert cpsat["plans"][0]["time"]["step"] == pytest.approx(brute["plans"][0]["time"]["step"], abs=1e-6)


def test_estimate_of_a_plan_that_cannot_fit_names_the_overflow():
    args = ("estimate", CLUSTERS / "h100-1node.yaml", JOBS / "llama3-8b-full-finetune.yaml",
            "--plan", "tp=1,pp=1,zero=0,recompute=none,mbs=8")
    result = run(*args)
    assert result.exit_code == 1
    assert "does not fit" in result.stdout and "GiB over" in result.stdout and "largest term" in result.stdout
    result, doc = run_json(*args)
    assert result.exit_code == 1 and doc["fits"] is False
    assert doc["memory"]["total"] > doc["memory"]["capacity"]
    assert "over" in doc["why_not"]


def test_estimate_of_a_plan_that_fits():
    result, doc = run_json("estimate", CLUSTERS / "h100-8nodes-ib.yaml", JOBS / "llama3-70b-pretrain.yaml",
                           "--plan", "tp=8 pp=4 zero=1 recompute=selective sp=true mbs=1")
    assert result.exit_code == 0, result.output
    assert doc["fits"] and doc["parallel"] == {"tp": 8, "pp": 4, "dp": 2, "cp": 1, "ep": 1, "vpp": 1, "sp": True}
    assert doc["gas"] == 256 and len(doc["stages"]) == 4
    stages = run("estimate", CLUSTERS / "h100-8nodes-ib.yaml", JOBS / "llama3-70b-pretrain.yaml",
                 "--plan", "tp=8,pp=4,zero=1,mbs=1", "--stages")
    assert "stage 3" in stages.stdout


def test_estimate_checks_a_plan_by_its_own_engines_rules():
    """FSDP2 shards each pipeline stage and torchtitan accumulates one pipeline run per local batch;
    Megatron-Core does neither, and says so."""
    args = ("estimate", CLUSTERS / "h100-8nodes-ib.yaml", JOBS / "llama3-8b-pretrain.yaml", "--plan")
    plan = "tp=2,pp=4,sp=true,zero=3,recompute=full,pipeline_runs={runs},framework={engine}"
    docs = {runs: run_json(*args, plan.format(runs=runs, engine="torchtitan")) for runs in (1, 8)}
    for result, doc in docs.values():
        assert result.exit_code == 0, result.output
    (_, once), (_, runs) = docs[1], docs[8]
    assert (once["pipeline_runs"], runs["pipeline_runs"]) == (1, 8) and once["gas"] == runs["gas"] == 64
    assert runs["time"]["bubble"] == pytest.approx(8 * once["time"]["bubble"])
    refused = run(*args, plan.format(runs=8, engine="megatron"))
    assert refused.exit_code == 2
    assert "megatron runs the step's micro-batches in one pipeline schedule" in refused.output
    assert "zero 3 cannot be combined with pp > 1 on megatron" in refused.output


@pytest.mark.parametrize("args, fragment", [
    (("solve", "missing.yaml", JOBS / "llama3-8b-full-finetune.yaml"), "missing.yaml: file not found"),
    (("params", "llama3-8"), "did you mean"),
    (("solve", CLUSTERS / "h100-1node.yaml", JOBS / "llama3-8b-full-finetune.yaml", "--objective", "speed"),
     "--objective: unknown value 'speed'"),
    (("estimate", CLUSTERS / "h100-1node.yaml", JOBS / "llama3-8b-full-finetune.yaml", "--plan", "tp=3"),
     "--plan"),
    (("estimate", CLUSTERS / "h100-1node.yaml", JOBS / "llama3-8b-full-finetune.yaml", "--plan", "tq=2"),
     "unknown key 'tq' (did you mean tp"),
])
def test_bad_input_exits_2_with_one_paragraph_and_no_traceback(args, fragment):
    result = run(*args)
    assert result.exit_code == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.output
    result = run(*args, "--json")
    assert result.exit_code == 2
    assert fragment in json.loads(result.stdout)["error"]


def test_bad_files_exit_2_naming_file_and_field(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("model: llama3-8b\nseq_len: 4096\nglobal_batch: 8\nconstraints: {zero: [7]}\n")
    result = run("solve", CLUSTERS / "h100-1node.yaml", job)
    assert result.exit_code == 2
    assert f"{job}: constraints.zero: 7 is not valid" in result.stderr


@pytest.mark.parametrize("command", ["solve", "estimate", "params", "gpus", "models"])
def test_every_command_has_help(command):
    result = run(command, "--help")
    assert result.exit_code == 0 and "--json" in result.stdout


def test_the_process_leaves_with_the_commands_code_and_all_its_output():
    """The command's process ends without tearing the interpreter down (cli/app.py `_leave`): its
    exit code, its whole output flushed, and a reader that stops early is no error."""
    script = str(Path(sys.executable).parent / "planner")
    cluster, job = EXAMPLES / "clusters" / "h100-1node.yaml", EXAMPLES / "jobs" / "llama3-8b-full-finetune.yaml"
    out = subprocess.run([script, "solve", str(cluster), str(job), "--json"], capture_output=True, text=True)
    assert out.returncode == 0 and json.loads(out.stdout)["plans"]
    bad = subprocess.run([script, "solve", str(cluster), "missing.yaml"], capture_output=True, text=True)
    assert bad.returncode == 2 and "missing.yaml" in bad.stderr and not bad.stdout
    head = subprocess.run(f"{script} models | head -c 10", shell=True, capture_output=True, text=True)
    assert head.returncode == 0 and len(head.stdout) == 10 and "Traceback" not in head.stderr


def test_no_color_and_piped_output_have_no_escape_codes():
    env = {**os.environ, "NO_COLOR": "1"}
    script = Path(sys.executable).parent / "planner"
    out = subprocess.run([str(script), "gpus"], capture_output=True, text=True, env=env, check=True)
    assert "\x1b[" not in out.stdout


def test_a_command_reads_no_other_commands_docstring(monkeypatch):
    """Command modules' sources are parsed for their docstrings only when a help page lists them."""
    import planner.cli.app as cli_app

    def refuse(module, function):
        raise AssertionError(f"{module}.{function} parsed for its docstring")
    monkeypatch.setattr(cli_app, "_docstring", refuse)
    assert run("params", "llama3-8b").exit_code == 0
    monkeypatch.undo()
    listed = run("--help").stdout
    assert "Exact parameter counts of an architecture" in listed and "List the accelerator catalog." in listed


def test_estimate_names_transformer_engines_cached_fp8_weights(write_yaml):
    job = write_yaml("job.yaml", {"model": "llama3-8b", "training": "pretrain", "seq_len": 4096, "global_batch": 64,
                                  "precision": "fp8", "framework": "megatron"})
    cluster = CLUSTERS / "h100-1node.yaml"
    cached = run("estimate", cluster, job, "--plan", "tp=1,pp=1,zero=0,mbs=1,recompute=full")
    assert "cached fp8 copy of the linear weights" in cached.stdout
    # The distributed optimizer's fp8 parameters (the engine's default with zero 1) leave no copy.
    gathered = run("estimate", cluster, job, "--plan", "tp=1,pp=1,zero=1,mbs=1,recompute=full")
    assert gathered.exit_code == 0 and "cached fp8 copy" not in gathered.stdout
    _, doc = run_json("estimate", cluster, job, "--plan", "tp=1,pp=1,zero=1,mbs=1,recompute=full")
    assert doc["fp8_param_gather"] is True


_CONSTRAINT_VALUES = {"sp": True, "recompute": "full", "quant": "none", "precision": "bf16", "offload": "none",
                      "optimizer": "adamw", "moment_dtype": "fp32", "fp8_param_gather": False}


@pytest.mark.parametrize("key", [k for k in CONSTRAINT_KEYS if k != "framework"])
def test_a_constraint_on_any_plan_key_is_searched_or_refused_by_name(tmp_path, key):
    """Every plan key takes a constraint (a list, or bounds where it counts) and the search answers,
    or the job file is bad input naming `constraints.<key>`; never an internal error."""
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text("gpu: h100_sxm_80gb\ngpus_per_node: 2\n")
    value = _CONSTRAINT_VALUES.get(key, 1)
    shapes = [json.dumps([value])] + (["{max: 2}", "{min: 1}"] if isinstance(value, int) and value is not True
                                      else [])
    for engine in ("megatron", "torchtitan"):
        for shape in shapes:
            job = tmp_path / "job.yaml"
            job.write_text("model: debug-moe\ntraining: pretrain\nseq_len: 256\nglobal_batch: 8\n"
                           f"constraints:\n  {key}: {shape}\n")
            result = run("solve", cluster, job, "--framework", engine)
            assert "internal error" not in result.output, (engine, shape, result.output)
            assert result.exit_code in (0, 1, 2), (engine, shape, result.output)
            if result.exit_code == 2:
                assert f"constraints.{key}" in result.output


def test_the_progress_bar_draws_on_a_terminal_once_its_delay_has_passed(monkeypatch):
    """A search shows its engines' bars on a terminal only (rich loads then, not for --json or a
    pipe): evaluating plans, then solving, each bar gone once its engine is done."""
    import io

    from planner.cli.searching import _EngineBars

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not _EngineBars(("megatron",), enabled=True).enabled  # not a terminal: no bar
    monkeypatch.setattr(sys, "stderr", Terminal())
    bars = _EngineBars(("megatron", "deepspeed"), enabled=True)
    bars.DELAY_S = 0.0
    try:
        bars.update(("megatron", 10, 100))
        assert bars.bar is not None
        assert [t.description for t in bars.bar.tasks] == ["evaluating megatron plans"]
        bars.update(("megatron", None, 100))
        assert [t.description for t in bars.bar.tasks] == ["solving (megatron)"]
        bars.done("megatron")
        assert not bars.bar.tasks
    finally:
        bars.close()
    early = _EngineBars(("megatron",), enabled=True)
    early.update(("megatron", 1, 100))
    assert early.enabled and early.bar is None  # within its delay (a second): nothing drawn yet
