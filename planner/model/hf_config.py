"""Architectures from Hugging Face config.json fields.

Each family's reader (hf_dense.py, hf_moe.py) reads the fields its transformers class reads
(transformers 5.24, models/<type>/configuration_<type>.py and modeling_<type>.py); a field the
config omits takes that class's default (hf_defaults.DEFAULTS). The fields that size the model
(hidden size, layers, heads, vocabulary, MLP width) are required.

Which reader, first match wins:
  1. `read_as: TYPE`, a key of the planner's own (no Hugging Face config has it): the fields are
     read as family TYPE's, whatever model_type says. A job opts in this way for a config no
     reader covers: inline among the config fields of its `model` mapping, or next to a file as
     `model: {config: path/to/config.json, read_as: llama}` (loading.py).
  2. `model_type`, when a family of that name is known.
  3. `architectures`: the first transformers class a family's weights are built by
     (hf_defaults.ARCHITECTURE_CLASSES). Kimi-K2 ships `model_type: kimi_k2` with
     `architectures: [DeepseekV3ForCausalLM]` and is read as deepseek_v3.
  4. Otherwise the config is bad input: InputError naming the supported types.
A multimodal config with a `text_config` (Gemma 3, Llama 4) is read through its text decoder.
The Architecture's `family` is the reader's type; `extra["model_type"]` keeps the config's own
when it differs.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from planner.model import hf_dense, hf_moe
from planner.model.architecture import Architecture
from planner.model.hf_defaults import ARCHITECTURE_CLASSES
from planner.model.hf_fields import Fields
from planner.spec.errors import InputError, unknown_name

READ_AS = "read_as"
"""The planner's key that names the family to read a config's fields as."""

_READERS: dict[str, Callable[[Fields, str], Architecture]] = {
    "llama": hf_dense.llama, "granite": hf_dense.llama, "mistral": hf_dense.mistral,
    "phi3": hf_dense.phi3, "qwen2": hf_dense.qwen2, "qwen3": hf_dense.qwen3,
    "gemma": hf_dense.gemma, "gemma2": hf_dense.gemma, "gemma3_text": hf_dense.gemma,
    "olmo2": hf_dense.olmo2, "olmo3": hf_dense.olmo2, "nemotron": hf_dense.nemotron, "gpt_neox": hf_dense.gpt_neox,
    "gpt2": hf_dense.gpt2, "bloom": hf_dense.bloom, "falcon": hf_dense.falcon,
    "seed_oss": hf_dense.seed_oss, "smollm3": hf_dense.smollm3, "ernie4_5": hf_dense.ernie4_5,
    "hunyuan_v1_dense": hf_dense.hunyuan_v1_dense, "exaone4": hf_dense.exaone4,
    "ernie4_5_moe": hf_moe.ernie4_5_moe, "hunyuan_v1_moe": hf_moe.hunyuan_v1_moe,
    "mixtral": hf_moe.mixtral, "grok-1": hf_moe.grok1, "llama4_text": hf_moe.llama4,
    "gpt_oss": hf_moe.gpt_oss, "minimax_m2": hf_moe.minimax_m2,
    "qwen2_moe": hf_moe.qwen2_moe, "qwen3_moe": hf_moe.qwen3_moe,
    "deepseek_v2": hf_moe.deepseek, "deepseek_v3": hf_moe.deepseek, "glm4_moe": hf_moe.glm4_moe,
}


def supported_model_types() -> list[str]:
    return sorted(_READERS)


def architecture_from_config(cfg: dict, name: str) -> Architecture:
    """The architecture a Hugging Face config.json describes (see the module docstring for
    which reader). Raises InputError naming the field for a missing or invalid value, and for a
    config no reader covers."""
    model_type = cfg.get("model_type")
    if cfg.get(READ_AS) is None and model_type not in _READERS \
            and isinstance(cfg.get("text_config"), dict):
        cfg = {"model_type": f"{model_type}_text", **cfg["text_config"]}
        model_type = cfg["model_type"]
    reader = reader_type(cfg)
    arch = _READERS[reader](Fields(cfg, reader), name)
    if model_type != reader:
        arch = replace(arch, extra={**arch.extra, "model_type": model_type, "read_as": reader})
    return arch


def reader_type(cfg: dict) -> str:
    """The family whose reader reads `cfg`: read_as, else model_type, else architectures."""
    read_as = cfg.get(READ_AS)
    if read_as is not None:
        if read_as not in _READERS:
            raise InputError(unknown_name("model type", str(read_as), _READERS), field=READ_AS)
        return read_as
    model_type = cfg.get("model_type")
    if model_type in _READERS:
        return model_type
    classes = _architectures(cfg)
    for cls in classes:
        if cls in ARCHITECTURE_CLASSES:
            return ARCHITECTURE_CLASSES[cls]
    given = f"model_type {model_type!r}" if model_type is not None else "no model_type"
    given += f" and architectures {classes}" if classes else " and no architectures"
    raise InputError(
        f"{given}: no supported family reads these weights (supported model_type: "
        f"{', '.join(supported_model_types())}; or their transformers classes in architectures, "
        f"such as LlamaForCausalLM); add '{READ_AS}: TYPE' to read the fields as one of those "
        f"types", field="model_type")


def _architectures(cfg: dict) -> list[str]:
    value: Any = cfg.get("architectures")
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"must be a list of class names, got {value!r}", field="architectures")
    return value
