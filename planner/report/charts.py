"""The report's charts: data in, SVG text and PNG bytes out (matplotlib, Agg backend).

Each chart is drawn once and saved twice, so the page (inline SVG) and the PNGs beside it show
the same figure. Sizes are drawn in GiB (2^30 bytes) and times in seconds; the axis labels say so.
"""
from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

GiB = 2**30
MEMORY_TERMS = ("weights", "gradients", "optimizer", "master_weights", "activations", "buffers", "runtime")
TIME_PARTS = ("compute", "recompute", "bubble", "tp", "dp", "pp", "cp", "ep", "optimizer", "offload")
COMM_PARTS = ("tp", "dp", "pp", "cp", "ep")

# Okabe-Ito and Tableau colours: distinguishable with the common colour-vision deficiencies.
TERM_COLORS = {
    "weights": "#0072B2", "gradients": "#56B4E9", "optimizer": "#009E73", "master_weights": "#8FD6B5",
    "activations": "#E69F00", "buffers": "#CC79A7", "runtime": "#999999",
}
PART_COLORS = {
    "compute": "#0072B2", "recompute": "#56B4E9", "bubble": "#999999", "tp": "#D55E00", "dp": "#E69F00",
    "pp": "#CC79A7", "cp": "#F0E442", "ep": "#009E73", "optimizer": "#6A3D9A", "offload": "#B15928",
}
PNG_DPI = 110
# Above this many points the scatter is drawn as an image inside the SVG, keeping the page small.
RASTERIZE_ABOVE = 1500
# Where a plan's number may go on the scatter, in points from its marker, tried in this order.
LABEL_OFFSETS = ((6, 5), (6, -13), (-24, 5), (-24, -13), (6, 16), (-24, 16), (6, -24), (-24, -24))
LABEL_BOX_PT = (18, 10)
"""Room one `#n` label takes, points (8 pt bold, up to two digits)."""


@dataclass(frozen=True)
class Chart:
    id: str
    """Element id in the page and the PNG's file stem."""
    title: str
    svg: str
    """An <svg> element, without XML prolog, ready to inline in HTML."""
    png: bytes


@dataclass(frozen=True)
class Bar:
    """One stacked bar: a label and the value of each segment (bytes or seconds)."""

    label: str
    values: dict[str, float]
    group: str = ""
    """Bars of one group (the stages of one plan) are drawn together, a rule between groups."""


@dataclass(frozen=True)
class Point:
    """One considered plan: its step time (s), peak per-GPU bytes, and whether it fits."""

    step_s: float
    memory_bytes: float
    fits: bool


def term_label(term: str) -> str:
    return term.replace("_", " ")


def part_label(part: str) -> str:
    return f"exposed {part.upper()} comm" if part in COMM_PARTS else part


def memory_chart(chart_id: str, title: str, bars: Sequence[Bar], capacity_bytes: float) -> Chart:
    """Stacked horizontal bars of memory by term, with the usable capacity as a line."""
    fig, ax = _figure(len(bars))
    _stacked_bars(ax, bars, MEMORY_TERMS, TERM_COLORS, term_label, scale=GiB)
    ax.axvline(capacity_bytes / GiB, color="#C00000", linestyle="--", linewidth=1.2,
               label=f"usable {capacity_bytes / GiB:,.1f} GiB")
    ax.set_xlabel("per-GPU memory, GiB (2^30 bytes)")
    _finish(ax, title)
    return _render(fig, chart_id, title)


def time_chart(chart_id: str, title: str, bars: Sequence[Bar]) -> Chart:
    """Stacked horizontal bars of one optimizer step's wall time by part."""
    fig, ax = _figure(len(bars))
    longest = max((sum(bar.values.values()) for bar in bars), default=0.0)
    unit, scale = ("ms", 1e-3) if longest < 1 else ("s", 1.0)  # no axis of 0.025 s steps
    _stacked_bars(ax, bars, TIME_PARTS, PART_COLORS, part_label, scale=scale)
    ax.set_xlabel(f"time per optimizer step, {unit}")
    _finish(ax, title)
    return _render(fig, chart_id, title)


