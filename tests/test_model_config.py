"""Architectures from presets and Hugging Face config.json: defaults, layer rules and errors."""
import json
from dataclasses import replace
from pathlib import Path

import pytest

from planner.model import (
    architecture_from_config,
    count_params,
    get_preset,
    list_presets,
    load_architecture,
)
from planner.model.presets import preset_config
from planner.spec.errors import InputError

CONFIGS = Path(__file__).parent / "data" / "configs"

REQUIRED_PRESETS = [
    "llama2-7b", "llama2-13b", "llama2-70b", "llama3-8b", "llama3-70b", "llama3.1-405b", "llama3.2-1b",
    "llama3.2-3b", "mistral-7b", "mixtral-8x7b", "mixtral-8x22b", "qwen2-7b", "qwen3-8b", "qwen3-32b",
    "qwen3-30b-a3b", "qwen3-235b-a22b", "deepseek-v3", "deepseek-v2-lite", "gpt3-175b", "debug",
]

LLAMA = {"model_type": "llama", "hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 4,
         "num_attention_heads": 8, "vocab_size": 32000}
WIDE = {**LLAMA, "hidden_size": 2048, "num_attention_heads": 32}
"""LLAMA with as many heads as the most key/value heads a family defaults to (Qwen2's 32): key/value
heads must divide the heads."""


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_builds_and_hashes(name):
    arch = get_preset(name)
    assert arch.name == name
    hash(arch)  # planner.cost.shard caches per architecture


def test_required_presets_exist_and_debug_is_tiny():
    assert set(REQUIRED_PRESETS) <= set(list_presets())
    assert count_params(get_preset("debug")).total < 5_000_000
    assert count_params(get_preset("debug-moe")).total < 5_000_000


def test_llama_defaults_follow_transformers():
    arch = architecture_from_config(LLAMA, "x")
    assert (arch.attention.num_kv_heads, arch.head_dim) == (8, 64)  # kv = heads, head_dim = h / heads
    assert not (arch.tied_embeddings or arch.attention.qkv_bias or arch.mlp_bias)
    assert architecture_from_config({**LLAMA, "num_key_value_heads": None}, "x").attention.num_kv_heads == 8


@pytest.mark.parametrize("model_type, kv_heads, head_dim, tied", [
    ("qwen2", 32, 64, False),  # Qwen2Config: num_key_value_heads = 32
    ("qwen3", 32, 128, False),  # Qwen3Config: head_dim = 128
    ("mistral", 8, 64, False),
    ("gemma", 16, 256, True),
    ("gemma2", 4, 256, True),
])
def test_family_defaults_for_omitted_fields(model_type, kv_heads, head_dim, tied):
    arch = architecture_from_config({**WIDE, "model_type": model_type}, "x")
    assert (arch.attention.num_kv_heads, arch.head_dim, arch.tied_embeddings) == (kv_heads, head_dim, tied)


def test_family_specific_structure():
    qwen2 = architecture_from_config({**WIDE, "model_type": "qwen2"}, "x").attention
    assert (qwen2.qkv_bias, qwen2.out_bias) == (True, False)
    assert architecture_from_config({**WIDE, "model_type": "qwen3"}, "x").attention.qk_norm == "head"
    assert architecture_from_config({**WIDE, "model_type": "olmo2"}, "x").attention.qk_norm == "projection"
    assert architecture_from_config({**WIDE, "model_type": "gemma2"}, "x").norms_per_layer == 4
    gpt2 = get_preset("gpt3-175b")
    assert (gpt2.position, gpt2.max_positions, gpt2.norm, gpt2.gated_mlp, gpt2.ffn) == \
        ("learned", 2048, "layernorm", False, 4 * 12288)


def test_mla_fields():
    lite = get_preset("deepseek-v2-lite").attention
    assert (lite.kind, lite.q_lora_rank, lite.kv_lora_rank, lite.head_dim, lite.value_head_dim) == \
        ("mla", None, 512, 192, 128)
    v3 = get_preset("deepseek-v3")
    assert (v3.attention.q_lora_rank, v3.mtp_layers) == (1536, 1)
    assert (v3.moe.num_shared_experts, v3.moe.shared_ffn, v3.moe.first_dense_layers) == (1, 2048, 3)


def test_qwen_moe_layers_count_from_one():
    # modeling_qwen3_moe.py: sparse when (i + 1) % decoder_sparse_step == 0 and i not in mlp_only_layers.
    cfg = {**LLAMA, "model_type": "qwen3_moe", "num_hidden_layers": 6, "moe_intermediate_size": 64,
           "num_experts": 4, "num_experts_per_tok": 2, "decoder_sparse_step": 2, "mlp_only_layers": [3]}
    arch = architecture_from_config(cfg, "x")
    assert [arch.is_moe_layer(i) for i in range(6)] == [False, True, False, False, False, True]
    assert arch.num_moe_layers == 2


