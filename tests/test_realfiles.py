"""Launch files after the patterns of public repositories (tests/data/realfiles/README.md names
each source), read as their authors meant them: the facts a correct reading gives, and the
verdicts where they matter."""
import json
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import EXAMPLES
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from planner.cli.app import app
from planner.cost.evaluate import evaluate
from planner.cost.inputs import load_inputs
from planner.cost.memory import estimate_memory, state_bytes
from planner.cost.shard import stage_layer_counts
from planner.cost.workload import StateDtypes
from planner.engines.deepspeed import parse_deepspeed, parse_deepspeed_config
from planner.engines.megatron import parse_megatron
from planner.engines.megatron_deepspeed import partition_balanced, type_partition
from planner.engines.megatron_flags import launch_arguments, parse_flags
from planner.engines.profiles import engine_traits
from planner.engines.shell import read_script
from planner.model.megatron_args import architecture_from_megatron_args
from planner.model.params import count_params
from planner.spec.errors import InputError

DATA = Path(__file__).parent / "data" / "realfiles"
NODE = EXAMPLES / "clusters" / "h100-1node.yaml"
PRETRAIN_8B = EXAMPLES / "jobs" / "llama3-8b-pretrain.yaml"
FULL_8B = EXAMPLES / "jobs" / "llama3-8b-full-finetune.yaml"  # global batch 64, seq 8192
GiB = 2**30
runner = CliRunner()


@pytest.fixture(scope="module")
def pretrain():
    return load_inputs(NODE, PRETRAIN_8B)


@pytest.fixture(scope="module")
def full():
    return load_inputs(NODE, FULL_8B)


def check(*args: str):
    result = runner.invoke(app, ["check", *map(str, args), "--json"])
    return result.exit_code, (json.loads(result.stdout) if result.stdout.strip() else None), result


# -- Megatron-LM scripts read along the path they take -----------------------------------------

def test_a_case_on_the_scale_picks_tp_and_batch_and_mamba_is_refused(pretrain):
    script = read_script((DATA / "mamba_train.sh").read_text())
    assert (script.variables["TENSOR_MODEL_PARALLEL_SIZE"], script.variables["GLOBAL_BATCH_SIZE"]) == ("1", "32")
    with pytest.raises(InputError) as err:
        parse_megatron(DATA / "mamba_train.sh", pretrain)
    assert err.value.file == str(DATA / "mamba_train.sh")
    assert "pretrain_mamba.py trains a Mamba (state-space) hybrid model" in err.value.detail
    _, job = parse_megatron(DATA / "gpt_scale_case.sh", pretrain)  # MODEL_SCALE="8B": TP 4, batch 64
    p = job.plan
    assert (p.tp, p.pp, p.dp, p.cp, p.sp, p.zero, p.mbs, p.gas) == (4, 1, 2, 1, True, 1, 1, 32)


def test_an_if_on_a_switch_that_is_off_adds_no_recompute(pretrain):
    _, job = parse_megatron(DATA / "pretrain_llama2_distributed.sh", pretrain)
    p = job.plan
    assert (p.tp, p.pp, p.dp, p.mbs, p.gas, p.recompute, p.precision) == (2, 2, 2, 4, 4, "none", "bf16")
    assert "--recompute-granularity" not in job.read and "--deepspeed-activation-checkpointing" not in job.read
    # Megatron-DeepSpeed: DeepSpeed's engine, whose BF16_Optimizer shards master weights and
    # states at "stage 0" under pipeline parallelism and keeps whole fp32 gradients
    assert job.workload.engine.kernels == "deepspeed"
    assert (p.zero, job.workload.states) == (1, StateDtypes(gradient=4))
    flags, _ = parse_flags(launch_arguments(read_script((DATA / "pretrain_llama2_distributed.sh").read_text())).args)
    arch = architecture_from_megatron_args({**flags, "padded-vocab-size": "32000"}, "llama2-1.3b")
    assert (arch.attention.num_heads, arch.attention.num_kv_heads, arch.norm, arch.position) == (16, 4, "rmsnorm", "rope")


