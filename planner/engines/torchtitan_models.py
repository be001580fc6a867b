"""The models torchtitan 0.2.2 builds: its shipped flavors by shape (models/llama3, qwen3,
deepseek_v3 __init__.py) and why an architecture is none of its model families."""
from __future__ import annotations

from planner.model.architecture import Architecture

# The flavors torchtitan 0.2.2 ships (models/llama3, qwen3, deepseek_v3 __init__.py), by shape:
# (model, dim, layers, heads, kv heads, head dim, ffn, vocab, tied, qk norm, experts, top-k,
#  expert ffn, shared experts, dense layers, MLA ranks (q, kv, rope, v)).
SHIPPED: dict[tuple[str, str], tuple] = {
    ("llama3", "8B"): ("llama3", 4096, 32, 32, 8, 128, 14336, 128256, False, False, 0, 0, 0, 0, 0, None),
    ("llama3", "70B"): ("llama3", 8192, 80, 64, 8, 128, 28672, 128256, False, False, 0, 0, 0, 0, 0, None),
    ("llama3", "405B"): ("llama3", 16384, 126, 128, 8, 128, 53248, 128256, False, False, 0, 0, 0, 0, 0, None),
    ("qwen3", "0.6B"): ("qwen3", 1024, 28, 16, 8, 128, 3072, 151936, True, True, 0, 0, 0, 0, 0, None),
    ("qwen3", "1.7B"): ("qwen3", 2048, 28, 16, 8, 128, 6144, 151936, True, True, 0, 0, 0, 0, 0, None),
    ("qwen3", "4B"): ("qwen3", 2560, 36, 32, 8, 128, 9728, 151936, True, True, 0, 0, 0, 0, 0, None),
    ("qwen3", "8B"): ("qwen3", 4096, 36, 32, 8, 128, 12288, 151936, False, True, 0, 0, 0, 0, 0, None),
    ("qwen3", "14B"): ("qwen3", 5120, 40, 40, 8, 128, 17408, 151936, False, True, 0, 0, 0, 0, 0, None),
    ("qwen3", "32B"): ("qwen3", 5120, 64, 64, 8, 128, 25600, 151936, False, True, 0, 0, 0, 0, 0, None),
    ("qwen3", "30B-A3B"): ("qwen3", 2048, 48, 32, 4, 128, 6144, 151936, False, True, 128, 8, 768, 0, 0, None),
    ("qwen3", "235B-A22B"): ("qwen3", 4096, 94, 64, 4, 128, 12288, 151936, False, True, 128, 8, 1536, 0, 0, None),
    ("deepseek_v3", "16B"): ("deepseek_v3", 2048, 27, 16, 16, 192, 10944, 102400, False, True, 64, 6, 1408, 2, 1,
                             (0, 512, 64, 128)),
    ("deepseek_v3", "236B"): ("deepseek_v3", 5120, 60, 128, 128, 192, 12288, 102400, False, True, 160, 6, 1536, 2, 1,
                              (1536, 512, 64, 128)),
    ("deepseek_v3", "671B"): ("deepseek_v3", 7168, 61, 128, 128, 192, 18432, 129280, False, True, 256, 8, 2048, 1, 3,
                              (1536, 512, 64, 128)),
}


def model_shape(arch: Architecture) -> tuple[tuple, str | None]:
    """(shape key as in SHIPPED, why torchtitan cannot build the model or None)."""
    att, moe = arch.attention, arch.moe
    common = [(arch.norm != "rmsnorm", "LayerNorm"), (not arch.gated_mlp or arch.mlp_activation != "silu",
                                                       "an MLP other than SwiGLU"),
              (arch.position != "rope", f"{arch.position} positions"), (arch.mlp_bias or att.qkv_bias or att.out_bias,
                                                                         "linear biases"),
              (att.sliding_window is not None, "sliding-window attention"), (att.sinks, "attention sinks"),
              (arch.norms_per_layer != 2, f"{arch.norms_per_layer} norms per layer"),
              (arch.parallel_residual, "parallel residual blocks"), (arch.embedding_norm, "an embedding norm"),
              (arch.lm_head_bias, "an output-layer bias"),
              (att.rotary_dim not in (None, att.head_dim), "partial rotary embeddings"),
              (att.qk_norm == "projection", "projection qk norm")]
    experts = (moe.num_experts, moe.top_k, moe.expert_ffn) if moe else (0, 0, 0)
    if att.is_mla:
        moe_layers = [i for i in range(arch.num_layers) if arch.is_moe_layer(i)]
        first = moe_layers[0] if moe_layers else 0
        dense_first = bool(moe_layers) and moe_layers == list(range(first, arch.num_layers))
        shared = moe.shared_ffn // moe.expert_ffn if moe and moe.expert_ffn else 0
        common += [(moe is None, "multi-latent attention without experts"),
                   (not dense_first, "MoE layers other than all after the first dense ones"),
                   (moe is not None and moe.shared_ffn != shared * moe.expert_ffn, "a shared expert of another width"),
                   (arch.tied_embeddings, "tied embeddings"), (moe is not None and (moe.expert_bias or moe.router_bias),
                                                               "expert biases")]
        mla = (att.q_lora_rank or 0, att.kv_lora_rank, att.qk_rope_head_dim, att.value_head_dim)
        key = ("deepseek_v3", arch.hidden, arch.num_layers, att.num_heads, att.num_kv_heads, att.head_dim, arch.ffn,
               arch.vocab, False, True, *experts, shared, first if moe else 0, mla)
    else:
        llama = (moe is None and not arch.tied_embeddings and att.qk_norm is None
                 and att.head_dim * att.num_heads == arch.hidden)
        common += [(moe is not None and arch.num_moe_layers != arch.num_layers, "dense layers among MoE layers"),
                   (moe is not None and (moe.shared_ffn or moe.expert_bias or moe.router_bias),
                    "shared experts or expert biases")]
        key = ("llama3" if llama else "qwen3", arch.hidden, arch.num_layers, att.num_heads, att.num_kv_heads,
               att.head_dim, arch.ffn, arch.vocab, arch.tied_embeddings, att.qk_norm == "head", *experts, 0, 0, None)
    found = [why for bad, why in common if bad]
    return key, (", ".join(found) if found else None)


def shipped_flavor(key: tuple) -> str | None:
    return next((flavor for (name, flavor), shape in SHIPPED.items() if shape == key), None)
