"""The job as the models see it: an architecture and the shape of one optimizer step."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from planner.cost.engine import EngineTraits
from planner.cost.partial import PartialTraining
from planner.model.architecture import Architecture


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
