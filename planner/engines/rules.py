"""Which plans the frameworks accept: divisibility and compatibility rules, with their sources.

Shared by `estimate` (a plan the user wrote) and the search space (every candidate), so a plan
the solver proposes is always one Megatron-LM or DeepSpeed would launch. Each rule names the plan
keys it reads (`Rule.reads`): its reasons depend on nothing else of the plan, so the search checks
it once per combination of those values (search/admit.py) where `plan_problems` checks a whole plan.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from planner.cost.cluster import Cluster
from planner.cost.inputs import missing_peak
from planner.cost.plan import RECOMPUTE_MODULES, Plan, PlanError
from planner.cost.precisions import BLOCKS, te_recipe
from planner.cost.shard import stage_layer_counts
from planner.cost.workload import Workload


@dataclass(frozen=True)
class Rule:
    """One check of a plan for one job on one cluster: the reasons it breaks, in words (empty when
    the plan passes). `reads` names every plan key (`planner.spec.plan_keys.PLAN_KEYS`, parallel
    degrees flat) the check reads; the job and the cluster are its other inputs."""

    reads: tuple[str, ...]
    check: Callable[[Plan, Workload | None, Cluster | None], list[str]]


def _at_least_one(name: str, plan: Plan, workload: Workload, cluster: Cluster) -> list[str]:
    return [] if getattr(plan, name) >= 1 else [f"{name} must be >= 1"]


DEGREE_RULES = tuple(Rule((name,), partial(_at_least_one, name))
                     for name in ("tp", "pp", "dp", "cp", "ep", "vpp", "mbs", "gas", "pipeline_runs"))
"""Checked first: the other rules divide by these degrees, so a plan that breaks one gets only
these reasons."""


def _world(plan: Plan, workload: Workload, cluster: Cluster) -> list[str]:
    par = plan.parallel
    if par.world == cluster.world:
        return []
    return [f"dp({par.dp}) * cp({par.cp}) * tp({par.tp}) * pp({par.pp}) = {par.world} != world size({cluster.world})"]


def _heads(plan: Plan, workload: Workload, cluster: Cluster) -> list[str]:
    # Megatron-LM arguments.py: heads and query groups divide by tp.
    attention, tp = workload.arch.attention, plan.parallel.tp
    out = []
    if attention.num_heads % tp:
        out.append(f"attention heads ({attention.num_heads}) must divide by tp ({tp})")
    if not attention.is_mla and attention.num_kv_heads % tp:
        out.append(f"key/value heads ({attention.num_kv_heads}) must divide by tp ({tp})")
    return out


def _depth(plan: Plan, workload: Workload, cluster: Cluster) -> list[str]:
    pp, layers = plan.parallel.pp, workload.arch.num_layers
    return [] if pp <= layers else [f"pp ({pp}) exceeds the {layers} layers"]


def _ends(plan: Plan) -> dict[str, int]:
    return {k: getattr(plan, k) for k in ("first_stage_layers", "last_stage_layers") if getattr(plan, k) is not None}


def _partition(plan: Plan, workload: Workload, cluster: Cluster) -> list[str]:
    """Uneven pipeline partitions (Megatron --decoder-first/last-pipeline-num-layers)."""
    ends = _ends(plan)
    if ends and plan.parallel.pp == 1:
        return [f"{' and '.join(ends)} need pp > 1"]
    if ends:
        bad = [f"{k} ({v})" for k, v in ends.items() if v < 1]
        if bad:
            return [f"{', '.join(bad)} must be >= 1"]
        try:
            plan.layer_partition(workload.arch.num_layers)
        except PlanError as exc:
            return [str(exc)]
    return []


def _set_partition(plan: Plan, num_layers: int) -> tuple[int, ...] | None:
    """The layers per stage the plan sets, where `_partition` finds them valid; else None."""
    ends = _ends(plan)
    if not ends or plan.parallel.pp == 1 or any(v < 1 for v in ends.values()):
        return None
    try:
        return plan.layer_partition(num_layers)
    except PlanError:
        return None


def _recompute_layers(plan: Plan, workload: Workload, cluster: Cluster) -> list[str]:
    """Per-stage recompute counts (--recompute-num-layers; a count above a stage's layers
    recomputes all of them)."""
    counts, pp = plan.recompute_layers, plan.parallel.pp
    if counts is None:
        return []
    if plan.recompute != "full":
        return [f"recompute_layers needs recompute full (this plan has {plan.recompute})"]
    if len(counts) != pp:
        return [f"recompute_layers gives {len(counts)} stages, pp is {pp}"]
    if any(r < 0 for r in counts):
        return [f"recompute_layers ({'/'.join(map(str, counts))}) must be >= 0"]
    return []


# Interleaving: each stage's layers split into vpp chunks; micro-batches a multiple of pp
# (Megatron). Uneven stages may give one chunk of the first (last) stage to the embedding
# (the output layer and loss) alone, as Llama 3 405B's pipeline does (Llama 3 paper §3.3.2:
# 126 layers, pp 16, first and last stages one layer short).
def _chunks(plan: Plan, workload: Workload, cluster: Cluster) -> list[str]:
    par, layers = plan.parallel, workload.arch.num_layers
    if par.vpp <= 1:
        return []
    counts = _set_partition(plan, layers) or stage_layer_counts(layers, par.pp)
    if fills_chunks(counts, par.vpp):
        return []
    return [f"every stage's layers ({'/'.join(map(str, counts))}) must fill its vpp ({par.vpp}) chunks to"
            f" interleave (the first and last stages at least {par.vpp - 1}: one chunk may hold only the"
            " embedding or the loss)"]


def _interleaved_batches(plan: Plan, workload: Workload, cluster: Cluster) -> list[str]:
    par = plan.parallel
    runs = plan.pipeline_runs
    if par.vpp <= 1 or runs < 1 or plan.gas % runs or plan.microbatches_per_run % par.pp == 0:
        return []  # runs that do not divide the step: _pipeline_runs says so
    if runs > 1:
        return [f"micro-batches per pipeline run ({plan.microbatches_per_run}) must be a multiple of pp ({par.pp})"
                " to interleave"]
    return [f"micro-batches per step ({plan.gas}) must be a multiple of pp ({par.pp}) to interleave"]


def _pipeline_runs(plan: Plan, workload: Workload, cluster: Cluster) -> list[str]:
    """Runs of the pipeline schedule per step. Megatron-Core runs the step's micro-batches in one
    schedule (`get_forward_backward_func` over `num_microbatches`) and so does DeepSpeed's
    PipelineEngine (`train_batch` over `gradient_accumulation_steps`); torch.distributed.pipelining
    (torchtitan, NeMo AutoModel) runs one per local batch. Its 1F1B needs at least pp
    micro-batches per run (torch/distributed/pipelining/schedules.py `Schedule1F1B`), which
    torchtitan's configs reach through local_batch_size."""
    runs, par = plan.pipeline_runs, plan.parallel
    out: list[str] = []
    if runs < 1:
        return out  # a degree rule's reason
    if runs > 1:
        if par.pp == 1:
            out.append(f"pipeline_runs ({runs}) needs pp > 1")
        elif workload.engine.kernels != "hf":
            out.append(f"{workload.engine.name} runs the step's micro-batches in one pipeline schedule"
                       " (pipeline_runs 1)")
        if plan.gas % runs:
            out.append(f"pipeline_runs ({runs}) must divide the micro-batches per step ({plan.gas})")
    if (par.pp > 1 and par.vpp == 1 and workload.engine.kernels == "hf" and not plan.gas % runs
            and plan.microbatches_per_run < par.pp):
        out.append(f"1F1B needs at least pp ({par.pp}) micro-batches per pipeline run, got"
                   f" {plan.microbatches_per_run}")
    return out


