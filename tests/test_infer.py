"""Inference memory (planner/cost/inference.py) and `planner infer`: seed figures, KV cache per token by
hand from config.json, quantization scales, sliding windows, TP, GPUs needed, exit codes."""
import json
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest
from typer.testing import CliRunner

from planner.cli.app import app
from planner.cost import inference as inf
from planner.cost.memory import CUDA_CONTEXT_BYTES
from planner.model import (
    architecture_from_config,
    count_params,
    list_presets,
    load_architecture,
)
from planner.model.context import context_limit, layer_windows
from planner.model.presets import preset_config
from planner.model.quantization import weight_format_from_config
from planner.spec.errors import InputError

runner = CliRunner()
GB, GiB = 10**9, 2**30

# Public config.json fields (Hugging Face meta-llama/Meta-Llama-3-70B, deepseek-ai/DeepSeek-V3,
# google/gemma-3-1b-pt text fields).
LLAMA3_70B = {"model_type": "llama", "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
              "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 128256,
              "max_position_embeddings": 8192, "tie_word_embeddings": False}
DEEPSEEK_V3 = {"model_type": "deepseek_v3", "hidden_size": 7168, "intermediate_size": 18432,
               "moe_intermediate_size": 2048, "num_hidden_layers": 61, "first_k_dense_replace": 3,
               "num_attention_heads": 128, "num_key_value_heads": 128, "n_routed_experts": 256,
               "n_shared_experts": 1, "num_experts_per_tok": 8, "q_lora_rank": 1536, "kv_lora_rank": 512,
               "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "vocab_size": 129280,
               "num_nextn_predict_layers": 1, "tie_word_embeddings": False}
GEMMA3_1B = {"model_type": "gemma3_text", "hidden_size": 1152, "intermediate_size": 6912,
             "num_hidden_layers": 26, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256,
             "sliding_window": 512, "sliding_window_pattern": 6, "vocab_size": 262144,
             "tie_word_embeddings": True}


def run(*args):
    return runner.invoke(app, ["infer", *[str(a) for a in args]])


def run_json(*args):
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def write_config(tmp_path, fields):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(fields))
    return path


def serving(name, precision="bf16", batch=1, context=4096, kv_dtype="auto", allowance=None):
    arch = load_architecture(name)
    return inf.Serving(arch, precision, inf.resolve_kv_dtype(kv_dtype, precision), batch, context,
                       layer_windows(arch, preset_config(name)), allowance)


# --- The seed: params × bytes per element, GB (10^9) and GiB (2^30) kept apart -------------------

SEED = [  # params, precision, allowance, bytes, GB, GiB
    (7e9, "fp32", None, 28_000_000_000, "28.00", "26.08"),
    (7e9, "fp32", "1.2", 33_600_000_000, "33.60", "31.29"),
    (7e9, "fp16", None, 14_000_000_000, "14.00", "13.04"),
    (7e9, "fp16", "1.2", 16_800_000_000, "16.80", "15.65"),
    (7e9, "int8", None, 7_000_000_000, "7.00", "6.52"),
    (7e9, "int8", "1.2", 8_400_000_000, "8.40", "7.82"),
    (7e9, "int4", None, 3_500_000_000, "3.50", "3.26"),
    (7e9, "int4", "1.2", 4_200_000_000, "4.20", "3.91"),
    (14e9, "fp32", None, 56_000_000_000, "56.00", "52.15"),
    (14e9, "fp32", "1.2", 67_200_000_000, "67.20", "62.58"),
    (14e9, "fp16", None, 28_000_000_000, "28.00", "26.08"),
    (14e9, "fp16", "1.2", 33_600_000_000, "33.60", "31.29"),
    (14e9, "int8", None, 14_000_000_000, "14.00", "13.04"),
    (14e9, "int8", "1.2", 16_800_000_000, "16.80", "15.65"),
    (14e9, "int4", None, 7_000_000_000, "7.00", "6.52"),
    (14e9, "int4", "1.2", 8_400_000_000, "8.40", "7.82"),
]


