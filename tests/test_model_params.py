"""Exact parameter counts against transformers' own counts (tests/data/models.yaml and below)."""
from pathlib import Path

import pytest
import yaml

from planner.model import (
    architecture_from_config,
    count_params,
    embedding_params,
    get_preset,
    layer_kinds,
    layer_params,
    list_presets,
    load_architecture,
    lora_params,
    output_params,
)
from planner.spec.errors import InputError

MODELS = yaml.safe_load((Path(__file__).parent / "data" / "models.yaml").read_text())["models"]


def _arch(entry):
    return architecture_from_config(entry["config"], entry["name"])


@pytest.mark.parametrize("entry", MODELS, ids=lambda e: e["name"])
def test_total_and_active_match_transformers(entry):
    counted = count_params(_arch(entry))
    assert (counted.total, counted.active) == (entry["measured"]["total"], entry["measured"]["active"])


# Entries whose name-based buckets are clean (no 'other'): every component must match too.
CLEAN = [e for e in MODELS if "other" not in e["measured"]["by_component"]]


@pytest.mark.parametrize("entry", CLEAN, ids=lambda e: e["name"])
def test_components_match_transformers(entry):
    counted = count_params(_arch(entry))
    assert counted.by_component == entry["measured"]["by_component"]
    assert counted.embedding == entry["measured"]["embedding"]


@pytest.mark.parametrize("entry", [e for e in MODELS if e["config"]["model_type"] == "gpt2"],
                         ids=lambda e: e["name"])
def test_gpt2_other_bucket_is_positions_and_layernorms(entry):
    # models.yaml: other = learned position embedding wpe + LayerNorms ln_1/ln_2/ln_f.
    counted = count_params(_arch(entry)).by_component
    assert counted["position_embedding"] + counted["norms"] == entry["measured"]["by_component"]["other"]
    assert counted["embedding"] == entry["measured"]["embedding"]


def test_pythia_input_embedding_is_the_other_bucket():
    # models.yaml: its bucketing misses gpt_neox.embed_in, printed as other (and embedding 0).
    entry = next(e for e in MODELS if e["name"] == "pythia-6.9b")
    assert count_params(_arch(entry)).embedding == entry["measured"]["by_component"]["other"]


@pytest.mark.parametrize("entry", [e for e in MODELS if e["name"] in list_presets()],
                         ids=lambda e: e["name"])
def test_presets_are_the_published_configs(entry):
    assert get_preset(entry["name"]) == _arch(entry)


@pytest.mark.parametrize("name, total, active", [
    ("llama3-8b", 8_030_261_248, 8_030_261_248),
    ("llama3.1-405b", 405_853_388_800, 405_853_388_800),
    ("mistral-7b", 7_241_732_096, 7_241_732_096),
    ("deepseek-v3", 671_026_404_352, 37_552_282_624),  # transformers meta-device count, without MTP
    # Text decoders measured with validation/memory/tools/hf_param_count.py (Meta: 109B and 400B, 17B active).
    ("llama4-scout", 107_769_861_120, 17_172_894_720),
    ("llama4-maverick", 400_711_848_960, 17_184_691_200),
    ("gpt-oss-20b", 20_914_757_184, 4_187_440_704),
    ("gpt-oss-120b", 116_829_156_672, 5_711_982_912),
    # transformers 5.24 meta-device counts of tests/data/configs/<name>.json (kimi-k2 built as
    # DeepseekV3ForCausalLM, the class its config names).
    ("nemotron-4-15b", 15_628_775_424, 15_628_775_424),
    ("minimax-m2", 228_689_748_992, 11_030_537_216),
    ("kimi-k2", 1_026_408_209_408, 32_861_477_888),
    # transformers 5.25 meta-device counts of tests/data/configs/glm-4.5*.json (no MTP module built).
    ("glm-4.5", 352_797_814_784, 33_632_251_904),
    ("glm-4.5-air", 106_852_245_504, 13_424_123_904),
    ("bloom-560m", 559_214_592, 559_214_592),
    ("bloom-176b", 176_247_271_424, 176_247_271_424),
])
def test_preset_counts(name, total, active):
    counted = count_params(get_preset(name))
    assert (counted.total, counted.active) == (total, active)


@pytest.mark.parametrize("name, card_total, card_active", [("glm-4.5", 355e9, 32e9), ("glm-4.5-air", 106e9, 12e9)])
def test_glm_model_cards(name, card_total, card_active):
    # zai-org's model cards round to the billion: 32B (12B) active are the active count without
    # the input embedding and the output layer; 355B (106B) total is within 1% of the count
    # without the MTP layer.
    counted = count_params(get_preset(name))
    embeddings = counted.by_component["embedding"] + counted.by_component["lm_head"]
    assert round((counted.active - embeddings) / 1e9) == card_active / 1e9
    assert counted.total == pytest.approx(card_total, rel=0.01)


