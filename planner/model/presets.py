"""Built-in models: one mapping of Hugging Face config.json fields per preset.

The shape fields are copied from each model's public config.json (as in
../shared/data/models.yaml and ../shared/tools/hf_param_count.py); fields left out take the
transformers class defaults. `gpt3-175b` is GPT-3 as the paper gives it (arXiv 2005.14165,
Table 2.1: 96 layers, d_model 12288, 96 heads, context 2048; GPT-2's 50257-token vocabulary,
tied, learned positions). `debug` and `debug-moe` are tiny models for fast tests.
"""
from __future__ import annotations

from planner.model.architecture import Architecture
from planner.model.hf_config import architecture_from_config
from planner.spec.errors import InputError, unknown_name

PRESETS: dict[str, dict] = {
    "debug": dict(model_type="llama", hidden_size=256, intermediate_size=704, num_hidden_layers=4,
                  num_attention_heads=8, num_key_value_heads=4, vocab_size=1024,
                  tie_word_embeddings=False),
    # DeepSeek-V3 in miniature: MLA with q LoRA, one dense-first layer, shared + routed experts, MTP.
    "debug-moe": dict(model_type="deepseek_v3", hidden_size=256, intermediate_size=704,
                      moe_intermediate_size=128, num_hidden_layers=4, first_k_dense_replace=1,
                      num_attention_heads=4, n_routed_experts=8, n_shared_experts=1,
                      num_experts_per_tok=2, q_lora_rank=128, kv_lora_rank=64,
                      qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32, vocab_size=1024,
                      num_nextn_predict_layers=1, tie_word_embeddings=False),
    "gpt2-small": dict(model_type="gpt2", vocab_size=50257, n_positions=1024, n_embd=768,
                       n_layer=12, n_head=12, tie_word_embeddings=True),
    "gpt2-medium": dict(model_type="gpt2", vocab_size=50257, n_positions=1024, n_embd=1024,
                        n_layer=24, n_head=16, tie_word_embeddings=True),
    "gpt2-large": dict(model_type="gpt2", vocab_size=50257, n_positions=1024, n_embd=1280,
                       n_layer=36, n_head=20, tie_word_embeddings=True),
    "gpt2-xl": dict(model_type="gpt2", vocab_size=50257, n_positions=1024, n_embd=1600,
                    n_layer=48, n_head=25, tie_word_embeddings=True),
    "gpt3-175b": dict(model_type="gpt2", vocab_size=50257, n_positions=2048, n_embd=12288,
                      n_layer=96, n_head=96, tie_word_embeddings=True),
    "llama2-7b": dict(model_type="llama", hidden_size=4096, intermediate_size=11008,
                      num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                      vocab_size=32000, tie_word_embeddings=False),
    "llama2-13b": dict(model_type="llama", hidden_size=5120, intermediate_size=13824,
                       num_hidden_layers=40, num_attention_heads=40, num_key_value_heads=40,
                       vocab_size=32000, tie_word_embeddings=False),
    "llama2-70b": dict(model_type="llama", hidden_size=8192, intermediate_size=28672,
                       num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=8,
                       vocab_size=32000, tie_word_embeddings=False),
    "llama3-8b": dict(model_type="llama", hidden_size=4096, intermediate_size=14336,
                      num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                      vocab_size=128256, tie_word_embeddings=False),
    "llama3-70b": dict(model_type="llama", hidden_size=8192, intermediate_size=28672,
                       num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=8,
                       vocab_size=128256, tie_word_embeddings=False),
    "llama3.1-405b": dict(model_type="llama", hidden_size=16384, intermediate_size=53248,
                          num_hidden_layers=126, num_attention_heads=128, num_key_value_heads=8,
                          vocab_size=128256, tie_word_embeddings=False),
    "llama3.2-1b": dict(model_type="llama", hidden_size=2048, intermediate_size=8192,
                        num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                        head_dim=64, vocab_size=128256, tie_word_embeddings=True),
    "llama3.2-3b": dict(model_type="llama", hidden_size=3072, intermediate_size=8192,
                        num_hidden_layers=28, num_attention_heads=24, num_key_value_heads=8,
                        head_dim=128, vocab_size=128256, tie_word_embeddings=True),
    "mistral-7b": dict(model_type="mistral", hidden_size=4096, intermediate_size=14336,
                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                       vocab_size=32000, tie_word_embeddings=False),
    "mixtral-8x7b": dict(model_type="mixtral", hidden_size=4096, intermediate_size=14336,
                         num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                         num_local_experts=8, num_experts_per_tok=2, vocab_size=32000,
                         tie_word_embeddings=False),
    "mixtral-8x22b": dict(model_type="mixtral", hidden_size=6144, intermediate_size=16384,
                          num_hidden_layers=56, num_attention_heads=48, num_key_value_heads=8,
                          num_local_experts=8, num_experts_per_tok=2, vocab_size=32768,
                          tie_word_embeddings=False),
    "grok-1": dict(model_type="grok-1", vocab_size=131072, hidden_size=6144,
                   intermediate_size=32768, num_hidden_layers=64, num_attention_heads=48,
                   num_key_value_heads=8, num_experts=8, num_experts_per_tok=2,
                   tie_word_embeddings=True),
    "qwen2-0.5b": dict(model_type="qwen2", vocab_size=151936, hidden_size=896,
                       intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                       num_key_value_heads=2, tie_word_embeddings=True),
    "qwen2-7b": dict(model_type="qwen2", vocab_size=152064, hidden_size=3584,
                     intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                     num_key_value_heads=4, tie_word_embeddings=False),
    "qwen1.5-moe-a2.7b": dict(model_type="qwen2_moe", vocab_size=151936, hidden_size=2048,
                              intermediate_size=5632, moe_intermediate_size=1408,
                              shared_expert_intermediate_size=5632, num_hidden_layers=24,
                              num_attention_heads=16, num_key_value_heads=16, num_experts=60,
                              num_experts_per_tok=4, decoder_sparse_step=1, mlp_only_layers=[],
                              tie_word_embeddings=False),
    "qwen3-0.6b": dict(model_type="qwen3", vocab_size=151936, hidden_size=1024,
                       intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                       num_key_value_heads=8, head_dim=128, tie_word_embeddings=True),
    "qwen3-1.7b": dict(model_type="qwen3", vocab_size=151936, hidden_size=2048,
                       intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                       num_key_value_heads=8, head_dim=128, tie_word_embeddings=True),
    "qwen3-4b": dict(model_type="qwen3", vocab_size=151936, hidden_size=2560,
                     intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=128, tie_word_embeddings=True),
    "qwen3-8b": dict(model_type="qwen3", vocab_size=151936, hidden_size=4096,
                     intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=128, tie_word_embeddings=False),
    "qwen3-32b": dict(model_type="qwen3", vocab_size=151936, hidden_size=5120,
                      intermediate_size=25600, num_hidden_layers=64, num_attention_heads=64,
                      num_key_value_heads=8, head_dim=128, tie_word_embeddings=False),
    "qwen3-30b-a3b": dict(model_type="qwen3_moe", hidden_size=2048, intermediate_size=6144,
                          moe_intermediate_size=768, num_hidden_layers=48,
                          num_attention_heads=32, num_key_value_heads=4, head_dim=128,
                          num_experts=128, num_experts_per_tok=8, decoder_sparse_step=1,
                          mlp_only_layers=[], vocab_size=151936, tie_word_embeddings=False),
    "qwen3-235b-a22b": dict(model_type="qwen3_moe", hidden_size=4096, intermediate_size=12288,
                            moe_intermediate_size=1536, num_hidden_layers=94,
                            num_attention_heads=64, num_key_value_heads=4, head_dim=128,
                            num_experts=128, num_experts_per_tok=8, decoder_sparse_step=1,
                            mlp_only_layers=[], vocab_size=151936, tie_word_embeddings=False),
    "deepseek-v2-lite": dict(model_type="deepseek_v2", vocab_size=102400, hidden_size=2048,
                             intermediate_size=10944, moe_intermediate_size=1408,
                             num_hidden_layers=27, first_k_dense_replace=1, moe_layer_freq=1,
                             num_attention_heads=16, num_key_value_heads=16, n_routed_experts=64,
                             n_shared_experts=2, num_experts_per_tok=6, n_group=1, topk_group=1,
                             topk_method="greedy", q_lora_rank=None, kv_lora_rank=512,
                             qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
                             tie_word_embeddings=False),
    # 61 main layers; the MTP module (num_nextn_predict_layers) is counted apart.
    "deepseek-v3": dict(model_type="deepseek_v3", hidden_size=7168, intermediate_size=18432,
                        moe_intermediate_size=2048, num_hidden_layers=61, first_k_dense_replace=3,
                        num_attention_heads=128, num_key_value_heads=128, n_routed_experts=256,
                        n_shared_experts=1, num_experts_per_tok=8, n_group=8, topk_group=4,
                        q_lora_rank=1536, kv_lora_rank=512, qk_rope_head_dim=64,
                        qk_nope_head_dim=128, v_head_dim=128, vocab_size=129280,
                        num_nextn_predict_layers=1, tie_word_embeddings=False),
    # Llama 4 text decoders (the vision encoder is not counted): 107.8B / 17.2B active and
    # 400.7B / 17.2B active, Meta's "109B" and "400B" with 17B active.
    "llama4-scout": dict(model_type="llama4_text", hidden_size=5120, intermediate_size=8192,
                         intermediate_size_mlp=16384, num_hidden_layers=48, num_attention_heads=40,
                         num_key_value_heads=8, head_dim=128, num_local_experts=16,
                         num_experts_per_tok=1, interleave_moe_layer_step=1, vocab_size=202048,
                         tie_word_embeddings=False),
    "llama4-maverick": dict(model_type="llama4_text", hidden_size=5120, intermediate_size=8192,
                            intermediate_size_mlp=16384, num_hidden_layers=48,
                            num_attention_heads=40, num_key_value_heads=8, head_dim=128,
                            num_local_experts=128, num_experts_per_tok=1,
                            interleave_moe_layer_step=2, vocab_size=202048,
                            tie_word_embeddings=False),
    # gpt-oss (OpenAI's gpt-oss-120b & gpt-oss-20b model card, 2025, Table 1: 116.83B and 20.91B
    # total; its 5.13B and 3.61B active leave out the input embedding, which this counts).
    "gpt-oss-20b": dict(model_type="gpt_oss", vocab_size=201088, hidden_size=2880,
                        intermediate_size=2880, num_hidden_layers=24, num_attention_heads=64,
                        num_key_value_heads=8, head_dim=64, num_local_experts=32,
                        num_experts_per_tok=4, attention_bias=True, tie_word_embeddings=False),
    "gpt-oss-120b": dict(model_type="gpt_oss", vocab_size=201088, hidden_size=2880,
                         intermediate_size=2880, num_hidden_layers=36, num_attention_heads=64,
                         num_key_value_heads=8, head_dim=64, num_local_experts=128,
                         num_experts_per_tok=4, attention_bias=True, tie_word_embeddings=False),
    "gemma-7b": dict(model_type="gemma", vocab_size=256000, hidden_size=3072,
                     intermediate_size=24576, num_hidden_layers=28, num_attention_heads=16,
                     num_key_value_heads=16, head_dim=256, tie_word_embeddings=True),
    "gemma2-9b": dict(model_type="gemma2", vocab_size=256000, hidden_size=3584,
                      intermediate_size=14336, num_hidden_layers=42, num_attention_heads=16,
                      num_key_value_heads=8, head_dim=256, tie_word_embeddings=True),
    "gemma3-1b": dict(model_type="gemma3_text", vocab_size=262144, hidden_size=1152,
                      intermediate_size=6912, num_hidden_layers=26, num_attention_heads=4,
                      num_key_value_heads=1, head_dim=256, tie_word_embeddings=True),
    "olmo2-7b": dict(model_type="olmo2", vocab_size=100352, hidden_size=4096,
                     intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=32, tie_word_embeddings=False),
    "pythia-6.9b": dict(model_type="gpt_neox", vocab_size=50432, hidden_size=4096,
                        intermediate_size=16384, num_hidden_layers=32, num_attention_heads=32,
                        rotary_pct=0.25, use_parallel_residual=True, tie_word_embeddings=False),
}


def list_presets() -> list[str]:
    return sorted(PRESETS)


def preset_config(name: str) -> dict:
    """A copy of the preset's config.json fields."""
    if name not in PRESETS:
        raise InputError(unknown_name("model preset", name, PRESETS), field="model")
    return dict(PRESETS[name])


def get_preset(name: str) -> Architecture:
    """The architecture of a preset."""
    return architecture_from_config(preset_config(name), name)
