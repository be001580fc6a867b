"""Brute force over the factored space: every layout, every partition of its layers, every
recompute count of every stage class. The oracle the CP-SAT model is tested against.

Per partition, each class's admissible recompute counts are listed with their costs (or, where
the classes share one count, each shared count is tried); the best combination is then exact
without a product over the classes: for step time (pace + tail, two
maxima) every pace value is tried as the slowest class's, each class taking its least tail at
or under it; for the other objectives (one maximum) each class takes its least cost.
"""
from __future__ import annotations

import numpy as np

from planner.search.layouts import Layout, partitions
from planner.search.point import (
    Point,
    first_last_allowed,
    layout_forbidden,
    peak_kib,
    recompute_allowed,
    shared_counts,
    split_lows,
    untimed_unfit,
)
from planner.spec.job import Constraint


def _splits(layout: Layout, layers: int, constraints: dict[str, Constraint]):
    """Layers per class: the fixed ones, or every partition the layout allows."""
    classes = layout.classes
    if all(c.fixed is not None for c in classes):
        options = [tuple(c.fixed for c in classes)]
    else:
        options = [(f, l) if layout.pp == 2 else (f, m, l)
                   for f, m, l in partitions(layers, layout.pp, *split_lows(tuple(c.low for c in classes)))]
    for split in options:
        if layout.pp > 1 and not layout.exact:
            if any(key in constraints and not constraints[key].allows(n)
                   for key, n in (("first_stage_layers", split[0]), ("last_stage_layers", split[-1]))):
                continue
        yield split


def _recompute_options(mode: str, n: int) -> np.ndarray:
    return np.array((0,) if mode == "none" else (0, n) if mode == "all" else range(n + 1), dtype=np.int64)


def _value(coef, n: int, r: np.ndarray) -> np.ndarray:
    a, b, c, w = coef
    return a + b * n + c * r + w * (r > 0)


def _combine(options: list[tuple[np.ndarray, np.ndarray, np.ndarray]], objective: str
             ) -> tuple[int, tuple[int, ...]] | None:
    """Least cost over one option per class: (cost without the constant, chosen r per class)."""
    if any(len(r) == 0 for r, _, _ in options):
        return None
    if objective != "step-time":
        picks = [int(np.argmin(primary)) for _, primary, _ in options]
        cost = max(int(primary[i]) for (_, primary, _), i in zip(options, picks))
        return cost, tuple(int(r[i]) for (r, _, _), i in zip(options, picks))
    best: tuple[int, tuple[int, ...]] | None = None
    for bound in np.unique(np.concatenate([pace for _, pace, _ in options])):
        total, chosen = int(bound), []
        for r, pace, tail in options:
            under = pace <= bound
            if not under.any():
                break
            i = int(np.flatnonzero(under)[np.argmin(tail[under])])
            chosen.append(i)
        else:
            total += max(int(tail[i]) for (_, _, tail), i in zip(options, chosen))
            if best is None or total < best[0]:
                best = (total, tuple(int(r[i]) for (r, _, _), i in zip(options, chosen)))
    return best


