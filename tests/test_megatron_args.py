"""Megatron-LM arguments map onto the same Architecture as the presets, with Megatron's defaults."""
import pytest

from planner.model import architecture_from_megatron_args, count_params, get_preset
from planner.model.megatron_args import moe_layer_pattern, padded_vocab_size
from planner.spec.errors import InputError

LLAMA3_8B = {
    "--num-layers": "32", "--hidden-size": "4096", "--ffn-hidden-size": "14336",
    "--num-attention-heads": "32", "--group-query-attention": True, "--num-query-groups": "8",
    "--swiglu": True, "--untie-embeddings-and-output-weights": True, "--normalization": "RMSNorm",
    "--disable-bias-linear": True, "--position-embedding-type": "rope", "--padded-vocab-size": "128256",
    # Not shapes: ignored.
    "--seq-length": "8192", "--lr": "3e-4", "--tensor-model-parallel-size": "8", "--bf16": True,
}
MIXTRAL_8X7B = {
    "--num-layers": "32", "--hidden-size": "4096", "--ffn-hidden-size": "14336",
    "--num-attention-heads": "32", "--group-query-attention": True, "--num-query-groups": "8",
    "--swiglu": True, "--untie-embeddings-and-output-weights": True, "--normalization": "RMSNorm",
    "--disable-bias-linear": True, "--position-embedding-type": "rope", "--vocab-size": "32000",
    "--num-experts": "8", "--moe-router-topk": "2", "--moe-grouped-gemm": True,
}
# GPT-3 175B (arXiv 2005.14165, Table 2.1) on Megatron's defaults: LayerNorm, biases, learned
# positions, tied output, 4h GELU MLP, multi-head attention.
GPT3_175B = {
    "--num-layers": "96", "--hidden-size": "12288", "--num-attention-heads": "96",
    "--seq-length": "2048", "--max-position-embeddings": "2048", "--padded-vocab-size": "50257",
}
DEEPSEEK_V3 = {
    "--num-layers": "61", "--hidden-size": "7168", "--ffn-hidden-size": "18432",
    "--num-attention-heads": "128", "--multi-latent-attention": True, "--qk-layernorm": True,
    "--q-lora-rank": "1536", "--kv-lora-rank": "512", "--qk-head-dim": "128",
    "--qk-pos-emb-head-dim": "64", "--v-head-dim": "128", "--swiglu": True,
    "--untie-embeddings-and-output-weights": True, "--normalization": "RMSNorm",
    "--disable-bias-linear": True, "--position-embedding-type": "rope", "--padded-vocab-size": "129280",
    "--num-experts": "256", "--moe-router-topk": "8", "--moe-ffn-hidden-size": "2048",
    "--moe-shared-expert-intermediate-size": "2048", "--moe-layer-freq": "([0]*3+[1]*58)",
    "--moe-router-enable-expert-bias": True, "--mtp-num-layers": "1",
    "--moe-router-num-groups": "8", "--moe-router-group-topk": "4",
}


def _counts(args):
    return count_params(architecture_from_megatron_args(args, "megatron"))


@pytest.mark.parametrize("args, preset", [
    (LLAMA3_8B, "llama3-8b"),
    (MIXTRAL_8X7B, "mixtral-8x7b"),
    (GPT3_175B, "gpt3-175b"),
    (DEEPSEEK_V3, "deepseek-v3"),
], ids=["llama3-8b", "mixtral-8x7b", "gpt3-175b", "deepseek-v3"])
def test_megatron_args_count_like_the_preset(args, preset):
    ours, theirs = _counts(args), count_params(get_preset(preset))
    assert (ours.total, ours.active, ours.mtp) == (theirs.total, theirs.active, theirs.mtp)
    assert ours.by_component == theirs.by_component
    assert ours.by_layer_kind == theirs.by_layer_kind


def test_group_limited_routing_flags_are_the_presets():
    # DeepSeek-V3's node-limited routing: --moe-router-num-groups 8 --moe-router-group-topk 4
    # (megatron/core/transformer/moe/moe_utils.py `group_limited_topk`), n_group / topk_group.
    ours, theirs = architecture_from_megatron_args(DEEPSEEK_V3, "x").moe, get_preset("deepseek-v3").moe
    assert (ours.route_groups, ours.route_group_topk) == (theirs.route_groups, theirs.route_group_topk) == (8, 4)
    unlimited = {k: v for k, v in DEEPSEEK_V3.items() if "group" not in k}
    assert architecture_from_megatron_args(unlimited, "x").moe.group_limited is False


