"""The `planner` command: parse, load, compute, render; errors become exit codes (INTERFACE.md).

Exit codes: 0 success (a plan found / fits), 1 no plan fits / does not fit, 2 bad input.
"""
from __future__ import annotations

import functools
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hardware import catalog
from planner.errors import InputError, unknown_name
from planner.partial import describe as describe_partial
from planner.evaluate import evaluate
from planner.frameworks import EMIT_KINDS
from planner.frameworks.emit import write_emits
from planner.inputs import Inputs, load_inputs, parse_plan_spec
from planner.model import count_params, list_presets, load_architecture
from planner.report import json as report_json
from planner.report import tables
from planner.rules import plan_problems
from planner.search import OBJECTIVES, SOLVERS, SolveResult, search
from planner.search.explain import explain_infeasible
from planner.search.layouts import Layout
from planner.search.space import candidate_plans
from planner.search.table import build_table

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Plan how to train a language model on a GPU cluster, and check that it fits, before a GPU-hour is spent.",
)

EXIT_OK, EXIT_NO_FIT, EXIT_BAD_INPUT = 0, 1, 2

JsonOption = typer.Option(False, "--json", help="Print exactly one JSON document on stdout (INTERFACE.md).")
ClusterArg = typer.Argument(..., help="cluster.yaml: GPU type, GPUs per node, nodes, network.", show_default=False)
JobArg = typer.Argument(..., help="job.yaml: model, training mode, sequence length, global batch, constraints.",
                        show_default=False)
ObjectiveOption = typer.Option("step-time", "--objective", help="step-time | comm | memory | cost")
SolverOption = typer.Option("cp-sat", "--solver", help="cp-sat | brute (enumerates the same space).")
TimeLimitOption = typer.Option(None, "--time-limit", min=0.01, help="Solver time limit, seconds.")


def _fail(message: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"error": message}))
    tables.console(stderr=True).print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    raise typer.Exit(EXIT_BAD_INPUT)