def best_point(layout: Layout, constraints: dict[str, Constraint], capacity_kib: int,
               host_capacity_kib: int | None, objective: str, layers: int) -> Point | None:
    """The layout's best point, or None when none is admissible."""
    if layout_forbidden(layout, constraints) or (layout.exact and not first_last_allowed(layout, constraints)):
        return None
    if untimed_unfit(layout, capacity_kib, objective):
        return None
    allow_none, allow_full = (True, True)
    if not layout.exact and layout.plan.recompute == "full":
        allow_none, allow_full = recompute_allowed(constraints)
        if not (allow_none or allow_full):
            return None
    check_host = host_capacity_kib is not None and layout.plan.offload != "none"
    kind = "step-time" if objective in ("step-time", "cost") else objective
    best: Point | None = None
    for split in _splits(layout, layers, constraints):
        if layout.recompute_step and not layout.exact:
            result = _shared_best(layout, split, layers, allow_none, allow_full, capacity_kib,
                                  host_capacity_kib if check_host else None, kind)
            if result is not None:
                cost = result[0] + (0 if objective == "memory" else layout.const)
                if best is None or cost < best.cost:
                    best = Point(layout=layout, layers=split, recomputed=result[1], cost=cost)
            continue
        per_class = []
        for k, (cls, n) in enumerate(zip(layout.classes, split)):
            r = _recompute_options(cls.recompute, n) if allow_full else np.zeros(1, dtype=np.int64)
            mem = _value(layout.mem[k], n, r)
            ok = mem <= capacity_kib
            if check_host:
                ok &= _value(layout.host[k], n, r) <= host_capacity_kib
            if kind == "step-time":
                values = (_value(layout.pace[k], n, r), _value(layout.tail[k], n, r))
            elif kind == "comm":
                values = (_value(layout.comm[k], n, r), mem)
            else:
                values = (mem, mem)
            per_class.append((r[ok], values[0][ok], values[1][ok]))
        if allow_none:
            results = [_combine(per_class, kind)]
        else:  # some class must recompute: each class in turn takes only counts above zero
            results = [_combine([(r[r > 0], p[r > 0], t[r > 0]) if j == k else (r, p, t)
                                 for j, (r, p, t) in enumerate(per_class)], kind)
                       for k in range(len(per_class))]
        for result in results:
            if result is None:
                continue
            cost = result[0] + (0 if objective == "memory" else layout.const)
            if best is None or cost < best.cost:
                best = Point(layout=layout, layers=() if layout.exact else split,
                             recomputed=() if layout.exact else result[1], cost=cost)
    return best


def _shared_best(layout: Layout, split: tuple[int, ...], layers: int, allow_none: bool, allow_full: bool,
                 capacity_kib: int, host_capacity_kib: int | None, kind: str
                 ) -> tuple[int, tuple[int, ...]] | None:
    """One partition of a layout whose classes share one recompute count R (each class of n
    layers recomputing min(n, R)): the least cost over the counts that fit, fewest layers first
    on a tie (cost without the constant, counts per class)."""
    counts = shared_counts(layout, layers)
    counts = counts[:1] if not allow_full else counts if allow_none else counts[counts > 0]
    cost = shared_costs(layout, np.array([split], dtype=np.int64), counts, capacity_kib, host_capacity_kib, kind)[0]
    j = int(np.argmin(cost))
    if cost[j] == SHARED_UNFIT:
        return None
    return int(cost[j]), tuple(min(n, int(counts[j])) for n in split)


SHARED_UNFIT = np.iinfo(np.int64).max
"""The cost `shared_costs` gives a partition and count that do not fit."""


def shared_costs(layout: Layout, split: np.ndarray, counts: np.ndarray, capacity_kib: int,
                 host_capacity_kib: int | None, kind: str = "step-time") -> np.ndarray:
    """The objective (without the constant) of a layout whose classes share one recompute count,
    at each partition (rows of `split`) and each shared count R (columns), every class of n
    layers recomputing min(n, R); SHARED_UNFIT where a class exceeds memory (or host memory).
    `kind`: step-time (the largest pace + the largest tail), comm or memory (the largest term)."""
    ok = np.ones((len(split), len(counts)), dtype=bool)
    first = np.full(ok.shape, np.iinfo(np.int64).min // 4, dtype=np.int64)
    second = first.copy()
    for k in range(len(layout.classes)):
        n = split[:, k, None]
        r = np.minimum(n, counts[None, :])
        mem = _value(layout.mem[k], n, r)
        ok &= mem <= capacity_kib
        if host_capacity_kib is not None:
            ok &= _value(layout.host[k], n, r) <= host_capacity_kib
        if kind == "step-time":
            first = np.maximum(first, _value(layout.pace[k], n, r))
            second = np.maximum(second, _value(layout.tail[k], n, r))
        else:
            first = np.maximum(first, _value(layout.comm[k], n, r) if kind == "comm" else mem)
    return np.where(ok, first + (second if kind == "step-time" else 0), SHARED_UNFIT)


def solve_brute(layouts: list[Layout], constraints: dict[str, Constraint], capacity_kib: int,
                host_capacity_kib: int | None, top: int, objective: str, layers: int) -> list[Point]:
    """The `top` layouts of lowest cost, each at its best point; of equal cost, the one that needs
    less memory first (point.peak_kib: more headroom for the same step), then layout order."""
    points = [p for lay in layouts
              if (p := best_point(lay, constraints, capacity_kib, host_capacity_kib, objective, layers)) is not None]
    points.sort(key=lambda p: (p.cost, peak_kib(p)))
    return points[:top]
