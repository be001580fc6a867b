"""The activations the planner charges one Hugging Face decoder layer against what autograd saves in
transformers itself.

For each family, a small model is built by `AutoModelForCausalLM.from_config` in bf16 on the CPU
(SDPA attention) and run forward once in training mode; torch's saved-tensor hooks record every
tensor autograd keeps while one middle layer runs, once per storage, leaving out the parameters
and what the model hands every layer (RoPE's cos and sin, counted once per model). The planner's
`layer_activation_bytes_per_token` for the same layer (FSDP2 over Hugging Face modules, pure bf16,
no recompute) must agree within TOLERANCE bytes per token, which the shapes keep far below what
one norm (4h + 4 + 2h), an fp32 normalized copy (2h more) or an fp32 router input (2h more) weigh.
Dense families are measured under torch.autocast too.

Left out, because the CPU does not run what a GPU would: families whose attention has no SDPA
path in transformers (eager attention keeps the s x s probabilities), configs with dropout by default
(GPT-2, Seed-OSS: dropout keeps masks and, in attention, the math path), and Falcon (its explicit
mask reaches SDPA).

Run: .venv/bin/python -m pytest -m validate tests/validate/test_hf_activations.py
"""
from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

from planner.cost.memory import layer_activation_bytes_per_token  # noqa: E402
from planner.cost.plan import ParallelDims, Plan  # noqa: E402
from planner.cost.workload import Workload  # noqa: E402
from planner.engines.profiles import engine_traits  # noqa: E402
from planner.model import architecture_from_config  # noqa: E402

pytestmark = pytest.mark.validate

SEQ = 128
LAYER = 1
"""The measured layer: a middle one (its input needs a gradient); an MoE layer where the first is dense."""

_BASE = {"vocab_size": 512, "hidden_size": 256, "intermediate_size": 320, "num_hidden_layers": 3,
         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "pad_token_id": None}
_EXPERTS = {"moe_intermediate_size": 96, "num_experts_per_tok": 2}
_MLA = {"num_key_value_heads": 4, "head_dim": 8, "q_lora_rank": 64, "kv_lora_rank": 32, "qk_nope_head_dim": 8,
        "qk_rope_head_dim": 8, "v_head_dim": 16, "n_group": 1, "topk_group": 1}  # head_dim: the RoPE width

