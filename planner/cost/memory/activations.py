"""Activations saved for backward, per layer and token (Korthikanti et al. 2022, arXiv 2205.05198,
§4 and Table 2, re-derived per saved tensor), and the micro-batches a pipeline stage holds in flight."""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from planner.cost.engine import EngineTraits, expert_passes
from planner.cost.memory.kernels import Kernels, kernels
from planner.cost.partial import NORMS, ROUTER, PartialTraining
from planner.cost.plan import Plan
from planner.cost.precisions import saved_bytes_per_element, te_recipe
from planner.cost.workload import Workload
from planner.model.architecture import Architecture
from planner.model.params import ALL_LINEAR, LORA_TARGETS, attention_linears


def tokens_per_gpu(plan: Plan, workload: Workload) -> float:
    """Tokens of one micro-batch on one GPU before TP sharding: b * s / cp."""
    return plan.mbs * workload.seq_len / plan.parallel.cp


def adapted_modules(plan: Plan, workload: Workload | None) -> frozenset[str] | None:
    """Module names carrying LoRA adapters; None when every weight trains."""
    if workload is None or not workload.trains_adapters:
        return None
    names: set[str] = set()
    for target in workload.lora_targets:
        names.update(LORA_TARGETS if target == ALL_LINEAR else (target,))
    return frozenset(names)


def layer_activation_bytes_per_token(arch: Architecture, index: int, plan: Plan,
                                     workload: Workload | None = None, *,
                                     partial: PartialTraining | None = None) -> float:
    """Bytes saved for backward by one layer per token (no dropout), for the workload's engine.

    Megatron (Korthikanti et al. 2022 Table 2 counts 34h + 5as bytes per token of a GPT layer;
    without dropout masks (2 x h bytes) and with flash attention (no s x s scores; a fp32
    log-sum-exp per head instead) the same tensors give, for any layer shape, with e bytes per
    16-bit element):
      norms          2 x e h     inputs of the two norms (fused TE norms save their input)
      attention      e h         QKV input (norm output)
                     e q + 2 e kv  Q, K and V;   e q  attention output = out-proj input
                     4a          fp32 log-sum-exp per head (flash attention)
      MLP            e h         fc1 input
                     gated: 2 e i (fc1 output, gate and up) + e i (fc2 input); plain: e i + e i
    (check: GPT with q = kv = h, i = 4h gives 32h = 34h - 2h of dropout masks.)
    Hugging Face modules (`_hf_layer_bytes`) save more: see there. With TP the sharded tensors
    divide by t; SP also divides the norm and matmul inputs by t (Korthikanti §4.2.2). Selective
    recompute drops the attention core (the log-sum-exp and output) and full recompute keeps only
    the layer input. LoRA: a frozen linear without an adapter keeps no input (autograd saves a
    matmul input only for its weight gradient), a frozen norm weight needs no normalized copy,
    each adapter keeps its rank-r output, and nothing before the first layer needs a gradient.
    Partial fine-tuning (`partial`) is the same rule with the trainable modules in place of the
    adapters: layers before the first trainable one keep nothing at all.
    """
    return layer_activation_bytes(arch, plan, workload, partial=partial)(index)


