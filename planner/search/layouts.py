"""The factored plan space both solvers read: outer layouts, each with linear per-stage costs.

An outer layout fixes every plan key but the pipeline partition and the recompute counts (tp,
pp, dp, cp, ep, vpp, sp, zero, mbs, offload, precision, optimizer, LoRA rank, quantization, and
the recompute policy). For a fixed layout, a stage's memory and time are linear in the layers it
holds (n) and the layers it recomputes (r): every layer of a homogeneous stack adds the same
bytes and seconds, and recomputing one more layer trades the same activation bytes for the same
forward seconds. So the pure models (memory.py, timing.py) are evaluated at a few probe plans
and each stage class (first, middle, last) gets integer coefficients

    value = a + b·n + c·r + w·[r > 0]

(w: the one-layer working set of recomputation). Stages: the first holds the embedding, the last
the logits and loss; the middle ones share one count (Megatron --decoder-first/last-pipeline-
num-layers) and the busiest of them, stage 1 (most micro-batches in flight), stands for them all.
Interleaved pipelines search their partition too, each class holding at least the layers that
fill its vpp chunks (rules.chunk_lows). Stacks whose layers differ beyond a leading dense block
keep the default partition and are evaluated exactly, recompute none or full.
Units: memory KiB, time microseconds.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import lru_cache

from planner.cost.cluster import Cluster
from planner.cost.memory import estimate_memory
from planner.cost.plan import PLAN_KEYS, Plan
from planner.cost.shard import stage_layer_counts
from planner.cost.timing import stage_seconds
from planner.cost.workload import Workload
from planner.engines.profiles import PROFILES
from planner.search.partition import (  # noqa: F401  (lead_layers: the search's own name, read by tests)
    class_lows,
    expand,
    lead_layers,
    linear_lead,
    nearest_partition,
    partitions,
)

KiB = 2**10
Linear = tuple[int, int, int, int]
"""(a, b, c, w): a + b·layers + c·recomputed + w·[recomputed > 0]."""


@dataclass(frozen=True)
class StageClass:
    stage: int
    """The pipeline stage whose costs stand for the class (0, 1 or pp − 1)."""
    count: int
    """Stages in the class."""
    low: int
    """Fewest layers a stage of the class may hold."""
    fixed: int | None
    """The class's layers when the partition is fixed."""
    recompute: str
    """`none` (r = 0), `free` (0 ≤ r ≤ n) or `all` (r ∈ {0, n}: a leading block of other layers)."""


@dataclass(frozen=True)
class Layout:
    plan: Plan
    """The outer layout, default partition; recompute `full` means 0..n layers per stage."""
    values: dict[str, object]
    """Plan keys for the user's constraints (recompute: the policy)."""
    classes: tuple[StageClass, ...]
    mem: tuple[Linear, ...]
    """Peak bytes per GPU of each class, KiB."""
    host: tuple[Linear, ...]
    """Host bytes per node for offload, KiB (offload layouts only, else zeros)."""
    pace: tuple[Linear, ...]
    """(m + runs·(p − 1)/v) × (t_F + t_B) of one micro-batch, µs: the slowest class sets the step."""
    tail: tuple[Linear, ...]
    """Exposed DP collectives + optimizer + offload once per step, µs."""
    comm: tuple[Linear, ...]
    """Exposed communication of the step, µs."""
    const: int
    """Pipeline p2p of the step, µs."""
    exact: bool = False
    """Evaluated at one point (no partition or recompute variables)."""
    world: int = field(default=1, compare=False)
    timed: bool = True
    """False when no point fits in `screened_kib`: the time terms were not computed."""
    screened_kib: int | None = None
    recompute_step: int = 0
    """0: each class recomputes any count its mode allows. Else one count R, a multiple of this
    step (the model chunks per stage), for every class: a class of n layers recomputes min(n, R)
    (EngineProfile.one_recompute_count)."""

    @property
    def pp(self) -> int:
        return self.plan.parallel.pp

    @property
    def variable_partition(self) -> bool:
        return any(c.fixed is None for c in self.classes)


def plan_values(plan: Plan) -> dict[str, object]:
    """The plan's values as the user's constraints read them (Plan.constraint_value)."""
    return {key: plan.constraint_value(key) for key in PLAN_KEYS}


