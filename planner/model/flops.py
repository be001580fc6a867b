"""Forward and training FLOPs per token (model FLOPs: no recomputation).

One multiply-add is 2 FLOPs. A token's forward pass costs
  - 2 FLOPs per weight of every matrix it is multiplied by (PaLM, arXiv 2204.02311, App. B:
    "6N" for training); MoE counts only the top-k routed experts plus the router and shared
    experts (cli99/llm-analysis: FLOPs follow active parameters);
  - the attention core, QK^T and softmax(QK^T)V: 2·s·d_qk + 2·s·d_v per head for a query that
    sees all s keys (Korthikanti et al., arXiv 2205.05198, App. A: 4·B·s²·h per layer for MHA).
    A causal mask halves it, the saving FlashAttention's causal kernels realize (PaLM App. B
    counts the full matrix). MLA uses its qk head dim (nope + rope) and its value head dim;
    GQA shares key/value heads but every query head still scores all keys.
  - the logits, 2·h·V (Korthikanti App. A).
Backward costs twice the forward (Korthikanti App. A), so training is 3x forward.
Biases, norms, activations, softmax and the loss are left out, as in both references.
Sliding-window and chunked layers (`windows`, from planner.model.context.layer_windows) score a
query against at most w keys: min(t, w) for the t-th token, w − w(w − 1)/(2s) on average
over a sequence of s (chunked attention, which sees fewer, is counted as a window of its chunk:
an upper bound).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from planner.model.architecture import Architecture
from planner.model.params import attention_linears, mlp_linears

TRAINING_FLOPS_PER_FORWARD = 3
"""Forward + backward (2x forward: gradients of inputs and of weights), Korthikanti App. A."""


@dataclass(frozen=True)
class LayerFlops:
    """Forward FLOPs of one block for one token."""

    linear: float
    """Matrix multiplications with weights: 2 x weights used by the token."""
    attention: float
    """QK^T scores and the weighted sum of values."""

    @property
    def total(self) -> float:
        return self.linear + self.attention


def _weights(linears: dict[str, tuple[int, int, bool]]) -> int:
    return sum(d_in * d_out for d_in, d_out, _ in linears.values())


def routed_weights_per_token(arch: Architecture, index: int) -> int:
    """Weights of block `index`'s routed experts that multiply one token: its top_k experts' MLPs
    (0 in a dense block)."""
    if not arch.is_moe_layer(index):
        return 0
    return arch.moe.top_k * _weights(mlp_linears(arch.hidden, arch.moe.expert_ffn, arch.gated_mlp, False))


def matmul_weights_per_token(arch: Architecture, index: int) -> int:
    """Weights of block `index` that multiply one token: attention projections and the MLP
    (MoE: router, top_k routed experts, shared experts)."""
    h = arch.hidden
    attention = _weights(attention_linears(arch.attention, h))
    if not arch.is_moe_layer(index):
        return attention + _weights(mlp_linears(h, arch.ffn, arch.gated_mlp, False))
    moe = arch.moe
    routed = routed_weights_per_token(arch, index)
    shared = _weights(mlp_linears(h, moe.shared_ffn, arch.gated_mlp, False))
    shared_gate = h if moe.shared_expert_gate else 0
    router = h * moe.num_experts
    return attention + routed + shared + shared_gate + router


def keys_per_query(seq_len: int, causal: bool = True, window: int | None = None) -> float:
    """Keys a query scores on average: s/2 causal (s full); min(t, w) summed over t = 1..s, / s,
    with a window of w < s."""
    if window is None or window >= seq_len:
        return seq_len / 2 if causal else seq_len
    return window - window * (window - 1) / (2 * seq_len)


def layer_flops(arch: Architecture, index: int, seq_len: int, causal: bool = True,
                window: int | None = None) -> LayerFlops:
    """Forward FLOPs per token of block `index` for sequences of `seq_len` tokens (`window`: the
    keys this layer attends to at most, None for all)."""
    a = arch.attention
    keys = keys_per_query(seq_len, causal, window)
    # Scores: q·k over d_qk per key and head; values: a d_v-wide weighted sum per key and head.
    attention = 2 * keys * a.num_heads * (a.head_dim + a.value_head_dim)
    return LayerFlops(linear=2.0 * matmul_weights_per_token(arch, index), attention=attention)


def logits_flops(arch: Architecture) -> float:
    """Forward FLOPs per token of the output layer: 2·h·V."""
    return 2.0 * arch.hidden * arch.vocab


@lru_cache(maxsize=256)
def forward_flops_per_token(arch: Architecture, seq_len: int, causal: bool = True,
                            windows: tuple[int | None, ...] | None = None) -> float:
    """Forward FLOPs per token: every block plus the logits (`windows`: per layer, or None)."""
    blocks = sum(layer_flops(arch, i, seq_len, causal, windows[i] if windows else None).total
                 for i in range(arch.num_layers))
    return blocks + logits_flops(arch)


def training_flops_per_token(arch: Architecture, seq_len: int, causal: bool = True,
                             windows: tuple[int | None, ...] | None = None) -> float:
    """Model FLOPs per trained token (forward + backward, no recomputation): 3 x forward."""
    return TRAINING_FLOPS_PER_FORWARD * forward_flops_per_token(arch, seq_len, causal, windows)


@dataclass(frozen=True)
class FlopsPerToken:
    """Model FLOPs per token at one sequence length, with and without causal halving."""

    seq_len: int
    training: float
    """Forward + backward per trained token, causal attention (a query sees s/2 keys on average)."""
    inference: float
    """Forward per token, causal attention: prefilling s tokens, or decoding them one by one
    with a KV cache (the t-th token reads t keys: s/2 on average)."""
    training_full_attention: float
    """Training with the whole s x s score matrix counted, as PaLM App. B and Korthikanti App. A do."""
    inference_full_attention: float
    """Inference with the whole s x s score matrix counted."""


def flops_per_token(arch: Architecture, seq_len: int) -> FlopsPerToken:
    """Training and inference FLOPs per token, causal-halved and full (without MTP modules)."""
    return FlopsPerToken(
        seq_len=seq_len,
        training=training_flops_per_token(arch, seq_len, causal=True),
        inference=forward_flops_per_token(arch, seq_len, causal=True),
        training_full_attention=training_flops_per_token(arch, seq_len, causal=False),
        inference_full_attention=forward_flops_per_token(arch, seq_len, causal=False),
    )
