"""Megatron-Core, as Megatron-LM, NeMo and Megatron-Bridge run it.

Launches: TP with sequence parallelism, PP with interleaving (virtual stages) and uneven first and
last stages (--decoder-first/last-pipeline-num-layers), CP, EP; the distributed optimizer
(megatron/core/optimizer/distrib_optimizer.py: optimizer states and main weights sharded over the
data-parallel group, ZeRO-1), its CPU offload (--optimizer-cpu-offload, HybridDeviceOptimizer);
recompute none, selective (core attention) or full, also of the first layers of each stage only
(--recompute-method block --recompute-num-layers); bf16, fp16, fp8, mxfp8 and nvfp4 (Transformer
Engine, --fp8-recipe mxfp8 and --fp4-format e2m1 --fp4-recipe nvfp4 on Blackwell), fp32;
Adam/AdamW and SGD (megatron/core/optimizer/__init__.py). No LoRA: Megatron-LM trains every
weight. Megatron-FSDP (--use-megatron-fsdp with --data-parallel-sharding-strategy, ZeRO-2/3) and
--use-torch-fsdp2 are read by `check`; the search plans the distributed optimizer, which is what
the Megatron-LM emitter writes.

Traits: Transformer Engine's fused norms and cross entropy (the `megatron` kernel family); bf16
gradients accumulate and reduce in fp32 (main_grad in megatron/core/distributed/
param_and_grad_buffer.py), a persistent gradient buffer, fused Adam (no foreach temporaries);
FSDP gathers one flat buffer per layer and prefetches the next.
"""
from __future__ import annotations

from planner.cost.engine import EngineTraits
from planner.cost.plan import Plan
from planner.cost.shard import stage_layer_counts
from planner.cost.workload import Workload
from planner.engines.profiles.base import EngineProfile

TRAITS = EngineTraits(
    name="megatron", kernels="megatron", fp32_parameters=False, fp32_grad_accumulation=True,
    fp32_gradient_copy=False, persistent_gradients=True, optimizer_step_copy=False, zero3_gather="layers",
    zero3_per_tensor=False, offload_gradients="none",
)


def _rules(plan: Plan, workload: Workload) -> list[str]:
    # megatron/training/arguments.py validate_args: MoE with TP requires sequence parallelism.
    if plan.parallel.ep > 1 and plan.parallel.tp > 1 and not plan.parallel.sp:
        return ["expert and tensor parallelism without sequence parallelism (validate_args requires sp)"]
    return []


def _unbuildable(workload: Workload) -> str | None:
    from planner.engines.megatron_models import unbuildable
    return unbuildable(workload.arch, workload.layer_windows, workload.seq_len)


def _launch(plan: Plan, num_layers: int) -> Plan:
    """Megatron-LM's --recompute-num-layers is one count, applied to each of a stage's vpp model
    chunks (megatron/core/transformer/transformer_block.py `_checkpointed_forward`, method block):
    per-stage counts become the largest, rounded up to whole chunks, on every stage."""
    if plan.recompute != "full" or plan.recompute_layers is None:
        return plan
    counts = plan.layer_partition(num_layers) or stage_layer_counts(num_layers, plan.parallel.pp)
    vpp = plan.parallel.vpp
    per_chunk = -(-max(plan.recomputed_layers(i, n) for i, n in enumerate(counts)) // vpp)
    recomputed = tuple(min(n, per_chunk * vpp) for n in counts)
    if recomputed == counts:
        return plan.with_(recompute_layers=None)
    return plan.with_(recompute_layers=recomputed)


def _emit(plan: Plan, inputs) -> str:
    from planner.engines.megatron_emit import emit_megatron
    return emit_megatron(plan, inputs.workload, inputs.workload.arch)


def _read(path, inputs, **_options):
    from planner.engines.megatron import parse_megatron
    return parse_megatron(path, inputs)[1]


PROFILE = EngineProfile(
    name="megatron",
    title="Megatron-Core",
    runs="Megatron-LM, NeMo or Megatron-Bridge (pretrain_gpt.py and the recipes built on Megatron-Core)",
    traits=TRAITS,
    values={
        "zero": (0, 1), "offload": ("none", "optimizer"), "lora_rank": (0,), "quant": ("none",),
        "precision": ("bf16", "fp16", "fp8", "mxfp8", "nvfp4", "fp32"),
        "optimizer": ("adamw", "adam", "sgd", "sgd-momentum"),
    },
    notes={"zero": "the distributed optimizer is ZeRO-1", "lora_rank": "Megatron-LM trains every weight",
           "offload": "--optimizer-cpu-offload moves the optimizer only"},
    training=("pretrain", "full"),
    partial_recompute=True,
    # --recompute-method block --recompute-num-layers N: N layers of each model chunk
    # (megatron/core/transformer/transformer_block.py `_checkpointed_forward`).
    one_recompute_count=True,
    # --decoder-first/last-pipeline-num-layers (megatron/training/arguments.py; the middle stages
    # share the rest: megatron/core/transformer/transformer_block.py get_num_layers_to_build).
    uneven_stages=True,
    sources=("megatron/core/optimizer/distrib_optimizer.py", "megatron/core/optimizer/__init__.py",
             "megatron/core/distributed/param_and_grad_buffer.py", "megatron/training/arguments.py"),
    not_modelled=("Megatron-FSDP and --use-torch-fsdp2 are read, not searched",
                  "dropout (the planner's activations have none)", "MTP layers' activations"),
    rules=_rules,
    rules_read=("ep", "tp", "sp"),
    unbuildable=_unbuildable,
    files=("megatron_args.sh", "a Megatron-LM launch script"),
    launch=_launch,
    emit=_emit,
    emit_file="megatron_args.sh",
    read=_read,
)
