"""The best plans from a cost table built only as far as they need: in the order of each plan's
step-time floor, until every plan left has a floor above the costs the search shows.

Building a layout (its memory and time at a few probe points, layouts.py) is what a search
spends its time on, while a floor under its step time costs a few sums shared by every plan of
one shape (planner/cost/timing/floor.py). So the candidate plans are built in screening groups
(a layout with its micro-batches and offload variants, TableBuilder.group: the plans whose
screening reads one another's), in the order of their least floor: a bound first (FloorBounds),
then the least step floor, then the least floor over the partitions the search gives its plans,
each stage recomputing what its memory needs (timing/partitioned.py), each worked out when the
one before comes first; a layout's rows are read into its groups only when a bound under them
all comes first (space.Candidates.layout_shapes); a layout whose plans holding least (space.
Candidates.least_memory_plans) fit in no partition is read only where nothing fits. The build
stops at the first group whose floor is above the bar (`_Bar`): the greatest cost the search
would show from the layouts solved so far (runners_up.layout_best: each at its own best point,
exact), the `top`-th best layout's and, where the search also says why the best plans of other (tp, pp)
families lose, those families' bests. Before it stops, every layout built whose bound is not
above the bar is solved (`settle`). Every layout of the groups left costs at least its floor,
so none is shown; CP-SAT then solves the table built, and the plans, their ties (cpsat.
_first_of_cost, table order), the runners-up and the other families are the full table's
(tests/test_bounded.py holds the two equal). The bar may rise as costs come in (a layout under
the `top`-th brings its family among the best): the least bar a plan was left out by is kept
(Built.bar_us) and checked against that of every cost solved, a part built again by that bar
where it is under it (`_covered`).

A layout built is solved only when that could stop the build at the next group: its bound is
below the group's floor, and so is the bar the built layouts would set if each cost its bound;
or while fewer than `top` are solved. From then a family has a bar of its own
(`_Bar.of_family`): a layout above the `top`-th cost and above a layout of its family solved is
shown neither among the best nor as its family's best, so a group or a plan whose floor is above
its family's bar is not built, while the bar itself waits on the families outside the best.
A plan whose model states and least activations fit nowhere (memory.estimate.memory_floor above
the capacity: its layout would be untimed) is screened out unbuilt, as TableBuilder screens a
layout that fits nowhere (its larger micro-batches with it), and built only where nothing fits,
for the explanation, which reads every layout. A layout that fits somewhere is built untimed
first (its memory terms alone) and waits among the pending layouts by its time floor
(`time_floor_us`: the step floor and the forward of the fewest layers it must recompute to
fit, and its floor over the partitions); it is timed when it comes out, and left out where
that floor stays above the bar. A plan is not even built where its floor over the partitions,
or its step floor with the fewest layers it must recompute, bounded from its memory floor's
terms before any probe (memory.estimate.least_recomputed_layers), is above its family's bar
(`build`).
Where the plans shown cost little next to most floors (a mixture of experts, a small model on
many GPUs), a fraction of the table is built; where every plan costs within a few per cent of
the others, most of it, and the floors cost a few per cent more than the table alone. The plans
themselves are built when read (space.Candidates): the groups and the floors' keys come from
the candidates' rows of values.

Only the step-time objective has a floor; brute force reads the whole table.
"""
from __future__ import annotations

import bisect
import heapq
import itertools
import math
import multiprocessing
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter

