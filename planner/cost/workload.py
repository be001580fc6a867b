"""The job as the models see it: an architecture and the shape of one optimizer step."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
    framework: Literal["megatron", "hf", "deepspeed"] = "megatron"
    """What runs the step, which decides what it keeps in memory (planner/cost/memory/): `megatron`
    (Megatron-Core / Transformer Engine fused kernels, persistent gradient buffer, fused Adam),
    `hf` (Hugging Face transformers modules on PyTorch: eager norms and SwiGLU, torch.autocast
    or FSDP2 mixed precision, gradients allocated in backward, foreach AdamW) or `deepspeed`
    (the same modules on DeepSpeed's ZeRO engine, with its fp32 gradient copy)."""

    framework_release: str | None = None
    """A past release whose behaviour the time model charges instead of the current one's: `0.3`
    for DeepSpeed before 0.4, whose ZeRO-3 gathered every tensor on its own behind a device-wide
    synchronize, through per-rank list copies (the 2021 runs of validation/data/runs.yaml).
    None: the current release (DeepSpeed prefetches and coalesces its ZeRO-3 fetches)."""
    partial: PartialTraining | None = None
    """Partial fine-tuning (job.yaml `trainable`): only these parameters train; None trains
    what `training` says (everything, or the LoRA adapters)."""
    layer_windows: tuple[int | None, ...] | None = None
    """Keys each layer attends to at most (sliding-window and chunked layers,
    planner.model.context.layer_windows); None: every layer attends to the whole sequence."""

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
