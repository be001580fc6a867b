"""DeepSpeed configs to plans (DeepSpeed's batch rules, HF "auto" values, every key accounted
for) and plans to configs, round trip included."""
import json

import pytest
import yaml
from conftest import EXAMPLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.cost.inputs import load_inputs
from planner.cost.plan import ParallelDims, Plan
from planner.engines import UnsupportedPlan
from planner.engines.deepspeed import parse_deepspeed, parse_deepspeed_config
from planner.engines.deepspeed_emit import deepspeed_config, deepspeed_problems, emit_deepspeed
from planner.engines.profiles import engine_workload
from planner.search.space import candidate_plans
from planner.spec.errors import InputError
from planner.spec.job import Constraint

H100_NODE = EXAMPLES / "clusters" / "h100-1node.yaml"
FULL_8B = EXAMPLES / "jobs" / "llama3-8b-full-finetune.yaml"  # global batch 64, seq 8192
FULL_70B = EXAMPLES / "jobs" / "llama3-70b-full-finetune.yaml"  # global batch 64, seq 4096


@pytest.fixture(scope="module")
def inputs_8b():
    return load_inputs(H100_NODE, FULL_8B)


def parse(config: dict, inputs, **kw):
    return parse_deepspeed_config(config, inputs, "ds.json", **kw)


def test_zero2_offload_example(inputs_8b):
    job = parse_deepspeed(EXAMPLES / "deepspeed" / "zero2-offload.json", inputs_8b)
    # The plan names its engine (plan key `framework`).
    assert job.plan == Plan(framework="deepspeed", parallel=ParallelDims(tp=1, pp=1, dp=8), zero=2, recompute="full", mbs=1, gas=8,
                            precision="bf16", offload="optimizer", optimizer="adamw")
    assert job.workload.global_batch == 64 and job.workload.engine.name == "deepspeed"
    assert job.read["zero_optimization.offload_optimizer.device"] == "cpu"
    assert job.read["optimizer.type"] == "AdamW"
    # overlap_comm: 4.5 x 2 bytes x (2e8 reduce + 2e8 all-gather) (DeepSpeed docs)
    assert job.framework_buffers == 3_600_000_000
    assert job.warnings[0].startswith("activation_checkpointing only configures checkpointing; assumed")
    assert job.warnings[-1] == ("read; no effect on the planner's memory or step time: gradient_clipping,"
                                " steps_per_print, wall_clock_breakdown, scheduler")


def test_zero3_hf_auto_example_takes_the_job_and_the_trainer_arguments():
    inputs = load_inputs(H100_NODE, FULL_70B)
    path = EXAMPLES / "deepspeed" / "zero3-hf-auto.json"
    job = parse_deepspeed(path, inputs)
    # "auto" micro-batch: the HF Trainer's default --per_device_train_batch_size 8; accumulation
    # "auto" reaches the job's 64 sequences on 8 ranks with it: 1
    assert (job.plan.zero, job.plan.mbs, job.plan.gas, job.plan.recompute, job.plan.offload) == (3, 8, 1, "none", "none")
    assert job.plan.precision == "bf16"
    # ZeRO-3: gathered 16-bit parameters up to stage3_max_live_parameters (1e9) + reduce bucket
    # ("auto" = hidden^2 = 8192^2, transformers trainer_config_finalize)
    assert job.framework_buffers == 2 * (1_000_000_000 + 8192**2)
    assert any(w.startswith('train_micro_batch_size_per_gpu is "auto": the HF Trainer runs its'
                            ' --per_device_train_batch_size, default 8') for w in job.warnings)
    job = parse_deepspeed(path, inputs, micro_batch=4, gradient_checkpointing=True)
    assert (job.plan.mbs, job.plan.gas, job.plan.recompute) == (4, 2, "full")
    assert job.read["per_device_train_batch_size"] == 4 and job.read["gradient_checkpointing"] is True