from planner.cost import memo
from planner.cost.cluster import Cluster
from planner.cost.memory.estimate import least_recomputed_layers, memory_floor
from planner.cost.plan import Plan
from planner.cost.timing.floor import KEY_MBS, FloorBounds, floor_key, keyed_step_floor, recompute_floor, step_floor
from planner.cost.timing.partitioned import partitioned_step_floor
from planner.cost.workload import JobDefaults, Workload
from planner.search import FAMILIES, family, search
from planner.search.layouts import Layout, TableBuilder
from planner.search.point import Point, least_recompute, lower_bound
from planner.search.result import SolveResult
from planner.search.runners_up import known_points, layout_best, recall, remember
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
    Families are counted from every layout costing no more than the `top`-th, ties included.
    The bar may rise as costs are added: one under the `top`-th brings its family among the
    best, and the families beside them are then the next ones out (`_covers`)."""

    def __init__(self, top: int, families: int, at_least: float = 0.0):
        self.top, self.families, self.at_least = top, families, at_least
        self._added: list[tuple[int, tuple]] = []  # (cost, family), least cost first
        self._value: float | None = math.inf
        self._best: dict[tuple, int] = {}  # each family's least cost

    def add(self, cost: int, shape: tuple) -> None:
        """A layout's cost, and its family (search.family)."""
        bisect.insort(self._added, (cost, shape), key=lambda a: a[0])
        self._value = None
        if cost < self._best.get(shape, math.inf):
            self._best[shape] = cost

    @property
    def ranked(self) -> bool:
        """Whether `top` layouts are in: the families' bars (`of_family`) are finite from then."""
        return len(self._added) >= self.top

    def of_family(self, shape: tuple) -> float:
        """The greatest cost of a layout of this family the search would show: one above the
        `top`-th best and above a layout of its family found is neither among the best nor its
        family's best (every cost shown only falls as layouts are added); never above the bar."""
        kth = self._added[self.top - 1][0] if self.ranked else math.inf
        return min(self.value, max(kth, self._best.get(shape, math.inf)))

    @property
    def value(self) -> float:
        """The bar, never under `at_least` (a bar the answer's is known to reach: `_covered`)."""
        if self._value is None:
            self._value = max(self._compute(), self.at_least)
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
    with memo.session(), known_points():
        built = bounded_build(plans, workload, cluster, constraints, top=top, other_families=other_families,
                              progress=progress)
        return bounded_result([built], plans, workload, cluster, defaults, constraints, top=top,
                              other_families=other_families, time_limit=time_limit, start=start)


@dataclass
class Built:
    """The layouts a bounded build made, by candidate index; the screening groups (their plans'
    indices) in which it screened plans out by their memory floor, unbuilt; and whether it
    reached every group of its part (none left out by its floor)."""

    made: dict[int, list[Layout]]
    floored: list[list[int]]
    complete: bool
    points: list[tuple[Layout, Point | None]] = field(default_factory=list)
    """The best points of the layouts it solved (runners_up.recall), for the search over them."""
    bar_us: float = math.inf
    """The least bar it left a plan or group out by: it built every layout of its part that
    could be shown where the answer's bar is no higher (infinite where it left out nothing by
    the bar)."""
    share: tuple[int, int] | None = None
    """(index, parts) of the share of the candidates' layouts it built (`Part`), or None: all."""


def bounded_build(plans: Sequence[Plan], workload: Workload, cluster: Cluster, constraints: dict[str, Constraint],
                  *, top: int = 1, other_families: bool = False, part: Part | None = None,
                  progress: Callable[[int], None] | None = None, at_least: float = 0.0,
                  known: Sequence[tuple[int, tuple]] = ()) -> Built:
    """The layouts of the candidate plans the search's answer can come from (module docstring).

    `part`: only the plans of some layouts (`Part`: the parts may read one another's costs for a
    lower bar).
    `progress(plans done)` after each screening group built, `progress(len(plans))` at the end.
    `at_least`: no plan is left out by a bar under it (`_covered`).
    `known`: (cost, family) of layouts solved elsewhere for the same table (other parts'), in
    the bar from the start, as the shares read one another's (`Part.read`)."""
    with known_points():
        built = _bounded_build(plans, workload, cluster, constraints, top=top, other_families=other_families, part=part,
                               progress=progress, at_least=at_least, known=known)
        built.share = (part.index, part.parts) if part is not None else None
        built.points = recall((layout for layouts in built.made.values() for layout in layouts), "step-time")
        return built


