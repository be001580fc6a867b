"""Exact parameter counts, per component and per layer.

The counts reproduce what Hugging Face transformers builds for each family
(`AutoModelForCausalLM.from_config` on the meta device, tied tensors once), checked against
tests/data/models.yaml. Matrix shapes follow each family's modeling file; a fused projection
(GPT-2 `c_attn`, Phi-3 `qkv_proj`, gate_up_proj) holds the same parameters as its parts.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from planner.model.architecture import Architecture, Attention
from planner.spec.errors import InputError, unknown_name

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ALL_LINEAR = "all-linear"


@dataclass(frozen=True)
class LayerParams:
    """Parameters of one transformer block, by component."""

    attention: int
    """Projections (and their biases, and gpt-oss sinks); q/k norms and MLA latent norms are in
    `norms`."""
    dense_mlp: int
    routed_experts: int
    """All routed experts of the layer together."""
    shared_experts: int
    """Shared expert(s), with their gate (Qwen2-MoE, Megatron --moe-shared-expert-gate)."""
    router: int
    norms: int
    num_experts: int = 0
    """Routed experts in this layer (0 in a dense layer)."""
    top_k: int = 0
    """Routed experts each token goes to (0 in a dense layer)."""

    @property
    def total(self) -> int:
        return (self.attention + self.dense_mlp + self.routed_experts + self.shared_experts
                + self.router + self.norms)

    @property
    def per_expert(self) -> int:
        """Parameters of ONE routed expert (0 in a dense layer)."""
        return self.routed_experts // self.num_experts if self.num_experts else 0

    @property
    def active(self) -> int:
        """Parameters one token uses: all but the routed experts it is not sent to."""
        return self.total - self.routed_experts + self.top_k * self.per_expert


@dataclass(frozen=True)
class LayerKind:
    """Blocks of one shape: how many the model has and the parameters of each."""

    kind: Literal["dense", "moe", "mtp"]
    """'dense' (dense MLP), 'moe' (routed experts) or 'mtp' (DeepSeek-V3 multi-token-prediction
    module: a block like the last main one, plus its norms and input projection)."""
    layers: int
    params: int
    """Parameters of one block."""
    active: int
    """Parameters of one block that a token uses."""
    per_expert: int = 0
    """Parameters of one routed expert (0 without experts)."""


@dataclass(frozen=True)
class ParamCount:
    """Parameters of the whole model."""

    total: int
    """Every parameter once (tied embeddings once), without MTP modules."""
    active: int
    """Parameters one token uses: total - routed + routed * top_k / num_experts."""
    embedding: int
    """The input token embedding only (learned positions are `position_embedding`)."""
    by_component: dict[str, int]
    """embedding, position_embedding, attention, dense_mlp, routed_experts, shared_experts,
    router, norms, lm_head; zero entries omitted."""
    by_layer_kind: tuple[LayerKind, ...]
    """Dense blocks, MoE blocks and MTP modules, the kinds present only."""
    mtp: int = 0
    """DeepSeek-V3 multi-token-prediction modules, not in `total`."""


def norm_params(arch: Architecture, width: int) -> int:
    """One norm over `width` features: RMSNorm has a weight, LayerNorm a weight and a bias."""
    return width * (2 if arch.norm == "layernorm" else 1)


def linear_params(d_in: int, d_out: int, bias: bool) -> int:
    return d_in * d_out + (d_out if bias else 0)


def attention_linears(attention: Attention, hidden: int) -> dict[str, tuple[int, int, bool]]:
    """The attention projections: Hugging Face module name -> (d_in, d_out, bias).

    MLA (DeepSeek-V2/V3, modeling_deepseek_v3.py): queries through q_proj, or through the
    low-rank q_a_proj -> q_b_proj; keys and values through kv_a_proj_with_mqa (the latent plus
    the shared RoPE key) -> kv_b_proj (per-head nope keys and values).
    """
    a = attention
    if not a.is_mla:
        return {
            "q_proj": (hidden, a.q_dim, a.qkv_bias),
            "k_proj": (hidden, a.kv_dim, a.qkv_bias),
            "v_proj": (hidden, a.v_dim, a.qkv_bias),
            "o_proj": (a.num_heads * a.value_head_dim, hidden, a.out_bias),
        }
    if a.q_lora_rank is None:
        query = {"q_proj": (hidden, a.q_dim, False)}
    else:
        query = {"q_a_proj": (hidden, a.q_lora_rank, a.qkv_bias),
                 "q_b_proj": (a.q_lora_rank, a.q_dim, False)}
    return {
        **query,
        "kv_a_proj_with_mqa": (hidden, a.kv_lora_rank + a.qk_rope_head_dim, a.qkv_bias),
        "kv_b_proj": (a.kv_lora_rank, a.num_heads * (a.qk_nope_head_dim + a.value_head_dim), False),
        "o_proj": (a.num_heads * a.value_head_dim, hidden, a.out_bias),
    }


def mlp_linears(hidden: int, ffn: int, gated: bool, bias: bool) -> dict[str, tuple[int, int, bool]]:
    """One MLP: (gate_proj,) up_proj, down_proj -> (d_in, d_out, bias).

    ffn may be 0: transformers still builds a zero-width MLP (DeepSeek's shared experts with
    n_shared_experts = 0), which holds only down_proj's bias when there are biases.
    """
    gate = {"gate_proj": (hidden, ffn, bias)} if gated else {}
    return {**gate, "up_proj": (hidden, ffn, bias), "down_proj": (ffn, hidden, bias)}


ACTIVATION_PARAMS = {"xielu": 2}
"""Learned scalars of an MLP activation: xIELU's alpha_p and alpha_n (transformers activations.py
`XIELUActivation`; its beta and eps are buffers)."""


def _sum_linears(linears: dict[str, tuple[int, int, bool]]) -> int:
    return sum(linear_params(*shape) for shape in linears.values())


def _attention_norm_params(arch: Architecture) -> int:
    """q/k norms, or MLA's latent norms (q_a_layernorm when there is a q LoRA, kv_a_layernorm)."""
    a = arch.attention
    if a.qk_norm == "latent":
        return norm_params(arch, (a.q_lora_rank or 0) + a.kv_lora_rank)
    if a.qk_norm == "head":
        return 2 * norm_params(arch, a.head_dim)
    if a.qk_norm == "projection":
        return norm_params(arch, a.q_dim) + norm_params(arch, a.kv_dim)
    return 0