def _global_batch(plan: Plan, workload: Workload, cluster: Cluster) -> list[str]:
    got = plan.mbs * plan.gas * plan.parallel.dp
    if got == workload.global_batch:
        return []
    return [f"mbs ({plan.mbs}) * gas ({plan.gas}) * dp ({plan.parallel.dp}) = {got}"
            f" != global batch ({workload.global_batch})"]


def _sequence_parallel(plan: Plan, workload: Workload, cluster: Cluster) -> list[str]:
    return [] if not plan.parallel.sp or plan.parallel.tp > 1 else ["sp (sequence parallelism) needs tp > 1"]


def _context(plan: Plan, workload: Workload, cluster: Cluster) -> list[str]:
    # Context parallelism splits each sequence into 2 * cp chunks for load balance (Megatron-Core).
    cp = plan.parallel.cp
    if cp == 1 or workload.seq_len % (2 * cp) == 0:
        return []
    return [f"seq_len ({workload.seq_len}) must divide by 2 * cp ({2 * cp})"]


def _experts(plan: Plan, workload: Workload, cluster: Cluster) -> list[str]:
    ep, moe = plan.parallel.ep, workload.arch.moe
    if moe is None:
        return [] if ep == 1 else ["ep > 1 needs a mixture-of-experts model"]
    return [] if moe.num_experts % ep == 0 else [f"experts ({moe.num_experts}) must divide by ep ({ep})"]


