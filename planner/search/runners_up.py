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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np

from planner.search.brute import SHARED_UNFIT, best_point, shared_costs
from planner.search.layouts import Layout
from planner.search.point import (
    STAGE_KEYS,
    UNREACHABLE,
    Point,
    layout_forbidden,
    shared_counts,
    split_matrix,
    untimed_unfit,
)
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


_known: dict[tuple[int, str], Point | None] | None = None


@contextmanager
def known_points() -> Iterator[None]:
    """Within it, each layout's best point is found once (`layout_best`), keyed on the layout's
    identity and the objective: for one search, which keeps its layouts alive and its
    constraints, capacities and layers fixed. The solver's warm start, its ties, the runners-up
    and the other families' bests read many of the same layouts, and so do the runners-up of a
    table built in order of its floors (bounded.py). Nested, the outermost scope holds."""
    global _known
    outer = _known
    if outer is None:
        _known = {}
    try:
        yield
    finally:
        _known = outer


def recall(layouts: Iterable[Layout], objective: str) -> list[tuple[Layout, Point | None]]:
    """The best points found of these layouts within `known_points` (for another process, which
    `remember`s them: pickled with their layouts, the points keep them)."""
    if _known is None:
        return []
    return [(layout, _known[id(layout), objective]) for layout in layouts if (id(layout), objective) in _known]


def remember(found: Iterable[tuple[Layout, Point | None]], objective: str) -> None:
    """Takes the layouts' best points as found (`recall`), within `known_points`, for the same
    constraints, capacities and layers."""
    if _known is not None:
        for layout, point in found:
            _known[id(layout), objective] = point


def layout_best(layout: Layout, constraints: dict[str, Constraint], capacity_kib: int,
                host_capacity_kib: int | None, objective: str, layers: int) -> Point | None:
    """`_layout_best`, once per layout within `known_points`."""
    if _known is None:
        return _layout_best(layout, constraints, capacity_kib, host_capacity_kib, objective, layers)
    key = (id(layout), objective)
    if key not in _known:
        _known[key] = _layout_best(layout, constraints, capacity_kib, host_capacity_kib, objective, layers)
    return _known[key]


def _layout_best(layout: Layout, constraints: dict[str, Constraint], capacity_kib: int,
                 host_capacity_kib: int | None, objective: str, layers: int) -> Point | None:
    """The layout's best point (brute.best_point's cost), every partition at once where each
    class's least recompute that fits is its best: step time that never falls with recompute
    (pace c, w ≥ 0), a tail that ignores it, memory that never grows with it beyond the working
    set (c ≤ 0 ≤ w), no bounds on the stage variables, and host memory (under offload) that the
    recompute counts do not change. Then each class recomputes the fewest layers that fit, which
    minimizes both maxima of the step at once. Where recompute lowers the tail instead
    (`_trades_tail`), `_traded_best` enumerates the trade."""
    check_host = host_capacity_kib is not None and layout.plan.offload != "none"
    if layout.recompute_step and not layout.exact:
        if objective not in ("step-time", "cost") or any(k in constraints for k in STAGE_KEYS):
            return best_point(layout, constraints, capacity_kib, host_capacity_kib, objective, layers)
        if layout_forbidden(layout, constraints) or untimed_unfit(layout, capacity_kib, objective):
            return None
        return _shared_best(layout, split_matrix(layout, layers), shared_counts(layout, layers), capacity_kib,
                            host_capacity_kib if check_host else None)
    monotone = _monotone(layout, layers)
    if layout.exact or objective not in ("step-time", "cost") or any(k in constraints for k in STAGE_KEYS) \
            or (check_host and any(h[2] or h[3] for h in layout.host)) \
            or not (monotone or _trades_tail(layout)):
        return best_point(layout, constraints, capacity_kib, host_capacity_kib, objective, layers)
    if layout_forbidden(layout, constraints) or untimed_unfit(layout, capacity_kib, objective):
        return None
    split = split_matrix(layout, layers)
    # Host memory per node: the same for every recompute count, so a partition fits it or not.
    feasible = np.ones(len(split), dtype=bool)
    if check_host:
        for k, (a, b, _, _) in enumerate(layout.host):
            feasible &= a + b * split[:, k] <= host_capacity_kib
    if not monotone:
        return _traded_best(layout, split, capacity_kib, feasible)
    pace = np.full(len(split), -_NONE, dtype=np.int64)  # the maxima over the classes (terms may be negative
    tail = np.full(len(split), -_NONE, dtype=np.int64)  # where the coefficients extrapolate)
    recomputed = []
    for k in range(len(layout.classes)):
        n = split[:, k]
        zero, low, high = _admissible(layout, k, n, capacity_kib)
        r, fits = np.where(zero, 0, low), zero | (low <= high)  # none if it fits, else the fewest
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