def test_deepseek_moe_layers_start_after_the_dense_ones():
    arch = get_preset("deepseek-v3")
    assert [arch.is_moe_layer(i) for i in range(5)] == [False, False, False, True, True]
    assert arch.num_moe_layers == 58


def test_deepseek_group_limited_routing_is_read():
    # transformers DeepseekV3TopkRouter always keeps topk_group of n_group expert groups (the
    # config's defaults 8 and 4); DeepSeek-V2 only with topk_method group_limited_greedy.
    v3 = json.loads((CONFIGS / "deepseek-v3.json").read_text())
    moe = architecture_from_config(v3, "v3").moe
    assert (moe.route_groups, moe.route_group_topk, moe.group_limited) == (8, 4, True)
    defaulted = {k: v for k, v in v3.items() if k not in ("n_group", "topk_group")}
    assert architecture_from_config(defaulted, "v3").moe.route_groups == 8
    kimi = architecture_from_config(json.loads((CONFIGS / "kimi-k2.json").read_text()), "k2").moe
    assert (kimi.route_groups, kimi.group_limited) == (1, False)
    v2 = {**v3, "model_type": "deepseek_v2", "n_group": 8, "topk_group": 3}
    assert architecture_from_config(v2, "v2").moe.group_limited is False  # topk_method greedy
    limited = architecture_from_config({**v2, "topk_method": "group_limited_greedy"}, "v2").moe
    assert (limited.route_groups, limited.route_group_topk) == (8, 3)
    with pytest.raises(InputError, match="do not split into 7 equal expert groups"):
        architecture_from_config({**v3, "n_group": 7}, "v3")


def test_deepseek_style_moe_families_read_num_local_experts_as_their_attribute_map_does():
    # Glm4MoeConfig, Dots1Config, SolarOpenConfig: attribute_map num_local_experts -> n_routed_experts.
    for model_type in ("glm4_moe", "dots1", "solar_open"):
        cfg = {**LLAMA, "model_type": model_type, "moe_intermediate_size": 64, "n_routed_experts": 6,
               "n_shared_experts": 1, "num_experts_per_tok": 2}
        aliased = {k: v for k, v in cfg.items() if k != "n_routed_experts"} | {"num_local_experts": 6}
        assert architecture_from_config(aliased, "x") == architecture_from_config(cfg, "x")
        assert architecture_from_config(aliased, "x").moe.num_experts == 6


def test_glm4_moe_lite_layers_are_those_mlp_layer_types_calls_sparse():
    # Glm4MoeLiteConfig.__post_init__: ["dense"] + ["sparse"] * (layers - 1) unless given.
    cfg = {**LLAMA, "model_type": "glm4_moe_lite", "num_hidden_layers": 4, "moe_intermediate_size": 64,
           "n_routed_experts": 4, "num_experts_per_tok": 2, "kv_lora_rank": 16, "first_k_dense_replace": 3}
    arch = architecture_from_config(cfg, "x")
    assert [arch.is_moe_layer(i) for i in range(4)] == [False, True, True, True]
    listed = architecture_from_config({**cfg, "mlp_layer_types": ["sparse", "dense", "dense", "sparse"]}, "x")
    assert [listed.is_moe_layer(i) for i in range(4)] == [True, False, False, True]
    for bad in (["sparse"] * 3, ["sparse", "moe", "dense", "dense"], "sparse"):
        with pytest.raises(InputError, match='"dense" or "sparse" for each of the 4 layers') as err:
            architecture_from_config({**cfg, "mlp_layer_types": bad}, "x")
        assert err.value.field == "mlp_layer_types"


def test_dropout_is_read_where_transformers_applies_it():
    # GPT-2's resid_pdrop and Seed-OSS's residual_dropout default to 0.1; Llama has none.
    assert get_preset("gpt2-small").residual_dropout == 0.1
    assert architecture_from_config({**LLAMA, "resid_pdrop": 0.3}, "x").residual_dropout == 0.0
    phi3 = architecture_from_config({**LLAMA, "model_type": "phi3", "resid_pdrop": 0.2}, "x")
    assert phi3.residual_dropout == 0.2
    for bad in ("0.1", 1.5, -0.1, True):
        with pytest.raises(InputError, match="dropout probability from 0 to 1") as err:
            architecture_from_config({**LLAMA, "model_type": "phi3", "resid_pdrop": bad}, "x")
        assert err.value.field == "resid_pdrop"