@pytest.mark.parametrize("name, card_total, card_active", [("gpt-oss-20b", 20.91e9, 3.61e9),
                                                           ("gpt-oss-120b", 116.83e9, 5.13e9)])
def test_gpt_oss_model_card(name, card_total, card_active):
    # The model card's Table 1 rounds to 10M and counts active parameters without the input embedding.
    counted = count_params(get_preset(name))
    assert round(counted.total, -7) == card_total
    assert round(counted.active - counted.embedding, -7) == card_active


def test_gpt_oss_layer_has_sinks_and_biased_experts_and_router():
    # Per layer (modeling_gpt_oss.py): q/k/v/o with biases, 64 sinks; 32 experts of
    # gate_up_proj (h x 2f) + bias (2f) and down_proj (f x h) + bias (h); router weight and bias.
    h, f, experts = 2880, 2880, 32
    layer = layer_params(get_preset("gpt-oss-20b"), 0)
    assert layer.attention == (h * 64 * 64 + 64 * 64) + 2 * (h * 8 * 64 + 8 * 64) + (64 * 64 * h + h) + 64
    assert layer.per_expert == h * 2 * f + 2 * f + f * h + h
    assert layer.router == experts * h + experts


CONFIGS = Path(__file__).parent / "data" / "configs"
# transformers 5.24 + torch 2.13 (CPU), AutoModelForCausalLM.from_config on the meta device,
# named_parameters() counted with tied tensors once (the quantization_config left out, and
# kimi-k2 built as the DeepseekV3ForCausalLM its architectures name).
META_COUNTS = {
    "nemotron-4-15b.json": (15_628_775_424, 15_628_775_424, {
        "attention": 2_818_572_288, "dense_mlp": 9_663_676_416, "embedding": 1_572_864_000,
        "lm_head": 1_572_864_000, "norms": 798_720}),
    "minimax-m2.json": (228_689_748_992, 11_030_537_216, {
        "attention": 2_730_491_904, "embedding": 614_596_608, "lm_head": 614_596_608,
        "norms": 828_416, "routed_experts": 224_680_476_672, "router": 48_758_784}),
    "kimi-k2.json": (1_026_408_209_408, 32_861_477_888, {
        "attention": 6_168_444_928, "dense_mlp": 396_361_728, "embedding": 1_174_405_120,
        "lm_head": 1_174_405_120, "norms": 1_006_592, "routed_experts": 1_014_686_023_680,
        "router": 165_150_720, "shared_experts": 2_642_411_520}),
    "deepseek-v3.json": (671_026_404_352, 37_552_282_624, None),
    # transformers 5.25.
    "glm-4.5.json": (352_797_814_784, 33_632_251_904, None),
    "glm-4.5-air.json": (106_852_245_504, 13_424_123_904, None),
    "gpt-oss-20b.json": (20_914_757_184, 4_187_440_704, {
        "attention": 637_203_456, "embedding": 579_133_440, "lm_head": 579_133_440, "norms": 141_120,
        "routed_experts": 19_116_933_120, "router": 2_212_608}),
    # BLOOM: the meta count's name buckets put ln_f (2h) in other and word_embeddings_layernorm
    # in norms.
    "bloom-560m.json": (559_214_592, 559_214_592, None),
    "bloom-176b.json": (176_247_271_424, 176_247_271_424, None),
}


@pytest.mark.parametrize("file, total, active, components", [(f, *v) for f, v in META_COUNTS.items()],
                         ids=list(META_COUNTS))
def test_config_fixtures_match_transformers(file, total, active, components):
    counted = count_params(architecture_from_config(yaml.safe_load((CONFIGS / file).read_text()), file))
    assert (counted.total, counted.active) == (total, active)
    if components:
        assert counted.by_component == components


@pytest.mark.parametrize("name, published", [("bloom-560m", 559_214_592), ("bloom-176b", 176_247_271_424)])
def test_bloom_model_cards(name, published):
    # bigscience/bloom-560m and bigscience/bloom model cards state these exact totals.
    assert count_params(get_preset(name)).total == published


