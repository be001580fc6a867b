"""Framework files in and out: DeepSpeed configs and Megatron-LM launch scripts become plans
(`deepspeed.py`, `megatron.py`); plans become configs, argument lists and launch commands
(`emit.py`).

A parser reads what the file sets into a `FrameworkJob`: the plan, the job's workload with the
file's batch and sequence length (the file is what will run), the settings it read, and a
warning for everything the planner does not model, so that nothing is ignored silently.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from planner.cost.cluster import Cluster
from planner.cost.plan import Plan
from planner.cost.workload import Workload
from planner.engines.rules import plan_problems
from planner.spec.errors import InputError
from planner.spec.job import Constraint

FRAMEWORKS = ("deepspeed", "megatron")
EMIT_KINDS = ("deepspeed", "megatron", "torchrun")


class UnsupportedPlan(ValueError):
    """A plan the framework cannot launch (DeepSpeed: pipeline stages; Megatron-LM: ZeRO-3 ...)."""


@dataclass(frozen=True)
class FrameworkJob:
    """What a framework file says about a job, as the planner sees it."""

    framework: str
    """deepspeed | megatron."""
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


# Plan values each framework can launch, as constraints (the same shape as job.yaml's).
# DeepSpeed: no pipeline stages outside PipelineModule code, no Megatron sequence parallelism,
# no selective recompute (HF gradient checkpointing and deepspeed.checkpointing checkpoint whole
# layers), no fp8 from the config. Megatron-LM: the distributed optimizer is ZeRO-1
# (megatron/core/optimizer/distrib_optimizer.py), optimizer offload through
# --optimizer-cpu-offload, no LoRA, optimizers adam (AdamW) and sgd (megatron/training/arguments.py).
_FRAMEWORK_VALUES: dict[str, dict[str, tuple]] = {
    "deepspeed": {
        "pp": (1,), "vpp": (1,), "sp": (False,), "recompute": ("none", "full"),
        "precision": ("bf16", "fp16", "fp32", "bf16-autocast"),
    },
    "megatron": {
        "zero": (0, 1), "offload": ("none", "optimizer"), "lora_rank": (0,), "quant": ("none",),
        "precision": ("bf16", "fp16", "fp8", "fp32"),
        "optimizer": ("adamw", "adam", "sgd", "sgd-momentum"),
    },
}


def framework_constraints(framework: str, constraints: dict[str, Constraint] | None = None
                          ) -> dict[str, Constraint]:
    """The job's constraints narrowed to plans `framework` can launch.

    For `planner solve --emit deepspeed|megatron`: searching under these finds the best plan
    the framework runs instead of one it cannot.
    """
    merged = dict(constraints or {})
    for key, values in _FRAMEWORK_VALUES[framework].items():
        old = merged.get(key)
        allowed = tuple(v for v in values if old is None or old.allows(v))
        if not allowed:
            raise InputError(f"{old.describe()} leaves no value {framework} can run"
                             f" ({key} in {', '.join(_shown(v) for v in values)})", field=f"constraints.{key}")
        merged[key] = Constraint(values=allowed)
    return merged


def _shown(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def framework_problems(framework: str, plan: Plan) -> list[str]:
    """Why `framework` cannot launch this plan, in words (empty when it can)."""
    words = {"pp": "pipeline parallelism", "vpp": "interleaved pipeline stages",
             "sp": "Megatron sequence parallelism", "recompute": "recompute", "zero": "ZeRO stage",
             "offload": "offload", "lora_rank": "LoRA", "quant": "quantized base weights",
             "precision": "precision", "optimizer": "optimizer"}
    problems = []
    for key, values in _FRAMEWORK_VALUES[framework].items():
        value = getattr(plan, key)
        if value not in values:
            problems.append(f"{words[key]} {key}={_shown(value)} (it runs {key} in"
                            f" {', '.join(_shown(v) for v in values)})")
    return problems


def check_runnable(plan: Plan, workload: Workload, cluster: Cluster, file: str) -> None:
    """The plan a file describes must obey the frameworks' rules (rules.py); else exit 2."""
    problems = plan_problems(plan, workload, cluster)
    if problems:
        raise InputError("this configuration cannot run on the cluster: " + "; ".join(problems), file=file)


def with_framework(workload: Workload, framework: str) -> Workload:
    """The workload as `framework` runs it (`Workload.framework`: what the kernels save for
    backward, DeepSpeed's fp32 gradient copy; memory.py)."""
    return replace(workload, framework=framework)
