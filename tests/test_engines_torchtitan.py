"""torchtitan: plans to job TOML files (torchtitan 0.2.2's schema), a launch line and flavor
modules, and job TOML files back to plans, round trip included."""
import json
from dataclasses import replace

import pytest
import yaml
from conftest import EXAMPLES, space_gpu
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from planner.cli.app import app
from planner.cost.evaluate import evaluate
from planner.cost.inputs import load_inputs
from planner.cost.plan import ParallelDims, Plan
from planner.engines import UnsupportedPlan, with_framework
from planner.engines.emit import render
from planner.engines.rules import plan_problems
from planner.engines.torchtitan import _generated_stages, parse_torchtitan, parse_torchtitan_config, tomllib
from planner.engines.torchtitan_emit import emit_torchtitan, torchtitan_problems
from planner.engines.torchtitan_models import model_shape, shipped_flavor
from planner.model import load_architecture
from planner.search.space import candidate_plans
from planner.spec.errors import InputError
from planner.spec.job import Constraint

ONE_NODE = EXAMPLES / "clusters" / "h100-1node.yaml"
PRETRAIN_8B = EXAMPLES / "jobs" / "llama3-8b-pretrain.yaml"  # seq 8192, global batch 512, 15T tokens


@pytest.fixture(scope="module")
def llama():
    return load_inputs(ONE_NODE, PRETRAIN_8B)


def toml_of(plan, inputs) -> dict:
    return tomllib.loads(emit_torchtitan(plan, inputs.workload, inputs.cluster)["job.toml"])


def test_emit_torchtitan_writes_the_job_and_its_launch_line(llama):
    plan = Plan(framework="torchtitan", parallel=ParallelDims(tp=2, dp=4, sp=True), zero=3, recompute="full", mbs=2, gas=64)
    files = emit_torchtitan(plan, llama.workload, llama.cluster)
    assert sorted(files) == ["job.toml", "torchtitan_launch.sh"]  # llama3 8B is a shipped flavor
    job = tomllib.loads(files["job.toml"])
    assert job["model"] == {"name": "llama3", "flavor": "8B", "hf_assets_path": "./assets/hf/tokenizer"}
    # 15e12 tokens / (512 x 8192 tokens per step) = 3,576,278.6 steps.
    assert job["training"] == {"local_batch_size": 2, "global_batch_size": 512, "seq_len": 8192, "steps": 3576279,
                               "dataset": "c4", "mixed_precision_param": "bfloat16",
                               "mixed_precision_reduce": "float32", "dtype": "float32", "enable_cpu_offload": False}
    assert job["parallelism"] == {"data_parallel_replicate_degree": 1, "data_parallel_shard_degree": 4,
                                  "fsdp_reshard_after_forward": "always", "tensor_parallel_degree": 2,
                                  "enable_async_tensor_parallel": False, "pipeline_parallel_degree": 1,
                                  "context_parallel_degree": 1, "expert_parallel_degree": 1,
                                  "expert_tensor_parallel_degree": 1}
    assert job["activation_checkpoint"] == {"mode": "full"} and job["optimizer"]["name"] == "AdamW"
    launch = files["torchtitan_launch.sh"].splitlines()
    assert launch[-3:] == ["    -m torchtitan.train \\", "    --job.config_file job.toml \\",
                           '    --model.hf_assets_path "${HF_ASSETS_PATH:?set HF_ASSETS_PATH to the tokenizer folder}"']
    parsed = parse_torchtitan_config(job, llama, "job.toml")
    assert parsed.plan == plan and parsed.warnings == () and parsed.workload.engine.kernels == "hf"


