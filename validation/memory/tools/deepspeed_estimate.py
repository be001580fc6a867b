#!/usr/bin/env python
"""DeepSpeed's own ZeRO-2 / ZeRO-3 model-state memory estimators, as JSON.

Calls the functions behind `estimate_zero2_model_states_mem_needs_all_cold` and
`estimate_zero3_model_states_mem_needs_all_cold` (deepspeed.runtime.zero.stage_1_and_2 / stage3)
for every option row they print (optimizer offload, parameter offload, zero_init), and returns
bytes. They cover params + grads + optimizer states only: no activations, no buffers.
DeepSpeed prints these figures with the label "GB" but divides by 2**30 (GiB).

The parameter count comes from --params, or from a preset / HF config built on the meta device
(hf_param_count.py, beside this file). DeepSpeed's `*_all_live(model)` variants dedupe parameters by
data_ptr(), which is 0 for every meta tensor, so they cannot take a meta model: we pass the
counts to the `*_all_cold` path instead. "largest layer" follows DeepSpeed's `model_to_params`:
the largest parameter count held directly by one module (embedding or lm_head for most LLMs).

Examples (in validation/memory/tools/):
  python deepspeed_estimate.py --params 7e9 --largest-layer-params 2e8 --gpus-per-node 8
  python deepspeed_estimate.py --preset llama3-8b --gpus-per-node 8 --nodes 1
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_param_count import PRESETS, build_config_dict  # noqa: E402


def counts_from_model(args) -> tuple[int, int]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = build_config_dict(args)
    model_type = cfg.pop("model_type")
    cfg.pop("architectures", None)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **cfg))
    total = sum(p.numel() for p in model.parameters())  # tied weights counted once
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    return total, largest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=float, help="total parameters (e.g. 7e9)")
    ap.add_argument("--largest-layer-params", type=float, help="for ZeRO-3 (default: from the model, or 0)")
    ap.add_argument("--preset", choices=sorted(PRESETS))
    ap.add_argument("--config", help="path to a Hugging Face config.json")
    ap.add_argument("--model-type", help="HF model_type, with --set")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE")
    ap.add_argument("--gpus-per-node", type=int, default=8)
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--additional-buffer-factor", type=float, default=1.5,
                    help="DeepSpeed's fudge factor on CPU memory (its default 1.5)")
    ap.add_argument("--print-deepspeed-table", action="store_true",
                    help="also include DeepSpeed's own printed table in the JSON")
    args = ap.parse_args()

    t0 = time.perf_counter()
    if args.params:
        total, largest = int(args.params), int(args.largest_layer_params or 0)
    elif args.preset or args.config or args.model_type:
        total, largest = counts_from_model(args)
        if args.largest_layer_params:
            largest = int(args.largest_layer_params)
    else:
        sys.exit("give --params or a model (--preset / --config / --model-type)")

    with contextlib.redirect_stdout(io.StringIO()):  # DeepSpeed prints an accelerator notice
        import deepspeed
        from deepspeed.runtime.zero import stage3, stage_1_and_2

    common = dict(num_gpus_per_node=args.gpus_per_node, num_nodes=args.nodes,
                  additional_buffer_factor=args.additional_buffer_factor)
    rows = []
    for offload_opt in (True, False):
        cpu, gpu = stage_1_and_2.estimate_zero2_model_states_mem_needs(total, cpu_offload=offload_opt, **common)
        rows.append(dict(stage=2, offload_optimizer=offload_opt, offload_param=False, zero_init=None,
                         per_gpu_bytes=gpu, per_cpu_bytes=cpu))
    for offload_opt in (True, False):
        for offload_param in (True, False):
            if offload_param and not offload_opt:
                continue
            for zero_init in (True, False):
                cpu, gpu, _ = stage3.estimate_zero3_model_states_mem_needs(
                    total, largest, cpu_offload=offload_opt, cpu_offload_params=offload_param,
                    zero_init=zero_init, **common)
                rows.append(dict(stage=3, offload_optimizer=offload_opt, offload_param=offload_param,
                                 zero_init=zero_init, per_gpu_bytes=gpu, per_cpu_bytes=cpu))
    result = {
        "deepspeed": deepspeed.__version__,
        "total_params": total, "largest_layer_params": largest,
        "gpus_per_node": args.gpus_per_node, "nodes": args.nodes,
        "additional_buffer_factor": args.additional_buffer_factor,
        "formulas": {
            "zero2_no_offload_gpu": "2*P + 18*P/N (2 fp16 params + [2 fp16 grads + 4 fp32 grads + 4 fp32 params + 8 Adam]/N)",
            "zero2_offload_gpu": "2*P",
            "zero3_no_offload_gpu": "4*largest_layer + 18*P/N",
            "zero3_offload_optimizer_gpu": "4*largest_layer + 2*P/N",
            "zero3_offload_all_gpu": "4*largest_layer",
        },
        "rows": rows,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if args.print_deepspeed_table:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            stage_1_and_2.estimate_zero2_model_states_mem_needs_all_cold(total, **common)
            stage3.estimate_zero3_model_states_mem_needs_all_cold(total, largest, **common)
        result["deepspeed_table_GiB"] = buf.getvalue().splitlines()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