def layer_activation_bytes(arch: Architecture, plan: Plan, workload: Workload | None = None, *,
                           partial: PartialTraining | None = None) -> Callable[[int], float]:
    """`layer_activation_bytes_per_token` of each layer index under one plan, what the plan and
    the workload decide worked out once for all the layers of a stage."""
    engine = workload.engine if workload is not None else EngineTraits()
    modules = (frozenset(plan.recompute_modules or ("core_attn",)) if plan.recompute == "selective"
               else frozenset())
    k = kernels(engine, plan.precision, plan.zero)
    fp8 = te_recipe(plan.precision, engine.kernels)
    tp, sp, recompute, rank = plan.parallel.tp, plan.parallel.sp, plan.recompute, plan.lora_rank
    etp = plan.expert_tp if arch.moe is not None and plan.parallel.ep > 1 else 1
    if partial is not None:
        first = partial.first_trainable_layer(arch)

        def partial_layer(index: int) -> float:
            if first is None or index < first:
                return 0.0
            return _layer_activation_bytes_per_token(arch, arch.is_moe_layer(index), tp, sp, recompute, k,
                                                     partial.layer_modules(arch, index), rank, index > first,
                                                     modules, fp8, etp=etp)
        return partial_layer
    adapted = adapted_modules(plan, workload)
    chunked = k.deepep_experts and workload is not None and _expert_chunks_checkpointed(arch, plan, workload, k)

    # A layer's bytes depend on its index only through its kind: expert MLP or not, and whether
    # its input needs a gradient (the first adapted layer's does not). One value per kind.
    kinds: dict[tuple[bool, bool], float] = {}

    def layer(index: int) -> float:
        kind = (arch.is_moe_layer(index), adapted is None or index > 0)
        found = kinds.get(kind)
        if found is None:
            found = kinds[kind] = _layer_activation_bytes_per_token(arch, kind[0], tp, sp, recompute, k, adapted,
                                                                    rank, kind[1], modules, fp8, chunked, etp)
        return found
    return layer


EXPERT_MLP_CHUNK_BYTES = 512 * 2**20
"""NeMo AutoModel's DeepEP experts with biases checkpoint their MLP in row chunks once the
gate/up GEMM's output of one micro-batch exceeds 512 MiB (nemo_automodel 0.7 components/moe/experts.py
`_EXPERT_MLP_CHUNK_BYTES`, `_checkpointed_chunked_expert_mlp`)."""


def _expert_chunks_checkpointed(arch: Architecture, plan: Plan, workload: Workload, k: Kernels) -> bool:
    """Whether AutoModel's biased DeepEP experts recompute their MLP in backward: the rows a rank
    receives (its tokens x top_k with balanced routing) times the gate/up width above the limit."""
    moe = arch.moe
    if moe is None or not moe.expert_bias:
        return False
    width = (2 if arch.gated_mlp else 1) * moe.expert_ffn
    rows = tokens_per_gpu(plan, workload) * moe.top_k
    return rows * width * k.act > EXPERT_MLP_CHUNK_BYTES


def _deepep_routed_bytes(arch: Architecture, e: int, chunked: bool) -> float:
    """Bytes saved per routed copy by NeMo AutoModel's DeepEP grouped experts
    (nemo_automodel 0.7 components/moe/experts.py `GroupedExpertsDeepEP.forward`): the permuted
    input of the gate/up grouped GEMM (e h) and the fp32 routing weight (4); then the
    activation's saved tensors and the down GEMM's input (e i). The routing weight multiplies
    inside the activation and the biases add in `_ChunkedBiasAdd`, which saves only the bias and
    the weights, so the experts' outputs are not kept. Every activation there keeps only its
    input (2 e i gated, e i plain): SwiGLU runs Megatron-Core's fused `weighted_bias_swiglu_impl`,
    and the others (`quick_geglu_deepep`, gpt-oss's clamped GEGLU; `swiglu_oai_deepep`,
    `relu2_deepep`, `swiglu_clamped_deepep`) are `torch.compile(fullgraph=True)` functions whose
    backward recomputes the clamps, sigmoid and products from that input (AOTAutograd's min-cut
    partition; counted with torch's saved-tensor hooks by validation/memory/automodel_experts.py:
    e h + 3 e i + 4 per row, against 8 e i + e h + 4 with the decorator removed).
    Above EXPERT_MLP_CHUNK_BYTES the chunks are checkpointed and only the input stays."""
    moe = arch.moe
    if chunked:
        return e * arch.hidden + 4
    i = moe.expert_ffn
    activation = (2 if arch.gated_mlp else 1) * e * i
    return e * arch.hidden + 4 + activation + e * i


