"""Hugging Face models on FSDP2 through accelerate: plans to accelerate configs, TrainingArguments,
PEFT and bitsandbytes configs, and accelerate configs back to plans (FSDP2, FSDP1, DDP, and
DeepSpeed sections read as the deepspeed engine), round trip included."""
import json
import os
from dataclasses import replace

import pytest
import yaml
from conftest import EXAMPLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from planner.cli.app import app
from planner.cost.evaluate import evaluate
from planner.cost.inputs import load_inputs
from planner.cost.plan import ParallelDims, Plan
from planner.engines import UnsupportedPlan, with_framework
from planner.engines.emit import FILE_NAMES, render
from planner.engines.fsdp2 import parse_accelerate, parse_accelerate_config
from planner.engines.fsdp2_emit import emit_fsdp2, fsdp2_problems
from planner.engines.hf_trainer import TrainerFiles
from planner.model import load_architecture
from planner.search.space import candidate_plans
from planner.spec.errors import InputError
from planner.spec.job import Constraint

ONE_NODE = EXAMPLES / "clusters" / "h100-1node.yaml"
TWO_NODES = EXAMPLES / "clusters" / "h100-8nodes-ib.yaml"
FULL_8B = EXAMPLES / "jobs" / "llama3-8b-full-finetune.yaml"  # global batch 64, seq 8192
QLORA = EXAMPLES / "jobs" / "qwen3-8b-qlora.yaml"  # global batch 16, rank 64, nf4


@pytest.fixture(scope="module")
def full_8b():
    return load_inputs(ONE_NODE, FULL_8B)


def files_of(emitted: dict[str, str]) -> TrainerFiles:
    return TrainerFiles(**{key: json.loads(emitted[name]) for key, name in
                           (("training_args", "training_args.json"), ("peft", "peft_config.json"),
                            ("bnb", "bnb_config.json")) if name in emitted})


def read_back(emitted: dict[str, str], inputs):
    return parse_accelerate_config(yaml.safe_load(emitted["accelerate_config.yaml"]), inputs, "accelerate.yaml",
                                   files_of(emitted))


# -- plans to files ---------------------------------------------------------------------------

def test_emit_fsdp2_writes_the_accelerate_config_and_the_trainer_arguments(full_8b):
    plan = Plan(framework="fsdp2", parallel=ParallelDims(dp=8), zero=3, recompute="full", mbs=2, gas=4, precision="bf16",
                offload="optimizer+params")
    files = emit_fsdp2(plan, full_8b.workload, full_8b.cluster)
    assert sorted(files) == ["accelerate_config.yaml", "fsdp2_launch.sh", "training_args.json"]
    assert yaml.safe_load(files["accelerate_config.yaml"]) == {
        "compute_environment": "LOCAL_MACHINE", "debug": False, "distributed_type": "FSDP",
        "fsdp_config": {"fsdp_version": 2, "fsdp_reshard_after_forward": True,
                        "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                        "fsdp_transformer_layer_cls_to_wrap": "LlamaDecoderLayer",
                        "fsdp_activation_checkpointing": True, "fsdp_offload_params": True,
                        "fsdp_cpu_ram_efficient_loading": True, "fsdp_sync_module_states": True,
                        "fsdp_state_dict_type": "SHARDED_STATE_DICT"},
        "mixed_precision": "bf16", "num_machines": 1, "num_processes": 8, "machine_rank": 0,
        "main_process_ip": "127.0.0.1", "main_process_port": 29500, "use_cpu": False}
    # FSDP checkpoints the layers: the Trainer must not as well (transformers/trainer.py refuses both).
    assert json.loads(files["training_args.json"]) == {
        "output_dir": "output", "per_device_train_batch_size": 2, "gradient_accumulation_steps": 4,
        "gradient_checkpointing": False, "bf16": True, "fp16": False, "optim": "adamw_torch"}
    launch = files["fsdp2_launch.sh"].splitlines()
    assert launch[0] == "#!/usr/bin/env bash" and "set -euo pipefail" in launch
    assert launch[-4:] == ["accelerate launch \\", "    --config_file accelerate_config.yaml \\",
                           '    "${TRAIN_SCRIPT:?set TRAIN_SCRIPT: your training script}" \\',
                           "    training_args.json"]
    assert read_back(files, full_8b).plan == plan


