"""`planner check`: will an existing DeepSpeed config or Megatron-LM launch fit, and if not, what
is the nearest change that does (INTERFACE.md: exit 0 fits, 1 does not fit, 2 bad input)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from planner.cli.options import (
    EXIT_NO_FIT,
    EXIT_OK,
    ClusterArg,
    JobArg,
    JsonOption,
    choice,
    emit_json,
    handles_input_errors,
)
from planner.cli.searching import nearest_text
from planner.cost.evaluate import Evaluation, evaluate
from planner.cost.inputs import Inputs, load_inputs
from planner.cost.plan import OFFLOAD_CHOICES, Plan
from planner.engines import EMIT_KINDS, FrameworkJob, framework_constraints
from planner.engines.deepspeed import parse_deepspeed
from planner.engines.emit import write_emits
from planner.engines.megatron import parse_megatron
from planner.report import tables
from planner.report.json import plan_document
from planner.search.explain import describe_plan
from planner.search.space import JobDefaults, candidate_plans
from planner.spec.errors import InputError
from planner.spec.job import Constraint

GiB = 2**30
CHANGE_KEYS = ("tp", "pp", "cp", "ep", "vpp", "sp", "zero", "recompute", "mbs", "offload")
"""Keys a suggestion may change; dp and gas follow from them."""
BUFFER_TOLERANCE = 128 * 2**20
"""Framework buffers above the planner's buffers term by less than this are not reported."""

Change = tuple[str, object, object]


def changes(before: Plan, after: Plan) -> list[Change]:
    return [(k, getattr(before, k), getattr(after, k)) for k in CHANGE_KEYS if getattr(before, k) != getattr(after, k)]


def describe_changes(before: Plan, after: Plan) -> str:
    def show(v: object) -> str:
        return str(v).lower() if isinstance(v, bool) else str(v)
    text = ", ".join(f"{k} {show(a)} → {show(b)}" for k, a, b in changes(before, after))
    derived = [f"{k} {getattr(before, k)} → {getattr(after, k)}" for k in ("dp", "gas")
               if getattr(before, k) != getattr(after, k)]
    return text + (f" ({', '.join(derived)})" if derived else "")


def nearest_plans(job: FrameworkJob, inputs: Inputs, top: int) -> list[Evaluation]:
    """Plans the same framework runs that fit: fewest changed keys first, then the fastest.

    The file fixes precision, optimizer, LoRA rank and quantization; cp, ep and vpp stay at 1 or
    the file's value and offload may change, unless the job constrains them."""
    user = job.plan
    own = {k: Constraint(values=(getattr(user, k),)) for k in ("precision", "optimizer", "lora_rank", "quant")}
    around = {k: Constraint(values=tuple(sorted({1, getattr(user, k)}))) for k in ("cp", "ep", "vpp")}
    around["offload"] = Constraint(values=OFFLOAD_CHOICES)
    limits = {**around, **{k: c for k, c in inputs.job.constraints.items() if k not in own}, **own}
    try:
        limits = framework_constraints(job.framework, limits)
    except InputError:
        return []
    defaults = JobDefaults(precision=user.precision, optimizer=user.optimizer, lora_ranks=(user.lora_rank,),
                           quant=user.quant)
    found = []
    for plan in candidate_plans(job.workload, inputs.cluster, defaults, limits):
        if plan != user and all(c.allows(getattr(plan, k)) for k, c in limits.items()):
            ev = evaluate(plan, job.workload, inputs.cluster)
            if ev.fits:
                found.append(ev)
    found.sort(key=lambda ev: (len(changes(user, ev.plan)), ev.time.step))
    return found[:top]


def buffer_warning(job: FrameworkJob, ev: Evaluation) -> str | None:
    if job.framework_buffers is None or job.framework_buffers - ev.memory.buffers <= BUFFER_TOLERANCE:
        return None
    extra = job.framework_buffers - ev.memory.buffers
    fits = ev.memory.total + extra <= ev.capacity
    return (f"the ZeRO bucket settings allow about {job.framework_buffers / GiB:.2f} GiB of communication buffers"
            f" per GPU (DeepSpeed docs: overlap_comm uses 4.5x the bucket sizes); the planner's buffers term counts"
            f" {ev.memory.buffers / GiB:.2f} GiB. With them the peak would be {(ev.memory.total + extra) / GiB:.2f}"
            f" GiB ({'still fits' if fits else 'does not fit'}); lower reduce_bucket_size / allgather_bucket_size"
            " or stage3_max_live_parameters to stay within the estimate")


def _source(job: FrameworkJob) -> dict:
    return {"file": job.file, "framework": job.framework, "read": job.read,
            "framework_buffers": job.framework_buffers}


