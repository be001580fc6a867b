"""Emitted DeepSpeed configs load in DeepSpeed's own config classes with the plan's values, and the
TrainingArguments beside them agree with them as the Hugging Face Trainer checks.

`deepspeed.runtime.config.DeepSpeedConfig` runs the checks DeepSpeed runs at launch: its pydantic
models (DeepSpeedZeroConfig and the offload, precision and tensor-parallel configs forbid unknown
keys and check types and ranges), the batch rule train_batch_size = micro-batch x accumulation x
data-parallel size, and the precision asserts. DeepSpeedConfig asks torch.distributed for the rank
and the model-parallel unit (mpu) for the data-parallel size; both are stood in for here, so no
process group is needed. AutoEP sections also go through `validate_autoep_config`.

Run: .venv/bin/python -m pytest -m validate tests/validate/test_deepspeed_emit.py -q
"""
from __future__ import annotations

import json
from unittest import mock

import pytest

deepspeed = pytest.importorskip("deepspeed")
hypothesis = pytest.importorskip("hypothesis")

from deepspeed.module_inject.auto_ep_config import (  # noqa: E402
    parse_autoep_config,
    validate_autoep_config,
)
from deepspeed.runtime import config as ds_config  # noqa: E402
from deepspeed.runtime.zero.config import DeepSpeedZeroConfig  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_frameworks_deepspeed import deepspeed_spaces  # noqa: E402

from planner.engines.deepspeed_emit import deepspeed_config, emit_deepspeed  # noqa: E402

pytestmark = pytest.mark.validate


class _DataParallelUnit:
    """What DeepSpeedConfig asks an mpu for: the data-parallel size the batch is divided by."""

    def __init__(self, dp: int):
        self.dp = dp

    def get_data_parallel_world_size(self) -> int:
        return self.dp


@pytest.fixture(scope="module")
def spaces(tmp_path_factory):
    return deepspeed_spaces(tmp_path_factory.mktemp("ds-validate"))


@pytest.fixture
def rank0(monkeypatch):
    monkeypatch.setattr(ds_config.dist, "get_rank", lambda *args, **kwargs: 0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_emitted_configs_load_in_deepspeed(spaces, rank0, data):
    name = data.draw(st.sampled_from(sorted(spaces)))
    inputs, plans = spaces[name]
    plan = data.draw(st.sampled_from(plans))
    emitted = json.loads(json.dumps(deepspeed_config(plan, inputs.workload)))
    config = ds_config.DeepSpeedConfig(emitted, mpu=_DataParallelUnit(plan.dp))
    assert (config.train_batch_size, config.train_micro_batch_size_per_gpu, config.gradient_accumulation_steps) == \
        (plan.global_batch, plan.mbs, plan.gas)
    assert config.zero_optimization_stage == plan.zero
    zero = config.zero_config
    offloaded = {"none": (False, False), "optimizer": (True, False), "optimizer+params": (True, True)}[plan.offload]
    assert (zero.offload_optimizer is not None and zero.offload_optimizer.device == "cpu",
            zero.offload_param is not None and zero.offload_param.device == "cpu") == offloaded
    assert (config.bfloat16_config.enabled, config.float16_config.enabled, config.torch_autocast_enabled) == (
        plan.precision == "bf16", plan.precision == "fp16", plan.precision == "bf16-autocast")
    assert max(1, config.tensor_parallel_config.autotp_size) == plan.tp
    expected_optimizer = {"adamw": "adamw", "adam": "adam", "sgd": "SGD", "sgd-momentum": "SGD"}.get(plan.optimizer)
    assert config.optimizer_name == expected_optimizer
    assert DeepSpeedZeroConfig(**emitted["zero_optimization"]).stage == plan.zero
    if plan.ep > 1:
        autoep = parse_autoep_config(emitted["expert_parallel"])
        assert (autoep.enabled, autoep.autoep_size) == (True, plan.ep)
        validate_autoep_config(autoep, world_size=plan.parallel.world, pp_size=1, tp_size=plan.tp, sp_size=plan.cp,
                               zero_stage=plan.zero, zero_offload_optimizer=plan.offload != "none",
                               zero_offload_param=plan.offload == "optimizer+params")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_trainer_arguments_match_the_config_as_the_trainer_checks_them(spaces, data):
    """transformers' HfTrainerDeepSpeedConfig.trainer_config_process compares the config's batch,
    accumulation, precision and optimizer values with the TrainingArguments' and records every
    mismatch (the Trainer then refuses to start); the Trainer's world size is all processes."""
    from transformers import BitsAndBytesConfig, TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig
    peft = pytest.importorskip("peft")

    name = data.draw(st.sampled_from(sorted(spaces)))
    inputs, plans = spaces[name]
    plan = data.draw(st.sampled_from(plans))
    files = emit_deepspeed(plan, inputs.workload, inputs.cluster)
    args = json.loads(files["training_args.json"])
    assert args.pop("deepspeed") == "ds_config.json"  # loaded by the Trainer from its working directory
    trainer = TrainingArguments(**args, use_cpu=True)
    hf = HfTrainerDeepSpeedConfig(json.loads(files["ds_config.json"]))
    world = plan.parallel.world
    with mock.patch.object(TrainingArguments, "world_size", property(lambda self: world)):
        hf.trainer_config_process(trainer)
    assert hf.mismatches == []
    assert bool(trainer.gradient_checkpointing) == (plan.recompute == "full")
    if "peft_config.json" in files:
        assert peft.LoraConfig(**json.loads(files["peft_config.json"])).r == plan.lora_rank
    if "bnb_config.json" in files:
        bnb = BitsAndBytesConfig(**json.loads(files["bnb_config.json"]))
        assert (bnb.load_in_4bit, bnb.load_in_8bit) == (plan.quant == "nf4", plan.quant == "int8")
