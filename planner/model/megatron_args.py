"""Architectures from Megatron-LM arguments, already parsed into a mapping of flag -> value.

Megatron-LM's `pretrain_gpt.py` builds megatron-core's GPTModel from its arguments
(megatron/training/arguments.py; megatron-core 0.16 TransformerConfig and GPT layer specs). Its
defaults apply to every flag left out, and they differ from Hugging Face's: LayerNorm (weight and
bias), biases on every linear layer (QKV, output projection, MLP, routed experts and router) until
--disable-bias-linear, learned absolute position embeddings, an output layer tied to the input
embedding until --untie-embeddings-and-output-weights, multi-head attention until
--group-query-attention, and an MLP of 4h (with --swiglu: 4h x 2/3 rounded down to a multiple
of 64).

Vocabulary: --padded-vocab-size is taken as it is. --vocab-size is the tokenizer's size, which
Megatron pads up to a multiple of --make-vocab-size-divisible-by (128) x
--tensor-model-parallel-size (`_vocab_size_with_padding`), so the padded rows exist in the
embedding and the output layer. Megatron's NullTokenizer adds an end-of-document token to the
size it is given (Megatron-LM `_NullTokenizer.vocab_size`); give its padded size instead.

Flags that do not change parameter shapes (learning rate, batch sizes, parallelism, data) are
ignored. Flags known to change shapes in ways not modeled here are listed in the result's
`extra["unmodeled_flags"]`, so callers can say the count may be off; they raise nothing.
"""
from __future__ import annotations

import ast
from collections.abc import Mapping

from planner.model.architecture import MAX_LAYERS, MAX_VOCAB, Architecture, Attention, MoE
from planner.spec.errors import InputError, shown

MegatronArgs = Mapping[str, "str | bool | int | None"]

VOCAB_DIVISOR = 128
"""Megatron's --make-vocab-size-divisible-by default."""
SWIGLU_FFN_MULTIPLE = 64
"""--swiglu without --ffn-hidden-size: int(4h x 2/3 / 64) x 64 (arguments.py, validate_args)."""

_POSITIONS = {"learned_absolute": "learned", "rope": "rope", "mrope": "rope", "yarn": "rope",
              "none": "none", "alibi": "alibi"}
"""--position-embedding-type; `alibi` is Megatron-DeepSpeed's (BigScience's BLOOM)."""
_NORMS = {"LayerNorm": "layernorm", "RMSNorm": "rmsnorm"}
_NORM_SPELLINGS = {"layernorm": "LayerNorm", "rmsnorm": "RMSNorm"}
"""Megatron-DeepSpeed's lower-case --normalization choices."""
_SOFTMAX = ("vanilla", "off-by-one", "learnable")

# megatron-core 0.16 TransformerConfig fields (and Megatron-LM flags) that add or reshape
# parameters and are not modeled: gated attention output, DeepSeek sparse-attention indexers,
# linear-attention and Mamba hybrids, latent MoE, heterogeneous blocks, custom specs.
_UNMODELED = ("attention-output-gate", "experimental-attention-variant", "moe-latent-size",
              "is-hybrid-model", "hybrid-override-pattern", "heterogeneous-layers-config-path",
              "heterogeneous-layers-config-encoded-json", "spec", "yaml-cfg",
              "no-position-embedding")
_UNMODELED_PREFIXES = ("dsa-indexer-", "linear-attention-", "linear-conv-", "linear-key-",
                       "linear-value-", "linear-num-", "mamba-")


class _Flags:
    """The flags by name without leading dashes, '-' and '_' alike."""

    def __init__(self, args: MegatronArgs):
        self.values = {key.lstrip("-").replace("_", "-"): value for key, value in args.items()}

    def flag(self, name: str) -> bool:
        """A store_true flag: present (True, None or empty) unless given False."""
        if name not in self.values:
            return False
        value = self.values[name]
        if isinstance(value, str) and value.lower() in ("false", "0"):
            return False
        return value is not False

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.values.get(name)
        if value is None or value is True:
            return default
        return str(value)

    def integer(self, name: str, default: int | None = None, minimum: int = 1) -> int | None:
        text = self.text(name)
        if text is None:
            if self.values.get(name) is True:
                raise InputError("needs a value", field=f"--{name}")
            return default
        try:
            value = int(text)
        except ValueError:
            raise InputError(f"must be an integer, got {shown(text)}", field=f"--{name}") from None
        if value < minimum:
            raise InputError(f"must be >= {minimum}, got {value}", field=f"--{name}")
        # No flag that shapes a model is larger (architecture.py's bounds); a layer count is
        # bounded before the MoE layer pattern loops over it.
        maximum = MAX_LAYERS if name == "num-layers" else MAX_VOCAB
        if value > maximum:
            raise InputError(f"must be at most {maximum:,}, got {value:,}", field=f"--{name}")
        return value

    def required(self, name: str) -> int:
        value = self.integer(name)
        if value is None:
            raise InputError("missing (it sizes the model)", field=f"--{name}")
        return value

    def choice(self, name: str, valid: Mapping[str, str] | tuple[str, ...], default: str) -> str:
        value = self.text(name, default)
        if value not in valid:
            raise InputError(f"must be one of {', '.join(valid)}, got {value!r}", field=f"--{name}")
        return value


