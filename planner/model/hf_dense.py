"""Readers of dense decoder families' config.json (transformers 5.24,
models/<type>/modeling_<type>.py): one function per family, config fields -> Architecture."""
from __future__ import annotations

from dataclasses import replace

from planner.model.architecture import Architecture, Attention
from planner.model.hf_fields import Fields, attention, decoder, rotary_dim


def llama(f: Fields, name: str) -> Architecture:
    """Llama, and Granite (modeling_granite.py: Llama's modules; embedding_multiplier,
    logits_scaling, residual_multiplier and attention_multiplier scale activations only)."""
    bias = f.flag("attention_bias")
    return decoder(f, name, attention(f, bias=bias), mlp_bias=f.flag("mlp_bias"))


def seed_oss(f: Fields, name: str) -> Architecture:
    """Seed-OSS (modeling_seed_oss.py): Llama's modules, biases on q, k and v by default
    (`attention_bias`) and on the output projection apart (`attention_out_bias`)."""
    attn = attention(f, bias=f.flag("attention_bias"), out_bias=f.flag("attention_out_bias"))
    return decoder(f, name, attn, mlp_bias=f.flag("mlp_bias"))


def smollm3(f: Fields, name: str) -> Architecture:
    """SmolLM3 (modeling_smollm3.py): Llama's modules; every `no_rope_layer_interval`-th layer
    skips RoPE, which holds no parameters and the models do not time apart."""
    return llama(f, name)


def ernie4_5(f: Fields, name: str) -> Architecture:
    """ERNIE 4.5 dense (modeling_ernie4_5.py): Llama's modules with one `use_bias` for every
    projection, attention and MLP alike."""
    bias = f.flag("use_bias")
    return decoder(f, name, attention(f, bias=bias), mlp_bias=bias)


def hunyuan_v1_dense(f: Fields, name: str) -> Architecture:
    """Hunyuan dense (modeling_hunyuan_v1_dense.py): Llama's modules, `attention_bias` on all four
    projections, and an RMSNorm over each query and key head (query_layernorm, key_layernorm)."""
    return decoder(f, name, attention(f, bias=f.flag("attention_bias"), qk_norm="head"))


def mistral(f: Fields, name: str) -> Architecture:
    return decoder(f, name, attention(f))


def phi3(f: Fields, name: str) -> Architecture:
    # Fused qkv_proj and gate_up_proj: the same parameters as the separate projections.
    return decoder(f, name, attention(f))


def qwen2(f: Fields, name: str) -> Architecture:
    return decoder(f, name, attention(f, bias=True, out_bias=False))


def qwen3(f: Fields, name: str) -> Architecture:
    return decoder(f, name, attention(f, bias=f.flag("attention_bias"), qk_norm="head"))


def gemma(f: Fields, name: str) -> Architecture:
    """Gemma 1/2/3: GeGLU; Gemma 2 and 3 norm before and after each sub-block; Gemma 3 also
    normalizes each query and key head."""
    qk_norm = "head" if f.model_type == "gemma3_text" else None
    norms = 2 if f.model_type == "gemma" else 4
    attn = attention(f, bias=f.flag("attention_bias"), qk_norm=qk_norm)
    return decoder(f, name, attn, norms_per_layer=norms)


def glm(f: Fields, name: str) -> Architecture:
    """GLM-4 (modeling_glm.py, GLM-4-9B) and GLM-4-0414 (modeling_glm4.py): GQA with biases on q, k
    and v (`attention_bias`), none on the output projection; RoPE on the first
    `partial_rotary_factor` (0.5) of each head; a SwiGLU MLP with one fused gate_up_proj (Phi-3's,
    the same parameters as gate and up apart). GLM-4-0414 also normalizes each sub-block's
    output (post_self_attn_layernorm, post_mlp_layernorm): four RMSNorms per layer."""
    attn = attention(f, bias=f.flag("attention_bias"), out_bias=False)
    attn = replace(attn, rotary_dim=rotary_dim(attn.head_dim, f.rotary_fraction("partial_rotary_factor")))
    return decoder(f, name, attn, norms_per_layer=4 if f.model_type == "glm4" else 2)


