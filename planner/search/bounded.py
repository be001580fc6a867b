"""The best plans from a cost table built only as far as they need: in the order of each plan's
step-time floor, until every plan left has a floor above the costs the search shows.

Building a layout (its memory and time at a few probe points, layouts.py) is what a search
spends its time on, while a floor under its step time costs a few sums shared by every plan of
one shape (planner/cost/timing/floor.py). So the candidate plans are built in screening groups
(a layout with its micro-batches and offload variants, TableBuilder.group: the plans whose
screening reads one another's), in the order of their least floor. The build stops at the
first group whose floor is above the bar (`_Bar`): the greatest cost the search would show from
the layouts solved so far (runners_up.layout_best: each at its own best point, exact), the
`top`-th best layout's and, where the search also says why the best plans of other (tp, pp)
families lose, those families' bests. Every layout of the groups left costs at least its floor,
so none is shown; CP-SAT then solves the table built, and the plans, their ties (cpsat.
_first_of_cost, table order), the runners-up and the other families are the full table's
(tests/test_bounded.py holds the two equal).

A layout built is solved only when that could stop the build at the next group: its bound is
below the group's floor, and so is the bar the built layouts would set if each cost its bound.
A plan whose model states and least activations fit nowhere (memory.estimate.memory_floor above
the capacity: its layout would be untimed) is screened out unbuilt, as TableBuilder screens a
layout that fits nowhere (its larger micro-batches with it), and built only where nothing fits,
for the explanation, which reads every layout.
Where the plans shown cost little next to most floors (a mixture of experts, a small model on
many GPUs), a fraction of the table is built; where every plan costs within a few per cent of
the others, most of it, and the floors cost a few per cent more than the table alone. The plans
themselves are built when read (space.Candidates): the groups and the floors' shapes come from
the candidates' rows of values.

Only the step-time objective has a floor; brute force reads the whole table.
"""
from __future__ import annotations

import bisect
import heapq
import math
import time
from collections.abc import Callable, Sequence

from planner.cost import memo
from planner.cost.cluster import Cluster
from planner.cost.memory.estimate import memory_floor
from planner.cost.plan import Plan
from planner.cost.timing.floor import floor_key, step_floor
from planner.cost.workload import JobDefaults, Workload
from planner.search import FAMILIES, family, search
from planner.search.layouts import Layout, TableBuilder
from planner.search.point import lower_bound
from planner.search.result import SolveResult
from planner.search.runners_up import known_points, layout_best
from planner.search.space import Candidates
from planner.search.table import capacity_kib, host_capacity_kib
from planner.spec.job import Constraint

MEMORY_SHARE = 0.99
"""The memory floor's share counted against a layout's least memory (its coefficients are fitted
at probe points and rounded to KiB, layouts.py): tests/test_bounded.py checks it on every layout
of the reference tables and of random jobs."""
FLOOR_SHARE = 0.99
"""The floor's share counted against the solver's costs: the table's step-time coefficients are
fitted at probe points and rounded to microseconds (layouts.py), so a layout's cost may sit a
little under the exact models it was fitted to; 1 % covers that (tests/test_bounded.py checks
floor ≤ bound on every layout of the reference tables)."""


class _Bar:
    """The greatest cost the search would show, from the layout costs added: the `top`-th best
    layout's and, with `families`, the best of each of the next `families` families outside
    those the `top` best span (search._other_families); infinite while there are fewer. A plan
    costing more than the bar is shown neither among the best nor as another family's best.
    Families are counted from every layout costing no more than the `top`-th, ties included:
    more families in, the others' bests can only be worse, so the bar only rises."""

    def __init__(self, top: int, families: int):
        self.top, self.families = top, families
        self._added: list[tuple[int, tuple]] = []  # (cost, family), least cost first
        self._value: float | None = math.inf

    def add(self, cost: int, shape: tuple) -> None:
        """A layout's cost, and its family (search.family)."""
        bisect.insort(self._added, (cost, shape), key=lambda a: a[0])
        self._value = None

    @property
    def value(self) -> float:
        if self._value is None:
            self._value = self._compute()
        return self._value

    def _compute(self) -> float:
        added = self._added
        if len(added) < self.top:
            return math.inf
        kth = added[self.top - 1][0]
        i = self.top
        while i < len(added) and added[i][0] <= kth:
            i += 1
        if not self.families:
            return kth
        shown = {f for _, f in added[:i]}
        others: set[tuple] = set()
        for cost, shape in added[i:]:
            if shape not in shown and shape not in others:
                others.add(shape)
                if len(others) == self.families:
                    return max(kth, cost)
        return math.inf


