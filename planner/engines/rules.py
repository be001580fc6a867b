"""Which plans the frameworks accept: divisibility and compatibility rules, with their sources.

Shared by `estimate` (a plan the user wrote) and the search space (every candidate), so a plan
the solver proposes is always one Megatron-LM or DeepSpeed would launch.
"""
from __future__ import annotations

from planner.cost.cluster import Cluster
from planner.cost.inputs import missing_peak
from planner.cost.plan import RECOMPUTE_MODULES, Plan, PlanError
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
    _expert_problems(plan, workload, need)
    need(plan.zero in (0, 1, 2, 3), f"zero stage {plan.zero} does not exist (0-3)")
    # DeepSpeed: ZeRO-2/3 are incompatible with pipeline parallelism; Megatron's distributed
    # optimizer is ZeRO-1. PyTorch FSDP2 composes with pipeline parallelism (torchtitan
    # parallelize.py / pipeline.py: fully_shard on each stage's module, NeMo AutoModel likewise).
    need(par.pp == 1 or plan.zero <= 1 or workload.engine.kernels == "hf",
         f"zero {plan.zero} cannot be combined with pp > 1 on {workload.engine.name} (use zero 0 or 1;"
         " FSDP2 (framework hf) shards each pipeline stage)")
    _execution_problems(plan, workload, need)
    need(plan.offload == "none" or plan.zero >= 1, "CPU offload needs zero >= 1 (ZeRO-Offload)")
    need(plan.offload not in ("optimizer+params", "params") or plan.zero == 3,
         "offloading parameters needs zero 3 (ZeRO-Infinity)")
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


def _expert_problems(plan: Plan, workload: Workload, need) -> None:
    """Megatron-Core's expert grid (megatron/core/parallel_state.py): ep × etp ranks carved from
    tp × dp × cp; etp divides the experts' FFN like tp does the dense one."""
    par, moe = plan.parallel, workload.arch.moe
    etp = plan.expert_tp
    need(etp >= 1, f"etp ({etp}) must be >= 1")
    if etp < 1:
        return
    if plan.etp is not None and moe is None:
        need(False, "etp is for mixture-of-experts models")
    world_inner = par.tp * par.dp * par.cp
    need(world_inner % (par.ep * etp) == 0,
         f"ep ({par.ep}) * etp ({etp}) must divide tp * dp * cp ({world_inner})")
    if moe is not None:
        need(moe.expert_ffn % etp == 0, f"the experts' FFN ({moe.expert_ffn}) must divide by etp ({etp})")


def _execution_problems(plan: Plan, workload: Workload, need) -> None:
    """Selective recompute modules, activation offload, the precision-aware optimizer, fp8 gathers."""
    if plan.recompute_modules is not None:
        need(plan.recompute == "selective",
             f"recompute_modules needs recompute selective (this plan has {plan.recompute})")
        bad = [m for m in plan.recompute_modules if m not in RECOMPUTE_MODULES]
        need(not bad, f"recompute_modules: {', '.join(bad)} unknown; valid: {', '.join(RECOMPUTE_MODULES)}")
    need(plan.offload_activation_layers >= 0, "offload_activation_layers must be >= 0")
    if plan.offload_activation_layers:
        # Megatron-Core cpu_offloading_context: offloading and activation recomputation exclude
        # each other (transformer_config.py checks cpu_offloading with recompute_granularity).
        need(workload.engine.kernels == "megatron", "offload_activation_layers is Megatron-Core's cpu_offloading_num_layers")
        need(plan.recompute == "none", "offload_activation_layers does not combine with recompute")
    if plan.moment_dtype != "fp32":
        need(workload.engine.kernels == "megatron" and plan.zero >= 1,
             "moment_dtype bf16 is Megatron's precision-aware optimizer, with the distributed optimizer (zero 1)")
    if plan.fp8_param_gather:
        need(plan.precision == "fp8", "fp8_param_gather needs precision fp8")


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
