#!/usr/bin/env python
"""Per-rank memory of one FSDP2 (ZeRO-3 style) training step, by PyTorch's FSDPMemTracker.

The HF causal LM is wrapped with `torch.distributed.fsdp.fully_shard` (one unit per decoder
layer plus the root) over a *fake* process group of --world-size ranks: this one process plays
rank 0, collectives are no-ops with the right shapes, so the sharded parameter / gradient /
optimizer-state sizes and the all-gather / reduce-scatter buffers are those of a real rank.
`torch.distributed._tools.fsdp2_mem_tracker.FSDPMemTracker` attributes every storage to
Sharded/Unsharded Param, Sharded/Unsharded Grad, All Gather, Reduce Scatter, Activation, Temp,
OptState. With --fake everything runs under FakeTensorMode (full-size models in seconds).

Examples (in validation/memory/tools/):
  python fsdp2_memtracker.py --world-size 8
  python fsdp2_memtracker.py --fake --preset llama3-8b --world-size 8 --seq 4096 --batch 1 --bf16
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_param_count import PRESETS, build_config_dict, patch_hf_for_fake_tensors  # noqa: E402
from memtracker_step import SMALL_LLAMA  # noqa: E402


def _flat(snap) -> dict[str, int]:
    out: dict[str, int] = {}
    for dev_snap in snap.values():
        for key, val in dev_snap.items():
            name = getattr(key, "value", key)
            out[name] = out.get(name, 0) + int(val)
    return out


def run(args) -> dict:
    import torch
    import torch.distributed as dist
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    from torch.testing._internal.distributed.fake_pg import FakeStore
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg_dict = build_config_dict(args) if (args.preset or args.config or args.model_type) else dict(SMALL_LLAMA)
    model_type = cfg_dict.pop("model_type")
    cfg_dict.pop("architectures", None)
    cfg_dict["use_cache"] = False
    config = AutoConfig.for_model(model_type, **cfg_dict)
    config._attn_implementation = "sdpa"

    dist.init_process_group("fake", rank=0, world_size=args.world_size, store=FakeStore())
    mesh = init_device_mesh("cpu", (args.world_size,))
    mp = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
          if args.bf16 else MixedPrecisionPolicy())
    fake_ctx = FakeTensorMode() if args.fake else contextlib.nullcontext()
    if args.fake:
        patch_hf_for_fake_tensors()
    t0 = time.perf_counter()
    with fake_ctx:
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config)
        model.train()
        if args.recompute:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        n_params = sum(p.numel() for p in model.parameters())
        for layer in model.model.layers:
            fully_shard(layer, mesh=mesh, mp_policy=mp, reshard_after_forward=args.reshard_after_forward)
        fully_shard(model, mesh=mesh, mp_policy=mp, reshard_after_forward=args.reshard_after_forward)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, foreach=args.foreach)
        ids = torch.randint(0, config.vocab_size, (args.batch, args.seq))
        fmt = FSDPMemTracker(model, opt)
        fmt.track_inputs((ids,))
        marks = {}
        t1 = time.perf_counter()
        with fmt:
            for it in range(args.iters):
                out = model(input_ids=ids, labels=ids)
                if it == args.iters - 1:
                    marks["after_forward"] = _flat(fmt.get_tracker_snapshot())
                out.loss.backward()
                del out
                if it == args.iters - 1:
                    marks["after_backward"] = _flat(fmt.get_tracker_snapshot())
                opt.step()
                opt.zero_grad()
                if it == args.iters - 1:
                    marks["end_of_step"] = _flat(fmt.get_tracker_snapshot())
                fmt.reset_mod_stats()
        run_s = time.perf_counter() - t1
    dist.destroy_process_group()
    return {
        "config": {"model_type": model_type, **{k: v for k, v in cfg_dict.items() if k != "use_cache"}},
        "world_size": args.world_size, "batch": args.batch, "seq": args.seq, "bf16": args.bf16,
        "recompute": args.recompute, "foreach": args.foreach, "reshard_after_forward": args.reshard_after_forward,
        "fake": args.fake, "torch": torch.__version__, "params": n_params,
        "snapshots": marks,
        "peak": _flat(fmt.get_tracker_snapshot("peak")),
        "setup_seconds": round(t1 - t0, 3), "tracked_run_seconds": round(run_s, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), help="model preset (default: a small Llama)")
    ap.add_argument("--config", help="path to a Hugging Face config.json")
    ap.add_argument("--model-type", help="HF model_type, with --set for the fields")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field")
    ap.add_argument("--world-size", type=int, default=8, help="data-parallel shards (fake ranks)")
    ap.add_argument("--batch", type=int, default=2, help="micro-batch per rank")
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--bf16", action="store_true", help="MixedPrecisionPolicy(param bf16, reduce fp32)")
    ap.add_argument("--recompute", action="store_true", help="HF gradient checkpointing (non-reentrant)")
    ap.add_argument("--reshard-after-forward", action=argparse.BooleanOptionalAction, default=True,
                    help="ZeRO-3 (default) or keep gathered params until backward (ZeRO-2-like)")
    ap.add_argument("--foreach", action=argparse.BooleanOptionalAction, default=False,
                    help="multi-tensor AdamW as on CUDA (default off: under --fake with FSDP2 it reports a"
                         " bogus OptState peak of ~27x the sharded params; add its one temporary by hand)")
    ap.add_argument("--fake", action="store_true", help="run under FakeTensorMode (no real memory)")
    ap.add_argument("--iters", type=int, default=2, help="iterations; the last one is reported")
    args = ap.parse_args()
    print(json.dumps(run(args), indent=1))


if __name__ == "__main__":
    main()