def test_t5_is_not_planned_as_a_gpt(pretrain):
    code, _, result = check(NODE, PRETRAIN_8B, "--megatron", DATA / "train_t5_220m_distributed.sh")
    assert code == 2
    assert "pretrain_t5.py trains an encoder-decoder T5; planner models decoder-only GPT" in result.output


def test_bloom_176b_partition_ulysses_and_zero():
    inputs = load_inputs(DATA / "jean-zay-a100-48nodes.yaml", DATA / "bloom-176b-pretrain.yaml")
    _, job = parse_megatron(DATA / "tr11-176B-ml.slurm", inputs)
    p = job.plan
    assert (p.tp, p.pp, p.dp, p.mbs, p.gas, p.recompute, p.zero) == (4, 12, 8, 2, 128, "full", 1)
    # 'type:transformer|embedding' weighs both tied embeddings with the 70 layers: 72 over 12
    assert (p.layer_partition(70) or stage_layer_counts(70, 12)) == (5,) + (6,) * 10 + (5,)
    assert evaluate(p, job.workload, inputs.cluster).fits
    _, ulysses = parse_megatron(DATA / "ds_sequence_parallel.sh", load_inputs(NODE, PRETRAIN_8B))
    q = ulysses.plan
    assert (q.tp, q.pp, q.dp, q.cp, q.zero, q.mbs, q.gas) == (1, 1, 2, 4, 3, 1, 4)


def test_deepspeed_partition_methods():
    assert type_partition("type:transformer|embedding", 70, 12, embed_layernorm=True) == (5,) + (6,) * 10 + (5,)
    assert type_partition("'type:transformer'", 70, 12) == (6,) * 10 + (5, 5)
    assert type_partition("uniform", 8, 2) == (5, 3)  # 13 specs: 7 + 6, the first holding cast and embedding
    with pytest.raises(ValueError, match="matches no layer"):
        type_partition("type:mamba", 8, 2)


@given(st.lists(st.integers(0, 3), min_size=1, max_size=8), st.integers(1, 4))
def test_partition_balanced_is_the_least_uneven_split(weights, parts):
    """Against every split into contiguous parts (DeepSpeed's objective: largest minus smallest sum)."""
    import itertools
    bounds = partition_balanced(weights, parts)
    n = len(weights)
    assert bounds[0] == 0 and bounds[-1] == n and len(bounds) == parts + 1 and bounds == sorted(bounds)
    if n <= parts:
        return

    def spread(b):
        sums = [sum(weights[b[i]:b[i + 1]]) for i in range(parts)]
        return max(sums) - min(sums)
    best = min(spread((0, *cut, n)) for cut in itertools.combinations_with_replacement(range(1, n), parts - 1))
    assert spread(bounds) == best


def test_fp8_param_gather_and_bf16_gradient_reduction_are_counted(pretrain):
    _, job = parse_megatron(DATA / "train_llama3_8b_h100_fp8.sh", pretrain)
    assert (job.plan.precision, job.plan.zero, job.plan.dp, job.plan.fp8_param_gather) == ("fp8", 1, 8, True)
    assert job.workload.states == StateDtypes(gradient=2)
    (ours,) = estimate_memory(job.plan, job.workload, pretrain.cluster)
    (cached,) = estimate_memory(job.plan.with_(fp8_param_gather=False), job.workload, pretrain.cluster)
    (before,) = estimate_memory(job.plan, replace(job.workload, states=None), pretrain.cluster)
    params = count_params(pretrain.workload.arch).total
    # Llama 3 8B's linear projections, from its published shapes: 32 layers of q, k, v, o (4096 x
    # (4096 + 1024 + 1024 + 4096)) and a SwiGLU MLP (3 x 4096 x 14336).
    linear = 32 * (4096 * 10240 + 3 * 4096 * 14336)
    assert linear == 6_979_321_856
    # Without fp8 parameters Transformer Engine caches an fp8 weight and its transpose (an H100's
    # fp8 GEMMs take the TN layout only): 2 bytes per linear weight beside the 16-bit parameter.
    # With them, that fp8 pair is the parameter.
    assert cached.memory.weights - ours.memory.weights == pytest.approx(2 * linear, abs=8)
    assert cached.detail["fp8_weight_cache"] == pytest.approx(2 * linear, abs=8)
    # bf16 main gradients: 2 bytes instead of 4 (not sharded at ZeRO-1)
    assert before.memory.gradients - ours.memory.gradients == pytest.approx(2 * params, abs=8)
    assert evaluate(job.plan, job.workload, pretrain.cluster).fits