def padded_vocab_size(vocab: int, divisible_by: int = VOCAB_DIVISOR, tp: int = 1) -> int:
    """Megatron's `_vocab_size_with_padding`: up to a multiple of divisible_by x tp."""
    multiple = divisible_by * tp
    return -(-vocab // multiple) * multiple


def moe_layer_pattern(value: str, num_layers: int) -> tuple[int, ...]:
    """0-based MoE layers from --moe-layer-freq: an integer N makes layers 0, N, 2N ... MoE
    (megatron-core gpt_layer_specs: i % N == 0); a Python list expression such as
    "([0]*3+[1]*58)" gives 1 (MoE) or 0 (dense) per layer, as Megatron's `moe_freq_type`
    evaluates it (here only list literals, + and * are read)."""
    field = "--moe-layer-freq"
    text = value.strip()
    if not text.startswith(("[", "(")):
        try:
            step = int(text)
        except ValueError:
            raise InputError(f"must be an integer or a list expression, got {shown(value)}", field=field) from None
        if step < 1:
            raise InputError(f"must be >= 1, got {step}", field=field)
        return tuple(i for i in range(num_layers) if i % step == 0)
    try:
        pattern = _list_expression(ast.parse(text, mode="eval").body)
    except (SyntaxError, ValueError, TypeError):
        raise InputError(f"cannot read {shown(value)} as a list of 0/1 per layer", field=field) from None
    if len(pattern) != num_layers or any(v not in (0, 1) for v in pattern):
        raise InputError(f"must give 0 or 1 for each of the {num_layers} layers, got {pattern}", field=field)
    return tuple(i for i, v in enumerate(pattern) if v)


def _list_expression(node: ast.AST) -> list | int:
    """Evaluate list literals of integers combined with + and * (nothing else)."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_list_expression(item) for item in node.elts]
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
        left, right = _list_expression(node.left), _list_expression(node.right)
        result_size = (len(left) if isinstance(left, list) else 1) * (len(right) if isinstance(right, list) else 1)
        if isinstance(node.op, ast.Mult):
            result_size = max([result_size, *(abs(x) for x in (left, right) if isinstance(x, int))])
        if result_size > MAX_LAYERS:  # a list (or a count) longer than any model: `[1]*10**12` would not end
            raise ValueError(f"more than {MAX_LAYERS:,} entries")
        return left + right if isinstance(node.op, ast.Add) else left * right
    raise ValueError(f"unsupported expression {ast.dump(node)}")


def _attention(f: _Flags, hidden: int, linear_bias: bool) -> Attention:
    """Self-attention (megatron-core SelfAttention, MLASelfAttention)."""
    heads = f.required("num-attention-heads")
    qk_layernorm = f.flag("qk-layernorm")
    sinks = f.choice("softmax-type", _SOFTMAX, "vanilla") == "learnable"
    if f.flag("multi-latent-attention"):
        # MLA's down and up projections have no bias; the output projection follows
        # add_bias_linear. Latent norms exist only with --qk-layernorm.
        rope = f.integer("qk-pos-emb-head-dim", 64, minimum=0)
        return Attention(
            num_heads=heads, num_kv_heads=heads, head_dim=f.integer("qk-head-dim", 128) + rope,
            v_head_dim=f.integer("v-head-dim", 128), out_bias=linear_bias,
            q_lora_rank=f.integer("q-lora-rank"), kv_lora_rank=f.integer("kv-lora-rank", 32),
            qk_rope_head_dim=rope, qk_norm="latent" if qk_layernorm else None, sinks=sinks,
        )
    groups = f.integer("num-query-groups", 1) if f.flag("group-query-attention") else heads
    # Megatron-DeepSpeed spells grouped-query attention --num-key-value-heads (default: the heads).
    groups = f.integer("num-key-value-heads", groups)
    if heads % groups:
        raise InputError(f"{groups} key-value heads do not divide the {heads} attention heads",
                         field="--num-key-value-heads" if "num-key-value-heads" in f.values else "--num-query-groups")
    return Attention(
        num_heads=heads, num_kv_heads=groups, head_dim=f.integer("kv-channels", hidden // heads),
        qkv_bias=linear_bias or f.flag("add-qkv-bias"), out_bias=linear_bias,
        qk_norm="head" if qk_layernorm else None, sinks=sinks,
    )


def _moe(f: _Flags, num_layers: int, ffn: int, linear_bias: bool) -> MoE | None:
    """Routed experts (TopKRouter, SequentialMLP/TEGroupedMLP) and a shared expert
    (SharedExpertMLP: one MLP of --moe-shared-expert-intermediate-size, no biases); None when
    no layer is MoE."""
    experts = f.integer("num-experts")
    if experts is None:
        return None
    layers = moe_layer_pattern(f.text("moe-layer-freq", "1"), num_layers)
    if not layers:
        return None
    shared_ffn = f.integer("moe-shared-expert-intermediate-size", 0, minimum=0)
    if shared_ffn and linear_bias:
        raise InputError("megatron-core builds shared experts without biases only: add "
                         "--disable-bias-linear", field="--moe-shared-expert-intermediate-size")
    return MoE(
        num_experts=experts,
        top_k=f.integer("moe-router-topk", 2),
        expert_ffn=f.integer("moe-ffn-hidden-size", ffn),
        num_shared_experts=int(shared_ffn > 0),
        shared_ffn=shared_ffn,
        shared_expert_gate=shared_ffn > 0 and f.flag("moe-shared-expert-gate"),
        expert_bias=linear_bias,
        router_bias=linear_bias,
        route_groups=f.integer("moe-router-num-groups", 1),
        route_group_topk=f.integer("moe-router-group-topk", f.integer("moe-router-num-groups", 1)),
        layers=layers,
    )


def _vocab(f: _Flags) -> tuple[int, list[str]]:
    # Megatron-DeepSpeed (BigScience) spells a padded size --pad-vocab-size-to.
    padded = f.integer("padded-vocab-size", f.integer("pad-vocab-size-to"))
    if padded is not None:
        return padded, []
    tokenizer = f.integer("vocab-size")
    if tokenizer is None:
        raise InputError("missing: give --padded-vocab-size, or --vocab-size (the tokenizer's size, "
                         "which Megatron pads)", field="--padded-vocab-size")
    divisor = f.integer("make-vocab-size-divisible-by", VOCAB_DIVISOR)
    tp = f.integer("tensor-model-parallel-size", 1)
    padded = padded_vocab_size(tokenizer, divisor, tp)
    return padded, [f"vocab {tokenizer} padded to {padded} (a multiple of {divisor} x tp {tp})"]


def _ffn(f: _Flags, hidden: int, swiglu: bool) -> tuple[int, list[str]]:
    ffn = f.integer("ffn-hidden-size")
    if ffn is not None:
        return ffn, []
    if swiglu:
        ffn = int(4 * hidden * 2 / 3 / SWIGLU_FFN_MULTIPLE) * SWIGLU_FFN_MULTIPLE
        return ffn, [f"ffn hidden size {ffn} (--swiglu default: 4h x 2/3, a multiple of 64)"]
    return 4 * hidden, [f"ffn hidden size {4 * hidden} (default 4h)"]


def unmodeled_flags(args: MegatronArgs) -> list[str]:
    """The given flags that change parameter shapes in ways this mapping does not model
    (--no-position-embedding is read with rotary embeddings, which replace the learned ones)."""
    f = _Flags(args)
    rotary = f.flag("use-rotary-position-embeddings") or f.text("position-embedding-type") == "rope"
    return [f"--{name}" for name in f.values
            if (name in _UNMODELED or name.startswith(_UNMODELED_PREFIXES))
            and not (name == "no-position-embedding" and rotary)]


def architecture_from_megatron_args(args: MegatronArgs, name: str) -> Architecture:
    """The GPT model a Megatron-LM launch would build from these arguments.

    Keys are flags with or without leading dashes ('--num-layers', 'num_layers'); values as
    parsed from the command line (store_true flags: True or None). Raises InputError naming the
    flag for a missing or invalid value. `extra` records the derived defaults ('assumed') and
    the flags not modeled ('unmodeled_flags').
    """
    f = _Flags(args)
    hidden = f.required("hidden-size")
    num_layers = f.required("num-layers")
    linear_bias = not f.flag("disable-bias-linear")
    swiglu = f.flag("swiglu")
    ffn, ffn_notes = _ffn(f, hidden, swiglu)
    vocab, vocab_notes = _vocab(f)
    position = _POSITIONS[f.choice("position-embedding-type", _POSITIONS, "learned_absolute")]
    if f.flag("use-rotary-position-embeddings"):  # Megatron-LM before core_r0.4, Megatron-DeepSpeed
        position = "rope"
    max_positions = 0
    if position == "learned":
        max_positions = f.integer("max-position-embeddings")
        if max_positions is None:
            raise InputError("missing: learned absolute position embeddings need it",
                             field="--max-position-embeddings")
    return Architecture(
        name=name,
        family="megatron_gpt",
        hidden=hidden,
        num_layers=num_layers,
        vocab=vocab,
        ffn=ffn,
        attention=_attention(f, hidden, linear_bias),
        gated_mlp=swiglu,
        mlp_bias=linear_bias,
        norm=_NORMS[_NORM_SPELLINGS.get(f.text("normalization") or "", None) or f.choice("normalization", _NORMS,
                                                                                          "LayerNorm")],
        tied_embeddings=not f.flag("untie-embeddings-and-output-weights"),
        position=position,
        max_positions=max_positions,
        moe=_moe(f, num_layers, ffn, linear_bias),
        mtp_layers=f.integer("mtp-num-layers", 0, minimum=0),
        extra={"assumed": ffn_notes + vocab_notes, "unmodeled_flags": unmodeled_flags(args)},
    )
