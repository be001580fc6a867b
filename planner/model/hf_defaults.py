"""What a Hugging Face config.json leaves unsaid: each family's class defaults, its activation, and
the transformers classes that name a family in `architectures`.

Values are transformers 5.24's (models/<type>/configuration_<type>.py); grok-1 is hpcai-tech/grok-1
configuration_grok1.py, the Hugging Face port of xai-org/grok-1.
"""
from __future__ import annotations

from typing import Any

_LLAMA_DEFAULTS = {"num_key_value_heads": None, "head_dim": None, "tie_word_embeddings": False,
                   "attention_bias": False, "mlp_bias": False}
_OLMO_DEFAULTS = {"num_key_value_heads": None, "head_dim": None, "tie_word_embeddings": False,
                  "attention_bias": False}
_QWEN_MOE_RULE = {"decoder_sparse_step": 1, "mlp_only_layers": None}

# Class defaults of the optional fields each family reads.
# None: derived as transformers derives it (kv heads = heads, head_dim = hidden / heads).
DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": _LLAMA_DEFAULTS,
    # GraniteConfig: Llama's fields plus four multipliers, which scale activations only.
    "granite": _LLAMA_DEFAULTS,
    "mistral": {"num_key_value_heads": 8, "head_dim": None, "tie_word_embeddings": False},
    "ministral": {"num_key_value_heads": 8, "head_dim": None, "tie_word_embeddings": False},
    "ministral3": {"num_key_value_heads": 8, "head_dim": 128, "tie_word_embeddings": False},
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
                    "first_k_dense_replace": 0, "n_group": None, "topk_group": None, "topk_method": "greedy"},
    "deepseek_v3": {"tie_word_embeddings": False, "attention_bias": False,
                    "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
                    "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 256,
                    "n_shared_experts": 1, "num_experts_per_tok": 8, "moe_intermediate_size": 2048,
                    "first_k_dense_replace": 3, "num_nextn_predict_layers": 1, "n_group": 8, "topk_group": 4},
    "gemma": {"num_key_value_heads": 16, "head_dim": 256, "tie_word_embeddings": True,
              "attention_bias": False},
    "gemma2": {"num_key_value_heads": 4, "head_dim": 256, "tie_word_embeddings": True,
               "attention_bias": False},
    "gemma3_text": {"num_key_value_heads": 4, "head_dim": 256, "tie_word_embeddings": True,
                    "attention_bias": False},
    "olmo2": _OLMO_DEFAULTS,
    # Olmo3Config: OLMo 2's fields, and sliding-window layers (model/context.py).
    "olmo3": _OLMO_DEFAULTS,
    "gpt_neox": {"tie_word_embeddings": False, "attention_bias": True,
                 "use_parallel_residual": True, "rotary_pct": 0.25},
    "phi3": {"num_key_value_heads": None, "head_dim": None, "tie_word_embeddings": False},
    "llama4_text": {"num_key_value_heads": 8, "head_dim": 128, "tie_word_embeddings": False,
                    "attention_bias": False, "intermediate_size_mlp": 16384, "num_local_experts": 16,
                    "num_experts_per_tok": 1, "moe_layers": None, "interleave_moe_layer_step": 1},
    "gpt2": {"n_inner": None, "n_positions": 1024, "tie_word_embeddings": True},
    "gpt_oss": {"num_key_value_heads": 8, "head_dim": 64, "tie_word_embeddings": False,
                "attention_bias": True, "num_local_experts": 128, "num_experts_per_tok": 4},
    "grok-1": {"num_key_value_heads": 8, "head_dim": None, "tie_word_embeddings": True,
               "num_experts": 8, "num_experts_per_tok": 2},
    "falcon": {"num_kv_heads": None, "ffn_hidden_size": None, "tie_word_embeddings": True,
               "bias": False, "new_decoder_architecture": False, "multi_query": True,
               "parallel_attn": True, "num_ln_in_parallel_attn": None, "alibi": False},
    # NemotronConfig: num_key_value_heads defaults to None, which NemotronAttention cannot build
    # with (heads // None), so the reader requires it.
    "nemotron": {"head_dim": None, "tie_word_embeddings": False, "attention_bias": False,
                 "mlp_bias": False, "partial_rotary_factor": 0.5},
    "minimax_m2": {"num_key_value_heads": 8, "head_dim": 128, "tie_word_embeddings": False,
                   "num_local_experts": 256, "num_experts_per_tok": 8, "rotary_dim": None,
                   "partial_rotary_factor": 1.0},
    "bloom": {"tie_word_embeddings": True},
    "arcee": _LLAMA_DEFAULTS,
    # OlmoeAttention: head_dim is hidden_size / heads whatever the config says (q_norm spans hidden_size).
    "olmoe": {"num_key_value_heads": None, "head_dim": None, "tie_word_embeddings": False, "attention_bias": False,
              "num_experts": 64, "num_experts_per_tok": 8},
    "apertus": {"num_key_value_heads": None, "head_dim": None, "tie_word_embeddings": False,
                "attention_bias": False},
    "ernie4_5_moe": {"num_key_value_heads": 4, "head_dim": None, "tie_word_embeddings": True, "use_bias": False,
                     "intermediate_size": 12288, "moe_intermediate_size": 1536, "moe_k": 6, "moe_num_experts": 64,
                     "moe_num_shared_experts": 2, "moe_layer_start_index": 1, "moe_layer_end_index": -1,
                     "moe_layer_interval": 1},
    "hunyuan_v1_moe": {"num_key_value_heads": None, "head_dim": None, "tie_word_embeddings": False,
                       "attention_bias": False, "intermediate_size": 11008, "num_experts": 1, "moe_topk": 1},
    "exaone4": {"num_key_value_heads": 32, "head_dim": None, "tie_word_embeddings": False},
    "seed_oss": {"num_key_value_heads": 8, "head_dim": 128, "tie_word_embeddings": False,
                 "attention_bias": True, "attention_out_bias": False, "mlp_bias": False},
    "smollm3": {"num_key_value_heads": 4, "head_dim": None, "tie_word_embeddings": True,
                "attention_bias": False, "mlp_bias": False},
    "ernie4_5": {"num_key_value_heads": 2, "head_dim": 128, "tie_word_embeddings": True, "use_bias": False},
    "hunyuan_v1_dense": {"num_key_value_heads": None, "head_dim": None, "tie_word_embeddings": False,
                         "attention_bias": False},
    # The text decoders of multimodal models (their *TextConfig classes); whether the output layer
    # is tied is the multimodal class's (hf_config.MULTIMODAL).
    "qwen2_5_vl_text": {"num_key_value_heads": 8, "head_dim": None, "tie_word_embeddings": False},
    "qwen3_vl_text": {"num_key_value_heads": 32, "head_dim": 128, "tie_word_embeddings": False,
                      "attention_bias": False},
    "qwen3_vl_moe_text": {"num_key_value_heads": 16, "head_dim": None, "tie_word_embeddings": True,
                          "attention_bias": False, "num_experts": 60, "num_experts_per_tok": 4,
                          "moe_intermediate_size": 1408, **_QWEN_MOE_RULE},
    # Glm4vMoeTextConfig: GLM-4.5's decoder without q/k norms or MTP layers; partial_rotary_factor
    # 0.5 set in __post_init__.
    "glm4v_moe_text": {"num_key_value_heads": 8, "head_dim": None, "tie_word_embeddings": False,
                       "attention_bias": True, "use_qk_norm": False, "partial_rotary_factor": 0.5,
                       "intermediate_size": 10944, "moe_intermediate_size": 1408, "n_routed_experts": 128,
                       "n_shared_experts": 1, "num_experts_per_tok": 8, "first_k_dense_replace": 1,
                       "n_group": 1, "topk_group": 1, "num_nextn_predict_layers": 0},
    "starcoder2": {"num_key_value_heads": 2, "head_dim": None, "tie_word_embeddings": True, "use_bias": True},
    "cohere": {"num_key_value_heads": None, "head_dim": None, "tie_word_embeddings": True, "attention_bias": False,
               "use_qk_norm": False},
    "cohere2": {"num_key_value_heads": None, "head_dim": None, "tie_word_embeddings": True, "attention_bias": False},
    "granitemoe": {"num_key_value_heads": None, "head_dim": None, "tie_word_embeddings": False,
                   "attention_bias": False, "num_local_experts": 8, "num_experts_per_tok": 2},
    "granitemoeshared": {"num_key_value_heads": None, "head_dim": None, "tie_word_embeddings": False,
                         "attention_bias": False, "num_local_experts": 8, "num_experts_per_tok": 2,
                         "shared_intermediate_size": 0},
    "phimoe": {"num_key_value_heads": 8, "head_dim": None, "tie_word_embeddings": False, "attention_bias": False,
               "lm_head_bias": False, "num_local_experts": 16, "num_experts_per_tok": 2},
    # GlmConfig and Glm4Config: partial_rotary_factor 0.5 is set in __post_init__ when the config
    # gives none.
    "glm": {"num_key_value_heads": 2, "head_dim": 128, "tie_word_embeddings": False,
            "attention_bias": True, "partial_rotary_factor": 0.5},
    "glm4": {"num_key_value_heads": 2, "head_dim": 128, "tie_word_embeddings": False,
             "attention_bias": True, "partial_rotary_factor": 0.5},
    # Glm4MoeConfig: partial_rotary_factor 0.5 is set in __post_init__ when the config gives none.
    "glm4_moe": {"num_key_value_heads": 8, "head_dim": None, "tie_word_embeddings": False,
                 "attention_bias": False, "use_qk_norm": False, "partial_rotary_factor": 0.5,
                 "intermediate_size": 10944, "moe_intermediate_size": 1408, "n_routed_experts": 128,
                 "n_shared_experts": 1, "num_experts_per_tok": 8, "first_k_dense_replace": 1,
                 "n_group": 1, "topk_group": 1, "num_nextn_predict_layers": 1},
    "glm4_moe_lite": {"tie_word_embeddings": False, "attention_bias": False, "intermediate_size": 10240,
                      "q_lora_rank": 768, "kv_lora_rank": 512, "qk_nope_head_dim": 192, "qk_rope_head_dim": 64,
                      "v_head_dim": 256, "n_routed_experts": 64, "n_shared_experts": 1, "num_experts_per_tok": 4,
                      "moe_intermediate_size": 1536, "n_group": 1, "topk_group": 1, "num_nextn_predict_layers": 0,
                      "mlp_layer_types": None},
    "dots1": {"num_key_value_heads": None, "head_dim": None, "tie_word_embeddings": False, "attention_bias": False,
              "intermediate_size": 10944, "moe_intermediate_size": 1408, "n_routed_experts": None,
              "n_shared_experts": None, "num_experts_per_tok": None, "first_k_dense_replace": 0, "n_group": 1,
              "topk_group": 1},
    "solar_open": {"num_key_value_heads": 8, "head_dim": 128, "tie_word_embeddings": False, "attention_bias": False,
                   "partial_rotary_factor": 1.0, "moe_intermediate_size": 1280, "n_routed_experts": 128,
                   "n_shared_experts": 1, "num_experts_per_tok": 8, "n_group": 1, "topk_group": 1},
    "exaone_moe": {"num_key_value_heads": 32, "head_dim": None, "tie_word_embeddings": False,
                   "intermediate_size": 16384, "moe_intermediate_size": 1024, "num_experts": 64,
                   "num_shared_experts": 1, "num_experts_per_tok": 8, "first_k_dense_replace": 1,
                   "mlp_layer_types": None, "n_group": 1, "topk_group": 1},
    # Mistral Small 4 (Mistral4Config): DeepSeek-V3's modules; no MTP modules in the class.
    "mistral4": {"tie_word_embeddings": False, "attention_bias": False, "q_lora_rank": 1024, "kv_lora_rank": 256,
                 "qk_nope_head_dim": 64, "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 128,
                 "n_shared_experts": 1, "num_experts_per_tok": 4, "moe_intermediate_size": 2048,
                 "first_k_dense_replace": 0, "n_group": 1, "topk_group": 1, "num_nextn_predict_layers": 0},
}