def handles_input_errors(command):
    """Bad input becomes one paragraph on stderr and exit 2, never a traceback."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except InputError as exc:
            _fail(str(exc), kwargs.get("as_json", False))
    return wrapper


def _emit_json(document: dict) -> None:
    print(json.dumps(document, indent=2))


def _choice(value: str, valid: tuple[str, ...], option: str) -> str:
    if value not in valid:
        raise InputError(unknown_name("value", value, valid), field=option)
    return value


def _title(inputs: Inputs) -> str:
    c = inputs.cluster
    training = inputs.job.training
    if inputs.workload.partial is not None:
        training += f" ({describe_partial(inputs.workload.partial, inputs.workload.arch)})"
    return (f"{inputs.workload.arch.name} · {training} · seq {inputs.workload.seq_len:,} · "
            f"global batch {inputs.workload.global_batch:,} on {c.nodes} × {c.gpus_per_node} {c.gpu.id}")


@app.command()
@handles_input_errors
def solve(
    cluster: Path = ClusterArg,
    job: Path = JobArg,
    top: int = typer.Option(5, "--top", min=1, help="How many distinct plans to return."),
    objective: str = ObjectiveOption,
    time_limit: Optional[float] = TimeLimitOption,
    solver: str = SolverOption,
    emit: Optional[str] = typer.Option(None, "--emit", show_default=False,
                                       help="deepspeed | megatron | torchrun: write launch files for the best plan."),
    out: Optional[Path] = typer.Option(None, "--out", help="Directory for --emit (created).", show_default=False),
    as_json: bool = JsonOption,
) -> None:
    """Search the plan space; print the best plans with per-GPU memory by term."""
    _choice(objective, OBJECTIVES, "--objective")
    _choice(solver, SOLVERS, "--solver")
    if emit is not None:
        _choice(emit, EMIT_KINDS, "--emit")
    if (emit is None) != (out is None):
        raise InputError("--emit and --out go together", field="--emit" if emit is None else "--out")
    inputs = load_inputs(cluster, job)
    result, _, explanation = search_job(inputs, objective, top, solver, time_limit, show_progress=not as_json)
    # Launch files for the best plan; rendered in full before anything is written (bad input
    # writes nothing), and nothing at all when no plan fits.
    written = write_emits(emit, result.plans[0], inputs, out) if emit is not None and result.plans else []
    if as_json:
        document = report_json.solve_document(result, explanation)
        if emit is not None:
            document["emitted"] = [str(p) for p in written]
        _emit_json(document)
    else:
        console = tables.console()
        console.print(tables.solve_view(result, _title(inputs), explanation))
        for path in written:
            console.print(f"wrote {path}")
        if emit is not None and not result.plans:
            console.print(f"--emit {emit}: nothing written, no plan fits")
    raise typer.Exit(EXIT_OK if result.plans else EXIT_NO_FIT)


def search_job(inputs: Inputs, objective: str, top: int, solver: str, time_limit: float | None,
               show_progress: bool) -> tuple[SolveResult, list[Layout], str | None]:
    """The best plans of a job, the candidate layouts searched, and why none fits when none does;
    a progress bar on stderr while the layouts are evaluated."""
    w, c, d, k = inputs.workload, inputs.cluster, inputs.defaults, inputs.job.constraints
    plans = list(candidate_plans(w, c, d, k))
    with _progress(len(plans), "evaluating plans", enabled=show_progress) as advance:
        rows = build_table(plans, w, c, objective, advance) if plans else []
    result = search(w, c, d, k, objective=objective, top=top, solver=solver, time_limit=time_limit, rows=rows)
    explanation = explain_infeasible(rows, result.conflict, w, c, d, k) if result.status == "infeasible" else None
    return result, rows, explanation


class _progress:
    """A progress bar on stderr for searches that take more than a second (rich; off when not a
    TTY): it appears once the first second has passed."""

    DELAY_S = 1.0

    def __init__(self, total: int, label: str, enabled: bool):
        self.enabled = enabled and total > 0 and sys.stderr.isatty()
        self.total, self.label = total, label
        self.bar = None

    def __enter__(self):
        if not self.enabled:
            return None
        start = time.perf_counter()

        def advance(done: int) -> None:
            if self.bar is None:
                if time.perf_counter() - start < self.DELAY_S:
                    return
                self.bar = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                    console=tables.console(stderr=True), transient=True)
                self.bar.start()
                self.task = self.bar.add_task(self.label, total=self.total)
            if done % 50 == 0 or done == self.total:
                self.bar.update(self.task, completed=done)
        return advance

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False


@app.command()
@handles_input_errors
def estimate(
    cluster: Path = ClusterArg,
    job: Path = JobArg,
    plan: str = typer.Option(..., "--plan", help='Plan keys, e.g. "tp=8,pp=4,zero=1,recompute=selective,mbs=1".',
                             show_default=False),
    stages: bool = typer.Option(False, "--stages", help="Show every pipeline stage."),
    as_json: bool = JsonOption,
) -> None:
    """Evaluate one plan: memory breakdown, step time, fits or not (exit 0 fits, 1 does not)."""
    inputs = load_inputs(cluster, job)
    the_plan = parse_plan_spec(plan, inputs)
    problems = plan_problems(the_plan, inputs.workload, inputs.cluster)
    if problems:
        raise InputError("; ".join(problems), field="--plan")
    ev = evaluate(the_plan, inputs.workload, inputs.cluster)
    if as_json:
        _emit_json(report_json.plan_document(ev))
    else:
        tables.console().print(tables.estimate_view(ev, _title(inputs), stages))
    raise typer.Exit(EXIT_OK if ev.fits else EXIT_NO_FIT)


@app.command()
def gpus(as_json: bool = JsonOption) -> None:
    """List the accelerator catalog."""
    gpus = list(catalog().values())
    if as_json:
        _emit_json({"gpus": [
            {"id": g.id, "name": g.name, "vendor": g.vendor, "memory": g.memory_bytes, "usable": g.usable_bytes,
             "peak_flops": g.peak_flops, "hbm_bandwidth": g.hbm_bandwidth,
             "scale_up": {"kind": g.scale_up_kind, "topology": g.scale_up_topology, "domain": g.scale_up_domain,
                          "bandwidth": g.scale_up_bandwidth, "per_peer_bandwidth": g.per_peer_bandwidth},
             "host_link_bandwidth": g.host_link_bandwidth, "nic_gbps_per_gpu": g.nic_gbps_per_gpu,
             "source": g.source, "confidence": g.confidence}
            for g in gpus]})
    else:
        tables.console().print(tables.gpus_view(gpus))


@app.command()
def models(as_json: bool = JsonOption) -> None:
    """List the model presets."""
    rows = []
    for name in list_presets():
        arch = load_architecture(name)
        rows.append((name, arch, count_params(arch)))
    if as_json:
        _emit_json({"models": [
            {"name": name, "family": arch.family, "total": counts.total, "active": counts.active,
             "layers": arch.num_layers, "hidden": arch.hidden}
            for name, arch, counts in rows]})
    else:
        tables.console().print(tables.models_view(rows))


import planner.commands  # noqa: E402,F401  (registers the commands of planner/commands/)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings are for people at a terminal: one line on stderr, no source line."""
    print(f"warning: {message}", file=sys.stderr)


def main() -> None:
    warnings.showwarning = _show_warning
    app()


if __name__ == "__main__":
    main()
