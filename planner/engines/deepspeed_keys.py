"""What each DeepSpeed config key means to the planner: read into the plan, no effect on its
estimates, or not modelled (with what it does); and the bucket memory the ZeRO settings imply.

Keys as DeepSpeed 0.19 defines them: deepspeed/runtime/config.py and constants.py (top level),
deepspeed/runtime/zero/config.py (`DeepSpeedZeroConfig`), zero/offload_config.py,
precision_config.py, activation_checkpointing/config.py, tensor_parallel/config.py and
module_inject/auto_ep_config.py.
"""
from __future__ import annotations

# Top-level keys read into the plan by deepspeed.py.
TOP_READ = frozenset("""
train_batch_size train_micro_batch_size_per_gpu gradient_accumulation_steps zero_optimization bf16 bfloat16 fp16
torch_autocast optimizer activation_checkpointing tensor_parallel expert_parallel sequence_parallel_size
sequence_parallel data_parallel_size
""".split())

# Keys that change nothing the planner estimates: schedules, clipping, logging, monitoring,
# checkpoint files, loss scaling, optimizer hyperparameters.
TOP_NO_EFFECT = frozenset("""
scheduler gradient_clipping steps_per_print wall_clock_breakdown dump_state prescale_gradients
gradient_predivide_factor flops_profiler tensorboard wandb csv_monitor comet comms_logger checkpoint
zero_allow_untested_optimizer zero_force_ds_cpu_optimizer memory_breakdown dataloader_drop_last timers
disable_allgather log_level gradient_allreduce_op seq_parallel_communication_data_type
use_data_before_expert_parallel_ managed_gradient_accumulation disable_python_gc
""".split())

TOP_NOT_MODELLED = {
    "communication_data_type": "sets the dtype of gradient all-reduce; the planner counts 16-bit gradients",
    "data_types": "grad_accum_dtype / param_dtype change gradient or weight bytes; the planner uses the"
                  " precision's (2-byte gradients for bf16/fp16)",
    "pipeline": "DeepSpeed pipeline stages are set in code (PipelineModule(num_stages=...)); planned with pp=1",
    "compile": "DeepCompile reorders memory use; not modelled",
    "hybrid_engine": "the RLHF hybrid engine keeps inference buffers; not modelled",
    "weight_quantization": "quantized weights; the planner counts the precision's weight bytes",
    "autotuning": "the autotuner picks micro-batch and ZeRO stage at launch; planned with the values written",
    "aio": "NVMe offload I/O; the planner counts offloaded bytes as host memory",
}

# Removed in DeepSpeed 0.19 (`_REMOVED_TOP_LEVEL_CONFIG_KEYS`): DeepSpeedConfig rejects them.
TOP_REMOVED = frozenset("""
nebula compression_training amp quantize_training sparse_gradients eigenvalue sparse_attention elasticity
graph_harvesting curriculum_learning progressive_layer_drop
""".split())

ZERO_READ = frozenset("""
stage offload_optimizer offload_param cpu_offload cpu_offload_param cpu_offload_use_pin_memory reduce_bucket_size
allgather_bucket_size overlap_comm stage3_prefetch_bucket_size prefetch_bucket_size stage3_max_live_parameters
max_live_parameters
""".split())

ZERO_NO_EFFECT = frozenset("""
contiguous_gradients reduce_scatter allgather_partitions load_from_fp32_weights elastic_checkpoint
ignore_unused_parameters round_robin_gradients stage3_gather_16bit_weights_on_model_save
gather_16bit_weights_on_model_save stage3_gather_fp16_weights_on_model_save use_multi_rank_bucket_allreduce
stage3_max_reuse_distance max_reuse_distance stage3_param_persistence_threshold param_persistence_threshold
stage3_model_persistence_threshold model_persistence_threshold sub_group_size memory_efficient_linear
override_module_apply log_trace_cache_warnings enable_sanity_checks leaf_module pipeline_loading_checkpoint
legacy_stage1 compute_grad_norm stage3_module_granularity_threshold module_granularity_threshold
stage3_use_all_reduce_for_fetch_params use_all_reduce_for_fetch_params stage3_allgather_sequential
allgather_sequential save_muon_momentum_buffer_in_memory parameter_alignment
""".split())

ZERO_NOT_MODELLED = {
    "zero_hpz_partition_size": "ZeRO++ hpZ keeps a second copy of the weights sharded within a node (more memory)",
    "zero_quantized_weights": "ZeRO++ quantized weight all-gather (less communication)",
    "zero_quantized_gradients": "ZeRO++ quantized gradient reduction (less communication)",
    "zero_quantized_nontrainable_weights": "keeps frozen weights quantized; the planner uses the job's quant",
    "zenflow": "ZenFlow updates part of the optimizer state on the GPU; not modelled",
}