def _expert_grid(plan: Plan, workload: Workload, cluster: Cluster) -> list[str]:
    """Megatron-Core's expert grid (megatron/core/parallel_state.py): ep × etp ranks carved from
    tp × dp × cp; etp divides the experts' FFN like tp does the dense one."""
    par, moe = plan.parallel, workload.arch.moe
    etp = plan.expert_tp
    if etp < 1:
        return [f"etp ({etp}) must be >= 1"]
    out = []
    if plan.etp is not None and moe is None:
        out.append("etp is for mixture-of-experts models")
    world_inner = par.tp * par.dp * par.cp
    if world_inner % (par.ep * etp):
        out.append(f"ep ({par.ep}) * etp ({etp}) must divide tp * dp * cp ({world_inner})")
    if moe is not None and moe.expert_ffn % etp:
        out.append(f"the experts' FFN ({moe.expert_ffn}) must divide by etp ({etp})")
    return out


def _zero(plan: Plan, workload: Workload, cluster: Cluster) -> list[str]:
    return [] if plan.zero in (0, 1, 2, 3) else [f"zero stage {plan.zero} does not exist (0-3)"]


def _zero_pipeline(plan: Plan, workload: Workload, cluster: Cluster) -> list[str]:
    # DeepSpeed: ZeRO-2/3 are incompatible with pipeline parallelism; Megatron's distributed
    # optimizer is ZeRO-1. PyTorch FSDP2 composes with pipeline parallelism (torchtitan
    # parallelize.py / pipeline.py: fully_shard on each stage's module, NeMo AutoModel likewise).
    if plan.parallel.pp == 1 or plan.zero <= 1 or workload.engine.kernels == "hf":
        return []
    return [f"zero {plan.zero} cannot be combined with pp > 1 on {workload.engine.name} (use zero 0 or 1;"
            " FSDP2 (framework hf) shards each pipeline stage)"]


def _recompute_modules(plan: Plan, workload: Workload, cluster: Cluster) -> list[str]:
    """Selective recompute modules (Megatron-Core --recompute-modules)."""
    if plan.recompute_modules is None:
        return []
    out = []
    if plan.recompute != "selective":
        out.append(f"recompute_modules needs recompute selective (this plan has {plan.recompute})")
    bad = [m for m in plan.recompute_modules if m not in RECOMPUTE_MODULES]
    if bad:
        out.append(f"recompute_modules: {', '.join(bad)} unknown; valid: {', '.join(RECOMPUTE_MODULES)}")
    return out


def _activation_offload(plan: Plan, workload: Workload, cluster: Cluster) -> list[str]:
    layers = plan.offload_activation_layers
    out = [] if layers >= 0 else ["offload_activation_layers must be >= 0"]
    if layers:
        # Megatron-Core cpu_offloading_context: offloading and activation recomputation exclude
        # each other (transformer_config.py checks cpu_offloading with recompute_granularity).
        if workload.engine.kernels != "megatron":
            out.append("offload_activation_layers is Megatron-Core's cpu_offloading_num_layers")
        if plan.recompute != "none":
            out.append("offload_activation_layers does not combine with recompute")
    return out


