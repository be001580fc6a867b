"""`planner check`: will an existing DeepSpeed config, Megatron-LM launch, accelerate config (FSDP2
or DeepSpeed) or torchtitan job fit, and if not, what is the nearest change that does (exit 0 fits,
1 does not fit, 2 bad input)."""
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
from planner.cost.engine import EngineTraits
from planner.cost.evaluate import Evaluation, evaluate
from planner.cost.inputs import Inputs, load_inputs
from planner.cost.plan import OFFLOAD_CHOICES, Plan
from planner.cost.workload import JobDefaults
from planner.engines import EMIT_KINDS, FrameworkJob, framework_constraints
from planner.engines import hf_trainer as H
from planner.engines.deepspeed import parse_deepspeed
from planner.engines.deepspeed_emit import deepspeed_problems
from planner.engines.fsdp2 import parse_accelerate
from planner.engines.fsdp2_emit import FSDP2_VALUES, fsdp2_problems
from planner.engines.megatron_emit import megatron_problems
from planner.engines.megatron_readings import OtherWay, read_megatron
from planner.engines.torchtitan import parse_torchtitan
from planner.engines.torchtitan_emit import TORCHTITAN_VALUES, torchtitan_problems
from planner.report import tables
from planner.report.json import plan_document
from planner.search.explain import describe_plan
from planner.spec.errors import InputError
from planner.spec.job import Constraint

GiB = 2**30
CHANGE_KEYS = ("tp", "pp", "cp", "ep", "vpp", "sp", "zero", "recompute", "mbs", "offload", "fp8_param_gather")
"""Keys a suggestion may change; dp and gas follow from them."""
BUFFER_TOLERANCE = 128 * 2**20
"""Framework buffers above the planner's buffers term by less than this are not reported."""

Change = tuple[str, object, object]
ENGINE_NAMES = {"deepspeed": "DeepSpeed", "megatron": "Megatron-LM", "fsdp2": "accelerate FSDP2",
                "torchtitan": "torchtitan"}
_PROBLEMS = {"deepspeed": deepspeed_problems, "megatron": lambda plan, workload: megatron_problems(plan),
             "fsdp2": fsdp2_problems, "torchtitan": torchtitan_problems}
_VALUES = {"fsdp2": FSDP2_VALUES, "torchtitan": TORCHTITAN_VALUES}


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
        limits = _engine_limits(job.framework, limits)
    except InputError:
        return []
    defaults = JobDefaults(precision=user.precision, optimizer=user.optimizer, lora_ranks=(user.lora_rank,),
                           quant=user.quant)
    from planner.search.space import candidate_plans  # the search loads only for a file that does not fit
    found = []
    for plan in candidate_plans(job.workload, inputs.cluster, defaults, limits):
        if plan != user and all(c.allows(plan.constraint_value(k)) for k, c in limits.items()) \
                and not _PROBLEMS[job.framework](plan, job.workload):
            ev = evaluate(plan, job.workload, inputs.cluster)
            if ev.fits:
                found.append(ev)
    found.sort(key=lambda ev: (len(changes(user, ev.plan)), ev.time.step))
    return found[:top]


def _engine_limits(framework: str, limits: dict[str, Constraint]) -> dict[str, Constraint]:
    """The constraints narrowed to the plan values the engine launches."""
    if framework not in _VALUES:
        return framework_constraints(framework, limits)
    narrowed = dict(limits)
    for key, values in _VALUES[framework].items():
        old = narrowed.get(key)
        allowed = tuple(v for v in values if old is None or old.allows(v))
        if not allowed:
            raise InputError(f"{old.describe()} leaves no value {framework} can run", field=f"constraints.{key}")
        narrowed[key] = Constraint(values=allowed)
    return narrowed


def buffer_warning(job: FrameworkJob, ev: Evaluation) -> str | None:
    """The file's ZeRO buckets, which the peak counts in its buffers (Workload.framework_buffers),
    when they are a large part of it."""
    if job.framework_buffers is None or job.framework_buffers <= BUFFER_TOLERANCE:
        return None
    return (f"the ZeRO bucket settings take about {job.framework_buffers / GiB:.2f} GiB of communication buffers"
            " per GPU (DeepSpeed docs: overlap_comm uses 4.5x the bucket sizes), counted in the peak's buffers"
            f" ({ev.memory.buffers / GiB:.2f} GiB); lower reduce_bucket_size / allgather_bucket_size or"
            " stage3_max_live_parameters to free them")


def parse_env(values: list[str] | None) -> dict[str, str]:
    """`--env KEY=VALUE` options as the environment a launch script starts with."""
    env = {}
    for item in values or []:
        key, eq, value = item.partition("=")
        if not eq or not key.isidentifier():
            raise InputError(f"{item!r}: give KEY=VALUE with KEY a shell variable name", field="--env")
        env[key] = value
    return env


def _show(value: object) -> str:
    if isinstance(value, EngineTraits):
        return value.name
    return "unset" if value is None else " ".join(value) if isinstance(value, list) else str(value)