OFFLOAD_KEYS = frozenset("""
device nvme_path buffer_count buffer_size max_in_cpu pin_memory pipeline_read pipeline_write fast_init ratio
super_offload cpuadam_cores_perc pipeline
""".split())

SECTION_KEYS = {
    "bf16": ({"enabled", "immediate_grad_update", "check_grad_overflow", "bf16_master_weights_and_grads",
              "bf16_optimizer_states"}, {}),
    "fp16": ({"enabled", "loss_scale", "initial_scale_power", "loss_scale_window", "hysteresis",
              "consecutive_hysteresis", "min_loss_scale"},
             {"fp16_master_weights_and_grads": "keeps master weights and gradients in fp16; counted in fp32",
              "auto_cast": "casts inputs to fp16; not modelled"}),
    "torch_autocast": ({"enabled", "dtype", "lower_precision_safe_modules"}, {}),
    "optimizer": ({"type", "params", "legacy_fusion"}, {}),
    "activation_checkpointing": ({"contiguous_memory_optimization", "number_checkpoints",
                                  "synchronize_checkpoint_boundary", "profile", "partition_activations",
                                  "cpu_checkpointing"}, {}),
    "tensor_parallel": ({"autotp_size", "tp_overlap_comm", "dtype", "vocab_parallel_ce_backend",
                         "vocab_parallel_lm_head", "preset_model", "partition_config"}, {}),
}

# DeepSpeed optimizer types (lower case, as DeepSpeedConfig compares them) -> planner optimizer,
# with what differs from the planner's model of it.
OPTIMIZERS: dict[str, tuple[str, str | None]] = {
    "adam": ("adam", None), "adamw": ("adamw", None), "fusedadam": ("adam", None),
    "muadam": ("adam", None), "muadamw": ("adamw", None),
    "lamb": ("adamw", "LAMB keeps Adam's two moments; counted as AdamW"),
    "onebitlamb": ("adamw", "1-bit LAMB adds error-feedback buffers, not counted"),
    "onebitadam": ("adam", "1-bit Adam adds error-feedback buffers, not counted"),
    "zerooneadam": ("adam", "0/1 Adam adds error-feedback buffers, not counted"),
    "adagrad": ("sgd-momentum", "Adagrad keeps one state per parameter; counted like SGD with momentum"),
    "lion": ("sgd-momentum", "Lion keeps one momentum per parameter; counted like SGD with momentum"),
}
ZERO_ALIASES = {field: f"stage3_{field}" for field in (
    "prefetch_bucket_size", "param_persistence_threshold", "model_persistence_threshold", "max_live_parameters",
    "max_reuse_distance", "gather_16bit_weights_on_model_save", "module_granularity_threshold",
    "use_all_reduce_for_fetch_params", "allgather_sequential")}
"""DeepSpeedZeroConfig fields and the `stage3_` aliases it also accepts (deepspeed/runtime/zero/config.py
`Field(..., alias="stage3_...")`; the model populates by name as well)."""
HF_AUTO_ZERO = {"reduce_bucket_size", "stage3_prefetch_bucket_size", "stage3_param_persistence_threshold"}
"""ZeRO keys the HF Trainer fills from the model when "auto" (trainer_config_finalize)."""

# deepspeed/runtime/zero/config.py defaults (elements)
REDUCE_BUCKET_DEFAULT = 500_000_000
ALLGATHER_BUCKET_DEFAULT = 500_000_000
PREFETCH_BUCKET_DEFAULT = 50_000_000
MAX_LIVE_DEFAULT = 1_000_000_000
OVERLAP_FACTOR = 4.5
"""DeepSpeed docs (config-json, overlap_comm): overlapping uses 4.5x the allgather and reduce
bucket sizes, "5e8 x 2 bytes x 2 x 4.5 = 9 GB"."""
BUCKET_ELEMENT_BYTES = 2  # 16-bit gradients and parameters in the buckets


def bucket_bytes(stage: int, reduce: int, allgather: int, overlap: bool, max_live: int, params_per_gpu: float) -> int:
    """Bytes of ZeRO communication buckets on one GPU, apart from the gradients themselves.

    Stages 1-2: the reduce and all-gather buckets, 4.5x with overlap_comm (DeepSpeed docs).
    Stage 3: gathered 16-bit parameters up to stage3_max_live_parameters (at most the GPU's share
    of the model) plus the reduce bucket.
    """
    if stage == 3:
        return int(BUCKET_ELEMENT_BYTES * (min(max_live, params_per_gpu) + reduce))
    factor = OVERLAP_FACTOR if overlap else 1.0
    return int(factor * BUCKET_ELEMENT_BYTES * (reduce + allgather))
