"""The best plan alone, from a cost table built only as far as it needs: in the order of each
plan's step-time floor, until every plan left has a floor above the best plan found.

Building a layout (its memory and time at a few probe points, layouts.py) is what a search
spends its time on, while a floor under its step time costs a few sums shared by every plan of
one shape (planner/cost/timing/floor.py). So the candidate plans are built in screening groups
(a layout with its micro-batches and offload variants, TableBuilder.group: the plans whose
screening reads one another's), in the order of their least floor. A layout built is solved at
its own best point (runners_up.layout_best: exact, the cost CP-SAT's optimum is the least of)
once its lower bound is below the next group's floor, the least bound first: only then could its
cost stop the build. Once a group's floor is above the best of those costs, neither it nor any
group after it holds a plan as good (its layouts cost at least their floor), and CP-SAT solves
the table built: the full table's best plan, ties broken as there (cpsat._first_of_cost;
tests/test_bounded.py holds the two equal). For `capacity`, which wants the best plan of each GPU
type and count and nothing else. Where the cheapest floors fit nowhere (a model that barely
fits), almost every group is built, and the floors cost a tenth more than the table alone.

Only the step-time objective has a floor.
"""
from __future__ import annotations

import heapq
import math
import time
from dataclasses import replace

from planner.cost import memo
from planner.cost.cluster import Cluster
from planner.cost.plan import Plan
from planner.cost.timing.floor import step_floor
from planner.cost.workload import JobDefaults, Workload
from planner.search import search
from planner.search.layouts import Layout, TableBuilder
from planner.search.point import lower_bound
from planner.search.result import SolveResult
from planner.search.runners_up import layout_best
from planner.search.table import capacity_kib, host_capacity_kib
from planner.spec.job import Constraint

FLOOR_SHARE = 0.99
"""The floor's share counted against the solver's costs: the table's step-time coefficients are
fitted at probe points and rounded to microseconds (layouts.py), so a layout's cost may sit a
little under the exact models it was fitted to; 1 % covers that (tests/test_bounded.py checks
floor ≤ bound on every layout of the reference tables)."""


def best_plan_search(plans: list[Plan], workload: Workload, cluster: Cluster, defaults: JobDefaults,
                     constraints: dict[str, Constraint]) -> tuple[SolveResult, list[Layout]]:
    """search.search's best step-time plan over `plans` (top 1, no other families), and the
    layouts built, in table order."""
    start = time.perf_counter()
    builder = TableBuilder(workload, cluster, "step-time", screen=True)
    groups: dict[tuple, list[int]] = {}
    for i, plan in enumerate(plans):
        groups.setdefault(builder.group(plan), []).append(i)
    cap, host_cap, layers = capacity_kib(cluster), host_capacity_kib(cluster), workload.arch.num_layers
    made: dict[int, list[Layout]] = {}
    bound: dict[int, int] = {}  # id(layout) -> its lower bound, which search() reads too
    best = math.inf
    # Layouts built, by their own lower bound: each is solved at its best point only once a
    # group's floor could stop the build, and while its bound is below the best cost found.
    pending: list[tuple[int, int, Layout]] = []
    with memo.session():
        # A group's plans differ in their micro-batch and offload; the floor reads the first only.
        floor_us = {g: FLOOR_SHARE * 1e6 * min(step_floor(plans[i], workload, cluster)
                                               for i in {plans[i].mbs: i for i in members}.values())
                    for g, members in groups.items()}
        order = sorted(groups, key=lambda g: floor_us[g])  # stable: equal floors in candidate order
        built = 0
        for g in order:
            while pending and pending[0][0] < floor_us[g] and pending[0][0] < best:
                point = layout_best(heapq.heappop(pending)[2], constraints, cap, host_cap, "step-time", layers)
                if point is not None:
                    best = min(best, point.cost)
            if floor_us[g] > best:
                break
            members = groups[g]
            # A deferred plan (offload) reads whether its layout without offload fits: after them.
            first, deferred = builder.phases([plans[i] for i in members])
            for i in (members[j] for j in first + deferred):
                made[i] = builder.add(plans[i])
                for layout in made[i]:
                    bound[id(layout)] = lower_bound(layout, "step-time", layers)
                    if layout.timed:
                        heapq.heappush(pending, (bound[id(layout)], len(bound), layout))
            built += 1
        table_s = time.perf_counter() - start
        rows = [lay for i in sorted(made) for lay in made[i]]
        result = search(workload, cluster, defaults, constraints, objective="step-time", top=1, rows=rows,
                        table_seconds=table_s, other_families=False, bounds=[bound[id(lay)] for lay in rows])
    left = sum(len(groups[g]) for g in order[built:])
    # Considered: the layouts built, and the plans whose floor ruled them out unbuilt.
    return replace(result, candidates=len(rows) + left), rows