def _bounded_build(plans: Sequence[Plan], workload: Workload, cluster: Cluster, constraints: dict[str, Constraint],
                   *, top: int, other_families: bool, part: Part | None,
                   progress: Callable[[int], None] | None, at_least: float = 0.0,
                   known: Sequence[tuple[int, tuple]] = ()) -> Built:
    builder = TableBuilder(workload, cluster, "step-time", screen=True)
    keep = part.keeps if part is not None else None
    # The screening groups read so far, by key (TableBuilder.group), and each one's plan of each
    # floor key. A group's plans share their recompute policy: those never built are left out.
    groups: dict[tuple, list[int]] = {}
    shapes: dict[tuple, dict[tuple, int]] = {}
    # The groups by floor, least first, equal floors in candidate order: a heap of (µs, exact,
    # first plan, group) whose bounds (exact 0) are replaced by the least step floor (1), then the
    # least floor over the partitions (2), when they come first; a layout's rows are read into
    # its groups only when a bound under them all (exact -1) comes first (Candidates.layout_
    # shapes: most layouts of a large search never do). An entry comes out exact only when every
    # bound left is above it, so the groups come out in the order of their floors.
    heap: list[tuple[float, int, int, object]] = []
    if isinstance(plans, Candidates):
        values = plans.values
        layouts = plans.layout_shapes(keep)
        bounds = FloorBounds((keyed for _, _, shaped in layouts for keyed in shaped), plans.shape_plan,
                             workload, cluster)
        heap.extend((FLOOR_SHARE * 1e6 * min(bounds.bound(key) for key, _ in shaped), -1, first, k)
                    for k, first, shaped in layouts if shaped)
        size = sum(plans.layout_size(k) for k, _, _ in layouts)
        layout_plan = plans.layout_plan
    else:
        found = screening_groups(plans, keep)
        found_shapes = {g: {floor_key(plans[i]): i for i in members} for g, members in found.items()}
        bounds = FloorBounds(((key, i) for g in found for key, i in found_shapes[g].items()), plans.__getitem__,
                             workload, cluster)
        size = sum(map(len, found.values()))

        def values(i: int, keys: tuple[str, ...]) -> tuple:
            return tuple(getattr(plans[i], key) for key in keys)

    def read(found: dict[tuple, list[int]], found_shapes: dict[tuple, dict[tuple, int]]) -> None:
        """Puts groups in the order, by their bound (exact 0)."""
        for g, members in found.items():
            if not builder.never_built(plans[members[0]]):
                groups[g], shapes[g] = members, found_shapes[g]
                heapq.heappush(heap, (FLOOR_SHARE * 1e6 * min(map(bounds.bound, shapes[g])), 0, members[0], g))

    if not isinstance(plans, Candidates):
        read(found, found_shapes)
    heapq.heapify(heap)
    cap, host_cap, layers = capacity_kib(cluster), host_capacity_kib(cluster), workload.arch.num_layers
    made: dict[int, list[Layout]] = {}
    bar = _Bar(top, FAMILIES if other_families else 0, at_least)
    decided = math.inf  # the least bar a group or plan was left out by (Built.bar_us)

    def by_bar(threshold: float) -> None:
        """Notes a plan or group left out for a floor above `threshold`: where that was the bar
        (not its family's own, which only falls), the answer's bar must be no higher."""
        nonlocal decided
        if threshold == bar.value:
            decided = min(decided, threshold)

    # The bar the layouts built would set if each cost its lower bound: while it is above the
    # next group's floor, solving them is unlikely to stop the build there, and waits (it only
    # decides when to solve; the stop reads the bar of the costs solved).
    hint = _Bar(top, FAMILIES if other_families else 0)
    for cost, shape in known:
        bar.add(cost, shape)
        hint.add(cost, shape)
    # Layouts built, by their own lower bound: each is solved at its best point only once a
    # group's floor could stop the build, and while its bound is below the bar. A layout that
    # fits somewhere goes in untimed, by its time floor (`time_floor_us`), and is timed when
    # it comes out (or, after the build, where the floor is under the bar).
    pending: list[tuple[float, int, Layout, int, int]] = []  # (µs, arrival, layout, plan, index in made)
    arrival = itertools.count()  # ties: the first built first
    # A group's plans differ in their micro-batch and offload, the floor reads the first only:
    # it is read of one plan of each shape of the group. Groups that differ in what it does not
    # read (ZeRO, recompute ...) share their floors, and a group's floor is worked out only once
    # a bound under it (FloorBounds) comes first among the groups left.
    floors: dict[tuple, float] = {}

    def floor(key: tuple, i: int) -> float:
        if key not in floors:
            floors[key] = keyed_step_floor(key, lambda: plans[i], workload, cluster)
        return floors[key]

    def group_floor_us(g: tuple) -> float:
        """The least floor of the group's shapes, each worked out in the order of its bound
        until the bounds left are above the least found."""
        least = math.inf
        for bound, key, i in sorted(((bounds.bound(key), key, i) for key, i in shapes[g].items()), key=itemgetter(0)):
            if bound >= least:
                break
            least = min(least, floor(key, i))
        return FLOOR_SHARE * 1e6 * least

    def partitioned_floor_us(g: tuple) -> float:
        """The least over the group's plans of the larger of their bound and their floor over
        the partitions (timing/partitioned.py), each worked out unless its bound is above the
        least found. A plan that fits nowhere (an infinite floor) is screened out with the
        larger micro-batches of its offload (TableBuilder.skips): those are never built. A plan
        that offloads holds no more on its GPUs than its twin that does not (memory.estimate
        `_stage_states`: what it offloads is at 0.0 there), with the same time terms: its floor
        is no higher, and the twin's is not worked out."""
        lows = builder.lows(plans[groups[g][0]])
        bound_of = {key[KEY_MBS]: bounds.bound(key) for key in shapes[g]}  # the group's shapes differ in it
        read = [(i, *values(i, ("mbs", "offload"))) for i in groups[g]]
        offloading = {mbs for _, mbs, offload in read if offload != "none"}
        least = math.inf
        unfit: dict[str, int] = {}  # offload -> the least micro-batch that fits nowhere
        for i, mbs, offload in read:  # the micro-batch ascends in candidate order
            if (mbs > unfit.get(offload, mbs) or bound_of[mbs] >= least
                    or (offload == "none" and mbs in offloading)):
                continue
            floor_s = partitioned_step_floor(plans[i], workload, cluster, capacity, lows)
            if floor_s == math.inf:
                unfit[offload] = mbs
            least = min(least, max(bound_of[mbs], floor_s))
        return FLOOR_SHARE * 1e6 * least

    capacity = cluster.capacity / MEMORY_SHARE
    floored: list[list[int]] = []

    def fits_nowhere(k: int) -> bool:
        """Whether no plan of the `k`-th layout fits in any partition the search gives it: none
        of the plans that hold no more than any of its plans does (Candidates.least_memory_plans;
        a floor over the partitions is infinite only where some stage fits at no recompute
        count, and holding more only adds to each stage's bytes)."""
        return all(partitioned_step_floor(plan, workload, cluster, capacity, builder.lows(plan)) == math.inf
                   for plan in plans.least_memory_plans(k))

    unbuilt = False  # some plan left unbuilt by its floor before its build (`beyond_bar`)

    def beyond_bar(plan: Plan) -> bool:
        """Whether the plan's step floor, with the forward of the fewest layers it must recompute
        to fit (memory.estimate.least_recomputed_layers: a floor under the count `time_floor_us`
        reads from the layout), or its floor over the partitions, is above its family's bar:
        none of its layouts would be timed (where the bar rises after, `_covers` says so)."""
        bar_us = bar.of_family(family(plan))
        if bar_us == math.inf:
            return False
        beyond = (FLOOR_SHARE * 1e6 * bounds.bound(floor_key(plan)) > bar_us  # under the step floor
                  or _recompute_floor_us(plan, 0, workload, cluster) > bar_us
                  or FLOOR_SHARE * 1e6 * partitioned_step_floor(plan, workload, cluster, capacity,
                                                                builder.lows(plan)) > bar_us)
        if not beyond:
            layers = least_recomputed_layers(plan, workload, cluster, capacity)
            beyond = layers > 0 and _recompute_floor_us(plan, layers, workload, cluster) > bar_us
        if beyond:
            by_bar(bar_us)
        return beyond

    def build(members: list[int]) -> None:
        """The group's plans, in TableBuilder.order (a deferred plan, offload, reads whether its
        layout without offload fits: after them). A plan whose floor is above the bar before
        its build is held unbuilt: its layouts would not be timed, and what its build tells the
        screening (TableBuilder.skips) is read only by the group's later plans of the same
        offload and a larger micro-batch, and by the deferred ones of its micro-batch. It is
        built, in its turn, before such a plan is; every plan it reads from is held or built
        before it (the micro-batch ascends in candidate order), and the screening's facts, a
        least unfit micro-batch and a set that fits, do not depend on the order they come in."""
        nonlocal unbuilt
        held: list[int] = []
        for i in (members[j] for j in builder.order([plans[i] for i in members])):
            if builder.skips(plans[i]):  # skipped where every held plan is built too: the facts only add
                made[i] = []
                continue
            if beyond_bar(plans[i]):
                held.append(i)
                continue
            for j in _read_by(plans, held, i, builder.deferred):
                held.remove(j)
                add(j, members)
            add(i, members)
        for i in held:
            made[i] = []
        unbuilt = unbuilt or bool(held)

    def add(i: int, members: list[int]) -> None:
        plan = plans[i]
        if not builder.skips(plan) and memory_floor(plan, workload, cluster, builder.lows(plan)) > capacity:
            # Screened out as a layout that fits nowhere is, unbuilt (module docstring).
            builder.screen_out(plan)
            if not floored or floored[-1] is not members:
                floored.append(members)
            made[i] = []
            return
        made[i] = builder.add(plan, time=False)
        for j, layout in enumerate(made[i]):
            if builder.untimed(layout):
                us = time_floor_us(layout, workload, cluster, cap, builder.lows(plan))
            elif layout.timed:  # an exact point
                us = lower_bound(layout, "step-time", layers)
            else:  # fits nowhere
                continue
            heapq.heappush(pending, (us, next(arrival), layout, i, j))
            hint.add(us, family(layout.plan))

    def advance() -> None:
        """The pending layout of least bound: timed, or solved where it already is."""
        _, _, layout, i, j = heapq.heappop(pending)
        if builder.untimed(layout):
            made[i][j] = timed = builder.time(layout)
            heapq.heappush(pending, (lower_bound(timed, "step-time", layers), next(arrival), timed, i, j))
            return
        point = layout_best(layout, constraints, cap, host_cap, "step-time", layers)
        if point is not None:
            shape = family(layout.plan)
            bar.add(point.cost, shape)
            if part is not None:
                part.publish(point.cost, shape)

    def settle() -> bool:
        """Solves the pending layouts whose bound is not above the bar, least first: whether there
        were any. Each may lower the bar or raise it (a family it brings among the best is no
        longer one of the others), so the build stops only once every layout built that could be
        shown is solved: a layout left costs more than the bar, and changes neither."""
        if part is not None:
            part.read(bar)
        moved = False
        while pending and pending[0][0] <= bar.value:
            advance()
            moved = True
        return moved

    done = 0
    while heap:
        us, exact, n, g = heap[0]
        if us > bar.value:  # every group left has its floor above the bar
            if settle():
                continue
            by_bar(bar.value)
            break
        family_us = bar.of_family(family(layout_plan(g) if exact < 0 else plans[groups[g][0]]))
        if us > family_us:
            heapq.heappop(heap)  # neither among the best nor its family's
            by_bar(family_us)
            unbuilt = True
            continue
        if exact < 0:  # a layout's rows, read into its groups
            heapq.heappop(heap)
            if us < math.inf and fits_nowhere(g):
                # Read only if nothing fits (the bar stays infinite): for the explanation.
                heapq.heappush(heap, (math.inf, -1, n, g))
                continue
            read(*plans.layout_screening(g))
            continue
        if exact < 2:  # a bound (0) or the least step floor (1) of the group: refined in turn
            refined = group_floor_us(g) if not exact else max(us, partitioned_floor_us(g))
            heapq.heapreplace(heap, (refined, exact + 1, n, g))
            continue
        if part is not None:
            part.read(bar)
        while pending and pending[0][0] < us and (hint.value < us <= bar.value or not bar.ranked):
            advance()
        if us > bar.of_family(family(plans[groups[g][0]])):
            continue  # read again at the top
        heapq.heappop(heap)
        build(groups[g])
        done += len(groups[g])
        if progress is not None:
            progress(done)
    # Every layout whose time floor is not above the bar may be in the answer: timed. The others
    # cost more than anything shown, and are left out.
    dropped = False
    if part is not None:
        part.read(bar)
    while pending:
        us, _, layout, i, j = heapq.heappop(pending)
        if builder.untimed(layout):
            if us <= bar.value:
                made[i][j] = builder.time(layout)
            else:
                by_bar(bar.value)
                dropped = True
    for i in made:
        made[i] = [layout for layout in made[i] if not builder.untimed(layout)]
    if progress is not None and done < size:
        progress(size)  # the rest ruled out by their floors
    return Built(made, floored, not heap and not dropped and not unbuilt, bar_us=decided)