def _difference(name: str, taken: object, other: object) -> str:
    """How a variable differs between two ways: the words one adds to the other, or both values."""
    words = [v.split() if isinstance(v, str) else list(v) if isinstance(v, list) else None for v in (taken, other)]
    if words[0] is not None and words[1] is not None:
        if words[1][:len(words[0])] == words[0]:
            return f"{name} adds {' '.join(words[1][len(words[0]):])}"
        if words[0][:len(words[1])] == words[1]:
            return f"{name} drops {' '.join(words[0][len(words[1]):])}"
    return f"{name}={_show(other)} (not {_show(taken)})"


def _verdict(ev: Evaluation) -> str:
    if ev.fits:
        return f"fits, peak {ev.memory.total / GiB:.2f} GiB of {ev.capacity / GiB:.2f} GiB"
    return f"does not fit, peak {ev.memory.total / GiB:.2f} GiB of {ev.capacity / GiB:.2f} GiB"


def undecided_report(job: FrameworkJob, ev: Evaluation, others: list[OtherWay], cluster) -> list[dict]:
    """Each other way of an undecided choice: its values, the plan it launches and its verdict."""
    out = []
    for way in others:
        entry = {"line": way.line, "condition": way.condition, "depends_on": list(way.depends_on),
                 "taken": way.taken, "way": way.label, "values": way.values,
                 "differences": [_difference(name, way.taken_values.get(name), value)
                                 for name, value in sorted(way.values.items())
                                 if way.taken_values.get(name) != value]}
        if way.job is None:
            entry.update(verdict="bad input", error=way.error, changes=None, peak=None, capacity=None, plan=None)
        else:
            other = evaluate(way.job.plan, way.job.workload, cluster)
            changed = describe_changes(job.plan, other.plan)
            for name in ("global_batch", "seq_len", "engine", "states"):
                if getattr(job.workload, name) != getattr(way.job.workload, name):
                    changed += f"{', ' if changed else ''}{name} {_show(getattr(job.workload, name))}" \
                               f" → {_show(getattr(way.job.workload, name))}"
            for name in ("precision", "optimizer"):
                if getattr(job.plan, name) != getattr(other.plan, name):
                    changed += f"{', ' if changed else ''}{name} {getattr(job.plan, name)} → {getattr(other.plan, name)}"
            entry.update(verdict="fits" if other.fits else "does not fit", error=None, changes=changed,
                         peak=other.memory.total, capacity=other.capacity, plan=plan_document(other))
        out.append(entry)
    return out


def undecided_warnings(ev: Evaluation, report: list[dict]) -> list[str]:
    lines = []
    for entry in report:
        values = "; ".join(entry["differences"])
        head = (f"line {entry['line']}: `{entry['condition']}` depends on {', '.join(entry['depends_on']) or 'a value'},"
                f" which is not known; read as {entry['taken']!r}: {_verdict(ev)}. The way {entry['way']!r}"
                f"{f' ({values})' if values else ''}")
        if entry["verdict"] == "bad input":
            lines.append(f"{head} is bad input: {entry['error']}")
        else:
            state = (f"fits, peak {entry['peak'] / GiB:.2f} GiB" if entry["verdict"] == "fits" else
                     f"does not fit, peak {entry['peak'] / GiB:.2f} GiB")
            lines.append(f"{head} launches {entry['changes'] or 'the same plan'}: {state} of"
                         f" {entry['capacity'] / GiB:.2f} GiB (decide it with --env)")
    return lines


def _source(job: FrameworkJob) -> dict:
    return {"file": job.file, "framework": job.framework, "read": job.read,
            "framework_buffers": job.framework_buffers}


