"""A training plan: how one job is laid out on the cluster.

`ParallelDims` is the validated set of parallel degrees (torchtitan `parallel_dims.py` style):
its check names every factor. `Plan` adds the execution choices (ZeRO, recompute, batch split,
precision ...). Both are frozen; the models read them and never change them.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from operator import attrgetter

from planner.model.frozen import evolve, hash_once
from planner.spec.plan_keys import (
    KEY_ALIASES,
    MOMENT_DTYPES,
    OFFLOAD_CHOICES,
    PARALLEL_KEYS,
    PLAN_KEYS,
    QUANT_CHOICES,
    RECOMPUTE_MODULES,
    RECOMPUTE_POLICIES,
    MomentDtype,
    Offload,
    Quant,
    Recompute,
)

__all__ = ["KEY_ALIASES", "MOMENT_DTYPES", "OFFLOAD_CHOICES", "PLAN_KEYS", "QUANT_CHOICES", "RECOMPUTE_MODULES",
           "RECOMPUTE_POLICIES", "MomentDtype", "Offload", "ParallelDims", "Plan", "PlanError", "Quant", "Recompute"]


class PlanError(ValueError):
    """A plan that contradicts itself or the job (degrees, divisibility)."""


@hash_once
@dataclass(frozen=True)
class ParallelDims:
    """Parallel degrees. World = tp * cp * pp * dp; the expert-parallel group (ep ranks of expert-TP
    etp each) is carved from tp * dp * cp (Megatron-Core), so with the default etp = tp, ep divides
    dp * cp; `Plan.etp` says otherwise."""

    tp: int = 1
    pp: int = 1
    dp: int = 1
    cp: int = 1
    ep: int = 1
    vpp: int = 1
    """Virtual pipeline chunks per pipeline rank (interleaved 1F1B); 1 means not interleaved."""
    sp: bool = False
    """Megatron sequence parallelism inside the TP group."""

    @property
    def world(self) -> int:
        return self.tp * self.cp * self.pp * self.dp

    def check(self, world: int | None = None) -> None:
        for f in ("tp", "pp", "dp", "cp", "ep", "vpp"):
            if getattr(self, f) < 1:
                raise PlanError(f"{f} must be >= 1, got {getattr(self, f)}")
        if world is not None and self.world != world:
            raise PlanError(
                f"dp({self.dp}) * cp({self.cp}) * tp({self.tp}) * pp({self.pp}) = {self.world}"
                f" != world size({world})"
            )
        if (self.tp * self.dp * self.cp) % self.ep:
            raise PlanError(f"ep({self.ep}) must divide tp({self.tp}) * dp({self.dp}) * cp({self.cp})")
        if self.sp and self.tp == 1:
            raise PlanError("sp (sequence parallelism) needs tp > 1")
        if self.vpp > 1 and self.pp == 1:
            raise PlanError(f"vpp({self.vpp}) needs pp > 1")


def step_microbatches(gas: int, runs: int, pp: int, vpp: int) -> float:
    """m + runs·(p − 1)/v: the micro-batch passes of a plan's slowest stage a step waits for, the
    fill and drain of each of its pipeline runs included (1F1B; interleaved in v chunks)."""
    return gas + runs * (pp - 1) / vpp


@hash_once
@dataclass(frozen=True)
class Plan:
    """Everything that decides a training step's memory and time, for one job on one cluster."""

    parallel: ParallelDims
    zero: int = 0
    """ZeRO stage over the data-parallel group: 0 none, 1 optimizer states, 2 + gradients, 3 + weights."""
    recompute: Recompute = "none"
    mbs: int = 1
    """Micro-batch size in sequences per GPU."""
    gas: int = 1
    """Micro-batches per optimizer step per data-parallel rank (gradient accumulation steps);
    under pipeline parallelism, those of the step's `pipeline_runs` runs of the schedule together."""
    lora_rank: int = 0
    quant: Quant = "none"
    """Storage of frozen base weights (LoRA/QLoRA): none (compute dtype), int8, nf4, fp8."""
    precision: str = "bf16"
    offload: Offload = "none"
    optimizer: str = "adamw"
    first_stage_layers: int | None = None
    """Layers on the first pipeline stage (Megatron `--decoder-first-pipeline-num-layers`); None:
    the default split. The first stage also holds the embedding."""
    last_stage_layers: int | None = None
    """Layers on the last pipeline stage (`--decoder-last-pipeline-num-layers`); None: the default
    split. The last stage also holds the final norm, output layer and loss."""
    recompute_layers: tuple[int, ...] | None = None
    """With recompute `full`: layers recomputed on each pipeline stage, the first ones of the stage
    (Megatron `--recompute-method block --recompute-num-layers`); None: every layer."""
    etp: int | None = None
    """Expert tensor parallelism: TP degree of the routed experts (Megatron-Core
    `--expert-tensor-parallel-size`); None: tp. The expert-parallel group of ep × etp ranks is
    carved from tp × dp × cp (megatron/core/parallel_state.py expert grid), so ep may exceed dp."""
    recompute_modules: tuple[str, ...] | None = None
    """With recompute `selective`: the modules recomputed (Megatron `--recompute-modules`, names in
    RECOMPUTE_MODULES); None: the attention core alone (Megatron's default, `core_attn`)."""
    offload_activation_layers: int = 0
    """Layers per pipeline stage whose saved activations wait in host memory from their forward to
    their backward (Megatron `--cpu-offloading-num-layers`); 0: none."""
    moment_dtype: MomentDtype = "fp32"
    """Adam's moments: fp32, or bf16 with Megatron's precision-aware optimizer
    (`--use-precision-aware-optimizer --exp-avg-dtype bf16 --exp-avg-sq-dtype bf16`)."""
    fp8_param_gather: bool | None = False
    """fp8 training keeps the linear layers' weights as Transformer Engine fp8 tensors and the
    distributed optimizer gathers them in fp8 (Megatron `--fp8-param-gather`): on the wire 1 byte
    per weight instead of 2; in memory the fp8 tensor with both its usages
    (precisions.fp8_weight_bytes) instead of the 16-bit weight and TE's cached fp8 copy of it.
    None: as the engine runs it by default (rules.engine_defaults), until that is applied."""
    pipeline_runs: int = 1
    """Runs of the pipeline schedule per optimizer step, each of gas / pipeline_runs micro-batches,
    each filling and draining the pipeline: torchtitan's and NeMo AutoModel's gradient-accumulation
    steps under pipeline parallelism (torchtitan train.py calls the schedule's `step()` once per
    local batch, `local_batch_size / pipeline_parallel_microbatch_size` micro-batches). 1: one run
    of all gas micro-batches (Megatron-Core's `num_microbatches`, DeepSpeed's pipeline engine)."""
    framework: str = "megatron"
    """The engine that runs the plan (planner.spec.plan_keys.ENGINES); the workload evaluated
    with it carries the same engine's traits (`Workload.engine`, planner/engines/profiles/)."""

    # Plan.tp, Plan.pp ... read through to the parallel degrees (attrgetter: no Python frame per read).
    tp = property(attrgetter("parallel.tp"))
    pp = property(attrgetter("parallel.pp"))
    dp = property(attrgetter("parallel.dp"))
    cp = property(attrgetter("parallel.cp"))
    ep = property(attrgetter("parallel.ep"))
    vpp = property(attrgetter("parallel.vpp"))
    sp = property(attrgetter("parallel.sp"))

    @property
    def global_batch(self) -> int:
        return self.mbs * self.gas * self.parallel.dp

    @property
    def step_microbatches(self) -> float:
        """The micro-batch passes of its slowest stage a step waits for (`step_microbatches`)."""
        return step_microbatches(self.gas, self.pipeline_runs, self.parallel.pp, self.parallel.vpp)

    @property
    def microbatches_per_run(self) -> int:
        """Micro-batches of one run of the pipeline schedule (`pipeline_runs`)."""
        return self.gas // self.pipeline_runs if self.pipeline_runs >= 1 else self.gas

    def layer_partition(self, num_layers: int) -> tuple[int, ...] | None:
        """Layers per pipeline stage when the plan sets the first or last stage's count, else None
        (the default split of `planner.cost.shard.stage_layer_counts`). The middle stages share the
        rest evenly, as Megatron requires; a remainder that does not divide raises PlanError."""
        pp, first, last = self.parallel.pp, self.first_stage_layers, self.last_stage_layers
        if pp == 1 or (first is None and last is None):
            return None
        if pp == 2 and (first is None or last is None):
            first = num_layers - last if first is None else first
            last = num_layers - first if last is None else last
        ends = [n for n in (first, last) if n is not None]
        rest, middle = num_layers - sum(ends), pp - len(ends)
        if middle == 0:
            if rest:
                raise PlanError(f"first ({first}) + last ({last}) stage layers != {num_layers} layers")
            return (first, last)
        if rest < middle or rest % middle:
            raise PlanError(f"the {rest} layers left after the first/last stages do not split evenly"
                            f" over {middle} stages")
        mid = rest // middle
        return (mid if first is None else first,) + (mid,) * (pp - 2) + (mid if last is None else last,)

    @property
    def expert_tp(self) -> int:
        """TP degree of the routed experts (etp, tp when unset)."""
        return self.etp if self.etp is not None else self.parallel.tp

    @property
    def expert_dp(self) -> int:
        """Expert data parallelism: tp × dp × cp / (ep × etp) ranks hold the same experts."""
        p = self.parallel
        return max(1, (p.tp * p.dp * p.cp) // (p.ep * self.expert_tp))

    def constraint_value(self, key: str):
        """The value a job's constraint on plan key `key` reads: the key's own, but expert TP as
        it runs (`expert_tp`: tp where etp is unset)."""
        return self.expert_tp if key == "etp" else getattr(self, key)

    def recomputes(self, module: str) -> bool:
        """Whether selective recompute covers `module` (a name of RECOMPUTE_MODULES)."""
        if self.recompute != "selective":
            return False
        return module in (self.recompute_modules if self.recompute_modules is not None else ("core_attn",))

    def recomputed_layers(self, stage: int, layers: int) -> int:
        """Layers of `stage` (holding `layers`) that are recomputed in full in backward."""
        if self.recompute != "full":
            return 0
        if self.recompute_layers is None:
            return layers
        return min(layers, self.recompute_layers[stage])

    def with_(self, **changes) -> "Plan":
        """A copy with plan keys changed; parallel keys (tp, pp ...) may be given flat."""
        parallel = self.parallel
        if not changes.keys().isdisjoint(PARALLEL_KEYS):
            parallel = evolve(parallel, **{k: changes.pop(k) for k in PARALLEL_KEYS if k in changes})
        return evolve(self, parallel=parallel, **changes)

    def key(self) -> tuple:
        """A hashable identity of the plan (distinct plans in top-K): the parallel degrees, then
        every other field, in order."""
        return (_PARALLEL_VALUES(self.parallel),) + _EXECUTION_VALUES(self)

    def key_with(self, **changes) -> tuple:
        """`self.with_(**changes).key()` for fields besides the parallel degrees, without building
        the copy (the search asks it of every candidate plan: search/layouts.py `group`)."""
        key = list(self.key())
        for name, value in changes.items():
            key[_EXECUTION_POSITION[name]] = value
        return tuple(key)




_EXECUTION_FIELDS = tuple(f.name for f in fields(Plan) if f.name != "parallel")
"""Plan's fields besides the parallel degrees, in order (`Plan.key`)."""
_EXECUTION_POSITION = {name: 1 + i for i, name in enumerate(_EXECUTION_FIELDS)}
"""Where each of those fields sits in `Plan.key`."""
_PARALLEL_VALUES = attrgetter(*PARALLEL_KEYS)
_EXECUTION_VALUES = attrgetter(*_EXECUTION_FIELDS)
