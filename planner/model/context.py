"""What a config.json says about context: the tokens each layer caches (sliding-window and
chunked layers) and the longest context the model states it takes. Pure functions."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from planner.model.architecture import Architecture
from planner.spec.errors import InputError


@dataclass(frozen=True)
class ContextLimit:
    """The longest context a config.json states, and where it says so."""

    tokens: int
    source: str
    """The field(s) that state it, e.g. 'max_position_embeddings' or
    'rope_scaling yarn: original_max_position_embeddings 4096 x factor 32'."""


# Rope types whose length is max_position_embeddings itself (vLLM config.py
# _get_and_verify_max_len: "su", "longrope" and "llama3" are not multiplied by their factor).
_UNSCALED_ROPE = ("su", "longrope", "llama3")


def context_limit(config: Mapping | None) -> ContextLimit | None:
    """The longest context the config states, as vLLM derives max_model_len (vllm/config.py
    `_get_and_verify_max_len`, v0.6 to v0.10): `max_position_embeddings` (GPT-2:
    `n_positions`); with rope scaling of type yarn, `original_max_position_embeddings × factor`;
    of other scaled types (linear, dynamic), the length × factor; llama3, longrope and su state
    their full length in max_position_embeddings. `rope_scaling` or transformers 5's
    `rope_parameters` (which keeps rope_theta alone when nothing is scaled). None when the
    config states no length (ALiBi models such as BLOOM; presets without the field)."""
    if config is None:
        return None
    cfg = dict(config)
    if isinstance(cfg.get("text_config"), dict):
        cfg = {**cfg, **cfg["text_config"]}
    key = next((k for k in ("max_position_embeddings", "n_positions") if cfg.get(k) is not None), None)
    rope_key = next((k for k in ("rope_scaling", "rope_parameters") if isinstance(cfg.get(k), dict)), None)
    rope = cfg[rope_key] if rope_key else {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    factor = rope.get("factor")
    if rope_type in ("default", *_UNSCALED_ROPE) or factor is None:
        return ContextLimit(_tokens(key, cfg[key]), key) if key else None
    if rope_type == "yarn":
        original = rope.get("original_max_position_embeddings")
        if original is None:
            raise InputError("a yarn rope scaling needs it", field=f"{rope_key}.original_max_position_embeddings")
        base, base_name = _tokens(f"{rope_key}.original_max_position_embeddings", original), \
            "original_max_position_embeddings"
    elif key:
        base, base_name = _tokens(key, cfg[key]), key
    else:
        return None
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor < 1:
        raise InputError(f"must be a number >= 1, got {factor!r}", field=f"{rope_key}.factor")
    return ContextLimit(int(base * factor), f"{rope_key} {rope_type}: {base_name} {base:,} x factor {factor:g}")


def _tokens(field: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"must be a positive integer, got {value!r}", field=field)
    return value


# Which layers cache only a window, by family, as transformers 5.24 builds `layer_types` when the
# config omits it (models/<type>/configuration_<type>.py). Window defaults are those classes'.
_WINDOW_DEFAULT = {"mistral": 4096, "qwen2": 4096, "qwen3": 4096, "qwen2_moe": 4096,
                   "qwen3_moe": 4096, "gemma2": 4096, "gemma3_text": 4096, "gpt_oss": 128, "olmo3": 4096,
                   "exaone4": 4096, "cohere2": 4096, "ministral": 4096, "dots1": 4096, "exaone_moe": 4096}


def _layer_count(cfg: Mapping, field: str, default: int, what: str) -> int:
    """A whole number of layers from the config (`what` says what it counts)."""
    value = cfg.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"must be a whole number of layers ({what}), got {value!r}", field=field)
    return value


def _default_layer_types(family: str, cfg: Mapping, n: int) -> list[str]:
    use = bool(cfg.get("use_sliding_window", False))
    last_full = _layer_count(cfg, "max_window_layers", 62 if family == "dots1" else 28, "those below it attend in full")
    every = (_layer_count(cfg, "sliding_window_pattern", 6 if family == "gemma3_text" else 4, "every that many one global")
             if family in ("gemma3_text", "cohere2", "exaone4", "exaone_moe") else 0)
    window_set = cfg.get("sliding_window", _WINDOW_DEFAULT.get(family)) is not None
    rules: dict[str, Callable[[int], bool]] = {
        "mistral": lambda i: True, "mixtral": lambda i: True, "phi3": lambda i: True, "phimoe": lambda i: True,
        "starcoder2": lambda i: True, "ministral": lambda i: True, "ministral3": lambda i: True,
        "qwen3_moe": lambda i: use,
        "qwen2": lambda i: use and i >= last_full, "qwen3": lambda i: use and i >= last_full,
        "dots1": lambda i: window_set and i >= last_full,
        "qwen2_moe": lambda i: use and bool((i + 1) % 2) and i < last_full,
        "gemma2": lambda i: bool((i + 1) % 2), "gpt_oss": lambda i: bool((i + 1) % 2),
        "gemma3_text": lambda i: bool(every and (i + 1) % every),
        "olmo3": lambda i: bool((i + 1) % 4),
        "cohere2": lambda i: bool(every and (i + 1) % every),
    }
    if family in ("exaone4", "exaone_moe"):
        # Exaone4Config, ExaoneMoeConfig: every sliding_window_pattern-th layer global; none without a window.
        every = every if window_set else 0
        return ["sliding_attention" if every and (i + 1) % every else "full_attention" for i in range(n)]
    if family == "llama4_text":
        # RoPE layers attend within chunks of attention_chunk_size; every 4th (NoPE) layer is global.
        interval = _layer_count(cfg, "no_rope_layer_interval", 4, "every that many one global") or 1
        rope = cfg.get("no_rope_layers") or [int((i + 1) % interval != 0) for i in range(n)]
        if not isinstance(rope, list):
            raise InputError(f"must be a list of 0 or 1 per layer, got {rope!r}", field="no_rope_layers")
        return ["chunked_attention" if r else "full_attention" for r in rope]
    sliding = rules.get(family, lambda i: False)
    return ["sliding_attention" if sliding(i) else "full_attention" for i in range(n)]


def layer_windows(arch: Architecture, config: Mapping | None) -> tuple[int | None, ...]:
    """Tokens each layer caches at most: `sliding_window` for sliding layers (Mistral; Gemma 2
    alternating; Gemma 3 five local to one global), `attention_chunk_size` for Llama 4's chunked
    layers, None for full attention. Read from the config.json fields (`layer_types`, or the
    family's rule; gpt-oss alternates too), since the Architecture keeps no per-layer pattern; without a config,
    `Attention.sliding_window` applies to every layer. Unknown families: full attention."""
    n = arch.num_layers
    if config is None:
        return (arch.attention.sliding_window,) * n
    cfg = dict(config)
    if isinstance(cfg.get("text_config"), dict) and "multimodal" in arch.extra:
        cfg = cfg["text_config"]  # multimodal configs (Gemma 3, Mistral 3), as hf_config reads them
    types = cfg.get("layer_types") or _default_layer_types(arch.family, cfg, n)
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise InputError(f"must be a list of attention kinds per layer, got {types!r}", field="layer_types")
    if len(types) != n:
        raise InputError(f"lists {len(types)} layers but the model has {n}", field="layer_types")
    window = _tokens_or_none(cfg, "sliding_window", _WINDOW_DEFAULT.get(arch.family))
    if arch.family.startswith("qwen") and not cfg.get("use_sliding_window", False):
        window = None
    chunk = _tokens_or_none(cfg, "attention_chunk_size", 8192)
    by_type = {"sliding_attention": window, "chunked_attention": chunk}
    return tuple(by_type.get(t) for t in types)


def _tokens_or_none(cfg: Mapping, field: str, default: int | None) -> int | None:
    value = cfg.get(field, default)
    return None if value is None else _tokens(field, value)