def olmo2(f: Fields, name: str) -> Architecture:
    """OLMo 2 and OLMo 3 (modeling_olmo2.py, modeling_olmo3.py: the same weights; OLMo 3's layers
    attend within `sliding_window` but every fourth, model/context.py)."""
    # Norms after attention and after the MLP (no input norm); q/k norms over whole projections.
    attn = attention(f, bias=f.flag("attention_bias"), qk_norm="projection")
    return decoder(f, name, attn)


def exaone4(f: Fields, name: str) -> Architecture:
    """EXAONE 4.0 (modeling_exaone4.py): OLMo 2's norms after attention and after the MLP, but
    an RMSNorm over each query and key head; no biases. Sliding-window layers but every
    `sliding_window_pattern`-th (model/context.py)."""
    return decoder(f, name, attention(f, qk_norm="head"))


def nemotron(f: Fields, name: str) -> Architecture:
    """Nemotron (modeling_nemotron.py): GQA with optional biases; a plain MLP, up_proj then
    squared ReLU then down_proj (two matrices); LayerNorm1P (a LayerNorm whose weight is stored
    minus one: weight and bias) before each sub-block and at the end; RoPE on the first
    `partial_rotary_factor` of each head."""
    f.required("num_key_value_heads")
    attn = attention(f, bias=f.flag("attention_bias"))
    rotary = rotary_dim(attn.head_dim, f.rotary_fraction("partial_rotary_factor"))
    attn = replace(attn, rotary_dim=rotary)
    return decoder(f, name, attn, gated_mlp=False, mlp_bias=f.flag("mlp_bias"), norm="layernorm")


def arcee(f: Fields, name: str) -> Architecture:
    """Arcee AFM (modeling_arcee.py): Llama's attention with `attention_bias` on all four
    projections, and a plain MLP, up_proj then `hidden_act` (squared ReLU by default) then
    down_proj, with `mlp_bias`."""
    attn = attention(f, bias=f.flag("attention_bias"))
    return decoder(f, name, attn, gated_mlp=False, mlp_bias=f.flag("mlp_bias"))


def apertus(f: Fields, name: str) -> Architecture:
    """Apertus (modeling_apertus.py): Llama's attention with `attention_bias` on all four
    projections and an RMSNorm over each query and key head; a plain MLP without biases, up_proj
    then xIELU (two learned scalars per layer, transformers activations.py `XIELUActivation`)
    then down_proj."""
    attn = attention(f, bias=f.flag("attention_bias"), qk_norm="head")
    return decoder(f, name, attn, gated_mlp=False)


def starcoder2(f: Fields, name: str) -> Architecture:
    """StarCoder2 (modeling_starcoder2.py): GQA and a plain GELU MLP (c_fc, c_proj) with one
    `use_bias` for every projection; LayerNorm with a bias before each sub-block and at the end;
    every layer attends within `sliding_window` when the config sets one (model/context.py)."""
    bias = f.flag("use_bias")
    return decoder(f, name, attention(f, bias=bias), gated_mlp=False, mlp_bias=bias, norm="layernorm")


def cohere(f: Fields, name: str) -> Architecture:
    """Command R and Command A (modeling_cohere.py, modeling_cohere2.py): attention and a SwiGLU MLP
    in parallel from one norm per layer (parallel residual); optional biases on all four attention
    projections (`attention_bias`); Command R's optional q/k norms (`use_qk_norm`) weigh every
    feature of every head, q_dim and kv_dim weights as a whole-projection norm's. Their
    CohereLayerNorm subtracts the mean but has no bias: the weight alone, as an RMSNorm's
    parameters. Command A's layers attend within `sliding_window` but every fourth
    (model/context.py); `logit_scale` scales activations only."""
    qk_norm = "projection" if f.model_type == "cohere" and f.flag("use_qk_norm") else None
    attn = attention(f, bias=f.flag("attention_bias"), qk_norm=qk_norm)
    return decoder(f, name, attn, norms_per_layer=1, parallel_residual=True)


