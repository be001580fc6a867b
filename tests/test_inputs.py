"""`--plan SPEC` parsing and model resolution from job files."""
import json

import pytest
from conftest import EXAMPLES

from planner.cost.inputs import load_inputs, parse_plan_spec
from planner.spec.errors import InputError

CLUSTER = EXAMPLES / "clusters" / "h100-8nodes-ib.yaml"


@pytest.fixture
def inputs():
    return load_inputs(CLUSTER, EXAMPLES / "jobs" / "llama3-70b-pretrain.yaml")


def test_omitted_keys_take_the_job_and_derive_dp_and_gas(inputs):
    plan = parse_plan_spec("tp=8,pp=4,zero=1,recompute=selective,mbs=1", inputs)
    assert (plan.tp, plan.pp, plan.dp, plan.gas) == (8, 4, 2, 256)
    assert (plan.precision, plan.optimizer, plan.recompute) == ("bf16", "adamw", "selective")


def test_space_separated_and_bare_sp(inputs):
    plan = parse_plan_spec("tp=4 sp pp=2", inputs)
    assert plan.sp and plan.dp == 8


@pytest.mark.parametrize("spec, fragment", [
    ("tp=three", "must be an integer"),
    ("tp=3", "does not divide the 64 GPUs"),
    ("recompute=most", "valid: none, selective, full"),
    ("zero", "is not key=value"),
    ("mbs=3", "global batch 512 does not divide"),
])
def test_bad_plan_specs(inputs, spec, fragment):
    with pytest.raises(InputError, match=fragment):
        parse_plan_spec(spec, inputs)


def test_lora_is_an_alias_of_lora_rank(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("model: llama3-8b\ntraining: lora\nseq_len: 2048\nglobal_batch: 64\n")
    plan = parse_plan_spec("lora=32", load_inputs(CLUSTER, job))
    assert plan.lora_rank == 32


def test_model_as_inline_mapping_and_as_relative_config_path(tmp_path):
    fields = {"model_type": "llama", "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
              "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
              "tie_word_embeddings": False}
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text(json.dumps(fields))
    by_path = tmp_path / "a.yaml"
    by_path.write_text("model: cfg/config.json\nseq_len: 4096\nglobal_batch: 64\n")
    inline = tmp_path / "b.yaml"
    inline.write_text(f"model: {json.dumps(fields)}\nseq_len: 4096\nglobal_batch: 64\n")
    a, b = load_inputs(CLUSTER, by_path), load_inputs(CLUSTER, inline)
    assert a.workload.arch.hidden == b.workload.arch.hidden == 4096
    assert a.workload.arch.num_layers == 32


def test_unknown_preset_in_a_job_names_file_and_field(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("model: llama3-80b\nseq_len: 4096\nglobal_batch: 64\n")
    with pytest.raises(InputError) as info:
        load_inputs(CLUSTER, job)
    assert str(job) in str(info.value) and "model" in str(info.value) and "did you mean" in str(info.value)


@pytest.mark.parametrize("gpu, precision, fragment", [
    ("h100_sxm_80gb", "mxfp8", "h100_sxm_80gb has no mxfp8 (block-scaled fp8) tensor cores; use fp8"),
    ("mi300x", "mxfp8", "mi300x has no mxfp8 (block-scaled fp8) tensor cores; use fp8"),
    ("a100_sxm_80gb", "mxfp8", "a100_sxm_80gb has no mxfp8 (block-scaled fp8) tensor cores; use bf16"),
    ("a100_sxm_80gb", "fp8", "a100_sxm_80gb has no fp8 tensor cores; use bf16"),
])
def test_precision_is_checked_against_the_gpu(tmp_path, gpu, precision, fragment):
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(f"gpu: {gpu}\ngpus_per_node: 8\n")
    job = tmp_path / "job.yaml"
    job.write_text(f"model: llama3-8b\nseq_len: 2048\nglobal_batch: 64\nprecision: {precision}\n")
    with pytest.raises(InputError) as info:
        load_inputs(cluster, job)
    assert fragment in str(info.value)
    assert str(job) in str(info.value) and "precision" in str(info.value)


@pytest.mark.parametrize("gpu", ["b200_hgx", "gb200_nvl72_per_gpu", "b300_hgx", "mi355x"])
def test_mxfp8_jobs_load_where_the_tensor_cores_scale_blocks(tmp_path, gpu):
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(f"gpu: {gpu}\ngpus_per_node: 8\n")
    job = tmp_path / "job.yaml"
    job.write_text("model: llama3-8b\nseq_len: 2048\nglobal_batch: 64\nprecision: mxfp8\n")
    assert load_inputs(cluster, job).defaults.precision == "mxfp8"


def test_plan_spec_names_every_precision_on_a_typo(inputs):
    with pytest.raises(InputError, match="precision='mxfp4': valid: bf16, fp16, fp8, mxfp8, nvfp4, fp32"):
        parse_plan_spec("precision=mxfp4", inputs)
