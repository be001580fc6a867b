"""What the cost models need to know about the engine that runs a step.

An engine (Megatron-Core, DeepSpeed, FSDP2 with Hugging Face modules, torchtitan) changes what a
step keeps in memory and how its collectives run, not what the model is. The models read these
traits and never an engine's name; the engine profiles (planner/engines/profiles/) instantiate
them, each trait with its source there. The defaults are Megatron-Core's, the stack the models
were first written for (tests/test_engines.py holds the megatron profile equal to them).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from planner.model.architecture import Architecture
from planner.model.frozen import hash_once

if TYPE_CHECKING:
    from planner.cost.plan import Plan

KernelFamily = Literal["megatron", "hf", "deepspeed"]
KERNEL_FAMILIES: tuple[KernelFamily, ...] = ("megatron", "hf", "deepspeed")
MoeDispatch = Literal["deduplicated", "alltoall"]


@hash_once
@dataclass(frozen=True)
class EngineTraits:
    """The memory and time behaviour of one engine (see the module docstring)."""

    name: str = "megatron"
    """The engine these traits describe (the plan key `framework`)."""
    kernels: KernelFamily = "megatron"
    """What the layers save for backward (memory/activations.py, memory/kernels.py): `megatron`
    (Transformer Engine fused norms, fused cross entropy), `hf` (eager PyTorch modules with
    torch-native mixed precision: torch.autocast under DDP, FSDP2's MixedPrecisionPolicy under
    ZeRO-3) or `deepspeed` (the same modules cast to 16 bits by DeepSpeed's engine)."""
    fp32_parameters: bool = False
    """Mixed precision keeps fp32 parameters, which are the master weights (torch.autocast,
    FSDP2 MixedPrecisionPolicy): 4 + 4 bytes per trainable parameter, no separate master copy."""
    fp32_grad_accumulation: bool = True
    """bf16 parameters accumulate and reduce their gradients in fp32 (Megatron's main_grad)."""
    fp32_gradient_copy: bool = False
    """The optimizer steps on an fp32 copy of the gradient partition (DeepSpeed's ZeRO optimizers)."""
    persistent_gradients: bool = True
    """Gradient buffers live for the whole step; False: they appear in backward
    (zero_grad(set_to_none=True)), so the peak is one of several phases (memory/phases.py)."""
    optimizer_step_copy: bool = False
    """The optimizer step allocates one more copy of the local parameters (foreach AdamW's
    torch._foreach_sqrt of the second moments); fused optimizers do not."""
    zero3_gather: Literal["layers", "fsdp2", "modules"] = "layers"
    """What ZeRO-3 holds gathered: two layers (Megatron), FSDP2's unsharded root parameters and
    two layers, or twice DeepSpeed's largest module."""
    zero3_per_tensor: bool = False
    """ZeRO-3 gathers and reduces each parameter tensor on its own (DeepSpeed), not one flat
    buffer per layer."""
    offload_gradients: Literal["none", "host_fp32", "with_params"] = "none"
    """What CPU offload does with gradients: `none` (they stay on the GPU), `host_fp32` (reduced
    partitions are copied straight into fp32 host gradients: no 16-bit partition under ZeRO-2/3,
    DeepSpeed) or `with_params` (they move with the parameters when those are offloaded, FSDP2)."""
    zero_buckets_without_dp: bool = False
    """ZeRO-1/2 allocate their gradient buckets even with one data-parallel rank (DeepSpeed:
    stage_1_and_2.py allocates reduce_bucket_size buffers in backward whatever the group's size);
    False: buckets only where gradients are reduced across data-parallel ranks (DDP, Megatron)."""
    release: str | None = None
    """A past release whose behaviour the time model charges instead of the current one's: `0.3`
    for DeepSpeed before 0.4, whose ZeRO-3 gathered every tensor on its own behind a device-wide
    synchronize (the 2021 runs of validation/data/runs.yaml). None: the current release."""
    moe_dispatch: MoeDispatch = "alltoall"
    """How expert-parallel all-to-alls carry a token across scale-up domains (comm.ep_traffic).
    `deduplicated`: once to each remote domain holding any of its experts, then forwarded over
    the scale-up fabric (DeepEP, HybridEP: Megatron-Core's flex dispatcher, NeMo AutoModel's
    DeepEP; DeepSeek-V3 arXiv 2412.19437 §3.2.2). `alltoall`: one copy per selected expert on
    its rank, over the network when that rank is remote (Megatron-Core's
    MoEAlltoAllTokenDispatcher: torch.distributed.all_to_all_single over the EP group,
    megatron/core/transformer/moe/token_dispatcher.py). The default is `alltoall`: what the
    planner's Megatron-LM launch names (`--moe-token-dispatcher-type alltoall`, which needs no
    DeepEP build) and torchtitan's expert parallelism runs (all_to_all_single)."""
    ep_overlap: bool = False
    """Each micro-batch's expert all-to-alls run under another micro-batch's compute: Megatron-Core's
    combined 1F1B (`overlap_moe_expert_parallel_comm`, megatron/core/pipeline_parallel/
    combined_1f1b.py) runs one micro-batch's forward and another's backward layer by layer
    together, as DualPipe pairs its chunks (DeepSeek-V3 arXiv 2412.19437 §3.2.1)."""
    transformers_modules: bool = False
    """The layers are transformers' own modeling code (FSDP2 through accelerate, DeepSpeed through
    the Trainer), whose norms and routers differ by model_type as the memory model reads them
    (memory/activations.py FP32_NORM_OUTPUT, MEAN_SUBTRACTING_NORM, FP32_ROUTER). False: the
    engine's own model code (Megatron-Core; torchtitan's Llama, Qwen3 and DeepSeek-V3; NeMo
    AutoModel's)."""
    fused_rope: bool = False
    """Eager (`hf`) modules whose rotary embedding runs as one fused kernel (Transformer Engine's
    fused RoPE): NeMo AutoModel's own model code with `BackendConfig.rope_fusion`, on by default
    where Transformer Engine is installed (nemo_automodel components/models/common/utils.py)."""
    fused_norm: bool = False
    """Eager (`hf`) modules whose RMSNorms run as one fused kernel: NeMo AutoModel's default
    `rms_norm: torch_fp32` is a torch.compile'd fp32 RMSNorm (nemo_automodel components/models/
    common/utils.py `Float32RMSNorm`), one read and one write per element each way; as one
    custom op it saves only its input for backward (memory/activations.py `norm_bytes`)."""
    fused_moe_activation: bool = False
    """Eager (`hf`) MoE layers whose routed experts run SwiGLU and the routing-weight product as
    one fused kernel: NeMo AutoModel's DeepEP experts call Megatron-Core's
    `weighted_bias_swiglu_impl` (nemo_automodel components/moe/experts.py
    `get_expert_activation_for_deepep`); the other activations there are `torch.compile`d functions
    that multiply the fp32 routing weight in before casting back (`quick_geglu_deepep`, gpt-oss's
    clamped GEGLU). The memory model reads it as those DeepEP experts' saved tensors
    (memory/activations.py `_deepep_routed_bytes`): no expert output kept for the routing weight's
    gradient, and every activation keeps only its input. The time model charges the compiled
    ones as the eager operators they are written as (timing/elementwise.py), an upper bound."""
    output_freed_before_backward: bool = False
    """Eager (`hf`) training loops that drop their reference to the model's output (the 16-bit
    logits) before backward, so only what the loss saved stays: the fp32 log-softmax of the
    upcast logits. torchtitan (trainer.py `_forward_backward_body`: `del pred` before
    `loss.backward()`, the loss upcasting in components/loss.py `cross_entropy_loss`) and NeMo
    AutoModel (nemo_automodel 0.7 recipes/llm/train_ft.py: `del out` before backward, "so unused
    full-vocabulary logits do not overlap its allocations"). False: the logits stay referenced
    through backward (transformers' Trainer returns them with the loss)."""
    step_collectives_per_run: bool = False
    """The data-parallel collectives a step runs once (gradient reduction behind the last backward,
    the sharded parameters' gather before the next forward) run once per pipeline run
    (`Plan.pipeline_runs`): torch.distributed.pipelining syncs gradients and reshards on the last
    backward of each schedule `step()` (stage.py `backward_maybe_with_nosync(last_backward=...)`,
    schedules.py), as torchtitan calls it. False: once per optimizer step (Megatron-Core,
    DeepSpeed; NeMo AutoModel patches the stage's backward to sync only before the optimizer
    step, nemo_automodel components/moe/fsdp_mixin.py)."""
    pipeline_deferred_sync: bool = False
    """Under pipeline parallelism, FSDP reduce-scatters the gradients and reshards the parameters
    only after a run's last backward: torch.distributed.pipelining runs every backward with
    `requires_gradient_sync` and `reshard_after_backward` off (stage.py `backward_maybe_with_nosync`)
    and post_backward once (`perform_reduce_grad`, the schedule's REDUCE_GRAD). Meanwhile the
    gradients accumulate unsharded in the reduce dtype (FSDPParam `to_accumulated_grad_if_needed`)
    and the gathered parameters stay. torchtitan; NeMo AutoModel patches its stages the same way
    (nemo_automodel components/moe/fsdp_mixin.py `patched_backward_maybe_with_nosync`)."""
    reshard_after_forward: bool = True
    """FSDP2 (`zero3_gather` fsdp2) frees each layer's gathered parameters after its forward and
    gathers them again for backward. False: every layer's parameters stay gathered from its
    forward to its backward, the dense ones of all layers at once at the start of backward (and
    the experts' where the experts are FSDP-sharded too): NeMo AutoModel's MoE models
    (nemo_automodel 0.7 components/distributed/config.py `MoEParallelizerConfig.reshard_after_forward
    = False`, passed to every block's `fully_shard` in components/moe/parallelizer.py)."""


DENSE_EXPERT_FAMILIES = frozenset({"llama4_text"})
"""Families whose transformers MoE block runs every routed expert on every token, each token's
input scaled by its routing score (0 where the router did not choose it): Llama 4
(transformers 5.25 modeling_llama4.py `Llama4TextMoe.forward`: `hidden_states.repeat(num_experts,
1) * router_scores`, then one bmm over all experts in `Llama4TextExperts`)."""


def expert_passes(arch: Architecture, transformers_modules: bool) -> int:
    """Routed expert MLPs each token goes through in an MoE layer: its top_k, or every expert
    where the engine runs transformers' modules of a DENSE_EXPERT_FAMILIES model. Model FLOPs
    (MFU) count top_k either way; the GPU's work and memory count these passes."""
    if transformers_modules and arch.family in DENSE_EXPERT_FAMILIES:
        return arch.moe.num_experts
    return arch.moe.top_k


def deferred_sync(plan: Plan, engine: EngineTraits) -> bool:
    """The plan's FSDP (ZeRO-2/3) gradients and gathers wait for the end of each pipeline run
    (EngineTraits.pipeline_deferred_sync)."""
    return engine.pipeline_deferred_sync and plan.parallel.pp > 1 and plan.zero >= 2