def test_no_sparse_layer_means_no_moe():
    cfg = {**LLAMA, "model_type": "qwen3_moe", "moe_intermediate_size": 64, "num_experts": 4,
           "num_experts_per_tok": 2, "mlp_only_layers": [0, 1, 2, 3]}
    assert architecture_from_config(cfg, "x").moe is None


def test_multimodal_config_reads_the_text_decoder():
    text = {k: v for k, v in preset_config("gemma3-1b").items() if k != "model_type"}
    arch = architecture_from_config({"model_type": "gemma3", "text_config": text}, "gemma3-1b")
    assert (arch.family, count_params(arch).total) == ("gemma3_text", 999_885_952)


def test_unknown_config_is_bad_input_naming_the_supported_types():
    for cfg in ({**LLAMA, "model_type": "mystery"}, {k: v for k, v in LLAMA.items() if k != "model_type"},
                {**LLAMA, "model_type": "mystery", "architectures": ["MysteryForCausalLM"]}):
        with pytest.raises(InputError, match=r"^model_type: .*no supported family reads these weights "
                                             r"\(supported model_type: apertus, arcee, bloom, .*deepseek_v2, .*llama, .*; multimodal,"
                                             r" read as their text decoder: gemma3, .*qwen3_vl, .*read_as: TYPE"):
            architecture_from_config(cfg, "m")


def test_unknown_config_through_the_cli_exits_2(tmp_path):
    from typer.testing import CliRunner

    from planner.cli.app import app

    (tmp_path / "config.json").write_text(json.dumps({**LLAMA, "model_type": "mystery"}))
    result = CliRunner().invoke(app, ["params", str(tmp_path / "config.json")])
    assert result.exit_code == 2
    assert "model_type: model_type 'mystery' and no architectures: no supported family" in result.stderr
    assert "Traceback" not in result.output


def test_read_as_opts_in_to_a_known_reader(tmp_path):
    cfg = {**LLAMA, "model_type": "mystery"}
    arch = architecture_from_config({**cfg, "read_as": "llama"}, "m")
    assert count_params(arch).total == count_params(architecture_from_config(LLAMA, "x")).total
    assert (arch.family, arch.extra) == ("llama", {"model_type": "mystery", "read_as": "llama"})
    assert load_architecture({**cfg, "read_as": "llama"}).family == "llama"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    from_file = load_architecture({"config": "config.json", "read_as": "llama"}, base_dir=tmp_path)
    assert replace(from_file, name="m") == arch
    with pytest.raises(InputError, match=r"^job.yaml: model.read_as: unknown model type 'lama' "
                                         r"\(did you mean llama"):
        load_architecture({"config": "config.json", "read_as": "lama"}, base_dir=tmp_path, file="job.yaml")
    with pytest.raises(InputError, match=r"^job.yaml: model.read_as: unknown model type 'lama'"):
        load_architecture({**cfg, "read_as": "lama"}, file="job.yaml")
    with pytest.raises(InputError, match=r"^job.yaml: model: a mapping with 'config' takes only"):
        load_architecture({"config": "config.json", "hidden_size": 8}, base_dir=tmp_path, file="job.yaml")
    with pytest.raises(InputError, match=r"^job.yaml: model.config: not a config.json file"):
        load_architecture({"config": "nowhere.json"}, base_dir=tmp_path, file="job.yaml")


def test_architectures_pick_the_reader_when_model_type_is_unknown():
    # Kimi-K2 (tests/data/configs/kimi-k2.json): model_type kimi_k2, DeepseekV3ForCausalLM weights.
    cfg = json.loads((CONFIGS / "kimi-k2.json").read_text())
    arch = architecture_from_config(cfg, "kimi-k2")
    assert (arch.family, arch.extra["model_type"]) == ("deepseek_v3", "kimi_k2")
    assert architecture_from_config({**cfg, "model_type": "deepseek_v3"}, "kimi-k2") == arch
    # A known model_type wins over architectures; read_as wins over both.
    assert architecture_from_config({**LLAMA, "architectures": ["MistralForCausalLM"]}, "x").family == "llama"
    assert architecture_from_config({**LLAMA, "read_as": "mistral"}, "x").family == "mistral"


def test_bloom_names_its_own_fields():
    cfg = json.loads((CONFIGS / "bloom-560m.json").read_text())
    arch = architecture_from_config(cfg, "bloom-560m")
    assert (arch.hidden, arch.num_layers, arch.attention.num_heads, arch.position, arch.embedding_norm) == \
        (1024, 24, 16, "alibi", True)
    with pytest.raises(InputError, match=r"missing required field 'n_head' or 'num_attention_heads'"):
        architecture_from_config({k: v for k, v in cfg.items() if k != "n_head"}, "x")