def test_pipelines_name_every_model_part(llama):
    # 32 layers over pp 4 as 7/9/9/7 in two chunks per rank: eight virtual stages, rank k mod 4.
    plan = Plan(framework="torchtitan", parallel=ParallelDims(tp=2, pp=4, vpp=2, sp=True), zero=0, mbs=1, gas=512, precision="bf16-pure",
                first_stage_layers=7, last_stage_layers=7)
    job = toml_of(plan, llama)
    parts = job["parallelism"]["module_fqns_per_model_part"]
    assert [len([m for m in part if m.startswith("layers.")]) for part in parts] == [3, 5, 5, 4, 4, 4, 4, 3]
    assert parts[0][0] == "tok_embeddings" and parts[-1][-2:] == ["norm", "output"]
    assert [m for part in parts for m in part if m.startswith("layers.")] == [f"layers.{i}" for i in range(32)]
    assert job["parallelism"]["pipeline_parallel_schedule"] == "Interleaved1F1B"
    # The local batch carries all 512 micro-batches of a step; bf16-pure is training.dtype bfloat16.
    assert (job["training"]["local_batch_size"], job["parallelism"]["pipeline_parallel_microbatch_size"]) == (512, 1)
    assert job["training"]["dtype"] == "bfloat16"
    assert parse_torchtitan_config(job, llama).plan == plan


def test_flavors_are_matched_by_shape_or_registered():
    assert shipped_flavor(model_shape(load_architecture("llama3-8b"))[0]) == "8B"
    assert shipped_flavor(model_shape(load_architecture("llama3-70b"))[0]) == "70B"
    assert shipped_flavor(model_shape(load_architecture("qwen3-8b"))[0]) == "8B"
    # Llama 3.2 1B ties its embeddings, which torchtitan's llama3 model cannot: the qwen3 model can.
    key, why = model_shape(load_architecture("llama3.2-1b"))
    assert (key[0], shipped_flavor(key), why) == ("qwen3", None, None)
    assert model_shape(load_architecture("gpt3-175b"))[1] == ("LayerNorm, an MLP other than SwiGLU, learned"
                                                              " positions, linear biases")


def test_a_model_torchtitan_does_not_ship_gets_a_flavor_module(tmp_path, write_yaml):
    cluster = write_yaml("cluster.yaml", {"gpu": "h100_sxm_80gb", "gpus_per_node": 8, "nodes": 1})
    inputs = load_inputs(cluster, write_yaml("job.yaml", {"model": "debug", "seq_len": 512, "global_batch": 32}))
    plan = Plan(framework="torchtitan", parallel=ParallelDims(dp=8), zero=3, mbs=1, gas=4)
    files = emit_torchtitan(plan, inputs.workload, inputs.cluster)
    job = tomllib.loads(files["job.toml"])
    assert (job["model"]["flavor"], job["experimental"]) == ("planner_debug", {"custom_import": "planner_flavor"})
    module = files["planner_flavor.py"]
    # debug: hidden 256, MLP 704 > int(8 x 256 / 3) = 682, so multiple_of 704 rounds 682 up to it.
    assert "registry['planner_debug'] = Args(\n    dim=256,\n    n_layers=4,\n    n_heads=8,\n    n_kv_heads=4,\n" \
           "    vocab_size=1024,\n    multiple_of=704,\n    ffn_dim_multiplier=None,\n)\n" in module
    compile(module, "planner_flavor.py", "exec")  # valid Python; the planner never runs it
    parsed = parse_torchtitan_config(job, inputs, "job.toml")
    assert parsed.plan == plan
    assert parsed.warnings == ("model llama3 planner_debug: not a flavor torchtitan 0.2.2 ships, registered by"
                               " experimental.custom_import planner_flavor (which the planner does not run); its"
                               " shape is not checked; planned with the job's debug",)


