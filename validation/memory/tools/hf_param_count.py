#!/usr/bin/env python
"""Exact parameter counts from Hugging Face `transformers` model classes, built on the meta device.

An independent reference for `planner params`: the model is instantiated by transformers itself
(no weights, no hub access) and `named_parameters()` is counted. Shared (tied) tensors are counted
once, as `model.parameters()` does.

Examples (in validation/memory/tools/):
  python hf_param_count.py --preset llama3-8b
  python hf_param_count.py --preset deepseek-v3
  python hf_param_count.py --config path/to/config.json
  python hf_param_count.py --model-type llama --set hidden_size=512 --set num_hidden_layers=4
  python hf_param_count.py --list-presets
"""
from __future__ import annotations

import argparse
import json
import sys
import time

# Hand-copied from the public config.json of each model (only fields that change the shapes).
PRESETS: dict[str, dict] = {
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
    "mixtral-8x7b": dict(model_type="mixtral", hidden_size=4096, intermediate_size=14336,
                         num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                         num_local_experts=8, num_experts_per_tok=2, vocab_size=32000,
                         tie_word_embeddings=False),
    "mixtral-8x22b": dict(model_type="mixtral", hidden_size=6144, intermediate_size=16384,
                          num_hidden_layers=56, num_attention_heads=48, num_key_value_heads=8,
                          num_local_experts=8, num_experts_per_tok=2, vocab_size=32768,
                          tie_word_embeddings=False),
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
    # DeepSeek-V3: transformers builds the 61 main layers only (the MTP module is not built).
    "deepseek-v3": dict(model_type="deepseek_v3", hidden_size=7168, intermediate_size=18432,
                        moe_intermediate_size=2048, num_hidden_layers=61, first_k_dense_replace=3,
                        num_attention_heads=128, num_key_value_heads=128, n_routed_experts=256,
                        n_shared_experts=1, num_experts_per_tok=8, n_group=8, topk_group=4,
                        q_lora_rank=1536, kv_lora_rank=512, qk_rope_head_dim=64,
                        qk_nope_head_dim=128, v_head_dim=128, vocab_size=129280,
                        tie_word_embeddings=False),
}

# Keys that name the routed-expert count and top-k in the different configs.
_EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def build_config_dict(args) -> dict:
    if args.preset:
        if args.preset not in PRESETS:
            sys.exit(f"unknown preset {args.preset!r}; valid: {', '.join(PRESETS)}")
        cfg = dict(PRESETS[args.preset])
    elif args.config:
        with open(args.config) as fh:
            cfg = json.load(fh)
    elif args.model_type:
        cfg = {"model_type": args.model_type}
    else:
        sys.exit("give --preset, --config or --model-type (see --help)")
    if args.model_type:
        cfg["model_type"] = args.model_type
    for item in args.set or []:
        key, _, value = item.partition("=")
        cfg[key] = _parse_value(value)
    if "model_type" not in cfg:
        sys.exit("the config has no model_type; pass --model-type")
    return cfg


def patch_hf_for_fake_tensors() -> None:
    """Let HF skip the explicit causal mask under FakeTensorMode, as it does on real tensors.

    transformers checks position_ids for packed sequences; on fake tensors that check cannot read
    values, so it assumes packing and materializes a [b, 1, s, s] mask that SDPA then saves in every
    layer (2-5 bytes x b*s^2 per layer that a real run does not have). Our batches are never packed.
    """
    try:
        import transformers.masking_utils as masking_utils
    except ImportError:
        return
    if hasattr(masking_utils, "find_packed_sequence_indices"):
        masking_utils.find_packed_sequence_indices = lambda *args, **kwargs: None


def component_of(name: str) -> str:
    """Coarse bucket for a parameter name, across Llama/Mixtral/Qwen3-MoE/DeepSeek-V3 naming."""
    if "embed_tokens" in name or "wte" in name or "word_embeddings" in name:
        return "embedding"
    if name.startswith("lm_head"):
        return "lm_head"
    if ".shared_expert" in name:
        return "shared_experts"
    if ".experts." in name or name.endswith(".experts"):
        return "routed_experts"
    if ".gate.weight" in name or ".router" in name or "e_score_correction_bias" in name:
        return "router"
    if "norm" in name:
        return "norms"
    if "attn" in name or "attention" in name:
        return "attention"
    if ".mlp." in name or ".feed_forward." in name:
        return "dense_mlp"
    return "other"


def count(cfg_dict: dict) -> dict:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg_dict = dict(cfg_dict)
    model_type = cfg_dict.pop("model_type")
    cfg_dict.pop("architectures", None)
    config = AutoConfig.for_model(model_type, **cfg_dict)
    t0 = time.perf_counter()
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    build_s = time.perf_counter() - t0

    by_component: dict[str, int] = {}
    seen: set[int] = set()
    total = 0
    for name, p in model.named_parameters():  # yields each shared tensor once
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = p.numel()
        total += n
        comp = component_of(name)
        by_component[comp] = by_component.get(comp, 0) + n
    # Persistent non-rotary buffers live in checkpoints too (DeepSeek-V3's router bias).
    buffers = {name: b.numel() for name, b in model.named_buffers()
               if "rotary" not in name and "inv_freq" not in name}

    num_experts = next((getattr(config, k) for k in _EXPERT_KEYS if getattr(config, k, None)), 0)
    top_k = getattr(config, "num_experts_per_tok", 0) or 0
    routed = by_component.get("routed_experts", 0)
    # Per token only top_k of num_experts routed experts run; everything else is always active.
    active = total - routed + (routed * top_k // num_experts if num_experts else routed)
    return {
        "model_type": model_type,
        "class": type(model).__name__,
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
        "total": total,
        "active": active,
        "embedding": by_component.get("embedding", 0),
        "tied_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
        "by_component": dict(sorted(by_component.items())),
        "non_rotary_buffer_elements": sum(buffers.values()),
        "total_plus_buffers": total + sum(buffers.values()),
        "num_routed_experts": num_experts,
        "experts_per_token": top_k,
        "build_seconds": round(build_s, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", help="one of the built-in presets (see --list-presets)")
    ap.add_argument("--config", help="path to a Hugging Face config.json")
    ap.add_argument("--model-type", help="HF model_type (llama, mixtral, qwen3_moe, deepseek_v3, ...)")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a config field (value parsed as JSON when possible); repeatable")
    ap.add_argument("--list-presets", action="store_true")
    args = ap.parse_args()
    if args.list_presets:
        print(json.dumps(PRESETS, indent=1))
        return
    t0 = time.perf_counter()
    result = count(build_config_dict(args))
    result["wall_seconds"] = round(time.perf_counter() - t0, 3)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
