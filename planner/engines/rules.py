"""Which plans the frameworks accept: divisibility and compatibility rules, with their sources.

Shared by `estimate` (a plan the user wrote) and the search space (every candidate), so a plan
the solver proposes is always one Megatron-LM or DeepSpeed would launch.
"""
from __future__ import annotations

from planner.cost.cluster import Cluster
from planner.cost.inputs import missing_peak
from planner.cost.plan import Plan, PlanError
from planner.cost.shard import stage_layer_counts
from planner.cost.workload import Workload


def plan_problems(plan: Plan, workload: Workload, cluster: Cluster) -> list[str]:
    """Every reason this plan cannot run, in words (empty when it can)."""
    arch = workload.arch
    par = plan.parallel
    problems: list[str] = []

    def need(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    for name in ("tp", "pp", "dp", "cp", "ep", "vpp", "mbs", "gas"):
        need(getattr(plan, name) >= 1, f"{name} must be >= 1")
    if problems:
        return problems
    need(par.world == cluster.world,
         f"dp({par.dp}) * cp({par.cp}) * tp({par.tp}) * pp({par.pp}) = {par.world} != world size({cluster.world})")
    # Megatron-LM arguments.py: heads and query groups divide by tp.
    need(arch.attention.num_heads % par.tp == 0,
         f"attention heads ({arch.attention.num_heads}) must divide by tp ({par.tp})")
    need(arch.attention.is_mla or arch.attention.num_kv_heads % par.tp == 0,
         f"key/value heads ({arch.attention.num_kv_heads}) must divide by tp ({par.tp})")
    need(par.pp <= arch.num_layers, f"pp ({par.pp}) exceeds the {arch.num_layers} layers")
    partition = _partition_problems(plan, arch.num_layers, problems)
    # Interleaving: each stage's layers split into vpp chunks; micro-batches a multiple of pp
    # (Megatron). Uneven stages may give one chunk of the first (last) stage to the embedding
    # (the output layer and loss) alone, as Llama 3 405B's pipeline does (Llama 3 paper §3.3.2:
    # 126 layers, pp 16, first and last stages one layer short).
    if par.vpp > 1:
        counts = partition or stage_layer_counts(arch.num_layers, par.pp)
        need(fills_chunks(counts, par.vpp),
             f"every stage's layers ({'/'.join(map(str, counts))}) must fill its vpp ({par.vpp}) chunks to"
             f" interleave (the first and last stages at least {par.vpp - 1}: one chunk may hold only the"
             " embedding or the loss)")
        need(plan.gas % par.pp == 0, f"micro-batches per step ({plan.gas}) must be a multiple of pp ({par.pp}) to interleave")
    need(plan.mbs * plan.gas * par.dp == workload.global_batch,
         f"mbs ({plan.mbs}) * gas ({plan.gas}) * dp ({par.dp}) = {plan.mbs * plan.gas * par.dp}"
         f" != global batch ({workload.global_batch})")
    need(not par.sp or par.tp > 1, "sp (sequence parallelism) needs tp > 1")
    # Context parallelism splits each sequence into 2 * cp chunks for load balance (Megatron-Core).
    need(par.cp == 1 or workload.seq_len % (2 * par.cp) == 0,
         f"seq_len ({workload.seq_len}) must divide by 2 * cp ({2 * par.cp})")
    if arch.moe is None:
        need(par.ep == 1, "ep > 1 needs a mixture-of-experts model")
    else:
        need(arch.moe.num_experts % par.ep == 0,
             f"experts ({arch.moe.num_experts}) must divide by ep ({par.ep})")
    need((par.dp * par.cp) % par.ep == 0, f"ep ({par.ep}) must divide dp * cp ({par.dp * par.cp})")
    need(plan.zero in (0, 1, 2, 3), f"zero stage {plan.zero} does not exist (0-3)")
    # DeepSpeed: ZeRO-2/3 are incompatible with pipeline parallelism; Megatron's distributed
    # optimizer is ZeRO-1.
    need(par.pp == 1 or plan.zero <= 1, f"zero {plan.zero} cannot be combined with pp > 1 (use zero 0 or 1)")
    need(plan.offload == "none" or plan.zero >= 1, "CPU offload needs zero >= 1 (ZeRO-Offload)")
    need(plan.offload != "optimizer+params" or plan.zero == 3, "offloading parameters needs zero 3 (ZeRO-Infinity)")
    if workload.trains_adapters:
        need(plan.lora_rank >= 1, f"{workload.training} needs a LoRA rank >= 1")
    else:
        need(plan.lora_rank == 0, f"lora_rank is only for lora/qlora jobs (this job is {workload.training})")
        need(plan.quant == "none", f"quant {plan.quant} quantizes frozen base weights, which {workload.training} has none of")
    if plan.precision == "fp8":
        need(cluster.gpu.supports("fp8"), f"{cluster.gpu.id} has no fp8 tensor cores")
    if plan.precision.startswith("bf16"):
        need(cluster.gpu.supports("bf16"), f"{cluster.gpu.id} has no bf16 support; use fp16")
    missing = missing_peak(plan.precision, cluster.gpu)
    need(missing is None, missing or "")
    return problems


def _partition_problems(plan: Plan, num_layers: int, problems: list[str]) -> tuple[int, ...] | None:
    """Uneven pipeline partitions (Megatron --decoder-first/last-pipeline-num-layers) and
    per-stage recompute counts (--recompute-num-layers; a count above a stage's layers recomputes
    all of them): appends what is wrong, returns the layers per stage when the plan sets them."""
    pp = plan.parallel.pp
    partition = None
    ends = {k: getattr(plan, k) for k in ("first_stage_layers", "last_stage_layers") if getattr(plan, k) is not None}
    if ends and pp == 1:
        problems.append(f"{' and '.join(ends)} need pp > 1")
    elif ends:
        bad = [f"{k} ({v})" for k, v in ends.items() if v < 1]
        if bad:
            problems.append(f"{', '.join(bad)} must be >= 1")
        else:
            try:
                partition = plan.layer_partition(num_layers)
            except PlanError as exc:
                problems.append(str(exc))
    if plan.recompute_layers is not None:
        if plan.recompute != "full":
            problems.append(f"recompute_layers needs recompute full (this plan has {plan.recompute})")
        elif len(plan.recompute_layers) != pp:
            problems.append(f"recompute_layers gives {len(plan.recompute_layers)} stages, pp is {pp}")
        elif any(r < 0 for r in plan.recompute_layers):
            problems.append(f"recompute_layers ({'/'.join(map(str, plan.recompute_layers))}) must be >= 0")
    return partition


def chunk_lows(pp: int, vpp: int) -> tuple[int, ...]:
    """Fewest layers each stage may hold with vpp chunks per stage (interleaving): vpp, and
    vpp − 1 on the first and last stages, whose spare chunk holds the embedding or the loss."""
    if vpp == 1:
        return (1,) * pp
    return tuple(max(1, vpp - 1) if i in (0, pp - 1) else vpp for i in range(pp))


def fills_chunks(counts: tuple[int, ...], vpp: int) -> bool:
    return all(n >= low for n, low in zip(counts, chunk_lows(len(counts), vpp)))
