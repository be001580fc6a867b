"""What an engine profile says: the plan values the engine launches, the traits the cost models
read (planner/cost/engine.py), the training modes, its files in and out, and what users set that
the planner does not model. One instance per engine, in the modules beside this one."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from planner.cost.engine import EngineTraits
from planner.cost.plan import Plan
from planner.cost.workload import Workload

if TYPE_CHECKING:
    from planner.cost.inputs import Inputs

KEY_WORDS = {"pp": "pipeline parallelism", "vpp": "interleaved pipeline stages", "sp": "Megatron sequence parallelism",
             "cp": "context parallelism", "ep": "expert parallelism", "recompute": "recompute",
             "zero": "ZeRO stage", "offload": "offload", "lora_rank": "LoRA", "quant": "quantized base weights",
             "precision": "precision", "optimizer": "optimizer"}
"""Plan keys in words, for refusals."""


def shown(value: object) -> str:
    """A plan value as YAML writes it (`false`, not `False`)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class EngineProfile:
    name: str
    """The plan key `framework`: megatron, deepspeed, fsdp2, torchtitan."""
    title: str
    """As people call it (tables, comparisons)."""
    runs: str
    """What runs it, in one line."""
    traits: EngineTraits
    values: dict[str, tuple]
    """The values of each plan key it launches, where it does not launch every value."""
    training: tuple[str, ...]
    """Training modes: pretrain, full, lora, qlora."""
    partial_recompute: bool
    """Recomputes only some layers of a stage (`recompute_layers`); else every layer or none."""
    uneven_stages: bool
    """Runs pipeline stages of different layer counts (the first and last stages apart from the
    middle ones, which share the rest evenly); else only the even split."""
    sources: tuple[str, ...]
    """Where each value and trait comes from (the engine's source files or docs)."""
    not_modelled: tuple[str, ...] = ()
    """What users of the engine set that the planner does not model; the readers warn of each."""
    rules: Callable[[Plan, Workload], list[str]] | None = None
    """Rules beyond `values` (combinations the engine refuses), as reasons in words."""
    unbuildable: Callable[[Workload], str | None] | None = None
    """What of the job's model the engine's own model code cannot build, in words (None: it builds it).
    Engines that train Hugging Face modules build every model the planner reads."""
    files: tuple[str, ...] = ()
    """The launch files it reads (`check`) and its emitter writes."""
    emit: Callable[[Plan, "Inputs"], str] | None = None
    """The text of its launch file for a plan; None while the planner writes none for it."""
    emit_file: str | None = None
    """The name `--emit` writes that text under."""
    read: Callable | None = None
    """Its reader: the file's FrameworkJob (planner.engines.FrameworkJob); None when there is none."""
    launch: Callable[[Plan, int], Plan] | None = None
    """The plan as the engine launches it, given the model's layers, where the search's plan says
    more than its flags can (Megatron-LM: one recompute count for every stage); None: as it is."""
    notes: dict[str, str] = field(default_factory=dict)
    """Why a key is limited, by plan key, for refusals (`zero`: "distributed optimizer only")."""

    def launched(self, plan: Plan, num_layers: int) -> Plan:
        return self.launch(plan, num_layers) if self.launch is not None else plan

    def allows(self, key: str, value: object) -> bool:
        values = self.values.get(key)
        return values is None or value in values

    def problems(self, plan: Plan, workload: Workload | None = None) -> list[str]:
        """Why this engine cannot launch the plan, in words (empty when it can)."""
        out = []
        for key, values in self.values.items():
            value = getattr(plan, key)
            if value not in values:
                out.append(f"{KEY_WORDS.get(key, key)} {key}={shown(value)} (it runs {key} in"
                           f" {', '.join(shown(v) for v in values)})")
        if not self.uneven_stages and (plan.first_stage_layers is not None or plan.last_stage_layers is not None):
            out.append("first_stage_layers and last_stage_layers (it runs even pipeline stages only)")
        if plan.recompute_layers is not None and not self.partial_recompute:
            out.append(f"recompute of some layers only (recompute_layers={'/'.join(map(str, plan.recompute_layers))};"
                       " it recomputes every layer or none)")
        if workload is not None:
            if workload.training not in self.training:
                out.append(f"training {workload.training} (it runs {', '.join(self.training)})")
            if self.rules is not None:
                out += self.rules(plan, workload)
        return out
