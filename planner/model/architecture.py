"""The architecture of a decoder-only transformer, as the planner needs to know it.

One frozen description serves every family: the fields are what changes parameter counts,
FLOPs and activation shapes. Builders (presets, Hugging Face config.json, Megatron arguments)
produce it; the pure functions in `params.py` and `flops.py` read it. No hardware here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from planner.model.frozen import hash_once
from planner.spec.errors import InputError

NormKind = Literal["rmsnorm", "layernorm"]
PositionKind = Literal["rope", "learned", "alibi", "none"]
QkNormKind = Literal["head", "projection", "latent"]

# Bounds of a shape. Far beyond any published model (hidden 18,432 and 118 layers for PaLM 540B,
# arXiv 2204.02311 Table 1; 384 routed experts for Kimi K2; vocabularies near 2^18), they keep the
# models' byte counts within the solver's 64-bit integers and every loop over layers short.
MAX_HIDDEN = 2**18
MAX_LAYERS = 2**14
MAX_VOCAB = 2**24
MAX_WIDTH = 2**22
"""FFN widths, LoRA ranks of MLA, window lengths."""
MAX_HEADS = 2**14
MAX_HEAD_DIM = 2**14
MAX_EXPERTS = 2**16
MAX_PARAMS = 10**15
"""Parameters of the whole model, at most (a thousand times the largest published)."""
MAX_POSITIONS = 2**24


def _within(name: str, value: int | None, low: int, high: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"{name} must be an integer from {low:,} to {high:,}, got {value!r}")


@hash_once
@dataclass(frozen=True)
class Attention:
    """Self-attention shape of one layer.

    MHA: num_kv_heads == num_heads; GQA: 1 < num_kv_heads < num_heads; MQA: num_kv_heads == 1.
    MLA (DeepSeek-V2/V3) sets `kv_lora_rank` (and optionally `q_lora_rank`); then `head_dim` is
    the query/key head dim (qk_nope_head_dim + qk_rope_head_dim), `v_head_dim` the value head dim
    and `num_kv_heads == num_heads` (training up-projects the latent to full per-head keys/values).
    """

    num_heads: int
    num_kv_heads: int
    head_dim: int
    v_head_dim: int | None = None
    """Value head dim when it differs from `head_dim` (MLA); None means equal to head_dim."""
    qkv_bias: bool = False
    """Biases on the q/k/v projections. MLA: on the down-projections q_a_proj and
    kv_a_proj_with_mqa (Hugging Face `attention_bias`)."""
    out_bias: bool = False
    qk_norm: QkNormKind | None = None
    """Norms on queries and keys: 'head' normalizes each head (weights of head_dim: Qwen3,
    Gemma 3, Megatron --qk-layernorm), 'projection' the whole q and k projections (weights of
    q_dim and kv_dim: OLMo-2), 'latent' the MLA latents (q_lora_rank when there is a q LoRA, and
    kv_lora_rank: DeepSeek's q_a_layernorm and kv_a_layernorm; Megatron only with --qk-layernorm)."""
    sinks: bool = False
    """A learned attention-sink logit per head (gpt-oss `sinks`: num_heads parameters)."""
    q_lora_rank: int | None = None
    """MLA: rank of the query down-projection; None means a plain q projection."""
    kv_lora_rank: int | None = None
    """MLA: rank of the compressed KV latent; None means not MLA."""
    qk_rope_head_dim: int = 0
    """MLA: the decoupled RoPE part of each query/key head (shared key across heads)."""
    sliding_window: int | None = None
    """Tokens each query attends to in sliding-window layers (None: full attention)."""
    rotary_dim: int | None = None
    """Features of each query/key head that RoPE rotates when fewer than all (partial rotary:
    Nemotron `partial_rotary_factor`, GPT-NeoX `rotary_pct`, MiniMax-M2 `rotary_dim`); None: the
    whole head, or no RoPE at all when the model's position is not 'rope'. No parameters."""

    def __post_init__(self) -> None:
        _within("attention heads", self.num_heads, 1, MAX_HEADS)
        _within("key/value heads", self.num_kv_heads, 1, self.num_heads)
        _within("head_dim", self.head_dim, 1, MAX_HEAD_DIM)
        _within("v_head_dim", self.v_head_dim, 1, MAX_HEAD_DIM)
        _within("q_lora_rank", self.q_lora_rank, 1, MAX_WIDTH)
        _within("kv_lora_rank", self.kv_lora_rank, 1, MAX_WIDTH)
        _within("qk_rope_head_dim", self.qk_rope_head_dim, 0, self.head_dim)
        _within("sliding_window", self.sliding_window, 1, MAX_POSITIONS)
        _within("rotary_dim", self.rotary_dim, 0, self.head_dim)
        # Grouped-query attention shares each key/value head among num_heads / num_kv_heads query
        # heads (arXiv 2305.13245 §2.2); transformers' repeat_kv needs the division to be exact.
        if not self.is_mla and self.num_heads % self.num_kv_heads:
            raise InputError(f"{self.num_kv_heads} key/value heads do not divide {self.num_heads} attention heads;"
                             " grouped-query attention shares each key/value head among an equal number of"
                             " query heads")

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank is not None

    @property
    def kind(self) -> str:
        if self.is_mla:
            return "mla"
        if self.num_kv_heads == self.num_heads:
            return "mha"
        return "mqa" if self.num_kv_heads == 1 else "gqa"

    @property
    def value_head_dim(self) -> int:
        return self.v_head_dim if self.v_head_dim is not None else self.head_dim

    @property
    def q_dim(self) -> int:
        """Width of all query heads together."""
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of all key heads together (GQA: num_kv_heads * head_dim)."""
        return self.num_kv_heads * self.head_dim

    @property
    def v_dim(self) -> int:
        """Width of all value heads together."""
        return self.num_kv_heads * self.value_head_dim

    @property
    def qk_nope_head_dim(self) -> int:
        """MLA: the part of each query/key head without RoPE."""
        return self.head_dim - self.qk_rope_head_dim


@hash_once
@dataclass(frozen=True)
class MoE:
    """Mixture-of-experts MLP (Mixtral, Qwen-MoE, DeepSeek-V2/V3, Grok-1 style)."""

    num_experts: int
    """Routed experts per MoE layer."""
    top_k: int
    """Routed experts each token goes to."""
    expert_ffn: int
    """Intermediate size of one routed expert."""
    num_shared_experts: int = 0
    shared_ffn: int = 0
    """Intermediate size of the shared expert(s), all together (Qwen2-MoE: one expert of this size;
    DeepSeek: n_shared_experts * moe_intermediate_size, built as one MLP)."""
    shared_expert_gate: bool = False
    """Qwen2-MoE (and Megatron --moe-shared-expert-gate) gate the shared expert with a
    sigmoid(h -> 1) projection."""
    shared_expert_bias: bool = False
    """Biases on the shared experts' projections (DeepSeek-V2 `mlp_bias`). transformers builds
    DeepSeek's shared MLP even at width 0, which then holds only its down-projection bias."""
    expert_bias: bool = False
    """Biases on the routed experts' projections (gpt-oss; Megatron MoE without
    --disable-bias-linear)."""
    router_bias: bool = False
    """A trained router bias (gpt-oss); DeepSeek-V3's correction bias and Megatron's
    --moe-router-enable-expert-bias are buffers, not parameters."""
    first_dense_layers: int = 0
    """Leading layers with a dense MLP instead (DeepSeek `first_k_dense_replace`)."""
    layer_freq: int = 1
    """Every `layer_freq`-th layer is MoE, counting from 1 (Qwen `decoder_sparse_step`:
    layer i is sparse when (i + 1) % layer_freq == 0)."""
    dense_layers: tuple[int, ...] = ()
    """Explicit dense-MLP layer indices (Qwen `mlp_only_layers`)."""
    route_groups: int = 1
    """Contiguous groups the routed experts are split into for group-limited routing (DeepSeek
    `n_group`, Megatron-Core `--moe-router-num-groups`); 1: no limit."""
    route_group_topk: int = 1
    """Groups a token may use (DeepSeek `topk_group`, `--moe-router-group-topk`): its experts come
    from the `route_group_topk` groups with the highest affinities (DeepSeek-V3, arXiv 2412.19437
    §2.1.2 node-limited routing, M = 4 of 8)."""
    layers: tuple[int, ...] | None = None
    """0-based indices of the layers with routed experts, when the builder knows them exactly;
    then the three rule fields above are descriptive only. Builders fill it because families
    place MoE layers by different rules (Qwen counts from 1; DeepSeek from `first_k_dense_replace`)."""

    @cached_property
    def layer_set(self) -> frozenset[int]:
        """`layers` for lookups: every layer asks once, so a tuple would cost layers² comparisons."""
        return frozenset(self.layers or ())

    def __post_init__(self) -> None:
        _within("experts", self.num_experts, 1, MAX_EXPERTS)
        _within("experts per token (top-k)", self.top_k, 1, self.num_experts)
        _within("expert FFN width", self.expert_ffn, 1, MAX_WIDTH)
        _within("shared experts", self.num_shared_experts, 0, MAX_EXPERTS)
        _within("shared expert FFN width", self.shared_ffn, 0, MAX_WIDTH)
        _within("leading dense layers", self.first_dense_layers, 0, MAX_LAYERS)
        _within("MoE layer frequency", self.layer_freq, 1, MAX_LAYERS)
        _within("expert groups", self.route_groups, 1, self.num_experts)
        _within("expert groups per token", self.route_group_topk, 1, self.route_groups)
        if self.num_experts % self.route_groups:
            raise InputError(f"{self.num_experts} experts do not split into {self.route_groups} equal expert groups"
                             " (n_group, --moe-router-num-groups)")

    @property
    def group_limited(self) -> bool:
        """Whether a token's experts are confined to some of the groups."""
        return self.route_group_topk < self.route_groups


@hash_once
@dataclass(frozen=True)
class Architecture:
    """A decoder-only transformer language model."""

    name: str
    family: str
    """The Hugging Face `model_type` (llama, mixtral, qwen3_moe, deepseek_v3, gpt2 ...)."""
    hidden: int
    num_layers: int
    vocab: int
    ffn: int
    """Intermediate size of the dense MLP (used by dense layers of MoE models too)."""
    attention: Attention
    gated_mlp: bool = True
    """SwiGLU/GeGLU (gate, up, down: 3 matrices) vs plain (up, down: 2 matrices)."""
    mlp_activation: str = "silu"
    """The MLP's activation, by its transformers ACT2FN name (activations.py): 'silu' (SwiGLU when
    gated), 'gelu_pytorch_tanh' (GeGLU), 'gelu', 'gelu_new', 'relu2' (squared ReLU, Nemotron),
    'bloom_gelu'; 'sigmoid_glu_clamped' for gpt-oss's own gate. Changes activations, not parameters."""
    mlp_bias: bool = False
    """Biases on the dense MLP's projections."""
    norm: NormKind = "rmsnorm"
    """LayerNorm carries a bias (2h parameters), RMSNorm only a weight (h). Nemotron's LayerNorm1P
    (weight + 1 in the forward) is a LayerNorm here: the same parameters."""
    norms_per_layer: int = 2
    """Hidden-size norms in each block: 2 for pre-norm (attention and MLP inputs), 4 for Gemma 2/3
    (pre and post each sub-block), 1 for a parallel block sharing one input norm (Falcon-7B)."""
    parallel_residual: bool = False
    """Attention and MLP read the same input and add to the residual together (GPT-J, GPT-NeoX,
    Falcon); changes activations, not parameters."""
    residual_dropout: float = 0.0
    """Dropout probability on each half's output in training, as transformers' modules apply it
    where the config asks (Seed-OSS `residual_dropout`, GPT-2 `resid_pdrop`: 0.1 by default);
    changes activations, not parameters. The planner's Megatron launches turn dropout off."""
    tied_embeddings: bool = False
    embedding_norm: bool = False
    """A norm over the token embeddings before the first block (BLOOM word_embeddings_layernorm);
    it sits with the embedding on the first pipeline stage."""
    lm_head_bias: bool = False
    position: PositionKind = "rope"
    max_positions: int = 0
    """Rows of a learned position embedding (only when position == 'learned')."""
    moe: MoE | None = None
    mtp_layers: int = 0
    """DeepSeek-V3 multi-token-prediction modules (held in checkpoints, reported separately)."""
    extra: dict = field(default_factory=dict, compare=False, hash=False)
    """Notes from the builder (assumed fields), for messages only."""

    def __post_init__(self) -> None:
        """Every builder (presets, config.json, Megatron arguments) gets a shape the models can
        count: InputError, without a file, when it is impossible or beyond the bounds above."""
        _within("hidden size", self.hidden, 1, MAX_HIDDEN)
        _within("layers", self.num_layers, 1, MAX_LAYERS)
        _within("vocabulary size", self.vocab, 1, MAX_VOCAB)
        _within("FFN width", self.ffn, 0, MAX_WIDTH)
        _within("norms per layer", self.norms_per_layer, 0, 8)
        if not 0.0 <= self.residual_dropout <= 1.0:
            raise InputError(f"residual dropout must be a probability from 0 to 1, got {self.residual_dropout!r}")
        _within("learned positions", self.max_positions, 0, MAX_POSITIONS)
        _within("multi-token-prediction layers", self.mtp_layers, 0, MAX_LAYERS)
        if self.moe is not None and self.moe.layers is not None:
            outside = [i for i in self.moe.layers if not 0 <= i < self.num_layers]
            if outside:
                raise InputError(f"MoE layer {outside[0]} does not exist in {self.num_layers} layers")
        if _weights_bound(self) > MAX_PARAMS:
            raise InputError(f"about {_weights_bound(self):.3g} parameters; at most {MAX_PARAMS:.0e}"
                             " (a thousand times the largest published model)")

    def is_moe_layer(self, index: int) -> bool:
        """True when layer `index` (0-based) has a routed-expert MLP."""
        moe = self.moe
        if moe is None:
            return False
        if moe.layers is not None:
            return index in moe.layer_set
        if index < moe.first_dense_layers or index in moe.dense_layers:
            return False
        return (index + 1) % moe.layer_freq == 0

    @cached_property
    def num_moe_layers(self) -> int:
        """Layers with routed experts (counted once: a search's floors read it per plan shape)."""
        return sum(self.is_moe_layer(i) for i in range(self.num_layers))

    @property
    def head_dim(self) -> int:
        return self.attention.head_dim


def _weights_bound(arch: Architecture) -> int:
    """An upper bound of the parameters, from the widths alone (params.py counts them exactly, but
    only once the shape is known to be countable): projections, MLPs and experts in every layer,
    the embedding and output layer."""
    a, m = arch.attention, arch.moe
    attention = arch.hidden * (2 * a.q_dim + 2 * a.kv_dim + a.num_heads * a.value_head_dim)
    mlp = 3 * arch.hidden * arch.ffn
    if m is not None:
        mlp += 3 * arch.hidden * (m.num_experts * m.expert_ffn + m.shared_ffn) + arch.hidden * m.num_experts
    return (arch.num_layers + arch.mtp_layers) * (attention + mlp) + 2 * arch.vocab * arch.hidden