@lru_cache(maxsize=1024)
def _probe_partitions(layers: int, pp: int, lows: tuple[int, int, int]
                      ) -> tuple[tuple[int, int, int], tuple[int, int, int] | None]:
    """The split nearest the default one (the candidate's own: space.py), and a second where
    every class's count differs (the middle one may stay when it must); None when no other split
    does (the partition is then fixed)."""
    options = partitions(layers, pp, *lows)
    p1 = nearest_partition(layers, pp, lows)
    single_mid = options[0][1] == options[-1][1]  # listed by middle count, ascending
    others = [t for t in options if t[0] != p1[0] and t[2] != p1[2] and (single_mid or t[1] != p1[1])]
    if not others:
        return p1, None
    return p1, min(others, key=lambda t: (abs(t[0] - p1[0]) + abs(t[1] - p1[1]) + abs(t[2] - p1[2]), t))


def _memory_values(plan: Plan, workload: Workload, cluster: Cluster, stages: tuple[int, ...]) -> list[tuple[float, ...]]:
    """(memory KiB, host KiB per node) of the listed stages."""
    memory = {m.stage: m for m in estimate_memory(plan, workload, cluster, only_stages=stages)}
    return [(memory[s].memory.total / KiB, memory[s].host_bytes * cluster.gpus_per_node / KiB) for s in stages]


def _time_values(plan: Plan, workload: Workload, cluster: Cluster, stages: tuple[int, ...],
                 m_factor: float) -> tuple[list[tuple[float, ...]], float]:
    """(pace µs, tail µs, comm µs) of the listed stages, and the step's pipeline p2p µs."""
    seconds, p2p = stage_seconds(plan, workload, cluster, stages=stages)
    return ([(m_factor * t.microbatch * 1e6, t.tail * 1e6, t.comm * 1e6) for t in seconds], p2p * 1e6)


def _with(plan: Plan, split: tuple[int, ...] | None, recompute: tuple[int, ...] | None) -> Plan:
    changes: dict[str, object] = {}
    if split is not None:
        changes.update(first_stage_layers=split[0], last_stage_layers=split[-1])
    if recompute is not None:
        changes.update(recompute="full", recompute_layers=recompute)
    elif plan.recompute == "full":
        changes.update(recompute="none")
    return plan.with_(**changes)


@dataclass(frozen=True)
class _Probes:
    """The probe plans of a layout: partitions p1 (and p2), recompute none / all / one layer."""

    stages: tuple[int, ...]
    p1: tuple[int, ...]
    p2: tuple[int, ...] | None
    split1: tuple[int, ...] | None
    modes: tuple[str, ...]
    lead: int

    def plans(self, plan: Plan) -> list[Plan | None]:
        """A: p1 none, B: p2 none, C: p1 all, D: p1 one layer per stage, E: p2 all."""
        full = plan.recompute == "full"
        p1, p2, lead = self.p1, self.p2, self.lead
        ones = tuple(p1[s] if s == 0 and lead else min(1, p1[s]) for s in range(len(p1)))
        return [
            _with(plan, self.split1, None),
            _with(plan, p2, None) if p2 else None,
            _with(plan, self.split1, tuple(p1)) if full else None,
            _with(plan, self.split1, ones) if full else None,
            _with(plan, p2, tuple(p2)) if full and p2 and (lead or "free" not in self.modes) else None,
        ]

    def coefficients(self, values: list[list[tuple[float, ...]] | None], term: int, k: int,
                     recompute: bool, ceil: bool) -> Linear:
        """(a, b, c, w) of one term of class k from the probe values."""
        a, b, c, d, e = (None if v is None else v[k][term] for v in values)
        s = self.stages[k]
        n1 = self.p1[s]
        slope = (b - a) / (self.p2[s] - n1) if b is not None and self.p2[s] != n1 else 0.0
        cr = w = 0.0
        if recompute and c is not None:
            if self.modes[k] == "free":
                cr = (c - d) / (n1 - 1) if n1 > 1 else c - a
                w = d - a - cr if n1 > 1 else 0.0
            elif e is not None and self.p2[s] != n1:  # r = n: a + w + (b + c)·n
                cr = (e - c) / (self.p2[s] - n1) - slope
                w = c - a - cr * n1
            elif n1:
                cr = (c - a) / n1
        intercept = a - slope * n1
        return (math.ceil(intercept) if ceil else round(intercept), round(slope), round(cr), round(w))