def _moments(plan: Plan, workload: Workload, cluster: Cluster) -> list[str]:
    """The precision-aware optimizer's moments."""
    if plan.moment_dtype == "fp32" or (workload.engine.kernels == "megatron" and plan.zero >= 1):
        return []
    return ["moment_dtype bf16 is Megatron's precision-aware optimizer, with the distributed optimizer (zero 1)"]


FP8_PARAM_PRECISIONS = ("fp8", "mxfp8")
"""Precisions whose weights Megatron-Core can keep and gather in fp8 (`--fp8-param-gather`). Its
4-bit parameters (`--fp4-param-gather`, TransformerConfig.fp4_param) are not planned: NVFP4 plans
gather 16-bit weights."""


def fp8_param_gather_by_default(workload: Workload, precision: str, zero: int) -> bool:
    """Megatron-Core in fp8 or mxfp8 with the distributed optimizer keeps fp8 parameters and
    gathers them in 8 bits, as every Megatron-Bridge fp8 recipe does (training/mixed_precision.py:
    fp8_param_gather); the search plans it so, and `--plan` unless it says otherwise."""
    return workload.engine.kernels == "megatron" and precision in FP8_PARAM_PRECISIONS and zero >= 1


def engine_defaults(plan: Plan, workload: Workload) -> Plan:
    """The plan with what it leaves to its engine (None) set as the engine runs it."""
    if plan.fp8_param_gather is not None:
        return plan
    return plan.with_(fp8_param_gather=fp8_param_gather_by_default(workload, plan.precision, plan.zero))


def _fp8_gather(plan: Plan, workload: Workload, cluster: Cluster) -> list[str]:
    """Megatron-Core's fp8 parameters, which its distributed optimizer gathers in 8 bits
    (distributed_data_parallel_config.py `fp8_param_gather`; Megatron-Bridge's fp8 and mxfp8
    recipes set it with the distributed optimizer: training/mixed_precision.py)."""
    if not plan.fp8_param_gather:
        return []
    if plan.precision not in FP8_PARAM_PRECISIONS:
        return ["fp8_param_gather needs precision fp8 or mxfp8"]
    if workload.engine.kernels != "megatron" or plan.zero < 1:
        return ["fp8_param_gather is Megatron-Core's, with the distributed optimizer (zero 1)"]
    return []


def _mx_blocks(plan: Plan, workload: Workload, cluster: Cluster) -> list[str]:
    """Transformer Engine quantizes a tensor to MXFP8 only when both of its dimensions divide by
    the block of 32 (transformer_engine csrc/quantizer.cpp `MXFP8Quantizer::create_tensor`,
    NVTE_CHECK), to NVFP4 by 16 (`NVFP4Quantizer::create_tensor`): every linear layer's input and
    weight on each TP rank, and the tokens of a micro-batch on each rank (per SP shard). torchao's
    MX linears skip a layer that does not divide instead (torchtitan's `filter_fqns` note), so the
    rule is Transformer Engine's."""
    recipe = te_recipe(plan.precision, workload.engine.kernels)
    block = BLOCKS.get(recipe)
    if block is None:
        return []
    arch, p = workload.arch, plan.parallel
    att = arch.attention
    widths = {"hidden": arch.hidden, "query width / tp": att.q_dim / p.tp,
              "key-value width / tp": att.kv_dim / p.tp}
    if arch.num_moe_layers < arch.num_layers:  # dense MLPs too
        widths["ffn / tp"] = arch.ffn / p.tp
    if arch.moe is not None:
        widths["expert ffn / expert tp"] = arch.moe.expert_ffn / plan.expert_tp
        if arch.moe.shared_ffn:
            widths["shared-expert ffn / tp"] = arch.moe.shared_ffn / p.tp
    tokens = plan.mbs * workload.seq_len / p.cp / (p.tp if p.sp else 1)
    out = [f"{recipe}: {name} {value:g} is not a multiple of {block}" for name, value in widths.items()
           if value % block]
    if tokens % block:
        out.append(f"{recipe}: {tokens:g} tokens per micro-batch and rank (mbs x seq_len / cp"
                   f"{' / tp' if p.sp else ''}) is not a multiple of {block}")
    return out