def test_without_fp8_parameters_the_nearest_plan_gathers_them(tmp_path):
    """Megatron-LM's Llama 3 8B fp8 example fits one H100 node with its --fp8-param-gather; without
    it Transformer Engine's cached fp8 weights (2 bytes per linear weight) push it over, and the
    nearest plan that fits is the same one with fp8 parameters."""
    code, doc, _ = check(NODE, PRETRAIN_8B, "--megatron", DATA / "train_llama3_8b_h100_fp8.sh")
    assert code == 0 and doc["fits"] and doc["fp8_param_gather"] is True
    script = tmp_path / "train.sh"
    script.write_text((DATA / "train_llama3_8b_h100_fp8.sh").read_text().replace('"--fp8-param-gather"', ""))
    code, doc, _ = check(NODE, PRETRAIN_8B, "--megatron", script)
    assert code == 1 and not doc["fits"] and doc["fp8_param_gather"] is False
    assert doc["suggestions"][0]["changes"] == {"fp8_param_gather": [False, True]}


def test_an_undecided_switch_reports_both_verdicts_and_env_decides_it():
    script = DATA / "undecided_recompute.sh"
    code, doc, _ = check(NODE, PRETRAIN_8B, "--megatron", script)
    assert code == 1 and doc["recompute"] == "none" and not doc["fits"]
    (way,) = doc["undecided"]
    assert (way["line"], way["taken"], way["way"], way["verdict"]) == (11, "else", "then", "fits")
    assert way["differences"] == ["ARGS adds --recompute-granularity full --recompute-method uniform"]
    assert way["changes"] == "recompute none → full" and way["plan"]["recompute"] == "full" and way["plan"]["fits"]
    assert any("does not fit, peak" in w and "The way 'then'" in w and ": fits, peak" in w for w in doc["warnings"])
    code, doc, _ = check(NODE, PRETRAIN_8B, "--megatron", script, "--env", "RECOMPUTE=1")
    assert code == 0 and doc["recompute"] == "full" and doc["undecided"] == []
    code, _, result = check(NODE, PRETRAIN_8B, "--megatron", script, "--env", "1X=2")
    assert code == 2 and "--env" in result.output


# -- DeepSpeed configs read as DeepSpeed and the HF Trainer run them ---------------------------

def test_bf16_master_weights_are_bf16_pure(full):
    job = parse_deepspeed(DATA / "bf16_full.json", full)
    assert (job.plan.precision, job.plan.zero, job.plan.mbs, job.plan.gas) == ("bf16-pure", 2, 1, 1)
    # bf16 weights and gradients, a bf16 master clone and gradient partition (stage_1_and_2.py), bf16 moments
    assert state_bytes(engine_traits("deepspeed"), "bf16-pure") == (2, 2, 2, 2)
    (mem,) = estimate_memory(job.plan, job.workload, full.cluster)
    params = count_params(full.workload.arch).total
    assert mem.memory.weights == pytest.approx(2 * params, abs=8)
    assert mem.memory.master_weights == pytest.approx(2 * params / 8, abs=8)
    assert mem.memory.optimizer == pytest.approx(4 * params / 8, abs=8)
    assert not any("did you mean" in w for w in job.warnings)


