"""Emitted accelerate + FSDP2 files loaded by accelerate, transformers and PEFT themselves.

The accelerate config goes the way `accelerate launch --config_file` takes it: `ClusterConfig`
loads it (refusing unknown keys), the launcher validates it and turns it into the environment of
the training processes (`_validate_launch_command`, `prepare_multi_gpu_env`), and in that
environment `FullyShardedDataParallelPlugin()` and `ParallelismConfig()` build themselves, as the
Accelerator does, with their own checks. TrainingArguments (on CPU), LoraConfig and
BitsAndBytesConfig are built from the JSON files. The decoder-layer class FSDP wraps is the one
transformers names in each family's `_no_split_modules`.

Run: .venv/bin/python -m pytest -m validate tests/validate/test_fsdp2_emit.py -q
"""
from __future__ import annotations

import importlib
import json
import os

import pytest

accelerate = pytest.importorskip("accelerate")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
hypothesis = pytest.importorskip("hypothesis")

from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file  # noqa: E402
from accelerate.commands.launch import _validate_launch_command, launch_command_parser  # noqa: E402
from accelerate.parallelism_config import ParallelismConfig  # noqa: E402
from accelerate.utils import FullyShardedDataParallelPlugin  # noqa: E402
from accelerate.utils.launch import prepare_multi_gpu_env  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_engines_fsdp2 import fsdp2_spaces  # noqa: E402
from torch.distributed.fsdp import CPUOffloadPolicy  # noqa: E402
from transformers import BitsAndBytesConfig, TrainingArguments  # noqa: E402
from transformers.models.auto.modeling_auto import (  # noqa: E402
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_PRETRAINING_MAPPING_NAMES,
)

from planner.engines.fsdp2_emit import DECODER_LAYERS, emit_fsdp2  # noqa: E402

pytestmark = pytest.mark.validate


@pytest.fixture(scope="module")
def spaces(tmp_path_factory):
    return fsdp2_spaces(tmp_path_factory.mktemp("fsdp2-validate"))


def launch_environment(config_file) -> dict[str, str]:
    """The environment `accelerate launch --config_file FILE train.py` gives the training processes."""
    args = launch_command_parser().parse_args(["--config_file", str(config_file), "train.py"])
    args, _, _ = _validate_launch_command(args)
    return prepare_multi_gpu_env(args)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_emitted_files_load_in_accelerate_transformers_and_peft(spaces, data, tmp_path):
    saved = dict(os.environ)
    try:
        check_files(spaces, data, tmp_path)
    finally:  # the launcher's environment stays with each example
        os.environ.clear()
        os.environ.update(saved)


def check_files(spaces, data, tmp_path):
    name = data.draw(st.sampled_from(sorted(spaces)))
    inputs, plans = spaces[name]
    plan = data.draw(st.sampled_from(plans))
    files = emit_fsdp2(plan, inputs.workload, inputs.cluster)
    for file, text in files.items():
        (tmp_path / file).write_text(text)
    config = load_config_from_file(str(tmp_path / "accelerate_config.yaml"))
    assert isinstance(config, ClusterConfig) and config.num_processes == inputs.cluster.world
    for key in [k for k in os.environ if k.startswith(("FSDP_", "PARALLELISM_CONFIG_", "ACCELERATE_"))]:
        del os.environ[key]
    env = launch_environment(tmp_path / "accelerate_config.yaml")
    assert env["ACCELERATE_MIXED_PRECISION"] == {"bf16": "bf16", "fp16": "fp16"}.get(plan.precision, "no")
    os.environ.update(env)
    p = plan.parallel
    if plan.zero >= 2:
        assert env["ACCELERATE_USE_FSDP"] == "true"
        fsdp = FullyShardedDataParallelPlugin()
        assert (fsdp.fsdp_version, fsdp.reshard_after_forward) == (2, plan.zero == 3)
        assert fsdp.activation_checkpointing == (plan.recompute == "full")
        assert isinstance(fsdp.cpu_offload, CPUOffloadPolicy) == (plan.offload == "optimizer+params")
        assert fsdp.transformer_cls_names_to_wrap == [DECODER_LAYERS[inputs.workload.arch.family]]
    else:
        assert "ACCELERATE_USE_FSDP" not in env
    if p.tp > 1 or p.cp > 1:
        parallel = ParallelismConfig()
        assert (parallel.dp_replicate_size, parallel.dp_shard_size, parallel.tp_size, parallel.cp_size) == \
            (1, p.dp, p.tp, p.cp)
        assert parallel.total_size == inputs.cluster.world
    args = json.loads(files["training_args.json"])
    trainer = TrainingArguments(**args, use_cpu=True)
    assert (trainer.per_device_train_batch_size, trainer.gradient_accumulation_steps) == (plan.mbs, plan.gas)
    assert bool(trainer.gradient_checkpointing) == (plan.recompute == "full" and plan.zero < 2)
    assert (trainer.bf16, trainer.fp16) == (plan.precision == "bf16", plan.precision == "fp16")
    if "peft_config.json" in files:
        lora = peft.LoraConfig(**json.loads(files["peft_config.json"]))
        assert lora.r == plan.lora_rank and lora.task_type == "CAUSAL_LM"
    if "bnb_config.json" in files:
        bnb = BitsAndBytesConfig(**json.loads(files["bnb_config.json"]))
        assert (bnb.load_in_4bit, bnb.load_in_8bit) == (plan.quant == "nf4", plan.quant == "int8")


@pytest.mark.parametrize("family", sorted(DECODER_LAYERS))
def test_the_wrapped_layer_is_the_familys_decoder_layer(family):
    # Mistral 4's causal LM class is mapped for pretraining only (its checkpoints are Mistral 3 models).
    cls_name = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(family) or MODEL_FOR_PRETRAINING_MAPPING_NAMES[family]
    module = {"gemma3_text": "gemma3", "llama4_text": "llama4"}.get(family, family)
    model_cls = getattr(importlib.import_module(f"transformers.models.{module}.modeling_{module}"), cls_name)
    assert DECODER_LAYERS[family] in model_cls._no_split_modules
