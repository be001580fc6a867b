"""Rich tables for people: every number with its unit; GiB means 2^30 bytes.

What limits a plan stands out: the headroom of the tightest GPU (yellow under a tenth of its
memory, red when over) and the largest term of its stage. Styles are dropped where rich finds no
terminal or NO_COLOR is set; the words and numbers carry the meaning on their own.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # names for the annotations only: `gpus` and `models` stay quick to start
    from hardware import Accelerator
    from planner.cost.evaluate import Evaluation
    from planner.cost.memory import MemoryBreakdown
    from planner.model.architecture import Architecture
    from planner.model.flops import FlopsPerToken
    from planner.model.params import ParamCount
    from planner.search.result import SolveResult
    from planner.search.stacks import EngineComparison

GiB = 2**30
MEMORY_TERMS = ("weights", "gradients", "optimizer", "master_weights", "activations", "buffers", "runtime")
BAR_WIDTH = 10


def _gib(n: float) -> str:
    return f"{n / GiB:,.2f}"


def format_seconds(s: float) -> str:
    """Seconds with a unit people read at a glance: `2.31 s`, `14.2 ms`, `35 µs`."""
    if s >= 1:
        return f"{s:,.2f} s"
    return f"{s * 1e3:,.1f} ms" if s >= 1e-3 or s == 0 else f"{s * 1e6:,.0f} µs"


def _bar(used: float, capacity: float) -> Text:
    share = min(used / capacity, 1.0) if capacity else 1.0
    filled = round(share * BAR_WIDTH)
    style = "red" if used > capacity else ("yellow" if share > 0.9 else "green")
    full, empty = _bar_glyphs()
    return Text(full * filled + empty * (BAR_WIDTH - filled), style=style)


def _bar_glyphs() -> tuple[str, str]:
    # Block glyphs only where the output can encode them (a pipe under LANG=C may be ASCII).
    encoding = (getattr(sys.stdout, "encoding", None) or "ascii").lower()
    return ("█", "░") if encoding.startswith("utf") else ("#", ".")


def tightest_term(ev: Evaluation) -> tuple[int, str]:
    """The stage with the least headroom and its largest term: what to shrink first to fit more."""
    stage = ev.peak_stage
    terms = {term: getattr(stage.memory, term) for term in MEMORY_TERMS}
    return stage.stage, max(terms, key=terms.get)


def _largest_term_text(ev: Evaluation) -> Text:
    stage, term = tightest_term(ev)
    where = f" (stage {stage})" if len(ev.stages) > 1 else ""
    return Text(f"{term.replace('_', ' ')}{where}", style="bold")


def _headroom_text(free: float, capacity: float, unit: str = " GiB") -> Text:
    """Bytes left on the tightest GPU; yellow under a tenth of capacity, red when over."""
    style = "bold red" if free < 0 else ("bold yellow" if free < 0.1 * capacity else "")
    return Text(f"{_gib(free)}{unit}", style=style)


def describe_layout(ev: Evaluation) -> str:
    """`tp4 pp2 dp8 +sp · LoRA r16 nf4 · fp8`: the parallel layout and adapter choices in one line,
    and the precision unless it is bf16 (a job in fp8, mxfp8 or nvfp4 may also be planned in bf16,
    search.space.default_precisions: the rows say which is which)."""
    p = ev.plan.parallel
    text = f"tp{p.tp} pp{p.pp} dp{p.dp}"
    for key in ("cp", "ep", "vpp"):
        if getattr(p, key) > 1:
            text += f" {key}{getattr(p, key)}"
    text += " +sp" if p.sp else ""
    if len(ev.stages) > 1 and len({s.layers for s in ev.stages}) > 1:
        text += f" layers {ev.stages[0].layers}/{ev.stages[1].layers}…/{ev.stages[-1].layers}"  # uneven partition
    if ev.plan.lora_rank:
        text += f" · LoRA r{ev.plan.lora_rank}"
    if ev.plan.quant != "none":
        text += f" {ev.plan.quant}"
    if ev.plan.offload != "none":
        text += f" · offload {ev.plan.offload}"
    if ev.plan.precision != "bf16":
        text += f" · {ev.plan.precision}"
    return text


def solve_view(result: SolveResult, title: str, explanation: str | None,
               engines: list[EngineComparison] | None = None) -> Group:
    parts = []
    header = Text(title, style="bold")
    header.append(f"\n{result.status} · objective {result.objective} · {result.candidates:,} legal plans"
                  f" · searched in {result.seconds_text()}", style="dim")
    parts.append(header)
    if not result.plans:
        parts.append(Text(explanation or "No plan fits.", style="red"))
        if engines:
            parts.append(engines_text(engines))
        return Group(*parts)
    capacity = result.plans[0].capacity
    plans = Table(title=f"Best plans (per-GPU memory of the most loaded stage; usable {_gib(capacity)} GiB)",
                  title_justify="left", header_style="bold")
    rows = []
    for i, ev in enumerate(result.plans, 1):
        memory = _bar(ev.memory.total, ev.capacity).append(f" {_gib(ev.memory.total)} GiB", style="")
        rows.append((
            str(i), ev.plan.framework, describe_layout(ev), str(ev.plan.zero), _recompute_text(ev), f"{ev.plan.mbs} × {ev.plan.gas}",
            memory, _headroom_text(ev.capacity - ev.memory.total, ev.capacity), _largest_term_text(ev),
            format_seconds(ev.time.step), f"{ev.time.tokens_per_s:,.0f}",
            f"{ev.time.mfu:.1%}"))
    # Figures never shrink (a cut number misleads); the words wrap when the terminal is narrow.
    wrapping = {"layout", "recompute", "largest term"}
    for j, (col, justify) in enumerate((("#", "right"), ("engine", "left"), ("layout", "left"), ("ZeRO", "right"),
                                        ("recompute", "left"),
                                        ("mbs × gas", "right"), ("peak memory", "left"), ("headroom", "right"),
                                        ("largest term", "left"),
                                        ("step", "right"), ("tokens/s", "right"), ("MFU", "right"))):
        widest = max([len(col)] + [len(str(row[j])) for row in rows])
        plans.add_column(col, justify=justify, no_wrap=col not in wrapping,
                         min_width=None if col in wrapping else widest)
    for row in rows:
        plans.add_row(*row)
    parts.append(plans)
    parts.append(memory_table([ev.memory for ev in result.plans], [f"#{i}" for i in range(1, len(result.plans) + 1)],
                              result.plans[0].capacity, "Memory by term, GiB (2^30 bytes)"))
    if result.reasons:
        why = Text()
        why.append("Why #1: the runners-up lose by", style="bold")
        for i, reason in enumerate(result.reasons, 2):
            why.append(f"\n  #{i} {reason}")
        parts.append(why)
    if engines:
        parts.append(engines_text(engines))
    return Group(*parts)


def engines_text(engines: list[EngineComparison]) -> Text:
    """Each engine's best plan against the winner's, or why it has none (`framework: auto`)."""
    winner = next((e.framework for e in engines if e.step_time_ratio == 1.0), None)
    text = Text("Engines: each one's best plan against the best of all", style="bold")
    for e in engines:
        line = e.summary(winner)
        layout = f" ({describe_layout(e.best)}, ZeRO {e.best.plan.zero})" if e.best is not None else ""
        text.append(f"\n  {line}{layout}", style="" if e.best is not None else "dim")
    return text


def _recompute_text(ev: Evaluation) -> str:
    """`full`, or `full 3/1/1/0 layers` when only some layers of each stage are recomputed."""
    if ev.plan.recompute_layers is None:
        return ev.plan.recompute
    counts = [s.recompute_layers for s in ev.stages]
    shown = "/".join(map(str, counts)) if len(counts) <= 4 else f"{counts[0]}/{counts[1]}…/{counts[-1]}"
    return f"full {shown} layers"


def memory_table(breakdowns: list[MemoryBreakdown], names: list[str], capacity: int, title: str) -> Table:
    """Terms down, plans or stages across; each column's largest term and the tightest column stand out."""
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("term")
    for name in names:
        table.add_column(name, justify="right")
    for term in MEMORY_TERMS:
        values = [getattr(b, term) for b in breakdowns]
        largest = [v == max(getattr(b, t) for t in MEMORY_TERMS) and v > 0 for v, b in zip(values, breakdowns)]
        table.add_row(term.replace("_", " "),
                      *[Text(_gib(v), style="bold yellow" if big else "") for v, big in zip(values, largest)])
    table.add_row(Text("total", style="bold"),
                  *[Text(_gib(b.total), style="bold red" if b.total > capacity else "bold") for b in breakdowns])
    table.add_row("usable", *[_gib(capacity)] * len(breakdowns))
    table.add_row("headroom", *[_headroom_text(capacity - b.total, capacity, unit="") for b in breakdowns])
    return table