@lru_cache(maxsize=65536)
def _layer_activation_bytes_per_token(arch: Architecture, moe_layer: bool, tp: int, sp: bool, recompute: str,
                                      k: Kernels, adapted: frozenset[str] | None, rank: int,
                                      input_grad: bool = True, modules: frozenset[str] = frozenset(),
                                      fp8: str | None = None, expert_chunks: bool = False, etp: int = 1) -> float:
    h = arch.hidden
    seq_sharded = 1 / tp if sp else 1.0  # tensors of the residual stream: SP-sharded or replicated
    if recompute == "full":
        # The checkpoint: the layer input in the residual stream's dtype (Megatron: 2h).
        return k.residual * h * seq_sharded
    if recompute == "selective" and k.family == "hf" and not moe_layer and adapted is None:
        replicated, sharded = _hf_op_selective_bytes(arch, k)
        return replicated * seq_sharded + sharded / tp
    if k.family == "megatron":
        replicated, sharded = _megatron_layer_bytes(arch, moe_layer, recompute, k.act, adapted, rank, input_grad,
                                                    modules, saved_bytes_per_element(fp8) if fp8 else k.act, etp)
    else:
        replicated, sharded = _hf_layer_bytes(arch, moe_layer, recompute, k, adapted, rank, input_grad, expert_chunks)
    return replicated * seq_sharded + sharded / tp


def matmul_widths(arch: Architecture) -> tuple[int, ...]:
    """Output widths of a dense layer's matmuls in forward order: q, k, v, o, then gate and up
    (or fc1) and down."""
    att, h = arch.attention, arch.hidden
    mlp = (arch.ffn, arch.ffn, h) if arch.gated_mlp else (arch.ffn, h)
    return (att.q_dim, att.kv_dim, att.kv_dim, h) + mlp


def _hf_op_selective_bytes(arch: Architecture, k: Kernels) -> tuple[float, float]:
    """(replicated, TP-sharded) bytes per token of a dense PyTorch layer under per-operator
    selective checkpointing, torchtitan's `selective` mode `op` (torchtitan
    models/llama/parallelize_llama.py `_custom_policy`: save the outputs of SDPA and of every
    second matmul, recompute everything else): the layer input (the checkpoint), SDPA's output
    and fp32 log-sum-exp, and the outputs of the 1st, 3rd, 5th ... matmul (q, v, gate, down)."""
    att = arch.attention
    saved = sum(matmul_widths(arch)[0::2])
    return k.residual * arch.hidden, k.act * (saved + att.q_dim) + 4 * att.num_heads


def _mla_latent(att) -> int:
    """Width of MLA's compressed q and kv latents (with the decoupled RoPE key) per token."""
    return (att.q_lora_rank or 0) + att.kv_lora_rank + att.qk_rope_head_dim


def _attention_saved(att, e: float) -> tuple[float, float]:
    """(q, k, v saved for the attention core, the core's output and fp32 log-sum-exp) in bytes per
    token at e bytes per element: the FlashAttention inputs and what its backward needs."""
    if att.is_mla:
        q = att.num_heads * att.head_dim
        return e * (q + q + att.num_heads * att.value_head_dim), e * att.num_heads * att.value_head_dim + 4 * att.num_heads
    return e * (att.q_dim + 2 * att.kv_dim), e * att.q_dim + 4 * att.num_heads


def _needs_grad(adapted: frozenset[str] | None, *names: str) -> int:
    """How many of these linears need their input saved (trainable, or carrying an adapter)."""
    return len(names) if adapted is None else sum(n in adapted for n in names)