CONFIGS = {
    "llama": {"model_type": "llama"},
    "mistral": {"model_type": "mistral"},
    "qwen3": {"model_type": "qwen3"},
    "granite": {"model_type": "granite"},
    "smollm3": {"model_type": "smollm3"},
    "exaone4": {"model_type": "exaone4"},
    "ernie4_5": {"model_type": "ernie4_5"},
    "glm": {"model_type": "glm"},
    "phi3": {"model_type": "phi3"},
    "starcoder2": {"model_type": "starcoder2"},
    "nemotron": {"model_type": "nemotron"},
    "arcee": {"model_type": "arcee"},
    # xIELU in Python (transformers activations.py): its input, alpha_p·x, expm1's output, that
    # minus x, and the positive mask.
    "apertus": {"model_type": "apertus"},
    "gpt_neox": {"model_type": "gpt_neox"},
    # Gemma's RMSNorm and OLMo 2's keep the normalized input in fp32; Gemma 3 and GLM-4-0414 also
    # normalize each half's output (four norms per layer); Gemma 3's and OLMo 2's q/k norms.
    "gemma": {"model_type": "gemma"},
    "gemma3_text": {"model_type": "gemma3_text"},
    "glm4": {"model_type": "glm4"},
    "olmo2": {"model_type": "olmo2"},
    "olmo3": {"model_type": "olmo3"},
    # Dropout on each half's output (Seed-OSS by default), attention dropout off (CPU SDPA takes its
    # math path with it; CUDA's flash kernels keep only their RNG state).
    "seed_oss": {"model_type": "seed_oss", "attention_dropout": 0.0},
    "starcoder2-dropout": {"model_type": "starcoder2", "residual_dropout": 0.1},
    "phi3-dropout": {"model_type": "phi3", "resid_pdrop": 0.1},
    # One mean-subtracting norm feeds both halves of a parallel block.
    "cohere": {"model_type": "cohere", "use_qk_norm": False},
    "cohere2": {"model_type": "cohere2"},
    "qwen3_moe": {"model_type": "qwen3_moe", "num_experts": 8, **_EXPERTS},
    # OLMoE: whole-projection q/k norms before its experts (head_dim: hidden / heads, as it requires).
    "olmoe": {"model_type": "olmoe", "num_experts": 8, "head_dim": 64, "intermediate_size": 96,
              "num_experts_per_tok": 2},
    # Qwen2-MoE's gated shared expert keeps its output for the gate.
    "qwen2_moe": {"model_type": "qwen2_moe", "num_experts": 8, "shared_expert_intermediate_size": 64, **_EXPERTS},
    "mixtral": {"model_type": "mixtral", "num_local_experts": 4, "num_experts_per_tok": 2},
    # Llama 4 runs every expert on every token (engine.expert_passes); layer 1 is a NoPE layer,
    # without the weightless L2 norm of q and k the RoPE layers apply (not modelled: no parameters,
    # 4 (q + kv) + 4 per head and token).
    "llama4_text": {"model_type": "llama4_text", "intermediate_size": 96, "intermediate_size_mlp": 320,
                    "num_local_experts": 4, "num_experts_per_tok": 1, "interleave_moe_layer_step": 1,
                    "no_rope_layers": [1, 0, 1]},
    # Multi-latent attention, q/k as wide as v (CPU SDPA takes its math path otherwise).
    "deepseek_v3": {"model_type": "deepseek_v3", **_MLA, "n_routed_experts": 8, "n_shared_experts": 1,
                    "first_k_dense_replace": 1, **_EXPERTS},
    "glm4_moe_lite": {"model_type": "glm4_moe_lite", **_MLA, "n_routed_experts": 8, "n_shared_experts": 1,
                      **_EXPERTS},
    "deepseek_v2": {"model_type": "deepseek_v2", **_MLA, "q_lora_rank": None, "n_routed_experts": 8,
                    "n_shared_experts": 2, "first_k_dense_replace": 1, **_EXPERTS},
    # DeepSeek-V3-style routers: an fp32 linear of an fp32 copy of the input.
    "glm4_moe": {"model_type": "glm4_moe", "n_routed_experts": 8, "n_shared_experts": 1, "first_k_dense_replace": 1,
                 **_EXPERTS},
    "dots1": {"model_type": "dots1", "n_routed_experts": 8, "n_shared_experts": 1, "first_k_dense_replace": 1,
              **_EXPERTS},
    "solar_open": {"model_type": "solar_open", "n_routed_experts": 8, "n_shared_experts": 1, **_EXPERTS},
    "exaone_moe": {"model_type": "exaone_moe", "num_experts": 8, "num_shared_experts": 1, **_EXPERTS},
}

TOLERANCE = 2 * 64 + 8 * 16 + 16
"""Bytes per token the two sides may differ by (here for q = 64 and heads of 16; `tolerance`
for each family's): where RoPE concatenates (partial rotary), CPU SDPA's output follows the
query's layout and o_proj keeps a copy (e q; a GPU's flash kernels write (b, s, h, d) and none is
made); RoPE tables some families rebuild in each layer (ERNIE's and GLM's interleaved fp32 cos
and sin, at most 8 bytes per head feature); and the (1 + weight) vectors of Gemma's norms (per
layer, not per token)."""


def _moe(config: dict) -> bool:
    return any(k in config for k in ("num_experts", "num_local_experts", "n_routed_experts"))