def scatter_chart(chart_id: str, title: str, points: Sequence[Point], capacity_bytes: float,
                  chosen: Sequence[Point]) -> Chart:
    """Every considered plan as peak memory against step time (log-log, left) and the plans that fit
    (linear, right), with the Pareto front and the chosen plans marked."""
    fig, (every, fitting) = pyplot().subplots(1, 2, figsize=(11, 4.8), constrained_layout=True)
    _scatter_points(every, points, len(points) > RASTERIZE_ABOVE)
    every.set_yscale("log")
    every.set_title("all plans (log scales)", loc="left", fontsize=10)
    _scatter_points(fitting, [p for p in points if p.fits], False)
    fitting.set_title("plans that fit", loc="left", fontsize=10)
    if not any(p.fits for p in points):
        fitting.text(0.5, 0.5, "no plan fits", transform=fitting.transAxes, ha="center", color="#C00000")
    for ax in (every, fitting):
        _pareto_and_chosen(ax, points, chosen)
        ax.axhline(capacity_bytes / GiB, color="#C00000", linestyle="--", linewidth=1.2,
                   label=f"usable {capacity_bytes / GiB:,.1f} GiB")
        ax.set_ylabel("peak per-GPU memory, GiB (2^30 bytes)")
        ax.grid(True, which="major", alpha=0.3)
        ax.set_axisbelow(True)
    every.set_xscale("log")
    for axis in (every.xaxis, every.yaxis):
        _plain_log_ticks(axis)
    every.set_xlabel("step time, s (log scale)")
    fitting.set_xlabel("step time, s")
    fitting.set_ylim(bottom=0)
    fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    handles, labels = every.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.draw_without_rendering()  # the final layout, so labels are placed where they will be drawn
    _number_plans(fitting, chosen)  # the log panel is too crowded near the best plans for numbers
    return _render(fig, chart_id, title)


def _plain_log_ticks(axis) -> None:
    """Tick labels 20, 50, 100, 200 ... on a log axis, rather than 2×10^1 or none between decades."""
    from matplotlib import ticker

    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}" if f"{v:e}"[0] in "25" else ""))


def _scatter_points(ax, points: Sequence[Point], rasterized: bool) -> None:
    for fits, style in ((False, {"color": "#BBBBBB", "label": "does not fit"}),
                        (True, {"color": "#56B4E9", "label": "fits"})):
        group = [p for p in points if p.fits == fits]
        if group:
            ax.scatter([p.step_s for p in group], [p.memory_bytes / GiB for p in group], s=9, alpha=0.7,
                       linewidths=0, rasterized=rasterized, **style)


def _pareto_and_chosen(ax, points: Sequence[Point], chosen: Sequence[Point]) -> None:
    front = [points[i] for i in pareto_front(points)]
    if front:
        ax.plot([p.step_s for p in front], [p.memory_bytes / GiB for p in front], color="#D55E00",
                marker="o", markersize=4, linewidth=1.4, drawstyle="steps-post", label="Pareto front (fits)")
    if chosen:
        ax.scatter([p.step_s for p in chosen], [p.memory_bytes / GiB for p in chosen], s=55,
                   facecolors="none", edgecolors="black", linewidths=1.2, label="best plans (#rank)", zorder=3)


def _number_plans(ax, chosen: Sequence[Point]) -> None:
    for rank, (p, offset) in enumerate(zip(chosen, _label_offsets(ax, chosen)), 1):
        ax.annotate(f"#{rank}", (p.step_s, p.memory_bytes / GiB), xytext=offset, textcoords="offset points",
                    fontsize=8, fontweight="bold")


def _label_offsets(ax, chosen: Sequence[Point]) -> list[tuple[int, int]]:
    """For each chosen plan, the first offset whose label box overlaps no earlier label (greedy):
    the best plans often sit close together."""
    scale = ax.figure.dpi / 72  # points to pixels
    width, height = LABEL_BOX_PT[0] * scale, LABEL_BOX_PT[1] * scale
    taken: list[tuple[float, float]] = []
    offsets = []
    for p in chosen:
        x, y = ax.transData.transform((p.step_s, p.memory_bytes / GiB))
        for dx, dy in LABEL_OFFSETS:
            corner = (x + dx * scale, y + dy * scale)
            if all(abs(corner[0] - tx) >= width or abs(corner[1] - ty) >= height for tx, ty in taken):
                break
        else:
            dx, dy = LABEL_OFFSETS[0]  # crowded everywhere: overprint rather than drop the number
            corner = (x + dx * scale, y + dy * scale)
        taken.append(corner)
        offsets.append((dx, dy))
    return offsets