# The config field naming the MLP activation and its class default (ACT2FN names,
# activations.py). A None field: the modeling file fixes the activation whatever the config says.
ACTIVATIONS: dict[str, tuple[str | None, str]] = {
    **{family: ("hidden_act", "silu") for family in DEFAULTS},
    "gemma": ("hidden_act", "gelu_pytorch_tanh"),
    "gemma2": ("hidden_activation", "gelu_pytorch_tanh"),
    "gemma3_text": ("hidden_activation", "gelu_pytorch_tanh"),
    "gpt_neox": ("hidden_act", "gelu"),
    "gpt2": ("activation_function", "gelu_new"),
    "falcon": ("activation", "gelu"),
    "nemotron": ("hidden_act", "relu2"),
    "arcee": ("hidden_act", "relu2"),
    # modeling_apertus.py ApertusMLP: `hidden_act` names it, and "xielu" builds XIELUActivation.
    "apertus": ("hidden_act", "xielu"),
    # modeling_gpt_oss.py GptOssExperts: (up + 1) * gate * sigmoid(1.702 gate), both clamped at 7.
    "gpt_oss": (None, "sigmoid_glu_clamped"),
    # xai-org/grok-1 model.py: gelu(linear(x)) * linear_v(x).
    "grok-1": (None, "gelu"),
    # modeling_bloom.py BloomGelu: the tanh approximation of GELU.
    "bloom": (None, "bloom_gelu"),
    "starcoder2": ("hidden_act", "gelu_pytorch_tanh"),
}