def _megatron_layer_bytes(arch: Architecture, moe_layer: bool, recompute: str, e: int,
                          adapted: frozenset[str] | None, rank: int, input_grad: bool = True,
                          modules: frozenset[str] = frozenset(), q: float | None = None,
                          etp: int = 1) -> tuple[float, float]:
    """(replicated, TP-sharded) bytes per token of a Megatron/TE layer (see the caller).

    `q` bytes per element of what a linear layer saves for its weight gradient: e, or 1 under
    fp8 (1 + 1/32 under MXFP8, its block scales: precisions.saved_bytes_per_element), where
    Transformer Engine keeps the fp8-quantized input (column-wise usage) instead of
    the 16-bit one (transformer_engine/pytorch/module/linear.py and layernorm_linear.py save
    `inputmat` / `ln_out` quantized). The attention core keeps 16-bit tensors, so the
    out-projection's fp8 input is a second copy of the core's output.
    `modules`: Megatron's selective recompute list (transformer_config.py `recompute_modules`):
    `core_attn` drops the attention core's saved tensors; `layernorm` the norm outputs (the
    QKV and fc1 inputs, recomputed from the kept norm inputs); `mla_up_proj` MLA's per-head q, k,
    v (recomputed from the latents); `moe_act` the experts' activation output (fc2 input); `mlp`
    and `moe` the whole MLP, keeping its input; `shared_experts` the shared experts.
    `etp`: expert tensor parallelism of the routed experts (ep > 1), whose ranks each keep the
    tokens of all etp ranks (comm.ep_traffic's gather) for 1/etp of the expert width.
    """
    q = e if q is None else q
    h = arch.hidden
    att = arch.attention
    first_frozen = not input_grad
    norms = e * h * (1 if first_frozen else 2)  # inputs of the two norms
    norm_out = 0 if "layernorm" in modules else q  # saved norm outputs: QKV and fc1 inputs
    qkv_input = norm_out * h if _needs_grad(adapted, "q_proj", "k_proj", "v_proj") else 0
    replicated = norms + qkv_input
    if att.is_mla:
        # MLA: the compressed q and kv latents (and their norms' inputs) feed the up-projections.
        replicated += 2 * e * _mla_latent(att)
    attention, attention_core = _attention_saved(att, e)
    if att.is_mla and "mla_up_proj" in modules:
        attention = 0.0  # q, k, v rebuilt from the latents in backward
    out_proj = e * att.num_heads * att.value_head_dim  # the core's output, the out-projection's input
    if recompute == "none" or (recompute == "selective" and "core_attn" not in modules):
        attention += attention_core
    else:
        # Selective: Megatron's core-attention checkpoint recomputes the attention core; its
        # output stays alive as the out-projection's input.
        attention += out_proj
    if q != e:
        attention += q * att.num_heads * att.value_head_dim  # the out-projection's fp8 input

    def ffn_bytes(i: int, act_recomputed: bool = False) -> float:
        # gated: fc1 output (gate and up) 2 e i + fc2 input q i; plain (GeLU, squared ReLU): fc1
        # output e i + fc2 input q i
        fc2_input = q * i if _needs_grad(adapted, "down_proj") and not act_recomputed else 0
        return (2 * e * i if arch.gated_mlp else e * i) + fc2_input

    fc1_input = norm_out * h if _needs_grad(adapted, "gate_proj", "up_proj") or moe_layer else 0
    replicated += fc1_input + _adapter_bytes(arch, e, adapted, rank)
    if not moe_layer:
        return replicated, attention + (0 if "mlp" in modules else ffn_bytes(arch.ffn))
    moe = arch.moe
    if "moe" in modules:
        return replicated, attention
    # Router: fp32 logits and probabilities over E experts; each token is dispatched to top_k
    # experts whose FFN activations are those of a dense FFN of the expert size (capacity factor 1):
    # the experts' fc1 input at q bytes and the routing probability (fp32), which Megatron-Core
    # multiplies in inside the experts' activation (megatron/core/transformer/moe/experts.py
    # `activation_func_with_probs`). Neither the permutation nor the all-to-all saves anything, and
    # the combine un-permutes without probabilities (token_dispatcher.py `combine_postprocess`:
    # `unpermute(...)` with no probs), so the experts' outputs are not kept.
    # Under expert TP the fc1 input and the probabilities are the gathered ones: etp times a
    # rank's own tokens (the FFN tensors are etp times the tokens at 1/etp of the width).
    routed = moe.top_k * (etp * (q * h + 4) + ffn_bytes(moe.expert_ffn, "moe_act" in modules))
    router = 2 * 4 * moe.num_experts
    shared = ffn_bytes(moe.shared_ffn) if moe.shared_ffn and "shared_experts" not in modules else 0
    return replicated, attention + routed + router + shared


