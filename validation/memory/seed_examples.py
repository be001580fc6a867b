#!/usr/bin/env python
"""The seed notes' training-memory examples, worked by the planner's memory model.

Writes the section of docs/examples.md between the markers `<!-- seed-training:begin -->` and
`<!-- seed-training:end -->` (appended when absent; nothing else in the page is touched):
7B training, the 2B ZeRO-3 table, and Mixtral-8x7B fine-tuning cases A (router only), B (6 layers
x 2 experts) and C (4-bit NF4 base + LoRA r=16), each with the rule of thumb it is usually
answered with and how far that rule is from the planner's figure. Sizes: GB = 10^9 bytes,
GiB = 2^30 bytes, always labelled.

Usage:
  .venv/bin/python validation/memory/seed_examples.py            # print the section
  .venv/bin/python validation/memory/seed_examples.py --write    # and update docs/examples.md
tests/test_memory.py checks that the page holds exactly what this prints.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "examples.md"
BEGIN, END = "<!-- seed-training:begin -->", "<!-- seed-training:end -->"
sys.path.insert(0, str(ROOT))

from planner.cost.cluster import build_cluster  # noqa: E402
from planner.cost.memory import StageMemory, estimate_memory, largest_module_params  # noqa: E402
from planner.cost.partial import PartialTraining  # noqa: E402
from planner.cost.plan import ParallelDims, Plan  # noqa: E402
from planner.cost.workload import Workload  # noqa: E402
from planner.engines.profiles import engine_traits  # noqa: E402
from planner.model import load_architecture  # noqa: E402
from planner.model.architecture import Architecture  # noqa: E402
from planner.model.hf_config import architecture_from_config  # noqa: E402
from planner.model.params import count_params, lora_params  # noqa: E402
from planner.spec.cluster import ClusterSpec  # noqa: E402

GB, GiB = 10**9, 2**30
H100 = build_cluster(ClusterSpec(gpu="h100_sxm_80gb", gpus_per_node=8, nodes=1))

# A Llama-shaped model of 2.07 B parameters for the "2B" table (the seed gives no architecture).
LLAMA_2B = dict(model_type="llama", hidden_size=2560, intermediate_size=6912, num_hidden_layers=24,
                num_attention_heads=20, num_key_value_heads=20, vocab_size=32000, tie_word_embeddings=False)
MIXTRAL_EXPERT_TARGETS = ("gate_proj", "up_proj", "down_proj")


def _gb(n: float) -> str:
    return f"{n / GB:,.2f}"


def _gib(n: float) -> str:
    return f"{n / GiB:,.2f}"


def _off(rule: float, planner: float) -> str:
    """How far the rule of thumb is from the planner: (rule - planner) / planner."""
    return f"{(rule - planner) / planner:+.0%}"


def _states(s: StageMemory) -> int:
    m = s.memory
    return m.weights + m.gradients + m.optimizer + m.master_weights


def _one(plan: Plan, workload: Workload, **kw) -> StageMemory:
    return max(estimate_memory(plan, workload, H100, **kw), key=lambda s: s.memory.total)


def _fits(s: StageMemory) -> str:
    return "yes" if s.memory.total <= H100.capacity else "no"


def seven_b() -> list[str]:
    arch = load_architecture("llama2-7b")
    p = count_params(arch).total
    wl = Workload(arch=arch, training="full", seq_len=4096, global_batch=1, engine=engine_traits("fsdp2"))
    rows = []
    megatron = Workload(arch=arch, training="full", seq_len=4096, global_batch=8, engine=engine_traits("megatron"))
    for label, plan, workload in [
        ("1 GPU, bf16 mixed precision, full recompute (hf)",
         Plan(parallel=ParallelDims(), precision="bf16", recompute="full"), wl),
        ("1 GPU, Megatron bf16 (fp32 gradients), full recompute",
         Plan(parallel=ParallelDims(), precision="bf16", recompute="full"), megatron),
        ("1 GPU, pure bf16 (weights, grads, Adam in bf16), full recompute (hf)",
         Plan(parallel=ParallelDims(), precision="bf16-pure", recompute="full"), wl),
        ("8 GPUs, FSDP2 ZeRO-3, bf16 mixed precision, no recompute (hf)",
         Plan(parallel=ParallelDims(dp=8), zero=3, precision="bf16"),
         Workload(arch=arch, training="full", seq_len=4096, global_batch=8, engine=engine_traits("fsdp2"))),
        ("8 GPUs, Megatron distributed optimizer (ZeRO-1), selective recompute",
         Plan(parallel=ParallelDims(dp=8), zero=1, precision="bf16", recompute="selective"), megatron),
    ]:
        s = _one(plan, workload)
        rows.append(f"| {label} | {_gb(_states(s))} | {_gb(s.memory.activations)} | {_gb(s.memory.total)} |"
                    f" {_gib(s.memory.total)} | {s.phase} | {_fits(s)} |")
    full = _one(Plan(parallel=ParallelDims(), precision="bf16", recompute="full"), wl)
    rule_4x, rule_16 = 4 * 2 * p, 16 * p
    return [
        "### 7B training on one GPU",
        "",
        f"Llama-2-7B ({p:,} parameters), sequence 4,096, one sequence per step, AdamW, one H100 80GB"
        f" ({_gib(H100.capacity)} GiB usable). `total` includes the CUDA context and the 5 % fragmentation"
        " allowance (`runtime`).",
        "",
        "| plan | model states GB | activations at the peak GB | total GB | total GiB | peak phase | fits an H100 (per GPU) |",
        "|---|---:|---:|---:|---:|---|---|",
        *rows,
        "",
        "| rule of thumb | rule GB | planner GB (hf, bf16, full recompute) | rule off by |",
        "|---|---:|---:|---:|",
        f"| \"training = 4 × weights\" (4 × {_gb(2 * p)} GB of bf16 weights) | {_gb(rule_4x)} | {_gb(full.memory.total)} |"
        f" {_off(rule_4x, full.memory.total)} |",
        f"| \"16 bytes per parameter\" (ZeRO paper, model states only) | {_gb(rule_16)} | {_gb(full.memory.total)} |"
        f" {_off(rule_16, full.memory.total)} |",
        "",
        "\"4 × weights\" forgets the fp32 master weights and Adam's two fp32 moments (8 of the 16 bytes); 16 B/param"
        " is exact for mixed-precision model states under DeepSpeed or Megatron-fp16, but PyTorch's foreach AdamW"
        " adds an fp32 temporary of the parameters in the step (the hf peak is the optimizer step), Megatron's bf16"
        " keeps fp32 gradients (18 B/param) and neither rule has activations. No 7B full fine-tune fits one 80 GB GPU"
        " with AdamW in mixed precision; pure bf16 (8 B/param of states) does, and so does mixed precision sharded"
        " over 8 GPUs. Under hf the single-GPU peak is the optimizer step, where no activations are alive.",
        "",
    ]


def two_b_zero3() -> list[str]:
    arch = architecture_from_config(dict(LLAMA_2B), "llama-2b")
    p = count_params(arch).total
    wl = Workload(arch=arch, training="full", seq_len=2048, global_batch=16, engine=engine_traits("deepspeed"))
    rows = []
    for n in (1, 2, 4, 8, 16):
        nodes = max(1, n // 8)
        cluster = build_cluster(ClusterSpec(gpu="h100_sxm_80gb", gpus_per_node=min(n, 8), nodes=nodes))
        plan = Plan(parallel=ParallelDims(dp=n), zero=3, precision="bf16", recompute="full", gas=16 // n)
        s = max(estimate_memory(plan, wl, cluster), key=lambda x: x.memory.total)
        rule = 18 * p / n
        # DeepSpeed's estimate_zero3_model_states_mem_needs (no offload): 4 B x largest layer + 18 B/param/N.
        ds = 4 * largest_module_params(arch) + 18 * p / n
        rows.append(f"| {n} | {_gb(rule)} | {_gb(ds)} | {_gb(_states(s) + s.detail.get('zero3_gathered_modules', 0))} |"
                    f" {_gb(s.memory.total)} | {_gib(s.memory.total)} | {_off(rule, s.memory.total)} |")
    return [
        "### The 2B model under ZeRO-3",
        "",
        "The rule: \"a 2B model needs 36 GB to train\" (18 B/param: bf16 weights 2 + fp32 gradients 4 + fp32 master 4"
        " + Adam 8), divided by the GPUs under ZeRO-3. The model: a Llama shape of"
        f" {p:,} parameters (h 2,560, 24 layers, FFN 6,912, vocabulary 32,000, untied); DeepSpeed ZeRO-3, bf16,"
        " sequence 2,048, one sequence per GPU, full recompute.",
        "",
        "| GPUs | rule 18·P/N GB | DeepSpeed estimator GB | planner model states GB | planner total GB | planner total GiB |"
        " rule off by (vs total) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "DeepSpeed's estimator adds 4 B × its largest layer (the embedding here: 2 × 81,920,000 × 2 B gathered and"
        " prefetched) to 18·P/N; the planner's model states also carry the bf16 gradient partition DeepSpeed keeps"
        " (2 B/param/N) and cap the fp32 gradient copy at one 10^9-parameter optimizer sub-group. The rule misses"
        " what does not shrink with N — the gathered layers, activations, logits, the CUDA context — so it is"
        " closest on one GPU and furthest on 16.",
        "",
    ]


def _mixtral_row(label: str, s: StageMemory, trainable: int, rule_label: str, rule: float) -> str:
    m = s.memory
    return (f"| {label} | {trainable:,} | {_gb(m.weights)} | {_gb(m.gradients + m.optimizer + m.master_weights)} |"
            f" {_gb(m.activations)} | {_gb(m.total)} | {_gib(m.total)} | {_fits(s)} | {rule_label}: {_gb(rule)} GB,"
            f" {_off(rule, m.total)} |")


def mixtral() -> list[str]:
    arch: Architecture = load_architecture("mixtral-8x7b")
    p = count_params(arch).total
    full = Workload(arch=arch, training="full", seq_len=4096, global_batch=1, engine=engine_traits("fsdp2"))
    plan = Plan(parallel=ParallelDims(), precision="bf16", recompute="full")

    router = PartialTraining(router=True)
    a = _one(plan, full, partial=router)
    b_partial = PartialTraining(layers=tuple(range(6)), experts=2)
    b = _one(plan, full, partial=b_partial)
    qlora = Workload(arch=arch, training="qlora", seq_len=4096, global_batch=1, engine=engine_traits("fsdp2"),
                     lora_targets=MIXTRAL_EXPERT_TARGETS)
    c_plan = plan.with_(lora_rank=16, quant="nf4")
    c = _one(c_plan, qlora)
    adapters = sum(lora_params(arch, i, 16, MIXTRAL_EXPERT_TARGETS) for i in range(arch.num_layers))
    b_trainable = b_partial.trainable_params(arch)
    return [
        "### Mixtral-8x7B fine-tuning: cases A, B and C",
        "",
        f"Mixtral-8x7B ({p:,} parameters; one SwiGLU expert 176,160,768), sequence 4,096, one sequence, AdamW, bf16"
        " mixed precision (fp32 trainable weights under autocast, frozen weights in bf16), full recompute, one"
        " GPU, framework hf. Frozen parameters cost their weight bytes only; trainable ones carry gradient,"
        " master/fp32 weight and Adam states.",
        "",
        "| case | trainable params | weights GB | grads + optimizer + master GB | activations GB | total GB |"
        " total GiB | fits one H100 | rule of thumb, off by |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
        _mixtral_row("A: router only", a, router.trainable_params(arch),
                     "\"as much as inference: 2 B × params\"", 2 * p),
        _mixtral_row("B: 6 layers × 2 experts", b, b_trainable,
                     "\"16 B × trainable\"", 16 * b_trainable),
        _mixtral_row("C: NF4 base + LoRA r=16 on expert gate/up/down", c, adapters,
                     "\"4-bit = params / 2\"", p / 2),
        "",
        "- A: 32 routers × 8 × 4,096 = 1,048,576 trainable parameters. Their states are 16 MB; the frozen bf16"
        " weights (93.4 GB) alone exceed one 80 GB GPU, so router-only tuning of Mixtral needs two GPUs or a"
        " quantized base. \"As much as inference\" is the right order here: it misses the saved activations,"
        " the logits and the CUDA context.",
        "- B: 6 × 2 × 176,160,768 = 2,113,929,216 trainable parameters: 33.8 GB of state at 16 B/param (the seed's"
        " figure) — but the other 44.6 B parameters still sit on the GPU as bf16 weights. The planner assumes one"
        " module per expert (Megatron's SequentialMLP, older transformers); transformers 5's fused expert tensors"
        " ([E, 2i, h]) cannot freeze single experts, so there the gradient and optimizer state cover all 8 experts"
        " of the 6 layers (4× case B's).",
        "- C: NF4 with double quantization stores 0.5 + 0.127/8 B per quantized weight (QLoRA §3: 4-bit codes, an"
        " 8-bit absmax per 64 weights, an fp32 scale per 256 absmax); embeddings, norms, routers and lm_head stay in"
        f" bf16. LoRA r=16 on every expert's gate/up/down: {adapters:,} adapter parameters (884,736 per expert)."
        " \"params / 2\" misses the scales, the bf16 non-expert tensors, the adapters' state and the activations.",
        "",
    ]


def section() -> str:
    lines = [
        BEGIN,
        "## 6. The seed: training memory and its rules of thumb",
        "",
        "Generated by `validation/memory/seed_examples.py --write` from the planner's memory model"
        " (`planner/cost/memory/`, checked against measurement in [memory-validation.md](memory-validation.md));"
        " `tests/test_memory.py` checks that this section is what the script prints. Sizes: **GB = 10^9 bytes**,"
        " **GiB = 2^30 bytes**. \"Off by\" is (rule − planner) / planner on the planner's total per GPU.",
        "",
        *seven_b(),
        *two_b_zero3(),
        *mixtral(),
        END,
    ]
    return "\n".join(lines) + "\n"


def updated(page: str) -> str:
    new = section()
    if BEGIN in page:
        head, rest = page.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        return head + new + (("\n" + tail) if tail else "")
    return page.rstrip("\n") + "\n\n" + new


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help=f"update {DOC.relative_to(ROOT)}")
    args = ap.parse_args()
    print(section())
    if args.write:
        DOC.write_text(updated(DOC.read_text()))


if __name__ == "__main__":
    main()
