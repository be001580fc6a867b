"""The report page: one self-contained HTML document (inline CSS and SVG, no scripts, no network).

Pure: the plans, the charts and the input files' text in, a string out. Memory in GiB (2^30
bytes), times in seconds or milliseconds, always with the unit.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from planner.cost.evaluate import Evaluation
from planner.report.charts import TIME_PARTS, Chart, part_label
from planner.report.tables import describe_layout, format_seconds, tightest_term

GiB = 2**30

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f;
       margin: 0 auto; max-width: 1180px; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 32px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 14px; margin: 18px 0 4px; }
.meta { color: #555; margin: 0 0 4px; }
.note { color: #555; font-size: 12px; }
.problem { color: #a00000; font-weight: 600; }
table { border-collapse: collapse; margin: 8px 0; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e5e5e5; text-align: right; white-space: nowrap; }
th { background: #f5f5f7; font-weight: 600; }
td.text, th.text { text-align: left; }
td.binding { color: #9a5b00; font-weight: 600; }
figure { margin: 12px 0 20px; }
figure svg { max-width: 100%; height: auto; }
figcaption { font-size: 12px; color: #555; }
pre { background: #f5f5f7; padding: 10px 14px; white-space: pre-wrap; overflow-wrap: anywhere; font-size: 12px; }
.inputs { display: flex; gap: 24px; flex-wrap: wrap; }
.inputs > div { flex: 1 1 420px; min-width: 0; }
"""

SCATTER_CAPTION = (
    "Each point is a legal layout at its default pipeline partition, and each best plan as chosen; the Pareto "
    "front joins the fitting ones that no other fitting one beats on both step time and memory. A best plan "
    "may sit apart from the points: the solver also moves layers between pipeline stages and chooses how many "
    "layers each stage recomputes.")


@dataclass(frozen=True)
class InputFile:
    """An input as the user gave it: its path and its text."""

    path: str
    text: str


@dataclass(frozen=True)
class PageContent:
    title: str
    summary: str
    """One line: solver status, objective, how many plans were considered, solve time."""
    plans: Sequence[Evaluation]
    memory_charts: Sequence[Chart]
    time_chart: Chart | None
    scatter: Chart
    inputs: Sequence[InputFile]
    explanation: str | None = None
    """Why no plan fits, when none does."""


def render_page(content: PageContent) -> str:
    body = [
        f"<h1>{escape(content.title)}</h1>",
        f'<p class="meta">{escape(content.summary)}</p>',
        '<p class="note">Memory in GiB (2<sup>30</sup> bytes), per GPU, of the most loaded pipeline stage; '
        "times per optimizer step.</p>",
        _plans_section(content.plans, content.explanation),
        _memory_section(content.memory_charts),
        _time_section(content.plans, content.time_chart),
        _section("Every plan considered", [_figure(content.scatter, SCATTER_CAPTION)], "considered"),
        _inputs_section(content.inputs),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{escape(content.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def _section(heading: str, parts: Sequence[str], section_id: str | None = None) -> str:
    ident = f' id="{section_id}"' if section_id else ""
    return f"<section{ident}>\n<h2>{escape(heading)}</h2>\n" + "\n".join(parts) + "\n</section>"


def _figure(chart: Chart, caption: str = "") -> str:
    text = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f"<figure>\n{chart.svg}\n{text}\n</figure>"


def _plans_section(plans: Sequence[Evaluation], explanation: str | None) -> str:
    if not plans:
        return _section("Best plans", [f'<p class="problem">{escape(explanation or "No plan fits.")}</p>'], "plans")
    header = ("#", "layout", "ZeRO", "recompute", "mbs × gas", "peak / usable", "headroom", "largest term",
              "step", "tokens/s", "MFU")
    rows = [_plan_row(rank, ev) for rank, ev in enumerate(plans, 1)]
    # The largest term of the tightest stage is what to shrink first: it gets the highlight.
    return _section("Best plans", [_table(header, rows, text_columns={1, 3, 7}, highlight_column=7)], "plans")


def _plan_row(rank: int, ev: Evaluation) -> list[str]:
    stage, term = tightest_term(ev)
    where = f"stage {stage}: " if len(ev.stages) > 1 else ""
    return [str(rank), describe_layout(ev), str(ev.plan.zero), ev.plan.recompute,
            f"{ev.plan.mbs} × {ev.plan.gas}", f"{_gib(ev.memory.total)} / {_gib(ev.capacity)}",
            _gib(ev.capacity - ev.memory.total), f"{where}{term.replace('_', ' ')}",
            format_seconds(ev.time.step), f"{ev.time.tokens_per_s:,.0f}", f"{ev.time.mfu:.1%}"]


def _memory_section(charts: Sequence[Chart]) -> str:
    figures = [_figure(c) for c in charts]
    return _section("Per-GPU memory by term", figures or ["<p>No plan to show.</p>"], "memory")


def _time_section(plans: Sequence[Evaluation], chart: Chart | None) -> str:
    if chart is None:
        return _section("Step time", ["<p>No plan to show.</p>"], "time")
    parts = [p for p in TIME_PARTS if any(getattr(ev.time, p) > 0 for ev in plans)]
    header = ("#", *(part_label(p) for p in parts), "step")
    rows = [[str(rank), *(format_seconds(getattr(ev.time, p)) for p in parts), format_seconds(ev.time.step)]
            for rank, ev in enumerate(plans, 1)]
    return _section("Step time", [_figure(chart), _table(header, rows, text_columns=set())], "time")


def _inputs_section(inputs: Sequence[InputFile]) -> str:
    blocks = [f"<div><h3>{escape(f.path)}</h3>\n<pre>{escape(f.text)}</pre></div>" for f in inputs]
    return _section("Inputs", ['<div class="inputs">' + "\n".join(blocks) + "</div>"], "inputs")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: set[int],
           highlight_column: int | None = None) -> str:
    def cell(tag: str, i: int, value: str) -> str:
        classes = ["text"] * (i in text_columns) + ["binding"] * (tag == "td" and i == highlight_column)
        cls = f' class="{" ".join(classes)}"' if classes else ""
        return f"<{tag}{cls}>{escape(value)}</{tag}>"
    head = "<tr>" + "".join(cell("th", i, h) for i, h in enumerate(header)) + "</tr>"
    body = ["<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows]
    return "<table>\n" + head + "\n" + "\n".join(body) + "\n</table>"


def _gib(n: float) -> str:
    return f"{n / GiB:,.2f} GiB"