def test_published_totals_through_megatron_args():
    assert _counts(LLAMA3_8B).total == 8_030_261_248
    assert (_counts(MIXTRAL_8X7B).total, _counts(MIXTRAL_8X7B).active) == (46_702_792_704, 12_879_925_248)
    assert _counts(GPT3_175B).total == 174_604_259_328


def test_tokenizer_vocab_is_padded_to_128_times_tp():
    # GPT-2's 50,257 tokens become 50,304 rows (a multiple of 128), tied: one extra matrix slice.
    args = {**GPT3_175B, "--vocab-size": "50257"}
    del args["--padded-vocab-size"]
    arch = architecture_from_megatron_args(args, "gpt3")
    assert arch.vocab == 50_304
    assert count_params(arch).total == 174_604_259_328 + (50_304 - 50_257) * 12288
    assert "vocab 50257 padded to 50304 (a multiple of 128 x tp 1)" in arch.extra["assumed"]
    # Llama 3's 128,256 tokens at tp 8: a multiple of 1024, 129,024 rows in embedding and output.
    llama = {**LLAMA3_8B, "--vocab-size": "128256"}
    del llama["--padded-vocab-size"]
    assert architecture_from_megatron_args(llama, "llama").vocab == 129_024
    assert padded_vocab_size(128256, 128, 8) == 129_024
    assert padded_vocab_size(32000, 256, 1) == 32_000


# Tiny configs counted by megatron-core 0.16.1 itself: GPTModel with the local layer spec built on
# the meta device from the TransformerConfig these arguments give (rope_type "rope" for MLA; the
# core-attention module, which holds no parameters, replaced for MLA), named_parameters() summed,
# mtp.* apart.
MEGATRON_CORE_MEASURED = [
    # Defaults: LayerNorm q/k norms per head, biases on QKV, experts and router, learned positions,
    # tied output; MoE layers 0 and 2 (--moe-layer-freq 2: i % 2 == 0).
    ({"--num-layers": "3", "--hidden-size": "48", "--num-attention-heads": "6", "--group-query-attention": True,
      "--num-query-groups": "2", "--kv-channels": "10", "--qk-layernorm": True, "--max-position-embeddings": "64",
      "--vocab-size": "1000", "--num-experts": "4", "--moe-router-topk": "2", "--moe-ffn-hidden-size": "40",
      "--moe-layer-freq": "2"}, 126_988, 0),
    # MLA without q LoRA nor latent norms, a gated shared expert, a dense first layer, 2 MTP layers.
    ({"--num-layers": "3", "--hidden-size": "64", "--num-attention-heads": "4", "--multi-latent-attention": True,
      "--kv-lora-rank": "24", "--qk-head-dim": "12", "--qk-pos-emb-head-dim": "8", "--v-head-dim": "10",
      "--ffn-hidden-size": "150", "--swiglu": True, "--normalization": "RMSNorm", "--disable-bias-linear": True,
      "--untie-embeddings-and-output-weights": True, "--position-embedding-type": "rope",
      "--padded-vocab-size": "1000", "--num-experts": "6", "--moe-router-topk": "2", "--moe-ffn-hidden-size": "30",
      "--moe-shared-expert-intermediate-size": "60", "--moe-shared-expert-gate": True,
      "--moe-layer-freq": "[0,1,1]", "--mtp-num-layers": "2"}, 285_824, 133_760),
    # Learnable softmax offsets (gpt-oss sinks), QKV bias only, the --swiglu default width, tp 2 padding.
    ({"--num-layers": "2", "--hidden-size": "96", "--num-attention-heads": "8", "--group-query-attention": True,
      "--num-query-groups": "4", "--swiglu": True, "--disable-bias-linear": True, "--add-qkv-bias": True,
      "--softmax-type": "learnable", "--normalization": "RMSNorm", "--position-embedding-type": "rope",
      "--untie-embeddings-and-output-weights": True, "--vocab-size": "1000",
      "--tensor-model-parallel-size": "2"}, 400_240, 0),
]


@pytest.mark.parametrize("args, total, mtp", MEGATRON_CORE_MEASURED, ids=["defaults-moe", "mla-mtp", "sinks"])
def test_counts_match_megatron_core(args, total, mtp):
    counted = _counts(args)
    assert (counted.total, counted.mtp) == (total, mtp)


