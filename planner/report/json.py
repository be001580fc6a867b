"""The JSON documents of docs/cli.md: sizes in bytes, times in seconds."""
from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # names for the annotations only: `params` stays quick to start
    from planner.cost.evaluate import Evaluation
    from planner.model.flops import FlopsPerToken
    from planner.model.params import ParamCount
    from planner.search.result import SolveResult
    from planner.search.stacks import EngineComparison


def plan_document(ev: Evaluation) -> dict:
    plan = ev.plan
    p = plan.parallel
    t = ev.time
    memory = {**ev.memory.as_dict(), "capacity": ev.capacity}
    return {
        "fits": ev.fits,
        "parallel": {"tp": p.tp, "pp": p.pp, "dp": p.dp, "cp": p.cp, "ep": p.ep, "vpp": p.vpp, "sp": p.sp},
        "zero": plan.zero,
        "recompute": plan.recompute,
        "mbs": plan.mbs,
        "gas": plan.gas,
        "lora_rank": plan.lora_rank,
        "quant": plan.quant,
        "precision": plan.precision,
        "offload": plan.offload,
        "optimizer": plan.optimizer,
        "framework": plan.framework,
        # Uneven pipeline partition and partial recompute, as the stages list shows them.
        "first_stage_layers": ev.stages[0].layers,
        "last_stage_layers": ev.stages[-1].layers,
        "recompute_layers": [s.recompute_layers for s in ev.stages],
        "etp": plan.expert_tp,
        "recompute_modules": list(plan.recompute_modules) if plan.recompute_modules is not None else None,
        "offload_activation_layers": plan.offload_activation_layers,
        "moment_dtype": plan.moment_dtype,
        "fp8_param_gather": plan.fp8_param_gather,
        "pipeline_runs": plan.pipeline_runs,
        "memory": memory,
        "stages": [
            {"layers": s.layers, "recompute_layers": s.recompute_layers,
             "memory": {**s.memory.as_dict(), "capacity": ev.capacity}}
            for s in ev.stages
        ],
        "host_memory_per_node": ev.host_bytes_per_node,
        "time": {
            "step": t.step, "compute": t.compute, "comm_exposed": t.comm_exposed, "bubble": t.bubble,
            "recompute": t.recompute, "tp": t.tp, "cp": t.cp, "ep": t.ep, "pp": t.pp, "dp": t.dp,
            "optimizer": t.optimizer, "offload": t.offload,
        },
        "throughput": {"tokens_per_s": t.tokens_per_s, "mfu": t.mfu, "hfu": t.hfu},
        "comm_bytes": {k: int(v) for k, v in asdict(ev.comm_bytes).items()},
        "why_not": ev.why_not(),
    }


def engines_document(engines: list[EngineComparison]) -> list[dict]:
    """Each engine's best plan against the winner's: `step_time_ratio` (its step over the
    fastest), `headroom` (bytes), or `why_not` when it has no plan."""
    winner = next((e.framework for e in engines if e.step_time_ratio == 1.0), None)
    return [{"framework": e.framework, "title": e.title, "summary": e.summary(winner),
             "plan": plan_document(e.best) if e.best is not None else None,
             "step_time_ratio": e.step_time_ratio, "headroom": e.headroom, "why_not": e.why_not}
            for e in engines]


def solve_document(result: SolveResult, explanation: str | None,
                   engines: list[EngineComparison] | None = None) -> dict:
    from planner.search.result import PHASES  # the search package loads with the commands that search

    extra = {"engines": engines_document(engines)} if engines is not None else {}
    return {
        "status": result.status,
        "objective": result.objective,
        "solve_seconds": result.solve_seconds,
        # Seconds of each phase of solve_seconds: the cost table, the solver, the explanation.
        "timing": {phase: result.timing.get(phase, 0.0) for phase in PHASES},
        "plans": [plan_document(ev) for ev in result.plans],
        "explanation": explanation,
        "candidates": result.candidates,
        "reasons": list(result.reasons),
        **extra,
    }


def params_document(counts: ParamCount, flops: FlopsPerToken) -> dict:
    return {
        "total": counts.total,
        "active": counts.active,
        "embedding": counts.embedding,
        "by_component": dict(counts.by_component),
        "by_layer_kind": {k.kind: {"layers": k.layers, "params": k.params, "active": k.active,
                                   "per_expert": k.per_expert}
                          for k in counts.by_layer_kind},
        "mtp": counts.mtp,
        "flops_per_token": {
            "seq_len": flops.seq_len,
            "training": {"causal": flops.training, "full": flops.training_full_attention},
            "inference": {"causal": flops.inference, "full": flops.inference_full_attention},
        },
    }
