"""The engines: which plans each launches and what it keeps in memory (`profiles/`, one module per
engine), framework files in and out: DeepSpeed configs and Megatron-LM launch scripts become plans
(`deepspeed.py`, `megatron.py`); plans become launch files (`emit.py`).

A parser reads what the file sets into a `FrameworkJob`: the plan, the job's workload with the
file's batch and sequence length (the file is what will run), the settings it read, and a
warning for everything the planner does not model, so that nothing is ignored silently. The plan
and the workload carry the engine's name and traits (profiles/), as the search's plans do.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from planner.cost.cluster import Cluster
from planner.cost.plan import Plan
from planner.cost.workload import Workload
from planner.engines.profiles import ENGINES, engine_workload, profile
from planner.engines.profiles.base import shown
from planner.engines.rules import plan_problems
from planner.spec.errors import InputError
from planner.spec.job import Constraint

FRAMEWORKS = ENGINES
EMIT_KINDS = ENGINES + ("torchrun",)
"""What `--emit` names: an engine's launch file, or the torchrun line that starts any of them."""


class UnsupportedPlan(ValueError):
    """A plan the framework cannot launch (DeepSpeed: pipeline stages; Megatron-LM: ZeRO-3 ...)."""


@dataclass(frozen=True)
class FrameworkJob:
    """What a framework file says about a job, as the planner sees it."""

    framework: str
    """The engine (planner.spec.plan_keys.ENGINES): deepspeed, megatron ..."""
    file: str
    plan: Plan
    workload: Workload
    """The job's workload, with the global batch and sequence length the file sets."""
    warnings: tuple[str, ...]
    """Everything the file sets that the planner does not model, and every assumption made."""
    read: dict[str, object] = field(default_factory=dict)
    """The settings that made the plan, under the file's own names (`zero_optimization.stage`,
    `--tensor-model-parallel-size`), with the values as written."""
    framework_buffers: int | None = None
    """Bytes of communication buckets the file's settings imply per GPU, when the framework
    allocates them apart from the gradients (DeepSpeed ZeRO buckets); None when not known."""

    def __post_init__(self):
        # The file's engine runs the plan: its name on the plan, its traits on the workload
        # (those of a past release the reader set are kept).
        name = profile(self.framework).name
        object.__setattr__(self, "framework", name)
        object.__setattr__(self, "plan", self.plan.with_(framework=name))
        if self.workload.engine.name != name:
            object.__setattr__(self, "workload", engine_workload(self.workload, name))


def framework_constraints(framework: str, constraints: dict[str, Constraint] | None = None
                          ) -> dict[str, Constraint]:
    """The job's constraints narrowed to plans `framework` can launch (its profile's values)."""
    merged = dict(constraints or {})
    for key, values in profile(framework).values.items():
        old = merged.get(key)
        allowed = tuple(v for v in values if old is None or old.allows(v))
        if not allowed:
            raise InputError(f"{old.describe()} leaves no value {framework} can run"
                             f" ({key} in {', '.join(shown(v) for v in values)})", field=f"constraints.{key}")
        merged[key] = Constraint(values=allowed)
    return merged


def framework_problems(framework: str, plan: Plan, workload: Workload | None = None) -> list[str]:
    """Why `framework` cannot launch this plan, in words (empty when it can); with the workload,
    the engine's rules on combinations and training modes too."""
    return profile(framework).problems(plan, workload)


def check_runnable(plan: Plan, workload: Workload, cluster: Cluster, file: str) -> None:
    """The plan a file describes must obey the frameworks' rules (rules.py); else exit 2."""
    problems = plan_problems(plan, workload, cluster)
    if problems:
        raise InputError("this configuration cannot run on the cluster: " + "; ".join(problems), file=file)


def with_framework(workload: Workload, framework: str) -> Workload:
    """The workload as `framework` runs it: the engine's traits (profiles/)."""
    return engine_workload(workload, framework, workload.engine.release)