def estimate_view(ev: Evaluation, title: str, all_stages: bool) -> Group:
    from planner.search.explain import describe_plan

    parts = []
    status = Text("fits" if ev.fits else "does not fit", style="bold green" if ev.fits else "bold red")
    header = Text(title + "\n", style="bold")
    header.append(f"{ev.plan.framework}: " + describe_plan(ev.plan)
                  + f" · gas={ev.plan.gas} · {ev.plan.precision} · {ev.plan.optimizer}\n", style="dim")
    header.append_text(status)
    if not ev.fits:
        header.append(": " + (ev.why_not() or ""), style="red")
    parts.append(header)
    if all_stages and len(ev.stages) > 1:
        parts.append(memory_table([s.memory for s in ev.stages],
                                  [f"stage {s.stage} ({s.layers} layers)" for s in ev.stages],
                                  ev.capacity, "Per-GPU memory by pipeline stage, GiB (2^30 bytes)"))
    else:
        stage = ev.peak_stage
        where = f"stage {stage.stage} of {len(ev.stages)}, {stage.layers} layers" if len(ev.stages) > 1 else "one GPU"
        parts.append(memory_table([stage.memory], ["GiB"], ev.capacity, f"Per-GPU memory, most loaded ({where})"))
    cache = ev.peak_stage.detail.get("fp8_weight_cache", 0)
    if cache:
        parts.append(Text(f"weights include {_gib(cache)} GiB of Transformer Engine's cached fp8 copy of the linear"
                          " weights (no fp8 parameters: fp8_param_gather=false)", style="dim"))
    if ev.host_bytes_per_node:
        parts.append(Text(f"host memory for offload: {_gib(ev.host_bytes_per_node)} GiB per node"))
    t = ev.time
    times = Table(title="Step time", title_justify="left", header_style="bold")
    times.add_column("part")
    times.add_column("time", justify="right")
    times.add_column("share of step", justify="right")
    for name in ("compute", "recompute", "bubble", "tp", "cp", "ep", "pp", "dp", "optimizer", "offload"):
        value = getattr(t, name)
        if value > 0 or name in ("compute", "bubble"):
            label = f"{name} (exposed comm)" if name in ("tp", "cp", "ep", "pp", "dp") else name
            times.add_row(label, format_seconds(value), f"{value / t.step:.1%}" if t.step else "-")
    times.add_row(Text("step", style="bold"), Text(format_seconds(t.step), style="bold"), "100.0%")
    parts.append(times)
    parts.append(Text(f"{t.tokens_per_s:,.0f} tokens/s · MFU {t.mfu:.1%} · HFU {t.hfu:.1%}"))
    return Group(*parts)


