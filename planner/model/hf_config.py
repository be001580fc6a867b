"""Architectures from Hugging Face config.json fields, by `model_type`.

Each builder reads the fields its transformers class reads (transformers 5.24,
models/<type>/configuration_<type>.py and modeling_<type>.py); a field the config omits takes
that class's default, listed in `_DEFAULTS`. The fields that size the model (hidden size,
layers, heads, vocabulary, MLP width) are required. An unknown `model_type` with Llama-style
fields is read as Llama, with a warning naming every assumption.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from planner.model.architecture import Architecture, Attention, MoE
from planner.spec.errors import InputError

_LLAMA_DEFAULTS = {"num_key_value_heads": None, "head_dim": None, "tie_word_embeddings": False,
                   "attention_bias": False, "mlp_bias": False}
_DERIVED = {"num_key_value_heads": "num_attention_heads", "head_dim": "hidden_size / num_attention_heads"}
_QWEN_MOE_RULE = {"decoder_sparse_step": 1, "mlp_only_layers": None}

# transformers 5.24 class defaults of the optional fields each family reads.
# None: derived as transformers derives it (kv heads = heads, head_dim = hidden / heads).
_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": _LLAMA_DEFAULTS,
    "mistral": {"num_key_value_heads": 8, "head_dim": None, "tie_word_embeddings": False},
    "mixtral": {"num_key_value_heads": 8, "head_dim": None, "tie_word_embeddings": False,
                "num_local_experts": 8, "num_experts_per_tok": 2},
    "qwen2": {"num_key_value_heads": 32, "head_dim": None, "tie_word_embeddings": False},
    "qwen2_moe": {"num_key_value_heads": 16, "head_dim": None, "tie_word_embeddings": False,
                  "qkv_bias": True, "num_experts": 60, "num_experts_per_tok": 4,
                  "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632,
                  **_QWEN_MOE_RULE},
    "qwen3": {"num_key_value_heads": 32, "head_dim": 128, "tie_word_embeddings": False,
              "attention_bias": False},
    "qwen3_moe": {"num_key_value_heads": 4, "head_dim": None, "tie_word_embeddings": False,
                  "attention_bias": False, "num_experts": 128, "num_experts_per_tok": 8,
                  "moe_intermediate_size": 768, **_QWEN_MOE_RULE},
    "deepseek_v2": {"tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
                    "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
                    "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 64,
                    "n_shared_experts": 2, "num_experts_per_tok": None, "moe_intermediate_size": 1407,
                    "first_k_dense_replace": 0},
    "deepseek_v3": {"tie_word_embeddings": False, "attention_bias": False,
                    "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
                    "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 256,
                    "n_shared_experts": 1, "num_experts_per_tok": 8, "moe_intermediate_size": 2048,
                    "first_k_dense_replace": 3, "num_nextn_predict_layers": 1},
    "gemma": {"num_key_value_heads": 16, "head_dim": 256, "tie_word_embeddings": True,
              "attention_bias": False},
    "gemma2": {"num_key_value_heads": 4, "head_dim": 256, "tie_word_embeddings": True,
               "attention_bias": False},
    "gemma3_text": {"num_key_value_heads": 4, "head_dim": 256, "tie_word_embeddings": True,
                    "attention_bias": False},
    "olmo2": {"num_key_value_heads": None, "head_dim": None, "tie_word_embeddings": False,
              "attention_bias": False},
    "gpt_neox": {"tie_word_embeddings": False, "attention_bias": True,
                 "use_parallel_residual": True},
    "phi3": {"num_key_value_heads": None, "head_dim": None, "tie_word_embeddings": False},
    "llama4_text": {"num_key_value_heads": 8, "head_dim": 128, "tie_word_embeddings": False,
                    "attention_bias": False, "intermediate_size_mlp": 16384, "num_local_experts": 16,
                    "num_experts_per_tok": 1, "moe_layers": None, "interleave_moe_layer_step": 1},
    "gpt2": {"n_inner": None, "n_positions": 1024, "tie_word_embeddings": True},
    "gpt_oss": {"num_key_value_heads": 8, "head_dim": 64, "tie_word_embeddings": False,
                "attention_bias": True, "num_local_experts": 128, "num_experts_per_tok": 4},
    # hpcai-tech/grok-1 configuration_grok1.py (the Hugging Face port of xai-org/grok-1).
    "grok-1": {"num_key_value_heads": 8, "head_dim": None, "tie_word_embeddings": True,
               "num_experts": 8, "num_experts_per_tok": 2},
    "falcon": {"num_kv_heads": None, "ffn_hidden_size": None, "tie_word_embeddings": True,
               "bias": False, "new_decoder_architecture": False, "multi_query": True,
               "parallel_attn": True, "num_ln_in_parallel_attn": None, "alibi": False},
}


class _Fields:
    """config.json fields with one family's defaults; notes each default it had to assume."""

    def __init__(self, raw: dict, model_type: str, defaults: dict[str, Any], note_defaults: bool):
        self.raw = raw
        self.model_type = model_type
        self.defaults = defaults
        self.note_defaults = note_defaults
        self.assumed: list[str] = []

    def required(self, key: str, *aliases: str) -> int:
        """A required positive integer."""
        for k in (key, *aliases):
            if self.raw.get(k) is not None:
                return _positive(k, self.raw[k])
        raise InputError(f"missing required field {key!r} (model_type {self.model_type!r})", field=key)

    def get(self, key: str, *aliases: str) -> Any:
        """The field as given (null included), else the family default."""
        for k in (key, *aliases):
            if k in self.raw:
                return self.raw[k]
        value = self.defaults[key]
        if self.note_defaults:
            self.assumed.append(f"{key} = {_DERIVED.get(key, value) if value is None else value}")
        return value

    def optional_int(self, key: str, *aliases: str) -> int | None:
        """An optional positive integer; None when null or defaulted to None."""
        value = self.get(key, *aliases)
        return None if value is None else _positive(key, value)

    def count(self, key: str, *aliases: str) -> int:
        """An optional non-negative integer (null counts as 0)."""
        value = self.get(key, *aliases)
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"must be an integer >= 0, got {value!r}", field=key)
        return value

    def flag(self, key: str) -> bool:
        return bool(self.get(key))


