#!/usr/bin/env python
"""Planner prediction vs measured memory, term by term, and vs DeepSpeed's and Megatron's estimators.

Measurements (validation/memory/data/*.json, written by `measure.py`): for each configuration this
builds the planner's Plan / Workload from the stored planner inputs, runs
`planner.cost.memory.estimate_memory`, and compares
  - MemTracker runs (memtracker_step.py, lora_memtracker.py): the categories at the step's peak
    (Parameter -> weights, Gradient -> gradients, Optstate -> optimizer, Activation + Temp ->
    activations, Buffer + Other -> buffers) with the planner's terms at its predicted peak;
  - FSDP2 runs (fsdp2_memtracker.py, rank 0 of 8): Sharded Param -> weights, Sharded/Unsharded
    Grad -> gradients, OptState -> optimizer, Activation + Temp -> activations, Unsharded Param +
    All Gather + Reduce Scatter + Buffer + Inputs -> buffers.
The tools run on the CPU, without a CUDA context or allocator fragmentation, so the planner's
total is taken as `total - runtime` (docs/cli.md: comparable with PyTorch's memory tracker).
Bar: every total within +-5 %, every term within +-10 % or explained (EXPLAINED below).

Other estimators (validation/memory/references/*.json): DeepSpeed's ZeRO-2/3 model-state
estimator (per GPU and per node's CPU) and Megatron's theoretical memory (weights + optimizer,
activations of the first pipeline stage). These are formulas, not measurements: the page shows
the planner's figures beside theirs and why they differ (REFERENCE_NOTES below).

Usage:
  .venv/bin/python validation/memory/compare.py            # print the tables
  .venv/bin/python validation/memory/compare.py --write    # and regenerate docs/memory-validation.md
Needs only the planner (no torch): tests/test_memory_validation.py imports it.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = HERE / "data"
REFERENCES = HERE / "references"
DOC = ROOT / "docs" / "memory-validation.md"
sys.path.insert(0, str(ROOT))

from planner.cost.cluster import build_cluster  # noqa: E402
from planner.cost.memory import StageMemory, estimate_memory, layer_activation_bytes_per_token  # noqa: E402
from planner.cost.partial import PartialTraining  # noqa: E402
from planner.cost.plan import ParallelDims, Plan  # noqa: E402
from planner.cost.shard import stage_shards  # noqa: E402
from planner.cost.workload import Workload  # noqa: E402
from planner.engines.profiles import engine_traits  # noqa: E402
from planner.model import architecture_from_config  # noqa: E402
from planner.spec.cluster import ClusterSpec  # noqa: E402

TERMS = ("weights", "gradients", "optimizer", "master_weights", "activations", "buffers")
TOTAL_TOLERANCE = 0.05
TERM_TOLERANCE = 0.10
NEGLIGIBLE = 0.01
"""A term below 1% of the measured total is compared in bytes, not in percent."""

# Differences the planner keeps on purpose, with the physical reason (the tests accept them).
EXPLAINED: dict[tuple[str, str], str] = {
    ("fsdp2-*", "buffers"):
        "the planner holds two decoder layers gathered (FSDP2 issues the next layer's all-gather on its"
        " own stream while the current layer computes, and prefetches the previous layer in backward);"
        " the fake process group runs collectives synchronously on the CPU, so the measurement never"
        " holds more than one: the difference is exactly one layer's gathered parameters in the compute"
        " dtype (`zero3_gathered_layers` / 2 in the itemized line)",
}

CLUSTER = build_cluster(ClusterSpec(gpu="h100_sxm_80gb", gpus_per_node=8, nodes=1))


@dataclass
class Row:
    name: str
    tool: str
    measured: dict[str, int]
    predicted: dict[str, int]
    phase: str
    measured_phase: str
    detail: dict[str, int]
    note: str = ""
    explained: dict[str, str] = field(default_factory=dict)

    def error(self, term: str) -> float | None:
        m, p = self.measured.get(term), self.predicted.get(term)
        if m is None or p is None:
            return None
        if term != "total" and max(m, p) < NEGLIGIBLE * self.measured["total"]:
            return None
        return (p - m) / m if m else float("inf")

    def failures(self) -> list[str]:
        """Totals outside ±5 %, and terms outside ±10 % that no explanation covers."""
        out = []
        for term in ("total", *TERMS):
            err = self.error(term)
            limit = TOTAL_TOLERANCE if term == "total" else TERM_TOLERANCE
            if err is not None and abs(err) > limit and (term == "total" or term not in self.explained):
                out.append(f"{self.name}: {term} {err:+.1%}")
        return out


def load_docs(data: Path = DATA) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(data.glob("*.json"))]


def planner_inputs(doc: dict) -> tuple[Plan, Workload]:
    c = doc["planner"]
    lora = c.get("lora") or {}
    parallel = ParallelDims(tp=c.get("tp", 1), pp=c.get("pp", 1), dp=c["dp"], sp=c.get("sp", False))
    gas = c.get("gas", 1)
    plan = Plan(parallel=parallel, zero=c["zero"], recompute=c["recompute"], mbs=c["mbs"], gas=gas,
                lora_rank=lora.get("rank", 0), precision=c["precision"], offload=c["offload"],
                optimizer=c["optimizer"])
    workload = Workload(arch=architecture_from_config(dict(c["model"]), doc["name"]), training=c["training"],
                        seq_len=c["seq_len"], global_batch=c["mbs"] * c["dp"] * gas,
                        lora_targets=tuple(lora.get("targets", ())),
                        engine=engine_traits(c["framework"]))
    return plan, workload


def partial_training(doc: dict) -> PartialTraining | None:
    spec = doc["planner"].get("partial")
    if spec is None:
        return None
    layers = spec.get("layers")
    return PartialTraining(**{**spec, "layers": None if layers is None else tuple(layers)})


def predict_stages(doc: dict) -> list[StageMemory]:
    plan, workload = planner_inputs(doc)
    return estimate_memory(plan, workload, CLUSTER, partial=partial_training(doc))


def predict(doc: dict) -> StageMemory:
    return max(predict_stages(doc), key=lambda s: s.memory.total)


def measured_terms(doc: dict) -> tuple[dict[str, int], str]:
    """The measured bytes by planner term, and the phase of the measured peak."""
    peak = doc["output"]["peak"]
    if doc["tool"] == "fsdp2_memtracker.py":
        terms = {
            "weights": peak["Sharded Param"],
            "gradients": peak["Sharded Grad"] + peak["Unsharded Grad"],
            "optimizer": peak["OptState"],
            "master_weights": 0,
            "activations": peak["Activation"] + peak["Temp"],
            "buffers": peak["Unsharded Param"] + peak["All Gather"] + peak["Reduce Scatter"] + peak["Buffer"]
                       + peak["Inputs"],
        }
    else:
        terms = {"weights": peak["Parameter"], "gradients": peak["Gradient"], "optimizer": peak["Optstate"],
                 "master_weights": 0, "activations": peak["Activation"] + peak["Temp"],
                 "buffers": peak["Buffer"] + peak["Other"]}
    terms["total"] = peak["Total"]
    if peak["Temp"] > 0:
        phase = "backward start"
    elif terms["activations"] == 0:
        phase = "optimizer step"
    else:
        phase = "forward end" if terms["gradients"] == 0 else "backward layers"
    return terms, phase


def compare(doc: dict) -> Row:
    stage = predict(doc)
    mem = stage.memory
    predicted = {t: getattr(mem, t) for t in TERMS}
    predicted["total"] = mem.total - mem.runtime
    measured, measured_phase = measured_terms(doc)
    explained = {term: why for (pattern, term), why in EXPLAINED.items() if fnmatch.fnmatch(doc["name"], pattern)}
    return Row(name=doc["name"], tool=doc["tool"], measured=measured, predicted=predicted, phase=stage.phase,
               measured_phase=measured_phase, detail=stage.detail, note=doc.get("note", ""), explained=explained)


def rows(data: Path = DATA) -> list[Row]:
    return [compare(doc) for doc in load_docs(data)]


# ---------------------------------------------------------------- other estimators

@dataclass
class RefRow:
    """One figure of another estimator beside the planner's."""

    name: str
    quantity: str
    theirs: int
    ours: int
    why: str

    @property
    def error(self) -> float:
        return (self.ours - self.theirs) / self.theirs if self.theirs else 0.0


