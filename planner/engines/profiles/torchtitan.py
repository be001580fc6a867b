"""torchtitan: PyTorch-native pretraining (FSDP2, TP with sequence parallelism, PP schedules, CP,
EP, float8, torch.compile), run from its TOML or command-line configs.

Launches (torchtitan/config/configs.py, ParallelismConfig; torchtitan/distributed/):
data parallelism replicated (data_parallel_replicate_degree: DDP, ZeRO 0) or sharded
(data_parallel_shard_degree: FSDP2, ZeRO-3) with `enable_cpu_offload` (CPUOffloadPolicy);
tensor parallelism with sequence parallelism on or off (`enable_sequence_parallel`); pipeline
parallelism with its schedules (1F1B, interleaved with several stages per rank) and first/last
stages with fewer layers (`pipeline_parallel_first/last_stage_less_layers`); context and expert
parallelism; full activation checkpointing (distributed/activation_checkpoint.py `FullAC`); bf16
through FSDP2's MixedPrecisionPolicy or torch.autocast under DDP (`mixed_precision_param`), pure
bf16 (`training.dtype`), fp32, float8 linears (components/quantization/float8.py) and MX linears
(mxfp8, components/quantization/mx.py); Adam and AdamW (components/optimizer/optimizer.py); LoRA
adapters (components/lora.py), no quantized base weights.

Traits: eager PyTorch modules like Hugging Face's (the `hf` kernel family: RMSNorm, SwiGLU,
SDPA, the loss on fp32 logits), fp32 parameters as master weights, gradients allocated in
backward, fused AdamW (`implementation = "fused"`: no foreach temporaries), the model's output
dropped before backward (trainer.py `del pred`); FSDP2 keeps the
output layer unsharded after forward (distributed/fsdp.py) and prefetches one layer.
"""
from __future__ import annotations

from planner.cost.engine import EngineTraits
from planner.cost.plan import Plan
from planner.cost.workload import Workload
from planner.engines.profiles.base import EngineProfile
from planner.engines.torchtitan_models import model_shape

TRAITS = EngineTraits(
    name="torchtitan", kernels="hf", fp32_parameters=True, fp32_grad_accumulation=False, fp32_gradient_copy=False,
    persistent_gradients=False, optimizer_step_copy=False, zero3_gather="fsdp2", zero3_per_tensor=False,
    offload_gradients="with_params", output_freed_before_backward=True, step_collectives_per_run=True,
    pipeline_deferred_sync=True,
)



def _rules(plan: Plan, workload: Workload) -> list[str]:
    """Combinations torchtitan 0.2.2 refuses or runs otherwise than planned: distributed/parallel_dims.py
    and models/llama3/infra/parallelize.py (FSDP2 over dp_shard x cp whenever either exceeds 1, else
    DDP only as the one parallel dimension; TP always with sequence parallelism), distributed/utils.py
    `maybe_enable_amp` (no mixed precision under TP or PP without FSDP)."""
    problems = []
    p, fsdp = plan.parallel, plan.zero >= 2
    if p.sp != (p.tp > 1):
        problems.append(f"sp={str(p.sp).lower()} with tp={p.tp}: torchtitan's tensor parallelism always runs"
                        " sequence parallelism")
    if fsdp and p.dp * p.cp == 1:
        problems.append(f"zero={plan.zero} with dp=1 and cp=1: FSDP has no ranks to shard over")
    if not fsdp and (p.cp > 1 or p.ep > 1):
        problems.append("context or expert parallelism without FSDP (torchtitan shards over cp, and over the"
                        " experts' data-parallel ranks, with FSDP)")
    if not fsdp and p.dp > 1 and p.world != p.dp:
        problems.append(f"DDP (zero=0, dp={p.dp}) with other parallelism: torchtitan runs DDP only alone")
    if not fsdp and (p.tp > 1 or p.pp > 1) and plan.precision in ("bf16", "fp8", "mxfp8"):
        problems.append(f"{plan.precision} mixed precision with tp or pp but no FSDP: torchtitan then trains in fp32")
    if workload.seq_len % (2 * p.tp * p.cp):
        problems.append(f"seq_len {workload.seq_len} is not a multiple of 2 x tp x cp = {2 * p.tp * p.cp}"
                        " (ParallelDims.seq_len_divisor)")
    return problems


def _unbuildable(workload: Workload) -> str | None:
    return model_shape(workload.arch)[1]


PROFILE = EngineProfile(
    name="torchtitan",
    title="torchtitan",
    runs="torchtitan (PyTorch-native FSDP2, TP, PP, CP, EP), launched with torchrun and a TOML config",
    traits=TRAITS,
    values={
        # FSDP2 shards (ZeRO-3), or keeps parameters gathered after forward (ZeRO-2,
        # fsdp_reshard_after_forward), DDP is ZeRO-0 (torchtitan/distributed/fsdp.py).
        "zero": (0, 2, 3), "offload": ("none", "optimizer+params"), "recompute": ("none", "full"),
        "precision": ("bf16", "bf16-pure", "fp32", "fp8", "mxfp8"), "optimizer": ("adamw", "adam"),
        "lora_rank": (0,),
        "quant": ("none",),
    },
    notes={"zero": "replicated (DDP) or fully sharded (FSDP2); FSDP with pipeline stages keeps a stage's"
                   " parameters gathered from forward to backward, which the planner does not model",
           "recompute": "selective (per-op) checkpointing saves other tensors than Megatron's and is not modelled",
           "quant": "LoRA adapters on unquantized weights"},
    training=("pretrain", "full"),
    partial_recompute=False,
    # module_fqns_per_model_part names each stage's modules (torchtitan/config/configs.py
    # ParallelismConfig; torchtitan/distributed/pipeline_parallel.py pipeline_module_split).
    uneven_stages=True,
    sources=("torchtitan/config/configs.py", "torchtitan/distributed/fsdp.py",
             "torchtitan/distributed/activation_checkpoint.py", "torchtitan/components/optimizer/optimizer.py",
             "torchtitan/components/lora.py", "torchtitan/components/quantization/float8.py"),
    not_modelled=("HSDP (replicate and shard degrees together)", "FSDP with pipeline parallelism",
                  "selective (per-op) and memory-budget activation checkpointing", "torch.compile",
                  "float8 all-gathers"),
    rules=_rules,
    rules_read=("sp", "tp", "pp", "dp", "cp", "ep", "zero", "precision"),
    unbuildable=_unbuildable,
    files=("a torchtitan TOML config",),
)