@pytest.mark.parametrize("params, precision, allowance, expected, gb, gib", SEED)
def test_seed_weights_rule_of_thumb(params, precision, allowance, expected, gb, gib):
    factor = Fraction(allowance) if allowance else None
    n_bytes = inf.rule_of_thumb_weight_bytes(int(params), precision, factor)
    assert n_bytes == expected
    assert (f"{n_bytes / GB:.2f}", f"{n_bytes / GiB:.2f}") == (gb, gib)


@pytest.mark.parametrize("params, precision, allowance, expected, gb, gib", SEED)
def test_seed_through_the_cli(params, precision, allowance, expected, gb, gib):
    count = f"{int(params) // 10**9}B"
    doc = run_json(count, "--precision", precision, "--allowance", allowance or "none")
    m = doc["memory"]
    assert doc["weights_only"] and m["kv_cache"] == m["activations"] == 0
    if allowance:  # the 1.2 allowance replaces the CUDA context: total = 1.2 × weights
        assert m["total"] == expected and m["weights"] * Fraction(allowance) == expected
    else:
        assert m["weights"] == expected and m["runtime"] == CUDA_CONTEXT_BYTES


def test_seed_human_output_labels_gb_and_gib():
    result = run("7B", "--precision", "fp32")
    assert result.exit_code == 0
    assert "28,000,000,000 B" in result.stdout
    assert "28.00 GB" in result.stdout and "26.08 GiB" in result.stdout


def test_llama_7b_seed_count_is_llama_shape_with_a_64000_token_vocabulary():
    # The original LLaMA-7B (= Llama-2-7B shapes: vocab 32000, h 4096, 32 layers, ffn 11008) has
    # 6,738,415,616 parameters; the seed's 7,000,559,616 is exactly the same shape with vocab 64000:
    # 2 · 64000 · 4096 (embedding + lm_head) + 32 · (4 · 4096² + 3 · 4096 · 11008 + 2 · 4096) + 4096.
    assert count_params(load_architecture("llama2-7b")).total == 6_738_415_616
    seed_shape = dict(preset_config("llama2-7b"), vocab_size=64000)
    total = count_params(architecture_from_config(seed_shape, "seed-7b")).total
    assert total == 2 * 64000 * 4096 + 32 * (4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096) + 4096 == 7_000_559_616
    n_bytes = inf.rule_of_thumb_weight_bytes(total, "fp32")
    assert n_bytes == 28_002_238_464
    assert (f"{n_bytes / GB:.1f}", f"{n_bytes / GiB:.2f}") == ("28.0", "26.08")
    assert run_json("7000559616", "--precision", "fp32")["memory"]["weights"] == 28_002_238_464


# --- KV cache per token, by hand from config.json -----------------------------------------------

def test_llama3_70b_gqa_kv_cache_per_token(tmp_path):
    doc = run_json(write_config(tmp_path, LLAMA3_70B), "--context", 8192)
    assert doc["kv_cache_bytes_per_token"] == 2 * 80 * 8 * 128 * 2 == 327_680
    assert doc["memory"]["kv_cache"] == 327_680 * 8192


def test_deepseek_v3_mla_kv_cache_per_token(tmp_path):
    doc = run_json(write_config(tmp_path, DEEPSEEK_V3), "--precision", "fp8", "--batch", 4)
    assert doc["kv_cache_bytes_per_token"] == 61 * (512 + 64) * 2 == 70_272
    assert doc["memory"]["kv_cache"] == 70_272 * 4096 * 4


@pytest.mark.parametrize("kv_dtype, per_token", [("fp8", 163_840), ("int8", 163_840), ("fp32", 655_360),
                                                 ("fp16", 327_680)])
def test_kv_dtype_sets_the_bytes_per_element(kv_dtype, per_token):
    assert inf.kv_cache_bytes_per_token(load_architecture("llama3-70b"), kv_dtype) == per_token


