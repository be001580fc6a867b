"""The job as the models see it: an architecture and the shape of one optimizer step."""
from __future__ import annotations

from dataclasses import dataclass

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

    @property
    def trains_adapters(self) -> bool:
        return self.training in ("lora", "qlora")

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.global_batch