def _adapter_bytes(arch: Architecture, e: int, adapted: frozenset[str] | None, rank: int) -> float:
    """LoRA: each adapter keeps its rank-r output A x for B's gradient."""
    if adapted is None:
        return 0.0
    names = set(attention_linears(arch.attention, arch.hidden)) | {"gate_proj", "up_proj", "down_proj"}
    return e * rank * len(adapted & names)


FP32_NORM_OUTPUT = frozenset({"gemma", "gemma2", "gemma3_text", "olmo2", "olmo3", "gpt_oss"})
"""Families whose RMSNorm multiplies its weight into the fp32 normalized input and casts after,
so the normalized input kept for the weight's gradient is fp32 (transformers 5.25 GemmaRMSNorm
`output * (1.0 + self.weight.float())`; Olmo2RMSNorm, GptOssRMSNorm `(self.weight *
hidden_states).to(input_dtype)`), not the input dtype (LlamaRMSNorm `self.weight *
hidden_states.to(input_dtype)`). Their query and key norms too."""

MEAN_SUBTRACTING_NORM = frozenset({"cohere", "cohere2"})
"""CohereLayerNorm (modeling_cohere.py): in fp32, (x - mean) is computed twice, once for the
variance (saved by pow) and once to normalize (saved by the product with rsqrt), then the weight
multiplies the fp32 normalized input: 8w + 4 + 4w bytes per token of width w."""

POST_NORM = frozenset({"olmo2", "olmo3", "exaone4"})
"""Families that normalize each half's output instead of its input (transformers Olmo2DecoderLayer,
Exaone4DecoderLayer: post_attention_layernorm and post_feedforward_layernorm, no input norm)."""

FUSED_PROJECTIONS: dict[str, frozenset[str]] = {
    "phi3": frozenset({"qkv", "gate_up"}), "glm": frozenset({"gate_up"}), "glm4": frozenset({"gate_up"}),
    "gpt_neox": frozenset({"qkv"}), "falcon": frozenset({"qkv"}), "bloom": frozenset({"qkv"}),
    "gpt2": frozenset({"qkv"}),
}
"""Families whose transformers modules compute q, k and v (`qkv_proj`, `query_key_value`,
`c_attn`) or the gate and up projections (`gate_up_proj`) as one linear: under torch.autocast
it saves one 16-bit cast of its input where separate linears save one each."""

FP32_ROUTER = frozenset({"deepseek_v2", "deepseek_v3", "glm4_moe", "glm4_moe_lite", "glm4v_moe_text", "dots1",
                         "solar_open", "exaone_moe", "ernie4_5_moe"})
"""Families whose router is an fp32 linear of an fp32 copy of its input (`F.linear(hidden_states
.type(torch.float32), self.weight.type(torch.float32))`, the weight kept in fp32 by
`_keep_in_fp32_modules_strict`): the copy (4h) is what the router saves, and shared experts save
the norm output of their own."""


def _norm_kind(arch: Architecture, k: Kernels) -> str:
    """`fp32_output` (FP32_NORM_OUTPUT), `mean_subtracting` (MEAN_SUBTRACTING_NORM) or `llama`:
    transformers' own norm of the family, or Llama's where the engine runs its own model code."""
    if k.transformers_modules and arch.family in FP32_NORM_OUTPUT:
        return "fp32_output"
    if k.transformers_modules and arch.family in MEAN_SUBTRACTING_NORM:
        return "mean_subtracting"
    return "llama"


