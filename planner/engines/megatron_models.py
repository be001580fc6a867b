"""Which models Megatron-Core builds: from Megatron-LM's `pretrain_gpt.py` flags (what the
planner emits and `check --megatron` reads), or from a Hugging Face checkpoint through one of
Megatron-Bridge's model bridges, whose recipes build what the flags cannot (Gemma's GeGLU and
extra norms, GPT-OSS's attention sinks, the vision encoders of multimodal models)."""
from __future__ import annotations

from planner.model.architecture import Architecture

BRIDGE_RELEASE = "megatron-bridge 0.6.2"
BRIDGE_FAMILIES = frozenset({
    "llama", "mistral", "qwen2", "qwen3", "qwen3_moe", "deepseek_v2", "deepseek_v3", "glm4_moe", "gpt_oss",
    "gemma", "gemma2", "gemma3_text", "minimax_m2", "nemotron", "exaone4", "ernie4_5_moe",
    # OlmoeForCausalLM: models/olmoe/olmoe_bridge.py since megatron-bridge 0.3.1, with its own
    # attention for the whole-projection q/k norms (OLMoESelfAttention).
    "olmoe",
})
"""The planner's families whose transformers classes Megatron-Bridge registers a bridge for
(megatron-bridge 0.6.2 megatron/bridge/models/*/*_bridge.py, `register_bridge(source=...)`:
LlamaForCausalLM, MistralForCausalLM, Qwen2/Qwen3/Qwen3Moe, DeepseekV2/V3 and KimiK2,
Glm4MoeForCausalLM, GptOssForCausalLM, Gemma/Gemma2/Gemma3ForCausalLM, MiniMaxM2ForCausalLM,
NemotronForCausalLM, Exaone4ForCausalLM, Ernie4_5_MoeForCausalLM)."""
BRIDGE_MULTIMODAL = frozenset({"gemma3", "mistral3", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "glm4v_moe", "kimi_k25"})
"""Multimodal model_types it bridges (Gemma3-, Mistral3-, Qwen2_5_VL-, Qwen3VL-, Qwen3VLMoe-,
Glm4vMoe- and KimiK25ForConditionalGeneration); Llama 4's it does not."""


def pretrain_gpt_gaps(arch: Architecture, windows: tuple[int | None, ...] | None = None,
                      seq_len: int | None = None) -> str | None:
    """What of the model `pretrain_gpt.py`'s flags cannot build, in words, or None when they can
    (megatron-core's GPT layer specs: pre-norm blocks, one bias switch for every linear layer,
    SwiGLU as the only gated MLP; shared experts as one MLP of their total width, as transformers
    builds DeepSeek's; a text model: a multimodal config's encoders are not GPT layers).
    `windows`, `seq_len`: the job's attention windows per layer (Workload.layer_windows) and
    sequence length. The emitted script attends in full, so a window shorter than the sequence
    is a model it does not build (the time model charges the window)."""
    att, moe = arch.attention, arch.moe
    biases = (arch.mlp_bias, att.qkv_bias, att.out_bias)
    short = sorted({w for w in windows or () if w is not None and seq_len is not None and w < seq_len})
    reasons = [
        (att.sliding_window is not None, "sliding-window attention"),
        (bool(short), f"attention windows of {', '.join(f'{w:,}' for w in short)} tokens within its"
                      f" {seq_len:,}-token sequences" if short else ""),
        (att.qk_norm == "projection", "projection qk norm"),
        (att.qk_norm == "latent" and not att.is_mla, "latent qk norm"), (att.sinks, "attention sinks"),
        (arch.norms_per_layer != 2, f"{arch.norms_per_layer} norms per layer"),
        (arch.parallel_residual, "parallel residual blocks"), (arch.lm_head_bias, "an output-layer bias"),
        (arch.embedding_norm, "an embedding norm"),
        (arch.position not in ("rope", "learned"), f"{arch.position} positions"),
        (arch.gated_mlp and arch.mlp_activation != "silu", f"a gated {arch.mlp_activation} MLP"),
        (not arch.gated_mlp and not _plain_activation_built(arch.mlp_activation), f"a {arch.mlp_activation} MLP"),
        (biases not in ((True, True, True), (False, False, False), (False, True, False)), "these linear biases"),
        (att.is_mla and att.qkv_bias, "biases on the latent projections"),
        (moe is not None and (moe.expert_bias or moe.router_bias) != arch.mlp_bias, "these expert biases"),
        (moe is not None and moe.shared_expert_bias, "shared-expert biases"),
        ("multimodal" in arch.extra, f"the encoders of a {arch.extra.get('multimodal')} model"),
    ]
    found = [why for bad, why in reasons if bad]
    return ", ".join(found) if found else None


def _plain_activation_built(name: str) -> bool:
    """An ungated MLP activation pretrain_gpt.py's flags build: GELU (its default, `--openai-gelu`
    for the tanh form) or squared ReLU (`--squared-relu`)."""
    return name == "relu2" or "gelu" in name


def bridged(arch: Architecture) -> bool:
    """Megatron-Bridge has a bridge for the model (BRIDGE_FAMILIES, BRIDGE_MULTIMODAL)."""
    if "multimodal" in arch.extra:
        return arch.extra["multimodal"] in BRIDGE_MULTIMODAL
    return arch.family in BRIDGE_FAMILIES


def unbuildable(arch: Architecture, windows: tuple[int | None, ...] | None = None,
                seq_len: int | None = None) -> str | None:
    """What of the model Megatron-Core builds neither way, in words, or None when one of them does."""
    gaps = pretrain_gpt_gaps(arch, windows, seq_len)
    if gaps is None or bridged(arch):
        return None
    kind = arch.extra.get("multimodal", arch.family)
    return f"{gaps} (beyond pretrain_gpt.py's flags), and {BRIDGE_RELEASE} has no bridge for {kind}"
