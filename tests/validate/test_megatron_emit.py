"""Emitted Megatron-LM launch scripts against megatron-core's own config classes.

The megatron-core wheel ships megatron.core only: Megatron-LM's argument parser
(megatron/training/arguments.py) is not in it. What is validated: every flag the emitter writes
maps to a field of megatron-core's TransformerConfig / MLATransformerConfig (directly,
dashes as underscores, or by the renames Megatron-LM's `core_transformer_config_from_args`
makes), of OptimizerConfig or DistributedDataParallelConfig, or to a GPTModel argument, except a
short list of Megatron-LM training-loop flags (batch, sequence length, data, schedule). The
configs are then built from the flags, which runs megatron-core's own checks
(`TransformerConfig.__post_init__`, `ModelParallelConfig.__post_init__`: heads and query groups
over tp, pipeline layouts and uneven stages, virtual stages, recompute settings, MoE settings),
and their values are the plan's.

Run: .venv/bin/python -m pytest -m validate tests/validate/test_megatron_emit.py -q
"""
from __future__ import annotations

import ast
import dataclasses
import inspect

import pytest
from conftest import space_gpu

core = pytest.importorskip("megatron.core")
torch = pytest.importorskip("torch")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from megatron.core.distributed import DistributedDataParallelConfig  # noqa: E402
from megatron.core.models.gpt import GPTModel  # noqa: E402
from megatron.core.optimizer import OptimizerConfig  # noqa: E402
from megatron.core.transformer.transformer_config import MLATransformerConfig, TransformerConfig  # noqa: E402
from test_frameworks_megatron import _JOBS  # noqa: E402

from planner.cost.inputs import load_inputs  # noqa: E402
from planner.cost.shard import stage_layer_counts  # noqa: E402
from planner.engines.megatron_emit import emit_megatron, megatron_problems  # noqa: E402
from planner.engines.megatron_flags import parse_flags  # noqa: E402
from planner.engines.shell import read_script  # noqa: E402
from planner.search.space import candidate_plans  # noqa: E402
from planner.spec.job import Constraint  # noqa: E402

pytestmark = pytest.mark.validate

# Megatron-LM flag -> megatron-core field where the names differ (core_transformer_config_from_args).
_RENAMED = {"num-experts": "num_moe_experts", "fp8-format": "fp8", "fp4-format": "fp4",
            "decoder-first-pipeline-num-layers": "num_layers_in_first_pipeline_stage",
            "decoder-last-pipeline-num-layers": "num_layers_in_last_pipeline_stage"}
# Flags Megatron-LM turns into other config values (arguments.py, core_transformer_config_from_args).
_DERIVED = {"swiglu", "squared-relu", "disable-bias-linear", "num-layers-per-virtual-pipeline-stage",
            "num-virtual-stages-per-pipeline-rank", "multi-latent-attention", "group-query-attention"}
_GPT_MODEL = {"position-embedding-type": "position_embedding_type", "rotary-base": "rotary_base",
              "rotary-percent": "rotary_percent", "vocab-size": "vocab_size",
              "max-position-embeddings": "max_sequence_length",
              "untie-embeddings-and-output-weights": "share_embeddings_and_output_weights"}
_OPTIMIZER = {"optimizer", "sgd-momentum", "optimizer-cpu-offload", "optimizer-offload-fraction"}
_DDP = {"use-distributed-optimizer", "fp8-param-gather", "reuse-grad-buf-for-mxfp8-param-ag"}
# Megatron-LM's training loop and data: no megatron-core config holds them.
_TRAINING_LOOP = {"micro-batch-size", "global-batch-size", "seq-length", "data-path", "split", "tokenizer-type",
                  "tokenizer-model", "train-iters", "lr", "min-lr", "lr-decay-style", "lr-warmup-iters",
                  "weight-decay", "clip-grad", "save", "load", "save-interval", "log-interval", "eval-interval",
                  "eval-iters"}


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


@pytest.fixture(scope="module")
def spaces(tmp_path_factory):
    import yaml
    root = tmp_path_factory.mktemp("megatron-validate")
    for gpu in ("h100_sxm_80gb", "b200_hgx"):
        (root / f"{gpu}.yaml").write_text(yaml.safe_dump({"gpu": gpu, "gpus_per_node": 8, "nodes": 1}))
    out = {}
    for name, (job, constraints) in _JOBS.items():
        (root / f"{name}.yaml").write_text(yaml.safe_dump(job))
        inputs = load_inputs(root / f"{space_gpu(job)}.yaml", root / f"{name}.yaml")
        limits = {k: Constraint(values=tuple(v)) for k, v in constraints.items()}
        out[name] = (inputs, [p for p in candidate_plans(inputs.workload, inputs.cluster, inputs.defaults, limits)
                              if not megatron_problems(p)])
    return out


