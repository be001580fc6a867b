"""Plans into DeepSpeed configs: what DeepSpeed cannot launch, and the ds_config.json of a plan it can."""
from __future__ import annotations

from planner.cost.memory import DDP_BUCKET_BYTES
from planner.cost.plan import Plan
from planner.cost.workload import Workload
from planner.engines import UnsupportedPlan, framework_problems
from planner.engines import deepspeed_keys as K
from planner.model.params import layer_params


def deepspeed_problems(plan: Plan, workload: Workload) -> list[str]:
    """Why DeepSpeed cannot run this plan as the planner models it (empty when it can)."""
    problems = framework_problems("deepspeed", plan)
    p, heads = plan.parallel, workload.arch.attention.num_heads
    if p.cp > 1 and p.tp > 1:
        problems.append(f"sequence parallelism (cp={p.cp}) together with AutoTP (tp={p.tp})")
    if p.cp > 1 and heads % p.cp:
        problems.append(f"DeepSpeed-Ulysses splits the {heads} heads over cp={p.cp}")
    if p.ep > 1 and p.tp > 1:
        # deepspeed/module_inject/auto_ep_folding.py: expert_tensor_parallel_size must be 1; experts
        # are folded over the TP lanes, not split by tp as the planner models.
        problems.append(f"AutoEP (ep={p.ep}) with AutoTP (tp={p.tp}) does not split experts by tp")
    return problems


def emit_deepspeed(plan: Plan, workload: Workload) -> dict:
    """A DeepSpeed config running `plan` (pp == 1; tensor parallelism through AutoTP)."""
    problems = deepspeed_problems(plan, workload)
    p = plan.parallel
    if problems:
        raise UnsupportedPlan("DeepSpeed cannot run this plan: " + "; ".join(problems))
    config: dict = {
        "train_batch_size": plan.global_batch,
        "train_micro_batch_size_per_gpu": plan.mbs,
        "gradient_accumulation_steps": plan.gas,
        "zero_optimization": _zero_section(plan, workload),
    }
    if plan.precision == "bf16":
        config["bf16"] = {"enabled": True}
    elif plan.precision == "fp16":
        config["fp16"] = {"enabled": True, "loss_scale": 0, "initial_scale_power": 16}
    elif plan.precision == "bf16-autocast":
        config["torch_autocast"] = {"enabled": True, "dtype": "bfloat16"}
    optimizer = {"adamw": {"type": "AdamW"}, "adam": {"type": "Adam"},
                 "sgd": {"type": "SGD", "params": {"momentum": 0.0}},
                 "sgd-momentum": {"type": "SGD", "params": {"momentum": 0.9}}}.get(plan.optimizer)
    if optimizer:  # adamw8bit, adafactor: built by the training script (HF --optim)
        config["optimizer"] = optimizer
    if plan.recompute == "full":
        # Configures deepspeed.checkpointing; the model must checkpoint its layers
        # (HF --gradient_checkpointing, Megatron-DeepSpeed --checkpoint-activations).
        config["activation_checkpointing"] = {"partition_activations": False, "cpu_checkpointing": False,
                                              "contiguous_memory_optimization": False,
                                              "synchronize_checkpoint_boundary": False}
    if p.tp > 1:
        config["tensor_parallel"] = {"autotp_size": p.tp}
    if p.ep > 1:
        config["expert_parallel"] = {"enabled": True, "autoep_size": p.ep}
    if p.cp > 1:
        config["sequence_parallel_size"] = p.cp
        config["data_parallel_size"] = p.dp
    return config


def _zero_section(plan: Plan, workload: Workload) -> dict:
    """ZeRO settings whose buckets fit the planner's buffers term (memory.py): for stages 1-2
    the reduce and all-gather buckets within PyTorch DDP's 2 x 25 MiB; for stage 3 at most the
    two layers the planner counts as gathered."""
    zero: dict = {"stage": plan.zero}
    if plan.zero == 0:
        return zero
    bucket = int(DDP_BUCKET_BYTES / (K.OVERLAP_FACTOR * K.BUCKET_ELEMENT_BYTES * 2))
    zero.update({"overlap_comm": True, "contiguous_gradients": True})
    if plan.zero < 3:
        zero.update({"reduce_bucket_size": bucket, "allgather_bucket_size": bucket})
    else:
        arch, p = workload.arch, plan.parallel
        layer = max(layer_params(arch, i).total for i in range(arch.num_layers))
        layer = max(1, layer // (p.tp * (p.ep if arch.moe else 1)))
        reduce = min(bucket, layer)
        zero.update({"reduce_bucket_size": reduce, "stage3_prefetch_bucket_size": layer,
                     "stage3_max_live_parameters": 2 * layer - reduce})
    if plan.offload != "none":
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if plan.offload == "optimizer+params":
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return zero