@lru_cache(maxsize=1 << 14)
def layer_params(arch: Architecture, index: int) -> LayerParams:
    """Parameters of block `index` (0-based); cached: both inputs and the result are frozen, and a
    search asks for the same layers of the same model hundreds of thousands of times."""
    h = arch.hidden
    a = arch.attention
    # gpt-oss: one learned sink logit per head.
    attention = _sum_linears(attention_linears(a, h)) + (a.num_heads if a.sinks else 0)
    norms = arch.norms_per_layer * norm_params(arch, h) + _attention_norm_params(arch)
    if not arch.is_moe_layer(index):
        dense = (_sum_linears(mlp_linears(h, arch.ffn, arch.gated_mlp, arch.mlp_bias))
                 + ACTIVATION_PARAMS.get(arch.mlp_activation, 0))
        return LayerParams(attention=attention, dense_mlp=dense, routed_experts=0,
                           shared_experts=0, router=0, norms=norms)
    moe = arch.moe
    per_expert = _sum_linears(mlp_linears(h, moe.expert_ffn, arch.gated_mlp, moe.expert_bias))
    shared = _sum_linears(mlp_linears(h, moe.shared_ffn, arch.gated_mlp, moe.shared_expert_bias))
    shared += h if moe.shared_expert_gate else 0
    return LayerParams(
        attention=attention,
        dense_mlp=0,
        routed_experts=moe.num_experts * per_expert,
        shared_experts=shared,
        router=linear_params(h, moe.num_experts, moe.router_bias),
        norms=norms,
        num_experts=moe.num_experts,
        top_k=moe.top_k,
    )


def embedding_params(arch: Architecture) -> int:
    """Input token embedding plus a learned position embedding and an embedding norm, if any
    (first pipeline stage)."""
    return arch.vocab * arch.hidden + _position_params(arch) + _embedding_norm_params(arch)


def output_params(arch: Architecture) -> int:
    """Final norm plus the output layer (0 for the output layer when tied to the embedding)."""
    return norm_params(arch, arch.hidden) + _lm_head_params(arch)


def _embedding_norm_params(arch: Architecture) -> int:
    return norm_params(arch, arch.hidden) if arch.embedding_norm else 0


def _position_params(arch: Architecture) -> int:
    return arch.max_positions * arch.hidden if arch.position == "learned" else 0


def _lm_head_params(arch: Architecture) -> int:
    if arch.tied_embeddings:
        return arch.vocab if arch.lm_head_bias else 0
    return linear_params(arch.hidden, arch.vocab, arch.lm_head_bias)


def _mtp_module_extra(arch: Architecture) -> int:
    """What an MTP module adds to its block (arXiv 2412.19437 §2.2, Figure 3; Megatron-Core
    MultiTokenPredictionLayer): two norms (enorm on the embedding, hnorm on the previous hidden
    state), the projection eh_proj (2h -> h, no bias) and its own final norm. Its embedding and
    output head are the main model's (shared); the released DeepSeek-V3 checkpoint stores copies
    of both, which this leaves out."""
    h = arch.hidden
    return 3 * norm_params(arch, h) + 2 * h * h


def mtp_params(arch: Architecture) -> int:
    """All multi-token-prediction modules: each a block shaped like the last main layer (an MoE
    layer in DeepSeek-V3) plus `_mtp_module_extra`."""
    if arch.mtp_layers == 0:
        return 0
    block = layer_params(arch, arch.num_layers - 1).total
    return arch.mtp_layers * (block + _mtp_module_extra(arch))


