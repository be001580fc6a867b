"""The vocabulary of a plan as files and options write it: its keys and the values of its choices.

job.yaml's `constraints`, `planner estimate --plan` and the engines' files all name plan keys;
`planner.cost.plan.Plan` is built from the same names (tests/test_plan.py holds them equal).
"""
from __future__ import annotations

from typing import Literal

from planner.spec.errors import InputError, did_you_mean

Recompute = Literal["none", "selective", "full"]
Offload = Literal["none", "optimizer", "optimizer+params", "params"]
Quant = Literal["none", "int8", "nf4", "fp8"]
MomentDtype = Literal["fp32", "bf16"]

RECOMPUTE_POLICIES: tuple[Recompute, ...] = ("none", "selective", "full")
OFFLOAD_CHOICES: tuple[Offload, ...] = ("none", "optimizer", "optimizer+params")
"""The offloads the search and constraints choose from. `params` (the weights on the host, the
optimizer on the GPU: DeepSpeed ZeRO-3 `offload_param` without `offload_optimizer`) is a plan
that DeepSpeed configs describe; the search does not propose it."""
QUANT_CHOICES: tuple[Quant, ...] = ("none", "int8", "nf4", "fp8")
MOMENT_DTYPES: tuple[MomentDtype, ...] = ("fp32", "bf16")
RECOMPUTE_MODULES = ("core_attn", "layernorm", "mlp", "moe", "moe_act", "shared_experts", "mla_up_proj")
"""Megatron-Core's selective recompute modules (`--recompute-modules`,
megatron/core/transformer/transformer_config.py `recompute_modules`): the attention core, the input
norms, the dense MLP, the whole MoE layer, the experts' activation function, the shared experts
and MLA's up-projections."""

PARALLEL_KEYS = ("tp", "pp", "dp", "cp", "ep", "vpp", "sp")
"""The parallel degrees, in the order of `ParallelDims`."""
PLAN_KEYS = PARALLEL_KEYS + ("zero", "recompute", "mbs", "gas", "lora_rank", "quant", "precision", "offload",
                             "optimizer", "first_stage_layers", "last_stage_layers", "recompute_layers",
                             "etp", "recompute_modules", "offload_activation_layers", "moment_dtype",
                             "fp8_param_gather", "pipeline_runs", "framework")
"""Every key of a plan, in the order of `Plan`'s fields with the parallel degrees first."""
KEY_ALIASES = {"lora": "lora_rank"}
"""Names `--plan SPEC` accepts for keys the JSON spells out."""

ENGINES = ("megatron", "deepspeed", "fsdp2", "torchtitan")
"""The engines a plan runs on (the plan key `framework`); planner/engines/profiles/ says what each runs."""
AUTO = "auto"
"""`framework: auto`: search every engine that can run the job and label each plan with its engine."""
ENGINE_ALIASES = {
    "megatron-core": "megatron", "mcore": "megatron", "megatron-lm": "megatron", "nemo": "megatron",
    "megatron-bridge": "megatron",
    "ds": "deepspeed", "deepspeed-zero": "deepspeed",
    "hf": "fsdp2", "accelerate": "fsdp2", "transformers": "fsdp2", "trainer": "fsdp2", "fsdp": "fsdp2",
    "huggingface": "fsdp2", "torch-fsdp2": "fsdp2",
    "titan": "torchtitan",
}
"""Names users give the engines: Megatron-Core as run by Megatron-LM, NeMo and Megatron-Bridge;
DeepSpeed; Hugging Face transformers with accelerate or the Trainer on FSDP2; torchtitan."""


def resolve_framework(name: str, *, field: str = "framework", file: str | None = None,
                      allow_auto: bool = True) -> str:
    """The engine (or `auto`) a user's name means: `Megatron-LM`, `mcore`, `hf`, `ds` ...
    Bad input for anything else, with the close names and the valid ones."""
    key = str(name).strip().lower().replace("_", "-").replace(" ", "-")
    key = ENGINE_ALIASES.get(key, key)
    if key in ENGINES or (allow_auto and key == AUTO):
        return key
    valid = ENGINES + ((AUTO,) if allow_auto else ())
    raise InputError(f"unknown engine {name!r}{did_you_mean(key, valid + tuple(ENGINE_ALIASES))};"
                     f" valid: {', '.join(valid)} (also {', '.join(sorted(ENGINE_ALIASES))})",
                     file=file, field=field)