def _positive(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"must be a positive integer, got {value!r}", field=key)
    return value


def _attention(f: _Fields, *, bias: bool = False, out_bias: bool | None = None,
               qk_norm: str | None = None) -> Attention:
    """Multi-head/grouped-query attention as the Llama-style families build it."""
    heads = f.required("num_attention_heads")
    return Attention(
        num_heads=heads,
        num_kv_heads=f.optional_int("num_key_value_heads") or heads,
        head_dim=f.optional_int("head_dim") or f.required("hidden_size") // heads,
        qkv_bias=bias,
        out_bias=bias if out_bias is None else out_bias,
        qk_norm=qk_norm,
    )


def _decoder(f: _Fields, name: str, attention: Attention, ffn: int | None = None,
             **fields: Any) -> Architecture:
    """The fields every family shares; `fields` override the Llama-style rest. The dense MLP
    width is `intermediate_size` unless given."""
    return Architecture(
        name=name,
        family=f.model_type,
        hidden=f.required("hidden_size"),
        num_layers=f.required("num_hidden_layers"),
        vocab=f.required("vocab_size"),
        ffn=ffn or f.required("intermediate_size"),
        attention=attention,
        tied_embeddings=f.flag("tie_word_embeddings"),
        **fields,
    )


def _moe(num_layers: int, sparse: Callable[[int], bool], **fields: Any) -> MoE | None:
    """An MoE with its sparse layers listed, or None when no layer (or no expert) is sparse."""
    layers = tuple(i for i in range(num_layers) if sparse(i))
    if not layers or fields["num_experts"] == 0:
        return None
    if fields["top_k"] is None:
        raise InputError("required by the MoE layers", field="num_experts_per_tok")
    return MoE(layers=layers, **fields)


def _llama(f: _Fields, name: str) -> Architecture:
    bias = f.flag("attention_bias")
    return _decoder(f, name, _attention(f, bias=bias), mlp_bias=f.flag("mlp_bias"))


def _mistral(f: _Fields, name: str) -> Architecture:
    return _decoder(f, name, _attention(f))


def _phi3(f: _Fields, name: str) -> Architecture:
    # Fused qkv_proj and gate_up_proj: the same parameters as the separate projections.
    return _decoder(f, name, _attention(f))