def test_bloom_layer_by_hand():
    # modeling_bloom.py: query_key_value (h x 3h + 3h), dense (h x h + h), dense_h_to_4h
    # (h x 4h + 4h), dense_4h_to_h (4h x h + h), two LayerNorms (2h each); word embeddings,
    # their LayerNorm and ln_f; lm_head tied.
    h, layers, vocab = 1024, 24, 250880
    layer = 3 * h * h + 3 * h + h * h + h + 4 * h * h + 4 * h + 4 * h * h + h + 2 * 2 * h
    assert count_params(get_preset("bloom-560m")).total == layers * layer + vocab * h + 2 * h + 2 * h


def test_nemotron_matches_its_paper():
    # Nemotron-4 15B (arXiv 2402.16819, §2): 12.5B non-embedding parameters. (Its 3.2B embedding
    # figure is above the untied 2 x 256,000 x 6144 = 3.15B that transformers builds.)
    counted = count_params(get_preset("nemotron-4-15b"))
    embeddings = counted.by_component["embedding"] + counted.by_component["lm_head"]
    assert embeddings == 2 * 256_000 * 6144
    assert round((counted.total - embeddings) / 1e9, 1) == 12.5
    # Per layer: q (h x 6144), k and v (h x 1024), o (6144 x h), up and down (h x 4h), two
    # LayerNorm1P of weight and bias: no gate matrix.
    h = 6144
    assert layer_params(get_preset("nemotron-4-15b"), 0).total == \
        2 * h * 6144 + 2 * h * 1024 + 2 * h * 4 * h + 2 * 2 * h


def test_minimax_m2_by_hand_gives_the_published_total():
    # MiniMax-M2 (MiniMaxAI/MiniMax-M2 config.json, modeling_minimax_m2.py): per layer q (h x 6144),
    # k and v (h x 1024), o (6144 x h), q_norm 6144 and k_norm 1024, two RMSNorms h, 256 SwiGLU
    # experts of 3 x h x 1536, router 256 x h; untied embedding and lm_head, final norm.
    # The model card states 228.69B parameters.
    h, layers, vocab, experts, ffn = 3072, 62, 200064, 256, 1536
    layer = 2 * h * 6144 + 2 * h * 1024 + 6144 + 1024 + 2 * h + experts * 3 * h * ffn + experts * h
    total = layers * layer + 2 * vocab * h + h
    assert total == 228_689_748_992 == count_params(get_preset("minimax-m2")).total
    assert round(total / 1e9, 2) == 228.69


def test_gpt3_175b_from_the_paper_shape():
    # 96 x (12h^2 + 13h) + V h + 2048 h + 2h with h = 12288, V = 50257 (GPT-2 layout, tied):
    # GPT-3 paper Table 2.1 rounds it to 175.0B.
    h, layers, vocab, positions = 12288, 96, 50257, 2048
    expected = layers * (12 * h * h + 13 * h) + vocab * h + positions * h + 2 * h
    assert expected == 174_604_259_328
    assert count_params(get_preset("gpt3-175b")).total == expected