def test_megatron_defaults():
    arch = architecture_from_megatron_args(
        {"num_layers": 2, "hidden_size": 4096, "num_attention_heads": 32, "max_position_embeddings": 2048,
         "padded_vocab_size": 1024}, "defaults")
    a = arch.attention
    assert (arch.norm, arch.position, arch.max_positions, arch.tied_embeddings) == ("layernorm", "learned", 2048, True)
    assert (a.num_kv_heads, a.head_dim, a.qkv_bias, a.out_bias, arch.mlp_bias) == (32, 128, True, True, True)
    assert (arch.gated_mlp, arch.ffn, arch.moe) == (False, 4 * 4096, None)
    assert arch.extra["assumed"] == ["ffn hidden size 16384 (default 4h)"]
    # --group-query-attention without --num-query-groups: Megatron's default of one group (MQA).
    gqa = architecture_from_megatron_args({k: v for k, v in LLAMA3_8B.items() if k != "--num-query-groups"}, "mqa")
    assert gqa.attention.num_kv_heads == 1
    # Without --group-query-attention, --num-query-groups is not read.
    mha = architecture_from_megatron_args({k: v for k, v in LLAMA3_8B.items() if k != "--group-query-attention"}, "mha")
    assert mha.attention.num_kv_heads == 32


def test_swiglu_default_width_is_two_thirds_of_4h_in_multiples_of_64():
    args = {k: v for k, v in LLAMA3_8B.items() if k != "--ffn-hidden-size"}
    arch = architecture_from_megatron_args(args, "swiglu")
    assert arch.ffn == int(4 * 4096 * 2 / 3 / 64) * 64 == 10_880


def test_moe_layer_pattern():
    assert moe_layer_pattern("1", 3) == (0, 1, 2)
    assert moe_layer_pattern("2", 5) == (0, 2, 4)  # megatron-core: i % freq == 0
    assert moe_layer_pattern("([0]*3+[1]*2)", 5) == (3, 4)
    assert moe_layer_pattern("[1,0,1]", 3) == (0, 2)
    assert moe_layer_pattern("([1]*1+[0]*1)*2", 4) == (0, 2)
    with pytest.raises(InputError, match=r"^--moe-layer-freq: must give 0 or 1 for each of the 4 layers"):
        moe_layer_pattern("[1,0,1]", 4)
    with pytest.raises(InputError, match=r"^--moe-layer-freq: cannot read"):
        moe_layer_pattern("[__import__('os')]", 1)


def test_no_moe_layer_means_a_dense_model():
    arch = architecture_from_megatron_args({**MIXTRAL_8X7B, "--num-layers": "2", "--moe-layer-freq": "[0,0]"}, "x")
    assert arch.moe is None


@pytest.mark.parametrize("change, message", [
    ({"--hidden-size": None}, r"^--hidden-size: missing"),
    ({"--hidden-size": "4k"}, r"^--hidden-size: must be an integer, got '4k'"),
    ({"--normalization": "ScaleNorm"}, r"^--normalization: must be one of LayerNorm, RMSNorm, got 'ScaleNorm'"),
    ({"--position-embedding-type": "relative"}, r"^--position-embedding-type: must be one of learned_absolute"),
    ({"--position-embedding-type": "learned_absolute"}, r"^--max-position-embeddings: missing"),
    ({"--padded-vocab-size": None}, r"^--padded-vocab-size: missing: give --padded-vocab-size, or --vocab-size"),
    ({"--num-experts": "0"}, r"^--num-experts: must be >= 1, got 0"),
    ({"--num-layers": True}, r"^--num-layers: needs a value"),
])
def test_bad_arguments_name_the_flag(change, message):
    args = {k: v for k, v in {**LLAMA3_8B, **change}.items() if v is not None}  # None: flag left out
    with pytest.raises(InputError, match=message):
        architecture_from_megatron_args(args, "bad")


def test_shared_experts_with_biases_are_refused_like_megatron_core():
    args = {k: v for k, v in DEEPSEEK_V3.items() if k != "--disable-bias-linear"}
    with pytest.raises(InputError, match=r"^--moe-shared-expert-intermediate-size: megatron-core builds shared"):
        architecture_from_megatron_args(args, "biased")


def test_flags_that_change_shapes_but_are_not_modeled_are_recorded():
    args = {**LLAMA3_8B, "--hybrid-override-pattern": "M-M*", "--mamba-state-dim": "128",
            "--attention-output-gate": True, "--micro-batch-size": "1"}
    arch = architecture_from_megatron_args(args, "hybrid")
    assert arch.extra["unmodeled_flags"] == ["--hybrid-override-pattern", "--mamba-state-dim",
                                             "--attention-output-gate"]
    assert architecture_from_megatron_args(LLAMA3_8B, "llama").extra["unmodeled_flags"] == []


def test_store_true_flags_given_false_are_off():
    arch = architecture_from_megatron_args({**LLAMA3_8B, "--swiglu": False, "--disable-bias-linear": "false"}, "x")
    assert not arch.gated_mlp and arch.mlp_bias