def _read_by(plans: Sequence[Plan], held: list[int], i: int, deferred: Callable[[Plan], bool]) -> list[int]:
    """The held plans (indices, in order) whose builds plan `i`'s screening reads, directly or
    through another held plan: TableBuilder.skips reads the least unfit micro-batch of its
    offload (set by smaller ones) and, for a deferred plan, whether a plan of its micro-batch
    fits (set by the plan without offload and the other deferred ones)."""
    def reads(reader: Plan, writer: Plan) -> bool:
        return ((writer.offload == reader.offload and writer.mbs < reader.mbs)
                or (deferred(reader) and writer.mbs == reader.mbs))

    readers = [plans[i]]
    out = []
    for j in reversed(held):
        if any(reads(reader, plans[j]) for reader in readers):
            readers.append(plans[j])
            out.append(j)
    return out[::-1]


def time_floor_us(layout: Layout, workload: Workload, cluster: Cluster, capacity_kib: int,
                  lows: tuple[int, int, int] | None = None) -> float:
    """µs (× FLOOR_SHARE) that no point of an untimed layout that fits somewhere beats: its plan's
    step floor, plus what the fewest layers its stages must recompute to fit add at the least
    (point.least_recompute over its memory coefficients, timing/floor.py recompute_floor); with
    `lows` (TableBuilder.lows), never below the floor over its partitions
    (timing/partitioned.py). Most layouts that need recompute to fit cost far more than the
    floor alone says, and their time probes are spared where this is above the bar."""
    layers = least_recompute(layout, capacity_kib, workload.arch.num_layers)
    partitioned = partitioned_step_floor(layout.plan, workload, cluster, cluster.capacity / MEMORY_SHARE, lows)
    return max(_recompute_floor_us(layout.plan, layers, workload, cluster), FLOOR_SHARE * 1e6 * partitioned)