def test_deepseek_v3_router_bias_is_a_buffer_and_mtp_is_apart():
    counted = count_params(get_preset("deepseek-v3"))
    # 58 MoE layers x 256 experts x 7168: the router weight only; transformers counts the
    # e_score_correction_bias (58 x 256 = 14,848) among buffers, not parameters.
    assert counted.by_component["router"] == 58 * 256 * 7168
    # One MTP module: eh_proj (2h x h) + enorm, hnorm, head norm + one MoE block, whose parts are
    # the per-layer shares of the measured components (attention over 61 layers, experts over 58).
    h = 7168
    block = (11_413_422_080 // 61 + 653_908_770_816 // 58 + 2_554_331_136 // 58
             + 106_430_464 // 58 + 2 * h + 1536 + 512)
    assert counted.mtp == 2 * h * h + 3 * h + block == 11_610_067_968


# Synthetic configs (odd sizes, biases, defaults left out, MLA with/without q LoRA, sparse steps,
# mlp-only and dense-first layers, Falcon variants), measured with
# validation/memory/tools/hf_param_count.py (transformers 5.24.0, torch 2.13.0, meta device).
SYNTHETIC = [
    ({"model_type": "llama", "vocab_size": 1000, "hidden_size": 96, "intermediate_size": 200, "num_hidden_layers": 3,
      "num_attention_heads": 6, "num_key_value_heads": 2, "head_dim": 24, "attention_bias": True, "mlp_bias": True,
      "tie_word_embeddings": True}, 382560, 382560),
    # MistralConfig and Qwen2Config default to 8 and 32 key/value heads, more than these 4 heads (which
    # transformers builds but cannot run: repeat_kv needs heads / kv heads >= 1); with kv heads = heads,
    # k_proj and v_proj are 64 x 64 (+ 64 bias in Qwen2) instead of 64 x 128 and 64 x 512 (+ 512).
    ({"model_type": "mistral", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150, "num_hidden_layers": 2,
      "num_attention_heads": 4, "num_key_value_heads": 4}, 235072 - 2 * 2 * 64 * 64, 235072 - 2 * 2 * 64 * 64),
    ({"model_type": "qwen2", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150, "num_hidden_layers": 2,
      "num_attention_heads": 4, "num_key_value_heads": 4}, 335552 - 2 * 2 * (64 * 448 + 448),
     335552 - 2 * 2 * (64 * 448 + 448)),
    ({"model_type": "qwen2_moe", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150,
      "moe_intermediate_size": 40, "shared_expert_intermediate_size": 0, "num_hidden_layers": 5,
      "num_attention_heads": 4, "num_key_value_heads": 2, "num_experts": 6, "num_experts_per_tok": 2,
      "decoder_sparse_step": 2, "mlp_only_layers": [3], "qkv_bias": False}, 351872, 321152),
    ({"model_type": "qwen3_moe", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150,
      "moe_intermediate_size": 40, "num_hidden_layers": 6, "num_attention_heads": 4, "num_key_value_heads": 2,
      "head_dim": 32, "num_experts": 8, "num_experts_per_tok": 3, "decoder_sparse_step": 3, "mlp_only_layers": [0, 5],
      "attention_bias": True, "tie_word_embeddings": True}, 420544, 382144),
    ({"model_type": "deepseek_v2", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150,
      "moe_intermediate_size": 30, "num_hidden_layers": 4, "first_k_dense_replace": 2, "num_attention_heads": 4,
      "n_routed_experts": 5, "n_shared_experts": 3, "num_experts_per_tok": 2, "q_lora_rank": None, "kv_lora_rank": 24,
      "qk_nope_head_dim": 12, "qk_rope_head_dim": 8, "v_head_dim": 10, "attention_bias": True, "mlp_bias": True},
     328032, 293472),
    ({"model_type": "deepseek_v3", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150,
      "moe_intermediate_size": 30, "num_hidden_layers": 4, "first_k_dense_replace": 1, "num_attention_heads": 4,
      "n_routed_experts": 8, "n_shared_experts": 0, "num_experts_per_tok": 2, "n_group": 1, "topk_group": 1,
      "q_lora_rank": 20, "kv_lora_rank": 24, "qk_nope_head_dim": 12, "qk_rope_head_dim": 8, "v_head_dim": 10,
      "tie_word_embeddings": True}, 271728, 168048),
    ({"model_type": "gemma2", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150, "num_hidden_layers": 3,
      "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "tie_word_embeddings": False},
     252096, 252096),
    ({"model_type": "gemma3_text", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150,
      "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 32,
      "attention_bias": True}, 213632, 213632),
    ({"model_type": "olmo2", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150, "num_hidden_layers": 2,
      "num_attention_heads": 8, "num_key_value_heads": 2, "attention_bias": True}, 206880, 206880),
    ({"model_type": "gpt_neox", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150,
      "num_hidden_layers": 2, "num_attention_heads": 4, "attention_bias": False, "tie_word_embeddings": True},
     136236, 136236),
    ({"model_type": "phi3", "vocab_size": 1000, "hidden_size": 96, "intermediate_size": 150, "num_hidden_layers": 2,
      "num_attention_heads": 6, "num_key_value_heads": 3, "pad_token_id": None}, 334176, 334176),
    ({"model_type": "llama4_text", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 40,
      "intermediate_size_mlp": 150, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
      "head_dim": 16, "num_local_experts": 5, "num_experts_per_tok": 2, "moe_layers": [0, 3],
      "attention_bias": True}, 328896, 282816),
    ({"model_type": "llama4_text", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 40,
      "intermediate_size_mlp": 150, "num_hidden_layers": 5, "num_attention_heads": 4, "num_key_value_heads": 2,
      "head_dim": 16, "num_local_experts": 5, "num_experts_per_tok": 2, "interleave_moe_layer_step": 2},
     369344, 323264),
    ({"model_type": "gpt_oss", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 40,
      "num_hidden_layers": 3, "num_attention_heads": 6, "num_key_value_heads": 2, "head_dim": 12,
      "num_local_experts": 5, "num_experts_per_tok": 2, "attention_bias": False}, 283665, 213249),
    ({"model_type": "gpt2", "vocab_size": 1000, "n_embd": 64, "n_layer": 2, "n_head": 4, "n_inner": 100,
      "n_positions": 128, "tie_word_embeddings": False}, 196040, 196040),
    ({"model_type": "falcon", "vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 2,
      "num_attention_heads": 4}, 150400, 150400),
    ({"model_type": "falcon", "vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 8,
      "new_decoder_architecture": True, "num_kv_heads": 2, "bias": True, "ffn_hidden_size": 100,
      "tie_word_embeddings": False}, 175368, 175368),
    ({"model_type": "falcon", "vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
      "multi_query": False, "parallel_attn": False, "bias": True, "alibi": True}, 164096, 164096),
    # transformers 5.25.
    ({"model_type": "glm4_moe", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150,
      "moe_intermediate_size": 40, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
      "head_dim": 16, "n_routed_experts": 6, "n_shared_experts": 1, "num_experts_per_tok": 2,
      "first_k_dense_replace": 1, "attention_bias": True, "use_qk_norm": True}, 302880, 241440),
    ({"model_type": "olmo3", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150, "num_hidden_layers": 2,
      "num_attention_heads": 8, "num_key_value_heads": 2, "attention_bias": True}, 206880, 206880),
    ({"model_type": "seed_oss", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150, "num_hidden_layers": 2,
      "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "attention_out_bias": True}, 210880, 210880),
    ({"model_type": "smollm3", "vocab_size": 1000, "pad_token_id": None, "hidden_size": 64, "intermediate_size": 150,
      "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}, 146496, 146496),
    ({"model_type": "ernie4_5", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150, "num_hidden_layers": 2,
      "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "use_bias": True}, 147608, 147608),
    ({"model_type": "hunyuan_v1_dense", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150,
      "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
      "attention_bias": True}, 210944, 210944),
    ({"model_type": "exaone4", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150, "num_hidden_layers": 4,
      "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16}, 293056, 293056),
    ({"model_type": "ernie4_5_moe", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150,
      "moe_intermediate_size": 40, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
      "moe_num_experts": 6, "moe_k": 2, "moe_num_shared_experts": 1, "moe_layer_start_index": 1,
      "moe_layer_interval": 1, "use_bias": True}, 307542, 215382),
    ({"model_type": "hunyuan_v1_moe", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 40,
      "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "num_experts": 6,
      "moe_topk": 2, "attention_bias": True}, 328416, 236256),
    ({"model_type": "glm", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150, "num_hidden_layers": 2,
      "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16}, 210752, 210752),
    # GLM-4-0414: four norms per layer; the class's head_dim (128) and kv heads (2) where the config omits them.
    ({"model_type": "glm4", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150, "num_hidden_layers": 3,
      "num_attention_heads": 8, "tie_word_embeddings": True}, 647360, 647360),
    ({"model_type": "starcoder2", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150,
      "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}, 128428, 128428),
    ({"model_type": "starcoder2", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150,
      "num_hidden_layers": 3, "num_attention_heads": 8, "use_bias": False, "tie_word_embeddings": False,
      "sliding_window": 128}, 217216, 217216),
    # Arcee: a plain squared-ReLU MLP, biases on every projection; Apertus: per-head q/k norms and
    # xIELU's two learned scalars per layer (transformers 5.25 counts).
    ({"model_type": "arcee", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150, "num_hidden_layers": 2,
      "num_attention_heads": 4, "num_key_value_heads": 2, "attention_bias": True, "mlp_bias": True}, 192108, 192108),
    ({"model_type": "apertus", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150, "num_hidden_layers": 3,
      "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32}, 259974, 259974),
    # OLMoE: whole-projection q/k norms; every layer routes to its experts, no shared one.
    ({"model_type": "olmoe", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 40, "num_hidden_layers": 2,
      "num_attention_heads": 4, "num_key_value_heads": 2, "num_experts": 6, "num_experts_per_tok": 2,
      "attention_bias": True}, 246400, 184960),
    ({"model_type": "olmoe", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 40, "num_hidden_layers": 3,
      "num_attention_heads": 8, "num_experts": 4, "num_experts_per_tok": 1, "tie_word_embeddings": True}, 206912, 137792),
    ({"model_type": "phimoe", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 40, "num_hidden_layers": 2,
      "num_attention_heads": 4, "num_key_value_heads": 2, "num_local_experts": 6, "num_experts_per_tok": 2,
      "attention_bias": True, "lm_head_bias": True}, 247528, 186088),
    ({"model_type": "granitemoe", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 40, "num_hidden_layers": 2,
      "num_attention_heads": 4, "num_key_value_heads": 2, "num_local_experts": 6, "num_experts_per_tok": 2,
      "attention_bias": True}, 246208, 184768),
    ({"model_type": "granitemoeshared", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 40,
      "num_hidden_layers": 2, "num_attention_heads": 4, "num_local_experts": 6, "num_experts_per_tok": 2,
      "shared_intermediate_size": 96, "tie_word_embeddings": True}, 226880, 165440),
    ({"model_type": "cohere", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150, "num_hidden_layers": 2,
      "num_attention_heads": 4, "num_key_value_heads": 2}, 146368, 146368),
    # Command R's q/k norms weigh each feature of each head; biases on all four projections.
    ({"model_type": "cohere", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150, "num_hidden_layers": 3,
      "num_attention_heads": 8, "num_key_value_heads": 2, "use_qk_norm": True, "attention_bias": True,
      "tie_word_embeddings": False}, 246096, 246096),
    ({"model_type": "cohere2", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150,
      "num_hidden_layers": 5, "num_attention_heads": 4}, 290304, 290304),
    # GLM-4.7-Flash: DeepSeek-V3's modules; MoE in all but the first layer when mlp_layer_types is
    # not given, else where it says "sparse" (first_k_dense_replace is not read).
    ({"model_type": "glm4_moe_lite", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150,
      "moe_intermediate_size": 40, "num_hidden_layers": 3, "num_attention_heads": 4, "q_lora_rank": 24,
      "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 12, "n_routed_experts": 6,
      "n_shared_experts": 1, "num_experts_per_tok": 2}, 292536, 231096),
    ({"model_type": "glm4_moe_lite", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150,
      "moe_intermediate_size": 40, "num_hidden_layers": 4, "num_attention_heads": 4, "q_lora_rank": None,
      "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 12, "n_routed_experts": 6,
      "n_shared_experts": 2, "num_experts_per_tok": 2, "mlp_layer_types": ["sparse", "dense", "sparse", "dense"],
      "attention_bias": True, "first_k_dense_replace": 3}, 350176, 288736),
    ({"model_type": "ministral", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150,
      "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 24}, 222784, 222784),
    # Ministral 3: Mistral's modules, head_dim 128 by default.
    ({"model_type": "ministral3", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150,
      "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": True},
     318528, 318528),
    ({"model_type": "mistral4", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150,
      "moe_intermediate_size": 40, "num_hidden_layers": 3, "num_attention_heads": 4, "kv_lora_rank": 16,
      "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 12, "q_lora_rank": 24, "n_routed_experts": 6,
      "num_experts_per_tok": 2, "first_k_dense_replace": 1}, 292536, 231096),
    # dots.llm1: biases on all four attention projections, per-head q/k norms.
    ({"model_type": "dots1", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150,
      "moe_intermediate_size": 40, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
      "n_routed_experts": 6, "n_shared_experts": 1, "num_experts_per_tok": 2, "first_k_dense_replace": 1,
      "attention_bias": True}, 303072, 241632),
    # Solar Open: every layer MoE, no dense MLP.
    ({"model_type": "solar_open", "vocab_size": 1000, "hidden_size": 64, "moe_intermediate_size": 40,
      "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
      "n_routed_experts": 6, "n_shared_experts": 1, "num_experts_per_tok": 2, "attention_bias": True}, 261440, 200000),
    ({"model_type": "exaone_moe", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150,
      "moe_intermediate_size": 40, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
      "num_experts": 6, "num_shared_experts": 1, "num_experts_per_tok": 2,
      "mlp_layer_types": ["dense", "sparse", "dense", "sparse"]}, 343744, 282304),
]


@pytest.mark.parametrize("config, total, active", SYNTHETIC,
                         ids=[f"{c['model_type']}-{i}" for i, (c, _, _) in enumerate(SYNTHETIC)])
def test_synthetic_configs_match_transformers(config, total, active):
    counted = count_params(architecture_from_config(config, "synthetic"))
    assert (counted.total, counted.active) == (total, active)


@pytest.mark.parametrize("name", ["llama3-8b", "gpt2-small", "qwen3-30b-a3b", "deepseek-v3", "debug-moe"])
def test_layers_embedding_and_output_add_up_to_the_total(name):
    arch = get_preset(name)
    layers = sum(layer_params(arch, i).total for i in range(arch.num_layers))
    assert layers + embedding_params(arch) + output_params(arch) == count_params(arch).total


def test_embedding_and_output_params():
    gpt2 = get_preset("gpt2-small")
    assert embedding_params(gpt2) == 50257 * 768 + 1024 * 768  # token + learned positions
    assert output_params(gpt2) == 2 * 768  # ln_f weight and bias; the head is the tied embedding
    llama = get_preset("llama3-8b")
    assert output_params(llama) == 4096 + 128256 * 4096


def test_per_expert_params():
    # Seed example: one Mixtral-8x7B SwiGLU expert = 3 x 4096 x 14336 (config.json: hidden 4096, FFN 14336).
    mixtral = layer_params(get_preset("mixtral-8x7b"), 0)
    assert mixtral.per_expert == 3 * 4096 * 14336 == 176_160_768
    assert mixtral.routed_experts == 8 * mixtral.per_expert
    # A token uses 2 of the 8 experts and everything else in the layer.
    assert mixtral.active == mixtral.total - 6 * 176_160_768
    assert layer_params(get_preset("llama3-8b"), 0).per_expert == 0


def test_layer_kinds_of_deepseek_v3():
    arch = get_preset("deepseek-v3")
    dense, moe, mtp = layer_kinds(arch)
    assert (dense.kind, dense.layers, dense.params) == ("dense", 3, layer_params(arch, 0).total)
    assert (moe.kind, moe.layers, moe.params, moe.per_expert) == ("moe", 58, layer_params(arch, 3).total,
                                                                  3 * 7168 * 2048)
    assert (mtp.kind, mtp.layers, mtp.params) == ("mtp", 1, count_params(arch).mtp)
    # Dense blocks, MoE blocks, embedding and output make the total; MTP stays apart.
    blocks = dense.layers * dense.params + moe.layers * moe.params
    assert blocks + embedding_params(arch) + output_params(arch) == 671_026_404_352
    # Active: the 58 MoE layers use 8 of 256 experts, dense layers everything.
    assert moe.active == moe.params - 248 * moe.per_expert and dense.active == dense.params
    counted = count_params(arch)
    assert counted.total - counted.active == 58 * (moe.params - moe.active)


@pytest.mark.parametrize("name, kinds", [("llama3-8b", [("dense", 32)]), ("mixtral-8x7b", [("moe", 32)]),
                                         ("llama4-maverick", [("dense", 24), ("moe", 24)]),
                                         ("debug-moe", [("dense", 1), ("moe", 3), ("mtp", 1)])])
def test_layer_kinds_present(name, kinds):
    assert [(k.kind, k.layers) for k in count_params(get_preset(name)).by_layer_kind] == kinds


def test_dense_first_layers_of_deepseek_v3():
    arch = get_preset("deepseek-v3")
    dense, sparse = layer_params(arch, 2), layer_params(arch, 3)
    assert (dense.dense_mlp, dense.routed_experts) == (3 * 7168 * 18432, 0)
    assert (sparse.dense_mlp, sparse.per_expert, sparse.shared_experts) == (0, 3 * 7168 * 2048, 3 * 7168 * 2048)


# LoRA: r * (d_in + d_out) per adapted matrix (arXiv 2106.09685).
def test_lora_mixtral_experts_from_references():
    # Seed example: r = 16 on one expert's gate/up/down (4096 <-> 14336) = 884,736;
    # 8 experts x 32 layers = 226,492,416.
    arch = get_preset("mixtral-8x7b")
    one_expert = 3 * 16 * (4096 + 14336)
    assert one_expert == 884_736
    assert lora_params(arch, 0, 16, ["gate_proj", "up_proj", "down_proj"]) == 8 * one_expert
    total = sum(lora_params(arch, i, 16, ["gate_proj", "up_proj", "down_proj"]) for i in range(32))
    assert total == 226_492_416


def test_lora_llama3_8b_matches_peft():
    # PEFT prints these trainable counts for Llama-3-8B at r = 16.
    arch = get_preset("llama3-8b")
    attention = sum(lora_params(arch, i, 16, ["q_proj", "k_proj", "v_proj", "o_proj"]) for i in range(32))
    everything = sum(lora_params(arch, i, 16, ["all-linear"]) for i in range(32))
    assert (attention, everything) == (13_631_488, 41_943_040)


def test_lora_mla_projections():
    # DeepSeek-V2-Lite (no q LoRA): q_proj 2048 -> 16 x 192; k/v select kv_a_proj_with_mqa
    # (2048 -> 512 + 64) and kv_b_proj (512 -> 16 x (128 + 128)) once, whichever names them.
    arch = get_preset("deepseek-v2-lite")
    kv = 8 * (2048 + 576) + 8 * (512 + 4096)
    assert lora_params(arch, 0, 8, ["q_proj"]) == 8 * (2048 + 3072)
    assert lora_params(arch, 0, 8, ["k_proj"]) == lora_params(arch, 0, 8, ["k_proj", "v_proj"]) == kv
    # DeepSeek-V3 has q LoRA: q_proj adapts q_a_proj (7168 -> 1536) and q_b_proj (1536 -> 128 x 192).
    v3 = get_preset("deepseek-v3")
    assert lora_params(v3, 0, 4, ["q_proj"]) == 4 * (7168 + 1536) + 4 * (1536 + 128 * 192)


def test_lora_moe_layer_adapts_routed_and_shared_experts():
    arch = get_preset("deepseek-v2-lite")
    # Layer 1 is sparse: 64 routed experts of 1408 and the 2 shared ones as one MLP of 2816.
    expected = 64 * 3 * 4 * (2048 + 1408) + 3 * 4 * (2048 + 2816)
    assert lora_params(arch, 1, 4, ["gate_proj", "up_proj", "down_proj"]) == expected


def test_lora_unknown_target_suggests_the_name():
    with pytest.raises(InputError, match=r"^lora.targets: unknown LoRA target 'q_porj' \(did you mean q_proj or"):
        lora_params(get_preset("debug"), 0, 8, ["q_porj"])


def test_grok1_counts_by_hand():
    # Grok-1 (xai-org/grok-1): 64 layers, hidden 6144, 48 query / 8 KV heads of 128, 8 experts of
    # width 32768 (three matrices each), top-2, four RMSNorms per layer, vocab 131072 tied.
    h, layers, experts, ffn, vocab = 6144, 64, 8, 32768, 131072
    attention = 2 * h * h + 2 * h * 8 * 128
    expert = 3 * h * ffn
    per_layer = attention + experts * expert + h * experts + 4 * h
    counts = count_params(get_preset("grok-1"))
    assert counts.total == layers * per_layer + vocab * h + h == 315_684_820_992
    assert counts.active == counts.total - layers * (experts - 2) * expert == 83_756_587_008


# Multimodal configs read as their text decoders; counts of transformers 5.25's language model and
# output layer within the whole model (AutoModelForImageTextToText on the meta device).
_TEXT = {"vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2}
MULTIMODAL_SYNTHETIC = [
    # Qwen3-VL ties by its top-level flag alone: a text_config's is ignored.
    ({"model_type": "qwen3_vl", "text_config": {**_TEXT, "head_dim": 16}, "tie_word_embeddings": True}, 146560, 146560),
    ({"model_type": "qwen3_vl", "text_config": {**_TEXT, "head_dim": 16, "tie_word_embeddings": True}}, 210560, 210560),
    # Qwen2.5-VL carries a text_config's tying over (configs saved before transformers 5).
    ({"model_type": "qwen2_5_vl", "text_config": {**_TEXT, "tie_word_embeddings": True}}, 146752, 146752),
    # Kimi-K2.5's text_config says kimi_k2, read as DeepSeek-V3.
    ({"model_type": "kimi_k25", "tie_word_embeddings": False,
      "text_config": {**_TEXT, "model_type": "kimi_k2", "moe_intermediate_size": 40, "q_lora_rank": 32,
                      "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 8,
                      "n_routed_experts": 6, "num_experts_per_tok": 2, "first_k_dense_replace": 1, "n_group": 1,
                      "topk_group": 1}}, 228768, 198048),
    # Mistral 3 around Ministral 3's and Mistral Small 4's text decoders, tied by default.
    ({"model_type": "mistral3", "text_config": {**_TEXT, "model_type": "ministral3", "head_dim": 16}}, 146496, 146496),
    ({"model_type": "mistral3", "tie_word_embeddings": False,
      "text_config": {**_TEXT, "model_type": "mistral4", "moe_intermediate_size": 40, "q_lora_rank": 32,
                      "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 8,
                      "n_routed_experts": 6, "num_experts_per_tok": 2, "first_k_dense_replace": 1}}, 228768, 198048),
]


@pytest.mark.parametrize("config, total, active", MULTIMODAL_SYNTHETIC,
                         ids=[f"{c['model_type']}-{i}" for i, (c, _, _) in enumerate(MULTIMODAL_SYNTHETIC)])
def test_multimodal_configs_count_their_text_decoder(config, total, active):
    with pytest.warns(UserWarning, match=f"{config['model_type']}: the text decoder alone; the encoders"):
        arch = load_architecture({**config, "vision_config": {}})
    counted = count_params(arch)
    assert (counted.total, counted.active) == (total, active)
    assert arch.extra["multimodal"] == config["model_type"]
    assert "vision_config" in arch.extra["encoders"]