def params_view(arch: Architecture, counts: ParamCount, flops: FlopsPerToken) -> Group:
    labels = {"embedding": "embedding", "position_embedding": "position embedding", "attention": "attention",
              "dense_mlp": "MLP (dense)", "routed_experts": "routed experts", "shared_experts": "shared experts",
              "router": "router", "norms": "norms", "lm_head": "output (lm head)"}
    header = Text(f"{arch.name} ({arch.family}) · {arch.num_layers} layers · hidden {arch.hidden:,} · "
                  f"{arch.attention.kind.upper()} {arch.attention.num_heads} heads", style="bold")
    if arch.moe:
        header.append(f" · {arch.moe.num_experts} experts, top-{arch.moe.top_k}", style="bold")
    header.append(f"\ntotal {counts.total:,} ({counts.total / 1e9:,.2f} B) · active per token {counts.active:,} "
                  f"({counts.active / 1e9:,.2f} B, {counts.active / counts.total:.1%}) · "
                  f"input embedding {counts.embedding:,}")
    components = Table(title="Parameters by component", title_justify="left", header_style="bold")
    for col, justify in (("component", "left"), ("parameters", "right"), ("share", "right")):
        components.add_column(col, justify=justify)
    for name, value in counts.by_component.items():
        components.add_row(labels[name], f"{value:,}", f"{value / counts.total:.1%}")
    components.add_row(Text("total", style="bold"), Text(f"{counts.total:,}", style="bold"), "100.0%")
    kinds = Table(title="Parameters by layer kind", title_justify="left", header_style="bold")
    sparse = arch.moe is not None  # active and per-expert columns only for MoE models
    for col in ("kind", "layers", "parameters each", *(("active each", "one routed expert") if sparse else ()),
                "all layers"):
        kinds.add_column(col, justify="left" if col == "kind" else "right")
    kind_labels = {"dense": "dense layer", "moe": "MoE layer", "mtp": "MTP module (not in total)"}
    for kind in counts.by_layer_kind:
        moe_cells = (f"{kind.active:,}", f"{kind.per_expert:,}" if kind.per_expert else "-") if sparse else ()
        kinds.add_row(kind_labels[kind.kind], str(kind.layers), f"{kind.params:,}", *moe_cells,
                      f"{kind.layers * kind.params:,}", style="dim" if kind.kind == "mtp" else None)
    mtp = " (without the MTP modules)" if counts.mtp else ""
    compute = Table(title=f"FLOPs per token at sequence length {flops.seq_len:,}{mtp}, GFLOP",
                    title_justify="left", header_style="bold")
    for col, justify in (("", "left"), ("causal (mask halves attention)", "right"), ("full attention", "right")):
        compute.add_column(col, justify=justify)
    compute.add_row("training (forward + backward)", f"{flops.training / 1e9:,.2f}",
                    f"{flops.training_full_attention / 1e9:,.2f}")
    compute.add_row("inference (forward)", f"{flops.inference / 1e9:,.2f}", f"{flops.inference_full_attention / 1e9:,.2f}")
    return Group(header, components, kinds, compute)