def _probes(plan: Plan, workload: Workload, lead: int) -> _Probes:
    pp, vpp = plan.parallel.pp, plan.parallel.vpp
    layers = workload.arch.num_layers
    stages = (0,) if pp == 1 else (0, pp - 1) if pp == 2 else (0, 1, pp - 1)
    profile = PROFILES[plan.framework]
    if pp > 1 and profile.uneven_stages:
        # The partition nearest the default (the candidate's own, fixed when no other meets the
        # class lows) and, when there is one, a second to take the slopes from.
        first, second = _probe_partitions(layers, pp, class_lows(pp, vpp, max(1, lead)))
        p1, p2 = expand(first, pp), expand(second, pp) if second else None
    else:
        p1, p2 = plan.layer_partition(layers) or stage_layer_counts(layers, pp), None  # even stages only
    full = plan.recompute == "full"
    # An engine that recomputes every layer of a stage or none (its profile) has no free count.
    modes = tuple("none" if not full else "all" if (s == 0 and lead) or not profile.partial_recompute else "free"
                  for s in stages)
    return _Probes(stages=stages, p1=p1, p2=p2, split1=p1 if pp > 1 else None, modes=modes, lead=lead)


def build_layout(plan: Plan, workload: Workload, cluster: Cluster, lead: int | None,
                 screen_kib: int | None = None, time: bool = True) -> list[Layout]:
    """The layout(s) of one candidate plan: one with variables, or an exact point. With
    `screen_kib`, a layout with variables is timed only where it fits somewhere in that many KiB
    (else `timed` False); an exact point is timed whatever its memory. `time` False leaves a
    layout with variables that fits somewhere untimed too (`screened_kib` None: `time_layout`
    times it later)."""
    if lead is None:
        return [_exact(plan, workload, cluster, plan.step_microbatches)]
    layout, pr, plans = memory_layout(plan, workload, cluster, lead, screen_kib)
    if screen_kib is not None and not fits_somewhere(layout, screen_kib, workload.arch.num_layers):
        return [layout]
    if not time:
        return [replace(layout, screened_kib=None)]
    return [_timed(layout, workload, cluster, pr, plans)]


def time_layout(layout: Layout, workload: Workload, cluster: Cluster, lead: int) -> Layout:
    """A layout `build_layout` left untimed (`time` False), with its time terms: the same layout
    as building it timed gives."""
    pr = _probes(layout.plan, workload, lead)
    return _timed(layout, workload, cluster, pr, pr.plans(layout.plan))


def _timed(layout: Layout, workload: Workload, cluster: Cluster, pr: _Probes, plans: list[Plan | None]) -> Layout:
    plan = layout.plan
    full = plan.recompute == "full"
    timing = _each(plans, lambda p: _time_values(p, workload, cluster, pr.stages, plan.step_microbatches))
    values = [None if t is None else t[0] for t in timing]
    terms = [tuple(pr.coefficients(values, term, k, full, False) for k in range(len(pr.stages)))
             for term in range(3)]
    return replace(layout, pace=terms[0], tail=terms[1], comm=terms[2], const=round(timing[0][1]),
                   timed=True, screened_kib=None)


def _each(plans: list[Plan | None], evaluate: Callable[[Plan], object]) -> list:
    """`evaluate` on each probe plan, once per distinct plan (None stays None)."""
    seen: dict[Plan, object] = {}
    out = []
    for p in plans:
        if p is not None and p not in seen:
            seen[p] = evaluate(p)
        out.append(None if p is None else seen[p])
    return out