def test_mha_and_mqa_kv_cache():
    assert inf.kv_cache_bytes_per_token(load_architecture("llama2-7b"), "bf16") == 2 * 32 * 32 * 128 * 2
    gemma3 = load_architecture("gemma3-1b")  # MQA: one KV head of 256
    assert inf.kv_cache_bytes_per_token(gemma3, "bf16") == 2 * 26 * 1 * 256 * 2


def test_tensor_parallel_splits_kv_heads_but_not_the_mla_latent():
    llama = load_architecture("llama3-70b")
    assert inf.kv_cache_bytes_per_token(llama, "bf16", tp=4) == 2 * 80 * 2 * 128 * 2
    # 8 KV heads over 16 ranks: each rank keeps one (replicated), as vLLM does.
    assert inf.kv_cache_bytes_per_token(llama, "bf16", tp=16) == 2 * 80 * 1 * 128 * 2
    deepseek = load_architecture("deepseek-v3")
    assert inf.kv_cache_bytes_per_token(deepseek, "bf16", tp=8) == 70_272


# --- Sliding windows ----------------------------------------------------------------------------

def test_gemma3_five_local_layers_to_one_global(tmp_path):
    arch = architecture_from_config(GEMMA3_1B, "gemma-3-1b")
    windows = layer_windows(arch, GEMMA3_1B)
    assert [i for i, w in enumerate(windows) if w is None] == [5, 11, 17, 23]
    per_layer = 1 * (256 + 256) * 2
    doc = run_json(write_config(tmp_path, GEMMA3_1B), "--context", 32768)
    assert doc["window_layers"] == 22
    assert doc["memory"]["kv_cache"] == per_layer * (22 * 512 + 4 * 32768) == 145_752_064


def test_gemma2_alternates_local_and_global_layers():
    s = serving("gemma2-9b", context=8192)
    assert s.windows[:4] == (4096, None, 4096, None)
    per_layer = 8 * (256 + 256) * 2
    assert inf.serving_memory(s).kv_cache == per_layer * (21 * 4096 + 21 * 8192) == 2_113_929_216


def test_olmo3_attends_within_its_window_but_every_fourth_layer():
    """Olmo3Config builds layer_types as sliding but every fourth layer (configuration_olmo3.py),
    windows of 4,096 unless sliding_window says; a config's own layer_types win."""
    olmo3 = {"model_type": "olmo3", "vocab_size": 100278, "hidden_size": 4096, "intermediate_size": 11008,
             "num_hidden_layers": 8, "num_attention_heads": 32}
    arch = architecture_from_config(olmo3, "olmo-3")
    assert layer_windows(arch, olmo3) == (4096, 4096, 4096, None) * 2
    assert layer_windows(arch, {**olmo3, "sliding_window": 1024}) == (1024, 1024, 1024, None) * 2
    listed = ["full_attention"] * 7 + ["sliding_attention"]
    assert layer_windows(arch, {**olmo3, "layer_types": listed}) == (None,) * 7 + (4096,)
    # The weights are OLMo 2's.
    assert replace(architecture_from_config({**olmo3, "model_type": "olmo2"}, "olmo-3"),
                   family="olmo3") == arch


def test_exaone4_globals_follow_its_pattern():
    """Exaone4Config's layer_types (transformers 5.25): sliding but every sliding_window_pattern-th
    layer (4 by default), all global without a window."""
    exaone = {"model_type": "exaone4", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150,
              "num_hidden_layers": 6, "num_attention_heads": 4, "num_key_value_heads": 2}
    arch = architecture_from_config(exaone, "exaone-4")
    assert layer_windows(arch, exaone) == (4096, 4096, 4096, None, 4096, 4096)
    assert layer_windows(arch, {**exaone, "sliding_window_pattern": 3, "sliding_window": 128}) == \
        (128, 128, None, 128, 128, None)
    assert layer_windows(arch, {**exaone, "sliding_window": None}) == (None,) * 6
    with pytest.raises(InputError, match="sliding_window_pattern"):
        layer_windows(arch, {**exaone, "sliding_window_pattern": "LLLG"})


