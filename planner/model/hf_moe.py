"""Readers of mixture-of-experts families' config.json (transformers 5.24,
models/<type>/modeling_<type>.py): one function per family, config fields -> Architecture."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from planner.model.architecture import Architecture, Attention, MoE
from planner.model.hf_fields import Fields, attention, decoder, moe, positive, rotary_dim
from planner.spec.errors import InputError


def mixtral(f: Fields, name: str) -> Architecture:
    ffn = f.required("intermediate_size")
    experts = moe(f.required("num_hidden_layers"), lambda i: True,
                  num_experts=f.count("num_local_experts"),
                  top_k=f.optional_int("num_experts_per_tok"), expert_ffn=ffn)
    return decoder(f, name, attention(f), moe=experts)


def olmoe(f: Fields, name: str) -> Architecture:
    """OLMoE (modeling_olmoe.py): OLMo's RMSNorms over the whole query and key projections
    (q_norm of hidden_size, k_norm of its key/value share), optional biases on all four attention
    projections (`attention_bias`); every layer routes to `num_experts` SwiGLU experts of
    `intermediate_size` (fused gate_up) behind a bias-free router, no shared expert. `clip_qkv`
    clamps values only."""
    attn = attention(f, bias=f.flag("attention_bias"), qk_norm="projection")
    if attn.q_dim != f.required("hidden_size"):
        raise InputError(f"OLMoE's query norm spans hidden_size, so its heads must too: head_dim must be"
                         f" hidden_size / num_attention_heads = {f.required('hidden_size') // attn.num_heads}",
                         field="head_dim")
    experts = moe(f.required("num_hidden_layers"), lambda i: True, num_experts=f.count("num_experts"),
                  top_k=f.optional_int("num_experts_per_tok"), expert_ffn=f.required("intermediate_size"))
    return decoder(f, name, attn, moe=experts)


def granitemoe(f: Fields, name: str) -> Architecture:
    """Granite 3 MoE (modeling_granitemoe.py) and Granite MoE with a shared expert
    (modeling_granitemoeshared.py): Mixtral's SwiGLU experts (input_linear fused, output_linear)
    behind a bias-free router; optional biases on all four attention projections
    (`attention_bias`); the shared models add one SwiGLU MLP of `shared_intermediate_size` (none
    at 0, the class default). The multipliers scale activations only."""
    ffn = f.required("intermediate_size")
    shared = f.count("shared_intermediate_size") if f.model_type == "granitemoeshared" else 0
    experts = moe(f.required("num_hidden_layers"), lambda i: True, num_experts=f.count("num_local_experts"),
                  top_k=f.optional_int("num_experts_per_tok"), expert_ffn=ffn,
                  num_shared_experts=int(shared > 0), shared_ffn=shared)
    return decoder(f, name, attention(f, bias=f.flag("attention_bias")), moe=experts)


def phimoe(f: Fields, name: str) -> Architecture:
    """Phi-3.5-MoE (modeling_phimoe.py): Mixtral's experts (fused gate_up_proj) behind a bias-free
    router; optional biases on all four attention projections (`attention_bias`) and on the
    output layer (`lm_head_bias`); LayerNorm with a bias before each sub-block and at the end."""
    ffn = f.required("intermediate_size")
    experts = moe(f.required("num_hidden_layers"), lambda i: True, num_experts=f.count("num_local_experts"),
                  top_k=f.optional_int("num_experts_per_tok"), expert_ffn=ffn)
    return decoder(f, name, attention(f, bias=f.flag("attention_bias")), moe=experts, norm="layernorm",
                   lm_head_bias=f.flag("lm_head_bias"))


def grok1(f: Fields, name: str) -> Architecture:
    """Grok-1 (xai-org/grok-1 model.py; hpcai-tech/grok-1 modeling_grok1.py): GQA without
    biases; every layer MoE of gated-GELU experts (linear, linear_v, linear_1: three matrices,
    as SwiGLU) behind a bias-free router; RMSNorm before and after each sub-block (four per
    layer); the output projection is the input embedding transposed."""
    experts = moe(f.required("num_hidden_layers"), lambda i: True, num_experts=f.count("num_experts"),
                  top_k=f.optional_int("num_experts_per_tok"),
                  expert_ffn=f.required("intermediate_size"))
    return decoder(f, name, attention(f), moe=experts, norms_per_layer=4)


def llama4(f: Fields, name: str) -> Architecture:
    """Llama 4 text decoder (modeling_llama4.py): MoE layers at `moe_layers`, by default every
    `interleave_moe_layer_step`-th counting from 1 (configuration_llama4.py:
    range(step - 1, layers, step)), each with routed experts and one shared expert of
    `intermediate_size`; dense layers use `intermediate_size_mlp`. Its q/k norm is a
    parameter-free L2 norm. Chunked and global attention layers share one shape."""
    num_layers = f.required("num_hidden_layers")
    step = f.optional_int("interleave_moe_layer_step") or 1
    listed = f.layer_indices("moe_layers")
    sparse = set(listed) if listed is not None else set(range(step - 1, num_layers, step))
    expert_ffn = f.required("intermediate_size")
    experts = moe(num_layers, lambda i: i in sparse, num_experts=f.count("num_local_experts"),
                  top_k=f.optional_int("num_experts_per_tok"), expert_ffn=expert_ffn,
                  num_shared_experts=1, shared_ffn=expert_ffn, layer_freq=step)
    bias = f.flag("attention_bias")
    return decoder(f, name, attention(f, bias=bias), ffn=f.optional_int("intermediate_size_mlp"),
                   moe=experts)


def gpt_oss(f: Fields, name: str) -> Architecture:
    """gpt-oss (modeling_gpt_oss.py): GQA with biases and a learned sink logit per head; every
    layer MoE with a biased router and routed SwiGLU experts with biases (fused gate_up_proj),
    no shared expert. Sliding-window and full layers alternate, with the same shapes."""
    attn = replace(attention(f, bias=f.flag("attention_bias")), sinks=True)
    experts = moe(f.required("num_hidden_layers"), lambda i: True,
                  num_experts=f.count("num_local_experts"),
                  top_k=f.optional_int("num_experts_per_tok"),
                  expert_ffn=f.required("intermediate_size"), expert_bias=True, router_bias=True)
    return decoder(f, name, attn, moe=experts)


def minimax_m2(f: Fields, name: str) -> Architecture:
    """MiniMax-M2 (modeling_minimax_m2.py): GQA without biases; RMSNorm q_norm and k_norm over
    the whole q and k projections (the released config's qk_norm_type 'per_layer'); every layer
    MoE of SwiGLU experts without biases (fused gate_up_proj) behind a bias-free router weight;
    the router's e_score_correction_bias is a buffer; no shared expert; RoPE on the first
    `rotary_dim` features of each head. transformers builds no MTP modules
    (num_mtp_modules), so they are not counted."""
    attn = attention(f, qk_norm="projection")
    rotary = f.optional_int("rotary_dim")
    fraction = rotary / attn.head_dim if rotary else f.rotary_fraction("partial_rotary_factor")
    attn = replace(attn, rotary_dim=rotary_dim(attn.head_dim, fraction))
    experts = moe(f.required("num_hidden_layers"), lambda i: True,
                  num_experts=f.count("num_local_experts"),
                  top_k=f.optional_int("num_experts_per_tok"),
                  expert_ffn=f.required("intermediate_size"))
    return decoder(f, name, attn, moe=experts)


def _qwen_moe(f: Fields, **shared: Any) -> MoE | None:
    """Qwen-MoE layer rule (modeling_qwen3_moe.py): sparse unless in mlp_only_layers, when
    (i + 1) % decoder_sparse_step == 0."""
    step = f.optional_int("decoder_sparse_step") or 1
    dense = f.layer_indices("mlp_only_layers") or ()
    return moe(f.required("num_hidden_layers"), lambda i: i not in dense and (i + 1) % step == 0,
               num_experts=f.count("num_experts"), top_k=f.optional_int("num_experts_per_tok"),
               expert_ffn=f.required("moe_intermediate_size"), layer_freq=step, dense_layers=dense,
               **shared)


def qwen2_moe(f: Fields, name: str) -> Architecture:
    shared_ffn = f.count("shared_expert_intermediate_size")
    # transformers builds the shared expert and its gate even at width 0.
    experts = _qwen_moe(f, num_shared_experts=int(shared_ffn > 0), shared_ffn=shared_ffn,
                        shared_expert_gate=True)
    return decoder(f, name, attention(f, bias=f.flag("qkv_bias"), out_bias=False), moe=experts)


def qwen3_moe(f: Fields, name: str) -> Architecture:
    attn = attention(f, bias=f.flag("attention_bias"), qk_norm="head")
    return decoder(f, name, attn, moe=_qwen_moe(f))


def glm4_moe(f: Fields, name: str) -> Architecture:
    """GLM-4.5 and GLM-4.6 (modeling_glm4_moe.py): GQA with biases on q, k and v
    (`attention_bias`), none on the output projection; a per-head RMSNorm on q and k with
    `use_qk_norm`; RoPE on the first `partial_rotary_factor` (0.5) of each head. Dense SwiGLU MLPs
    in the first `first_k_dense_replace` layers, then DeepSeek-V3-style experts (`_v3_experts`).
    transformers builds no MTP modules (`num_nextn_predict_layers`): counted apart, as
    DeepSeek-V3's."""
    attn = attention(f, bias=f.flag("attention_bias"), out_bias=False,
                     qk_norm="head" if f.flag("use_qk_norm") else None)
    attn = replace(attn, rotary_dim=rotary_dim(attn.head_dim, f.rotary_fraction("partial_rotary_factor")))
    first_dense = f.count("first_k_dense_replace")
    experts = _v3_experts(f, lambda i: i >= first_dense, "n_shared_experts")
    return decoder(f, name, attn, ffn=f.optional_int("intermediate_size"), moe=experts,
                   mtp_layers=f.count("num_nextn_predict_layers", "num_mtp_layers"))


def dots1(f: Fields, name: str) -> Architecture:
    """dots.llm1 (modeling_dots1.py): GQA with one `attention_bias` on all four projections and an
    RMSNorm over each query and key head, full RoPE; dense SwiGLU MLPs in the first
    `first_k_dense_replace` layers, then DeepSeek-V3-style experts (`_v3_experts`). The layers from
    `max_window_layers` on attend within `sliding_window` (model/context.py)."""
    first_dense = f.count("first_k_dense_replace")
    experts = _v3_experts(f, lambda i: i >= first_dense, "n_shared_experts")
    return decoder(f, name, attention(f, bias=f.flag("attention_bias"), qk_norm="head"),
                   ffn=f.width("intermediate_size"), moe=experts)


def solar_open(f: Fields, name: str) -> Architecture:
    """Solar Open (modeling_solar_open.py): GQA with biases on q, k and v (`attention_bias`), none
    on the output projection, RoPE on the first `partial_rotary_factor` of each head; every layer
    MoE, DeepSeek-V3-style (`_v3_experts`), and no dense MLP: the config has no
    intermediate_size (the dense width here is the expert's, used by no layer)."""
    attn = attention(f, bias=f.flag("attention_bias"), out_bias=False)
    attn = replace(attn, rotary_dim=rotary_dim(attn.head_dim, f.rotary_fraction("partial_rotary_factor")))
    experts = _v3_experts(f, lambda i: True, "n_shared_experts")
    return decoder(f, name, attn, ffn=f.width("moe_intermediate_size"), moe=experts)


def exaone_moe(f: Fields, name: str) -> Architecture:
    """K-EXAONE (modeling_exaone_moe.py): GQA without biases, an RMSNorm over each query and key
    head, pre-norm blocks; sliding-window layers but every `sliding_window_pattern`-th, as EXAONE
    4.0 (model/context.py); DeepSeek-V3-style experts (`_v3_experts`) where `mlp_layer_types` says
    sparse, by default from `first_k_dense_replace` on. transformers builds no MTP modules."""
    first_dense = f.count("first_k_dense_replace")
    sparse = _mlp_layer_kinds(f, lambda i: i >= first_dense)
    experts = _v3_experts(f, sparse.__getitem__, "num_shared_experts", experts_keys=("num_experts",))
    return decoder(f, name, attention(f, qk_norm="head"), ffn=f.width("intermediate_size"), moe=experts)


def _v3_experts(f: Fields, sparse: Callable[[int], bool], shared_key: str,
                experts_keys: tuple[str, ...] = ("n_routed_experts", "num_local_experts")) -> MoE | None:
    """DeepSeek-V3's MoE block as these families copy it: routed SwiGLU experts of
    `moe_intermediate_size` (fused gate_up_proj) in the layers `sparse` marks, beside
    `shared_key` shared experts of the same width built as one MLP, behind a bias-free sigmoid
    router whose e_score_correction_bias is a buffer, group-limited (`n_group`, `topk_group`).
    `experts_keys`: the routed count's field and its aliases (`num_local_experts` in the
    configs' attribute_map)."""
    layers = f.required("num_hidden_layers")
    routed = f.count(*experts_keys)
    if routed == 0 and any(sparse(i) for i in range(layers)):
        raise InputError(f"{f.model_type} builds its MoE layers with routed experts; give at least one",
                         field=experts_keys[0])
    expert_ffn = f.width("moe_intermediate_size")
    num_shared = f.count(shared_key)
    groups = f.optional_int("n_group") or 1
    return moe(layers, sparse, num_experts=routed, top_k=f.optional_int("num_experts_per_tok"),
               expert_ffn=expert_ffn, num_shared_experts=num_shared, shared_ffn=num_shared * expert_ffn,
               first_dense_layers=_leading_dense(sparse, layers), route_groups=groups,
               route_group_topk=min(groups, f.optional_int("topk_group") or groups))


def _leading_dense(sparse: Callable[[int], bool], layers: int) -> int:
    """Dense layers before the first MoE one (MoE.first_dense_layers)."""
    return next((i for i in range(layers) if sparse(i)), layers)


def _mlp_layer_kinds(f: Fields, sparse_by_default: Callable[[int], bool]) -> tuple[bool, ...]:
    """Which layers are MoE: `mlp_layer_types` ("dense" or "sparse" per layer) when given, else the
    family's rule."""
    layers = f.required("num_hidden_layers")
    kinds = f.get("mlp_layer_types")
    if kinds is None:
        return tuple(sparse_by_default(i) for i in range(layers))
    if not isinstance(kinds, list) or len(kinds) != layers or not all(k in ("dense", "sparse") for k in kinds):
        raise InputError(f'must list "dense" or "sparse" for each of the {layers} layers, got {kinds!r}',
                         field="mlp_layer_types")
    return tuple(k == "sparse" for k in kinds)


def ernie4_5_moe(f: Fields, name: str) -> Architecture:
    """ERNIE 4.5 MoE (modeling_ernie4_5_moe.py): ERNIE 4.5's one `use_bias` on every attention and
    MLP projection (the shared experts' included) and on the output layer, none on the routed
    experts (3-D gate_up_proj and down_proj); MoE layers every `moe_layer_interval`-th counting
    from 1, from `moe_layer_start_index` to `moe_layer_end_index` (-1: the last); the router's
    e_score_correction_bias is a parameter, though untrained (counted as a router bias: E values
    per layer). transformers builds no MTP modules (`num_mtp_layers`)."""
    bias = f.flag("use_bias")
    layers = f.required("num_hidden_layers")
    every = f.optional_int("moe_layer_interval") or 1
    start = f.count("moe_layer_start_index")
    end = f.get("moe_layer_end_index")
    if end is None or end == -1:
        end = layers - 1
    elif isinstance(end, bool) or not isinstance(end, int) or end < 0:
        raise InputError(f"must be a layer index or -1 (the last), got {end!r}", field="moe_layer_end_index")
    expert_ffn = f.width("moe_intermediate_size")
    shared = f.count("moe_num_shared_experts")
    experts = moe(layers, lambda i: (i + 1) % every == 0 and start <= i <= end,
                  num_experts=f.count("moe_num_experts", "num_experts"),
                  top_k=f.optional_int("moe_k", "num_experts_per_tok"), expert_ffn=expert_ffn,
                  num_shared_experts=shared, shared_ffn=shared * expert_ffn, shared_expert_bias=bias and shared > 0,
                  router_bias=True, layer_freq=every)
    return decoder(f, name, attention(f, bias=bias), ffn=f.optional_int("intermediate_size"), moe=experts,
                   mlp_bias=bias, lm_head_bias=bias)


def hunyuan_v1_moe(f: Fields, name: str) -> Architecture:
    """Hunyuan MoE (modeling_hunyuan_v1_moe.py): Hunyuan dense's attention (`attention_bias` on all
    four projections, an RMSNorm over each query and key head); every layer MoE: `num_experts`
    routed SwiGLU experts of `intermediate_size` (fused gate_up_proj) and one shared MLP of the same
    width, behind a bias-free router, `moe_topk` experts per token. transformers builds every
    layer's experts from one count, so per-layer lists are read only when their values agree."""
    ffn = f.width("intermediate_size")
    experts = moe(f.required("num_hidden_layers"), lambda i: True, num_experts=_one_per_layer(f, "num_experts"),
                  top_k=_one_per_layer(f, "moe_topk"), expert_ffn=ffn, num_shared_experts=1, shared_ffn=ffn)
    return decoder(f, name, attention(f, bias=f.flag("attention_bias"), qk_norm="head"), ffn=ffn, moe=experts)


def _one_per_layer(f: Fields, key: str) -> int:
    """A count a config may give per layer, as one number (the same for every layer)."""
    value = f.get(key)
    if isinstance(value, list):
        if not value or any(v != value[0] for v in value):
            raise InputError(f"differs between layers ({value!r}); transformers builds every layer's experts"
                             " from one count, so give one number", field=key)
        value = value[0]
    return positive(key, value)


def deepseek(f: Fields, name: str) -> Architecture:
    """DeepSeek-V2/V3: MLA attention, dense-first layers, shared plus routed experts.

    transformers builds routed experts in every layer from `first_k_dense_replace` on and does
    not read `moe_layer_freq` (1 in every released config), so neither does this.
    """
    first_dense = f.count("first_k_dense_replace")
    return _mla_moe(f, name, tuple(i >= first_dense for i in range(f.required("num_hidden_layers"))))


def glm4_moe_lite(f: Fields, name: str) -> Architecture:
    """GLM-4.7-Flash (modeling_glm4_moe_lite.py): DeepSeek-V3's MLA, group-limited sigmoid router
    and shared plus routed experts, module for module; its MoE layers are those `mlp_layer_types`
    calls "sparse", all but the first when the config gives no list (Glm4MoeLiteConfig
    __post_init__ reads no `first_k_dense_replace`)."""
    return _mla_moe(f, name, _mlp_layer_kinds(f, lambda i: i > 0))


def _mla_moe(f: Fields, name: str, sparse: tuple[bool, ...]) -> Architecture:
    """DeepSeek's MLA attention and MoE MLPs, with routed experts in the layers `sparse` marks."""
    heads = f.required("num_attention_heads")
    rope = f.count("qk_rope_head_dim")
    bias = f.flag("attention_bias")
    kv_lora_rank = f.optional_int("kv_lora_rank")
    if kv_lora_rank is None:
        raise InputError("MLA compresses keys and values into a latent of this width; give it", field="kv_lora_rank")
    attn = Attention(
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=f.count("qk_nope_head_dim") + rope,
        v_head_dim=f.optional_int("v_head_dim"),
        qkv_bias=bias,
        out_bias=bias,
        q_lora_rank=f.optional_int("q_lora_rank"),
        kv_lora_rank=kv_lora_rank,
        qk_rope_head_dim=rope,
        qk_norm="latent",
    )
    expert_ffn = f.required("moe_intermediate_size")
    num_shared = f.count("n_shared_experts")
    v3 = f.model_type != "deepseek_v2"  # DeepSeek-V3 and the families built from its modules
    mlp_bias = False if v3 else f.flag("mlp_bias")  # V3 has no mlp_bias field
    # Group-limited routing: V3 always picks topk_group of n_group expert groups first
    # (transformers DeepseekV3TopkRouter), V2 only with topk_method group_limited_greedy.
    grouped = v3 or f.get("topk_method") == "group_limited_greedy"
    groups = (f.optional_int("n_group") or 1) if grouped else 1
    experts = moe(len(sparse), lambda i: sparse[i],
                  num_experts=f.count("n_routed_experts", "num_local_experts", "num_experts"),
                  top_k=f.optional_int("num_experts_per_tok"), expert_ffn=expert_ffn,
                  num_shared_experts=num_shared, shared_ffn=num_shared * expert_ffn,
                  shared_expert_bias=mlp_bias,
                  first_dense_layers=_leading_dense(sparse.__getitem__, len(sparse)),
                  route_groups=groups, route_group_topk=min(groups, f.optional_int("topk_group") or groups))
    # V3's MTP modules (num_mtp_layers in transformers) are counted apart.
    mtp = f.count("num_nextn_predict_layers", "num_mtp_layers") if v3 else 0
    return decoder(f, name, attn, moe=experts, mlp_bias=mlp_bias, mtp_layers=mtp)