@pytest.mark.parametrize("plan, message", [
    (Plan(framework="torchtitan", parallel=ParallelDims(tp=2, dp=4), zero=3, mbs=1, gas=128), "sp=false with tp=2"),
    (Plan(framework="torchtitan", parallel=ParallelDims(dp=8), zero=1, mbs=1, gas=64), "zero=1 (it runs zero in 0, 2, 3)"),
    (Plan(framework="torchtitan", parallel=ParallelDims(tp=2, dp=4, sp=True), zero=0, mbs=1, gas=128),
     "DDP (zero=0, dp=4) with other parallelism"),
    (Plan(framework="torchtitan", parallel=ParallelDims(tp=8, sp=True), zero=0, mbs=1, gas=512),
     "bf16 mixed precision with tp or pp but no FSDP: torchtitan then trains in fp32"),
    (Plan(framework="torchtitan", parallel=ParallelDims(dp=8), zero=3, mbs=1, gas=64, precision="fp16"), "precision=fp16"),
    (Plan(framework="torchtitan", parallel=ParallelDims(dp=8), zero=3, mbs=1, gas=64, offload="optimizer"), "offload=optimizer"),
])
def test_emit_refuses_plans_torchtitan_cannot_run(llama, plan, message):
    with pytest.raises(UnsupportedPlan) as err:
        emit_torchtitan(plan, llama.workload, llama.cluster)
    assert str(err.value).startswith("torchtitan cannot run this plan: ") and message in str(err.value)


# -- job files to plans -------------------------------------------------------------------------

def test_defaults_are_job_configs(llama):
    # An almost empty file: dp_shard -1 takes the 8 GPUs, global batch -1 is local x dp, and the
    # default activation checkpointing is selective option "2": every second block a rank builds.
    job = parse_torchtitan_config({"training": {"seq_len": 8192}}, llama, "job.toml")
    assert job.plan == Plan(framework="torchtitan", parallel=ParallelDims(dp=8), zero=3, recompute="full", mbs=8, gas=1,
                            recompute_layers=(16,))
    assert "the file's global batch 64 differs from the job's global_batch 512; planned with the file's" \
        in job.warnings
    assert "model llama3 debugmodel: not a flavor torchtitan 0.2.2 ships; its shape is not checked; planned with" \
           " the job's llama3-8b" in job.warnings


def test_generated_stages_follow_torchtitan():
    # generate_llm_fqn_per_model_part: 30 layers + 1 + 1 effective over 4 stages = 8 each, less the
    # embedding and the output on the ends; 32 layers over 4: 34 = 9 + 9 + 8 + 8.
    assert _generated_stages(4, 30, 1, 1) == ["E" + "t" * 7, "t" * 8, "t" * 8, "t" * 7 + "L"]
    assert _generated_stages(4, 32, 1, 1) == ["E" + "t" * 8, "t" * 9, "t" * 8, "t" * 7 + "L"]


def test_pipeline_defaults_and_schedules_are_read_or_warned(llama):
    base = {"training": {"seq_len": 8192, "local_batch_size": 64, "global_batch_size": 512},
            "parallelism": {"pipeline_parallel_degree": 4, "data_parallel_shard_degree": 1,
                            "tensor_parallel_degree": 2, "pipeline_parallel_microbatch_size": 2},
            "activation_checkpoint": {"mode": "none"}}
    job = parse_torchtitan_config(base, llama)
    # 1F1B, one stage per rank; 32 layers + 2 over 4 stages: 8/9/8/7, middle stages unequal. A step
    # accumulates 512 / 64 = 8 local batches of 64 / 2 = 32 micro-batches each, one pipeline run each.
    assert (job.plan.pp, job.plan.vpp, job.plan.mbs, job.plan.gas, job.plan.zero) == (4, 1, 2, 256, 0)
    assert (job.plan.pipeline_runs, job.plan.microbatches_per_run) == (8, 32)
    assert any(w.startswith("pipeline stages of 8/9/8/7 layers") for w in job.warnings)
    assert job.plan.precision == "fp32"  # TP x PP without FSDP: maybe_enable_amp turns autocast off
    interleaved = {**base, "parallelism": {**base["parallelism"], "pipeline_parallel_schedule": "ZBVZeroBubble"}}
    job = parse_torchtitan_config(interleaved, llama)
    assert job.plan.vpp == 2 and any(w.startswith("pipeline_parallel_schedule ZBVZeroBubble") for w in job.warnings)


