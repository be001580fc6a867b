"""What each engine's kernels keep for backward: activation and residual dtypes, autocast."""
from __future__ import annotations

from dataclasses import dataclass

from planner.cost.engine import KERNEL_FAMILIES, EngineTraits
from planner.cost.memory.states import MIXED
from planner.model.frozen import hash_once


@hash_once
@dataclass(frozen=True)
class Kernels:
    """What the engine's kernels save for backward, by precision (see the module docstring)."""

    family: str
    """The kernel family (`EngineTraits.kernels`): megatron, hf or deepspeed."""
    act: int
    """Bytes per element of saved matmul outputs and attention tensors."""
    residual: int
    """Bytes per element of the residual stream (fp32 under torch.autocast: fp32 parameters)."""
    autocast: bool
    """torch.autocast: each linear saves its own bf16 cast of an fp32 input, and the bf16 copies
    of the weights stay cached until the autocast region ends (or backward frees them)."""
    fused_norm: bool = False
    """RMSNorms run as one op that saves only its input (`EngineTraits.fused_norm`)."""
    deepep_experts: bool = False
    """Routed experts run as NeMo AutoModel's DeepEP grouped experts (`EngineTraits.fused_moe_activation`):
    the routing weight multiplies inside the activation, so no expert output is saved."""
    transformers_modules: bool = False
    """The layers are transformers' modeling code (`EngineTraits.transformers_modules`)."""


def kernels(engine: EngineTraits, precision: str, zero: int = 0) -> Kernels:
    """The activation dtypes of an engine's kernel family at a training precision.

    megatron and deepspeed run 16-bit modules (fp32 only for fp32 training). hf: `bf16-pure` casts
    the model to bf16; `bf16-autocast` keeps fp32 parameters and runs torch.autocast; `bf16`
    (PyTorch-native mixed precision) is torch.autocast under DDP (ZeRO 0-2) and FSDP2's
    MixedPrecisionPolicy(param bf16, reduce fp32) under ZeRO-3, which casts parameters when it
    gathers them and then runs pure-bf16 modules (same per-layer bytes: docs/memory-validation.md).
    """
    family = engine.kernels
    if family not in KERNEL_FAMILIES:
        raise ValueError(f"unknown kernel family {family!r}; valid: {', '.join(KERNEL_FAMILIES)}")
    fused, deepep = (engine.fused_norm and family == "hf"), (engine.fused_moe_activation and family == "hf")
    hf = engine.transformers_modules
    if precision == "fp32":
        return Kernels(family, 4, 4, False, fused, deepep, hf)
    if family == "hf" and (precision == "bf16-autocast" or (precision in MIXED and zero < 3)):
        return Kernels(family, 2, 4, True, fused, deepep, hf)
    if family == "deepspeed" and precision == "bf16-autocast":
        return Kernels(family, 2, 4, True, transformers_modules=hf)
    return Kernels(family, 2, 2, False, fused, deepep, hf)