def _offload(plan: Plan, workload: Workload, cluster: Cluster) -> list[str]:
    out = []
    if plan.offload != "none" and plan.zero < 1:
        out.append("CPU offload needs zero >= 1 (ZeRO-Offload)")
    if plan.offload in ("optimizer+params", "params") and plan.zero != 3:
        out.append("offloading parameters needs zero 3 (ZeRO-Infinity)")
    return out


def _adapters(plan: Plan, workload: Workload, cluster: Cluster) -> list[str]:
    if workload.trains_adapters:
        return [] if plan.lora_rank >= 1 else [f"{workload.training} needs a LoRA rank >= 1"]
    out = []
    if plan.lora_rank != 0:
        out.append(f"lora_rank is only for lora/qlora jobs (this job is {workload.training})")
    if plan.quant != "none":
        out.append(f"quant {plan.quant} quantizes frozen base weights, which {workload.training} has none of")
    return out


def _precision(plan: Plan, workload: Workload, cluster: Cluster) -> list[str]:
    out, gpu = [], cluster.gpu
    if plan.precision == "fp8" and not gpu.supports("fp8"):
        out.append(f"{gpu.id} has no fp8 tensor cores")
    if plan.precision == "mxfp8" and not gpu.supports("mxfp8"):
        out.append(f"{gpu.id} has no mxfp8 (block-scaled fp8) tensor cores")
    if plan.precision == "nvfp4" and not gpu.supports("nvfp4"):
        out.append(f"{gpu.id} has no nvfp4 (block-scaled fp4) tensor cores")
    if plan.precision.startswith("bf16") and not gpu.supports("bf16"):
        out.append(f"{gpu.id} has no bf16 support; use fp16")
    missing = missing_peak(plan.precision, gpu)
    if missing is not None:
        out.append(missing)
    return out


RULES = (
    Rule(("tp", "pp", "dp", "cp"), _world),
    Rule(("tp",), _heads),
    Rule(("pp",), _depth),
    Rule(("pp", "first_stage_layers", "last_stage_layers"), _partition),
    Rule(("pp", "recompute", "recompute_layers"), _recompute_layers),
    Rule(("pp", "vpp", "first_stage_layers", "last_stage_layers"), _chunks),
    Rule(("pp", "vpp", "gas", "pipeline_runs"), _interleaved_batches),
    Rule(("pipeline_runs", "pp", "vpp", "gas"), _pipeline_runs),
    Rule(("mbs", "gas", "dp"), _global_batch),
    Rule(("sp", "tp"), _sequence_parallel),
    Rule(("cp",), _context),
    Rule(("ep",), _experts),
    Rule(("etp", "tp", "dp", "cp", "ep"), _expert_grid),
    Rule(("zero",), _zero),
    Rule(("pp", "zero"), _zero_pipeline),
    Rule(("recompute_modules", "recompute"), _recompute_modules),
    Rule(("offload_activation_layers", "recompute"), _activation_offload),
    Rule(("moment_dtype", "zero"), _moments),
    Rule(("fp8_param_gather", "precision", "zero"), _fp8_gather),
    Rule(("offload", "zero"), _offload),
    Rule(("lora_rank", "quant"), _adapters),
    Rule(("precision",), _precision),
    Rule(("precision", "tp", "sp", "cp", "mbs", "etp"), _mx_blocks),
)
"""Every rule besides the degrees', in the order `plan_problems` reports them."""


def plan_problems(plan: Plan, workload: Workload, cluster: Cluster) -> list[str]:
    """Every reason this plan cannot run, in words (empty when it can)."""
    problems = [m for rule in DEGREE_RULES for m in rule.check(plan, workload, cluster)]
    if problems:
        return problems
    return [m for rule in RULES for m in rule.check(plan, workload, cluster)]


def chunk_lows(pp: int, vpp: int) -> tuple[int, ...]:
    """Fewest layers each stage may hold with vpp chunks per stage (interleaving): vpp, and
    vpp − 1 on the first and last stages, whose spare chunk holds the embedding or the loss."""
    if vpp == 1:
        return (1,) * pp
    return tuple(max(1, vpp - 1) if i in (0, pp - 1) else vpp for i in range(pp))


def fills_chunks(counts: tuple[int, ...], vpp: int) -> bool:
    return all(n >= low for n, low in zip(counts, chunk_lows(len(counts), vpp)))
