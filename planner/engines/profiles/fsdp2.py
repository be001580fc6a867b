"""Hugging Face transformers with accelerate or the Trainer on PyTorch FSDP2; PEFT and bitsandbytes
for LoRA and QLoRA.

Launches: data parallelism replicated (DDP, ZeRO 0) or fully sharded (`fully_shard` with
reshard_after_forward, ZeRO-3), with CPUOffloadPolicy (parameters, gradients and optimizer to the
host: offload optimizer+params); tensor parallelism and context parallelism through accelerate's
ParallelismConfig (accelerate/parallelism_config.py: `tp_size` with the model's tp_plan, `cp_size`
with FSDP only: "cannot be used with pure data parallelism"); gradient checkpointing of every
layer (`gradient_checkpointing_enable`); bf16 under torch.autocast (DDP: bf16 and bf16-autocast are
the same) or FSDP2's MixedPrecisionPolicy, pure bf16 (the script loads the model in bf16), fp16, fp32; any optimizer of the Trainer's --optim (bitsandbytes 8-bit AdamW,
Adafactor); LoRA through PEFT, QLoRA on bitsandbytes int8 or nf4 base weights. No pipeline
stages, no expert parallelism, no Megatron sequence parallelism, no ZeRO-1/2 (FSDP2's
reshard_after_forward=False keeps the unsharded parameters through the step: not modelled).

Traits: eager Hugging Face modules (the `hf` kernel family, measured with PyTorch's MemTracker in
validation/memory/), fp32 parameters as the master weights, gradients allocated in backward
(zero_grad(set_to_none=True)), foreach AdamW's extra parameter copy in step()
(torch/optim/adamw.py `_multi_tensor_adamw`); FSDP2 keeps the root's parameters unsharded from
forward through backward and prefetches one layer; CPUOffloadPolicy moves gradients with the
parameters.
"""
from __future__ import annotations

from planner.cost.engine import EngineTraits
from planner.cost.plan import Plan
from planner.cost.workload import Workload
from planner.engines.profiles.base import EngineProfile

TRAITS = EngineTraits(
    name="fsdp2", kernels="hf", fp32_parameters=True, fp32_grad_accumulation=False, fp32_gradient_copy=False,
    persistent_gradients=False, optimizer_step_copy=True, zero3_gather="fsdp2", zero3_per_tensor=False,
    offload_gradients="with_params", transformers_modules=True,
)


def _rules(plan: Plan, workload: Workload) -> list[str]:
    problems = []
    p, sharded = plan.parallel, plan.zero >= 2
    if sharded and p.dp * p.cp == 1:
        problems.append(f"zero={plan.zero} with dp=1 and cp=1: FSDP has no ranks to shard over (accelerate refuses"
                        " a parallelism config without dp_shard or cp)")
    # accelerate/parallelism_config.py: cp_size > 1 composes with FSDP (dp_shard), not pure DDP.
    if p.cp > 1 and not sharded:
        problems.append(f"cp={p.cp} without FSDP: accelerate shards over dp_shard x cp, so context parallelism"
                        " needs zero 2 or 3")
    if not sharded and p.tp > 1 and p.dp > 1:
        problems.append(f"tp={p.tp} with DDP (zero=0, dp={p.dp}): accelerate composes TP with FSDP2 only")
    if plan.quant == "int8" and sharded:
        problems.append("8-bit bitsandbytes weights with FSDP (only 4-bit weights stored in the compute dtype shard)")
    if plan.quant != "none" and p.tp > 1:
        problems.append(f"bitsandbytes base weights with tensor parallelism (tp={p.tp})")
    # accelerate/utils/fsdp_utils.py fsdp2_prepare_model: under FSDP2, mixed_precision bf16 casts the
    # gathered parameters by MixedPrecisionPolicy (the plan's precision bf16); fp32 weights under
    # torch.autocast alone are DDP's (zero 0).
    if plan.precision == "bf16-autocast" and plan.zero >= 2:
        problems.append(f"bf16-autocast with FSDP sharding (zero={plan.zero}): FSDP2 casts parameters by its"
                        " MixedPrecisionPolicy, which is precision bf16")
    return problems


PROFILE = EngineProfile(
    name="fsdp2",
    title="FSDP2 (Hugging Face)",
    runs="Hugging Face transformers with accelerate or the Trainer on PyTorch FSDP2 (PEFT, bitsandbytes)",
    traits=TRAITS,
    values={
        # accelerate's FSDP2: ZeRO-3 shards, ZeRO-2 is fsdp_reshard_after_forward false, ZeRO-0 is DDP;
        # the optimizers TrainingArguments.optim names (hf_trainer.HF_OPTIM).
        "pp": (1,), "vpp": (1,), "sp": (False,), "ep": (1,), "zero": (0, 2, 3),
        "offload": ("none", "optimizer+params"), "recompute": ("none", "full"),
        "precision": ("bf16", "fp16", "fp32", "bf16-pure", "bf16-autocast"), "quant": ("none", "int8", "nf4"),
        "optimizer": ("adamw", "adamw8bit", "sgd", "sgd-momentum", "adafactor"),
    },
    notes={"pp": "transformers models have no pipeline stages", "zero": "replicated (DDP) or fully sharded",
           "offload": "CPUOffloadPolicy moves parameters, gradients and optimizer together",
           "sp": "tensor parallelism through the model's tp_plan"},
    training=("pretrain", "full", "lora", "qlora"),
    partial_recompute=False,
    # no pipeline stages (values: pp 1).
    uneven_stages=False,
    sources=("accelerate/parallelism_config.py", "accelerate/utils/dataclasses.py (FullyShardedDataParallelPlugin)",
             "torch/distributed/fsdp/_fully_shard/_fully_shard.py", "torch/optim/adamw.py",
             "transformers/modeling_utils.py (gradient_checkpointing_enable)", "peft/tuners/lora/layer.py"),
    not_modelled=("HSDP (dp_replicate with dp_shard)",
                  "activation CPU offload", "torch.compile"),
    rules=_rules,
    rules_read=("zero", "dp", "cp", "tp", "quant", "precision"),
    files=("accelerate config (fsdp_version: 2)",),
)
