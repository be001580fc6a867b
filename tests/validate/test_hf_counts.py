"""The planner's parameter counts against transformers itself, on random valid configs.

For each family, hypothesis draws small configs (every shape field the family reads, often left
out so the class default applies), transformers builds `AutoModelForCausalLM.from_config` on the
meta device (no memory, no weights: as validation/memory/tools/hf_param_count.py does) and the planner's
`count_params` must give `sum(p.numel())` exactly, tied tensors once; for MoE families also the
active count, total - routed + routed * top_k / num_experts, with the routed experts found by
their module names.

Run: .venv/bin/python -m pytest -m validate tests/validate -q
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForPreTraining  # noqa: E402
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES  # noqa: E402

from planner.model import architecture_from_config, count_params, load_architecture  # noqa: E402

pytestmark = pytest.mark.validate

EXAMPLES_PER_FAMILY = 200
"""Random configs per family (at least 50 asked; 200 x 19 families take about 25 s on 2 cores)."""

VOCAB = st.integers(1, 300)
LAYERS = st.integers(1, 4)
WIDTH = st.integers(1, 48)
HEAD_DIM = st.sampled_from([2, 4, 6, 8, 12, 16])  # even: RoPE rotates pairs
FLAG = st.booleans()


def hf_counts(config: dict) -> tuple[int, int]:
    """Total and active parameters of the transformers model for a config.json mapping."""
    fields = dict(config)
    model_type = fields.pop("model_type")
    hf_config = AutoConfig.for_model(model_type, **fields)
    with torch.device("meta"):
        if type(hf_config) in AutoModelForCausalLM._model_mapping:
            model = AutoModelForCausalLM.from_config(hf_config)
        else:  # Mistral 4: its causal LM class is mapped for pretraining only
            model = AutoModelForPreTraining.from_config(hf_config)
    total = sum(p.numel() for p in model.parameters())  # each shared (tied) tensor once
    routed = {name: p.numel() for name, p in model.named_parameters() if ".experts." in name}
    if not routed:
        return total, total
    hf = model.config
    experts = next(getattr(hf, k) for k in ("num_local_experts", "num_experts", "n_routed_experts")
                   if getattr(hf, k, None))
    routed_total = sum(routed.values())
    assert routed_total % experts == 0
    return total, total - routed_total + routed_total // experts * hf.num_experts_per_tok


def _set(draw, config: dict, key: str, strategy) -> None:
    """Set the field, or leave it out (the class default then applies) half of the time."""
    value = draw(st.none() | st.tuples(strategy))
    if value is not None:
        config[key] = value[0]


@st.composite
def _heads(draw) -> tuple[int, int]:
    """Query heads and a key/value head count dividing them (MHA, GQA, MQA)."""
    heads = draw(st.integers(1, 8))
    kv = draw(st.sampled_from([d for d in range(1, heads + 1) if heads % d == 0]))
    return heads, kv


@st.composite
def _decoder(draw, model_type: str, *, head_dim: bool = True, kv_default_is_heads: bool = False,
             intermediate: bool = True) -> dict:
    """The fields Llama-style families share. An explicit head_dim may differ from hidden / heads
    (Gemma, Qwen3); without one, transformers derives it as hidden / heads."""
    heads, kv = draw(_heads())
    per_head = draw(HEAD_DIM)
    config = {"model_type": model_type, "vocab_size": draw(VOCAB), "num_hidden_layers": draw(LAYERS),
              "num_attention_heads": heads, "pad_token_id": None}
    # transformers' config validators want hidden_size a multiple of the heads, head_dim or not.
    config["hidden_size"] = heads * draw(st.integers(1, 12))
    if head_dim and draw(FLAG):
        config["head_dim"] = per_head
    else:
        config["hidden_size"] = heads * per_head
    if kv_default_is_heads and kv == heads:
        _set(draw, config, "num_key_value_heads", st.just(kv))
    else:
        config["num_key_value_heads"] = kv
    if intermediate:
        config["intermediate_size"] = draw(WIDTH)
    _set(draw, config, "tie_word_embeddings", FLAG)
    return config


@st.composite
def _experts(draw, config: dict, count_key: str, top_k_key: str = "num_experts_per_tok") -> dict:
    experts = draw(st.integers(1, 6))
    config[count_key] = experts
    config[top_k_key] = draw(st.integers(1, experts))
    return config


@st.composite
def _sparse_layers(draw, config: dict) -> dict:
    """Qwen-MoE layer rule: decoder_sparse_step and mlp_only_layers."""
    config["decoder_sparse_step"] = draw(st.integers(1, 3))
    config["mlp_only_layers"] = draw(st.lists(st.integers(0, config["num_hidden_layers"] - 1), unique=True))
    config["moe_intermediate_size"] = draw(WIDTH)
    return config


@st.composite
def llama(draw):
    config = draw(_decoder("llama", kv_default_is_heads=True))
    _set(draw, config, "attention_bias", FLAG)
    _set(draw, config, "mlp_bias", FLAG)
    return config


@st.composite
def llama_like(draw, model_type: str):
    """Llama's modules under another model_type (SmolLM3)."""
    config = draw(_decoder(model_type))
    _set(draw, config, "attention_bias", FLAG)
    _set(draw, config, "mlp_bias", FLAG)
    return config