def test_granite_reads_as_llama_shapes_without_warning(recwarn):
    cfg = {**LLAMA, "model_type": "granite", "embedding_multiplier": 12.0, "logits_scaling": 16.0,
           "residual_multiplier": 0.22, "attention_multiplier": 0.0078125}
    arch = architecture_from_config(cfg, "g")
    assert arch.family == "granite" and not recwarn.list
    assert count_params(arch) == count_params(architecture_from_config(LLAMA, "x"))


def test_mlp_activation_and_partial_rotary():
    nemotron = architecture_from_config(json.loads((CONFIGS / "nemotron-4-15b.json").read_text()), "n")
    assert (nemotron.gated_mlp, nemotron.mlp_activation, nemotron.norm) == (False, "relu2", "layernorm")
    assert nemotron.attention.rotary_dim == 64  # int(128 * 0.5), modeling_rope_utils.py
    minimax = architecture_from_config(json.loads((CONFIGS / "minimax-m2.json").read_text()), "m")
    assert (minimax.attention.rotary_dim, minimax.attention.qk_norm) == (64, "projection")
    assert get_preset("pythia-6.9b").attention.rotary_dim == 32  # rotary_pct 0.25 of 128
    assert architecture_from_config(LLAMA, "x").attention.rotary_dim is None
    assert (get_preset("gemma-7b").mlp_activation, get_preset("gpt2-small").mlp_activation,
            get_preset("gpt-oss-20b").mlp_activation) == ("gelu_pytorch_tanh", "gelu_new", "sigmoid_glu_clamped")
    with pytest.raises(InputError, match=r"^num_key_value_heads: missing required field"):
        architecture_from_config({**LLAMA, "model_type": "nemotron"}, "x")


@pytest.mark.parametrize("missing", ["hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
                                     "intermediate_size"])
def test_missing_required_field_is_named(missing):
    cfg = {k: v for k, v in LLAMA.items() if k != missing}
    with pytest.raises(InputError, match=f"missing required field '{missing}'") as error:
        architecture_from_config(cfg, "x")
    assert error.value.field == missing


@pytest.mark.parametrize("value", ["4096", -1, 0, 2.5, True])
def test_invalid_size_is_an_input_error(value):
    with pytest.raises(InputError, match="must be a positive integer") as error:
        architecture_from_config({**LLAMA, "hidden_size": value}, "x")
    assert error.value.field == "hidden_size"


def test_moe_without_top_k_is_an_input_error():
    cfg = preset_config("deepseek-v2-lite")
    del cfg["num_experts_per_tok"]  # DeepseekV2Config has no default for it
    with pytest.raises(InputError, match="num_experts_per_tok: required by the MoE layers"):
        architecture_from_config(cfg, "x")


def test_load_preset_inline_file_and_folder(tmp_path):
    assert load_architecture("llama3-8b") == get_preset("llama3-8b")
    inline = load_architecture(dict(LLAMA))
    assert inline.hidden == 512
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(LLAMA))
    from_file = load_architecture("ckpt/config.json", base_dir=tmp_path)
    assert from_file == load_architecture("ckpt", base_dir=tmp_path) == replace(inline, name="ckpt")


def test_unknown_preset_suggests_names():
    with pytest.raises(InputError, match=r"^job.yaml: model: unknown model preset 'llama3-8' "
                                         r"\(did you mean llama3-8b") as error:
        load_architecture("llama3-8", file="job.yaml")
    assert error.value.field == "model"


def test_inline_error_is_placed_under_model():
    cfg = {k: v for k, v in LLAMA.items() if k != "vocab_size"}
    with pytest.raises(InputError, match=r"^job.yaml: model.vocab_size: missing required field"):
        load_architecture(cfg, file="job.yaml")


def test_config_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({k: v for k, v in LLAMA.items() if k != "num_hidden_layers"}))
    with pytest.raises(InputError, match=r"config.json: num_hidden_layers: missing required field"):
        load_architecture("config.json", base_dir=tmp_path, file="job.yaml")
    bad.write_text("{not json")
    with pytest.raises(InputError, match=r"^job.yaml: model: cannot read .*config.json as JSON"):
        load_architecture("config.json", base_dir=tmp_path, file="job.yaml")


def test_hunyuan_moe_reads_per_layer_counts_that_agree():
    """Hunyuan-A13B's config.json lists moe_topk per layer; transformers builds every layer's
    experts from one count, so a list of one value reads as that value and any other is refused."""
    config = {"model_type": "hunyuan_v1_moe", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 40,
              "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
              "num_experts": 6, "moe_topk": 2}
    assert architecture_from_config({**config, "moe_topk": [2, 2, 2]}, "a") == architecture_from_config(config, "a")
    with pytest.raises(InputError, match="differs between layers"):
        architecture_from_config({**config, "moe_topk": [2, 1, 2]}, "a")