def _mixtral(f: _Fields, name: str) -> Architecture:
    ffn = f.required("intermediate_size")
    moe = _moe(f.required("num_hidden_layers"), lambda i: True, num_experts=f.count("num_local_experts"),
               top_k=f.optional_int("num_experts_per_tok"), expert_ffn=ffn)
    return _decoder(f, name, _attention(f), moe=moe)


def _grok1(f: _Fields, name: str) -> Architecture:
    """Grok-1 (xai-org/grok-1 model.py; hpcai-tech/grok-1 modeling_grok1.py): GQA without
    biases; every layer MoE of gated-GELU experts (linear, linear_v, linear_1: three matrices,
    as SwiGLU) behind a bias-free router; RMSNorm before and after each sub-block (four per
    layer); the output projection is the input embedding transposed."""
    moe = _moe(f.required("num_hidden_layers"), lambda i: True, num_experts=f.count("num_experts"),
               top_k=f.optional_int("num_experts_per_tok"), expert_ffn=f.required("intermediate_size"))
    return _decoder(f, name, _attention(f), moe=moe, norms_per_layer=4)


def _llama4(f: _Fields, name: str) -> Architecture:
    """Llama 4 text decoder (modeling_llama4.py): MoE layers at `moe_layers`, by default every
    `interleave_moe_layer_step`-th counting from 1, each with routed experts and one shared
    expert of `intermediate_size`; dense layers use `intermediate_size_mlp`. Its q/k norm is a
    parameter-free L2 norm."""
    num_layers = f.required("num_hidden_layers")
    step = f.optional_int("interleave_moe_layer_step") or 1
    listed = f.get("moe_layers")
    sparse = set(listed) if listed is not None else set(range(step - 1, num_layers, step))
    expert_ffn = f.required("intermediate_size")
    moe = _moe(num_layers, lambda i: i in sparse, num_experts=f.count("num_local_experts"),
               top_k=f.optional_int("num_experts_per_tok"), expert_ffn=expert_ffn,
               num_shared_experts=1, shared_ffn=expert_ffn, layer_freq=step)
    bias = f.flag("attention_bias")
    return _decoder(f, name, _attention(f, bias=bias), ffn=f.optional_int("intermediate_size_mlp"),
                    moe=moe)


def _gpt_oss(f: _Fields, name: str) -> Architecture:
    """gpt-oss (modeling_gpt_oss.py): GQA with biases and a learned sink logit per head; every
    layer MoE with a biased router and routed SwiGLU experts with biases (fused gate_up_proj),
    no shared expert. Sliding-window and full layers alternate, with the same shapes."""
    attention = replace(_attention(f, bias=f.flag("attention_bias")), sinks=True)
    moe = _moe(f.required("num_hidden_layers"), lambda i: True,
               num_experts=f.count("num_local_experts"), top_k=f.optional_int("num_experts_per_tok"),
               expert_ffn=f.required("intermediate_size"), expert_bias=True, router_bias=True)
    return _decoder(f, name, attention, moe=moe)


def _qwen2(f: _Fields, name: str) -> Architecture:
    return _decoder(f, name, _attention(f, bias=True, out_bias=False))


def _qwen3(f: _Fields, name: str) -> Architecture:
    return _decoder(f, name, _attention(f, bias=f.flag("attention_bias"), qk_norm="head"))


def _qwen_moe(f: _Fields, **shared: Any) -> MoE | None:
    """Qwen-MoE layer rule (modeling_qwen3_moe.py): sparse unless in mlp_only_layers, when
    (i + 1) % decoder_sparse_step == 0."""
    step = f.optional_int("decoder_sparse_step") or 1
    dense = tuple(f.get("mlp_only_layers") or ())
    return _moe(f.required("num_hidden_layers"), lambda i: i not in dense and (i + 1) % step == 0,
                num_experts=f.count("num_experts"), top_k=f.optional_int("num_experts_per_tok"),
                expert_ffn=f.required("moe_intermediate_size"), layer_freq=step, dense_layers=dense,
                **shared)


def _qwen2_moe(f: _Fields, name: str) -> Architecture:
    shared_ffn = f.count("shared_expert_intermediate_size")
    # transformers builds the shared expert and its gate even at width 0.
    moe = _qwen_moe(f, num_shared_experts=int(shared_ffn > 0), shared_ffn=shared_ffn,
                    shared_expert_gate=True)
    return _decoder(f, name, _attention(f, bias=f.flag("qkv_bias"), out_bias=False), moe=moe)


