"""What an engine profile says: the plan values the engine launches, the traits the cost models
read (planner/cost/engine.py), the training modes, its files in and out, and what users set that
the planner does not model. One instance per engine, in the modules beside this one."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import TYPE_CHECKING

from planner.cost.engine import EngineTraits
from planner.cost.plan import Plan, PlanError
from planner.cost.shard import stage_layer_counts
from planner.cost.workload import Workload
from planner.engines.rules import Rule
from planner.spec.plan_keys import PLAN_KEYS

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
    one_recompute_count: bool = False
    """With `partial_recompute`: one count of layers recomputed in each model chunk of every
    stage, not a count per stage (Megatron-LM --recompute-num-layers): a stage of n layers and v
    chunks recomputes min(n, count × v). The search's stages take only such counts."""
    rules: Callable[[Plan, Workload], list[str]] | None = None
    """Rules beyond `values` (combinations the engine refuses), as reasons in words."""
    rules_read: tuple[str, ...] = PLAN_KEYS
    """The plan keys `rules` reads: its reasons depend on no other (the search checks it once per
    combination of their values, search/admit.py)."""
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
        """Why this engine cannot launch the plan, in words (empty when it can); without a
        workload, only what the plan alone says."""
        checks = self.checks if workload is not None else self.plan_checks
        return [m for rule in checks for m in rule.check(plan, workload, None)]

    @cached_property
    def plan_checks(self) -> tuple[Rule, ...]:
        """`problems` without a workload, as rules (planner.engines.rules.Rule), in its order."""
        return (*(Rule((key,), partial(_runs_value, key, values)) for key, values in self.values.items()),
                Rule(("first_stage_layers", "last_stage_layers"), self._stages),
                Rule(("recompute_layers",), self._recompute_layers))

    @cached_property
    def checks(self) -> tuple[Rule, ...]:
        """`problems` with a workload, as rules, in its order."""
        rules = (Rule(self.rules_read, lambda plan, workload, _: self.rules(plan, workload)),) if self.rules is not None else ()
        return (*self.plan_checks, Rule((), self._training), Rule((), self._builds),
                Rule(("recompute", "recompute_layers", "pp", "vpp", "first_stage_layers", "last_stage_layers"),
                     self._one_recompute_count), *rules)

    def _stages(self, plan: Plan, workload, cluster) -> list[str]:
        if not self.uneven_stages and (plan.first_stage_layers is not None or plan.last_stage_layers is not None):
            return ["first_stage_layers and last_stage_layers (it runs even pipeline stages only)"]
        return []

    def _recompute_layers(self, plan: Plan, workload, cluster) -> list[str]:
        if plan.recompute_layers is not None and not self.partial_recompute:
            return [f"recompute of some layers only (recompute_layers={'/'.join(map(str, plan.recompute_layers))};"
                    " it recomputes every layer or none)"]
        return []

    def _one_recompute_count(self, plan: Plan, workload: Workload, cluster) -> list[str]:
        """Per-stage recompute counts an engine of one count (`one_recompute_count`) cannot run:
        its launch recomputes other counts (`launched`)."""
        if not self.one_recompute_count or plan.recompute != "full" or plan.recompute_layers is None \
                or len(plan.recompute_layers) != plan.parallel.pp:
            return []  # none to compare, or a length the plan's own rules refuse
        layers = workload.arch.num_layers
        try:
            counts = plan.layer_partition(layers) or stage_layer_counts(layers, plan.parallel.pp)
        except PlanError:
            return []  # the partition's own rule says why
        launched = self.launched(plan, layers)
        wanted = [plan.recomputed_layers(i, n) for i, n in enumerate(counts)]
        runs = [launched.recomputed_layers(i, n) for i, n in enumerate(counts)]
        if wanted == runs:
            return []
        return [f"recompute_layers={'/'.join(map(str, wanted))} (it recomputes one count of layers in each model"
                f" chunk of every stage; launched, this is recompute_layers={'/'.join(map(str, runs))})"]

    def unbuilt(self, workload: Workload) -> str | None:
        """`models cannot build MODEL: it has ...` when the engine's model code cannot build the
        job's model (`unbuildable`), else None."""
        why = self.unbuildable(workload) if self.unbuildable is not None else None
        return f"models cannot build {workload.arch.name}: it has {why}" if why else None

    def _builds(self, plan: Plan, workload: Workload, cluster) -> list[str]:
        unbuilt = self.unbuilt(workload)
        return [f"its {unbuilt}"] if unbuilt else []

    def _training(self, plan: Plan, workload: Workload, cluster) -> list[str]:
        if workload.training not in self.training:
            return [f"training {workload.training} (it runs {', '.join(self.training)})"]
        return []


def _runs_value(key: str, values: tuple, plan: Plan, workload, cluster) -> list[str]:
    value = getattr(plan, key)
    if value in values:
        return []
    words = KEY_WORDS.get(key, key)
    named = f"{key}={shown(value)}" if words == key else f"{words} {key}={shown(value)}"  # not `precision precision=`
    return [f"{named} (it runs {key} in {', '.join(shown(v) for v in values)})"]
