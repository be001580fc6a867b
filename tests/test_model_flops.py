"""FLOPs per token against the published closed forms (Korthikanti et al. 2022 App. A, PaLM App. B)."""
import pytest

from planner.model import (
    count_params,
    flops_per_token,
    forward_flops_per_token,
    get_preset,
    layer_flops,
    logits_flops,
    training_flops_per_token,
)


def _matmul_params(name):
    """Parameters that are matrix weights: all but the input embedding and the norms (the presets
    used here have no biases)."""
    counted = count_params(get_preset(name))
    return counted, counted.active - counted.embedding - counted.by_component["norms"]


@pytest.mark.parametrize("name, seq_len", [("gpt3-175b", 2048), ("gpt2-small", 1024)])
def test_gpt_matches_korthikanti_appendix_a(name, seq_len):
    # Model FLOPs per step, batch B, no recompute: 72·B·L·s·h²·(1 + s/(6h) + V/(12hL)).
    # Exact: both count 2 FLOPs per multiply-add of the weight matmuls, QK^T and AV over all
    # s keys (no causal mask) and the logits, and leave out biases, norms, softmax and GELU.
    arch = get_preset(name)
    h, layers, vocab, s, batch = arch.hidden, arch.num_layers, arch.vocab, seq_len, 8
    paper = 72 * batch * layers * s * h**2 * (1 + s / (6 * h) + vocab / (12 * h * layers))
    ours = training_flops_per_token(arch, seq_len, causal=False) * batch * seq_len
    assert ours == pytest.approx(paper, rel=1e-12)


def test_gqa_swiglu_matches_palm_appendix_b():
    # PaLM App. B: 6N + 12·L·H·Q·T per token (full attention matrix), N the matmul weights.
    _, weights = _matmul_params("llama3-8b")
    layers, heads, head_dim, seq_len = 32, 32, 128, 8192
    palm = 6 * weights + 12 * layers * heads * head_dim * seq_len
    assert training_flops_per_token(get_preset("llama3-8b"), seq_len, causal=False) == palm


def test_causal_mask_halves_the_attention_term():
    arch = get_preset("llama3-8b")
    saved = training_flops_per_token(arch, 4096, causal=False) - training_flops_per_token(arch, 4096)
    assert saved == 6 * 32 * 32 * 128 * 4096  # half of PaLM's 12·L·H·Q·T


@pytest.mark.parametrize("name, seq_len, margin", [
    ("llama3-8b", 4096, 0.005),
    ("llama2-7b", 2048, 0.025),
    ("gpt3-175b", 2048, 0.015),
])
def test_dense_training_is_about_6n(name, seq_len, margin):
    # 6N (Kaplan et al. 2020; PaLM App. B) leaves out attention and counts the embedding lookup.
    total = count_params(get_preset(name)).total
    assert training_flops_per_token(get_preset(name), seq_len) == pytest.approx(6 * total, rel=margin)


@pytest.mark.parametrize("name", ["mixtral-8x7b", "qwen3-30b-a3b", "deepseek-v3"])
def test_moe_linear_flops_follow_active_params(name):
    # Forward: 2 FLOPs per active matmul weight (top-k experts, shared experts, router, lm_head).
    counted, active_weights = _matmul_params(name)
    arch = get_preset(name)
    linear = sum(layer_flops(arch, i, 4096).linear for i in range(arch.num_layers))
    assert linear + logits_flops(arch) == 2 * active_weights
    assert active_weights < counted.total / 3  # not the total: 6N of MoE uses active params


def test_mla_attention_uses_qk_and_v_head_dims():
    # DeepSeek-V3: 128 heads, q/k head dim 128 + 64 (RoPE), v head dim 128.
    arch = get_preset("deepseek-v3")
    assert layer_flops(arch, 0, 4096, causal=False).attention == 2 * 4096 * 128 * (192 + 128)
    assert layer_flops(arch, 0, 4096).attention == 4096 * 128 * (192 + 128)


def test_deepseek_dense_and_moe_layers_differ():
    arch = get_preset("deepseek-v3")
    dense, sparse = layer_flops(arch, 2, 4096), layer_flops(arch, 3, 4096)
    h = 7168
    mlp_dense = 3 * h * 18432
    mlp_sparse = (8 + 1) * 3 * h * 2048 + 256 * h  # top-8 routed + 1 shared expert + router
    assert sparse.linear - dense.linear == 2 * (mlp_sparse - mlp_dense)
    assert sparse.attention == dense.attention


def test_logits_and_forward_totals():
    arch = get_preset("llama3-8b")
    assert logits_flops(arch) == 2 * 4096 * 128256
    layers = sum(layer_flops(arch, i, 2048).total for i in range(32))
    assert forward_flops_per_token(arch, 2048) == layers + logits_flops(arch)
    assert training_flops_per_token(arch, 2048) == 3 * forward_flops_per_token(arch, 2048)


def test_flops_per_token_gives_training_and_inference_causal_and_full():
    arch = get_preset("llama3-8b")
    flops = flops_per_token(arch, 4096)
    assert flops.seq_len == 4096
    assert flops.inference == forward_flops_per_token(arch, 4096)
    assert flops.training == 3 * flops.inference
    assert flops.inference_full_attention == forward_flops_per_token(arch, 4096, causal=False)
    assert flops.training_full_attention == 3 * flops.inference_full_attention
    # The causal mask halves QK^T and AV: 2·s/2·H·(d_qk + d_v) per layer and token, forward.
    assert flops.inference_full_attention - flops.inference == 32 * 2 * 2048 * 32 * 256