@pytest.mark.parametrize("batch, expected", [
    ({"train_batch_size": 64, "train_micro_batch_size_per_gpu": 2}, (2, 4)),
    ({"train_batch_size": 64, "gradient_accumulation_steps": 4}, (2, 4)),
    ({"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 4}, (2, 4)),
    ({"train_batch_size": 64}, (8, 1)),
    ({"train_micro_batch_size_per_gpu": 8}, (8, 1)),
    ({"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": 4}, (8, 4)),
    ({"train_batch_size": "auto", "train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": "auto"}, (4, 2)),
    ({"train_batch_size": "auto"}, (8, 1)),
])
def test_batch_follows_deepspeeds_rules(inputs_8b, batch, expected):
    plan = parse(batch, inputs_8b).plan
    assert (plan.mbs, plan.gas, plan.dp) == (*expected, 8)


@pytest.mark.parametrize("batch, field, message", [
    ({"train_batch_size": 64, "train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 2},
     "train_batch_size", "64 != train_micro_batch_size_per_gpu (2) * gradient_accumulation_steps (2) *"
                         " data-parallel size (8)"),
    ({}, "train_micro_batch_size_per_gpu", "set train_batch_size or train_micro_batch_size_per_gpu"),
    ({"train_micro_batch_size_per_gpu": 3, "gradient_accumulation_steps": "auto"}, "gradient_accumulation_steps",
     "the job's global_batch 64 is not a multiple of micro-batch 3 x data-parallel size 8"),
    ({"train_batch_size": 0}, "train_batch_size", 'must be an integer >= 1 or "auto", got 0'),
    ({"train_batch_size": "64"}, "train_batch_size", 'must be an integer >= 1 or "auto", got "64"'),
])
def test_bad_batches_name_the_key(inputs_8b, batch, field, message):
    with pytest.raises(InputError) as err:
        parse(batch, inputs_8b)
    assert (err.value.file, err.value.field) == ("ds.json", field)
    assert message in err.value.detail


def test_a_batch_other_than_the_jobs_is_planned_and_said(inputs_8b):
    job = parse({"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 2}, inputs_8b)
    assert job.workload.global_batch == 16
    assert ("the config's batch (1 x 2 accumulation x 8 data-parallel = 16) differs from the job's global_batch 64;"
            " planned with the config's") in job.warnings


@pytest.mark.parametrize("config, field, message", [
    ({"zero_optimization": {"stage": 4}}, "zero_optimization.stage", "must be 0, 1, 2 or 3, got 4"),
    ({"zero_optimization": {"stage": 3, "offload_param": {"device": "gpu"}}},
     "zero_optimization.offload_param.device", 'must be none, cpu or nvme, got "gpu"'),
    ({"bf16": {"enabled": True}, "fp16": {"enabled": True}}, "fp16.enabled", "cannot both be enabled"),
    ({"bf16": {"enabled": "yes"}}, "bf16.enabled", 'must be true or false or "auto", got "yes"'),
    ({"tensor_parallel": {"autotp_size": 3}}, "tensor_parallel.autotp_size",
     "tp(3) * sequence parallel(1) = 3 does not divide the cluster's 8 GPUs"),
    ({"zero_optimization": []}, "zero_optimization", "must be a JSON object, got []"),
    ({"data_parallel_size": 4}, "data_parallel_size", "4, but the cluster's 8 GPUs / (tp 1 * sequence parallel 1) = 8"),
])
def test_bad_values_name_file_and_key(inputs_8b, config, field, message):
    with pytest.raises(InputError) as err:
        parse({"train_batch_size": 64, **config}, inputs_8b)
    assert (err.value.file, err.value.field) == ("ds.json", field)
    assert message in err.value.detail


def test_a_plan_the_frameworks_reject_is_bad_input(inputs_8b):
    with pytest.raises(InputError) as err:
        parse({"train_batch_size": 64, "zero_optimization": {"stage": 2, "offload_param": {"device": "cpu"},
                                                             "offload_optimizer": {"device": "cpu"}}}, inputs_8b)
    assert str(err.value) == ("ds.json: this configuration cannot run on the cluster: offloading parameters needs"
                              " zero 3 (ZeRO-Infinity)")


def test_invalid_json_names_file_and_line(tmp_path, inputs_8b):
    path = tmp_path / "ds.json"
    path.write_text('{"train_batch_size": 64,\n "zero_optimization": {"stage": 3,}}')
    with pytest.raises(InputError) as err:
        parse_deepspeed(path, inputs_8b)
    assert str(err.value) == f"{path}: not valid JSON: Expecting property name enclosed in double quotes at line 2 column 35"


def test_every_key_the_planner_does_not_model_is_a_warning(inputs_8b):
    job = parse({"train_batch_size": 64, "amp": {"enabled": True}, "communication_data_type": "fp32",
                 "my_key": 1, "zero_optimization": {"stage": 3, "stage3_prefetch_bucket": 5, "zero_hpz_partition_size": 8},
                 "bf16": {"enabled": True}}, inputs_8b)
    assert job.warnings == (
        "zero_optimization.stage3_prefetch_bucket is not a DeepSpeed key (did you mean stage3_prefetch_bucket_size or"
        " prefetch_bucket_size?);"
        " DeepSpeed's config models reject unknown keys",
        "zero_optimization.zero_hpz_partition_size: ZeRO++ hpZ keeps a second copy of the weights sharded within a"
        " node (more memory)",
        "amp: removed in DeepSpeed 0.19, whose DeepSpeedConfig rejects it",
        "communication_data_type: sets the dtype of gradient all-reduce; the planner counts 16-bit gradients",
        "my_key: not modelled",
    )


@pytest.mark.parametrize("config, precision", [
    ({"bf16": {"enabled": True}}, "bf16"),
    ({"bfloat16": {"enabled": True}}, "bf16"),
    ({"fp16": {"enabled": True, "loss_scale": 0}}, "fp16"),
    ({"torch_autocast": {"enabled": True, "dtype": "bfloat16"}}, "bf16-autocast"),
    ({}, "fp32"),
    ({"bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"}}, "bf16"),  # the job's bf16
])
def test_precision(inputs_8b, config, precision):
    assert parse({"train_batch_size": 64, **config}, inputs_8b).plan.precision == precision


@pytest.mark.parametrize("optimizer, ours, warning", [
    ({"type": "AdamW", "params": {"lr": 1e-4}}, "adamw", None),
    ({"type": "Adam"}, "adam", "optimizer.type Adam differs from the job's optimizer adamw; planned with adam"),
    ({"type": "SGD", "params": {"momentum": 0.9}}, "sgd-momentum", None),
    ({"type": "Lion"}, "sgd-momentum", "optimizer.type Lion: Lion keeps one momentum per parameter; counted like"
                                       " SGD with momentum"),
    ({"type": "Sophia"}, "adamw", "optimizer.type Sophia is not modelled; planned with the job's optimizer adamw"),
    ({}, "adamw", None),
])
def test_optimizer_types(inputs_8b, optimizer, ours, warning):
    job = parse({"train_batch_size": 64, "bf16": {"enabled": True}, "optimizer": optimizer}, inputs_8b)
    assert job.plan.optimizer == ours
    assert warning is None or warning in job.warnings


def test_offload_devices(inputs_8b):
    nvme = parse({"train_batch_size": 64, "zero_optimization": {
        "stage": 3, "offload_optimizer": {"device": "nvme", "nvme_path": "/nvme"},
        "offload_param": {"device": "cpu", "pin_memory": False}}}, inputs_8b)
    assert nvme.plan.offload == "optimizer+params"
    assert ("zero_optimization.offload_optimizer.device nvme: counted as host memory (the planner has no NVMe tier)"
            in nvme.warnings)
    assert any(w.startswith("zero_optimization.offload_param.pin_memory false") for w in nvme.warnings)
    params_only = parse({"train_batch_size": 64, "zero_optimization": {"stage": 3, "offload_param": {"device": "cpu"}}},
                        inputs_8b)
    assert params_only.plan.offload == "params"  # weights on the host, the optimizer on the GPU
    legacy = parse({"train_batch_size": 64, "zero_optimization": {"stage": 2, "cpu_offload": True}}, inputs_8b)
    assert legacy.plan.offload == "optimizer"


def test_autotp_ulysses_and_gradient_checkpointing(inputs_8b):
    job = parse({"train_batch_size": 64, "tensor_parallel": {"autotp_size": 2}, "bf16": {"enabled": True}},
                inputs_8b, gradient_checkpointing=True)
    assert (job.plan.tp, job.plan.dp, job.plan.mbs, job.plan.gas, job.plan.recompute) == (2, 4, 16, 1, "full")
    job = parse({"train_micro_batch_size_per_gpu": 1, "sequence_parallel_size": 4}, inputs_8b)
    assert (job.plan.cp, job.plan.dp, job.workload.global_batch) == (4, 2, 2)


def test_emit_writes_what_deepspeed_reads(inputs_8b):
    plan = Plan(parallel=ParallelDims(tp=2, dp=4), zero=3, recompute="full", mbs=2, gas=8, precision="bf16",
                offload="optimizer", optimizer="adamw")
    layer = 128_256 * 4_096 // 2  # Llama-3-8B's largest module (the embedding), split over tp 2
    # With AutoTP the HF Trainer would check train_batch_size against all 8 processes rather than
    # the 4 data-parallel ones, so it is left to DeepSpeed (micro-batch x accumulation x dp).
    assert deepspeed_config(plan, inputs_8b.workload) == {
        "train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 8,
        "zero_optimization": {"stage": 3, "overlap_comm": True, "contiguous_gradients": True,
                              "reduce_bucket_size": 2_912_711, "stage3_prefetch_bucket_size": layer,
                              "stage3_max_live_parameters": 2 * layer - 2_912_711,
                              "offload_optimizer": {"device": "cpu", "pin_memory": True}},
        "bf16": {"enabled": True},
        "optimizer": {"type": "AdamW"},
        "activation_checkpointing": {"partition_activations": False, "cpu_checkpointing": False,
                                     "contiguous_memory_optimization": False, "synchronize_checkpoint_boundary": False},
        "tensor_parallel": {"autotp_size": 2},
    }


def test_emitted_buckets_stay_within_the_planners_buffers(inputs_8b):
    plan = Plan(parallel=ParallelDims(dp=8), zero=2, mbs=1, gas=8)
    job = parse(deepspeed_config(plan, inputs_8b.workload), inputs_8b)
    assert job.framework_buffers <= 2 * 25 * 2**20  # PyTorch DDP's two 25 MiB buckets (memory.py)


@pytest.mark.parametrize("plan, message", [
    (Plan(parallel=ParallelDims(pp=2, dp=4), mbs=1, gas=16),
     "DeepSpeed cannot run this plan: pipeline parallelism pp=2 (it runs pp in 1)"),
    (Plan(parallel=ParallelDims(tp=2, dp=4, sp=True), recompute="selective", mbs=1, gas=16),
     "DeepSpeed cannot run this plan: Megatron sequence parallelism sp=true (it runs sp in false);"
     " recompute=selective (it runs recompute in none, full)"),
    (Plan(parallel=ParallelDims(tp=2, dp=2, cp=2), mbs=1, gas=32),
     "DeepSpeed cannot run this plan: sequence parallelism (cp=2) together with AutoTP (tp=2)"),
])
def test_emit_refuses_plans_deepspeed_cannot_run(inputs_8b, plan, message):
    with pytest.raises(UnsupportedPlan) as err:
        deepspeed_config(plan, inputs_8b.workload)
    assert str(err.value) == message


# Round trip over the solver's plan space on small jobs: every plan DeepSpeed runs.
_CLUSTER = {"gpu": "h100_sxm_80gb", "gpus_per_node": 8, "nodes": 1}
_JOBS = {
    "dense": ({"model": "debug", "seq_len": 512, "global_batch": 32, "optimizer": "adamw8bit"},
              {"precision": ["bf16", "fp16", "fp32", "bf16-autocast"], "optimizer": ["adamw8bit", "adamw", "adam",
               "sgd", "sgd-momentum"], "offload": ["none", "optimizer", "optimizer+params"], "cp": [1, 2, 4]}),
    "moe": ({"model": "debug-moe", "seq_len": 256, "global_batch": 16},
            {"ep": [1, 2, 4, 8], "offload": ["none", "optimizer"]}),
    "lora": ({"model": "debug", "seq_len": 256, "global_batch": 8, "training": "qlora", "lora": {"rank": 8}}, {}),
}


def deepspeed_spaces(root) -> dict:
    """{job name: (inputs, plans DeepSpeed runs)} for the small jobs above, files under `root`."""
    out = {}
    (root / "cluster.yaml").write_text(yaml.safe_dump(_CLUSTER))
    for name, (job, constraints) in _JOBS.items():
        (root / f"{name}.yaml").write_text(yaml.safe_dump(job))
        inputs = load_inputs(root / "cluster.yaml", root / f"{name}.yaml")
        limits = {k: Constraint(values=tuple(v)) for k, v in constraints.items()}
        # The plans of DeepSpeed's own search space (its profile), which the emitter must all write.
        workload = engine_workload(inputs.workload, "deepspeed")
        plans = list(candidate_plans(workload, inputs.cluster, inputs.defaults, limits))
        assert not any(deepspeed_problems(p, workload) for p in plans)
        out[name] = (inputs, plans)
    return out


@pytest.fixture(scope="module")
def spaces(tmp_path_factory):
    return deepspeed_spaces(tmp_path_factory.mktemp("ds"))


def test_the_round_trip_spaces_are_not_trivial(spaces):
    sizes = {name: len(plans) for name, (_, plans) in spaces.items()}
    assert sizes["dense"] > 1000 and sizes["moe"] > 100 and sizes["lora"] > 40, sizes


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_parse_of_emit_is_the_plan(spaces, data):
    name = data.draw(st.sampled_from(sorted(spaces)))
    inputs, plans = spaces[name]
    plan = data.draw(st.sampled_from(plans))
    config = json.loads(json.dumps(deepspeed_config(plan, inputs.workload)))
    job = parse_deepspeed_config(config, inputs)
    assert job.plan == plan
    assert job.workload.global_batch == inputs.workload.global_batch


# -- the launch files ------------------------------------------------------------------------------

def test_emit_deepspeed_writes_config_trainer_arguments_and_launch(inputs_8b):
    plan = Plan(parallel=ParallelDims(dp=8), zero=2, recompute="full", mbs=2, gas=4, precision="bf16",
                optimizer="adamw8bit")
    files = emit_deepspeed(plan, inputs_8b.workload, inputs_8b.cluster)
    assert sorted(files) == ["deepspeed_launch.sh", "ds_config.json", "training_args.json"]
    config, args = json.loads(files["ds_config.json"]), json.loads(files["training_args.json"])
    assert config == deepspeed_config(plan, inputs_8b.workload) and "optimizer" not in config
    # The values the HF Trainer checks against the config (trainer_config_process) agree with it,
    # and the optimizer the config leaves out is the Trainer's optim.
    assert args == {"output_dir": "output", "per_device_train_batch_size": 2, "gradient_accumulation_steps": 4,
                    "gradient_checkpointing": True, "bf16": True, "fp16": False, "optim": "adamw_bnb_8bit",
                    "deepspeed": "ds_config.json"}
    assert config["train_batch_size"] == 8 * args["per_device_train_batch_size"] * args["gradient_accumulation_steps"]
    launch = files["deepspeed_launch.sh"].splitlines()
    assert launch[-5:] == ['cd "$(dirname "$0")"', "deepspeed \\", "    --num_gpus 8 \\",
                           '    "${TRAIN_SCRIPT:?set TRAIN_SCRIPT: your training script}" \\',
                           "    training_args.json"]


def test_several_nodes_launch_from_a_hostfile():
    inputs = load_inputs(EXAMPLES / "clusters" / "h100-8nodes-ib.yaml", FULL_8B)
    plan = Plan(parallel=ParallelDims(dp=64), zero=3, mbs=1, gas=1)
    launch = emit_deepspeed(plan, inputs.workload, inputs.cluster)["deepspeed_launch.sh"]
    assert '    --hostfile "${HOSTFILE:?set HOSTFILE to a file with one line per node: HOST slots=8}" \\' in launch
    assert "    --num_nodes 8 \\" in launch and "    --num_gpus 8 \\" in launch
    with pytest.raises(UnsupportedPlan, match="the plan uses 8 GPUs; the cluster has 64"):
        emit_deepspeed(Plan(parallel=ParallelDims(dp=8), mbs=1, gas=8), inputs.workload, inputs.cluster)


def test_lora_on_multi_latent_attention_targets_the_latent_projections(tmp_path):
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(_CLUSTER))
    (tmp_path / "job.yaml").write_text(yaml.safe_dump({"model": "debug-moe", "seq_len": 256, "global_batch": 16,
                                                       "training": "qlora", "lora": {"rank": 8, "alpha": 16}}))
    inputs = load_inputs(tmp_path / "cluster.yaml", tmp_path / "job.yaml")
    plan = Plan(parallel=ParallelDims(dp=8), zero=3, mbs=1, gas=2, lora_rank=8, quant="nf4")
    files = emit_deepspeed(plan, inputs.workload, inputs.cluster, lora_alpha=16)
    # debug-moe has a q LoRA (q_a_proj, q_b_proj) and the shared kv latent (transformers' DeepseekV3Attention).
    assert json.loads(files["peft_config.json"])["target_modules"] == [
        "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"]
    assert json.loads(files["peft_config.json"])["lora_alpha"] == 16
    assert json.loads(files["bnb_config.json"])["bnb_4bit_quant_storage"] == "bfloat16"  # ZeRO-3 shards it


def test_check_reads_the_trainer_arguments_beside_the_config(tmp_path, inputs_8b):
    from typer.testing import CliRunner

    from planner.cli.app import app
    plan = Plan(parallel=ParallelDims(dp=8), zero=3, recompute="full", mbs=1, gas=8, precision="bf16")
    for name, text in emit_deepspeed(plan, inputs_8b.workload, inputs_8b.cluster).items():
        (tmp_path / name).write_text(text)
    args = ["check", str(H100_NODE), str(FULL_8B), "--deepspeed", str(tmp_path / "ds_config.json"), "--json"]
    with_args = CliRunner().invoke(app, args + ["--training-args", str(tmp_path / "training_args.json")])
    doc = json.loads(with_args.stdout)
    assert doc["source"]["read"]["training_args.gradient_checkpointing"] is True
    assert (doc["parallel"]["dp"], doc["zero"], doc["mbs"], doc["gas"], doc["recompute"]) == (8, 3, 1, 8, "full")
    # Without them the config's activation_checkpointing section is taken as the same promise.
    doc = json.loads(CliRunner().invoke(app, args).stdout)
    assert doc["recompute"] == "full" and any(w.startswith("activation_checkpointing only configures")
                                              for w in doc["warnings"])
