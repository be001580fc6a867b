"""`planner estimate CLUSTER JOB --plan SPEC`: one plan, explained."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from planner.cli.options import (
    EXIT_NO_FIT,
    EXIT_OK,
    ClusterArg,
    FrameworkOption,
    JobArg,
    JsonOption,
    emit_json,
    handles_input_errors,
    title,
)
from planner.cost.evaluate import evaluate
from planner.cost.inputs import load_inputs, parse_plan_spec
from planner.engines.profiles import AUTO, PROFILES, default_engine, engine_workload
from planner.engines.rules import engine_defaults, plan_problems
from planner.report import json as report_json
from planner.report import tables
from planner.spec.errors import InputError


@handles_input_errors
def estimate(
    cluster: Path = ClusterArg,
    job: Path = JobArg,
    plan: str = typer.Option(..., "--plan", help='Plan keys, e.g. "tp=8,pp=4,zero=1,recompute=selective,mbs=1".',
                             show_default=False),
    stages: bool = typer.Option(False, "--stages", help="Show every pipeline stage."),
    framework: Optional[str] = FrameworkOption,
    as_json: bool = JsonOption,
) -> None:
    """Evaluate one plan on its engine: memory breakdown, step time, fits or not (exit 0 fits, 1 does not).

    The engine is `framework=` in the plan, else --framework, else the job's; under auto, the engine
    the best plan of this layout would use (planner.engines.profiles.default_engine)."""
    inputs = load_inputs(cluster, job, framework)
    the_plan = parse_plan_spec(plan, inputs)
    if the_plan.framework == AUTO:  # the engine that runs it best, Megatron-Core where none can
        the_plan = the_plan.with_(framework=default_engine(the_plan, inputs.workload, inputs.cluster))
    workload = engine_workload(inputs.workload, the_plan.framework)
    # The rules of the plan's own engine: FSDP2 composes with pipeline stages, Megatron-Core's
    # ZeRO-3 does not.
    problems = plan_problems(the_plan, workload, inputs.cluster)
    if problems:
        raise InputError("; ".join(problems), field="--plan")
    the_plan = engine_defaults(the_plan, workload)
    refused = PROFILES[the_plan.framework].problems(the_plan, workload)
    if refused:
        raise InputError(f"{PROFILES[the_plan.framework].title} cannot run this plan: " + "; ".join(refused),
                         field="--plan")
    ev = evaluate(the_plan, workload, inputs.cluster)
    if as_json:
        emit_json(report_json.plan_document(ev))
    else:
        tables.console().print(tables.estimate_view(ev, title(inputs), stages))
    raise typer.Exit(EXIT_OK if ev.fits else EXIT_NO_FIT)
