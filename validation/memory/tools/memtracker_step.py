#!/usr/bin/env python
"""Per-category memory of one HF training step, measured by PyTorch's own MemTracker.

Runs forward + backward + optimizer step of a Hugging Face causal LM on the CPU under
`torch.distributed._tools.mem_tracker.MemTracker` (a TorchDispatchMode that attributes every
tensor storage to Parameter / Buffer / Gradient / Activation / Temp / Optstate) and prints JSON.
With --fake the model, optimizer and batch live under FakeTensorMode: no real memory is allocated
and nothing is computed, so full-size 7B/8B/70B configs "run" in seconds to minutes.

The last of --iters iterations is reported, so optimizer states already exist (steady state).
Sizes are bytes of tensor storages (no CUDA-allocator rounding or fragmentation: the tensors run on
the CPU; MemTracker rounds to 512 B only for CUDA tensors).

Examples (in validation/memory/tools/):
  python memtracker_step.py                                  # small Llama, fp32, real tensors
  python memtracker_step.py --precision bf16-autocast --recompute
  python memtracker_step.py --fake --preset llama3-8b --seq 4096 --batch 1 --precision bf16-autocast
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

SMALL_LLAMA = dict(model_type="llama", hidden_size=512, intermediate_size=1376, num_hidden_layers=4,
                   num_attention_heads=8, num_key_value_heads=8, vocab_size=32000,
                   tie_word_embeddings=False)


def _snap(mt, kind="current") -> dict[str, int]:
    """Flatten MemTracker's {device: {_MemRefType: bytes}} for the single CPU device."""
    snap = mt.get_tracker_snapshot(kind)
    out: dict[str, int] = {}
    for dev_snap in snap.values():
        for key, val in dev_snap.items():
            name = getattr(key, "value", key)  # _MemRefType -> "Parameter", ...; "Total" stays
            out[name] = out.get(name, 0) + int(val)
    return out


def make_tracker():
    from torch.distributed._tools.mem_tracker import MemTracker

    class MaxTracker(MemTracker):
        """MemTracker that also keeps the running maximum of each category separately."""

        def __init__(self):
            super().__init__()
            self.category_max: dict[str, int] = {}

        def _update_snap(self, *args, **kwargs):  # private hook of MemTracker, torch 2.5+
            super()._update_snap(*args, **kwargs)
            for dev_snap in self._curr_mem_snap.values():
                for key, val in dev_snap.items():
                    name = getattr(key, "value", key)
                    if val > self.category_max.get(name, 0):
                        self.category_max[name] = int(val)

    return MaxTracker()