def test_dots1_k_exaone_and_ministral_windows():
    """transformers 5.25's layer_types: dots.llm1 slides from max_window_layers on (62 by default),
    K-EXAONE as EXAONE 4.0, Ministral on every layer (window 4,096 by default), Ministral 3 on every
    layer only when the config sets a window (none by default)."""
    base = {"vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150, "num_hidden_layers": 6,
            "num_attention_heads": 4, "num_key_value_heads": 2, "n_routed_experts": 4, "n_shared_experts": 1,
            "num_experts_per_tok": 2}
    dots = {**base, "model_type": "dots1"}
    arch = architecture_from_config(dots, "dots")
    assert layer_windows(arch, dots) == (None,) * 6
    assert layer_windows(arch, {**dots, "max_window_layers": 4}) == (None,) * 4 + (4096,) * 2
    assert layer_windows(arch, {**dots, "max_window_layers": 4, "sliding_window": None}) == (None,) * 6
    exaone = {**base, "model_type": "exaone_moe", "num_experts": 4}
    arch = architecture_from_config(exaone, "k-exaone")
    assert layer_windows(arch, exaone) == (4096, 4096, 4096, None, 4096, 4096)
    assert layer_windows(arch, {**exaone, "sliding_window_pattern": 3, "sliding_window": 128}) == (128, 128, None) * 2
    for model_type, default in (("ministral", 4096), ("ministral3", None)):
        config = {**base, "model_type": model_type}
        arch = architecture_from_config(config, model_type)
        assert layer_windows(arch, config) == (default,) * 6
        assert layer_windows(arch, {**config, "sliding_window": 1024}) == (1024,) * 6
        assert layer_windows(arch, {**config, "sliding_window": None}) == (None,) * 6


def test_command_a_and_starcoder2_windows():
    """Cohere2Config (Command A) builds layer_types as sliding but every sliding_window_pattern-th
    layer (4), windows of 4,096; StarCoder2 attends within `sliding_window` on every layer when the
    config sets one, in full otherwise (transformers 5.25)."""
    cohere2 = {"model_type": "cohere2", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150,
               "num_hidden_layers": 8, "num_attention_heads": 4}
    arch = architecture_from_config(cohere2, "command-a")
    assert layer_windows(arch, cohere2) == (4096, 4096, 4096, None) * 2
    assert layer_windows(arch, {**cohere2, "sliding_window_pattern": 2, "sliding_window": 512}) == (512, None) * 4
    starcoder2 = {"model_type": "starcoder2", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 150,
                  "num_hidden_layers": 3, "num_attention_heads": 4}
    arch = architecture_from_config(starcoder2, "starcoder2")
    assert layer_windows(arch, starcoder2) == (None,) * 3
    assert layer_windows(arch, {**starcoder2, "sliding_window": 4096}) == (4096,) * 3


def test_mistral_caps_every_layer_at_its_window():
    s = serving("mistral-7b", context=32768)
    assert set(s.windows) == {4096}
    assert inf.serving_memory(s).kv_cache == 32 * 8 * 256 * 2 * 4096


def test_qwen_sliding_window_only_when_enabled_and_no_config_means_full():
    arch = load_architecture("qwen2-7b")
    assert set(layer_windows(arch, preset_config("qwen2-7b"))) == {None}
    enabled = dict(preset_config("qwen2-7b"), use_sliding_window=True, sliding_window=1024, max_window_layers=20)
    windows = layer_windows(arch, enabled)
    assert windows[:20] == (None,) * 20 and windows[20:] == (1024,) * 8
    assert set(layer_windows(arch, None)) == {None}


def test_llama4_chunked_layers_every_fourth_global():
    windows = serving("llama4-scout").windows
    assert windows[:4] == (8192, 8192, 8192, None) and windows.count(None) == 12


# --- Weights at each precision, scales and dense leftovers --------------------------------------