def test_zero2_is_fsdp2_without_resharding_and_zero0_is_ddp(full_8b):
    zero2 = Plan(framework="fsdp2", parallel=ParallelDims(dp=8), zero=2, mbs=1, gas=8, precision="fp16", optimizer="sgd-momentum")
    config = yaml.safe_load(emit_fsdp2(zero2, full_8b.workload, full_8b.cluster)["accelerate_config.yaml"])
    assert config["fsdp_config"]["fsdp_reshard_after_forward"] is False and config["mixed_precision"] == "fp16"
    args = json.loads(emit_fsdp2(zero2, full_8b.workload, full_8b.cluster)["training_args.json"])
    assert (args["optim"], args["optim_args"], args["fp16"]) == ("sgd", "momentum=0.9", True)
    ddp = Plan(framework="fsdp2", parallel=ParallelDims(dp=8), zero=0, recompute="full", mbs=1, gas=8, precision="fp32")
    files = emit_fsdp2(ddp, full_8b.workload, full_8b.cluster)
    config = yaml.safe_load(files["accelerate_config.yaml"])
    assert config["distributed_type"] == "MULTI_GPU" and "fsdp_config" not in config
    assert config["mixed_precision"] == "no"
    # Under DDP the Trainer checkpoints the layers itself.
    assert json.loads(files["training_args.json"])["gradient_checkpointing"] is True
    for plan in (zero2, ddp):
        assert read_back(emit_fsdp2(plan, full_8b.workload, full_8b.cluster), full_8b).plan == plan


def test_tensor_and_context_parallelism_go_through_parallelism_config(full_8b):
    plan = Plan(framework="fsdp2", parallel=ParallelDims(tp=2, dp=2, cp=2), zero=3, mbs=1, gas=32)
    files = emit_fsdp2(plan, full_8b.workload, full_8b.cluster)
    config = yaml.safe_load(files["accelerate_config.yaml"])
    assert config["parallelism_config"] == {
        "parallelism_config_dp_replicate_size": 1, "parallelism_config_dp_shard_size": 2,
        "parallelism_config_tp_size": 2, "parallelism_config_cp_size": 2, "parallelism_config_cp_backend": "torch",
        "parallelism_config_cp_comm_strategy": "allgather"}
    assert 'tp_plan=\\"auto\\"' not in files["fsdp2_launch.sh"] and 'tp_plan="auto"' in files["fsdp2_launch.sh"]
    assert read_back(files, full_8b).plan == plan