def _deepspeed_why(doc: dict, stage: StageMemory, where: str) -> str:
    row = doc["output"]["row"]
    factor = doc["output"]["additional_buffer_factor"]
    if where == "gpu":
        if row["stage"] == 3 and not row["offload_optimizer"]:
            return ("DeepSpeed counts 18 B/param/N (2 bf16 params + 4 fp32 grads + 4 fp32 params + 8 Adam). The"
                    " planner adds the bf16 gradient partitions stage3.py keeps (`grad_partitions_flat_buffer`,"
                    " 2 B/param/N) and holds the fp32 gradients of one optimizer sub-group at a time"
                    f" (`sub_group_size` 1e9: at most 4 GB; here {stage.detail.get('fp32_gradient_copy', 0):,} B"
                    " instead of 4 B/param/N)")
        if row["stage"] == 2:
            return ("same bytes: bf16 weights 2P" + (" (the fp32 states and gradients live on the host)"
                                                    if row["offload_optimizer"] else
                                                    " + (2 bf16 grads + 4 fp32 grads + 4 master + 8 Adam) P/N"))
        return ("same bytes: DeepSpeed's 4 B x its largest layer (a module in use and one prefetched, in 16 bits)"
                " is the planner's `zero3_gathered_modules`" + ("" if row["offload_param"] else
                                                                 ", plus the bf16 parameter partition 2P/N"))
    if not row["offload_optimizer"]:
        what = ("4 B/param x GPUs per node" if row["stage"] == 2 else "4 B x the largest layer x GPUs per node")
        return (f"DeepSpeed's CPU figure without offload is {what} x {factor}: what each process holds on the host"
                " while it builds and partitions the model (an initialisation peak); nothing stays on the host in"
                " the steady state the planner models")
    if row["stage"] == 2:
        return (f"DeepSpeed's ZeRO-2 row is 4 B/param x GPUs per node x {factor} (every process loads the whole"
                " model in fp32 on the host before partitioning: an initialisation peak, not a steady state);"
                " the planner counts the steady state: fp32 master + Adam + fp32 gradients, 16 B/param/N")
    per_param = 18 if row["offload_param"] else 16
    return (f"DeepSpeed: {per_param} B/param per node x {factor} (its `additional_buffer_factor`, a margin, not a"
            f" tensor); the planner counts the tensors, {per_param} B/param/N per GPU"
            + (" (fp32 master + Adam + fp32 gradients + the bf16 parameters)" if row["offload_param"]
               else " (fp32 master + Adam + fp32 gradients)")
            + f": 1/{factor} = {1 / factor:.1%} of DeepSpeed's figure")