def bounded_search(plans: Sequence[Plan], workload: Workload, cluster: Cluster, defaults: JobDefaults,
                   constraints: dict[str, Constraint], *, top: int = 1, other_families: bool = False,
                   time_limit: float | None = None,
                   progress: Callable[[int], None] | None = None) -> tuple[SolveResult, list[Layout], bool]:
    """search.search's `top` best step-time plans over `plans` (and, with `other_families`, the
    reasons the best of other families lose), the layouts built, in table order, and whether
    every plan was built (the whole table: where nothing fits, it is). `progress(plans done)`
    after each screening group built, and `progress(len(plans))` once the build stops."""
    start = time.perf_counter()
    builder = TableBuilder(workload, cluster, "step-time", screen=True)
    if isinstance(plans, Candidates):
        groups, shapes = plans.groups(), plans.shapes()
    else:
        groups = screening_groups(plans)
        shapes = {g: {floor_key(plans[i]): i for i in members} for g, members in groups.items()}
    cap, host_cap, layers = capacity_kib(cluster), host_capacity_kib(cluster), workload.arch.num_layers
    made: dict[int, list[Layout]] = {}
    bound: dict[int, int] = {}  # id(layout) -> its lower bound, which search() reads too
    bar = _Bar(top, FAMILIES if other_families else 0)
    # The bar the layouts built would set if each cost its lower bound: while it is above the
    # next group's floor, solving them is unlikely to stop the build there, and waits (it only
    # decides when to solve; the stop reads the bar of the costs solved).
    hint = _Bar(top, FAMILIES if other_families else 0)
    # Layouts built, by their own lower bound: each is solved at its best point only once a
    # group's floor could stop the build, and while its bound is below the bar.
    pending: list[tuple[int, int, Layout]] = []
    with memo.session(), known_points():
        # A group's plans differ in their micro-batch and offload, the floor reads the first only:
        # it is read of one plan of each shape of the group. Groups that differ in what it does
        # not read (ZeRO, recompute ...) share their floors.
        floors: dict[tuple, float] = {}

        def floor(shape: tuple, i: int) -> float:
            if shape not in floors:
                floors[shape] = step_floor(plans[i], workload, cluster)
            return floors[shape]

        floor_us = {g: FLOOR_SHARE * 1e6 * min(floor(shape, i) for shape, i in shapes[g].items()) for g in groups}
        order = sorted(groups, key=lambda g: floor_us[g])  # stable: equal floors in candidate order
        capacity = cluster.capacity / MEMORY_SHARE
        floored: list[tuple] = []  # groups with plans screened out by their memory floor, unbuilt

        def build(g: tuple, screen: TableBuilder | None = builder) -> None:
            """The group's layouts. With the search's own builder, a plan whose memory floor is
            above the capacity is screened out as a layout fitting nowhere is, unbuilt; a
            builder of its own (`screen` None) builds every plan, for the whole table."""
            members = groups[g]
            with_floors = screen is not None
            adder = screen or TableBuilder(workload, cluster, "step-time", screen=True)
            # A deferred plan (offload) reads whether its layout without offload fits: after them.
            first, deferred = adder.phases([plans[i] for i in members])
            for i in (members[j] for j in first + deferred):
                plan = plans[i]
                if with_floors and not adder.skips(plan) and memory_floor(plan, workload, cluster) > capacity:
                    adder.screen_out(plan)
                    if not floored or floored[-1] != g:
                        floored.append(g)
                    made[i] = []
                    continue
                made[i] = adder.add(plan)
                for layout in made[i]:
                    bound[id(layout)] = lower_bound(layout, "step-time", layers)
                    if layout.timed:
                        heapq.heappush(pending, (bound[id(layout)], len(bound), layout))
                        hint.add(bound[id(layout)], family(layout.plan))

        built = done = 0
        for g in order:
            while pending and pending[0][0] < floor_us[g] and hint.value < floor_us[g] <= bar.value:
                layout = heapq.heappop(pending)[2]
                point = layout_best(layout, constraints, cap, host_cap, "step-time", layers)
                if point is not None:
                    bar.add(point.cost, family(layout.plan))
            if floor_us[g] > bar.value:
                break
            build(g)
            built += 1
            done += len(groups[g])
            if progress is not None:
                progress(done)
        if progress is not None and done < len(plans):
            progress(len(plans))  # the rest ruled out by their floors

        def solved() -> tuple[SolveResult, list[Layout]]:
            """search() over the layouts built, in table order."""
            rows = [lay for i in sorted(made) for lay in made[i]]
            return search(workload, cluster, defaults, constraints, objective="step-time", top=top, rows=rows,
                          table_seconds=time.perf_counter() - start, other_families=other_families,
                          time_limit=time_limit, bounds=[bound[id(lay)] for lay in rows],
                          candidates=len(plans)), rows

        result, rows = solved()
        if not result.plans and floored:
            # Nothing fits: the explanation reads every layout, those screened out too (each
            # group's layouts depend on its own plans alone, so built now they are as the whole
            # table's).
            for g in floored:
                build(g, screen=None)
            result, rows = solved()
            floored = []
    return result, rows, built == len(order) and not floored


def screening_groups(plans: Sequence[Plan]) -> dict[tuple, list[int]]:
    """The indices of the plans of each screening group (TableBuilder.group), the groups in the
    order of their first plan (space.Candidates.groups, without building the plans)."""
    groups: dict[tuple, list[int]] = {}
    for i, plan in enumerate(plans):
        groups.setdefault(TableBuilder.group(plan), []).append(i)
    return groups


def best_plan_search(plans: Sequence[Plan], workload: Workload, cluster: Cluster, defaults: JobDefaults,
                     constraints: dict[str, Constraint]) -> tuple[SolveResult, list[Layout]]:
    """The best step-time plan alone (capacity's rows), and the layouts built."""
    result, rows, _ = bounded_search(plans, workload, cluster, defaults, constraints)
    return result, rows