def _recompute_floor_us(plan: Plan, layers: float, workload: Workload, cluster: Cluster) -> float:
    """µs (× FLOOR_SHARE) of the plan's step floor with `layers` layers recomputed at the least."""
    extra = layers * recompute_floor(plan, workload, cluster) if layers else 0.0
    return FLOOR_SHARE * 1e6 * (step_floor(plan, workload, cluster) + extra)


def bounded_result(parts: list[Built], plans: Sequence[Plan], workload: Workload, cluster: Cluster,
                   defaults: JobDefaults, constraints: dict[str, Constraint], *, top: int, other_families: bool,
                   time_limit: float | None, start: float) -> tuple[SolveResult, list[Layout], bool]:
    """search() over the layouts the parts of a bounded build made, in table order (the search's
    answer, its layouts, and whether they are the whole table); `start`: when the build began.
    Where nothing fits, the plans screened out by their memory floor are built too, for the
    explanation, which reads every layout (each group's layouts depend on its own plans alone, so
    built now they are as the whole table's)."""
    parts = _covered(parts, plans, workload, cluster, constraints, top, other_families)
    with known_points():
        for built in parts:
            remember(built.points, "step-time")
        return _bounded_result(parts, plans, workload, cluster, defaults, constraints, top=top,
                               other_families=other_families, time_limit=time_limit, start=start)