def deepspeed_rows(doc: dict) -> list[RefRow]:
    (stage,) = predict_stages(doc)
    m = stage.memory
    states = m.weights + m.gradients + m.optimizer + m.master_weights
    gathered = stage.detail.get("zero3_gathered_modules", 0)
    row = doc["output"]["row"]
    gpus = doc["output"]["gpus_per_node"]
    return [
        RefRow(doc["name"], "GPU: model states", row["per_gpu_bytes"], states + gathered,
               _deepspeed_why(doc, stage, "gpu")),
        RefRow(doc["name"], "CPU per node", row["per_cpu_bytes"], stage.host_bytes * gpus,
               _deepspeed_why(doc, stage, "cpu")),
    ]


def megatron_rows(doc: dict) -> list[RefRow]:
    plan, workload = planner_inputs(doc)
    first = predict_stages(doc)[0]  # Megatron reports the first pipeline stage
    m = first.memory
    out = doc["output"]
    arch = workload.arch
    ours_params = round(stage_shards(plan, arch)[0].total * plan.parallel.tp)
    cfg = out["config"]
    h, tp = arch.hidden, plan.parallel.tp
    ours_layer = layer_activation_bytes_per_token(arch, 0, plan, workload) * tp / h
    theirs_layer = 18 + 4 * cfg["ffn_hidden_size"] / cfg["hidden_size"]
    states_why = (
        f"first stage (all TP ranks): Megatron {out['params_on_most_loaded_shard'] * tp:,} parameters, the planner"
        f" {ours_params:,} (exact): Megatron counts every norm as a LayerNorm with a bias (+h per norm),"
        f" pads the vocabulary to a multiple of 128 x TP, and has no MoE router; both count 6 + 12/DP B/param"
        " (bf16 weights, fp32 gradients, distributed fp32 master + Adam)")
    act_why = (
        f"per layer and token, Megatron's Table-2 formula gives (18 + 4 ffn/h) h / t = {theirs_layer:.2f} h / t bytes;"
        f" the planner's per-tensor count gives {ours_layer:.2f} h / t (GQA keeps K and V at kv width,"
        " not h; SwiGLU keeps gate and up (2 ffn wide) besides the product; no dropout masks)"
        + (f"; MoE: each token's FFN activations exist top_k = {arch.moe.top_k} times, each with its routing"
           " probability, which the formula (one FFN of the expert size per token) leaves out"
           if arch.moe else "")
        + ("; the last-stage logits: Megatron 4 s b (h + V) / t, the planner 4 s b V / t (the fused cross"
           " entropy's fp32 exponentials; no module keeps the bf16 logits)" if plan.parallel.pp == 1 else ""))
    states = m.weights + m.gradients + m.optimizer + m.master_weights
    return [
        RefRow(doc["name"], "weights + optimizer", out["weight_and_optimizer_bytes"], states, states_why),
        RefRow(doc["name"], "activations", out["activation_bytes"], m.activations, act_why),
    ]


