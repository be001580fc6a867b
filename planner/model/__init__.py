"""Model architectures (presets, Hugging Face config.json), exact parameter counts and FLOPs."""
from planner.model.architecture import Architecture, Attention, MoE
from planner.model.flops import (
    LayerFlops,
    forward_flops_per_token,
    layer_flops,
    logits_flops,
    training_flops_per_token,
)
from planner.model.hf_config import architecture_from_config, load_architecture
from planner.model.params import (
    LayerParams,
    ParamCount,
    count_params,
    embedding_params,
    layer_params,
    lora_params,
    output_params,
)
from planner.model.presets import get_preset, list_presets

__all__ = [
    "Architecture",
    "Attention",
    "LayerFlops",
    "LayerParams",
    "MoE",
    "ParamCount",
    "architecture_from_config",
    "count_params",
    "embedding_params",
    "forward_flops_per_token",
    "get_preset",
    "layer_flops",
    "layer_params",
    "list_presets",
    "load_architecture",
    "logits_flops",
    "lora_params",
    "output_params",
    "training_flops_per_token",
]