@st.composite
def apertus(draw):
    """Apertus: bias on all four attention projections or none; xIELU's two scalars per layer."""
    config = draw(_decoder("apertus"))
    _set(draw, config, "attention_bias", FLAG)
    _set(draw, config, "tie_word_embeddings", FLAG)
    return config


@st.composite
def olmoe(draw):
    """OLMoE: hidden / heads per head (its q norm spans hidden_size), optional attention biases."""
    config = draw(_experts(draw(_decoder("olmoe", head_dim=False)), "num_experts"))
    _set(draw, config, "attention_bias", FLAG)
    _set(draw, config, "tie_word_embeddings", FLAG)
    return config


@st.composite
def mixtral(draw):
    return draw(_experts(draw(_decoder("mixtral")), "num_local_experts"))


@st.composite
def qwen2_moe(draw):
    config = draw(_sparse_layers(draw(_experts(draw(_decoder("qwen2_moe", head_dim=False)), "num_experts"))))
    config["shared_expert_intermediate_size"] = draw(st.integers(0, 48))
    _set(draw, config, "qkv_bias", FLAG)
    return config


@st.composite
def qwen3(draw, model_type: str = "qwen3"):
    config = draw(_decoder(model_type))
    _set(draw, config, "attention_bias", FLAG)
    return config


@st.composite
def qwen3_moe(draw):
    return draw(_sparse_layers(draw(_experts(draw(qwen3("qwen3_moe")), "num_experts"))))


@st.composite
def deepseek(draw, model_type: str):
    """MLA with or without q LoRA, dense-first layers, shared and routed experts."""
    layers, heads = draw(LAYERS), draw(st.integers(1, 6))
    config = {"model_type": model_type, "vocab_size": draw(VOCAB), "num_hidden_layers": layers,
              # The config validator wants hidden_size a multiple of the heads.
              "hidden_size": heads * draw(HEAD_DIM), "intermediate_size": draw(WIDTH),
              "moe_intermediate_size": draw(WIDTH), "num_attention_heads": heads,
              "q_lora_rank": draw(st.none() | st.integers(1, 16)), "kv_lora_rank": draw(st.integers(1, 16)),
              "qk_nope_head_dim": draw(st.integers(0, 8)), "qk_rope_head_dim": draw(HEAD_DIM),
              "v_head_dim": draw(st.integers(1, 8)), "n_shared_experts": draw(st.integers(0, 2)),
              "first_k_dense_replace": draw(st.integers(0, layers)), "n_group": 1, "topk_group": 1,
              "pad_token_id": None}
    config = draw(_experts(config, "n_routed_experts"))
    _set(draw, config, "attention_bias", FLAG)
    _set(draw, config, "tie_word_embeddings", FLAG)
    if model_type == "deepseek_v2":
        _set(draw, config, "mlp_bias", FLAG)
    return config


@st.composite
def glm4_moe_lite(draw):
    """DeepSeek-V3's MLA and experts; MoE layers from `mlp_layer_types` or the class rule (all
    but the first), whatever `first_k_dense_replace` says."""
    config = draw(deepseek("deepseek_v3"))
    config["model_type"] = "glm4_moe_lite"
    if draw(FLAG):
        config["mlp_layer_types"] = draw(st.lists(st.sampled_from(["dense", "sparse"]),
                                                  min_size=config["num_hidden_layers"],
                                                  max_size=config["num_hidden_layers"]))
    return config