def core_configs(flags: dict, num_layers: int):
    """megatron-core's TransformerConfig (or MLATransformerConfig), OptimizerConfig and
    DistributedDataParallelConfig built from Megatron-LM flags, as Megatron-LM builds them."""
    mla = "multi-latent-attention" in flags
    cls = MLATransformerConfig if mla else TransformerConfig
    names = _fields(cls)
    kwargs, unknown = {}, []
    for flag, value in flags.items():
        field = _RENAMED.get(flag, flag.replace("-", "_"))
        if flag in _DERIVED or flag in _GPT_MODEL or flag in _OPTIMIZER or flag in _DDP or flag in _TRAINING_LOOP:
            continue
        if field not in names:
            unknown.append(flag)
            continue
        if value is True:
            kwargs[field] = True
        elif field == "moe_layer_freq":  # Megatron-LM's moe_freq_type evaluates the list
            kwargs[field] = ast.literal_eval(value.strip("'\""))
        else:
            kwargs[field] = _number(value)
    assert unknown == [], f"flags that are no megatron-core field: {unknown}"
    if "swiglu" in flags:
        kwargs.update(gated_linear_unit=True, activation_func=torch.nn.functional.silu)
    if "disable-bias-linear" in flags:
        kwargs["add_bias_linear"] = False
    pp = kwargs.get("pipeline_model_parallel_size", 1)
    if "num-layers-per-virtual-pipeline-stage" in flags:
        kwargs["virtual_pipeline_model_parallel_size"] = num_layers // pp // int(
            flags["num-layers-per-virtual-pipeline-stage"])
    if "num-virtual-stages-per-pipeline-rank" in flags:
        kwargs["virtual_pipeline_model_parallel_size"] = int(flags["num-virtual-stages-per-pipeline-rank"])
    dtype = torch.bfloat16 if "bf16" in flags else torch.float16 if "fp16" in flags else torch.float32
    kwargs.update(params_dtype=dtype, pipeline_dtype=dtype)
    # fp8 parameters: TransformerConfig.fp8_param is args.fp8_param_gather (core_transformer_config_from_args).
    kwargs["fp8_param"] = "fp8-param-gather" in flags
    transformer = cls(**kwargs)
    optimizer = OptimizerConfig(optimizer=flags.get("optimizer", "adam"), bf16="bf16" in flags, fp16="fp16" in flags,
                                sgd_momentum=float(flags.get("sgd-momentum", 0.9)),
                                optimizer_cpu_offload="optimizer-cpu-offload" in flags,
                                optimizer_offload_fraction=float(flags.get("optimizer-offload-fraction", 1.0)))
    ddp = DistributedDataParallelConfig(use_distributed_optimizer="use-distributed-optimizer" in flags,
                                        fp8_param_gather="fp8-param-gather" in flags,
                                        reuse_grad_buf_for_mxfp8_param_ag="reuse-grad-buf-for-mxfp8-param-ag" in flags)
    return transformer, optimizer, ddp


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text.strip("'\"")


def test_flags_outside_transformer_config_are_megatron_core_fields_elsewhere():
    gpt = set(inspect.signature(GPTModel.__init__).parameters)
    assert set(_GPT_MODEL.values()) <= gpt
    assert {f.replace("-", "_") for f in _OPTIMIZER} <= _fields(OptimizerConfig)
    assert {f.replace("-", "_") for f in _DDP} <= _fields(DistributedDataParallelConfig)
    assert set(_RENAMED.values()) <= _fields(TransformerConfig)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_emitted_scripts_build_megatron_core_configs_with_the_plans_values(spaces, data):
    name = data.draw(st.sampled_from(sorted(spaces)))
    inputs, plans = spaces[name]
    plan = data.draw(st.sampled_from(plans))
    text = emit_megatron(plan, inputs.workload, inputs.cluster)["megatron_launch.sh"]
    variables = read_script(text).variables
    words = [w for key in ("MODEL_ARGS", "PARALLEL_ARGS", "TRAINING_ARGS") for w in variables[key]]
    flags, notes = parse_flags(words)
    assert notes == []
    arch, p = inputs.workload.arch, plan.parallel
    transformer, optimizer, ddp = core_configs(flags, arch.num_layers)
    assert (transformer.tensor_model_parallel_size, transformer.pipeline_model_parallel_size,
            transformer.context_parallel_size, transformer.sequence_parallel) == (p.tp, p.pp, p.cp, p.sp)
    assert (transformer.virtual_pipeline_model_parallel_size or 1) == p.vpp or \
        transformer.pipeline_model_parallel_layout is not None
    if arch.moe is not None:
        assert (transformer.num_moe_experts, transformer.expert_model_parallel_size) == (arch.moe.num_experts, p.ep)
    counts = plan.layer_partition(arch.num_layers) or stage_layer_counts(arch.num_layers, p.pp)
    if transformer.num_layers_in_first_pipeline_stage is not None:
        assert (transformer.num_layers_in_first_pipeline_stage, transformer.num_layers_in_last_pipeline_stage) == \
            (counts[0], counts[-1])
    assert transformer.recompute_granularity == {"none": None}.get(plan.recompute, plan.recompute)
    assert (transformer.bf16, transformer.fp16, transformer.fp8) == (
        plan.precision in ("bf16", "fp8", "mxfp8", "nvfp4"), plan.precision == "fp16",
        {"fp8": "hybrid", "mxfp8": "e4m3"}.get(plan.precision))
    # NVFP4: fp4 mode with Transformer Engine's NVFP4BlockScaling (megatron/core/fp4_utils.py).
    assert (transformer.fp4, transformer.fp4_recipe) == (("e2m1", "nvfp4") if plan.precision == "nvfp4"
                                                         else (None, "nvfp4"))
    if plan.precision in ("fp8", "mxfp8"):  # current scaling, or MX block scaling
        assert transformer.fp8_recipe == {"fp8": "tensorwise", "mxfp8": "mxfp8"}[plan.precision]
    # Megatron-Core's fp8 parameters wherever its distributed optimizer gathers an fp8 model's weights.
    assert transformer.fp8_param == ddp.fp8_param_gather == (plan.precision in ("fp8", "mxfp8") and plan.zero == 1)
    # MXFP8 parameters are gathered through the gradient buffer, as Megatron-Bridge requires.
    assert ddp.reuse_grad_buf_for_mxfp8_param_ag == (ddp.fp8_param_gather and plan.precision == "mxfp8")
    assert optimizer.optimizer == ("sgd" if plan.optimizer.startswith("sgd") else "adam")
    assert ddp.use_distributed_optimizer == (plan.zero == 1)
    assert optimizer.optimizer_cpu_offload == (plan.offload == "optimizer")