def _bounded_result(parts: list[Built], plans: Sequence[Plan], workload: Workload, cluster: Cluster,
                    defaults: JobDefaults, constraints: dict[str, Constraint], *, top: int, other_families: bool,
                    time_limit: float | None, start: float) -> tuple[SolveResult, list[Layout], bool]:
    layers = workload.arch.num_layers
    made = {i: layouts for built in parts for i, layouts in built.made.items()}
    floored = [members for built in parts for members in built.floored]

    def solved() -> tuple[SolveResult, list[Layout]]:
        rows = [lay for i in sorted(made) for lay in made[i]]
        return search(workload, cluster, defaults, constraints, objective="step-time", top=top, rows=rows,
                      table_seconds=time.perf_counter() - start, other_families=other_families,
                      time_limit=time_limit, bounds=[lower_bound(lay, "step-time", layers) for lay in rows],
                      candidates=len(plans)), rows

    result, rows = solved()
    if not result.plans and floored:
        for members in floored:
            builder = TableBuilder(workload, cluster, "step-time", screen=True)
            for i in (members[j] for j in builder.order([plans[i] for i in members])):
                made[i] = builder.add(plans[i])
        result, rows = solved()
        floored = []
    return result, rows, all(built.complete for built in parts) and not floored


def _covered(parts: list[Built], plans: Sequence[Plan], workload: Workload, cluster: Cluster,
             constraints: dict[str, Constraint], top: int, other_families: bool) -> list[Built]:
    """The parts, each built again where it left a plan out by a bar under that of every cost
    the parts solved (`_covers`: it may have left out a layout of the answer), that bar now its
    least, until none is under (each build only adds costs, and the bar they set can rise only
    so often). A part built again starts from the costs the others solved (`known`), so it stops
    by that bar without first solving `top` layouts of its own."""
    parts = list(parts)
    while True:
        bar = _solved_bar(parts, top, other_families)
        short = [k for k, built in enumerate(parts) if built.bar_us < bar]
        if not short:
            return parts
        keys = layout_keys(plans)
        for k in short:
            share = parts[k].share
            part = Part(share[0], share[1], keys) if share is not None else None
            known = [(point.cost, family(layout.plan)) for j, built in enumerate(parts) if j != k
                     for layout, point in built.points if point is not None]
            parts[k] = bounded_build(plans, workload, cluster, constraints, top=top, other_families=other_families,
                                     part=part, at_least=bar, known=known)