def normalized_bytes(arch: Architecture, k: Kernels) -> int:
    """Bytes per element of the normalized input a Hugging Face norm keeps for its weight's gradient."""
    return k.residual if _norm_kind(arch, k) == "llama" else 4


def norm_bytes(arch: Architecture, k: Kernels, weight_trains: bool, width: int | None = None,
               source_bytes: int | None = None) -> float:
    """One Hugging Face norm over `width` (default h) features, per token.

    RMSNorm (LlamaRMSNorm and kin) upcasts its input to fp32 (4w, the input itself when it is
    fp32), saves rsqrt (4) and, for the weight's gradient, the normalized input
    (`normalized_bytes`: the input dtype, fp32 for FP32_NORM_OUTPUT). LayerNorm (aten
    native_layer_norm) saves its input, mean and rstd; CohereLayerNorm see MEAN_SUBTRACTING_NORM.
    A fused RMSNorm (`Kernels.fused_norm`, also on query and key heads) saves only its input and
    recomputes the rest in backward: NeMo AutoModel's `torch_fp32` norm is one custom op whose
    autograd context keeps x and the weight (nemo_automodel 0.7 components/models/common/utils.py
    `_float32_rms_norm_setup_context`; `_float32_rms_norm_backward` rebuilds rsqrt and x * r).
    `source_bytes`: bytes per element of the norm's input, the residual stream's by default; a
    norm of a sub-block's output reads its 16-bit activations (under autocast too).
    Counted with torch's saved-tensor hooks: tests/validate/test_hf_activations.py.
    """
    w = width or arch.hidden
    source = source_bytes or k.residual
    if arch.norm == "layernorm":
        return source * w + 8
    if k.fused_norm:
        return source * w
    kind = _norm_kind(arch, k)
    kept = (source if kind == "llama" else 4) * w if weight_trains else 0
    if kind == "mean_subtracting":
        return 8 * w + 4 + kept
    return 4 * w + 4 + kept