def _shared_best(layout: Layout, split: np.ndarray, counts: np.ndarray, capacity_kib: int,
                 host_capacity_kib: int | None) -> Point | None:
    """`brute.best_point` of a layout whose classes share one recompute count R (each class of
    n layers recomputing min(n, R)), every partition and count at once: the least step over
    those that fit, the earlier partition and then the fewest layers on a tie."""
    cost = shared_costs(layout, split, counts, capacity_kib, host_capacity_kib)
    row, j = np.unravel_index(int(np.argmin(cost)), cost.shape)  # row-major: partition, then count
    if cost[row, j] == SHARED_UNFIT:
        return None
    n = split[row]
    return Point(layout=layout, layers=tuple(int(v) for v in n),
                 recomputed=tuple(int(min(v, counts[j])) for v in n), cost=int(cost[row, j]) + layout.const)


def _monotone(layout: Layout, layers: int) -> bool:
    """Each class's fewest recomputed layers that fit are its best: a class that recomputes all
    of its layers or none (a leading block) only needs recomputing them to cost pace, c·n + w ≥ 0
    at every count it may hold (linear: at its fewest and at all the layers); a class free to
    recompute any count needs pace that never falls with it and memory that never grows with it
    beyond the working set; and no class's tail may change with it."""
    def fits(cls, m, p, t) -> bool:
        if cls.recompute == "none":
            return True
        if t[2] or t[3]:
            return False
        if cls.recompute == "all":
            return all(p[2] * n + p[3] >= 0 for n in (cls.low, layers))
        return m[2] <= 0 <= m[3] and p[2] >= 0 and p[3] >= 0
    return all(fits(*c) for c in zip(layout.classes, layout.mem, layout.pace, layout.tail))


def _trades_tail(layout: Layout) -> bool:
    """Recompute trades the tail for the pace (the step's exposed DP collectives hide behind the
    recomputed forward too: timing/step.py `dp_step`), so that under a bound on the pace a class
    free to recompute any count does best with the most layers it may: memory that falls with
    each recomputed layer, a pace that never falls and a tail that never grows. A class that
    recomputes all of its layers or none chooses between the two directly, whatever its terms."""
    return all(cls.recompute != "free" or (m[2] <= 0 and p[2] >= 0 and p[3] >= 0 and t[2] <= 0 and t[3] <= 0)
               for cls, m, p, t in zip(layout.classes, layout.mem, layout.pace, layout.tail))


_NONE = np.iinfo(np.int64).max // 4
"""No admissible option (a cost no point reaches)."""

_ROWS = 1024
"""Partitions evaluated at once (bounds the arrays: rows × candidate paces × classes)."""