def gpt_neox(f: Fields, name: str) -> Architecture:
    """GPT-NeoX/Pythia: fused query_key_value (3h, MHA only), LayerNorm, plain GELU MLP with
    biases, RoPE on the first `rotary_pct` of each head."""
    heads = f.required("num_attention_heads")
    hidden = f.required("hidden_size")
    bias = f.flag("attention_bias")
    head_dim = hidden // heads
    attn = Attention(num_heads=heads, num_kv_heads=heads, head_dim=head_dim, qkv_bias=bias,
                     out_bias=bias, rotary_dim=rotary_dim(head_dim, f.rotary_fraction("rotary_pct")))
    return decoder(f, name, attn, gated_mlp=False, mlp_bias=True, norm="layernorm",
                   parallel_residual=f.flag("use_parallel_residual"))


def gpt2(f: Fields, name: str) -> Architecture:
    """GPT-2 (and GPT-3 shapes): learned positions, LayerNorm, Conv1D with biases, 4h GELU MLP."""
    heads = f.required("n_head", "num_attention_heads")
    hidden = f.required("n_embd", "hidden_size")
    attn = Attention(num_heads=heads, num_kv_heads=heads, head_dim=hidden // heads,
                     qkv_bias=True, out_bias=True)
    return Architecture(
        name=name, family=f.model_type, hidden=hidden,
        num_layers=f.required("n_layer", "num_hidden_layers"), vocab=f.required("vocab_size"),
        ffn=f.optional_int("n_inner") or 4 * hidden, attention=attn, gated_mlp=False,
        mlp_activation=f.activation(), mlp_bias=True, norm="layernorm",
        tied_embeddings=f.flag("tie_word_embeddings"), position="learned",
        max_positions=f.count("n_positions", "max_position_embeddings"), residual_dropout=f.dropout(),
    )


def bloom(f: Fields, name: str) -> Architecture:
    """BLOOM (modeling_bloom.py; BloomConfig reads `n_embed` for hidden_size and maps
    num_hidden_layers/num_attention_heads to `n_layer`/`n_head`): ALiBi, no position embedding;
    a LayerNorm over the word embeddings; fused query_key_value (3h) and dense, both biased;
    a 4h GELU MLP with biases; LayerNorm before each sub-block and at the end; lm_head tied."""
    heads = f.required("n_head", "num_attention_heads")
    hidden = f.required("n_embed", "hidden_size")
    attn = Attention(num_heads=heads, num_kv_heads=heads, head_dim=hidden // heads,
                     qkv_bias=True, out_bias=True)
    return Architecture(
        name=name, family=f.model_type, hidden=hidden,
        num_layers=f.required("n_layer", "num_hidden_layers"), vocab=f.required("vocab_size"),
        ffn=4 * hidden, attention=attn, gated_mlp=False, mlp_activation=f.activation(),
        mlp_bias=True, norm="layernorm", embedding_norm=True,
        tied_embeddings=f.flag("tie_word_embeddings"), position="alibi", residual_dropout=f.dropout(),
    )


def falcon(f: Fields, name: str) -> Architecture:
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
    attn = Attention(num_heads=heads, num_kv_heads=kv_heads, head_dim=hidden // heads,
                     qkv_bias=bias, out_bias=bias)
    return Architecture(
        name=name, family=f.model_type, hidden=hidden, num_layers=f.required("num_hidden_layers"),
        vocab=f.required("vocab_size"), ffn=f.optional_int("ffn_hidden_size") or 4 * hidden,
        attention=attn, gated_mlp=False, mlp_activation=f.activation(), mlp_bias=bias,
        norm="layernorm", norms_per_layer=norms, parallel_residual=parallel,
        tied_embeddings=f.flag("tie_word_embeddings"),
        position="alibi" if f.flag("alibi") else "rope",
    )

