#!/usr/bin/env python
"""Bytes NeMo AutoModel's biased DeepEP experts save for backward per routed row, counted with
torch's saved-tensor hooks on the CPU.

Runs the whole-dispatch path of `GroupedExpertsDeepEP.forward` for experts with biases
(nemo_automodel 0.7 components/moe/experts.py: grouped GEMM, `_apply_bias`, the activation
`get_expert_activation_for_deepep` returns, grouped GEMM, `_apply_bias` weighted by the routing
probability) with the package's own functions; only the DeepEP dispatch, which needs GPUs, is left
out (its output is the first GEMM's input). Every tensor autograd saves is recorded once per
storage; the experts' parameters are left out. Prints, per activation, the bytes per row and
the same in units of e i (16-bit elements of the expert width) beyond the input's e h.

`--eager` calls the activation's undecorated function (what the experts would save without
`torch.compile`), for comparison. The planner's account is
planner/cost/memory/activations.py `_deepep_routed_bytes`.

Needs torch 2.13 (CPU, with a C++ compiler for inductor) and nemo-automodel 0.7.0 installed
without its dependencies (`pip install --no-deps nemo-automodel==0.7.0 packaging numpy`):
  python validation/memory/automodel_experts.py
"""
from __future__ import annotations

import argparse
import json

ACTIVATIONS = ("quick_geglu", "swiglu")
"""gpt-oss's clamped GEGLU (a torch.compile'd function) and SwiGLU (Megatron-Core's fused
weighted_bias_swiglu_impl, vendored in nemo_automodel components/moe/megatron)."""


def saved_bytes_per_row(activation: str, eager: bool, rows: int = 16384, hidden: int = 96, inter: int = 64,
                        experts: int = 4) -> dict:
    import torch
    from nemo_automodel.components.moe import experts as ex
    from nemo_automodel.components.moe.config import MoEConfig
    from nemo_automodel.components.moe.mxfp8 import select_grouped_mm

    # More rows than experts.py `_BIAS_CHUNK_THRESHOLD` (12,288), as every GPT-OSS row of
    # validation/data/benchmarks.yaml dispatches (32,768): the biases add in `_ChunkedBiasAdd`.
    config = MoEConfig(n_routed_experts=experts, n_shared_experts=0, n_activated_experts=1, n_expert_groups=0,
                       n_limited_groups=0, train_gate=True, gate_bias_update_factor=0.0, aux_loss_coeff=0.0,
                       score_func="softmax", route_scale=1.0, dim=hidden, inter_dim=inter, moe_inter_dim=inter,
                       norm_topk_prob=False, expert_bias=True, expert_activation=activation)
    act = ex.get_expert_activation_for_deepep(config)
    if eager:
        bound = act  # a functools.partial for the compiled activations
        fn = getattr(bound, "func", bound)
        undecorated = getattr(fn, "_torchdynamo_orig_callable", fn)
        if hasattr(bound, "func"):
            def act(x, p):
                return undecorated(x, p, *bound.args, **bound.keywords)
        else:
            act = undecorated
    torch.manual_seed(0)
    bf16 = torch.bfloat16
    dispatched = torch.randn(rows, hidden, dtype=bf16, requires_grad=True) * 1  # a non-leaf, as DeepEP's output
    w1 = torch.randn(experts, hidden, 2 * inter, dtype=bf16, requires_grad=True)
    w2 = torch.randn(experts, inter, hidden, dtype=bf16, requires_grad=True)
    b1 = torch.randn(experts, 2 * inter, dtype=bf16, requires_grad=True)
    b2 = torch.randn(experts, hidden, dtype=bf16, requires_grad=True)
    probs = torch.rand(rows, 1, dtype=torch.float32, requires_grad=True)  # a learned gate's weights
    counts = torch.full((experts,), rows // experts, dtype=torch.long)
    offs = counts.cumsum(0).to(torch.int32)
    parameters = {t.untyped_storage().data_ptr() for t in (w1, w2, b1, b2)}
    saved: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    grouped_mm = select_grouped_mm(False)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = grouped_mm(dispatched, w1, offs)
        out = ex._apply_bias(out, b1, counts)
        out = act(out, probs)
        out = grouped_mm(out, w2, offs)
        out = ex._apply_bias(out, b2, counts, probs)
    per_row = sum(saved.values()) / rows
    return {"activation": activation, "eager": eager, "bytes_per_row": per_row,
            "e_i_beyond_e_h": (per_row - 2 * hidden - 4) / (2 * inter)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eager", action="store_true", help="also run each activation undecorated")
    args = parser.parse_args()
    for activation in ACTIVATIONS:
        for eager in (False, True) if args.eager else (False,):
            print(json.dumps(saved_bytes_per_row(activation, eager)))


if __name__ == "__main__":
    main()
