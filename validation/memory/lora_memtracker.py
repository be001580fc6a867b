#!/usr/bin/env python
"""MemTracker on one LoRA or partial fine-tuning step of a small Hugging Face model.

`--mode lora` (default) wraps linears with hand-built adapters (below); `--mode partial` trains
only the chosen parts (`--train attention mlp experts router norms embedding output`) of the chosen
layers (`--train-layers`, default all) and freezes every other parameter. Fused MoE expert tensors
(transformers 5: one [E, ...] parameter per projection) train all experts of a layer or none.

None of the tools in validation/memory/tools/ trains adapters, and PEFT is not a dependency here, so
this script wraps the chosen `nn.Linear` modules itself, the way LoRA (Hu et al. 2021, arXiv
2106.09685, §4.1) and PEFT's `lora.Linear` do:

    y = base(x) + B(A(x)) * alpha / r      A: d_in -> r (Kaiming-uniform), B: r -> d_out (zeros)

with the base weight frozen (`requires_grad=False`), no LoRA dropout (PEFT then uses an identity)
and the adapters in the model's dtype. Differences from PEFT, on purpose and documented:
  - PEFT's `autocast_adapter_dtype=True` (its default) upcasts bf16 adapters to fp32; here they
    stay in the model dtype so that a pure-bf16 run is pure bf16 (the planner's `bf16-pure`).
  - Embeddings, norms and lm_head are frozen too (PEFT's default for a causal LM).
Everything else (MemTracker subclass, the two-iteration loop, the snapshots) is the tool
`memtracker_step.py`'s, imported from there so that both measure the same way.

Prints one JSON document like memtracker_step.py's, plus `lora` (rank, alpha, targets) and
`trainable_params`.

Example:
  .venv/bin/python validation/memory/lora_memtracker.py --precision bf16 --rank 16 \
      --targets q_proj k_proj v_proj o_proj
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time

TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tools")
sys.path.insert(0, TOOLS)
from hf_param_count import build_config_dict  # noqa: E402
from memtracker_step import SMALL_LLAMA, _snap, make_tracker  # noqa: E402

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def lora_wrap(model, targets: tuple[str, ...], rank: int, alpha: float) -> int:
    """Replace every target nn.Linear of the decoder layers by base + B A; return adapter params."""
    from torch import nn

    class LoRALinear(nn.Module):
        def __init__(self, base: nn.Linear):
            super().__init__()
            self.base = base
            kw = dict(bias=False, dtype=base.weight.dtype, device=base.weight.device)
            self.lora_A = nn.Linear(base.in_features, rank, **kw)
            self.lora_B = nn.Linear(rank, base.out_features, **kw)
            nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
            nn.init.zeros_(self.lora_B.weight)
            self.scaling = alpha / rank

        def forward(self, x):
            return self.base(x) + self.lora_B(self.lora_A(x)) * self.scaling

    for p in model.parameters():
        p.requires_grad_(False)
    n = 0
    if not targets:
        return 0
    for layer in model.model.layers:
        for parent in list(layer.modules()):
            for name, child in list(parent.named_children()):
                if name in targets and isinstance(child, nn.Linear):
                    wrapped = LoRALinear(child)
                    setattr(parent, name, wrapped)
                    n += sum(p.numel() for p in (wrapped.lora_A.weight, wrapped.lora_B.weight))
    return n


def partial_freeze(model, parts: set[str], layers: list[int] | None) -> int:
    """Freeze everything but the chosen parts of the chosen layers; return the trainable count."""
    import re

    n = 0
    for name, p in model.named_parameters():
        m = re.match(r"model\.layers\.(\d+)\.(.*)", name)
        if m:
            index, rest = int(m.group(1)), m.group(2)
            if "norm" in rest:
                part = "norms"
            elif rest.startswith("self_attn."):
                part = "attention"
            elif ".experts." in rest:
                part = "experts"
            elif rest.startswith("mlp.gate.") or ".router." in rest:
                part = "router"
            else:
                part = "mlp"
            train = part in parts and (layers is None or index in layers)
        elif name.startswith("model.embed_tokens"):
            train = "embedding" in parts
        else:  # lm_head, the final norm
            train = "output" in parts
        p.requires_grad_(train)
        n += p.numel() if train else 0
    return n


def run(args) -> dict:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg_dict = build_config_dict(args) if (args.model_type or args.config) else dict(SMALL_LLAMA)
    model_type = cfg_dict.pop("model_type")
    cfg_dict.pop("architectures", None)
    cfg_dict["use_cache"] = False
    config = AutoConfig.for_model(model_type, **cfg_dict)
    config._attn_implementation = "sdpa"
    targets = tuple(ALL_LINEAR if args.targets == ["all-linear"] else args.targets)
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if args.precision == "bf16-autocast"
                else contextlib.nullcontext())

    t0 = time.perf_counter()
    torch.manual_seed(0)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    if args.mode == "lora":
        trainable = lora_wrap(model, targets, args.rank, args.alpha)
    else:
        trainable = partial_freeze(model, set(args.train), args.train_layers)
    model.train()
    if args.recompute:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    params = [p for p in model.parameters() if p.requires_grad]
    opt = (torch.optim.AdamW(params, lr=1e-4, foreach=args.foreach) if args.optimizer == "adamw"
           else torch.optim.SGD(params, lr=1e-4, momentum=0.9, foreach=args.foreach))
    ids = torch.randint(0, config.vocab_size, (args.batch, args.seq))
    build_s = time.perf_counter() - t0

    mt = make_tracker()
    mt.track_external(model, ids, opt)

    class _NoHook:
        def remove(self):
            pass

    def skip_frozen_params() -> None:
        # MemTracker registers a gradient hook on every parameter, which autograd refuses for a
        # frozen one; a placeholder handle makes it skip them (they never get a gradient).
        for p in model.parameters():
            if not p.requires_grad:
                mt._param_to_grad_hook_handles[p] = (_NoHook(), _NoHook())
    marks: dict[str, dict[str, int]] = {}
    layer_acts: list[int] = []
    in_forward = [False]

    def pre(mod, _inp):
        if in_forward[0]:
            mod._gt_act0 = _snap(mt).get("Activation", 0)

    def post(mod, _inp, _out):
        if in_forward[0]:
            layer_acts.append(_snap(mt).get("Activation", 0) - mod._gt_act0)

    handles = [m.register_forward_pre_hook(pre) for m in model.model.layers]
    handles += [m.register_forward_hook(post) for m in model.model.layers]
    t1 = time.perf_counter()
    with mt:
        for it in range(args.iters):
            skip_frozen_params()  # MemTracker clears its hook table on every root forward
            last = it == args.iters - 1
            if last:
                layer_acts.clear()
                marks["before_forward"] = _snap(mt)
            in_forward[0] = True
            with autocast:
                out = model(input_ids=ids, labels=ids)
            in_forward[0] = False
            if last:
                marks["after_forward"] = _snap(mt)
            out.loss.backward()
            del out
            if last:
                marks["after_backward"] = _snap(mt)
            opt.step()
            if last:
                marks["after_optimizer_step_before_zero_grad"] = _snap(mt)
            opt.zero_grad(set_to_none=True)
            if last:
                marks["end_of_step"] = _snap(mt)
            mt.reset_mod_stats()
    run_s = time.perf_counter() - t1
    for h in handles:
        h.remove()

    return {
        "config": {"model_type": model_type, **{k: v for k, v in cfg_dict.items() if k != "use_cache"}},
        "batch": args.batch, "seq": args.seq, "precision": args.precision, "recompute": args.recompute,
        "attn": "sdpa", "optimizer": args.optimizer, "foreach": args.foreach, "fake": False, "mode": args.mode,
        **({"lora": {"rank": args.rank, "alpha": args.alpha, "targets": list(targets)}} if args.mode == "lora" else
           {"partial": {"train": args.train, "layers": args.train_layers}}),
        "torch": torch.__version__, "transformers": __import__("transformers").__version__,
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": trainable,
        "snapshots": marks,
        "peak": _snap(mt, "peak"),
        "category_max": mt.category_max,
        "derived": {"activation_bytes_per_layer": layer_acts,
                    "peak_total_bytes": _snap(mt, "peak").get("Total", 0)},
        "build_seconds": round(build_s, 3),
        "tracked_run_seconds": round(run_s, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="path to a Hugging Face config.json (default: the tools' small Llama)")
    ap.add_argument("--model-type", help="HF model_type, with --set for the fields")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field")
    ap.add_argument("--preset", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--precision", choices=["fp32", "bf16-autocast", "bf16"], default="bf16")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32.0)
    ap.add_argument("--targets", nargs="+", default=["q_proj", "k_proj", "v_proj", "o_proj"],
                    help="module names inside each decoder layer, or all-linear")
    ap.add_argument("--recompute", action="store_true", help="HF gradient checkpointing (non-reentrant)")
    ap.add_argument("--mode", choices=["lora", "partial"], default="lora")
    ap.add_argument("--train", nargs="+", default=[],
                    choices=["attention", "mlp", "experts", "router", "norms", "embedding", "output"],
                    help="partial mode: the parts that train")
    ap.add_argument("--train-layers", nargs="+", type=int, default=None,
                    help="partial mode: the decoder layers whose parts train (default: all)")
    ap.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw", help="sgd: momentum 0.9")
    ap.add_argument("--foreach", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--iters", type=int, default=2)
    args = ap.parse_args()
    print(json.dumps(run(args), indent=1))


if __name__ == "__main__":
    main()
