"""One point of the factored space: a layout with its layers and recomputed layers per stage
class, its integer cost, and the plan it stands for. Shared by CP-SAT and brute force."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from planner.cost.plan import Plan
from planner.cost.shard import stage_layer_counts
from planner.search.layouts import Layout, partitions
from planner.spec.job import Constraint

UNREACHABLE = 2**62

STAGE_KEYS = ("first_stage_layers", "last_stage_layers", "recompute_layers", "recompute")
"""Plan keys the stage variables decide; the others are the layout's."""


@dataclass(frozen=True)
class Point:
    layout: Layout
    layers: tuple[int, ...]
    """Layers per stage class (first, middle, last); empty for exact layouts."""
    recomputed: tuple[int, ...]
    cost: int
    """The objective in the solvers' integers (µs, or KiB for `memory`)."""

    def plan(self, num_layers: int) -> Plan:
        """The plan with its partition and recompute counts (defaults where they are the defaults)."""
        plan = self.layout.plan
        if self.layout.exact:
            return plan
        pp = plan.parallel.pp
        split = self.layers if pp > 1 else (num_layers,)
        counts = _expand(split, pp)
        recomputed = _expand(self.recomputed, pp)
        changes: dict[str, object] = {}
        if pp > 1 and counts != (plan.layer_partition(num_layers) or stage_layer_counts(num_layers, pp)):
            changes.update(first_stage_layers=counts[0], last_stage_layers=counts[-1])
        if plan.recompute == "full":
            if not any(recomputed):
                changes.update(recompute="none")
            elif recomputed != counts:
                changes.update(recompute_layers=recomputed)
        return plan.with_(**changes)


def _expand(per_class: tuple[int, ...], pp: int) -> tuple[int, ...]:
    if pp <= 2:
        return tuple(per_class)
    first, mid, last = per_class
    return (first,) + (mid,) * (pp - 2) + (last,)


def linear(coef: tuple[int, int, int, int], n: int, r: int) -> int:
    a, b, c, w = coef
    return a + b * n + c * r + w * (r > 0)


def peak_kib(point: Point) -> int:
    """The point's memory on its most loaded stage class (KiB, the table's coefficients): what
    breaks a tie between points of equal cost (brute.solve_brute, cpsat._first_of_cost)."""
    layout = point.layout
    if layout.exact:
        return layout.mem[0][0]
    recomputed = point.recomputed or (0,) * len(point.layers)
    return max(linear(coef, n, r) for coef, n, r in zip(layout.mem, point.layers, recomputed))


def layout_forbidden(layout: Layout, constraints: dict[str, Constraint]) -> list[str]:
    """The user's constraints on outer keys that rule this layout out."""
    variable_recompute = not layout.exact and layout.plan.recompute == "full"
    out = []
    for key, c in constraints.items():
        if key in STAGE_KEYS and (key != "recompute" or variable_recompute):
            continue
        if key in layout.values and not c.allows(layout.values[key]):
            out.append(key)
    return out


def recompute_allowed(constraints: dict[str, Constraint]) -> tuple[bool, bool]:
    """(no stage recomputing allowed, some stage recomputing allowed) for `full` layouts."""
    c = constraints.get("recompute")
    if c is None:
        return True, True
    return c.allows("none"), c.allows("full")


def first_last_allowed(layout: Layout, constraints: dict[str, Constraint]) -> bool:
    """Exact layouts: their partition (the candidate's own) within the user's first/last stage bounds."""
    if layout.pp == 1:
        return True
    layers = layout.classes[0].fixed
    counts = layout.plan.layer_partition(layers) or stage_layer_counts(layers, layout.pp)
    return all(constraints[key].allows(n) for key, n in (("first_stage_layers", counts[0]),
                                                          ("last_stage_layers", counts[-1]))
               if key in constraints)


