"""Per-GPU memory of a training plan, per pipeline stage, each term separate.

Model states follow the ZeRO paper (Rajbhandari et al. 2019, arXiv 1910.02054, §3 and §5);
activations follow Korthikanti et al. 2022 (arXiv 2205.05198, §4 and Table 2), re-derived per
saved tensor for modern layers (SwiGLU, GQA, RMSNorm, flash attention, MoE, MLA); the pipeline's
in-flight micro-batches follow Megatron-LM's schedules (megatron/core/pipeline_parallel/schedules.py).

What a step keeps depends on the engine that runs it (`Workload.engine`, planner/cost/engine.py),
whose kernels fall in one of three families (`EngineTraits.kernels`):
  megatron   Megatron-Core / Transformer Engine: fused norms and cross entropy, 16-bit parameters
             with fp32 main weights in the optimizer, a persistent gradient buffer, fused Adam.
  hf         Hugging Face transformers modules trained by PyTorch (Trainer, accelerate, plain
             loops): eager RMSNorm and SwiGLU, SDPA, torch.autocast under DDP or FSDP2's
             MixedPrecisionPolicy, gradients allocated in backward (zero_grad(set_to_none=True)),
             foreach AdamW. Measured with PyTorch's MemTracker in validation/memory/.
  deepspeed  the same Hugging Face modules on DeepSpeed's engine: 16-bit modules, ZeRO partitions
             with an fp32 gradient copy for the optimizer step, fused Adam.
The peak is the largest of the step's phases (end of forward, start of backward, backward through
the layers, optimizer step); `StageMemory.phase` names it and `StageMemory.detail` itemizes it.
"""
from planner.cost.memory.activations import (
                                        inflight_microbatches,
                                        layer_activation_bytes_per_token,
)
from planner.cost.memory.estimate import MemoryBreakdown, StageMemory, estimate_memory
from planner.cost.memory.kernels import Kernels, kernels
from planner.cost.memory.runtime import (
                                        CUDA_CONTEXT_BYTES,
                                        DDP_BUCKET_BYTES,
                                        largest_module_params,
                                        runtime_bytes,
)
from planner.cost.memory.states import (
                                        MIXED,
                                        PRECISION_STATE_BYTES,
                                        QUANT_WEIGHT_BYTES,
                                        optimizer_state_bytes,
                                        state_bytes,
                                        workload_state_bytes,
)

__all__ = ["CUDA_CONTEXT_BYTES", "DDP_BUCKET_BYTES", "Kernels", "MIXED",
           "MemoryBreakdown", "PRECISION_STATE_BYTES", "QUANT_WEIGHT_BYTES", "StageMemory", "estimate_memory",
           "inflight_microbatches", "kernels", "largest_module_params", "layer_activation_bytes_per_token",
           "optimizer_state_bytes", "runtime_bytes", "state_bytes", "workload_state_bytes"]
