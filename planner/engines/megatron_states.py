"""What a Megatron-LM (or Megatron-DeepSpeed) launch keeps per parameter: precision, the dtypes
of its gradient buffer, parameters, master weights and Adam moments, the ZeRO stage, offload and
the optimizer.

Flags: megatron/training/arguments.py; their effect: megatron-core 0.16
megatron/core/distributed/distributed_data_parallel.py (the buffers' dtypes),
megatron/core/optimizer/optimizer_config.py and distrib_optimizer.py (precision-aware optimizer).
"""
from __future__ import annotations

from planner.cost.memory.states import BF16_PARAMETERS
from planner.cost.precisions import QUANTIZED_PRECISIONS
from planner.cost.workload import StateDtypes
from planner.engines.megatron_flags import FlagReader

# Megatron-FSDP's --data-parallel-sharding-strategy as ZeRO stages (megatron/core/distributed/fsdp).
_SHARDING = {"no_shard": 0, "optim": 1, "optim_grads": 2, "optim_grads_params": 3}
SGD_MOMENTUM_DEFAULT = 0.9  # --sgd-momentum default
_DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int16": 2}


def zero_stage(r: FlagReader, deepspeed: bool, warnings: list[str]) -> int:
    if deepspeed:
        # Megatron-DeepSpeed: ZeRO is DeepSpeed's, set in the --deepspeed_config JSON; --zero-stage
        # (default 1.0 in its arguments.py `_add_zero_args`) is what the example scripts write it from.
        stage = r.integer("zero-stage", minimum=0)
        if stage is None:
            warnings.append("--deepspeed without --zero-stage: the ZeRO stage is in the --deepspeed_config JSON,"
                            " which is not read; planned with stage 0 (check that file with --deepspeed)")
            return 0
        if stage > 3:
            raise r.error("zero-stage", f"must be 0, 1, 2 or 3, got {stage}")
        warnings.append(f"--zero-stage {stage}: DeepSpeed's ZeRO stage {stage}, as the example scripts write it"
                        " into the --deepspeed_config JSON (that file decides)")
        return stage
    if r.flag("use-torch-fsdp2"):
        return 3
    if r.flag("use-megatron-fsdp") or r.flag("use-custom-fsdp"):
        return _SHARDING[r.choice("data-parallel-sharding-strategy", tuple(_SHARDING)) or "no_shard"]
    return 1 if r.flag("use-distributed-optimizer") else 0


def offload(r: FlagReader, warnings: list[str]) -> str:
    if not r.flag("optimizer-cpu-offload"):
        return "none"
    fraction = r.number("optimizer-offload-fraction", 1.0)
    if fraction < 1:
        warnings.append(f"--optimizer-offload-fraction {fraction:g}: the planner offloads all optimizer states"
                        " or none; planned as all")
    return "optimizer"


def precision(r: FlagReader) -> str:
    bf16, fp16 = r.flag("bf16"), r.flag("fp16")
    if bf16 and fp16:
        raise r.error("fp16", "cannot be combined with --bf16 (validate_args)")
    fp8 = r.choice("fp8-format", ("e4m3", "hybrid"))
    fp4 = r.choice("fp4-format", ("e2m1",))
    if fp4:
        # Megatron-Core runs fp4 through Transformer Engine's NVFP4BlockScaling recipe
        # (megatron/core/fp4_utils.py `get_fp4_recipe`), one or the other of fp8 and fp4
        # (transformer_config.py __post_init__).
        if fp8:
            raise r.error("fp4-format", "cannot be combined with --fp8-format (transformer_config.py)")
        if r.choice("fp4-recipe", ("nvfp4", "custom")) == "custom":
            raise r.error("fp4-recipe", "custom quantizers are not modelled; the planner knows nvfp4")
        return "nvfp4"
    if fp8 and r.choice("fp8-recipe", ("tensorwise", "delayed", "mxfp8", "blockwise", "custom")) == "mxfp8":
        return "mxfp8"  # block scaling, one scale per 32 elements (megatron/core/fp8_utils.py)
    return "fp8" if fp8 else "bf16" if bf16 else "fp16" if fp16 else "fp32"


def _dtype(r: FlagReader, name: str) -> int | None:
    value = r.choice(name, tuple(_DTYPE_BYTES))
    return None if value is None else _DTYPE_BYTES[value]


