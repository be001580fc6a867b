"""When nothing fits: which requirements collide, and the smallest changes that would fit."""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from hardware import catalog
from planner.cost.cluster import Cluster
from planner.cost.evaluate import Evaluation, evaluate
from planner.cost.plan import ParallelDims, Plan
from planner.cost.workload import JobDefaults, Workload
from planner.engines.rules import plan_problems
from planner.spec.job import Constraint

if TYPE_CHECKING:
    from planner.search.layouts import Layout

# The solver and the sizing (numpy, OR-Tools) load when something must be explained: the terminal
# tables import describe_plan from here.

GiB = 2**30
MiB = 2**20


def describe_plan(plan: Plan) -> str:
    p = plan.parallel
    parts = [f"tp={p.tp}", f"pp={p.pp}", f"dp={p.dp}"]
    parts += [f"{k}={getattr(p, k)}" for k in ("cp", "ep", "vpp") if getattr(p, k) > 1]
    if p.sp:
        parts.append("sp")
    if plan.first_stage_layers is not None or plan.last_stage_layers is not None:
        parts.append(f"layers={plan.first_stage_layers}..{plan.last_stage_layers}")
    parts += [f"zero={plan.zero}", f"recompute={plan.recompute}"]
    if plan.recompute_layers is not None:
        parts.append(f"recompute_layers={'/'.join(map(str, _runs(plan.recompute_layers)))}")
    parts.append(f"mbs={plan.mbs}")
    if plan.pipeline_runs > 1:
        parts.append(f"pipeline_runs={plan.pipeline_runs}")
    if plan.offload != "none":
        parts.append(f"offload={plan.offload}")
    if plan.lora_rank:
        parts.append(f"lora_rank={plan.lora_rank}")
    if plan.quant != "none":
        parts.append(f"quant={plan.quant}")
    return " ".join(parts)


def _runs(counts: tuple[int, ...]) -> list[str]:
    """4/2/2/2/0 -> 4, 2x3, 0: per-stage counts, repeats folded."""
    out: list[str] = []
    i = 0
    while i < len(counts):
        j = i
        while j < len(counts) and counts[j] == counts[i]:
            j += 1
        out.append(str(counts[i]) if j - i == 1 else f"{counts[i]}x{j - i}")
        i = j
    return out


def _least_memory(rows: list[Layout], constraints: dict[str, Constraint], workload: Workload,
                  cluster: Cluster) -> Evaluation | None:
    """The plan needing the least memory within the constraints (capacity unbounded): the
    layouts in order of their least memory (point.lower_bound), each at its exact best point
    (runners_up.next_best), until none left can need less; ties go to the earlier layout, as
    brute force ranks them."""
    from planner.search.point import lower_bound
    from planner.search.runners_up import next_best

    layers = workload.arch.num_layers
    bounds = [lower_bound(lay, "memory", layers) for lay in rows]
    points = next_best(rows, bounds, 1, constraints, 2**62, None, "memory", layers)
    if not points:
        return None
    return evaluate(points[0].plan(layers), workload, cluster)


def explain_infeasible(rows: list[Layout], conflict: tuple[str, ...], workload: Workload, cluster: Cluster,
                       defaults: JobDefaults, constraints: dict[str, Constraint]) -> str:
    """One paragraph: why no plan fits, and what change would make one fit."""
    if not rows:
        return _no_legal_layout(workload, cluster, defaults)
    if conflict == ("time limit",):
        return "The solver's time limit ran out before it found a plan; raise --time-limit."
    from planner.search.table import capacity_kib

    sentences = []
    user = [c.removeprefix("constraints.") for c in conflict if c.startswith("constraints.")]
    best = _least_memory(rows, constraints, workload, cluster)
    if best is None:
        keys = ", ".join(f"{k} {constraints[k].describe()}" for k in (user or constraints))
        sentences.append(f"No legal plan satisfies the job's constraints together ({keys}) on {cluster.world} GPUs.")
    else:
        ev = best
        stage = ev.peak_stage
        where = f" on pipeline stage {stage.stage}" if len(ev.stages) > 1 else ""
        terms = {k: v for k, v in stage.memory.as_dict().items() if k != "total"}
        largest = max(terms, key=terms.get)
        limited = " within the constraints on " + ", ".join(user) if user else ""
        sentences.append(
            f"No plan fits in memory: the plan needing the least memory{limited} ({describe_plan(ev.plan)})"
            f" needs {ev.memory.total / GiB:.1f} GiB per GPU{where}, {(ev.memory.total - ev.capacity) / GiB:.1f} GiB"
            f" more than the {ev.capacity / GiB:.1f} GiB usable on {cluster.gpu.id};"
            f" its largest term is {largest.replace('_', ' ')} ({terms[largest] / GiB:.1f} GiB).")
        if user:
            free = _least_memory(rows, {}, workload, cluster)
            if free is not None and free.memory.total <= capacity_kib(cluster) * 1024:
                sentences.append(f"Without the constraints on {', '.join(user)} a plan would fit"
                                 f" ({describe_plan(free.plan)}).")
    sentences += _suggestions(workload, cluster, defaults, constraints, best)
    return " ".join(sentences)


def _no_legal_layout(workload: Workload, cluster: Cluster, defaults: JobDefaults) -> str:
    plan = Plan(parallel=ParallelDims(dp=cluster.world), mbs=1,
                gas=max(1, workload.global_batch // cluster.world), lora_rank=defaults.lora_ranks[0],
                quant=defaults.quant, precision=defaults.precision, optimizer=defaults.optimizer)
    problems = plan_problems(plan, workload, cluster)
    reason = "; ".join(problems) if problems else "no combination of tp, pp and dp divides the job"
    return (f"No legal layout of {workload.arch.name} on {cluster.world} GPUs: {reason}."
            f" Choose a global batch that divides by the data-parallel size, or another GPU count.")


def _suggestions(workload: Workload, cluster: Cluster, defaults: JobDefaults,
                 constraints: dict[str, Constraint], best: Evaluation | None) -> list[str]:
    from planner.search.sizing import smallest_fitting_cluster, some_plan_fits

    out = []
    smallest = smallest_fitting_cluster(workload, cluster, defaults, constraints)
    if smallest is not None:
        nodes = f"{smallest.nodes} node{'s' if smallest.nodes > 1 else ''} of {smallest.gpus_per_node}"
        out.append(f"It would fit on {smallest.world} GPUs ({nodes}), the fewest of this kind that fit.")
    if workload.training in ("pretrain", "full"):
        lora = replace(workload, training="lora", lora_targets=("q_proj", "k_proj", "v_proj", "o_proj"))
        lora_defaults = replace(defaults, lora_ranks=(16,))
        if some_plan_fits(lora, cluster, lora_defaults, {}):
            out.append("Fine-tuning with LoRA (rank 16 on the attention projections) would fit on this cluster.")
    if best is not None:
        needed = best.memory.total + cluster.memory_reserve
        larger = sorted((g for g in catalog().values() if g.usable_bytes >= needed), key=lambda g: g.usable_bytes)
        if larger:
            names = ", ".join(g.id for g in larger[:3])
            out.append(f"GPUs with enough memory for that plan: {names}.")
    return out