def _hf_layer_bytes(arch: Architecture, moe_layer: bool, recompute: str, k: Kernels,
                    adapted: frozenset[str] | None, rank: int, input_grad: bool = True,
                    expert_chunks: bool = False) -> tuple[float, float]:
    """(replicated, TP-sharded) bytes per token saved by a Hugging Face decoder layer.

    Per saved tensor (transformers 5.24, torch 2.13; measured in validation/memory/, exact
    on 10 shapes): with e bytes per activation and r per residual element,
      norms        2 x (4h + r h + 4)     (see norm_bytes)
      linear inputs  r h per group sharing the norm output (q/k/v; gate/up or router); under
                   torch.autocast each linear saves its own bf16 cast instead: 2h x 3 and 2h x 2
      attention    e q + 2 e kv (SDPA's q, k, v) + e q (output, the o_proj input) + 4a (fp32 lse);
                   q/k RMSNorm per head: 4q + e q + 4a and 4kv + e kv + 4g more
      SwiGLU       gate, SiLU(gate), up and their product (the down_proj input): 4 e i
      MoE (grouped_mm experts)  router probabilities 4E (fp32) and top-k indices 8 top_k; per
                   routed copy the gathered input e h, gate_up 2 e i, SiLU e i, product e i,
                   the expert output e h (kept for the routing-weight product), 3 int64 indices
                   and the routing weight (32 bytes)
    which gives sb(20h + 4kv + 8i) + 8sb + 4asb for pure-bf16 Llama (q = h), sb(30h + 4kv + 8i)
    + 8sb + 4asb under autocast and sb(32h + 8kv + 16i) + 8sb + 4asb in fp32.
    """
    h, e = arch.hidden, k.act
    att = arch.attention
    full = adapted is None or NORMS in adapted  # the norm weights train

    fused = FUSED_PROJECTIONS.get(arch.family, frozenset()) if k.transformers_modules else frozenset()

    def inputs(n: int, group: str = "") -> float:
        """The saved input of `n` linears reading one tensor: that tensor, or under autocast each
        linear's own 16-bit cast (one for a fused projection)."""
        if n == 0:
            return 0.0
        return 2 * h * (1 if group in fused else n) if k.autocast else k.residual * h

    # The first norm of a layer whose input needs no gradient keeps only what its weight's gradient needs.
    first_norm = norm_bytes(arch, k, full) if input_grad else (normalized_bytes(arch, k) * h if full else 0)
    # No gradient reaches the attention block of the first trainable layer when nothing in it trains
    # (partial fine-tuning of the MLP, experts or router only): autograd records nothing there.
    attention_graph = input_grad or full or bool(_needs_grad(adapted, *attention_linears(att, h)))
    # One norm feeds both halves of a parallel block that has one (Falcon-7B, Command R); Gemma 2
    # and 3 and GLM-4-0414 also normalize each half's output (four per layer).
    second = norm_bytes(arch, k, full) if attention_graph and arch.norms_per_layer >= 2 else 0
    if second and arch.parallel_residual and arch.norm == "layernorm":
        second = 8  # both LayerNorms of a parallel block read the same input, saved once (GPT-NeoX, Falcon)
    # Norms of the halves' outputs read 16-bit activations.
    output_norm = norm_bytes(arch, k, full, source_bytes=e)
    if k.transformers_modules and arch.family in POST_NORM:
        first_norm, second = (output_norm if input_grad else first_norm), (output_norm if second else 0)
    norms = first_norm + second + max(0, arch.norms_per_layer - 2) * output_norm
    qkv = _needs_grad(adapted, "q_proj", "k_proj", "v_proj")
    mlp = _needs_grad(adapted, "gate_proj", "up_proj") if arch.gated_mlp else _needs_grad(adapted, "up_proj")
    shared_input = arch.norms_per_layer == 1 and not k.autocast  # one saved norm output for both halves
    replicated = (norms + (inputs(qkv or mlp) if shared_input else inputs(qkv, "qkv"))
                  + _adapter_bytes(arch, e, adapted, rank))
    if k.transformers_modules and arch.residual_dropout > 0 and input_grad:
        # Dropout on each half's output keeps its mask, one byte per element (CUDA's fused
        # native_dropout returns a bool mask; aten/src/ATen/native/cuda/Dropout.cu).
        replicated += 2 * h
    attention, core = _attention_saved(att, e)
    if att.is_mla and k.transformers_modules:
        # transformers' MLA (modeling_deepseek_v3.py DeepseekV3Attention): each latent's RMSNorm
        # (upcast copy, rsqrt, 16-bit normalized copy) and the up-projection's input; V is a view
        # of kv_b_proj's output, whose storage (k_nope beside v) stays saved whole.
        for width in (att.q_lora_rank or 0, att.kv_lora_rank):
            replicated += (4 * width + 4 + (e * width if full else 0) + e * width) if width else 0
        attention += e * att.num_heads * (att.head_dim - att.qk_rope_head_dim)
    elif att.is_mla:
        replicated += 2 * e * _mla_latent(att)  # as for Megatron's
    if not att.is_mla and k.fused_norm and att.qk_norm in ("head", "projection"):
        attention += e * (att.q_dim + att.kv_dim)  # the fused op keeps only its inputs (norm_bytes)
    elif not att.is_mla:
        # Query and key norms of the family's kind (norm_bytes) over the 16-bit projections: the
        # normalized copy in their dtype, or fp32.
        kind = _norm_kind(arch, k)
        kept, upcast = 4 if kind != "llama" else e, 8 if kind == "mean_subtracting" else 4
        if att.qk_norm == "head":
            attention += (upcast * att.q_dim + (kept * att.q_dim if full else 0) + 4 * att.num_heads
                          + upcast * att.kv_dim + (kept * att.kv_dim if full else 0) + 4 * att.num_kv_heads)
        elif att.qk_norm == "projection":
            # one RMSNorm over all of q and one over all of k (OLMo-2): 4w + e w + 4 each
            attention += sum(upcast * w + (kept * w if full else 0) + 4 for w in (att.q_dim, att.kv_dim))
    attention += core if recompute == "none" else e * att.num_heads * att.value_head_dim
    if not attention_graph:
        attention = 0.0

    def swiglu(i: int) -> float:
        product = e * i if _needs_grad(adapted, "down_proj") else 0
        return (3 * e * i if arch.gated_mlp else plain_activation_bytes(arch, k) * i) + product

    if not moe_layer:
        replicated += 0 if shared_input else inputs(mlp, "gate_up" if arch.gated_mlp else "")
        return replicated, attention + swiglu(arch.ffn)
    moe = arch.moe
    if k.transformers_modules and arch.family in FP32_ROUTER:
        # The router's fp32 copy of its input; shared experts keep the norm output (experts gather from it).
        replicated += 4 * h * _needs_grad(adapted, ROUTER) + (inputs(mlp) if moe.shared_ffn else 0)
    else:
        replicated += inputs(_needs_grad(adapted, ROUTER))  # the router's input (experts gather their rows from it)
    router = 4 * moe.num_experts + 8 * moe.top_k
    passes = expert_passes(arch, k.transformers_modules)
    # Per pass: the gathered input and the expert output (kept for the routing weight's product),
    # the MLP, and three int64 indices and the weight; Llama 4's dense passes keep the scaled input
    # and the 16-bit score instead.
    dense_passes = passes != moe.top_k
    routed = passes * (2 * e * h + swiglu(moe.expert_ffn) + (e if dense_passes else 32))
    if k.deepep_experts and adapted is None:
        routed = moe.top_k * _deepep_routed_bytes(arch, e, expert_chunks)
    if not attention_graph and not _needs_grad(adapted, "gate_proj", "up_proj", "down_proj"):
        # Frozen experts on an input without gradient: only their outputs, for the router's gradient.
        routed = moe.top_k * (e * h + 32)
    # A gated shared expert (Qwen2-MoE) keeps its output and the gate's sigmoid for the product's gradient.
    shared = swiglu(moe.shared_ffn) + (e * h + e if moe.shared_expert_gate else 0) if moe.shared_ffn else 0
    return replicated, attention + router + routed + shared


