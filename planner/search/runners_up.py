"""The runners-up of the best plan, and the best plans of other shapes: the next best layouts,
each at its own best point, exact.

CP-SAT proves the best plan optimal quickly: a layout that cannot beat the incumbent is cut by
bounds. A runner-up is harder: after a no-good cut on the layout found, proving the next one
means finding that layout's own optimum, and CP-SAT's search over a layout's partition and
recompute counts can take seconds where enumerating them takes milliseconds (a Llama-3-70B
layout on 64 H100: not proven in 14 s, 0.06 s enumerated). So the runners-up are found by branch
and bound over the layouts: in order of their lower bounds (point.lower_bound), each at its best
point (`layout_best`: brute.best_point's answer, every partition at once where it can), until
the ones found cost no
more than the lowest bound left. Every layout not enumerated costs at least its bound, so the
runners-up are the true next best; equal costs rank in table order, as brute force ranks them.
"""
from __future__ import annotations

import time

import numpy as np

from planner.search.brute import best_point
from planner.search.layouts import Layout
from planner.search.point import STAGE_KEYS, UNREACHABLE, Point, layout_forbidden, split_matrix, untimed_unfit
from planner.spec.job import Constraint


def next_best(layouts: list[Layout], bounds: list[int], count: int, constraints: dict[str, Constraint],
              capacity_kib: int, host_capacity_kib: int | None, objective: str, layers: int, *,
              skip: Layout | None = None, deadline: float | None = None) -> list[Point]:
    """The `count` best layouts (but `skip`), each at its best point, best first. `bounds`: each
    layout's lower bound; `deadline` (perf_counter): stop there with those found."""
    order = sorted(range(len(layouts)), key=lambda i: (bounds[i], i))
    found: list[tuple[int, int, Point]] = []  # (cost, table index, point), best first
    for i in order:
        if len(found) == count and found[-1][0] <= bounds[i]:
            break  # no layout left can beat the last one found
        if bounds[i] >= UNREACHABLE or (deadline is not None and time.perf_counter() >= deadline):
            break
        if layouts[i] is skip:
            continue
        point = layout_best(layouts[i], constraints, capacity_kib, host_capacity_kib, objective, layers)
        if point is not None:
            found.append((point.cost, i, point))
            found.sort(key=lambda f: f[:2])
            del found[count:]
    return [p for _, _, p in found]


def layout_best(layout: Layout, constraints: dict[str, Constraint], capacity_kib: int,
                host_capacity_kib: int | None, objective: str, layers: int) -> Point | None:
    """The layout's best point (brute.best_point's cost), every partition at once where each
    class's least recompute that fits is its best: step time that never falls with recompute
    (pace c, w ≥ 0), a tail that ignores it, memory that never grows with it beyond the working
    set (c ≤ 0 ≤ w), and no bounds on the stage variables or host memory. Then each class
    recomputes the fewest layers that fit, which minimizes both maxima of the step at once."""
    if layout.exact or objective not in ("step-time", "cost") or any(k in constraints for k in STAGE_KEYS) \
            or (host_capacity_kib is not None and layout.plan.offload != "none") or not _monotone(layout):
        return best_point(layout, constraints, capacity_kib, host_capacity_kib, objective, layers)
    if layout_forbidden(layout, constraints) or untimed_unfit(layout, capacity_kib, objective):
        return None
    split = split_matrix(layout, layers)
    feasible = np.ones(len(split), dtype=bool)
    pace = np.zeros(len(split), dtype=np.int64)
    tail = np.zeros(len(split), dtype=np.int64)
    recomputed = []
    for k, cls in enumerate(layout.classes):
        n = split[:, k]
        a, b, c, w = layout.mem[k]
        fits_without = a + b * n <= capacity_kib
        if cls.recompute == "none":
            r, fits = np.zeros_like(n), fits_without
        elif cls.recompute == "all":
            r = np.where(fits_without, 0, n)
            fits = fits_without | ((n > 0) & (a + (b + c) * n + w <= capacity_kib))
        elif c < 0:  # the fewest layers r >= 1 with a + b·n + c·r + w within capacity
            need = np.maximum(1, -((a + b * n + w - capacity_kib) // c))
            r = np.where(fits_without, 0, need)
            fits = fits_without | (need <= n)
        else:
            r, fits = np.zeros_like(n), fits_without
        pa, pb, pc, pw = layout.pace[k]
        pace = np.maximum(pace, pa + pb * n + pc * r + pw * (r > 0))
        tail = np.maximum(tail, layout.tail[k][0] + layout.tail[k][1] * n)
        feasible &= fits
        recomputed.append(r)
    if not feasible.any():
        return None
    cost = np.where(feasible, pace + tail, np.iinfo(np.int64).max)
    j = int(np.argmin(cost))
    return Point(layout=layout, layers=tuple(int(v) for v in split[j]),
                 recomputed=tuple(int(r[j]) for r in recomputed), cost=int(cost[j]) + layout.const)


def _monotone(layout: Layout) -> bool:
    return all(m[2] <= 0 <= m[3] and p[2] >= 0 and p[3] >= 0 and t[2] == 0 and t[3] == 0
               for m, p, t in zip(layout.mem, layout.pace, layout.tail))