def _view(job: FrameworkJob, ev: Evaluation, suggestions: list[Evaluation], warnings: list[str],
          inputs: Inputs) -> Group:
    c = inputs.cluster
    name = {"deepspeed": "DeepSpeed", "megatron": "Megatron-LM"}[job.framework]
    header = Text(f"{job.workload.arch.name} · {inputs.job.training} · seq {job.workload.seq_len:,} · global batch"
                  f" {job.workload.global_batch:,} on {c.nodes} × {c.gpus_per_node} {c.gpu.id}\n", style="bold")
    header.append(f"{job.file} ({name}): {describe_plan(ev.plan)} · gas={ev.plan.gas} · {ev.plan.precision}"
                  f" · {ev.plan.optimizer}\n", style="dim")
    headroom = ev.capacity - ev.memory.total
    if ev.fits:
        header.append("fits", style="bold green")
        header.append(f": peak {ev.memory.total / GiB:.2f} GiB of {ev.capacity / GiB:.2f} GiB usable,"
                      f" {headroom / GiB:.2f} GiB headroom ({headroom / ev.capacity:.0%})")
    else:
        header.append("does not fit", style="bold red")
        header.append(": " + (ev.why_not() or ""), style="red")
    parts = [header]
    stage = ev.peak_stage
    where = f"stage {stage.stage} of {len(ev.stages)}, {stage.layers} layers" if len(ev.stages) > 1 else "one GPU"
    parts.append(tables.memory_table([stage.memory], ["GiB"], ev.capacity, f"Per-GPU memory, most loaded ({where})"))
    parts.append(Text(f"step {ev.time.step:,.2f} s · {ev.time.tokens_per_s:,.0f} tokens/s · MFU {ev.time.mfu:.1%}"))
    if not ev.fits:
        parts.append(_suggestion_table(job, suggestions) if suggestions else
                     Text(f"No plan {name} runs fits within the job's constraints by changing"
                          f" {', '.join(CHANGE_KEYS)}.", style="red"))
    if warnings:
        parts.append(Text("Warnings\n", style="bold yellow") + Text("\n".join(f"! {w}" for w in warnings)))
    return Group(*parts)


def _suggestion_table(job: FrameworkJob, suggestions: list[Evaluation]) -> Table:
    table = Table(title="Nearest plans that fit (changes to the file's)", title_justify="left", header_style="bold")
    for col, justify in (("#", "right"), ("change", "left"), ("peak GiB / usable", "right"), ("step", "right"),
                         ("tokens/s", "right"), ("MFU", "right")):
        table.add_column(col, justify=justify)
    for i, ev in enumerate(suggestions, 1):
        table.add_row(str(i), describe_changes(job.plan, ev.plan),
                      f"{ev.memory.total / GiB:,.2f} / {ev.capacity / GiB:,.2f}",
                      f"{ev.time.step:,.2f} s", f"{ev.time.tokens_per_s:,.0f}", f"{ev.time.mfu:.1%}")
    return table


@handles_input_errors
def check(
    cluster: Path = ClusterArg,
    job: Path = JobArg,
    deepspeed: Optional[Path] = typer.Option(None, "--deepspeed", help="A DeepSpeed config JSON.", show_default=False),
    megatron: Optional[Path] = typer.Option(None, "--megatron", show_default=False,
                                            help="A Megatron-LM launch script (bash) or a file of arguments."),
    gradient_checkpointing: Optional[bool] = typer.Option(
        None, "--gradient-checkpointing/--no-gradient-checkpointing", show_default=False,
        help="DeepSpeed: the HF Trainer's --gradient_checkpointing (recompute every layer)."),
    micro_batch: Optional[int] = typer.Option(None, "--micro-batch", min=1, show_default=False,
                                              help='DeepSpeed: the HF Trainer\'s --per_device_train_batch_size, for "auto".'),
    emit: Optional[str] = typer.Option(None, "--emit", show_default=False,
                                       help="deepspeed | megatron | torchrun: write launch files for the file's plan"
                                            " if it fits, else for the nearest plan that fits."),
    out: Optional[Path] = typer.Option(None, "--out", help="Directory for --emit (created).", show_default=False),
    top: int = typer.Option(3, "--top", min=1, help="How many fitting plans to suggest."),
    as_json: bool = JsonOption,
) -> None:
    """Check a DeepSpeed config or Megatron-LM launch script: fits or not, why, and the nearest plans that fit."""
    if (deepspeed is None) == (megatron is None):
        raise InputError("give one of --deepspeed DS.json or --megatron train.sh", field="--deepspeed/--megatron")
    if emit is not None:
        choice(emit, EMIT_KINDS, "--emit")
    if (emit is None) != (out is None):
        raise InputError("--emit and --out go together", field="--emit" if emit is None else "--out")
    inputs = load_inputs(cluster, job)
    if deepspeed is not None:
        fj = parse_deepspeed(deepspeed, inputs, gradient_checkpointing=gradient_checkpointing, micro_batch=micro_batch)
    else:
        if gradient_checkpointing is not None or micro_batch is not None:
            raise InputError("--gradient-checkpointing and --micro-batch are for DeepSpeed configs; a Megatron-LM"
                             " script sets --recompute-granularity and --micro-batch-size", field="--megatron")
        _, fj = parse_megatron(megatron, inputs)
    ev = evaluate(fj.plan, fj.workload, inputs.cluster)
    warnings = list(fj.warnings)
    extra = buffer_warning(fj, ev)
    if extra:
        warnings.append(extra)
    suggestions = [] if ev.fits else nearest_plans(fj, inputs, top)
    written: list[Path] = []
    if emit is not None:
        target = ev if ev.fits else (suggestions[0] if suggestions else None)
        if target is None:
            warnings.append(f"--emit {emit}: nothing written, no plan fits")
        else:
            written = write_emits(emit, target, replace(inputs, workload=fj.workload), out,
                                  nearest=lambda kind: nearest_text(kind, inputs))
    if as_json:
        emit_json({**plan_document(ev), "headroom": ev.capacity - ev.memory.total, "source": _source(fj),
                    "suggestions": [{**plan_document(s), "changes": {k: [a, b] for k, a, b in changes(fj.plan, s.plan)}}
                                    for s in suggestions],
                    "warnings": warnings, "emitted": [str(p) for p in written]})
    else:
        console = tables.console()
        console.print(_view(fj, ev, suggestions, warnings, inputs))
        for path in written:
            console.print(f"wrote {path}")
    raise typer.Exit(EXIT_OK if ev.fits else EXIT_NO_FIT)
