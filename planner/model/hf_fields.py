"""Reading config.json fields with one family's defaults, and the parts most families share
(attention, the decoder's common fields, the MoE layer list)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from planner.model.architecture import MAX_LAYERS, MAX_VOCAB, Architecture, Attention, MoE
from planner.model.hf_defaults import ACTIVATIONS, DEFAULTS, DROPOUT
from planner.spec.errors import InputError, shown


class Fields:
    """config.json fields of one model, read with the defaults of the family `model_type`."""

    def __init__(self, raw: dict, model_type: str):
        self.raw = raw
        self.model_type = model_type
        self.defaults = DEFAULTS[model_type]

    def required(self, key: str, *aliases: str) -> int:
        """A required positive integer."""
        for k in (key, *aliases):
            if self.raw.get(k) is not None:
                return positive(k, self.raw[k])
        names = " or ".join(repr(k) for k in (key, *aliases))
        raise InputError(f"missing required field {names} (model_type {self.model_type!r})", field=key)

    def get(self, key: str, *aliases: str) -> Any:
        """The field as given (null included), else the family default."""
        for k in (key, *aliases):
            if k in self.raw:
                return self.raw[k]
        return self.defaults[key]

    def optional_int(self, key: str, *aliases: str) -> int | None:
        """An optional positive integer; None when null or defaulted to None."""
        value = self.get(key, *aliases)
        return None if value is None else positive(key, value)

    def count(self, key: str, *aliases: str) -> int:
        """An optional non-negative integer (null counts as 0)."""
        value = self.get(key, *aliases)
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_VOCAB:
            raise InputError(f"must be an integer from 0 to {MAX_VOCAB:,}, got {shown(value)}", field=key)
        return value

    def width(self, key: str) -> int:
        """A positive integer the model needs, given or the class default (null is refused: the
        modules cannot be built without it)."""
        return positive(key, self.get(key))

    def layer_indices(self, key: str) -> tuple[int, ...] | None:
        """A list of layer indices (null: None), such as Llama 4's `moe_layers`."""
        value = self.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in value):
            raise InputError(f"must be a list of layer indices (whole numbers from 0), got {value!r}", field=key)
        return tuple(value)

    def flag(self, key: str) -> bool:
        """A true/false field (null: false). transformers' configs type these as booleans: a
        string such as "no" is refused, not read as true."""
        value = self.get(key)
        if value is not None and not isinstance(value, bool) and value not in (0, 1):
            raise InputError(f"must be true or false, got {value!r}", field=key)
        return bool(value)

    def dropout(self) -> float:
        """The family's dropout on each half's output (hf_defaults.DROPOUT), 0 where it has none."""
        if self.model_type not in DROPOUT:
            return 0.0
        key, default = DROPOUT[self.model_type]
        value = self.raw.get(key, default)
        if value is None:
            return 0.0
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise InputError(f"must be a dropout probability from 0 to 1, got {shown(value)}", field=key)
        return float(value)

    def activation(self) -> str:
        """The MLP activation's ACT2FN name (hf_defaults.ACTIVATIONS)."""
        key, default = ACTIVATIONS[self.model_type]
        value = self.raw.get(key, default) if key else default
        if not isinstance(value, str):
            raise InputError(f"must be an activation name such as 'silu', got {value!r}", field=key)
        return value

    def rotary_fraction(self, key: str) -> float:
        """The share of each head RoPE rotates: `key` at the top level (legacy configs), else
        `partial_rotary_factor` in rope_parameters (transformers 5) or rope_scaling, else the
        family default."""
        value = self.raw.get(key)
        for nested in ("rope_parameters", "rope_scaling"):
            if value is None and isinstance(self.raw.get(nested), dict):
                value = self.raw[nested].get("partial_rotary_factor")
        value = self.defaults[key] if value is None else value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise InputError(f"must be a fraction in (0, 1], got {value!r}", field=key)
        return float(value)


_LAYER_KEYS = ("num_hidden_layers", "n_layer")


def positive(key: str, value: Any) -> int:
    """A positive integer of at most the largest bound of a shape (architecture.py), and of at
    most MAX_LAYERS for a layer count, checked before any builder loops over the layers."""
    high = MAX_LAYERS if key in _LAYER_KEYS else MAX_VOCAB
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= high:
        raise InputError(f"must be a positive integer of at most {high:,}, got {shown(value)}", field=key)
    return value


def rotary_dim(head_dim: int, fraction: float) -> int | None:
    """Rotated features per head, as transformers' RoPE init computes them
    (modeling_rope_utils.py: int(head_dim * partial_rotary_factor)); None for the whole head."""
    dim = int(head_dim * fraction)
    return None if dim == head_dim else dim


def attention(f: Fields, *, bias: bool = False, out_bias: bool | None = None,
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


def decoder(f: Fields, name: str, attn: Attention, ffn: int | None = None,
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
        attention=attn,
        tied_embeddings=f.flag("tie_word_embeddings"),
        mlp_activation=f.activation(),
        residual_dropout=f.dropout(),
        **fields,
    )


def moe(num_layers: int, sparse: Callable[[int], bool], **fields: Any) -> MoE | None:
    """An MoE with its sparse layers listed, or None when no layer (or no expert) is sparse."""
    if fields["num_experts"] == 0 and fields.get("top_k"):
        raise InputError(f"0 routed experts, but {fields['top_k']} routed to per token (num_experts_per_tok);"
                         " give the experts, or num_experts_per_tok 0 for a dense model")
    layers = tuple(i for i in range(num_layers) if sparse(i))
    if not layers or fields["num_experts"] == 0:
        return None
    if fields["top_k"] is None:
        raise InputError("required by the MoE layers", field="num_experts_per_tok")
    return MoE(layers=layers, **fields)