def _solved_bar(parts: list[Built], top: int, other_families: bool) -> float:
    """The bar of every cost the parts solved."""
    bar = _Bar(top, FAMILIES if other_families else 0)
    for built in parts:
        for layout, point in built.points:
            if point is not None:
                bar.add(point.cost, family(layout.plan))
    return bar.value


def _covers(parts: list[Built], top: int, other_families: bool) -> bool:
    """Whether every part left plans out only by a bar no lower than that of every cost the
    parts solved.

    The bar of a set of costs is not a bound on a larger set's: a layout costing less than the
    `top`-th brings its family among those shown, and the families beside them are then the next
    ones out (`_Bar`). A part that stops by its bar has built every layout costing no more; where
    that is at least the bar of all the parts' costs, every layout it left costs more than that,
    changes neither the best nor the families beside them, and the answer is among the layouts
    built. The same holds within one build, whose bar may rise after it left a plan out (it
    solves what it built before it stops: `settle`)."""
    bar = _solved_bar(parts, top, other_families)
    return all(built.bar_us >= bar for built in parts)


def layout_key(plan: Plan) -> tuple:
    """A plan's layout: its parallel degrees but sequence parallelism, and its partition."""
    p = plan.parallel
    return p.tp, p.pp, p.dp, p.cp, p.ep, p.vpp, plan.first_stage_layers, plan.last_stage_layers


def layout_keys(plans: Sequence[Plan]) -> list[tuple]:
    """The candidates' layouts (`layout_key`), in candidate order: what `Part` deals out."""
    layouts = plans.layout_plans() if isinstance(plans, Candidates) else plans
    return list(dict.fromkeys(layout_key(plan) for plan in layouts))


def _dealt(layouts: Sequence[tuple], parts: int) -> list[list[tuple]]:
    """The layouts (`layout_key`) of each of `parts` shares. Where they hold at least
    CLASSES_PER_SHARE (tp, cp, ep) classes per share, whole classes, the largest first to the
    share holding the fewest layouts: a share then computes the floors of its own classes alone
    (each micro-batch floor reads those degrees, not the pipeline: timing/floor.py) and the
    layouts of a class share most of their memory and time terms (DeepSeek-V3: 62 classes).
    Else in turn, in candidate order (neighbours differ in the expert degree or the
    interleaving, so every share holds some of every (tp, pp) family)."""
    classes: dict[tuple, list[tuple]] = {}
    for key in layouts:
        tp, _, _, cp, ep, *_ = key
        classes.setdefault((tp, cp, ep), []).append(key)
    if len(classes) < CLASSES_PER_SHARE * parts:
        return [[key for j, key in enumerate(layouts) if j % parts == index] for index in range(parts)]
    shares: list[list[tuple]] = [[] for _ in range(parts)]
    for _, keys in sorted(classes.items(), key=lambda item: -len(item[1])):  # stable: candidate order
        min(shares, key=len).extend(keys)
    return shares