# The config field of the dropout transformers applies to each half's output (two per layer), and
# its class default: modeling_<type>.py (Seed-OSS, StarCoder2: residual_dropout; GPT-2, Phi-3:
# resid_pdrop; BLOOM, GPT-NeoX: hidden_dropout).
DROPOUT: dict[str, tuple[str, float]] = {
    "seed_oss": ("residual_dropout", 0.1), "gpt2": ("resid_pdrop", 0.1), "starcoder2": ("residual_dropout", 0.0),
    "phi3": ("resid_pdrop", 0.0), "bloom": ("hidden_dropout", 0.0), "gpt_neox": ("hidden_dropout", 0.0),
}

# transformers model classes (config.json `architectures`) and the reader of their weights.
# Checkpoints with their own model_type and code often reuse one: Kimi-K2 ships
# `model_type: kimi_k2` with `architectures: [DeepseekV3ForCausalLM]`.
ARCHITECTURE_CLASSES: dict[str, str] = {
    "LlamaForCausalLM": "llama", "GraniteForCausalLM": "granite",
    "MistralForCausalLM": "mistral", "MixtralForCausalLM": "mixtral", "Phi3ForCausalLM": "phi3",
    "Qwen2ForCausalLM": "qwen2", "Qwen2MoeForCausalLM": "qwen2_moe",
    "Qwen3ForCausalLM": "qwen3", "Qwen3MoeForCausalLM": "qwen3_moe",
    "DeepseekV2ForCausalLM": "deepseek_v2", "DeepseekV3ForCausalLM": "deepseek_v3",
    "GemmaForCausalLM": "gemma", "Gemma2ForCausalLM": "gemma2", "Gemma3ForCausalLM": "gemma3_text",
    "Olmo2ForCausalLM": "olmo2", "Olmo3ForCausalLM": "olmo3", "GPTNeoXForCausalLM": "gpt_neox",
    "GPT2LMHeadModel": "gpt2",
    "FalconForCausalLM": "falcon", "GptOssForCausalLM": "gpt_oss",
    "Llama4ForCausalLM": "llama4_text", "Grok1ModelForCausalLM": "grok-1",
    "NemotronForCausalLM": "nemotron", "MiniMaxM2ForCausalLM": "minimax_m2",
    "ArceeForCausalLM": "arcee", "ApertusForCausalLM": "apertus", "OlmoeForCausalLM": "olmoe",
    "BloomForCausalLM": "bloom", "Glm4MoeForCausalLM": "glm4_moe", "SeedOssForCausalLM": "seed_oss",
    "SmolLM3ForCausalLM": "smollm3", "Ernie4_5ForCausalLM": "ernie4_5",
    "HunYuanDenseV1ForCausalLM": "hunyuan_v1_dense", "Exaone4ForCausalLM": "exaone4",
    "Ernie4_5_MoeForCausalLM": "ernie4_5_moe", "HunYuanMoEV1ForCausalLM": "hunyuan_v1_moe",
    "GlmForCausalLM": "glm", "Glm4ForCausalLM": "glm4", "Starcoder2ForCausalLM": "starcoder2",
    "PhimoeForCausalLM": "phimoe", "GraniteMoeForCausalLM": "granitemoe",
    "GraniteMoeSharedForCausalLM": "granitemoeshared", "CohereForCausalLM": "cohere", "Cohere2ForCausalLM": "cohere2",
    "Glm4MoeLiteForCausalLM": "glm4_moe_lite", "MinistralForCausalLM": "ministral",
    "Ministral3ForCausalLM": "ministral3", "Mistral4ForCausalLM": "mistral4", "Dots1ForCausalLM": "dots1",
    "SolarOpenForCausalLM": "solar_open", "ExaoneMoeForCausalLM": "exaone_moe",
}