def memory_layout(plan: Plan, workload: Workload, cluster: Cluster, lead: int,
                  screen_kib: int | None = None) -> tuple[Layout, _Probes, list[Plan | None]]:
    """The layout with its memory terms only (`timed` False), its probes and probe plans."""
    pp = plan.parallel.pp
    pr = _probes(plan, workload, lead)
    full = plan.recompute == "full"
    plans = pr.plans(plan)
    memory = _each(plans, lambda p: _memory_values(p, workload, cluster, pr.stages))
    mem = tuple(pr.coefficients(memory, 0, k, full, True) for k in range(len(pr.stages)))
    host = tuple(pr.coefficients(memory, 1, k, False, True) for k in range(len(pr.stages)))
    counts = (1,) if pp == 1 else (1, 1) if pp == 2 else (1, pp - 2, 1)
    first, middle, last = class_lows(pp, plan.parallel.vpp, max(1, lead))
    lows = (first,) if pp == 1 else (first, last) if pp == 2 else (first, middle, last)
    classes = tuple(
        StageClass(stage=s, count=counts[k], low=lows[k],
                   fixed=None if pr.p2 is not None else pr.p1[s], recompute=pr.modes[k])
        for k, s in enumerate(pr.stages))
    # One count for every stage (Megatron-LM): where every class is free to recompute any count.
    shared = PROFILES[plan.framework].one_recompute_count and pp > 1 and all(m == "free" for m in pr.modes)
    layout = Layout(plan=plan, values=plan_values(plan), classes=classes, mem=mem, host=host,
                    pace=(), tail=(), comm=(), const=0, world=cluster.world, timed=False,
                    screened_kib=screen_kib, recompute_step=plan.parallel.vpp if shared else 0)
    return layout, pr, plans


def _exact(plan: Plan, workload: Workload, cluster: Cluster, m_factor: float) -> Layout:
    """A layout evaluated at its one point: default partition, recompute as the plan says."""
    pp = plan.parallel.pp
    stages = tuple(range(pp))
    memory = _memory_values(plan, workload, cluster, stages)
    timing, p2p = _time_values(plan, workload, cluster, stages, m_factor)
    mem, host = (max(v[t] for v in memory) for t in range(2))
    pace, tail, comm = (max(v[t] for v in timing) for t in range(3))
    return Layout(plan=plan, values=plan_values(plan),
                  classes=(StageClass(stage=0, count=pp, low=1, fixed=workload.arch.num_layers, recompute="none"),),
                  mem=((math.ceil(mem), 0, 0, 0),), host=((math.ceil(host), 0, 0, 0),),
                  pace=((round(pace), 0, 0, 0),), tail=((round(tail), 0, 0, 0),), comm=((round(comm), 0, 0, 0),),
                  const=round(p2p), exact=True, world=cluster.world)


def fits_somewhere(layout: Layout, capacity_kib: int, layers: int) -> bool:
    """Some partition and recompute counts of the layout fit in `capacity_kib` (memory alone):
    each class at its least memory (recompute none, one layer or all), over every partition,
    which is the layout's lower bound for memory (point.lower_bound)."""
    from planner.search.point import lower_bound  # point imports this module
    return 0 <= capacity_kib and lower_bound(layout, "memory", layers) <= capacity_kib


