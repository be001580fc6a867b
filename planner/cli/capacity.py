"""`planner capacity JOB --gpu NAME`: GPUs, time and cost to train the job's token budget."""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from planner.cli.options import (
    FrameworkOption,
    JobsOption,
    JsonOption,
    ObjectiveOption,
    SolverOption,
    choice,
    emit_json,
    handles_input_errors,
)
from planner.cost.cluster import Cluster, build_cluster, resolve_accelerator
from planner.cost.inputs import JobInputs, load_job_inputs
from planner.engines.profiles import cannot_run, engine_workload, engines_for
from planner.report import json as report_json
from planner.report import tables
from planner.search.capacity import CapacityRow, cluster_for, plan_capacities
from planner.search.objectives import OBJECTIVES, SOLVERS
from planner.search.parallel import worker_count
from planner.search.space import default_optimizers, default_precisions
from planner.spec import load_cluster
from planner.spec.cluster import MAX_WORLD
from planner.spec.errors import InputError, shown
from planner.spec.reading import path_kind
from planner.spec.writing import write_file

MAX_PRICE = 1e6
"""A price per GPU-hour, at most (as cluster.yaml's price_per_gpu_hour)."""


@handles_input_errors
def capacity(
    job: Path = typer.Argument(..., help="job.yaml: model, sequence length, global batch and `tokens`.",
                               show_default=False),
    gpu: list[str] = typer.Option([], "--gpu", help="A GPU type to plan for (repeat for several)."),
    price: list[float] = typer.Option([], "--price", help="Price per GPU-hour: once for all, or once per --gpu."),
    cluster: Optional[Path] = typer.Option(None, "--cluster",
                                           help="cluster.yaml whose node, network and price are the template."),
    max_gpus: int = typer.Option(1024, "--max-gpus", min=1, max=MAX_WORLD,
                                 help=f"Largest GPU count to try (at most {MAX_WORLD:,})."),
    objective: str = ObjectiveOption,
    solver: str = SolverOption,
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG of days and cost against GPUs."),
    framework: Optional[str] = FrameworkOption,
    jobs: Optional[int] = JobsOption,
    as_json: bool = JsonOption,
) -> None:
    """For GPU counts from the fewest that fit upward: best plan (and its engine), tokens/s, days and cost."""
    choice(objective, OBJECTIVES, "--objective")
    choice(solver, SOLVERS, "--solver")
    _check_price_and_plot(price, plot)
    inputs = load_job_inputs(job, framework=framework)
    template = build_cluster(load_cluster(cluster), str(cluster)) if cluster else None
    names = gpu or ([template.gpu.id] if template else [])
    if not names:
        raise InputError("give at least one --gpu NAME (see `planner gpus`) or a --cluster file", field="--gpu")
    if len(price) not in (0, 1, len(names)):
        raise InputError(f"give one --price for all GPUs or one per --gpu ({len(names)}), not {len(price)}",
                         field="--price")
    prices = price * len(names) if len(price) == 1 else (price or [None] * len(names))
    nodes = [cluster_for(resolve_accelerator(name), template, p) if not (template and name == template.gpu.id)
             else cluster_for(template.gpu, template, p) for name, p in zip(names, prices)]

    status = _Status(enabled=not as_json)
    try:
        rows = _capacity_rows(inputs, nodes, max_gpus, objective, solver, worker_count(jobs), status.show)
    finally:
        status.close()
    if plot is not None:
        write_file(plot, _plot_png(rows), field="--plot")
    if as_json:
        emit_json({"rows": [
            {"gpu": r.gpu, "gpus": r.gpus, "nodes": r.nodes,
             "plan": report_json.plan_document(r.best) if r.best else None,
             "tokens_per_s": r.tokens_per_s, "days": r.days, "cost": r.cost}
            for r in rows]})
    else:
        tables.console().print(_table(rows, inputs.workload.arch.name, inputs.workload.tokens))


