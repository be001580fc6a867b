"""The engines, one profile each (megatron.py, deepspeed.py, fsdp2.py, torchtitan.py): what plans
it launches, the traits the cost models read, its files. The search space, the memory and time
models, `check` and `--emit` all read these, so they cannot disagree about an engine.

`framework: auto` searches every engine that can run the job; `default_engine` is the engine an
`estimate` of one plan uses under auto: of the engines that launch the plan, the one whose step
is fastest among those that fit (Megatron-Core for most pretraining layouts, FSDP2 or DeepSpeed
for LoRA and QLoRA, which Megatron-LM does not run), ties broken in the order of ENGINES.
"""
from __future__ import annotations

from dataclasses import replace

from planner.cost.cluster import Cluster
from planner.cost.engine import EngineTraits
from planner.cost.plan import Plan
from planner.cost.workload import JobDefaults, Workload
from planner.engines.profiles import deepspeed, fsdp2, megatron, torchtitan
from planner.engines.profiles.base import KEY_WORDS, EngineProfile, shown
from planner.spec.job import Constraint
from planner.spec.plan_keys import AUTO, ENGINES, resolve_framework

PROFILES: dict[str, EngineProfile] = {p.name: p for p in (megatron.PROFILE, deepspeed.PROFILE, fsdp2.PROFILE,
                                                          torchtitan.PROFILE)}

__all__ = ["AUTO", "ENGINES", "PROFILES", "EngineProfile", "cannot_run", "default_engine", "engine_traits",
           "engine_workload", "engines_for", "profile"]


def profile(name: str) -> EngineProfile:
    """The profile of an engine by any of its names (`mcore`, `hf`, `ds` ...)."""
    return PROFILES[resolve_framework(name, allow_auto=False)]


def engine_traits(name: str) -> EngineTraits:
    return profile(name).traits


def engine_workload(workload: Workload, name: str, release: str | None = None) -> Workload:
    """The workload as engine `name` runs it: its traits (a past `release` where the time model
    knows one, planner/cost/engine.py)."""
    traits = engine_traits(name)
    return replace(workload, engine=replace(traits, release=release) if release else traits)


def engines_for(framework: str) -> tuple[str, ...]:
    """The engines a job's `framework` searches: all of them for `auto`."""
    name = resolve_framework(framework)
    return ENGINES if name == AUTO else (name,)


def cannot_run(name: str, workload: Workload, defaults: JobDefaults, constraints: dict[str, Constraint],
               precisions: tuple[str, ...], optimizers: tuple[str, ...]) -> str | None:
    """Why engine `name` cannot run the job at all, in words; None when some plan may run.

    `precisions` and `optimizers`: the values the search would try for the job (an fp8 job may
    also run bf16, an 8-bit AdamW job AdamW)."""
    p = PROFILES[name]
    unbuilt = p.unbuilt(workload)
    if unbuilt:
        return f"{p.title}'s {unbuilt}"
    if workload.training not in p.training:
        why = f"; {p.notes['lora_rank']}" if "lora_rank" in p.notes else ""
        return f"{p.title} does not run {workload.training} training (it runs {', '.join(p.training)}{why})"
    fixed = {"precision": precisions, "optimizer": optimizers, "quant": (defaults.quant,)}
    if workload.trains_adapters:
        fixed["lora_rank"] = defaults.lora_ranks
    for key, values in fixed.items():
        c = constraints.get(key)
        tried = tuple(c.values) if c is not None and c.values is not None else values
        if not any(p.allows(key, v) for v in tried):
            return (f"{p.title} does not run {KEY_WORDS.get(key, key)} {', '.join(shown(v) for v in tried)}"
                    f" (it runs {', '.join(shown(v) for v in p.values[key])})")
    for key, values in p.values.items():
        c = constraints.get(key)
        if c is not None and not any(c.allows(v) for v in values):
            return (f"the job's constraints.{key} ({c.describe()}) leaves nothing {p.title} runs"
                    f" ({key} in {', '.join(shown(v) for v in values)})")
    return None


def default_engine(plan: Plan, workload: Workload, cluster: Cluster) -> str:
    """The engine a plan runs on under `framework: auto` (see the module docstring)."""
    from planner.cost.evaluate import evaluate
    from planner.engines.rules import engine_defaults, plan_problems
    best = None
    for name in ENGINES:
        wl = engine_workload(workload, name)
        candidate = engine_defaults(plan.with_(framework=name), wl)
        if PROFILES[name].problems(candidate, wl) or plan_problems(candidate, wl, cluster):
            continue
        ev = evaluate(candidate, wl, cluster)
        rank = (not ev.fits, ev.time.step)
        if best is None or rank < best[0]:
            best = (rank, name)
    return best[1] if best else ENGINES[0]