class TableBuilder:
    """The layouts of candidate plans, one plan at a time, with the screening state of a table.

    With `screen` (the cluster's capacity): a layout that fits nowhere is not timed, nor are
    larger micro-batches of it (memory grows with the micro-batch); and, unless the objective
    is memory, CPU offload is only tried where the same layout without it fits nowhere
    (offload only adds time in the model: it earns its place by fitting). So a plan's layouts
    depend on the plans of its `group` added before it, and a deferred plan's also on the plans
    of its group that are not deferred, which build_layouts adds first."""

    def __init__(self, workload: Workload, cluster: Cluster, objective: str = "step-time", screen: bool = True):
        self.workload, self.cluster, self.objective, self.screen = workload, cluster, objective, screen
        self.lead = linear_lead(workload)
        self.screen_kib = cluster.capacity // KiB if screen else None
        self.unfit: dict[tuple, int] = {}  # layout but its micro-batch -> smallest micro-batch fitting nowhere
        self.fits: set[tuple] = set()      # layouts (offload none) that fit somewhere

    @staticmethod
    def group(plan: Plan) -> tuple:
        """The plans whose screening reads one another's: the same layout but the micro-batch
        and, among deferred plans, the offload (each is tried only where no other fits)."""
        return plan.key_with(mbs=1, gas=1, offload="none")

    def deferred(self, plan: Plan) -> bool:
        """Added after the plans that are not: offload, tried only where they fit nowhere."""
        return self.screen and plan.offload != "none" and self.objective != "memory"

    def order(self, plans: list[Plan]) -> list[int]:
        """The indices of the plans in the order to add them: `phases`, one after the other."""
        first, deferred = self.phases(plans)
        return first + deferred

    def phases(self, plans: list[Plan]) -> tuple[list[int], list[int]]:
        """The indices of the plans added first, and of the deferred ones, each in their order."""
        deferred = [self.deferred(plan) for plan in plans]
        return ([i for i, later in enumerate(deferred) if not later],
                [i for i, later in enumerate(deferred) if later])

    def skips(self, plan: Plan) -> bool:
        """Whether `add` would build nothing for the plan, from what was added before it."""
        if self.deferred(plan) and plan.with_(offload="none").key() in self.fits:
            return True
        if self.screen and plan.mbs > self.unfit.get(plan.key_with(mbs=1, gas=1), plan.mbs):
            return True
        return self.never_built(plan)

    def lows(self, plan: Plan) -> tuple[int, int, int] | None:
        """The fewest layers the (first, middle, last) stages hold in every partition of the
        plan's layout (the leading block on the first, enough for the chunks: partition.
        class_lows), None where the layers are not linear."""
        if self.lead is None:
            return None
        return class_lows(plan.parallel.pp, plan.parallel.vpp, max(1, self.lead))

    def never_built(self, plan: Plan) -> bool:
        """Whether `add` builds nothing for the plan whatever was added before it: recompute none
        where layouts have variables (it is the full layout recomputing no layer)."""
        return plan.recompute == "none" and self.lead is not None

    def screen_out(self, plan: Plan) -> None:
        """Count the plan as a layout that fits nowhere, unbuilt (a floor under its least memory
        is above the capacity: search/bounded.py): its larger micro-batches are screened out."""
        key = plan.key_with(mbs=1, gas=1)
        self.unfit[key] = min(self.unfit.get(key, plan.mbs), plan.mbs)

    def add(self, plan: Plan, time: bool = True) -> list[Layout]:
        """The plan's layouts (none when screened out), the screening state updated. `time` False:
        a layout with variables that fits somewhere is left untimed (`untimed`), for `time`."""
        if self.skips(plan):
            return []
        key = plan.key_with(mbs=1, gas=1)
        made = build_layout(plan, self.workload, self.cluster, self.lead, self.screen_kib, time=time)
        layers = self.workload.arch.num_layers
        if self.screen and not made[0].timed and made[0].screened_kib is not None:
            self.unfit[key] = min(self.unfit.get(key, plan.mbs), plan.mbs)
        elif self.screen and any(not m.exact or fits_somewhere(m, self.screen_kib, layers)
                                 for m in made):  # build_layout timed the others because they fit
            self.fits.add(plan.with_(offload="none").key())
        return made

    @staticmethod
    def untimed(layout: Layout) -> bool:
        """A layout `add` left for `time`: it fits somewhere, its time terms not computed yet."""
        return not layout.timed and layout.screened_kib is None

    def time(self, layout: Layout) -> Layout:
        """The layout `add` left untimed, timed: as `add` would have built it."""
        return time_layout(layout, self.workload, self.cluster, self.lead)


def build_layouts(plans: Iterable[Plan], workload: Workload, cluster: Cluster, objective: str = "step-time",
                  progress: Callable[[int], None] | None = None, screen: bool = True) -> list[Layout]:
    """Layouts of the candidate plans. Recompute `none` is the `full` layout with r = 0, so
    only `selective` and `full` candidates become layouts (plus `none` ones that are exact).
    `screen`: see TableBuilder; `progress(plans done)` after each plan."""
    builder = TableBuilder(workload, cluster, objective, screen)
    plans = list(plans)
    out: list[Layout] = []
    for done, i in enumerate(builder.order(plans), start=1):
        out.extend(builder.add(plans[i]))
        if progress is not None:
            progress(done)
    return out