def _capacity_rows(inputs: JobInputs, nodes: list[Cluster], max_gpus: int, objective: str, solver: str,
                   jobs: int, progress: Callable[[str], None]) -> list[CapacityRow]:
    """The rows of each engine the job's framework names; under auto, at each GPU count the
    fastest engine's best plan. The engines' searches share the `jobs` worker processes."""
    names, workloads = [], []
    for name in engines_for(inputs.framework):
        workload = engine_workload(inputs.workload, name)
        if cannot_run(name, workload, inputs.defaults, inputs.job.constraints,
                      default_precisions(inputs.defaults.precision, nodes[0]),
                      default_optimizers(inputs.defaults.optimizer)):
            continue
        names.append(name)
        workloads.append(workload)

    def searched(index: int, cluster: Cluster, done: int, known: int) -> None:
        progress(f"searched {done} of {known}: {names[index]} on {cluster.gpu.id} × {cluster.world}")

    by_size: dict[tuple[str, int], CapacityRow] = {}
    for engine_rows in plan_capacities(workloads, inputs.defaults, inputs.job.constraints, nodes, max_gpus=max_gpus,
                                       objective=objective, solver=solver, progress=searched, jobs=jobs):
        for row in engine_rows:
            key = (row.gpu, row.gpus)
            old = by_size.get(key)
            if old is None or (row.best is not None and (old.best is None or row.best.time.step < old.best.time.step)):
                by_size[key] = row
    order = [n.gpu.id for n in nodes]
    rows = sorted(by_size.values(), key=lambda r: (order.index(r.gpu), r.gpus))
    # A GPU count that fits on some engine replaces the "nothing fits" row another engine gave.
    return [r for r in rows if r.gpus or not any(o.gpu == r.gpu and o.gpus for o in rows)] or \
        [CapacityRow(gpu=n.gpu.id, gpus=0, nodes=0, best=None, price_per_gpu_hour=n.price_per_gpu_hour,
                     tokens=inputs.workload.tokens) for n in nodes]


class _Status:
    """A spinner on stderr (rich; off when not a terminal) saying how far the searches are. It
    starts with the first search done, after the worker processes (parallel.py) are forked
    from a process with no thread of its own: rich redraws from a thread."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and tables.console(stderr=True).is_terminal
        self.bar: Progress | None = None

    def show(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                                console=tables.console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(text, total=None)
        self.bar.update(self.task, description=text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _check_price_and_plot(price: list[float], plot: Path | None) -> None:
    """Checked before any search: a cost from a NaN or negative price is no answer, and a plot
    that cannot be written should not cost the search first."""
    for p in price:
        if not (math.isfinite(p) and 0 <= p <= MAX_PRICE):
            raise InputError(f"{p}: a price per GPU-hour is a number from 0 to {MAX_PRICE:,.0f}", field="--price")
    if plot is not None and plot.suffix.lower() != ".png":
        raise InputError(f"{shown(str(plot))}: the plot is written as PNG; name the file *.png", field="--plot")
    if plot is not None and path_kind(plot, follow=False) == "directory":
        raise InputError(f"{shown(str(plot))} is a folder; name a *.png file", field="--plot")


def _table(rows: list[CapacityRow], model: str, tokens: float | None) -> Table:
    budget = f" · {tokens:.3g} tokens" if tokens else " · no `tokens` budget in the job: days and cost not computed"
    table = Table(title=f"Capacity for {model}{budget}", title_justify="left", header_style="bold")
    for col in ("GPU", "GPUs", "nodes", "engine", "best plan", "peak GiB", "tokens/s", "MFU", "days", "cost"):
        table.add_column(col, justify="left" if col in ("GPU", "engine", "best plan") else "right", no_wrap=True)
    for r in rows:
        if r.best is None:
            reason = "no GPU count up to the limit fits" if r.gpus == 0 else "no plan fits"
            table.add_row(r.gpu, str(r.gpus or "-"), str(r.nodes or "-"), "-", Text(reason, style="red"),
                          "-", "-", "-", "-", "-")
            continue
        ev = r.best
        table.add_row(r.gpu, f"{r.gpus:,}", str(r.nodes), ev.plan.framework, tables.describe_layout(ev),
                      f"{ev.memory.total / 2**30:,.1f}", f"{r.tokens_per_s:,.0f}", f"{ev.time.mfu:.1%}",
                      _days(r.days),
                      f"{r.cost:,.0f}" if r.cost is not None else "-")
    return table


def _days(days: float | None) -> str:
    if days is None:
        return "-"
    return f"{days:,.1f}" if days >= 10 else f"{days:.2f}"


def _plot_png(rows: list[CapacityRow]) -> bytes:
    """The plot as PNG bytes, rendered before anything is written."""
    import io

    from planner.report.charts import pyplot  # matplotlib on Agg, loaded only to draw

    plt = pyplot()

    fig, (days_ax, cost_ax) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for gpu in dict.fromkeys(r.gpu for r in rows):
        mine = [r for r in rows if r.gpu == gpu and r.best is not None]
        gpus = [r.gpus for r in mine]
        if any(r.days is not None for r in mine):
            days_ax.plot(gpus, [r.days for r in mine], marker="o", label=gpu)
        if any(r.cost is not None for r in mine):
            cost_ax.plot(gpus, [r.cost for r in mine], marker="o", label=gpu)
    for ax, label in ((days_ax, "days to train the token budget"), (cost_ax, "cost (price per GPU-hour × GPU-hours)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("GPUs")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    plt.close(fig)
    return png.getvalue()