@pytest.mark.parametrize("name", list_presets())
def test_16_bit_and_fp32_weights_are_params_times_bytes(name):
    total = count_params(load_architecture(name)).total
    assert inf.serving_memory(serving(name, "bf16")).weights == 2 * total
    assert inf.serving_memory(serving(name, "fp32")).weights == 4 * total


def test_quantization_scales_per_scheme():
    n = 4096 * 4096
    assert inf.linear_weight_bytes(4096, 4096, False, "fp8") == n + 4                  # per-tensor fp32
    assert inf.linear_weight_bytes(4096, 4096, False, "int8") == n + 4 * 4096          # fp32 per row
    assert inf.linear_weight_bytes(4096, 4096, False, "int4") == n // 2 + 32 * 4096 * 2 + 32 * 4096 // 2
    nf4 = inf.linear_weight_bytes(4096, 4096, False, "nf4")
    assert nf4 == n // 2 + n // 64 + 4 * (n // 64 // 256)
    assert (nf4 - n // 2) * 8 / n == 0.126953125  # QLoRA §3: 8/64 + 32/(64·256) ≈ 0.127 bits/param
    assert inf.linear_weight_bytes(4096, 4096, True, "int4") - inf.linear_weight_bytes(4096, 4096, False, "int4") \
        == 2 * 4096  # biases stay 16-bit


def test_llama2_7b_int4_keeps_embeddings_and_lm_head_16_bit():
    # AWQ g128 per matrix: codes n/2 + fp16 scale and 4-bit zero per (128 inputs × output).
    attention = 4 * (4096 * 4096 // 2 + 32 * 4096 * 2 + 32 * 4096 // 2)         # 4 × 8,716,288
    gate_up = 2 * (4096 * 11008 // 2 + 32 * 11008 * 2 + 32 * 11008 // 2)       # 2 × 23,425,024
    down = 11008 * 4096 // 2 + 86 * 4096 * 2 + 86 * 4096 // 2                  # 23,425,024
    norms = 2 * 4096 * 2
    embed_and_head = 2 * 32000 * 4096 * 2
    expected = 32 * (attention + gate_up + down + norms) + embed_and_head + 4096 * 2
    assert inf.serving_memory(serving("llama2-7b", "int4")).weights == expected == 3_889_307_648


def test_tensor_parallel_weights_per_gpu():
    s = serving("llama3-70b")
    arch = s.arch
    one, eight = inf.serving_memory(s, tp=1).weights, inf.serving_memory(s, tp=8).weights
    # Everything splits by 8 except the replicated norms, row-parallel biases (none here) and the
    # K/V projections, whose 8 heads split exactly.
    norms = count_params(arch).by_component["norms"] * 2
    assert eight == (one - norms) // 8 + norms


# --- Activations, runtime, allowance ------------------------------------------------------------

def test_prefill_working_set_of_llama2_7b_by_hand():
    s = serving("llama2-7b", context=4096)
    h, i, heads = 4096, 11008, 32
    attention = 2 * (2 * h + h + 2 * h + h) + 4 * heads       # residual, norm out, q, k, v, output; fp32 LSE
    mlp = 2 * (2 * h + 3 * i)                                 # residual, norm out, act(gate), up, product
    assert inf.layer_working_set_bytes_per_token(s.arch, 0, 2, 1) == max(attention, mlp) == 82_432
    assert inf.serving_memory(s).activations == 82_432 * 4096


def test_logits_of_the_last_position_only():
    arch = load_architecture("llama3-8b")
    assert inf.logits_bytes(arch, 8, 2) == 8 * 128256 * (2 + 4)
    # A tiny batch × context: the logits are the larger term.
    assert inf.serving_memory(serving("llama3-8b", context=1, batch=8)).activations == 8 * 128256 * 6


def test_allowance_replaces_the_cuda_context():
    plain = inf.serving_memory(serving("llama3-8b"))
    ruled = inf.serving_memory(serving("llama3-8b", allowance=Fraction("1.2")))
    live = plain.weights + plain.kv_cache + plain.activations
    assert plain.runtime == CUDA_CONTEXT_BYTES and plain.total == live + CUDA_CONTEXT_BYTES
    assert ruled.total == -(-live * 6 // 5) and ruled.runtime == ruled.total - live


# --- GPUs needed, what fits, largest batch and context -------------------------------------------

def test_llama3_70b_needs_two_h100_and_fits_on_one_h200():
    doc = run_json("llama3-70b", "--gpu", "h100_sxm_80gb")
    assert (doc["gpus_needed"], doc["layout"], doc["fits"]) == (2, {"tp": 2, "pp": 1}, False)
    assert "h200_sxm_141gb" in doc["fits_on"] and "h100_sxm_80gb" not in doc["fits_on"]
    assert doc["max_batch"] == doc["max_context"] == 0


def test_gpus_needed_is_the_smallest_layout():
    s = serving("deepseek-v3", "fp8")
    capacity = 80 * GiB
    layout = inf.smallest_layout(lambda t, p: inf.serving_memory(s, t, p).total <= capacity,
                                 inf.tensor_parallel_degrees(s.arch, 8), s.arch.num_layers)
    assert (layout.tp, layout.pp) == (8, 2)
    assert inf.serving_memory(s, 8, 2).total <= capacity < inf.serving_memory(s, 8, 1).total


def test_largest_batch_and_context_fit_and_one_more_does_not():
    s = serving("llama3-8b", context=8192)
    capacity = 80 * GiB
    batch = inf.largest_fitting(lambda b: inf.serving_memory(replace(s, batch=b)).total, capacity)
    context = inf.largest_fitting(lambda c: inf.serving_memory(replace(s, context=c)).total, capacity)
    assert inf.serving_memory(replace(s, batch=batch)).total <= capacity
    assert inf.serving_memory(replace(s, batch=batch + 1)).total > capacity
    assert inf.serving_memory(replace(s, context=context)).total <= capacity
    assert inf.serving_memory(replace(s, context=context + 1)).total > capacity


def test_json_has_the_contract_keys_and_human_output_its_units():
    doc = run_json("llama3-8b", "--tp", 2, "--kv-dtype", "fp8", "--allowance", "1.2")
    assert {"weights", "kv_cache", "activations", "total"} <= set(doc["memory"])
    assert isinstance(doc["gpus_needed"], int) and doc["allowance"] == 1.2 and doc["kv_dtype"] == "fp8"
    assert all(isinstance(v, int) for v in doc["memory"].values())
    out = run("llama3-8b").stdout
    for unit in ("GB (10^9 B)", "GiB (2^30 B)", "B per token", "tokens", "sequences"):
        assert unit in out


# --- Bad input: exit 2, one paragraph naming the option ------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    (["llama3-8b", "--precision", "int3"], "--precision: unknown value 'int3'"),
    (["llama3-8b", "--kv-dtype", "int4"], "--kv-dtype: unknown value 'int4'"),
    (["llama3-8b", "--batch", "-1"], "--batch: must be an integer >= 1, got -1"),
    (["llama3-8b", "--context", "0"], "--context: must be an integer >= 1, got 0"),
    (["llama3-8b", "--gpu", "h1000"], "--gpu: unknown GPU 'h1000'"),
    (["llama3-8b", "--tp", "3"], "--tp: 3 does not divide the 32 attention heads"),
    (["llama3-8b", "--allowance", "0.8"], "--allowance: must be 'none' or a factor >= 1"),
    (["llama9-8b"], "model: unknown model preset 'llama9-8b'"),
])
def test_bad_input_exits_2_naming_the_option(args, fragment):
    result = run(*args)
    assert result.exit_code == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.output


def test_bad_input_with_json_prints_an_error_document():
    result = run("llama3-8b", "--batch", "-4", "--json")
    assert result.exit_code == 2
    assert "--batch" in json.loads(result.stdout)["error"]


def test_docs_seed_table_matches_the_model():
    from conftest import ROOT

    text = (ROOT / "docs" / "examples.md").read_text()
    rows = [line.split("|")[1:-1] for line in text.splitlines()
            if line.startswith("| 7B |") or line.startswith("| 14B |")]
    assert len(rows) == len(SEED)
    for (params, precision, allowance, expected, gb, gib), row in zip(SEED, rows):
        model, prec, allow, n_bytes, gb_doc, gib_doc = (cell.strip() for cell in row)
        assert (model, prec, allow) == (f"{int(params) // 10**9}B", precision, allowance or "none")
        assert (int(n_bytes.replace(",", "")), gb_doc, gib_doc) == (expected, gb, gib)


# --- What config.json says: stored weight formats and the context it states ---------------------

CONFIGS = Path(__file__).parent / "data" / "configs"
LLAMA2_7B = {**preset_config("llama2-7b"), "max_position_embeddings": 4096}


def _mxfp4_linear(d_in, d_out):
    # OCP MX v1.0: 32 FP4 (E2M1) codes of 4 bits share one 8-bit E8M0 scale; bias bf16.
    return d_in * d_out * 4 // 8 + d_in * d_out // 32 + 2 * d_out


def test_gpt_oss_20b_mxfp4_experts_and_bf16_rest():
    doc = run_json(CONFIGS / "gpt-oss-20b.json")
    assert (doc["precision"], doc["precision_source"]) == ("mxfp4 experts", "config.json quantization_config")
    h, f, experts, layers = 2880, 2880, 32, 24
    expert = 2 * _mxfp4_linear(h, f) + _mxfp4_linear(f, h)  # gate and up (fused gate_up_proj), down
    expert_params = 3 * h * f + 2 * f + h
    rest_params = 20_914_757_184 - layers * experts * expert_params
    assert doc["memory"]["weights"] == layers * experts * expert + 2 * rest_params == 13_761_264_768
    assert round(doc["memory"]["weights"] / GiB, 1) == 12.8
    # --precision wins over the config: every parameter in bf16.
    assert run_json(CONFIGS / "gpt-oss-20b.json", "--precision", "bf16")["memory"]["weights"] == 2 * 20_914_757_184


def test_deepseek_v3_fp8_blocks_fit_on_eight_h200():
    doc = run_json(CONFIGS / "deepseek-v3.json", "--gpu", "h200_sxm_141gb")
    assert doc["precision"] == "fp8 block 128x128"
    assert (doc["gpus_needed"], doc["layout"]) == (8, {"tp": 8, "pp": 1})
    assert run_json(CONFIGS / "deepseek-v3.json", "--gpu", "h100_sxm_80gb")["layout"] == {"tp": 8, "pp": 2}
    # kv_b_proj (512 -> 128 x 256): e4m3 codes, 1 B each, plus an fp32 scale per 128 x 128 block.
    fmt = weight_format_from_config(json.loads((CONFIGS / "deepseek-v3.json").read_text()))
    assert inf.linear_weight_bytes(512, 32768, False, fmt) == 512 * 32768 + 4 * (32768 // 128) * (512 // 128)


def _packed_int4(d_in, d_out, group, g_idx):
    # GPTQ/AWQ: 4-bit codes in int32 words, per group of `group` inputs an fp16 scale and a 4-bit
    # zero (packed in int32) per output; GPTQ adds an int32 group index per input.
    groups = d_in // group
    return d_in * d_out // 2 + groups * d_out // 2 + 2 * groups * d_out + (4 * d_in if g_idx else 0)


@pytest.mark.parametrize("method, g_idx", [("gptq", True), ("awq", False)])
def test_gptq_and_awq_int4_with_groups_and_zeros(tmp_path, method, g_idx):
    q = {"quant_method": method, "bits": 4, "group_size": 128, "desc_act": False, "zero_point": True}
    doc = run_json(write_config(tmp_path, {**LLAMA2_7B, "quantization_config": q}))
    assert doc["precision"] == f"{method} int4 g128"
    h, i, layers, vocab = 4096, 11008, 32, 32000
    layer = 4 * _packed_int4(h, h, 128, g_idx) + 2 * _packed_int4(h, i, 128, g_idx) + _packed_int4(i, h, 128, g_idx)
    norms_b = 2 * 2 * h  # two RMSNorms per layer, bf16
    dense = 2 * vocab * h + h  # embedding, lm_head, final norm: bf16
    assert doc["memory"]["weights"] == layers * (layer + norms_b) + 2 * dense


def test_bitsandbytes_configs_match_the_named_precisions(tmp_path):
    nf4 = {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4",
           "bnb_4bit_use_double_quant": True}
    int8 = {"quant_method": "bitsandbytes", "load_in_8bit": True}
    for q, precision in ((nf4, "nf4"), (int8, "int8")):
        stored = run_json(write_config(tmp_path, {**LLAMA2_7B, "quantization_config": q}))
        named = run_json(write_config(tmp_path, LLAMA2_7B), "--precision", precision)
        assert stored["memory"]["weights"] == named["memory"]["weights"]
    # Without double quantization each 64-weight block keeps an fp32 absmax: 4/64 B more per weight.
    plain = weight_format_from_config({"quantization_config": {**nf4, "bnb_4bit_use_double_quant": False}})
    assert inf.linear_weight_bytes(4096, 4096, False, plain) == 4096 * 4096 // 2 + 4 * 4096 * 4096 // 64


def test_unknown_quant_method_exits_2_naming_the_file(tmp_path):
    path = write_config(tmp_path, {**LLAMA2_7B, "quantization_config": {"quant_method": "hqq"}})
    result = run(path)
    assert result.exit_code == 2
    assert f"{path}: quantization_config.quant_method: unknown quant_method 'hqq'" in result.stderr
    assert run(path, "--precision", "int4").exit_code == 0


def test_largest_context_stops_at_the_stated_length():
    doc = run_json(CONFIGS / "gpt-oss-20b.json", "--gpu", "h200_sxm_141gb")
    assert doc["max_context"] == 4096 * 32 == 131_072 < doc["max_context_memory"]
    assert doc["max_context_bound"] == "rope_scaling yarn: original_max_position_embeddings 4,096 x factor 32"
    out = run(CONFIGS / "gpt-oss-20b.json", "--gpu", "h200_sxm_141gb").stdout
    assert "largest context bound by the model: rope_scaling yarn" in " ".join(out.split())


def test_memory_binds_when_it_is_the_smaller_limit(tmp_path):
    doc = run_json(write_config(tmp_path, LLAMA3_70B), "--gpu", "h200_sxm_141gb", "--precision", "int4")
    assert doc["context_limit"] == {"tokens": 8192, "source": "max_position_embeddings"}
    assert doc["max_context"] == 8192 < doc["max_context_memory"]
    doc = run_json(write_config(tmp_path, LLAMA2_7B), "--batch", 64)
    assert doc["max_context_bound"] == "memory" and doc["max_context"] == doc["max_context_memory"] < 4096


@pytest.mark.parametrize("fields, tokens", [
    ({"max_position_embeddings": 131072,  # Llama 3.1: llama3 rope states its full length
      "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192}}, 131072),
    ({"max_position_embeddings": 40960,  # Qwen3 with YaRN enabled as its model card says
      "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}}, 131072),
    ({"max_position_embeddings": 4096, "rope_scaling": {"type": "linear", "factor": 2.0}}, 8192),
    ({"max_position_embeddings": 4096, "rope_parameters": {"rope_type": "default", "rope_theta": 1e4}}, 4096),
    ({"n_positions": 1024}, 1024),
    ({}, None),
])
def test_context_limit_as_vllm_derives_it(fields, tokens):
    limit = context_limit(fields)
    assert (limit.tokens if limit else None) == tokens


def test_yarn_without_its_original_length_is_bad_input():
    with pytest.raises(InputError, match="rope_scaling.original_max_position_embeddings"):
        context_limit({"max_position_embeddings": 4096, "rope_scaling": {"type": "yarn", "factor": 4}})