def plain_activation_bytes(arch: Architecture, k: Kernels) -> float:
    """Bytes per FFN unit and token an ungated MLP activation saves: its input (GELU, squared
    ReLU). xIELU in Python (transformers activations.py `XIELUActivation._xielu_python`, what
    Apertus runs without the optional CUDA kernel) keeps its input, alpha_p·x, expm1's output and
    that minus x, e bytes each but alpha_p·x in fp32 under autocast (the fp32 scalar parameter
    promotes it), and the x > 0 mask of its `where`, one byte (tests/validate/test_hf_activations.py)."""
    if arch.mlp_activation == "xielu":
        return 3 * k.act + (4 if k.autocast else k.act) + 1
    return k.act


def inflight_microbatches(plan: Plan, stage: int) -> float:
    """Micro-batches of this stage's layers alive at the stage's activation peak.

    1F1B (PipeDream-Flush): stage r runs p - r warm-up forwards before its first backward.
    Interleaved with v chunks (Megatron schedules.py): (p - r - 1) * 2 + (v - 1) * p + 1 chunks of
    L/(p v) layers, i.e. p (1 + (p - 1)/(p v)) layer-groups on the first stage (Korthikanti §4.2.3).
    Never more than the micro-batches of one run of the schedule (`Plan.pipeline_runs`).
    """
    p, v, m = plan.parallel.pp, plan.parallel.vpp, plan.microbatches_per_run
    if v == 1:
        return float(min(m, p - stage))
    chunks = (p - stage - 1) * 2 + (v - 1) * p + 1
    return min(chunks, m * v) / v