def run(args) -> dict:
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg_dict = build_config_dict(args) if (args.preset or args.config or args.model_type) else dict(SMALL_LLAMA)
    model_type = cfg_dict.pop("model_type")
    cfg_dict.pop("architectures", None)
    cfg_dict["use_cache"] = False
    config = AutoConfig.for_model(model_type, **cfg_dict)
    config._attn_implementation = args.attn
    if args.experts_impl:
        config._experts_implementation = args.experts_impl

    fake_ctx = FakeTensorMode(allow_non_fake_inputs=False) if args.fake else contextlib.nullcontext()
    if args.fake:
        patch_hf_for_fake_tensors()
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if args.precision == "bf16-autocast"
                else contextlib.nullcontext())
    t0 = time.perf_counter()
    with fake_ctx:
        torch.manual_seed(0)
        # Built in bf16 directly: Module.to() cannot swap parameters under FakeTensorMode.
        dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        model.train()
        if args.recompute:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        params = list(model.parameters())
        opt = None
        if args.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=1e-5, foreach=args.foreach)
        elif args.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=1e-5, momentum=0.9, foreach=args.foreach)
        ids = torch.randint(0, config.vocab_size, (args.batch, args.seq))
        build_s = time.perf_counter() - t0

        mt = make_tracker()
        mt.track_external(model, ids, *( [opt] if opt else [] ))
        marks: dict[str, dict[str, int]] = {}
        backbone = getattr(model, "model", None)
        layer_acts: list[int] = []
        in_forward = [False]  # recomputation in backward re-enters the layers: ignore it

        def pre(mod, _inp):
            if in_forward[0]:
                mod._gt_act0 = _snap(mt).get("Activation", 0)

        def post(mod, _inp, _out):
            if in_forward[0]:
                layer_acts.append(_snap(mt).get("Activation", 0) - mod._gt_act0)

        layers = getattr(backbone, "layers", None) or []
        handles = [m.register_forward_pre_hook(pre) for m in layers]
        handles += [m.register_forward_hook(post) for m in layers]
        t1 = time.perf_counter()
        with mt:
            for it in range(args.iters):
                if it == args.iters - 1:
                    layer_acts.clear()
                    marks["before_forward"] = _snap(mt)
                in_forward[0] = True
                with autocast:
                    out = model(input_ids=ids, labels=ids)
                in_forward[0] = False
                if it == args.iters - 1:
                    marks["after_forward"] = _snap(mt)
                out.loss.backward()
                del out
                if it == args.iters - 1:
                    marks["after_backward"] = _snap(mt)
                if opt is not None:
                    opt.step()
                    if it == args.iters - 1:
                        marks["after_optimizer_step_before_zero_grad"] = _snap(mt)
                    opt.zero_grad(set_to_none=True)
                if it == args.iters - 1:
                    marks["end_of_step"] = _snap(mt)
                mt.reset_mod_stats()  # MemTracker refuses a second root forward otherwise
        run_s = time.perf_counter() - t1
        for h in handles:
            h.remove()

    n_params = sum(p.numel() for p in params)
    act_fw = marks["after_forward"].get("Activation", 0) - marks["before_forward"].get("Activation", 0)
    return {
        "config": {"model_type": model_type, **{k: v for k, v in cfg_dict.items() if k != "use_cache"}},
        "batch": args.batch, "seq": args.seq, "precision": args.precision, "recompute": args.recompute,
        "attn": args.attn, "experts_impl": args.experts_impl, "optimizer": args.optimizer, "foreach": args.foreach, "fake": args.fake,
        "torch": torch.__version__, "transformers": __import__("transformers").__version__,
        "params": n_params,
        "snapshots": marks,
        "peak": _snap(mt, "peak"),
        "category_max": mt.category_max,
        "derived": {
            "param_bytes": marks["end_of_step"].get("Parameter", 0),
            "grad_bytes": marks["after_backward"].get("Gradient", 0),
            "optimizer_state_bytes": marks["end_of_step"].get("Optstate", 0),
            "activation_bytes_after_forward_incl_logits_and_loss": act_fw,
            "activation_bytes_per_layer": layer_acts,
            "peak_total_bytes": _snap(mt, "peak").get("Total", 0),
        },
        "build_seconds": round(build_s, 3),
        "tracked_run_seconds": round(run_s, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), help="model preset (default: a small Llama)")
    ap.add_argument("--config", help="path to a Hugging Face config.json")
    ap.add_argument("--model-type", help="HF model_type, with --set for the fields")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--precision", choices=["fp32", "bf16-autocast", "bf16"], default="fp32",
                    help="fp32; fp32 weights + CPU bf16 autocast; or pure bf16 weights/grads/states")
    ap.add_argument("--recompute", action="store_true", help="HF gradient checkpointing (non-reentrant)")
    ap.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa")
    ap.add_argument("--experts-impl", choices=["eager", "grouped_mm", "batched_mm"],
                    help="HF MoE experts implementation (default: transformers' choice, grouped_mm). MoE under"
                         " --fake runs only with --precision bf16: grouped_mm's fake kernel wants bf16 inputs"
                         " and eager experts call nonzero(), which fake tensors cannot run")
    ap.add_argument("--optimizer", choices=["adamw", "sgd", "none"], default="adamw")
    ap.add_argument("--foreach", action=argparse.BooleanOptionalAction, default=True,
                    help="multi-tensor optimizer as on CUDA (default on; its temporaries show in Optstate peaks)")
    ap.add_argument("--fake", action="store_true", help="run under FakeTensorMode (no real memory)")
    ap.add_argument("--iters", type=int, default=2, help="iterations; the last one is reported")
    args = ap.parse_args()
    print(json.dumps(run(args), indent=1))


if __name__ == "__main__":
    main()
