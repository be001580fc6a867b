"""Model architectures (presets, Hugging Face config.json, Megatron arguments), exact parameter
counts and FLOPs."""
from planner.model.architecture import Architecture, Attention, MoE
from planner.model.flops import (
    FlopsPerToken,
    LayerFlops,
    flops_per_token,
    forward_flops_per_token,
    layer_flops,
    logits_flops,
    training_flops_per_token,
)
from planner.model.hf_config import architecture_from_config
from planner.model.loading import load_architecture
from planner.model.megatron_args import architecture_from_megatron_args
from planner.model.params import (
    LayerKind,
    LayerParams,
    ParamCount,
    count_params,
    embedding_params,
    layer_kinds,
    layer_params,
    lora_params,
    output_params,
)
from planner.model.presets import get_preset, list_presets

__all__ = [
    "Architecture",
    "Attention",
    "FlopsPerToken",
    "LayerFlops",
    "LayerKind",
    "LayerParams",
    "MoE",
    "ParamCount",
    "architecture_from_config",
    "architecture_from_megatron_args",
    "count_params",
    "embedding_params",
    "flops_per_token",
    "forward_flops_per_token",
    "get_preset",
    "layer_flops",
    "layer_kinds",
    "layer_params",
    "list_presets",
    "load_architecture",
    "logits_flops",
    "lora_params",
    "output_params",
    "training_flops_per_token",
]
