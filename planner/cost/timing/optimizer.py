"""The optimizer step and CPU offload: parameters updated per GPU, HBM-bound step, host transfers."""
from __future__ import annotations

from planner.cost import calibration as cal
from planner.cost.cluster import Cluster
from planner.cost.memory import PRECISION_STATE_BYTES, QUANT_WEIGHT_BYTES
from planner.cost.partial import partial_trainable
from planner.cost.plan import Plan
from planner.cost.shard import StageShard
from planner.cost.workload import Workload
from planner.model.params import lora_params


def stage_params(plan: Plan, workload: Workload, shard: StageShard) -> tuple[float, float, float, float]:
    """(dense trainable, expert trainable, dense gathered bytes, expert gathered bytes) of a GPU.

    Gathered bytes are what ZeRO all-gathers: the trainable weights for ZeRO-1/2, every held
    weight for ZeRO-3 (frozen LoRA bases at their quantized size).
    """
    # --fp8-param-gather: the distributed optimizer gathers fp8 weights, one byte each.
    weight_b = 1 if plan.fp8_param_gather else PRECISION_STATE_BYTES[plan.precision][0]
    if workload.partial is not None:
        dense, expert = partial_trainable(plan, workload.arch, shard, workload.partial)
        held = (shard.dense + shard.expert) * weight_b
        return dense, expert, held if plan.zero == 3 else (dense + expert) * weight_b, 0.0
    if not workload.trains_adapters:
        dense, expert = shard.dense, shard.expert
        return dense, expert, dense * weight_b, expert * weight_b
    arch = workload.arch
    adapters = sum(lora_params(arch, i, plan.lora_rank, workload.lora_targets)
                   for i in range(shard.first_layer, shard.first_layer + shard.num_layers)) / plan.tp
    gathered = adapters * weight_b
    if plan.zero == 3:
        gathered += shard.total * QUANT_WEIGHT_BYTES.get(plan.quant, weight_b)
    return adapters, 0.0, gathered, 0.0


def updated_params(plan: Plan, dense: float, expert: float) -> float:
    """Trainable parameters whose optimizer step runs on this GPU (ZeRO ≥ 1 shards them)."""
    if plan.zero == 0:
        return dense + expert
    return dense / (plan.dp * plan.cp) + expert / plan.expert_dp


def _optimizer_bytes_per_param(plan: Plan) -> float:
    b = cal.OPTIMIZER_BYTES_PER_PARAM.get(plan.optimizer, cal.DEFAULT_OPTIMIZER_BYTES_PER_PARAM)
    return b * (cal.PURE_16BIT_OPTIMIZER_FACTOR if plan.precision == "bf16-pure" else 1.0)


def optimizer_and_offload(plan: Plan, cluster: Cluster, updated: float, held_bytes: float) -> tuple[float, float]:
    """(GPU optimizer seconds, offload seconds) of one step (methodology §6.3; ZeRO-Offload / -Infinity).

    GPU: optimizer bytes per parameter / achieved HBM bandwidth (HBM_EFFICIENCY). Offloaded: gradients down and 16-bit
    weights up over the host link, the step on the CPU at host-memory speed, all exposed;
    offloaded parameters also come up for every micro-batch's forward and backward.
    """
    opt_bytes = updated * _optimizer_bytes_per_param(plan)
    if plan.offload == "none":
        return opt_bytes / (cluster.gpu.hbm_bandwidth * cal.HBM_EFFICIENCY), 0.0
    weight_b, grad_b, _ = PRECISION_STATE_BYTES[plan.precision]
    host = cluster.gpu.host_link_bandwidth * cal.HOST_LINK_EFFICIENCY
    if plan.offload == "params":
        # The step runs on the GPU; the parameters come up for every micro-batch's forward and
        # backward, and the updated 16-bit partition goes back down once.
        fetch = 2 * plan.gas * held_bytes / (plan.dp * plan.cp) + updated * weight_b
        return opt_bytes / (cluster.gpu.hbm_bandwidth * cal.HBM_EFFICIENCY), fetch / host
    offload = updated * (grad_b + weight_b) / host + opt_bytes / cal.HOST_MEMORY_BANDWIDTH_PER_GPU
    if plan.offload == "optimizer+params":
        offload += 2 * plan.gas * held_bytes / (plan.dp * plan.cp) / host
    return 0.0, offload
