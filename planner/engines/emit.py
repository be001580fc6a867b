"""Launch files for a plan: Megatron-LM, DeepSpeed, FSDP2 (accelerate) and torchtitan, and a torchrun command.

`write_emits` is what `planner solve --emit KIND --out DIR` and `planner check --emit` call:
it renders everything first and writes only when all of it could be rendered, so bad input
leaves nothing behind.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from planner.cost.evaluate import Evaluation
from planner.cost.inputs import Inputs
from planner.cost.plan import Plan
from planner.engines import _FRAMEWORK_VALUES, EMIT_KINDS, UnsupportedPlan
from planner.engines.deepspeed_emit import emit_deepspeed
from planner.engines.fsdp2_emit import emit_fsdp2
from planner.engines.megatron_emit import emit_megatron, emit_torchrun
from planner.engines.torchtitan_emit import emit_torchtitan
from planner.spec.errors import InputError, unknown_name

FILE_NAMES: dict[str, tuple[str, ...]] = {
    "deepspeed": ("ds_config.json", "deepspeed_launch.sh", "training_args.json", "peft_config.json", "bnb_config.json"),
    "megatron": ("megatron_launch.sh",),
    "fsdp2": ("accelerate_config.yaml", "fsdp2_launch.sh", "training_args.json", "peft_config.json",
              "bnb_config.json"),
    "torchtitan": ("job.toml", "torchtitan_launch.sh", "planner_flavor.py"),
    "torchrun": ("torchrun.sh",),
}
"""The files each kind may write (LoRA configs and torchtitan's flavor module only when needed)."""


def render(kind: str, plan: Plan, inputs: Inputs) -> dict[str, str]:
    """The launch files of one kind, by file name; UnsupportedPlan when the engine cannot run the plan."""
    workload, cluster, lora = inputs.workload, inputs.cluster, inputs.job.lora
    adapters = {"lora_alpha": lora.alpha, "lora_dropout": lora.dropout} if lora is not None else {}
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
    """job.yaml constraints that keep the search to plans `kind` runs, for the keys this plan breaks."""
    values = _FRAMEWORK_VALUES.get(kind, {})
    broken = {k: v for k, v in values.items() if getattr(plan, k) not in v}
    shown = ", ".join(f"{k}: [{', '.join(str(x).lower() if isinstance(x, bool) else str(x) for x in v)}]"
                      for k, v in broken.items())
    return f"constraints: {{{shown}}}" if shown else ""


def write_emits(kind: str | Iterable[str], evaluation: Evaluation, inputs: Inputs, out_dir: str | Path) -> list[Path]:
    """Write the launch files of `kind` (one or several of EMIT_KINDS) for the
    evaluated plan into `out_dir` (created); returns the paths written. Raises InputError, writing
    nothing, for an unknown kind, a plan the framework cannot run, or an `out_dir` that is a file."""
    kinds = [kind] if isinstance(kind, str) else list(kind)
    texts: dict[str, str] = {}
    for k in kinds:
        try:
            files = render(k, evaluation.plan, inputs)
        except UnsupportedPlan as error:
            hint = constraints_hint(k, evaluation.plan)
            advice = f"; add `{hint}` to the job to plan for it" if hint else ""
            raise InputError(f"{error}{advice}", field="--emit") from None
        clash = sorted(set(files) & set(texts))
        if clash:
            raise InputError(f"{k} and another kind both write {', '.join(clash)}: emit them into separate folders",
                             field="--emit")
        texts.update(files)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a directory", file=str(out), field="--out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, text in texts.items():
            path = out / name
            path.write_text(text)
            if name.endswith(".sh"):
                path.chmod(0o755)
            paths.append(path)
    except OSError as error:
        raise InputError(f"cannot write: {error}", file=str(out), field="--out") from None
    return paths