def gpus_view(gpus: list[Accelerator]) -> Table:
    table = Table(title="Accelerators (GiB = 2^30 bytes; TFLOP/s dense; GB/s = 10^9 bytes/s, one direction)",
                  title_justify="left", header_style="bold")
    for col in ("id", "name", "memory GiB", "usable GiB", "bf16 TFLOP/s", "fp8 TFLOP/s", "HBM GB/s", "scale-up"):
        table.add_column(col, justify="left" if col in ("id", "name", "scale-up") else "right")
    for g in gpus:
        bf16 = g.peak_flops.get("bf16") or g.peak_flops.get("fp16")
        fp8 = g.peak_flops.get("fp8")
        table.add_row(g.id, g.name, _gib(g.memory_bytes), _gib(g.usable_bytes),
                      f"{bf16 / 1e12:,.0f}" if bf16 else "-", f"{fp8 / 1e12:,.0f}" if fp8 else "-",
                      f"{g.hbm_bandwidth / 1e9:,.0f}",
                      f"{g.scale_up_kind} ×{g.scale_up_domain} {g.scale_up_bandwidth / 1e9:,.0f} GB/s")
    return table


def models_view(rows: list[tuple[str, Architecture, ParamCount]], model_types: list[str] = (),
                multimodal: list[str] = ()) -> Table:
    caption = ""
    if model_types:
        caption = f"A Hugging Face config.json works too, of model_type {', '.join(model_types)}"
        caption += f"; multimodal (its text decoder): {', '.join(multimodal)}." if multimodal else "."
    table = Table(title="Model presets", title_justify="left", header_style="bold", caption=caption or None,
                  caption_justify="left")
    for col in ("name", "family", "parameters", "active", "layers", "hidden", "heads / kv", "experts"):
        table.add_column(col, justify="left" if col in ("name", "family") else "right")
    for name, arch, counts in rows:
        moe = arch.moe
        table.add_row(name, arch.family, f"{counts.total / 1e9:,.2f} B",
                      f"{counts.active / 1e9:,.2f} B", str(arch.num_layers), str(arch.hidden),
                      f"{arch.attention.num_heads} / {arch.attention.num_kv_heads}",
                      f"{moe.num_experts} top-{moe.top_k}" if moe else "-")
    return table


def console(stderr: bool = False) -> Console:
    # rich honours NO_COLOR and drops styling when the stream is not a terminal; piped output
    # gets a fixed width wide enough for the plan table instead of rich's 80 columns.
    _replace_unencodable(sys.stderr if stderr else sys.stdout)
    probe = Console(stderr=stderr)
    width = None if probe.is_terminal else 160
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


def _replace_unencodable(stream) -> None:
    """On a stream that cannot encode `·`, `×` or box lines (PYTHONIOENCODING=ascii, a legacy code
    page), print `?` for them instead of failing with a traceback."""
    encoding = (getattr(stream, "encoding", None) or "").lower()
    if encoding and not encoding.startswith("utf") and hasattr(stream, "reconfigure"):
        stream.reconfigure(errors="replace")
