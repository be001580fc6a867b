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
A multimodal config with a `text_config` (Gemma 3, Llama 4, Mistral 3, Qwen2.5-VL, Qwen3-VL,
GLM-4.5V, Kimi-K2.5: MULTIMODAL) is read through its text decoder, with the output layer tied as
the multimodal class ties it (transformers ties by the top-level `tie_word_embeddings`,
modeling_utils.py `get_expanded_tied_weights_keys`); its encoders are not modelled, and
`extra["encoders"]` says so (`extra["multimodal"]`: the multimodal model_type).
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
    "ministral": hf_dense.mistral, "ministral3": hf_dense.mistral,
    "phi3": hf_dense.phi3, "qwen2": hf_dense.qwen2, "qwen3": hf_dense.qwen3,
    "gemma": hf_dense.gemma, "gemma2": hf_dense.gemma, "gemma3_text": hf_dense.gemma,
    "olmo2": hf_dense.olmo2, "olmo3": hf_dense.olmo2, "nemotron": hf_dense.nemotron, "gpt_neox": hf_dense.gpt_neox,
    "gpt2": hf_dense.gpt2, "bloom": hf_dense.bloom, "falcon": hf_dense.falcon,
    "seed_oss": hf_dense.seed_oss, "smollm3": hf_dense.smollm3, "ernie4_5": hf_dense.ernie4_5,
    "hunyuan_v1_dense": hf_dense.hunyuan_v1_dense, "exaone4": hf_dense.exaone4,
    "glm": hf_dense.glm, "glm4": hf_dense.glm, "starcoder2": hf_dense.starcoder2, "phimoe": hf_moe.phimoe,
    "arcee": hf_dense.arcee, "apertus": hf_dense.apertus, "olmoe": hf_moe.olmoe,
    "granitemoe": hf_moe.granitemoe, "granitemoeshared": hf_moe.granitemoe,
    "cohere": hf_dense.cohere, "cohere2": hf_dense.cohere,
    "ernie4_5_moe": hf_moe.ernie4_5_moe, "hunyuan_v1_moe": hf_moe.hunyuan_v1_moe,
    "mixtral": hf_moe.mixtral, "grok-1": hf_moe.grok1, "llama4_text": hf_moe.llama4,
    "gpt_oss": hf_moe.gpt_oss, "minimax_m2": hf_moe.minimax_m2,
    "qwen2_moe": hf_moe.qwen2_moe, "qwen3_moe": hf_moe.qwen3_moe,
    "deepseek_v2": hf_moe.deepseek, "deepseek_v3": hf_moe.deepseek, "glm4_moe": hf_moe.glm4_moe,
    "glm4_moe_lite": hf_moe.glm4_moe_lite, "mistral4": hf_moe.deepseek, "dots1": hf_moe.dots1,
    "solar_open": hf_moe.solar_open, "exaone_moe": hf_moe.exaone_moe,
    # The text decoders of multimodal models, with their own class defaults (hf_defaults.py).
    "qwen2_5_vl_text": hf_dense.qwen2, "qwen3_vl_text": hf_dense.qwen3, "qwen3_vl_moe_text": hf_moe.qwen3_moe,
    "glm4v_moe_text": hf_moe.glm4_moe,
}

MULTIMODAL: dict[str, tuple[str, bool | None, bool]] = {
    "gemma3": ("gemma3_text", True, False), "llama4": ("llama4_text", None, False),
    "mistral3": ("mistral", True, False), "qwen2_5_vl": ("qwen2_5_vl_text", False, True),
    "qwen3_vl": ("qwen3_vl_text", False, False), "qwen3_vl_moe": ("qwen3_vl_moe_text", False, False),
    "glm4v_moe": ("glm4v_moe_text", False, True), "kimi_k25": ("deepseek_v3", True, False),
}
"""Multimodal model_type: (the model_type of its text_config when that names none, the class
default of its top-level `tie_word_embeddings` (None: the text decoder is a causal LM of its own,
tied by its own config: Llama 4), whether a text_config's `tie_word_embeddings: true` carries
over, as for configs saved before transformers 5). transformers 5.25
models/<type>/configuration_<type>.py; Kimi-K2.5's text_config says kimi_k2, which its class
reads as deepseek_v3 (configuration_kimi_k25.py)."""
TEXT_TYPES = {"kimi_k2": "deepseek_v3"}
"""text_config model_types that their multimodal class reads as another (configuration_kimi_k25.py)."""


