"""The job as the models see it: an architecture and the shape of one optimizer step."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from planner.cost.engine import EngineTraits
from planner.cost.partial import PartialTraining
from planner.model.architecture import Architecture
from planner.model.frozen import hash_once


@dataclass(frozen=True)
class StateDtypes:
    """Bytes per element of model states that a launch file sets explicitly; None keeps the
    precision's default (planner/cost/memory/states.py `state_bytes`)."""

    gradient: int | None = None
    """The gradient buffer: 2 with Megatron's --grad-reduce-in-bf16 (the buffer takes the
    parameter dtype unless ddp_config.grad_reduce_in_fp32: distributed_data_parallel.py,
    megatron/core/distributed/param_and_grad_buffer.py)."""
    master: float | None = None
    """Master weights: 2 for Megatron's precision-aware optimizer storing only the 16 bits an fp32
    value does not share with its bf16 parameter (megatron/core/optimizer/optimizer_config.py
    `store_param_remainders`), or --main-params-dtype fp16."""
    moments: int | None = None
    """Adam's two moments together: 2 + 2 with --exp-avg-dtype and --exp-avg-sq-dtype bf16,
    2 + 4 with only the first (megatron/core/optimizer/optimizer_config.py `exp_avg_dtype`,
    `exp_avg_sq_dtype`)."""


@hash_once
@dataclass(frozen=True)
class Workload:
    arch: Architecture
    training: str
    """pretrain | full | lora | qlora."""
    seq_len: int
    global_batch: int
    """Sequences per optimizer step."""
    lora_targets: tuple[str, ...] = ()
    tokens: float | None = None
    """Training budget in tokens, for time and cost."""
    attention_kernel: Literal["flash", "unfused"] = "flash"
    """How the attention core runs: `flash` (FlashAttention-style fused kernel: causal FLOPs, no
    s×s scores in HBM) or `unfused` (Megatron-LM before FlashAttention: full s×s scores written,
    masked, softmaxed and dropped out in HBM). Only the time model reads it; published runs
    before 2022 state `unfused` (validation/data/runs.yaml)."""
    engine: EngineTraits = EngineTraits()
    """What the engine that runs the step keeps in memory and how its collectives run
    (planner/cost/engine.py); the engine profiles (planner/engines/profiles/) give each engine's.
    The default is Megatron-Core's."""
    partial: PartialTraining | None = None
    """Partial fine-tuning (job.yaml `trainable`): only these parameters train; None trains
    what `training` says (everything, or the LoRA adapters)."""
    layer_windows: tuple[int | None, ...] | None = None
    """Keys each layer attends to at most (sliding-window and chunked layers,
    planner.model.context.layer_windows); None: every layer attends to the whole sequence."""
    states: StateDtypes | None = None
    """Bytes per element of the model states where a launch file sets them apart from the
    precision's defaults (planner/cost/memory/states.py); None: the defaults."""
    framework_buffers: int | None = None
    """Bytes of communication buckets per GPU that the launch file's settings allocate apart from
    the gradients (DeepSpeed ZeRO's reduce and all-gather buckets, deepspeed/runtime/zero/
    stage_1_and_2.py `reduce_bucket_size`/`allgather_bucket_size`, sized by
    planner.engines.deepspeed_keys.bucket_bytes). The buffers term is at least this; None: the
    model's own buffers."""

    @property
    def trains_adapters(self) -> bool:
        return self.training in ("lora", "qlora")

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.global_batch


@dataclass(frozen=True)
class JobDefaults:
    """Plan keys the job fixes unless a constraint lists other values."""

    precision: str
    optimizer: str
    lora_ranks: tuple[int, ...]
    quant: str