def state_dtypes(r: FlagReader, plan_precision: str, deepspeed: bool, warnings: list[str],
                 fp8_params: bool = False) -> StateDtypes | None:
    """The dtypes the flags set apart from the precision's defaults (planner/cost/memory/states.py);
    `fp8_params`: the parameters are fp8 (`fp8_param_gather`), which leaves no 16-bit remainder."""
    grad = master = moments = None
    if r.flag("grad-reduce-in-bf16"):
        # The gradient buffer takes the parameters' dtype unless grad_reduce_in_fp32
        # (distributed_data_parallel.py): bf16 main gradients, and bf16 reduce-scatter.
        if plan_precision in BF16_PARAMETERS:
            grad = 2
        else:
            warnings.append(f"--grad-reduce-in-bf16 with {plan_precision} parameters: gradients keep their dtype")
    if r.flag("use-precision-aware-optimizer"):
        if not r.flag("use-distributed-optimizer"):
            raise r.error("use-precision-aware-optimizer", "needs --use-distributed-optimizer (optimizer_config.py)")
        first, second = _dtype(r, "exp-avg-dtype") or 4, _dtype(r, "exp-avg-sq-dtype") or 4
        moments = first + second if (first, second) != (4, 4) else None
        main_params = _dtype(r, "main-params-dtype") or 4
        main_grads = _dtype(r, "main-grads-dtype") or 4
        recipe = r.text("fp8-recipe") or "delayed"
        # optimizer_config.py `use_precision_aware_optimizer_no_fp8_or_ds_fp8`: TE's FusedAdam keeps the
        # master weights; with bf16 parameters it stores the 16-bit remainders of fp32 values
        # (`store_param_remainders`, distrib_optimizer.py: an int16 master_param shard).
        if (main_params != 4 or plan_precision not in QUANTIZED_PRECISIONS or recipe == "delayed"
                or r.flag("optimizer-cpu-offload")):
            master = 2 if main_params == 4 and plan_precision in BF16_PARAMETERS and not fp8_params else main_params
            master = None if master == 4 else master
        if main_grads != 4 and grad is None and plan_precision in BF16_PARAMETERS:
            grad = main_grads
    else:
        for name in ("main-grads-dtype", "main-params-dtype", "exp-avg-dtype", "exp-avg-sq-dtype"):
            if _dtype(r, name) not in (None, 4):
                raise r.error(name, "needs --use-precision-aware-optimizer (optimizer_config.py asserts fp32 without it)")
    if deepspeed and (grad or master or moments):
        warnings.append("--grad-reduce-in-bf16 / --use-precision-aware-optimizer are"
                        " Megatron-Core options; under DeepSpeed's engine they are counted as Megatron-Core does")
    if (grad, master, moments) == (None, None, None):
        return None
    return StateDtypes(gradient=grad, master=master, moments=moments)


def optimizer(r: FlagReader, job_optimizer: str, warnings: list[str]) -> str:
    name = r.text("optimizer") or "adam"
    if name == "adam":  # Megatron's adam decouples weight decay (AdamW); same states either way
        if job_optimizer in ("adam", "adamw"):
            return job_optimizer
        warnings.append(f"--optimizer adam (AdamW) differs from the job's optimizer {job_optimizer}; planned with adamw")
        return "adamw"
    if name == "sgd":
        return "sgd-momentum" if r.number("sgd-momentum", SGD_MOMENTUM_DEFAULT) else "sgd"
    warnings.append(f"--optimizer {name} is not modelled; planned with the job's optimizer {job_optimizer}")
    return job_optimizer


def fp8_param_gather(r: FlagReader, plan_precision: str, zero: int, deepspeed: bool, warnings: list[str]) -> bool:
    """--fp8-param-gather: Transformer Engine fp8 parameters that the distributed optimizer gathers
    in 8 bits (megatron/core/distributed/distributed_data_parallel_config.py `fp8_param_gather`;
    Megatron-LM builds the model under fp8_model_init with it: megatron/core/fp8_utils.py)."""
    if not r.flag("fp8-param-gather"):
        return False
    if deepspeed:
        warnings.append("--fp8-param-gather is Megatron-Core's distributed optimizer's; under DeepSpeed's engine the"
                        " parameters are counted as 16-bit")
        return False
    if plan_precision == "nvfp4":
        warnings.append("--fp8-param-gather with --fp4-format: Megatron-Core keeps fp8 parameters only in fp8 mode"
                        " (transformer_config.py); its fp4 parameters are --fp4-param-gather, not modelled: counted"
                        " as 16-bit parameters")
        return False
    if plan_precision not in QUANTIZED_PRECISIONS:
        warnings.append("--fp8-param-gather without --fp8-format: the parameters stay 16-bit; counted so")
        return False
    if zero < 1:
        warnings.append("--fp8-param-gather without --use-distributed-optimizer: no optimizer gathers the"
                        " parameters; counted as 16-bit parameters with Transformer Engine's fp8 weight cache")
        return False
    if plan_precision == "mxfp8" and not r.flag(MXFP8_GATHER_BUFFER):
        # Megatron-Core puts MXFP8 parameters' gather buffer in the gradient buffer
        # (param_and_grad_buffer.py `shared_buffer`); Megatron-Bridge asserts the flag with them
        # (training/config.py: "reuse_grad_buf_for_mxfp8_param_ag must be set to True").
        warnings.append(f"--fp8-param-gather with --fp8-recipe mxfp8 needs --{MXFP8_GATHER_BUFFER}: without it"
                        " Megatron-Core maps the parameters into the buffer their gradients use"
                        " (param_and_grad_buffer.py), as Megatron-Bridge refuses")
    return True


MXFP8_GATHER_BUFFER = "reuse-grad-buf-for-mxfp8-param-ag"
"""Megatron-LM's flag for DistributedDataParallelConfig.reuse_grad_buf_for_mxfp8_param_ag: MXFP8
parameters gathered through the gradient buffer, then copied into their own storage."""