@pytest.mark.parametrize("config, field, message", [
    ({"parallelism": {"data_parallel_shard_degree": 3}}, "parallelism.data_parallel_shard_degree",
     "!= the cluster's 8 GPUs"),
    ({"parallelism": {"data_parallel_replicate_degree": 4, "data_parallel_shard_degree": 1,
                      "tensor_parallel_degree": 2}}, "parallelism.data_parallel_replicate_degree",
     "DDP has not supported > 1D parallelism"),
    ({"training": {"local_batch_size": 0}}, "training.local_batch_size", "must be an integer >= 1, got 0"),
    ({"activation_checkpoint": {"mode": "some"}}, "activation_checkpoint.mode", "valid: selective, full"),
    ({"training": {"dtype": "float16"}}, "training.dtype", "valid: float32, bfloat16"),
])
def test_bad_files_name_file_and_key(llama, config, field, message):
    with pytest.raises(InputError) as err:
        parse_torchtitan_config(config, llama, "job.toml")
    assert (err.value.file, err.value.field) == ("job.toml", field) and message in err.value.detail


def test_unknown_and_unmodelled_keys_are_warnings(llama, tmp_path):
    path = tmp_path / "job.toml"
    path.write_text('[training]\nseq_len = 8192\nlocal_batch_size = 1\n[compile]\nenable = true\n'
                    '[parallelism]\ndisable_loss_parallel = true\nmy_degree = 2\n[mystery]\nx = 1\n'
                    '[optimizer]\nname = "Lion"\n')
    job = parse_torchtitan(path, llama)
    for warning in ("compile.enable: torch.compile fuses kernels and may keep fewer activations; not modelled",
                    "parallelism.disable_loss_parallel: gathers full-vocabulary logits on every TP rank (more memory)",
                    "parallelism.my_degree: not read by the planner (its effect on memory and time is not counted)",
                    "[mystery]: not a torchtitan 0.2.2 section",
                    "optimizer.name Lion: torchtitan builds Adam and AdamW only; planned with the job's adamw"):
        assert warning in job.warnings
    path.write_text("[training\nseq_len = 1\n")
    with pytest.raises(InputError) as err:
        parse_torchtitan(path, llama)
    assert err.value.file == str(path) and err.value.detail.startswith("not valid TOML")


# -- round trip over the solver's plan space -----------------------------------------------------

_JOBS = {
    "dense": ({"model": "debug", "seq_len": 512, "global_batch": 32},
              {"precision": ["bf16", "bf16-pure", "fp32", "fp8"], "optimizer": ["adamw", "adam"],
               "offload": ["none", "optimizer+params"], "cp": [1, 2], "vpp": [1, 2]}),
    "uneven": ({"model": {"model_type": "llama", "hidden_size": 256, "intermediate_size": 704,
                          "num_hidden_layers": 6, "num_attention_heads": 8, "num_key_value_heads": 4,
                          "vocab_size": 1024}, "seq_len": 256, "global_batch": 16, "precision": "fp32"}, {}),
    "moe": ({"model": "debug-moe", "seq_len": 256, "global_batch": 16}, {"ep": [1, 2, 4, 8]}),
    "blackwell": ({"model": "debug", "seq_len": 512, "global_batch": 32, "precision": "mxfp8"}, {"cp": [1, 2]}),
}


@pytest.fixture(scope="module")
def spaces(tmp_path_factory):
    root = tmp_path_factory.mktemp("torchtitan")
    for gpu in ("h100_sxm_80gb", "b200_hgx"):
        (root / f"{gpu}.yaml").write_text(yaml.safe_dump({"gpu": gpu, "gpus_per_node": 8, "nodes": 1}))
    out = {}
    for name, (job, constraints) in _JOBS.items():
        (root / f"{name}.yaml").write_text(yaml.safe_dump(job))
        inputs = load_inputs(root / f"{space_gpu(job)}.yaml", root / f"{name}.yaml")
        inputs = replace(inputs, workload=with_framework(inputs.workload, "torchtitan"))
        limits = {k: Constraint(values=tuple(v)) for k, v in constraints.items()}
        plans = [p for p in candidate_plans(inputs.workload, inputs.cluster, inputs.defaults, limits)
                 if not torchtitan_problems(p, inputs.workload)]
        out[name] = (inputs, plans)
    return out