@st.composite
def ministral(draw):
    """Mistral's modules; every layer sliding unless the window is null (no parameters either way)."""
    config = draw(_decoder("ministral"))
    # MinistralAttention reads head_dim as given, None included (its class default): configs give it.
    config.setdefault("head_dim", config["hidden_size"] // config["num_attention_heads"])
    _set(draw, config, "sliding_window", st.none() | st.integers(16, 4096))
    return config


@st.composite
def mistral4(draw):
    """Mistral Small 4: DeepSeek-V3's MLA and experts under its own class defaults."""
    config = draw(deepseek("deepseek_v3"))
    config["model_type"] = "mistral4"
    return config


@st.composite
def dots1(draw):
    """GQA with one bias switch for all four projections and per-head q/k norms; dense-first layers,
    shared and routed experts (both counts required: the class defaults are None)."""
    config = draw(_decoder("dots1"))
    layers = config["num_hidden_layers"]
    config.update(n_routed_experts=draw(st.integers(1, 8)), n_shared_experts=draw(st.integers(0, 2)))
    config["num_experts_per_tok"] = draw(st.integers(1, config["n_routed_experts"]))
    for key, strategy in (("moe_intermediate_size", WIDTH), ("first_k_dense_replace", st.integers(0, layers)),
                          ("attention_bias", FLAG), ("sliding_window", st.none() | st.integers(16, 4096)),
                          ("max_window_layers", st.integers(0, layers))):
        _set(draw, config, key, strategy)
    return config


@st.composite
def solar_open(draw):
    """Every layer MoE, no dense MLP; q/k/v biases; the widths with class defaults left out half of the time."""
    config = draw(_decoder("solar_open", intermediate=False))
    for key, strategy in (("moe_intermediate_size", WIDTH), ("n_shared_experts", st.integers(0, 2)),
                          ("attention_bias", FLAG)):
        _set(draw, config, key, strategy)
    return draw(_experts(config, "n_routed_experts"))


@st.composite
def exaone_moe(draw):
    """Per-head q/k norms; MoE layers from mlp_layer_types or first_k_dense_replace."""
    config = draw(_decoder("exaone_moe", intermediate=False))
    layers = config["num_hidden_layers"]
    for key, strategy in (("intermediate_size", WIDTH), ("moe_intermediate_size", WIDTH),
                          ("num_shared_experts", st.integers(0, 2)), ("first_k_dense_replace", st.integers(0, layers)),
                          ("mlp_layer_types", st.lists(st.sampled_from(["dense", "sparse"]), min_size=layers,
                                                       max_size=layers))):
        _set(draw, config, key, strategy)
    return draw(_experts(config, "num_experts"))


@st.composite
def glm4_moe(draw):
    """GQA with q/k/v biases and an optional per-head q/k norm, partial RoPE, dense-first layers,
    shared and routed experts; the widths with class defaults left out half of the time."""
    config = draw(_decoder("glm4_moe", intermediate=False))
    layers = config["num_hidden_layers"]
    for key, strategy in (("intermediate_size", WIDTH), ("moe_intermediate_size", WIDTH),
                          ("n_shared_experts", st.integers(0, 2)), ("first_k_dense_replace", st.integers(0, layers)),
                          ("attention_bias", FLAG), ("use_qk_norm", FLAG),
                          ("partial_rotary_factor", st.sampled_from([0.25, 0.5, 1.0]))):
        _set(draw, config, key, strategy)
    return draw(_experts(config, "n_routed_experts"))


@st.composite
def glm(draw, model_type: str):
    """GLM-4 and GLM-4-0414: GQA with optional q/k/v biases, partial RoPE, fused gate_up_proj;
    GLM-4-0414 with two more norms per layer."""
    config = draw(_decoder(model_type))
    for key, strategy in (("attention_bias", FLAG), ("partial_rotary_factor", st.sampled_from([0.25, 0.5, 1.0]))):
        _set(draw, config, key, strategy)
    return config


@st.composite
def starcoder2(draw):
    """GQA and a plain GELU MLP with one bias switch, LayerNorms."""
    config = draw(_decoder("starcoder2", head_dim=False))
    _set(draw, config, "use_bias", FLAG)
    return config


@st.composite
def phimoe(draw):
    """Mixtral's experts with optional attention and output-layer biases, LayerNorms."""
    config = draw(_experts(draw(_decoder("phimoe", head_dim=False)), "num_local_experts"))
    for key in ("attention_bias", "lm_head_bias"):
        _set(draw, config, key, FLAG)
    return config


@st.composite
def granitemoe(draw, model_type: str):
    """Mixtral's experts with optional attention biases; a shared MLP of any width (0: none)."""
    config = draw(_experts(draw(_decoder(model_type, head_dim=False)), "num_local_experts"))
    _set(draw, config, "attention_bias", FLAG)
    if model_type == "granitemoeshared":
        _set(draw, config, "shared_intermediate_size", st.integers(0, 48))
    return config


@st.composite
def cohere(draw, model_type: str):
    """Parallel attention and MLP, bias-free LayerNorms, Command R's optional q/k norms."""
    config = draw(_decoder(model_type, head_dim=False))
    _set(draw, config, "attention_bias", FLAG)
    if model_type == "cohere":
        _set(draw, config, "use_qk_norm", FLAG)
    return config


@st.composite
def seed_oss(draw):
    config = draw(_decoder("seed_oss"))
    config.setdefault("head_dim", config["hidden_size"] // config["num_attention_heads"])  # its class reads it as given
    for key in ("attention_bias", "attention_out_bias", "mlp_bias"):
        _set(draw, config, key, FLAG)
    return config


@st.composite
def ernie4_5(draw):
    config = draw(_decoder("ernie4_5"))
    _set(draw, config, "use_bias", FLAG)
    return config


@st.composite
def ernie4_5_moe(draw):
    """MoE layers by interval and index range (-1: to the last), shared experts, use_bias."""
    config = draw(_decoder("ernie4_5_moe", intermediate=False))
    layers = config["num_hidden_layers"]
    for key, strategy in (("intermediate_size", WIDTH), ("moe_intermediate_size", WIDTH), ("use_bias", FLAG),
                          ("moe_num_shared_experts", st.integers(0, 2)), ("moe_layer_interval", st.integers(1, 3)),
                          ("moe_layer_start_index", st.integers(0, layers)),
                          ("moe_layer_end_index", st.sampled_from([-1, *range(layers)]))):
        _set(draw, config, key, strategy)
    return draw(_experts(config, "moe_num_experts", "moe_k"))


@st.composite
def hunyuan_v1_moe(draw):
    """Every layer MoE with one shared MLP of the experts' width."""
    return draw(_experts(draw(hunyuan_v1_dense("hunyuan_v1_moe")), "num_experts", "moe_topk"))


@st.composite
def hunyuan_v1_dense(draw, model_type: str = "hunyuan_v1_dense"):
    config = draw(_decoder(model_type, kv_default_is_heads=True))
    config.setdefault("head_dim", config["hidden_size"] // config["num_attention_heads"])  # its class reads it as given
    _set(draw, config, "attention_bias", FLAG)
    return config


@st.composite
def gemma(draw, model_type: str):
    config = draw(_decoder(model_type))
    _set(draw, config, "attention_bias", FLAG)
    return config


@st.composite
def olmo2(draw, model_type: str = "olmo2"):
    config = draw(_decoder(model_type, head_dim=False, kv_default_is_heads=True))
    _set(draw, config, "attention_bias", FLAG)
    return config


@st.composite
def llama4_text(draw):
    """MoE layers every interleave_moe_layer_step-th layer, or listed in moe_layers."""
    config = draw(_experts(draw(_decoder("llama4_text")), "num_local_experts"))
    config["intermediate_size_mlp"] = draw(WIDTH)
    layers = config["num_hidden_layers"]
    if draw(FLAG):
        config["moe_layers"] = draw(st.lists(st.integers(0, layers - 1), unique=True))
    else:
        config["interleave_moe_layer_step"] = draw(st.integers(1, 3))
    _set(draw, config, "attention_bias", FLAG)
    return config


@st.composite
def gpt_oss(draw):
    config = draw(_experts(draw(_decoder("gpt_oss")), "num_local_experts"))
    _set(draw, config, "attention_bias", FLAG)
    return config


@st.composite
def gpt_neox(draw):
    config = draw(_decoder("gpt_neox", head_dim=False))
    config["num_key_value_heads"] = config["num_attention_heads"]  # fused MHA only
    _set(draw, config, "attention_bias", FLAG)
    _set(draw, config, "use_parallel_residual", FLAG)
    _set(draw, config, "rotary_pct", st.sampled_from([0.25, 0.5, 1.0]))
    return config


@st.composite
def gpt2(draw):
    heads = draw(st.integers(1, 8))
    config = {"model_type": "gpt2", "vocab_size": draw(VOCAB), "n_layer": draw(LAYERS), "n_head": heads,
              "n_embd": heads * draw(HEAD_DIM)}
    _set(draw, config, "n_inner", WIDTH)
    _set(draw, config, "n_positions", st.integers(1, 64))
    _set(draw, config, "tie_word_embeddings", FLAG)
    return config


@st.composite
def falcon(draw):
    """Falcon-7B (multi-query, one norm), Falcon-40B/180B (new decoder: kv groups, two norms),
    RW-style sequential blocks with biases and ALiBi."""
    heads, kv = draw(_heads())
    config = {"model_type": "falcon", "vocab_size": draw(VOCAB), "num_hidden_layers": draw(LAYERS),
              "num_attention_heads": heads, "hidden_size": heads * draw(HEAD_DIM), "pad_token_id": None}
    _set(draw, config, "new_decoder_architecture", FLAG)
    if config.get("new_decoder_architecture"):
        config["num_kv_heads"] = kv
    _set(draw, config, "multi_query", FLAG)
    _set(draw, config, "parallel_attn", FLAG)
    _set(draw, config, "num_ln_in_parallel_attn", st.sampled_from([1, 2]))
    _set(draw, config, "bias", FLAG)
    _set(draw, config, "alibi", FLAG)
    _set(draw, config, "ffn_hidden_size", WIDTH)
    _set(draw, config, "tie_word_embeddings", FLAG)
    return config


FAMILIES = {
    "gpt2": gpt2(), "gpt_neox": gpt_neox(), "llama": llama(), "mistral": _decoder("mistral"),
    "mixtral": mixtral(), "qwen2": _decoder("qwen2", head_dim=False), "qwen2_moe": qwen2_moe(),
    "qwen3": qwen3(), "qwen3_moe": qwen3_moe(), "deepseek_v2": deepseek("deepseek_v2"),
    "deepseek_v3": deepseek("deepseek_v3"), "gemma": gemma("gemma"), "gemma2": gemma("gemma2"),
    "gemma3_text": gemma("gemma3_text"), "phi3": _decoder("phi3", head_dim=False, kv_default_is_heads=True),
    "olmo2": olmo2(), "olmo3": olmo2("olmo3"), "falcon": falcon(), "llama4_text": llama4_text(), "gpt_oss": gpt_oss(),
    "glm4_moe": glm4_moe(), "seed_oss": seed_oss(), "smollm3": llama_like("smollm3"), "ernie4_5": ernie4_5(),
    "hunyuan_v1_dense": hunyuan_v1_dense(), "exaone4": _decoder("exaone4"), "ernie4_5_moe": ernie4_5_moe(),
    "hunyuan_v1_moe": hunyuan_v1_moe(), "glm": glm("glm"), "glm4": glm("glm4"),
    "starcoder2": starcoder2(), "phimoe": phimoe(), "granitemoe": granitemoe("granitemoe"),
    "granitemoeshared": granitemoe("granitemoeshared"), "cohere": cohere("cohere"), "cohere2": cohere("cohere2"),
    "glm4_moe_lite": glm4_moe_lite(), "ministral": ministral(), "ministral3": _decoder("ministral3"),
    "mistral4": mistral4(), "dots1": dots1(), "solar_open": solar_open(), "exaone_moe": exaone_moe(),
    "arcee": llama_like("arcee"), "apertus": apertus(), "olmoe": olmoe(),
}


@pytest.fixture(scope="module", autouse=True)
def quiet_transformers():
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # config notices about defaults, not failures
    yield
    transformers.logging.set_verbosity(verbosity)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op")  # width-0 shared experts
@pytest.mark.parametrize("family", sorted(FAMILIES))
@settings(max_examples=EXAMPLES_PER_FAMILY, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_counts_equal_transformers(family, data):
    if family not in CONFIG_MAPPING_NAMES:
        pytest.skip(f"transformers {transformers.__version__} has no {family}")
    config = data.draw(FAMILIES[family], label="config")
    counted = count_params(architecture_from_config(config, family))
    assert (counted.total, counted.active) == hf_counts(config)


# -- multimodal configs: their text decoders ------------------------------------------------------

def hf_text_counts(config: dict) -> tuple[int, int]:
    """Total and active parameters of a multimodal model's text decoder: the parameters of its
    language model and output layer (each tied tensor once), built as transformers builds the
    whole model (AutoModelForImageTextToText)."""
    from transformers import AutoModelForImageTextToText

    fields = dict(config)
    model_type = fields.pop("model_type")
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(AutoConfig.for_model(model_type, **fields))
    text = {name: p.numel() for name, p in model.named_parameters()
            if "language_model." in name or name.startswith("lm_head.")}
    total = sum(text.values())
    routed = {name: n for name, n in text.items() if ".experts." in name}
    if not routed:
        return total, total
    hf = model.config.get_text_config()
    experts = next(getattr(hf, k) for k in ("num_local_experts", "num_experts", "n_routed_experts")
                   if getattr(hf, k, None))
    routed_total = sum(routed.values())
    return total, total - routed_total + routed_total // experts * hf.num_experts_per_tok


@st.composite
def multimodal(draw, model_type: str, text_type: str | None, text):
    """A multimodal config around a text decoder's (its model_type `text_type`, or none: the class
    default), the output layer's tying left to the class default half of the time."""
    text_config = draw(text)
    if text_type is None:
        text_config.pop("model_type")
    else:
        text_config["model_type"] = text_type
    config = {"model_type": model_type, "text_config": text_config}
    _set(draw, config, "tie_word_embeddings", FLAG)
    return config


@st.composite
def glm4v_moe_text(draw):
    config = draw(glm4_moe())
    config.pop("use_qk_norm", None)  # Glm4vMoeTextConfig has no q/k norms
    return config


@st.composite
def qwen3_vl_moe_text(draw):
    return draw(_sparse_layers(draw(_experts(draw(qwen3("qwen3_vl_moe_text")), "num_experts"))))


MULTIMODAL = {
    "gemma3": multimodal("gemma3", "gemma3_text", gemma("gemma3_text")),
    "llama4": multimodal("llama4", "llama4_text", llama4_text()),
    "mistral3": multimodal("mistral3", "mistral", _decoder("mistral")),
    "qwen2_5_vl": multimodal("qwen2_5_vl", None, _decoder("qwen2_5_vl_text", head_dim=False)),
    "qwen3_vl": multimodal("qwen3_vl", "qwen3_vl_text", qwen3("qwen3_vl_text")),
    "qwen3_vl_moe": multimodal("qwen3_vl_moe", "qwen3_vl_moe_text", qwen3_vl_moe_text()),
    "glm4v_moe": multimodal("glm4v_moe", "glm4v_moe_text", glm4v_moe_text()),
    "kimi_k25": multimodal("kimi_k25", "kimi_k2", deepseek("deepseek_v3")),
}


@pytest.mark.parametrize("family", sorted(MULTIMODAL))
@settings(max_examples=EXAMPLES_PER_FAMILY // 4, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_text_decoders_of_multimodal_configs_equal_transformers(family, data):
    """The planner reads a multimodal config's text decoder (hf_config.MULTIMODAL): its count equals
    the language model and output layer of the whole model transformers builds, tied or not as
    the multimodal class ties them."""
    if family not in CONFIG_MAPPING_NAMES:
        pytest.skip(f"transformers {transformers.__version__} has no {family}")
    config = data.draw(MULTIMODAL[family], label="config")
    with pytest.warns(UserWarning, match="encoders"):
        arch = load_architecture(config)
    counted = count_params(arch)
    assert (counted.total, counted.active) == hf_text_counts(config)
