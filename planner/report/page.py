"""A report from a search: the charts and the page, assembled in memory before anything is written.

Pure: evaluated plans in, file names and bytes out; `planner report` writes them.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from planner.cost.evaluate import Evaluation
from planner.cost.memory import MemoryBreakdown, StageMemory
from planner.report import charts
from planner.report.charts import Bar, Chart, Point
from planner.report.html import InputFile, PageContent, render_page
from planner.report.tables import describe_layout
from planner.search.result import SolveResult


@dataclass(frozen=True)
class Report:
    html: str
    charts: tuple[Chart, ...]

    def files(self, page_name: str) -> dict[str, bytes]:
        """File name -> content: the page and one PNG per chart."""
        return {page_name: self.html.encode("utf-8"), **{f"{c.id}.png": c.png for c in self.charts}}


def build_report(title: str, result: SolveResult, considered: Sequence[Evaluation], capacity: int,
                 inputs: Sequence[InputFile], explanation: str | None) -> Report:
    """`capacity`: bytes a plan may use per GPU (the cluster's usable memory less its reserve)."""
    plans = result.plans
    memory = memory_charts(plans, capacity)
    time = charts.time_chart("step-time", "Step time by part", time_bars(plans)) if plans else None
    # The chosen plans join the points: with their own partition and recompute counts they may
    # differ from every layout's default, and belong on the Pareto front when nothing beats them.
    scatter = charts.scatter_chart("memory-vs-step-time", "Every plan considered: memory against step time",
                                   scatter_points([*considered, *plans]), capacity, [_point(ev) for ev in plans])
    summary = (f"{result.status} · objective {result.objective} · {result.candidates:,} legal plans considered"
               f" · searched in {result.seconds_text()}")
    html = render_page(PageContent(title=title, summary=summary, plans=plans, memory_charts=memory,
                                   time_chart=time, scatter=scatter, inputs=inputs, explanation=explanation))
    return Report(html=html, charts=tuple(memory) + ((time,) if time else ()) + (scatter,))


def memory_charts(plans: Sequence[Evaluation], capacity: int) -> list[Chart]:
    """One chart comparing the plans' most loaded stages, one with every stage of every plan."""
    if not plans:
        return []
    return [
        charts.memory_chart("memory-plans", "Most loaded stage of each plan", plan_memory_bars(plans), capacity),
        charts.memory_chart("memory-stages", "Every pipeline stage of each plan", stage_memory_bars(plans), capacity),
    ]


def plan_memory_bars(plans: Sequence[Evaluation]) -> list[Bar]:
    return [Bar(f"#{rank} {describe_layout(ev)}", _memory_values(ev.memory)) for rank, ev in enumerate(plans, 1)]


def stage_memory_bars(plans: Sequence[Evaluation]) -> list[Bar]:
    return [Bar(f"#{rank} stage {s.stage} ({_layers_text(s)})", _memory_values(s.memory), group=f"#{rank}")
            for rank, ev in enumerate(plans, 1) for s in ev.stages]


def _layers_text(stage: StageMemory) -> str:
    # Partial recompute (some layers of a stage) is worth seeing next to the stage's memory.
    partial = 0 < stage.recompute_layers < stage.layers
    return f"{stage.layers} layers" + (f", {stage.recompute_layers} recomputed" if partial else "")


def time_bars(plans: Sequence[Evaluation]) -> list[Bar]:
    return [Bar(f"#{rank}", {part: getattr(ev.time, part) for part in charts.TIME_PARTS})
            for rank, ev in enumerate(plans, 1)]


def scatter_points(considered: Sequence[Evaluation]) -> list[Point]:
    # A plan whose time is undefined (no throughput) has no place on a log axis.
    return [p for p in map(_point, considered) if math.isfinite(p.step_s) and p.step_s > 0]


def _point(ev: Evaluation) -> Point:
    return Point(step_s=ev.time.step, memory_bytes=ev.memory.total, fits=ev.fits)


def _memory_values(memory: MemoryBreakdown) -> dict[str, float]:
    return {term: getattr(memory, term) for term in charts.MEMORY_TERMS}