def _view(job: FrameworkJob, ev: Evaluation, suggestions: list[Evaluation], warnings: list[str],
          inputs: Inputs) -> Group:
    c = inputs.cluster
    name = ENGINE_NAMES[job.framework]
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
        table.add_row(str(i), Text(describe_changes(job.plan, ev.plan)),
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
    accelerate: Optional[Path] = typer.Option(None, "--accelerate", show_default=False,
                                              help="An accelerate config YAML: FSDP or DDP (read as fsdp2), or"
                                                   " DeepSpeed (read as deepspeed)."),
    torchtitan: Optional[Path] = typer.Option(None, "--torchtitan", show_default=False,
                                              help="A torchtitan job TOML (torchtitan 0.2)."),
    training_args: Optional[Path] = typer.Option(
        None, "--training-args", show_default=False,
        help="DeepSpeed/accelerate: the HF Trainer's TrainingArguments as JSON (batch, gradient checkpointing,"
             " bf16/fp16, optim)."),
    peft_config: Optional[Path] = typer.Option(None, "--peft-config", show_default=False,
                                               help="DeepSpeed/accelerate: the PEFT LoraConfig as JSON (LoRA rank)."),
    bnb_config: Optional[Path] = typer.Option(
        None, "--bnb-config", show_default=False,
        help="DeepSpeed/accelerate: the BitsAndBytesConfig as JSON (quantized base weights)."),
    gradient_checkpointing: Optional[bool] = typer.Option(
        None, "--gradient-checkpointing/--no-gradient-checkpointing", show_default=False,
        help="DeepSpeed/accelerate: the HF Trainer's --gradient_checkpointing (recompute every layer)."),
    micro_batch: Optional[int] = typer.Option(
        None, "--micro-batch", min=1, show_default=False,
        help='DeepSpeed/accelerate: the HF Trainer\'s --per_device_train_batch_size, for "auto" or a config without'
             " one."),
    env: Optional[list[str]] = typer.Option(None, "--env", show_default=False,
                                            help="Megatron-LM: KEY=VALUE in the script's environment (repeatable)."),
    emit: Optional[str] = typer.Option(None, "--emit", show_default=False,
                                       help="megatron | deepspeed | fsdp2 | torchtitan | torchrun: write launch files for"
                                            " the file's plan if it fits, else for the nearest plan that fits."),
    out: Optional[Path] = typer.Option(None, "--out", help="Directory for --emit (created).", show_default=False),
    top: int = typer.Option(3, "--top", min=1, help="How many fitting plans to suggest."),
    as_json: bool = JsonOption,
) -> None:
    """Check a DeepSpeed, Megatron-LM, accelerate or torchtitan file: fits or not, why, and the nearest
    plans that fit."""
    given = {"--deepspeed": deepspeed, "--megatron": megatron, "--accelerate": accelerate, "--torchtitan": torchtitan}
    if sum(v is not None for v in given.values()) != 1:
        raise InputError("give one of --deepspeed DS.json, --megatron train.sh, --accelerate config.yaml or"
                         " --torchtitan job.toml", field="/".join(given))
    if emit is not None:
        choice(emit, EMIT_KINDS, "--emit")
    if (emit is None) != (out is None):
        raise InputError("--emit and --out go together", field="--emit" if emit is None else "--out")
    hf_given = {"--training-args": training_args, "--peft-config": peft_config, "--bnb-config": bnb_config,
                "--gradient-checkpointing": gradient_checkpointing, "--micro-batch": micro_batch}
    if megatron is not None or torchtitan is not None:
        extra = [k for k, v in hf_given.items() if v is not None]
        if extra:
            flag = "--megatron" if megatron is not None else "--torchtitan"
            raise InputError(f"{', '.join(extra)} are for DeepSpeed and accelerate configs (HF Trainer files); the"
                             f" {flag} file sets the batch and recompute itself", field=flag)
    environment = parse_env(env)
    if environment and megatron is None:
        raise InputError("--env is for Megatron-LM launch scripts", field="--env")
    inputs = load_inputs(cluster, job)
    others: list[OtherWay] = []
    hf = H.TrainerFiles.read(training_args, peft_config, bnb_config)
    if accelerate is not None:
        fj = parse_accelerate(accelerate, inputs, hf, micro_batch=micro_batch,
                              gradient_checkpointing=gradient_checkpointing)
    elif torchtitan is not None:
        fj = parse_torchtitan(torchtitan, inputs)
    elif deepspeed is not None and any(v is not None for v in (hf.training_args, hf.peft, hf.bnb)):
        trainer = H.read_training_args(hf.training_args or {}, hf.files["training_args"])
        trainer.micro_batch = trainer.micro_batch or micro_batch
        trainer.checkpointing = gradient_checkpointing if trainer.checkpointing is None else trainer.checkpointing
        fj = H.deepspeed_with_trainer(H.read_json(deepspeed, "a DeepSpeed config"), inputs, str(deepspeed), hf,
                                      trainer)
    elif deepspeed is not None:
        fj = parse_deepspeed(deepspeed, inputs, gradient_checkpointing=gradient_checkpointing, micro_batch=micro_batch)
    else:
        fj, others = read_megatron(megatron, inputs, environment)
    ev = evaluate(fj.plan, fj.workload, inputs.cluster)
    undecided = undecided_report(fj, ev, others, inputs.cluster)
    warnings = list(fj.warnings) + undecided_warnings(ev, undecided)
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
            from planner.cli.searching import nearest_text  # the emitters and the table: only with --emit
            from planner.engines.emit import write_emits
            written = write_emits(emit, target, replace(inputs, workload=fj.workload), out,
                                  nearest=lambda kind: nearest_text(kind, inputs))
    if as_json:
        emit_json({**plan_document(ev), "headroom": ev.capacity - ev.memory.total, "source": _source(fj),
                    "suggestions": [{**plan_document(s), "changes": {k: [a, b] for k, a, b in changes(fj.plan, s.plan)}}
                                    for s in suggestions],
                    "undecided": undecided, "warnings": warnings, "emitted": [str(p) for p in written]})
    else:
        console = tables.console()
        console.print(_view(fj, ev, suggestions, warnings, inputs))
        for path in written:
            console.print(f"wrote {path}", markup=False)
    raise typer.Exit(EXIT_OK if ev.fits else EXIT_NO_FIT)