def layer_kinds(arch: Architecture) -> tuple[LayerKind, ...]:
    """Dense blocks, MoE blocks and MTP modules: count and parameters of each, kinds present only.

    All blocks of a kind have one shape: an Architecture has one attention, one dense MLP and one
    MoE shape, and MTP modules copy the last main block.
    """
    indices = {"dense": [], "moe": []}
    for index in range(arch.num_layers):
        indices["moe" if arch.is_moe_layer(index) else "dense"].append(index)
    kinds = []
    for kind, found in indices.items():
        if found:
            block = layer_params(arch, found[0])
            kinds.append(LayerKind(kind, len(found), block.total, block.active, block.per_expert))
    if arch.mtp_layers:
        block = layer_params(arch, arch.num_layers - 1)
        extra = _mtp_module_extra(arch)
        kinds.append(LayerKind("mtp", arch.mtp_layers, block.total + extra, block.active + extra,
                               block.per_expert))
    return tuple(kinds)


def count_params(arch: Architecture) -> ParamCount:
    """Total, active and per-component parameters of the model."""
    layers = [layer_params(arch, i) for i in range(arch.num_layers)]
    by_component = {
        "embedding": arch.vocab * arch.hidden,
        "position_embedding": _position_params(arch),
        "attention": sum(p.attention for p in layers),
        "dense_mlp": sum(p.dense_mlp for p in layers),
        "routed_experts": sum(p.routed_experts for p in layers),
        "shared_experts": sum(p.shared_experts for p in layers),
        "router": sum(p.router for p in layers),
        "norms": (sum(p.norms for p in layers) + norm_params(arch, arch.hidden)
                  + _embedding_norm_params(arch)),
        "lm_head": _lm_head_params(arch),
    }
    total = sum(by_component.values())
    # Each token runs top_k of the E routed experts of a layer; all else is always used.
    unused = sum(p.total - p.active for p in layers)
    return ParamCount(
        total=total,
        active=total - unused,
        embedding=by_component["embedding"],
        by_component={k: v for k, v in by_component.items() if v},
        by_layer_kind=layer_kinds(arch),
        mtp=mtp_params(arch),
    )


def lora_params(arch: Architecture, index: int, rank: int, targets: Iterable[str]) -> int:
    """Trainable LoRA parameters in block `index`: rank * (d_in + d_out) per adapted matrix.

    LoRA, arXiv 2106.09685 §4. `targets` are PEFT-style module names (q_proj k_proj v_proj o_proj
    gate_proj up_proj down_proj) or 'all-linear' for all of them; the router and the output
    layer are never adapted. In an MoE layer gate/up/down adapt every routed expert and the
    shared experts. MLA: q_proj adapts q_proj or both q_a_proj and q_b_proj; k_proj and v_proj
    each select both kv_a_proj_with_mqa and kv_b_proj (keys and values share them); o_proj is
    o_proj. A matrix selected by several names is adapted once. Fused checkpoints (GPT-2
    c_attn, Phi-3 qkv_proj/gate_up_proj) are counted as their unfused parts.
    """
    wanted = _lora_target_set(targets)
    h = arch.hidden
    attention = attention_linears(arch.attention, h)
    if arch.attention.is_mla:
        by_name = {"q_proj": ("q_proj", "q_a_proj", "q_b_proj"),
                   "k_proj": ("kv_a_proj_with_mqa", "kv_b_proj"),
                   "v_proj": ("kv_a_proj_with_mqa", "kv_b_proj"),
                   "o_proj": ("o_proj",)}
        modules = {m for t in wanted if t in by_name for m in by_name[t]}
    else:
        modules = wanted
    adapted = [shape for name, shape in attention.items() if name in modules]
    if arch.is_moe_layer(index):
        moe = arch.moe
        expert = mlp_linears(h, moe.expert_ffn, arch.gated_mlp, False)
        shared = mlp_linears(h, moe.shared_ffn, arch.gated_mlp, False)
        adapted += [shape for name, shape in expert.items() if name in wanted] * moe.num_experts
        adapted += [shape for name, shape in shared.items() if name in wanted]
    else:
        dense = mlp_linears(h, arch.ffn, arch.gated_mlp, False)
        adapted += [shape for name, shape in dense.items() if name in wanted]
    return sum(rank * (d_in + d_out) for d_in, d_out, _ in adapted if d_in * d_out)


def _lora_target_set(targets: Iterable[str]) -> set[str]:
    names = set()
    for target in targets:
        if target == ALL_LINEAR:
            names.update(LORA_TARGETS)
        elif target in LORA_TARGETS:
            names.add(target)
        else:
            raise InputError(unknown_name("LoRA target", target, LORA_TARGETS + (ALL_LINEAR,)),
                             field="lora.targets")
    return names