def tolerance(config: dict) -> float:
    """TOLERANCE for the family's own q width and head dim."""
    att = architecture_from_config(config, config["model_type"]).attention
    return 2 * att.q_dim + 8 * att.head_dim + 16


def measured_bytes_per_token(config: dict, autocast: bool = False) -> float:
    """Under `autocast`, an fp32 model runs in torch.autocast(bf16): the 16-bit copies of the
    layer's weights that autocast caches (the planner's weight-cast term, not activations) are
    taken out, at 2 bytes per weight of its matrices."""
    fields = dict(config)
    hf = AutoConfig.for_model(fields.pop("model_type"), **fields)
    hf._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(hf, dtype=torch.float32 if autocast else torch.bfloat16)
    model.train()
    decoder = model.get_decoder()
    # Llama 4's decoder is the model itself; GPT-2's and BLOOM's blocks are `h`.
    owners = (decoder, model.base_model, getattr(model, "model", None))
    layers = next(getattr(m, name) for m in owners for name in ("layers", "h") if hasattr(m, name))
    skipped = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}
    recording = [False]

    def pack(t):
        if recording[0] and t.untyped_storage().data_ptr() not in skipped:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    def start(module, args, kwargs):
        shared = [*args[1:], *(v for k, v in kwargs.items() if k != "hidden_states")]
        for value in shared:
            for t in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(t, torch.Tensor):
                    skipped.add(t.untyped_storage().data_ptr())
        recording[0] = True

    layers[LAYER].register_forward_pre_hook(start, with_kwargs=True)
    layers[LAYER].register_forward_hook(lambda module, args, out: recording.__setitem__(0, False))
    ids = torch.randint(0, hf.vocab_size, (1, SEQ))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast), \
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids)
    casts = sum(p.numel() for p in layers[LAYER].parameters() if p.dim() >= 2) * 2 if autocast else 0
    return (sum(saved.values()) - casts) / SEQ


def planned_bytes_per_token(config: dict, autocast: bool = False) -> float:
    arch = architecture_from_config(config, config["model_type"])
    plan = Plan(parallel=ParallelDims(dp=1), zero=3, recompute="none", mbs=1, gas=1,
                precision="bf16-autocast" if autocast else "bf16-pure", framework="fsdp2")
    workload = Workload(arch=arch, training="pretrain", seq_len=SEQ, global_batch=1, engine=engine_traits("fsdp2"))
    # The CPU's dropout keeps its scaled noise in the halves' 16-bit dtype (aten Dropout.cpp
    # `_dropout_impl`), CUDA's fused kernel a 1-byte mask: one byte more per element on the CPU.
    cpu_dropout = 2 * arch.hidden if arch.residual_dropout else 0
    return layer_activation_bytes_per_token(arch, LAYER, plan, workload) + cpu_dropout


@pytest.fixture(scope="module", autouse=True)
def quiet_transformers():
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    yield
    transformers.logging.set_verbosity(verbosity)


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_hf_layer_activations_equal_what_autograd_saves(family):
    config = {**_BASE, **CONFIGS[family]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        measured = measured_bytes_per_token(config)
    assert planned_bytes_per_token(config) == pytest.approx(measured, abs=tolerance(config))


@pytest.mark.parametrize("family", sorted(f for f, c in CONFIGS.items() if not _moe(c)))
def test_hf_layer_activations_under_autocast_equal_what_autograd_saves(family):
    """fp32 parameters under torch.autocast (DDP's mixed precision): each linear saves its own bf16
    cast of its input (one for a fused projection), norms of the halves' outputs read bf16
    activations. Dense layers only: how CPU autocast treats the experts' grouped GEMMs is not how
    CUDA's does."""
    config = {**_BASE, **CONFIGS[family]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        measured = measured_bytes_per_token(config, autocast=True)
    assert planned_bytes_per_token(config, autocast=True) == pytest.approx(measured, abs=tolerance(config))

