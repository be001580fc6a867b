#!/usr/bin/env python
"""Megatron's own theoretical-memory formulas, run on the CPU.

The `megatron-core` wheel has no `megatron/training/theoretical_memory_usage.py` (that file lives
only in the Megatron-LM repository). The `megatron-bridge` wheel carries a port of it,
`megatron/bridge/training/utils/theoretical_memory_utils.py`, but importing the package needs
transformer-engine (CUDA). This script therefore installs nothing of its own: it loads that one
file by path from the installed wheel (`pip install --no-deps megatron-bridge`), with its two
imports (a type hint and the vocab-padding helper) replaced by tiny stand-ins, and calls

  compute_weight_and_optimizer_memory(config)   # 18 B/param, or 6 + 12/DP with the distributed optimizer
  compute_activation_memory(config, num_microbatches)  # Korthikanti Table 2: sbh(18 + 4*ffn/h) per layer

with a config object built from the arguments. Bytes, most loaded (first pipeline stage) GPU.

Limits of that port (bridge 0.3.1): MoE multiplies the FFN by num_experts in *every* layer
(no dense-first layers, no shared experts, no router), no MLA, no MTP; the activation formula
assumes sequence parallelism + selective recompute (as Megatron itself only reports it then).

Examples (in validation/memory/tools/):
  python megatron_theoretical_memory.py --preset llama3-8b --seq 4096 --mbs 1 --tp 1 --dp 8
  python megatron_theoretical_memory.py --preset llama3-70b --seq 4096 --tp 8 --pp 4 --dp 2 \\
      --distributed-optimizer --num-microbatches 64
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import sys
import types
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_param_count import PRESETS  # noqa: E402

_FILE = "megatron/bridge/training/utils/theoretical_memory_utils.py"


def _padded_vocab(vocab_size, divisible_by, tp, logging_enabled=True):
    # Same rule as megatron.bridge.utils.vocab_utils: pad to a multiple of divisible_by * tp.
    multiple = divisible_by * tp
    return int(math.ceil(vocab_size / multiple) * multiple)


def load_megatron_module():
    try:
        dist = importlib.metadata.distribution("megatron-bridge")
    except importlib.metadata.PackageNotFoundError:
        sys.exit("megatron-bridge is not installed: pip install --no-deps megatron-bridge")
    path = dist.locate_file(_FILE)
    if not os.path.exists(path):
        sys.exit(f"{_FILE} not found in megatron-bridge {dist.version}")
    stubs = {
        "megatron.bridge.training.config": types.SimpleNamespace(ConfigContainer=object),
        "megatron.bridge.utils.vocab_utils": types.SimpleNamespace(calculate_padded_vocab_size=_padded_vocab),
    }
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)  # type: ignore[arg-type]
    try:
        module = types.ModuleType("megatron_theoretical_memory_utils")
        module.__file__ = str(path)
        with open(path) as fh:
            exec(compile(fh.read(), str(path), "exec"), module.__dict__)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return module, dist.version


def build_config(args):
    import torch.nn.functional as F

    p = dict(PRESETS[args.preset]) if args.preset else {}
    h = args.hidden or p.get("hidden_size")
    heads = args.heads or p.get("num_attention_heads")
    if not (h and heads):
        sys.exit("give --preset or at least --hidden and --heads (see --help)")
    kv_heads = args.kv_heads or p.get("num_key_value_heads") or heads
    experts = args.experts or next((p[k] for k in ("num_local_experts", "num_experts", "n_routed_experts")
                                    if p.get(k)), None)
    ffn = args.ffn or (p.get("moe_intermediate_size") if experts else None) or p.get("intermediate_size")
    model = SimpleNamespace(
        hidden_size=h, num_attention_heads=heads, num_query_groups=kv_heads,
        kv_channels=args.head_dim or p.get("head_dim") or h // heads,
        ffn_hidden_size=ffn, num_layers=args.layers or p.get("num_hidden_layers"),
        num_moe_experts=experts, gated_linear_unit=not args.no_swiglu,
        activation_func=F.gelu if args.no_swiglu else F.silu,
        share_embeddings_and_output_weights=bool(args.tied or p.get("tie_word_embeddings")),
        vocab_size=args.vocab or p.get("vocab_size"), should_pad_vocab=args.pad_vocab_to > 0,
        make_vocab_size_divisible_by=max(args.pad_vocab_to, 1),
        tensor_model_parallel_size=args.tp, pipeline_model_parallel_size=args.pp,
        virtual_pipeline_model_parallel_size=args.vpp, seq_length=args.seq,
        sequence_parallel=True, recompute_granularity="selective",
    )
    return SimpleNamespace(model=model, train=SimpleNamespace(micro_batch_size=args.mbs),
                           optimizer=SimpleNamespace(use_distributed_optimizer=args.distributed_optimizer),
                           data_parallel_size=args.dp)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS))
    for name in ("hidden", "heads", "kv-heads", "head-dim", "ffn", "layers", "vocab", "experts"):
        ap.add_argument(f"--{name}", type=int, help="override the preset's value")
    ap.add_argument("--no-swiglu", action="store_true", help="plain 2-matrix MLP (GPT) instead of SwiGLU")
    ap.add_argument("--tied", action="store_true", help="shared input/output embedding")
    ap.add_argument("--pad-vocab-to", type=int, default=128,
                    help="Megatron's --make-vocab-size-divisible-by (0: no padding)")
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--mbs", type=int, default=1, help="micro-batch size")
    ap.add_argument("--tp", type=int, default=1)
    ap.add_argument("--pp", type=int, default=1)
    ap.add_argument("--vpp", type=int, default=None, help="virtual pipeline stages per rank")
    ap.add_argument("--dp", type=int, default=1)
    ap.add_argument("--distributed-optimizer", action="store_true", help="ZeRO-1 style optimizer sharding")
    ap.add_argument("--num-microbatches", type=int, default=None)
    args = ap.parse_args()

    module, version = load_megatron_module()
    config = build_config(args)
    weights_opt = module.compute_weight_and_optimizer_memory(config)
    activations = module.compute_activation_memory(config, num_microbatches=args.num_microbatches)
    bytes_per_param = 18 if not args.distributed_optimizer else 6 + 12 / args.dp
    print(json.dumps({
        "source": f"megatron-bridge {version}: {_FILE}",
        "config": vars(config.model) | {"activation_func": config.model.activation_func.__name__,
                                        "micro_batch_size": args.mbs, "data_parallel_size": args.dp,
                                        "use_distributed_optimizer": args.distributed_optimizer},
        "bytes_per_param": bytes_per_param,
        "params_on_most_loaded_shard": round(weights_opt / bytes_per_param),
        "weight_and_optimizer_bytes": round(weights_opt),
        "activation_bytes": round(activations),
        "total_bytes": round(weights_opt + activations),
        "assumes": "18 B/param = 2 bf16 param + 4 fp32 grad + 4 fp32 master + 8 Adam; distributed "
                   "optimizer shards the 12; activations assume sequence parallel + selective recompute",
    }, indent=1))


if __name__ == "__main__":
    main()
