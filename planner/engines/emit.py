"""Launch files for a plan: a DeepSpeed config, Megatron-LM arguments, a torchrun command.

`write_emits` is what `planner solve --emit KIND --out DIR` and `planner check --emit` call:
it renders everything first and writes only when all of it could be rendered, each file
atomically, so bad input or a failed write leaves nothing behind.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from planner.cost.evaluate import Evaluation
from planner.cost.inputs import Inputs
from planner.cost.plan import Plan
from planner.engines import _FRAMEWORK_VALUES, EMIT_KINDS, UnsupportedPlan
from planner.engines.deepspeed_emit import emit_deepspeed
from planner.engines.megatron_emit import emit_megatron, emit_torchrun
from planner.spec.errors import InputError, unknown_name
from planner.spec.writing import write_files

FILE_NAMES = {"deepspeed": "ds_config.json", "megatron": "megatron_args.sh", "torchrun": "torchrun.sh"}


def render(kind: str, plan: Plan, inputs: Inputs) -> str:
    """The text of one launch file; UnsupportedPlan when the framework cannot run the plan."""
    if kind == "deepspeed":
        return json.dumps(emit_deepspeed(plan, inputs.workload), indent=2) + "\n"
    if kind == "megatron":
        return emit_megatron(plan, inputs.workload, inputs.workload.arch)
    if kind == "torchrun":
        return emit_torchrun(plan, inputs.cluster)
    raise InputError(unknown_name("--emit kind", kind, EMIT_KINDS), field="--emit")


def constraints_hint(kind: str, plan: Plan) -> str:
    """job.yaml constraints that keep the search to plans `kind` runs, for the keys this plan breaks."""
    values = _FRAMEWORK_VALUES.get(kind, {})
    broken = {k: v for k, v in values.items() if getattr(plan, k) not in v}
    shown = ", ".join(f"{k}: [{', '.join(str(x).lower() if isinstance(x, bool) else str(x) for x in v)}]"
                      for k, v in broken.items())
    return f"constraints: {{{shown}}}" if shown else ""


def write_emits(kind: str | Iterable[str], evaluation: Evaluation, inputs: Inputs, out_dir: str | Path) -> list[Path]:
    """Write the launch files of `kind` (one or several of deepspeed, megatron, torchrun) for the
    evaluated plan into `out_dir` (created); returns the paths written. Raises InputError, writing
    nothing, for an unknown kind, a plan the framework cannot run, or an `out_dir` that is a file."""
    kinds = [kind] if isinstance(kind, str) else list(kind)
    texts = {}
    for k in kinds:
        try:
            texts[k] = render(k, evaluation.plan, inputs)
        except UnsupportedPlan as error:
            hint = constraints_hint(k, evaluation.plan)
            advice = f"; add `{hint}` to the job to plan for it" if hint else ""
            raise InputError(f"{error}{advice}", field="--emit") from None
    # Atomic and contained (spec/writing.py): a symlink named like a launch file is replaced,
    # never followed, and a failed write leaves neither files nor the folders it made.
    files = {FILE_NAMES[k]: text.encode("utf-8") for k, text in texts.items()}
    return write_files(out_dir, files, executable=(FILE_NAMES["torchrun"],), field="--out")