def _qwen3_moe(f: _Fields, name: str) -> Architecture:
    attention = _attention(f, bias=f.flag("attention_bias"), qk_norm="head")
    return _decoder(f, name, attention, moe=_qwen_moe(f))


def _deepseek(f: _Fields, name: str) -> Architecture:
    """DeepSeek-V2/V3: MLA attention, dense-first layers, shared plus routed experts.

    transformers builds routed experts in every layer from `first_k_dense_replace` on and does
    not read `moe_layer_freq` (1 in every released config), so neither does this.
    """
    heads = f.required("num_attention_heads")
    rope = f.count("qk_rope_head_dim")
    bias = f.flag("attention_bias")
    attention = Attention(
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=f.count("qk_nope_head_dim") + rope,
        v_head_dim=f.optional_int("v_head_dim"),
        qkv_bias=bias,
        out_bias=bias,
        q_lora_rank=f.optional_int("q_lora_rank"),
        kv_lora_rank=f.optional_int("kv_lora_rank"),
        qk_rope_head_dim=rope,
        qk_norm="latent",
    )
    first_dense = f.count("first_k_dense_replace")
    expert_ffn = f.required("moe_intermediate_size")
    num_shared = f.count("n_shared_experts")
    v3 = f.model_type == "deepseek_v3"
    mlp_bias = False if v3 else f.flag("mlp_bias")  # V3 has no mlp_bias field
    moe = _moe(f.required("num_hidden_layers"), lambda i: i >= first_dense,
               num_experts=f.count("n_routed_experts", "num_local_experts", "num_experts"),
               top_k=f.optional_int("num_experts_per_tok"), expert_ffn=expert_ffn,
               num_shared_experts=num_shared, shared_ffn=num_shared * expert_ffn,
               shared_expert_bias=mlp_bias, first_dense_layers=first_dense)
    # V3's MTP modules (num_mtp_layers in transformers) are counted apart.
    mtp = f.count("num_nextn_predict_layers", "num_mtp_layers") if v3 else 0
    return _decoder(f, name, attention, moe=moe, mlp_bias=mlp_bias, mtp_layers=mtp)


def _gemma(f: _Fields, name: str) -> Architecture:
    """Gemma 1/2/3: GeGLU; Gemma 2 and 3 norm before and after each sub-block; Gemma 3 also
    normalizes each query and key head."""
    qk_norm = "head" if f.model_type == "gemma3_text" else None
    norms = 2 if f.model_type == "gemma" else 4
    attention = _attention(f, bias=f.flag("attention_bias"), qk_norm=qk_norm)
    return _decoder(f, name, attention, norms_per_layer=norms)


def _olmo2(f: _Fields, name: str) -> Architecture:
    # Norms after attention and after the MLP (no input norm); q/k norms over whole projections.
    attention = _attention(f, bias=f.flag("attention_bias"), qk_norm="projection")
    return _decoder(f, name, attention)


def _gpt_neox(f: _Fields, name: str) -> Architecture:
    """GPT-NeoX/Pythia: fused query_key_value (3h, MHA only), LayerNorm, plain GELU MLP with biases."""
    heads = f.required("num_attention_heads")
    hidden = f.required("hidden_size")
    attention = Attention(num_heads=heads, num_kv_heads=heads, head_dim=hidden // heads,
                          qkv_bias=f.flag("attention_bias"), out_bias=f.flag("attention_bias"))
    return _decoder(f, name, attention, gated_mlp=False, mlp_bias=True, norm="layernorm",
                    parallel_residual=f.flag("use_parallel_residual"))


def _gpt2(f: _Fields, name: str) -> Architecture:
    """GPT-2 (and GPT-3 shapes): learned positions, LayerNorm, Conv1D with biases, 4h GELU MLP."""
    heads = f.required("n_head", "num_attention_heads")
    hidden = f.required("n_embd", "hidden_size")
    attention = Attention(num_heads=heads, num_kv_heads=heads, head_dim=hidden // heads,
                          qkv_bias=True, out_bias=True)
    return Architecture(
        name=name, family=f.model_type, hidden=hidden,
        num_layers=f.required("n_layer", "num_hidden_layers"), vocab=f.required("vocab_size"),
        ffn=f.optional_int("n_inner") or 4 * hidden, attention=attention, gated_mlp=False,
        mlp_bias=True, norm="layernorm", tied_embeddings=f.flag("tie_word_embeddings"),
        position="learned", max_positions=f.count("n_positions", "max_position_embeddings"),
    )