def test_qlora_writes_peft_and_bitsandbytes_configs():
    inputs = load_inputs(ONE_NODE, QLORA)
    plan = Plan(framework="fsdp2", parallel=ParallelDims(dp=8), zero=3, recompute="full", mbs=1, gas=2, lora_rank=64, quant="nf4")
    files = emit_fsdp2(plan, inputs.workload, inputs.cluster)
    assert json.loads(files["peft_config.json"]) == {
        "r": 64, "lora_alpha": 8, "task_type": "CAUSAL_LM",
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
    # Sharded 4-bit weights are stored in the compute dtype so that FSDP can flatten them.
    assert json.loads(files["bnb_config.json"]) == {
        "load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
        "bnb_4bit_compute_dtype": "bfloat16", "bnb_4bit_quant_storage": "bfloat16"}
    assert yaml.safe_load(files["accelerate_config.yaml"])["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"] \
        == "Qwen3DecoderLayer"
    job = read_back(files, inputs)
    assert job.plan == plan and job.warnings == ()
    # The job's alpha and dropout go into the LoraConfig through render.
    assert json.loads(render("fsdp2", plan, inputs)["peft_config.json"])["r"] == 64


def test_multi_node_launch_passes_rank_and_address(tmp_path):
    inputs = load_inputs(TWO_NODES, FULL_8B)
    plan = Plan(framework="fsdp2", parallel=ParallelDims(dp=64), zero=3, mbs=1, gas=1)
    launch = emit_fsdp2(plan, inputs.workload, inputs.cluster)["fsdp2_launch.sh"]
    assert '    --machine_rank "${NODE_RANK:?set NODE_RANK: 0 on the first node, 1 on the next ...}" \\' in launch
    assert '--main_process_ip "${MASTER_ADDR:?set MASTER_ADDR to the address of the first node}"' in launch
    config = yaml.safe_load(emit_fsdp2(plan, inputs.workload, inputs.cluster)["accelerate_config.yaml"])
    assert (config["num_machines"], config["num_processes"]) == (8, 64)


@pytest.mark.parametrize("changes, message", [
    ({"pp": 2, "dp": 4, "gas": 16, "zero": 0}, "pipeline parallelism (accelerate has none): pp=2"),
    ({"zero": 1}, "ZeRO stage (FSDP2 shards as ZeRO-3, or ZeRO-2 without resharding): zero=1 (it runs zero in 0, 2,"
                  " 3)"),
    ({"zero": 2, "offload": "optimizer"}, "offload (FSDP2's CPUOffloadPolicy moves parameters, gradients and"
                                          " optimizer together): offload=optimizer"),
    ({"recompute": "selective"}, "recompute (FSDP's activation checkpointing wraps whole layers)"),
    ({"tp": 2, "dp": 4, "gas": 16, "zero": 0}, "tp=2 with DDP (zero=0, dp=4): accelerate composes TP with FSDP2 only"),
    ({"cp": 2, "dp": 4, "gas": 16, "zero": 0}, "cp=2 without FSDP"),
    ({"tp": 8, "dp": 1, "gas": 64, "zero": 3}, "zero=3 with dp=1 and cp=1: FSDP has no ranks to shard over"),
    ({"optimizer": "adam"}, "optimizer (TrainingArguments.optim): optimizer=adam"),
])
def test_emit_refuses_plans_the_stack_cannot_run(full_8b, changes, message):
    plan = Plan(framework="fsdp2", parallel=ParallelDims(dp=8), zero=3, mbs=1, gas=8).with_(**changes)
    with pytest.raises(UnsupportedPlan) as err:
        emit_fsdp2(plan, full_8b.workload, full_8b.cluster)
    assert str(err.value).startswith("accelerate with FSDP2 cannot run this plan: ") and message in str(err.value)


# -- accelerate configs to plans --------------------------------------------------------------

def parse(config: dict, inputs, **hf):
    return parse_accelerate_config(config, inputs, "accelerate.yaml", TrainerFiles(**hf))


def test_fsdp1_strategies_hsdp_and_wrapping_are_read_or_warned(full_8b):
    base = {"distributed_type": "FSDP", "num_processes": 8}
    job = parse({**base, "fsdp_config": {"fsdp_sharding_strategy": "SHARD_GRAD_OP"}}, full_8b)
    assert job.plan.zero == 2 and job.framework == "fsdp2" and job.workload.engine.kernels == "hf"
    assert any(w.startswith("fsdp_version 1: FSDP1") for w in job.warnings)
    assert any(w.startswith("fsdp_auto_wrap_policy NO_WRAP") for w in job.warnings)
    assert parse({**base, "fsdp_config": {"sharding_strategy": 3}}, full_8b).plan.zero == 0  # NO_SHARD, 1-based
    hybrid = parse({**base, "fsdp_config": {"fsdp_version": 2, "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP"},
                    "parallelism_config": {"parallelism_config_dp_replicate_size": 2,
                                           "parallelism_config_dp_shard_size": 4}}, full_8b)
    assert (hybrid.plan.zero, hybrid.plan.dp) == (3, 8)
    assert any(w.startswith("HSDP: parallelism_config_dp_replicate_size 2 x dp_shard_size 4") for w in hybrid.warnings)


def test_training_arguments_set_batch_precision_and_optimizer(full_8b):
    config = {"distributed_type": "FSDP", "mixed_precision": "fp16", "fsdp_config": {"fsdp_version": 2}}
    job = parse(config, full_8b, training_args={"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2,
                                                "bf16": True, "optim": "adamw_bnb_8bit", "learning_rate": 1e-5,
                                                "torch_compile": True, "my_key": 1})
    assert (job.plan.mbs, job.plan.gas, job.plan.precision, job.plan.optimizer) == (4, 2, "bf16", "adamw8bit")
    assert "TrainingArguments set bf16, the config mixed_precision fp16: the Trainer's bf16 counts" in job.warnings
    assert "torch_compile: torch.compile fuses kernels and may keep fewer activations; not modelled" in job.warnings
    assert "my_key: not read by the planner (its effect on memory and time is not counted)" in job.warnings
    assert job.read["training_args.optim"] == "adamw_bnb_8bit"
    # Without TrainingArguments: the micro-batch option, the job's batch and optimizer.
    job = parse_accelerate_config(config, full_8b, "accelerate.yaml", micro_batch=2)
    assert (job.plan.mbs, job.plan.gas, job.plan.optimizer, job.plan.precision) == (2, 4, "adamw", "fp16")


def test_deepspeed_sections_are_read_as_the_deepspeed_engine(tmp_path, full_8b):
    job = parse({"distributed_type": "DEEPSPEED", "mixed_precision": "bf16",
                 "deepspeed_config": {"zero_stage": 3, "offload_optimizer_device": "cpu", "zero3_init_flag": True,
                                      "gradient_accumulation_steps": 2}}, full_8b,
                training_args={"per_device_train_batch_size": 4, "gradient_checkpointing": True})
    assert job.framework == "deepspeed" and job.workload.engine.kernels == "deepspeed"
    assert job.plan == Plan(framework="deepspeed", parallel=ParallelDims(dp=8), zero=3, recompute="full", mbs=4, gas=2, precision="bf16",
                            offload="optimizer")
    # deepspeed_config_file is read relative to the accelerate config.
    (tmp_path / "ds.json").write_text(json.dumps({"train_micro_batch_size_per_gpu": "auto",
                                                  "gradient_accumulation_steps": "auto",
                                                  "zero_optimization": {"stage": 2}, "bf16": {"enabled": "auto"}}))
    (tmp_path / "accelerate.yaml").write_text(yaml.safe_dump({
        "distributed_type": "DEEPSPEED", "deepspeed_config": {"deepspeed_config_file": "ds.json"}}))
    job = parse_accelerate(tmp_path / "accelerate.yaml", full_8b,
                           TrainerFiles(training_args={"per_device_train_batch_size": 2,
                                                       "gradient_accumulation_steps": 4, "bf16": True}))
    assert (job.plan.zero, job.plan.mbs, job.plan.gas, job.plan.precision) == (2, 2, 4, "bf16")
    assert job.read["deepspeed_config.deepspeed_config_file"] == "ds.json"


@pytest.mark.parametrize("config, field, message", [
    ({"distributed_type": "FSDP", "fsdp_confg": {}}, "fsdp_confg", "not an accelerate config key (did you mean"
                                                                   " fsdp_config or"),
    ({"num_processes": 8}, "distributed_type", "missing (accelerate requires it)"),
    ({"distributed_type": "XLA"}, "distributed_type", "'XLA' is not read"),
    ({"distributed_type": "FSDP", "parallelism_config": {"parallelism_config_tp_size": 3}},
     "parallelism_config.parallelism_config_dp_shard_size", "= 3, but the cluster has 8 GPUs"),
    ({"distributed_type": "FSDP", "parallelism_config": {"parallelism_config_tp_size": 8}},
     "parallelism_config.parallelism_config_dp_shard_size", "nothing to shard over"),
    ({"distributed_type": "FSDP", "fsdp_config": {"fsdp_version": 2, "fsdp_reshard_after_forward": "sometimes"}},
     "fsdp_config.fsdp_reshard_after_forward", "must be true or false"),
    ({"distributed_type": "NO"}, "distributed_type", "NO runs one process; the cluster has 8 GPUs"),
    ({"distributed_type": "FSDP", "mixed_precision": "int4"}, "mixed_precision", "valid: no, bf16, fp16, fp8"),
])
def test_bad_configs_name_file_and_key(full_8b, config, field, message):
    with pytest.raises(InputError) as err:
        parse(config, full_8b)
    assert (err.value.file, err.value.field) == ("accelerate.yaml", field)
    assert message in err.value.detail


def test_both_checkpointings_are_refused_as_the_trainer_refuses_them(full_8b):
    with pytest.raises(InputError) as err:
        parse({"distributed_type": "FSDP", "fsdp_config": {"fsdp_version": 2, "fsdp_activation_checkpointing": True}},
              full_8b, training_args={"gradient_checkpointing": True})
    assert err.value.field == "gradient_checkpointing" and "the Trainer refuses both" in err.value.detail


@pytest.mark.parametrize("args, message", [
    ({"per_device_train_batch_size": 1e300}, "must be an integer from 1 to 16,777,216, got 1e+300"),
    ({"gradient_accumulation_steps": 0}, "must be an integer from 1 to 16,777,216, got 0"),
])
def test_trainer_batch_counts_beyond_any_job_are_refused(full_8b, args, message):
    """A micro-batch or accumulation no job's global batch can hold is bad input, not a plan whose
    memory overflows to infinity."""
    with pytest.raises(InputError) as err:
        parse({"distributed_type": "FSDP", "fsdp_config": {"fsdp_version": 2}}, full_8b, training_args=args)
    assert (err.value.field, err.value.detail) == (next(iter(args)), message)


def test_invalid_yaml_names_file_and_line(tmp_path, full_8b):
    path = tmp_path / "accelerate.yaml"
    path.write_text("distributed_type: FSDP\nfsdp_config: [unclosed\n")
    with pytest.raises(InputError) as err:
        parse_accelerate(path, full_8b)
    assert err.value.file == str(path) and "not valid YAML at line 3" in err.value.detail


# -- round trip over the solver's plan space ---------------------------------------------------

_CLUSTER = {"gpu": "h100_sxm_80gb", "gpus_per_node": 8, "nodes": 1}
_JOBS = {
    "dense": ({"model": "debug", "seq_len": 512, "global_batch": 32, "optimizer": "adamw8bit"},
              {"precision": ["bf16", "fp16", "fp32"], "optimizer": ["adamw8bit", "adamw", "sgd", "sgd-momentum",
                                                                    "adafactor"],
               "offload": ["none", "optimizer+params"], "cp": [1, 2, 4]}),
    "qlora": ({"model": "debug", "seq_len": 256, "global_batch": 32, "training": "qlora", "lora": {"rank": 8}},
              {"precision": ["bf16", "fp16"], "quant": ["nf4", "int8"], "optimizer": ["adamw", "adamw8bit"]}),
    "lora": ({"model": "llama3.2-1b", "seq_len": 256, "global_batch": 8, "training": "lora",
              "lora": {"rank": [4, 16], "targets": ["all-linear"], "alpha": 32}}, {}),
}


def fsdp2_spaces(root) -> dict:
    """{job name: (inputs, plans the stack runs)} for the small jobs above, files under `root`."""
    out = {}
    (root / "cluster.yaml").write_text(yaml.safe_dump(_CLUSTER))
    for name, (job, constraints) in _JOBS.items():
        (root / f"{name}.yaml").write_text(yaml.safe_dump(job))
        inputs = load_inputs(root / "cluster.yaml", root / f"{name}.yaml")
        inputs = replace(inputs, workload=with_framework(inputs.workload, "fsdp2"))
        limits = {k: Constraint(values=tuple(v)) for k, v in constraints.items()}
        plans = [p for p in candidate_plans(inputs.workload, inputs.cluster, inputs.defaults, limits)
                 if not fsdp2_problems(p, inputs.workload)]
        out[name] = (inputs, plans)
    return out


@pytest.fixture(scope="module")
def spaces(tmp_path_factory):
    return fsdp2_spaces(tmp_path_factory.mktemp("fsdp2"))


def test_the_round_trip_spaces_are_not_trivial(spaces):
    sizes = {name: len(plans) for name, (_, plans) in spaces.items()}
    assert sizes["dense"] > 300 and sizes["qlora"] > 20 and sizes["lora"] > 20, sizes
    dense = spaces["dense"][1]
    assert {p.zero for p in dense} == {0, 2, 3} and {p.cp for p in dense} == {1, 2, 4}
    assert any(p.tp > 1 for p in dense) and any(p.offload != "none" for p in dense)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_parse_of_emit_is_the_plan_with_the_same_memory_and_time(spaces, data):
    name = data.draw(st.sampled_from(sorted(spaces)))
    inputs, plans = spaces[name]
    plan = data.draw(st.sampled_from(plans))
    job = read_back(emit_fsdp2(plan, inputs.workload, inputs.cluster), inputs)
    assert job.plan == plan and job.framework == "fsdp2"
    assert job.workload == with_framework(inputs.workload, "fsdp2")
    # What check evaluates is what estimate evaluates for the plan with the hf kernel family.
    ev, expected = evaluate(job.plan, job.workload, inputs.cluster), evaluate(plan, job.workload, inputs.cluster)
    assert (ev.memory.total, ev.time.step) == (expected.memory.total, expected.time.step)


def test_check_of_the_emitted_files_reports_the_estimate(tmp_path, full_8b):
    plan = Plan(framework="fsdp2", parallel=ParallelDims(tp=2, dp=4), zero=3, recompute="full", mbs=1, gas=16)
    for name, text in render("fsdp2", plan, full_8b).items():
        (tmp_path / name).write_text(text)
    result = CliRunner().invoke(app, ["check", str(ONE_NODE), str(FULL_8B), "--accelerate",
                                      str(tmp_path / "accelerate_config.yaml"), "--training-args",
                                      str(tmp_path / "training_args.json"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    expected = evaluate(plan, with_framework(full_8b.workload, "fsdp2"), full_8b.cluster)
    assert doc["source"]["framework"] == "fsdp2" and doc["fits"] is True
    assert doc["memory"]["total"] == expected.memory.total and doc["time"]["step"] == expected.time.step
    assert set(FILE_NAMES["fsdp2"]) >= set(render("fsdp2", plan, full_8b))
    assert os.access(tmp_path / "fsdp2_launch.sh", os.R_OK)


def test_trainer_settings_that_change_time_are_warned(full_8b):
    config = {"distributed_type": "FSDP", "mixed_precision": "bf16",
              "fsdp_config": {"fsdp_version": 2, "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP"}}
    job = parse(config, full_8b, training_args={"tf32": False, "use_cpu": False, "optim": "paged_adamw_8bit",
                                                "activation_checkpointing_kwargs": {"every_n_layers": 2}})
    assert job.warnings == (
        "no micro-batch given (TrainingArguments.per_device_train_batch_size, --training-args or --micro-batch):"
        " planned with 1", "the optimizer is adamw8bit; the job says adamw; planned with adamw8bit",
        "activation_checkpointing_kwargs.every_n_layers 2: checkpoints some layers only; planned as every layer"
        " (activations under-estimated)",
        "optim paged_adamw_8bit: paged states move to the host under memory pressure; counted on the GPU",
        "tf32 false: fp32 matmuls without TF32 tensor cores; the planner times fp32 at the TF32 peak"
        " (planner/cost/timing/compute.py)")
    assert job.plan.optimizer == "adamw8bit"


def test_a_multimodal_model_wraps_what_transformers_names_its_blocks():
    """FSDP2 over a multimodal model (read as its text decoder) wraps its vision blocks too:
    accelerate takes the model's _no_split_modules when the config names no layer class."""
    inputs = load_inputs(ONE_NODE, QLORA)
    text = {"vocab_size": 1000, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16}
    with pytest.warns(UserWarning, match="encoders"):
        arch = load_architecture({"model_type": "qwen3_vl", "text_config": text, "vision_config": {}})
    workload = replace(inputs.workload, arch=arch)
    plan = Plan(framework="fsdp2", parallel=ParallelDims(dp=8), zero=3, recompute="full", mbs=1, gas=2)
    fsdp = yaml.safe_load(emit_fsdp2(plan, workload, inputs.cluster)["accelerate_config.yaml"])["fsdp_config"]
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert "fsdp_transformer_layer_cls_to_wrap" not in fsdp