CLASSES_PER_SHARE = 4
"""(tp, cp, ep) classes per share below which shares are dealt layout by layout: with fewer,
whole classes leave the shares unequal (a dense model's four TP degrees)."""


class Part:
    """One of `parts` shares of a bounded build, run at once in as many processes: the layouts
    of the candidates dealt out (`_dealt`; the plans of a layout, which share most of their
    terms, stay together). A share stops at the first of its groups whose floor is above its
    bar. Where the processes share memory (`SharedCosts`, inherited from a forked parent), each
    share also reads the costs the others solved, and stops by the lowest bar. A bar may rise as
    costs come in (a layout under the `top`-th brings its family among the best), so the search
    over what the shares built checks that each left plans out only by a bar no lower than that
    of every cost they solved, and builds a share again by that bar where it did not
    (`_covered`)."""

    def __init__(self, index: int, parts: int, layouts: Sequence[tuple], shared: SharedCosts | None = None):
        self.index, self.parts, self.shared = index, parts, shared
        self.layouts = frozenset(_dealt(layouts, parts)[index])
        self._read = [0] * parts

    def keeps(self, plan: Plan) -> bool:
        """Whether the plan (a layout's, any of its plans) is of this share."""
        return layout_key(plan) in self.layouts

    def publish(self, cost: int, shape: tuple[int, int]) -> None:
        if self.shared is not None:
            self.shared.add(self.index, cost, shape)

    def read(self, bar: _Bar) -> None:
        """Adds to `bar` the costs the other shares solved since the last read."""
        if self.shared is None:
            return
        for other in range(len(self._read)):
            if other != self.index:
                found = self.shared.since(other, self._read[other])
                self._read[other] += len(found)
                for cost, shape in found:
                    bar.add(cost, shape)


class SharedCosts:
    """Layout costs (µs) with their (tp, pp), one list per share of a bounded build, in shared
    memory: each share appends to its own list under its lock and reads the others'. A list
    holds at most SLOTS costs; the rest go unshared (a share then stops by its own bar alone)."""

    SLOTS = 4096

    def __init__(self, parts: int, context=multiprocessing):
        # [count, cost, tp, pp, cost, tp, pp ...] per share.
        self._lists = [context.Array("q", 1 + 3 * self.SLOTS) for _ in range(parts)]

    def add(self, part: int, cost: int, shape: tuple[int, int]) -> None:
        values = self._lists[part]
        with values.get_lock():
            n = values[0]
            if n < self.SLOTS:
                values[1 + 3 * n:4 + 3 * n] = [cost, *shape]
                values[0] = n + 1

    def since(self, part: int, start: int) -> list[tuple[int, tuple[int, int]]]:
        """The costs share `part` added from its `start`-th on."""
        values = self._lists[part]
        with values.get_lock():
            flat = values[1 + 3 * start:1 + 3 * values[0]]
        return [(flat[j], (flat[j + 1], flat[j + 2])) for j in range(0, len(flat), 3)]


def screening_groups(plans: Sequence[Plan], keep: Callable[[Plan], bool] | None = None) -> dict[tuple, list[int]]:
    """The indices of the plans of each screening group (TableBuilder.group), the groups in the
    order of their first plan (space.Candidates.screening, without building the plans); `keep`:
    only the plans it keeps."""
    groups: dict[tuple, list[int]] = {}
    for i, plan in enumerate(plans):
        if keep is None or keep(plan):
            groups.setdefault(TableBuilder.group(plan), []).append(i)
    return groups


def best_plan_search(plans: Sequence[Plan], workload: Workload, cluster: Cluster, defaults: JobDefaults,
                     constraints: dict[str, Constraint]) -> tuple[SolveResult, list[Layout]]:
    """The best step-time plan alone (capacity's rows), and the layouts built."""
    result, rows, _ = bounded_search(plans, workload, cluster, defaults, constraints)
    return result, rows