def test_auto_batches_follow_the_trainer(full):
    job = parse_deepspeed(DATA / "fastchat_zero3.json", full)
    assert (job.plan.mbs, job.plan.gas, job.plan.zero, job.plan.offload) == (8, 1, 3, "optimizer+params")
    assert any("--per_device_train_batch_size, default 8" in w for w in job.warnings)
    job = parse_deepspeed(DATA / "fastchat_zero3.json", full, micro_batch=2)
    assert (job.plan.mbs, job.plan.gas) == (2, 4)
    with pytest.raises(InputError) as err:  # the Trainer fills a micro-batch of 8, which 8 x 8 > 32 cannot hold
        parse_deepspeed_config({"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto"},
                               replace(full, job=full.job.model_copy(update={"global_batch": 32})), "ds.json")
    assert err.value.field == "gradient_accumulation_steps"


def test_zero_buckets_are_in_the_peak(full):
    job = parse_deepspeed(DATA / "fastchat_zero2.json", full)
    assert job.framework_buffers == 9_000_000_000  # 4.5 x 2 bytes x (5e8 + 5e8), DeepSpeed docs
    ev = evaluate(job.plan, job.workload, full.cluster)
    assert ev.memory.buffers == 9_000_000_000
    assert round(ev.memory.buffers / GiB, 2) == 8.38


def test_unprefixed_stage3_names_and_comment_keys(full):
    job = parse_deepspeed(DATA / "axolotl_zero3_unprefixed.json", full)
    assert job.read["zero_optimization.max_live_parameters"] == 2e8
    # gathered parameters up to max_live_parameters (2e8) + the reduce bucket ("auto": hidden^2)
    assert job.framework_buffers == 2 * (200_000_000 + 4096**2)
    assert not any("did you mean" in w for w in job.warnings)
    section = parse_deepspeed_config({"train_batch_size": 64, "zero_optimization": {"stage": 2, "_comment": "x"}},
                                     full, "ds.json")
    assert ("zero_optimization._comment is not a DeepSpeed key; DeepSpeed's config models reject unknown keys"
            in section.warnings)
    with pytest.raises(InputError, match="given twice"):
        parse_deepspeed_config({"train_batch_size": 64, "zero_optimization": {
            "stage": 3, "max_live_parameters": 1, "stage3_max_live_parameters": 2}}, full, "ds.json")


def test_sequence_parallel_sections_and_parameter_offload(full):
    job = parse_deepspeed(DATA / "llamafactory_ulysses.json", full)
    assert (job.plan.cp, job.plan.dp, job.plan.zero) == (4, 2, 3)
    assert any(w.startswith("sequence_parallel.size 4: DeepSpeed-Ulysses") for w in job.warnings)
    job = parse_deepspeed(DATA / "offload_params_only.json", full)
    assert (job.plan.offload, job.plan.zero) == ("params", 3)
    (mem,) = estimate_memory(job.plan, job.workload, full.cluster)
    (kept,) = estimate_memory(job.plan.with_(offload="none"), job.workload, full.cluster)
    assert mem.memory.weights == 0 and mem.host_bytes == kept.memory.weights
    assert mem.memory.optimizer == kept.memory.optimizer  # the optimizer stays on the GPU


def test_messages_keep_brackets(tmp_path):
    config = tmp_path / "ds.json"
    config.write_text(json.dumps({"train_batch_size": [64]}))
    result = runner.invoke(app, ["check", str(NODE), str(FULL_8B), "--deepspeed", str(config)])
    assert result.exit_code == 2
    assert f'{config}: train_batch_size: must be an integer >= 1 or "auto", got [64]' in " ".join(result.output.split())