def _falcon(f: _Fields, name: str) -> Architecture:
    """Falcon (modeling_falcon.py): fused query_key_value whose width depends on the variant,
    LayerNorm, 4h GELU MLP, optional biases, one or two norms per block."""
    hidden = f.required("hidden_size", "n_embed")
    heads = f.required("num_attention_heads")
    new_arch = f.flag("new_decoder_architecture")
    if new_arch:
        kv_heads = f.optional_int("num_kv_heads") or heads
    elif f.flag("multi_query"):
        kv_heads = 1
    else:
        kv_heads = heads
    bias = f.flag("bias")
    parallel = f.flag("parallel_attn")
    if not parallel:
        norms = 2
    else:
        num_ln = f.optional_int("num_ln_in_parallel_attn") or (2 if new_arch else 1)
        norms = 2 if num_ln == 2 else 1
    attention = Attention(num_heads=heads, num_kv_heads=kv_heads, head_dim=hidden // heads,
                          qkv_bias=bias, out_bias=bias)
    return Architecture(
        name=name, family=f.model_type, hidden=hidden, num_layers=f.required("num_hidden_layers"),
        vocab=f.required("vocab_size"), ffn=f.optional_int("ffn_hidden_size") or 4 * hidden,
        attention=attention, gated_mlp=False, mlp_bias=bias, norm="layernorm",
        norms_per_layer=norms, parallel_residual=parallel,
        tied_embeddings=f.flag("tie_word_embeddings"),
        position="alibi" if f.flag("alibi") else "rope",
    )


_BUILDERS: dict[str, Callable[[_Fields, str], Architecture]] = {
    "llama": _llama, "llama4_text": _llama4, "mistral": _mistral, "mixtral": _mixtral, "phi3": _phi3,
    "qwen2": _qwen2, "qwen2_moe": _qwen2_moe, "qwen3": _qwen3, "qwen3_moe": _qwen3_moe,
    "deepseek_v2": _deepseek, "deepseek_v3": _deepseek,
    "gemma": _gemma, "gemma2": _gemma, "gemma3_text": _gemma, "olmo2": _olmo2,
    "gpt_neox": _gpt_neox, "gpt2": _gpt2, "falcon": _falcon, "gpt_oss": _gpt_oss,
    "grok-1": _grok1,
}


def supported_model_types() -> list[str]:
    return sorted(_BUILDERS)


def architecture_from_config(cfg: dict, name: str) -> Architecture:
    """The architecture a Hugging Face config.json describes.

    Multimodal configs (Gemma 3) are read through their `text_config`. Raises InputError naming
    the field for a missing or invalid value; warns when the model_type is unknown.
    """
    model_type = cfg.get("model_type")
    if model_type not in _BUILDERS and isinstance(cfg.get("text_config"), dict):
        text = cfg["text_config"]
        cfg = {"model_type": f"{model_type}_text", **text}
        model_type = cfg["model_type"]
    if model_type in _BUILDERS:
        return _BUILDERS[model_type](_Fields(cfg, model_type, _DEFAULTS[model_type], False), name)
    return _unknown(cfg, model_type, name)


_EXPERT_COUNT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")


def _unknown(cfg: dict, model_type: Any, name: str) -> Architecture:
    """Read an unknown (or missing) model_type as Llama, listing every assumption in
    extra['assumed']."""
    f = _Fields(cfg, str(model_type or "llama"), _LLAMA_DEFAULTS, note_defaults=True)
    arch = _llama(f, name)
    given = f"model_type {model_type!r}" if model_type else "no model_type"
    assumed = [f"{given} read as llama (RMSNorm, SwiGLU, RoPE, pre-norm)", *f.assumed]
    if any(key in cfg for key in _EXPERT_COUNT_KEYS):
        assumed.append("expert fields ignored: a dense MLP in every layer")
    warnings.warn(f"{name}: unknown model_type {model_type!r} (known: "
                  f"{', '.join(supported_model_types())}); assumed: {'; '.join(assumed)}",
                  stacklevel=2)
    return replace(arch, extra={"assumed": assumed})