def reference_rows(refs: Path = REFERENCES) -> list[RefRow]:
    out: list[RefRow] = []
    for doc in load_docs(refs):
        if doc["tool"] == "deepspeed_estimate.py":
            out += deepspeed_rows(doc)
        elif doc["tool"] == "megatron_theoretical_memory.py":
            out += megatron_rows(doc)
    return out


# ---------------------------------------------------------------- rendering

def _gb(n: int | None) -> str:
    return "—" if n is None else f"{n / 1e9:,.3f}"


def _err(row: Row, term: str) -> str:
    err = row.error(term)
    if err is None:
        if term in row.measured and term in row.predicted:
            return "≈0"
        return "—"
    mark = "*" if term in row.explained else ""
    return f"{err:+.1%}{mark}"


def summary_table(all_rows: list[Row]) -> list[str]:
    lines = ["| configuration | tool | peak (measured / predicted) | measured GB | predicted GB | total | weights |"
             " gradients | optimizer | activations | buffers |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in all_rows:
        phases = r.measured_phase if r.measured_phase == r.phase else f"{r.measured_phase} / {r.phase}"
        lines.append(f"| {r.name} | {r.tool.removesuffix('.py')} | {phases} | {_gb(r.measured['total'])} | "
                     f"{_gb(r.predicted['total'])} | "
                     + " | ".join(_err(r, t) for t in ("total", "weights", "gradients", "optimizer", "activations",
                                                       "buffers")) + " |")
    return lines


def reference_table(refs: list[RefRow], tool: str) -> list[str]:
    lines = ["| configuration | quantity | theirs B | planner B | planner vs theirs | why |",
             "|---|---|---:|---:|---:|---|"]
    for r in refs:
        if r.name.startswith(tool):
            lines.append(f"| {r.name} | {r.quantity} | {r.theirs:,} | {r.ours:,} | {r.error:+.2%} | {r.why} |")
    return lines


def detail_section(r: Row, doc: dict) -> list[str]:
    lines = [f"### {r.name}", "", f"`{' '.join(doc['command'])}`" + (f" — {r.note}" if r.note else ""), "",
             "| term | measured B | predicted B | error |", "|---|---:|---:|---:|"]
    for term in (*TERMS, "total"):
        if term in r.measured or term in r.predicted:
            m, p = r.measured.get(term), r.predicted.get(term)
            lines.append(f"| {term} | {m if m is None else f'{m:,}'} | {p if p is None else f'{p:,}'} | "
                         f"{_err(r, term)} |")
    lines += ["", f"Predicted peak: {r.phase}; itemized: "
              + ", ".join(f"{k} {v:,}" for k, v in r.detail.items() if k not in ("cuda_context", "fragmentation")), ""]
    for term, why in r.explained.items():
        lines += [f"\\* {term}: {why}.", ""]
    return lines


def _versions(docs: list[dict]) -> str:
    seen = sorted({tuple(sorted(d["versions"].items())) for d in docs})
    return "; ".join(", ".join(f"{k} {v}" for k, v in v_items) for v_items in seen)


def render(all_rows: list[Row], docs: list[dict], refs: list[RefRow] | None = None) -> str:
    refs = reference_rows() if refs is None else refs
    worst = max((abs(r.error("total")) for r in all_rows), default=0.0)
    worst_name = max(all_rows, key=lambda r: abs(r.error("total"))).name if all_rows else "—"
    failures = [f for r in all_rows for f in r.failures()]
    tools = sorted({r.tool for r in all_rows})
    head = [
        "# Memory model vs measurement",
        "",
        "<!-- Generated by `validation/memory/compare.py --write`; do not edit by hand. -->",
        "Generated by `validation/memory/compare.py --write` from `validation/memory/data/*.json` and",
        "`validation/memory/references/*.json` (both written by `validation/memory/measure.py`). **Do not edit by",
        "hand**: `tests/test_memory_validation.py` fails when this page differs from what the script writes.",
        "",
        f"Measured with {_versions(docs)}, on the CPU (fake tensors for full-size models), by "
        + ", ".join(f"`{t}`" for t in tools) + " (PyTorch's MemTracker / FSDPMemTracker; `lora_memtracker.py` is"
        " this repository's LoRA wrapper around the same MemTracker, PEFT not being installed). Predictions are the"
        " planner's `total − runtime` (no CUDA context, no fragmentation: the tools see neither), term by term at"
        " the planner's predicted peak phase; measured terms are the tracker's categories at the measured peak."
        " Errors are (predicted − measured) / measured; `≈0` marks a term under 1 % of the total on both sides;"
        " `*` an explained difference (below the configuration). Sizes: **GB = 10^9 bytes**; B = bytes.",
        "",
        f"**{len(all_rows)} measured configurations; largest total error {worst:.2%} ({worst_name}); "
        + (f"{len(failures)} figures outside the bar: {'; '.join(failures)}.**" if failures else
           "every total within ±5 %, every term within ±10 % or explained.**"),
        "",
        "## Summary",
        "",
        *summary_table(all_rows),
        "",
        "The full-size runs (Llama-3-8B, Mixtral-8x7B without ZeRO) peak in the optimizer step (foreach",
        "AdamW's temporary), where no activations are alive: their activation terms are checked by the",
        "recompute and small-model rows, whose peak is the start of backward.",
        "",
        "## DeepSpeed's ZeRO estimator (model states)",
        "",
        "`deepspeed.runtime.zero.stage_1_and_2.estimate_zero2_model_states_mem_needs` and",
        "`stage3.estimate_zero3_model_states_mem_needs` (zero_init rows), 1 node × 8 GPUs, against the planner's",
        "weights + gradients + optimizer states + master weights (+ the ZeRO-3 gathered modules) with",
        "`framework: deepspeed`, and its host bytes × 8 GPUs for the CPU column. No activations on either side.",
        "",
        *reference_table(refs, "deepspeed"),
        "",
        "## Megatron's theoretical memory",
        "",
        "`megatron/training/theoretical_memory_usage.py` as ported in megatron-bridge 0.3.1 (distributed optimizer,",
        "sequence parallel + selective recompute, the first pipeline stage), against the planner with",
        "`framework: megatron` on the same plan.",
        "",
        *reference_table(refs, "megatron"),
        "",
        "## What these measurements do not cover",
        "",
        "- Megatron-Core / Transformer Engine kernels, tensor/sequence/context/expert parallelism and pipeline",
        "  schedules: checked only against Megatron's formula above and the published Table 2 of Korthikanti et al.",
        "  (tests/test_memory.py), not measured (no multi-GPU machine; the fake process group runs FSDP2 only).",
        "- NF4/int8 base weights and 8-bit Adam (bitsandbytes is not installed here), fp8 training, Adafactor:",
        "  unit-tested formulas (tests/test_memory.py), not measured.",
        "- CPU offload: host bytes compared with DeepSpeed's estimator above, not measured.",
        "- The CUDA context, NCCL buffers and allocator fragmentation (`runtime`): the CPU tools see none of",
        "  them; the planner shows them as their own term (0.75 GiB + 5 % of the live bytes, planner/cost/memory/).",
        "",
        "## Per configuration",
        "",
    ]
    body = []
    by_name = {d["name"]: d for d in docs}
    for r in all_rows:
        body += detail_section(r, by_name[r.name])
    return "\n".join(head + body).rstrip() + "\n"


def document() -> str:
    """The page as `--write` would write it now."""
    docs = load_docs()
    return render([compare(d) for d in docs], docs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help=f"write {DOC.relative_to(ROOT)}")
    args = ap.parse_args()
    docs = load_docs()
    all_rows = [compare(d) for d in docs]
    print("\n".join(summary_table(all_rows)))
    refs = reference_rows()
    print("\n".join(reference_table(refs, "deepspeed")))
    print("\n".join(reference_table(refs, "megatron")))
    failures = [f for r in all_rows for f in r.failures()]
    for f in failures:
        print("OUTSIDE TOLERANCE:", f)
    if args.write:
        DOC.write_text(render(all_rows, docs, refs))
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
