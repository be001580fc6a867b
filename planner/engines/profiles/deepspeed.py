"""DeepSpeed's ZeRO engine with Hugging Face modules, run by the HF Trainer, accelerate or a loop.

Launches: ZeRO stages 0-3 (deepspeed/runtime/zero/config.py), offload of the optimizer
(ZeRO-Offload) and of the parameters (ZeRO-Infinity, stage 3; offload_config.py); tensor
parallelism through AutoTP (`tensor_parallel.autotp_size`), DeepSpeed-Ulysses sequence parallelism
as context parallelism (`sequence_parallel_size`: heads split over the group, not with AutoTP),
expert parallelism through AutoEP (deepspeed/module_inject/auto_ep_folding.py: not with AutoTP);
recompute of every layer or none (HF gradient_checkpointing, deepspeed.checkpointing); bf16,
fp16, fp32 and bf16 under torch.autocast (`torch_autocast`); any optimizer the script builds.
No pipeline stages: DeepSpeed pipelines only models rewritten as PipelineModule
(deepspeed/runtime/pipe/module.py), which Hugging Face models are not; no Megatron sequence
parallelism; no selective recompute.

Traits: the Hugging Face modules' activations (the `deepspeed` kernel family: 16-bit modules), an
fp32 copy of the gradient partition for the optimizer step (stage_1_and_2.py
`single_partition_of_fp32_groups`, stage3.py `_prepare_fp32_grad_for_sub_group`), persistent
gradient partitions, fused Adam; ZeRO-3 gathers per module, each tensor its own collective
(stage3.py, partitioned_param_coordinator.py), twice the largest module held; offload copies the
reduced partitions into fp32 host gradients (`async_inplace_copy_grad_to_fp32_buffer_from_gpu`);
ZeRO-1/2 allocate their reduce buckets in backward with any number of data-parallel ranks
(stage_1_and_2.py, `reduce_bucket_size` buffers when contiguous_gradients).
"""
from __future__ import annotations

import json

from planner.cost.engine import EngineTraits
from planner.cost.plan import Plan
from planner.cost.workload import Workload
from planner.engines.profiles.base import EngineProfile

TRAITS = EngineTraits(
    name="deepspeed", kernels="deepspeed", fp32_parameters=False, fp32_grad_accumulation=False,
    fp32_gradient_copy=True, persistent_gradients=True, optimizer_step_copy=False, zero3_gather="modules",
    zero3_per_tensor=True, offload_gradients="host_fp32", zero_buckets_without_dp=True, transformers_modules=True,
)


def _rules(plan: Plan, workload: Workload) -> list[str]:
    p, heads = plan.parallel, workload.arch.attention.num_heads
    out = []
    if p.cp > 1 and p.tp > 1:
        out.append(f"sequence parallelism (cp={p.cp}) together with AutoTP (tp={p.tp})")
    if p.cp > 1 and heads % p.cp:
        out.append(f"DeepSpeed-Ulysses splits the {heads} heads over cp={p.cp}")
    if p.ep > 1 and p.tp > 1:
        # auto_ep_folding.py: expert_tensor_parallel_size must be 1; experts are folded over the TP
        # lanes, not split by tp as the planner models.
        out.append(f"AutoEP (ep={p.ep}) with AutoTP (tp={p.tp}) does not split experts by tp")
    return out


def _emit(plan: Plan, inputs) -> str:
    from planner.engines.deepspeed_emit import emit_deepspeed
    return json.dumps(emit_deepspeed(plan, inputs.workload), indent=2) + "\n"


def _read(path, inputs, **options):
    from planner.engines.deepspeed import parse_deepspeed
    return parse_deepspeed(path, inputs, **options)


PROFILE = EngineProfile(
    name="deepspeed",
    title="DeepSpeed",
    runs="DeepSpeed's ZeRO engine with Hugging Face modules (HF Trainer, accelerate or a plain loop)",
    traits=TRAITS,
    values={
        "pp": (1,), "vpp": (1,), "sp": (False,), "recompute": ("none", "full"),
        "precision": ("bf16", "fp16", "fp32", "bf16-autocast"),
    },
    notes={"pp": "pipeline stages need a PipelineModule, which Hugging Face models are not",
           "sp": "Megatron sequence parallelism; DeepSpeed-Ulysses is planned as cp",
           "recompute": "gradient checkpointing recomputes whole layers"},
    training=("pretrain", "full", "lora", "qlora"),
    partial_recompute=False,
    # no pipeline stages for Hugging Face models (values: pp 1).
    uneven_stages=False,
    sources=("deepspeed/runtime/zero/config.py", "deepspeed/runtime/zero/offload_config.py",
             "deepspeed/runtime/zero/stage_1_and_2.py", "deepspeed/runtime/zero/stage3.py",
             "deepspeed/runtime/pipe/module.py", "deepspeed/module_inject/auto_ep_folding.py"),
    not_modelled=("bucket sizes beyond the planner's buffers term (check warns)", "ZeRO++ quantized collectives",
                  "MiCS / hpZ secondary partitions"),
    rules=_rules,
    rules_read=("cp", "tp", "ep"),
    files=("ds_config.json",),
    emit=_emit,
    emit_file="ds_config.json",
    read=_read,
)
