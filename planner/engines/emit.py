"""Launch files for a plan: each engine's own (Megatron-LM, DeepSpeed, FSDP2 with accelerate,
torchtitan) and a torchrun command.

`write_emits` is what `planner solve --emit KIND --out DIR` and `planner check --emit` call:
it renders everything first and writes only when all of it could be rendered, each file
atomically, so bad input or a failed write leaves nothing behind.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from planner.cost.evaluate import Evaluation
from planner.cost.inputs import Inputs
from planner.cost.plan import Plan
from planner.engines import EMIT_KINDS, UnsupportedPlan
from planner.engines.deepspeed_emit import emit_deepspeed
from planner.engines.fsdp2_emit import emit_fsdp2
from planner.engines.megatron_emit import emit_megatron, emit_torchrun
from planner.engines.profiles import PROFILES
from planner.engines.profiles.base import shown
from planner.engines.torchtitan_emit import emit_torchtitan
from planner.spec.errors import InputError, unknown_name
from planner.spec.writing import write_files

FILE_NAMES: dict[str, tuple[str, ...]] = {
    "deepspeed": ("ds_config.json", "deepspeed_launch.sh", "training_args.json", "peft_config.json", "bnb_config.json"),
    "megatron": ("megatron_launch.sh",),
    "fsdp2": ("accelerate_config.yaml", "fsdp2_launch.sh", "training_args.json", "peft_config.json",
              "bnb_config.json"),
    "torchtitan": ("job.toml", "torchtitan_launch.sh", "planner_flavor.py"),
    "torchrun": ("torchrun.sh",),
}
"""The files each kind may write (LoRA configs and torchtitan's flavor module only when needed)."""

PRIMARY_FILE = {"deepspeed": "ds_config.json", "megatron": "megatron_launch.sh", "fsdp2": "accelerate_config.yaml",
                "torchtitan": "job.toml", "torchrun": "torchrun.sh"}
"""The file of each kind that `planner check` reads back (with the TrainingArguments and LoRA
configs beside it where the kind writes them)."""


def emit_kinds() -> tuple[str, ...]:
    """The kinds `--emit` writes: every engine, and torchrun."""
    return EMIT_KINDS


def check_kind(kind: str, option: str = "--emit") -> str:
    """`kind` is a kind `--emit` writes; bad input naming the ones it does otherwise."""
    if kind not in EMIT_KINDS:
        raise InputError(unknown_name("--emit kind", kind, EMIT_KINDS), field=option)
    return kind


def render(kind: str, plan: Plan, inputs: Inputs) -> dict[str, str]:
    """The launch files of one kind, by file name; UnsupportedPlan when the engine cannot run the plan."""
    workload, cluster, lora = inputs.workload, inputs.cluster, inputs.job.lora
    adapters = {"lora_alpha": lora.alpha, "lora_dropout": lora.dropout} if lora is not None else {}
    check_kind(kind)
    if kind == "deepspeed":
        return emit_deepspeed(plan, workload, cluster, **adapters)
    if kind == "megatron":
        return emit_megatron(plan, workload, cluster)
    if kind == "fsdp2":
        return emit_fsdp2(plan, workload, cluster, **adapters)
    if kind == "torchtitan":
        return emit_torchtitan(plan, workload, cluster)
    if kind == "torchrun":
        return {"torchrun.sh": emit_torchrun(plan, cluster)}
    raise InputError(unknown_name("--emit kind", kind, EMIT_KINDS), field="--emit")


def constraints_hint(kind: str, plan: Plan) -> str:
    """job.yaml constraints (valid YAML) that keep the search to plans `kind` runs, for the keys
    this plan breaks."""
    values = PROFILES[kind].values if kind in PROFILES else {}
    broken = {k: v for k, v in values.items() if getattr(plan, k) not in v}
    shown_values = ", ".join(f"{k}: [{', '.join(shown(x) for x in v)}]" for k, v in broken.items())
    return f"constraints: {{{shown_values}}}" if shown_values else ""


def write_emits(kind: str | Iterable[str], evaluation: Evaluation, inputs: Inputs, out_dir: str | Path,
                nearest: Callable[[str], str] | None = None) -> list[Path]:
    """Write the launch files of `kind` (one or several of EMIT_KINDS) for the evaluated plan into
    `out_dir` (created); returns the paths written. Raises InputError, writing nothing, for an
    unknown kind, a plan the framework cannot run, or an `out_dir` that is a file. `nearest(kind)`
    says which plan that engine would run instead (the commands search for it)."""
    kinds = [kind] if isinstance(kind, str) else list(kind)
    texts: dict[str, str] = {}
    for k in kinds:
        try:
            files = render(k, evaluation.plan, inputs)
        except UnsupportedPlan as error:
            hint = constraints_hint(k, evaluation.plan)
            advice = f"; add `{hint}` to the job, or `framework: {k}`, to plan for it" if hint else ""
            # Another engine's plan: say which plan this one would run (not for its own best).
            instead = nearest(k) if nearest is not None and evaluation.plan.framework != k else ""
            raise InputError(f"{error}{advice}{instead}", field="--emit") from None
        clash = sorted(set(files) & set(texts))
        if clash:
            raise InputError(f"{k} and another kind both write {', '.join(clash)}: emit them into separate folders",
                             field="--emit")
        texts.update(files)
    # Atomic and contained (spec/writing.py): a symlink named like a launch file is replaced,
    # never followed, and a failed write leaves neither files nor the folders it made.
    files = {name: text.encode("utf-8") for name, text in texts.items()}
    return write_files(out_dir, files, executable=tuple(n for n in files if n.endswith(".sh")), field="--out")