def test_the_round_trip_spaces_are_not_trivial(spaces):
    sizes = {name: len(plans) for name, (_, plans) in spaces.items()}
    assert sizes["dense"] > 300 and sizes["uneven"] > 20 and sizes["moe"] > 20, sizes
    dense = [p for name in spaces for p in spaces[name][1]]
    assert {p.zero for p in dense} == {0, 2, 3} and any(p.pp > 1 for p in dense) and any(p.vpp > 1 for p in dense)
    assert any(p.ep > 1 for p in spaces["moe"][1]) and any(p.cp > 1 for p in spaces["dense"][1])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_parse_of_emit_is_the_plan_with_the_same_memory_and_time(spaces, data):
    name = data.draw(st.sampled_from(sorted(spaces)))
    inputs, plans = spaces[name]
    plan = data.draw(st.sampled_from(plans))
    job = parse_torchtitan_config(toml_of(plan, inputs), inputs)
    assert job.plan == plan and job.framework == "torchtitan"
    assert job.workload == with_framework(inputs.workload, "torchtitan")
    ev, expected = evaluate(job.plan, job.workload, inputs.cluster), evaluate(plan, job.workload, inputs.cluster)
    assert (ev.memory.total, ev.time.step) == (expected.memory.total, expected.time.step)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_pipeline_runs_round_trip_through_the_local_batch(spaces, data):
    """Under PP, torchtitan runs the schedule once per local batch and accumulates global / (local x
    dp) of them (train.py): a plan of several runs is written as a smaller local batch and read back
    whole; each run fills and drains the pipeline again."""
    name = data.draw(st.sampled_from([n for n in sorted(spaces) if any(p.pp > 1 for p in spaces[n][1])]))
    inputs, plans = spaces[name]
    plan = data.draw(st.sampled_from([p for p in plans if p.pp > 1]))
    runs = [r for r in range(2, plan.gas + 1) if plan.gas % r == 0
            and not plan_problems(plan.with_(pipeline_runs=r), inputs.workload, inputs.cluster)
            and not torchtitan_problems(plan.with_(pipeline_runs=r), inputs.workload)]
    assume(runs)
    runs_plan = plan.with_(pipeline_runs=data.draw(st.sampled_from(runs)))
    toml = toml_of(runs_plan, inputs)
    assert toml["training"]["local_batch_size"] == plan.mbs * runs_plan.microbatches_per_run
    job = parse_torchtitan_config(toml, inputs)
    assert job.plan == runs_plan
    once, accumulated = (evaluate(p, job.workload, inputs.cluster) for p in (plan, runs_plan))
    assert accumulated.time.bubble == pytest.approx(runs_plan.pipeline_runs * once.time.bubble)
    assert accumulated.time.step > once.time.step
    assert accumulated.memory.total <= once.memory.total  # fewer micro-batches in flight, never more


def test_check_of_the_emitted_job_reports_the_estimate(tmp_path, llama):
    plan = Plan(framework="torchtitan", parallel=ParallelDims(tp=2, dp=4, sp=True), zero=3, recompute="full", mbs=1, gas=128)
    for name, text in render("torchtitan", plan, llama).items():
        (tmp_path / name).write_text(text)
    result = CliRunner().invoke(app, ["check", str(ONE_NODE), str(PRETRAIN_8B), "--torchtitan",
                                      str(tmp_path / "job.toml"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    expected = evaluate(plan, with_framework(llama.workload, "torchtitan"), llama.cluster)
    assert doc["source"]["framework"] == "torchtitan"
    assert doc["memory"]["total"] == expected.memory.total and doc["time"]["step"] == expected.time.step
    bad = CliRunner().invoke(app, ["check", str(ONE_NODE), str(PRETRAIN_8B), "--torchtitan",
                                   str(tmp_path / "job.toml"), "--micro-batch", "2"])
    assert bad.exit_code == 2 and "--micro-batch are for DeepSpeed and accelerate configs" in bad.output