def pareto_front(points: Sequence[Point]) -> list[int]:
    """Indices of the fitting plans no other fitting plan beats on both step time and memory,
    by increasing step time."""
    fitting = sorted((i for i, p in enumerate(points) if p.fits),
                     key=lambda i: (points[i].step_s, points[i].memory_bytes))
    front, least_memory = [], float("inf")
    for i in fitting:
        if points[i].memory_bytes < least_memory:
            front.append(i)
            least_memory = points[i].memory_bytes
    return front


def _figure(bars: int) -> tuple[Figure, object]:
    # Height grows with the number of bars so labels never overlap; many bars get thinner.
    per_bar = 0.45 if bars <= 8 else 0.3
    return pyplot().subplots(figsize=(9, 1.6 + per_bar * max(bars, 1)), constrained_layout=True)


def _stacked_bars(ax, bars: Sequence[Bar], keys: Sequence[str], colors: dict[str, str], label,
                  scale: float) -> None:
    positions = range(len(bars))
    left = [0.0] * len(bars)
    for key in keys:
        widths = [bar.values.get(key, 0.0) / scale for bar in bars]
        if not any(widths):
            continue  # a part no plan has stays out of the legend
        ax.barh(positions, widths, left=left, color=colors[key], label=label(key), height=0.6,
                edgecolor="white", linewidth=0.5)
        left = [a + b for a, b in zip(left, widths)]
    ax.set_yticks(list(positions), [bar.label for bar in bars])
    for i in range(1, len(bars)):
        if bars[i].group != bars[i - 1].group:
            ax.axhline(i - 0.5, color="#666666", linewidth=0.8)
    ax.invert_yaxis()  # first bar on top, as in the tables


@lru_cache(maxsize=1)
def pyplot():
    """matplotlib.pyplot on the Agg backend (files only: no display, no GUI toolkit), loaded by the
    first chart rather than with the module: the commands that draw nothing never pay for it.
    Without a configured MPLCONFIGDIR, matplotlib's configuration and font cache go to a folder of
    this user's under the temporary folder (kept, so the font list is built once), never the home
    folder, which may not be writable."""
    if not os.environ.get("MPLCONFIGDIR"):
        os.environ["MPLCONFIGDIR"] = _private_temp_folder("planner-matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _private_temp_folder(name: str) -> str:
    """`name` under the temporary folder, owned by this user and closed to others; a fresh folder
    when that one belongs to someone else."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    path = os.path.join(tempfile.gettempdir(), f"{name}-{uid}" if uid is not None else name)
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
        if os.path.isdir(path) and not os.path.islink(path) and (uid is None or info.st_uid == uid):
            return path
    except OSError:
        pass
    return tempfile.mkdtemp(prefix=f"{name}-")


def _finish(ax, title: str) -> None:
    ax.set_title(title, loc="left", fontsize=11)
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)


def _render(fig: Figure, chart_id: str, title: str) -> Chart:
    svg = io.StringIO()
    png = io.BytesIO()
    # Text stays text in the SVG (smaller, selectable); fixed hash salt and no date keep output stable.
    plt = pyplot()
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": chart_id}):
        fig.savefig(svg, format="svg", metadata={"Date": None})
    fig.savefig(png, format="png", dpi=PNG_DPI, metadata={"Software": None})
    plt.close(fig)
    return Chart(id=chart_id, title=title, svg=_inline_svg(svg.getvalue(), chart_id, title), png=png.getvalue())


def _inline_svg(document: str, chart_id: str, title: str) -> str:
    """The <svg> element of a standalone SVG file, with an id and an accessible title.

    Several charts share one page, so every id inside is prefixed with the chart's id (matplotlib
    numbers `axes_1`, `patch_1` ... from one in each file), and the RDF metadata block is dropped.
    """
    element = document[document.index("<svg"):]
    element = re.sub(r"<metadata>.*?</metadata>\s*", "", element, flags=re.S)
    element = re.sub(r'\bid="([^"]+)"', rf'id="{chart_id}-\1"', element)
    element = re.sub(r'(url\(#|href="#)([^")]+)', rf"\1{chart_id}-\2", element)
    label = escape(title, quote=True)
    return re.sub(r"<svg\b", f'<svg id="{chart_id}" role="img" aria-label="{label}"', element, count=1)