def _traded_best(layout: Layout, split: np.ndarray, capacity_kib: int, admitted: np.ndarray) -> Point | None:
    """`brute.best_point` of a layout whose tail falls as its pace rises with recompute
    (`_trades_tail`), every partition at once. As brute force does, each bound B on the pace
    (every admissible class pace) lets each class take, of its counts with pace ≤ B, the one of
    least tail (the fewest layers on a tie): with the tail non-increasing that is the most
    layers under B, or the fewest where the tail is flat. The step is the least B + max tail;
    ties go to the smaller bound, then to the earlier partition, as in brute force. `admitted`:
    the partitions within host memory."""
    best: tuple[int, int, int] | None = None  # (cost, row, bound)
    for start in range(0, len(split), _ROWS):
        rows = split[start:start + _ROWS]
        options = [_admissible(layout, k, rows[:, k], capacity_kib) for k in range(len(layout.classes))]
        candidates = np.concatenate([_paces(layout, k, rows[:, k], *option) for k, option in enumerate(options)],
                                    axis=1)  # rows × bounds
        worst = np.full(candidates.shape, -_NONE, dtype=np.int64)  # the largest tail of the classes
        for k, option in enumerate(options):
            worst = np.maximum(worst, _tail_under(layout, k, rows[:, k], option, candidates)[0])
        total = np.where((worst < _NONE) & (candidates < _NONE) & admitted[start:start + _ROWS, None],
                         candidates + worst, _NONE)
        least = total.min(axis=1)
        bound = np.where(total == least[:, None], candidates, _NONE).min(axis=1)
        row = int(np.argmin(least))
        if least[row] < _NONE and (best is None or least[row] < best[0]):
            best = (int(least[row]), start + row, int(bound[row]))
    if best is None:
        return None
    cost, row, bound = best
    n = split[row]
    chosen = []
    for k in range(len(layout.classes)):
        option = _admissible(layout, k, n[k:k + 1], capacity_kib)
        chosen.append(int(_tail_under(layout, k, n[k:k + 1], option, np.array([[bound]]))[1][0, 0]))
    return Point(layout=layout, layers=tuple(int(v) for v in n), recomputed=tuple(chosen),
                 cost=cost + layout.const)


def _admissible(layout: Layout, k: int, n: np.ndarray, capacity_kib: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The class's recompute counts that fit, per partition: 0 where `zero` holds, and every
    count in [low, high] (empty where low > high)."""
    cls = layout.classes[k]
    a, b, c, w = layout.mem[k]
    base = a + b * n
    zero = base <= capacity_kib
    if cls.recompute == "none":
        low, high = np.ones_like(n), np.zeros_like(n)
    elif cls.recompute == "all":
        fits = (n > 0) & (base + c * n + w <= capacity_kib)
        low, high = np.where(fits, n, 1), np.where(fits, n, 0)
    elif c < 0:  # the fewest layers r >= 1 with base + c·r + w within capacity
        low, high = np.maximum(1, -((base + w - capacity_kib) // c)), n
    else:  # recomputing saves nothing beyond the working set: any count or none
        low, high = np.where(base + w <= capacity_kib, 1, n + 1), n
    return zero, low, high


def _paces(layout: Layout, k: int, n: np.ndarray, zero: np.ndarray, low: np.ndarray, high: np.ndarray
           ) -> np.ndarray:
    """The class's pace at each admissible count, as columns r = 0..max n (`_NONE` where not
    admissible)."""
    pa, pb, pc, pw = layout.pace[k]
    r = np.arange(int(n.max()) + 1)[None, :]
    admissible = ((r == 0) & zero[:, None]) | ((r >= low[:, None]) & (r <= high[:, None]))
    pace = pa + pb * n[:, None] + pc * r + pw * (r > 0)
    return np.where(admissible, pace, _NONE)


def _tail_under(layout: Layout, k: int, n: np.ndarray, option: tuple, bounds: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """(least tail, its count) of class k under each pace bound (rows × bounds; `_NONE` where no
    admissible count has its pace within the bound)."""
    zero, low, high = option
    pa, pb, pc, pw = layout.pace[k]
    ta, tb, tc, tw = layout.tail[k]
    n, low, high, zero = n[:, None], low[:, None], high[:, None], zero[:, None]
    at_one = pa + pb * n + pw  # pace at r = 0 + the working set; + pc per recomputed layer
    if layout.classes[k].recompute != "free":  # one count at most besides none: all the layers
        most = np.where(at_one + pc * high <= bounds, high, low - 1)
    elif pc > 0:
        most = np.minimum(high, (bounds - at_one) // pc)
    else:
        most = np.where(at_one <= bounds, high, low - 1)
    counted = (high >= low) & (most >= low)
    flat = tc == 0  # the tail does not fall with more layers: the fewest admissible
    pick = np.where(flat, low, most)
    tail_counted = ta + tb * n + tc * pick + tw
    plain = zero & (pa + pb * n <= bounds)
    tail_plain = ta + tb * n
    use_counted = counted & (~plain | (tail_counted < tail_plain))
    tail = np.where(use_counted, tail_counted, np.where(plain, tail_plain, _NONE))
    count = np.where(use_counted, pick, 0)
    return np.broadcast_to(tail, bounds.shape), np.broadcast_to(count, bounds.shape)
