"""Launch files for a plan: each engine's own (its profile's emitter: a DeepSpeed config,
Megatron-LM arguments ...) and a torchrun command.

`write_emits` is what `planner solve --emit KIND --out DIR` and `planner check --emit` call:
it renders everything first and writes only when all of it could be rendered, so bad input
leaves nothing behind.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from planner.cost.evaluate import Evaluation
from planner.cost.inputs import Inputs
from planner.cost.plan import Plan
from planner.engines import EMIT_KINDS, UnsupportedPlan
from planner.engines.megatron_emit import emit_torchrun
from planner.engines.profiles import PROFILES
from planner.engines.profiles.base import shown
from planner.spec.errors import InputError, unknown_name

TORCHRUN_FILE = "torchrun.sh"


def emit_kinds() -> tuple[str, ...]:
    """The kinds `--emit` can write now: engines with an emitter, and torchrun."""
    return tuple(n for n, p in PROFILES.items() if p.emit is not None) + ("torchrun",)


def check_kind(kind: str, option: str = "--emit") -> str:
    """`kind` is a kind `--emit` writes; bad input naming the ones it does otherwise."""
    if kind not in EMIT_KINDS:
        raise InputError(unknown_name("--emit kind", kind, EMIT_KINDS), field=option)
    if kind not in emit_kinds():
        raise InputError(f"{PROFILES[kind].title} launch files are not available yet; --emit writes"
                         f" {', '.join(emit_kinds())}", field=option)
    return kind


def file_name(kind: str) -> str:
    return TORCHRUN_FILE if kind == "torchrun" else PROFILES[kind].emit_file


def render(kind: str, plan: Plan, inputs: Inputs) -> str:
    """The text of one launch file; UnsupportedPlan when the framework cannot run the plan."""
    check_kind(kind)
    if kind == "torchrun":
        return emit_torchrun(plan, inputs.cluster)
    return PROFILES[kind].emit(plan, inputs)


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
    texts = {}
    for k in kinds:
        try:
            texts[k] = render(k, evaluation.plan, inputs)
        except UnsupportedPlan as error:
            hint = constraints_hint(k, evaluation.plan)
            advice = f"; add `{hint}` to the job, or `framework: {k}`, to plan for it" if hint else ""
            instead = nearest(k) if nearest is not None else ""
            raise InputError(f"{error}{advice}{instead}", field="--emit") from None
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a directory", file=str(out), field="--out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for k, text in texts.items():
            path = out / file_name(k)
            path.write_text(text)
            if k == "torchrun":
                path.chmod(0o755)
            paths.append(path)
    except OSError as error:
        raise InputError(f"cannot write: {error}", file=str(out), field="--out") from None
    return paths