def lower_bound(layout: Layout, objective: str, layers: int) -> int:
    """A bound no point of the layout beats (memory ignored): each class's cost at its cheapest
    recompute count, minimized over the partitions. It orders the layouts for the lazy CP-SAT
    search, which stops adding layouts once the plans found beat every bound left."""
    if not layout.timed and objective != "memory":
        return UNREACHABLE  # fits nowhere: no point to bound
    split = split_matrix(layout, layers)
    # One partition (most layouts): plain integers, which numpy only slows down.
    counts = [split[:, k] for k in range(split.shape[1])] if len(split) > 1 else [int(v) for v in split[0]]
    top, least = (np.maximum, np.minimum) if len(split) > 1 else (max, min)

    def cheapest(coefs) -> int:
        """The largest class cost at each class's cheapest count, least over the partitions: a
        class of n layers recomputes none, or r of them at a + b·n + c·r + w, linear in r, so
        least at r = n or (free to recompute any count) r = 1."""
        worst = None
        for cls, n, (a, b, c, w) in zip(layout.classes, counts, coefs):
            value = a + b * n
            if cls.recompute == "all":
                value = value + least(0, c * n + w)
            elif cls.recompute == "free":
                value = value + least(0, least(c * n + w, c + w))
            worst = value if worst is None else top(worst, value)
        return int(worst.min()) if len(split) > 1 else worst

    if objective == "memory":
        return cheapest(layout.mem)
    if objective == "comm":
        return layout.const + cheapest(layout.comm)
    return layout.const + cheapest(layout.pace) + cheapest(layout.tail)


def least_recompute(layout: Layout, capacity_kib: int, layers: int) -> float:
    """The fewest layers the layout's stages recompute in all, over every partition, for each
    class to fit in `capacity_kib` by its memory coefficients (each class apart: a count shared
    by every class only recomputes more); inf where none fits."""
    split = split_matrix(layout, layers)
    total = np.zeros(len(split))
    for k, (cls, (a, b, c, w)) in enumerate(zip(layout.classes, layout.mem)):
        n = split[:, k]
        kept = a + b * n
        if cls.recompute == "free" and c < 0:
            fewest = np.maximum(1, -((kept + w - capacity_kib) // c))  # ceil((kept + w − cap) / −c)
            need = np.where(kept <= capacity_kib, 0, np.where(fewest <= n, fewest, np.inf))
        elif cls.recompute == "free":  # recompute adds memory: one layer at the least
            need = np.where(kept <= capacity_kib, 0, np.where(kept + c + w <= capacity_kib, 1, np.inf))
        elif cls.recompute == "all":  # none or every layer of the class
            need = np.where(kept <= capacity_kib, 0, np.where(kept + c * n + w <= capacity_kib, n, np.inf))
        else:
            need = np.where(kept <= capacity_kib, 0, np.inf)
        total = total + cls.count * need
    return float(total.min())


def shared_counts(layout: Layout, layers: int) -> np.ndarray:
    """The recompute counts R of a layout with one count for every stage (Layout.recompute_step):
    none, and each multiple of the step up to the first that covers every layer."""
    step = layout.recompute_step
    return np.arange(0, -(-layers // step) * step + 1, step, dtype=np.int64)


def split_matrix(layout: Layout, layers: int) -> np.ndarray:
    if layout.exact or all(c.fixed is not None for c in layout.classes):
        return np.array([[c.fixed for c in layout.classes]], dtype=np.int64)
    return _partition_array(layers, layout.pp, split_lows(tuple(c.low for c in layout.classes)))


@lru_cache(maxsize=256)
def _partition_array(layers: int, pp: int, lows: tuple[int, int, int]) -> np.ndarray:
    rows = partitions(layers, pp, *lows)
    cols = [0, 2] if pp == 2 else [0, 1, 2]
    return np.array(rows, dtype=np.int64)[:, cols]


def untimed_unfit(layout: Layout, capacity_kib: int, objective: str) -> bool:
    """A layout screened out at build time: it fits nowhere within `capacity_kib`. Its time
    terms were never computed, so it may only be asked about at that capacity or less."""
    if layout.timed or objective == "memory":
        return False
    if capacity_kib > layout.screened_kib:
        raise ValueError(f"layout screened at {layout.screened_kib} KiB asked about {capacity_kib} KiB;"
                         f" build the table with screen=False")
    return True


def split_lows(lows: tuple[int, ...]) -> tuple[int, int, int]:
    """(first, middle, last) lows of a layout's stage classes (pp = 2 has no middle class)."""
    return (lows[0], 1, lows[1]) if len(lows) == 2 else lows