def supported_model_types() -> list[str]:
    return sorted(_READERS)


def architecture_from_config(cfg: dict, name: str) -> Architecture:
    """The architecture a Hugging Face config.json describes (see the module docstring for
    which reader). Raises InputError naming the field for a missing or invalid value, and for a
    config no reader covers."""
    model_type = _model_type(cfg, "model_type")
    wrapper = None
    if cfg.get(READ_AS) is None and model_type not in _READERS \
            and isinstance(cfg.get("text_config"), dict):
        wrapper = cfg
        text_type = MULTIMODAL.get(model_type, (f"{model_type}_text",))[0]
        cfg = {"model_type": text_type, **cfg["text_config"]}
        cfg["model_type"] = TEXT_TYPES.get(_model_type(cfg, "text_config.model_type"), cfg["model_type"])
        model_type = cfg["model_type"]
    reader = reader_type(cfg)
    arch = _READERS[reader](Fields(cfg, reader), name)
    if model_type != reader:
        arch = replace(arch, extra={**arch.extra, "model_type": model_type, "read_as": reader})
    if wrapper is not None:
        arch = _text_decoder_of(wrapper, cfg, arch)
    return arch


def _model_type(cfg: dict, field: str) -> str | None:
    """The config's model_type: a name (transformers' configs are keyed by it), or absent."""
    value = cfg.get("model_type")
    if value is not None and not isinstance(value, str):
        raise InputError(f"must be a name such as 'llama', got {value!r}", field=field)
    return value


def _text_decoder_of(wrapper: dict, text: dict, arch: Architecture) -> Architecture:
    """The text decoder of a multimodal config: its output layer tied as the multimodal class ties
    it (MULTIMODAL), and `extra` naming the multimodal type and what is not modelled."""
    known = MULTIMODAL.get(wrapper.get("model_type"))
    tied = arch.tied_embeddings
    if known is not None and known[1] is not None:
        _, default, carried = known
        value = wrapper.get("tie_word_embeddings")
        if value is not None and not isinstance(value, bool):
            raise InputError(f"must be true or false, got {value!r}", field="tie_word_embeddings")
        tied = (default if value is None else value) or (carried and text.get("tie_word_embeddings") is True)
    kind = wrapper.get("model_type")
    encoders = [key for key in ("vision_config", "audio_config") if isinstance(wrapper.get(key), dict)]
    extra = {**arch.extra, "multimodal": str(kind)}
    extra["encoders"] = (f"{kind}: the text decoder alone; the encoders ({', '.join(encoders) or 'none stated'})"
                         " are not modelled (no parameters, memory or time of theirs)")
    return replace(arch, tied_embeddings=tied, extra=extra)


def reader_type(cfg: dict) -> str:
    """The family whose reader reads `cfg`: read_as, else model_type, else architectures."""
    read_as = cfg.get(READ_AS)
    if read_as is not None:
        if not isinstance(read_as, str) or read_as not in _READERS:
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
        f"{', '.join(supported_model_types())}; multimodal, read as their text decoder: "
        f"{', '.join(sorted(MULTIMODAL))}; or their transformers classes in architectures, "
        f"such as LlamaForCausalLM); add '{READ_AS}: TYPE' to read the fields as one of those "
        f"types", field="model_type")


def _architectures(cfg: dict) -> list[str]:
    value: Any = cfg.get("architectures")
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"must be a list of class names, got {value!r}", field="architectures")
    return value
