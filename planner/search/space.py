"""The plan space: every legal value of each plan key for one job on one cluster and one engine.

Candidates obey `planner.engines.rules` and the profile of the workload's engine
(`Workload.engine.name`, planner/engines/profiles/): only values that engine launches are
enumerated, and each plan names it (`Plan.framework`). The user's constraints are NOT applied
here: the solver adds them as constraints of its own so that it can say which of them make a
problem infeasible.
"""
from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter

from planner.cost.cluster import Cluster
from planner.cost.plan import (
    OFFLOAD_CHOICES,
    QUANT_CHOICES,
    RECOMPUTE_POLICIES,
    ParallelDims,
    Plan,
)
from planner.cost.precisions import QUANTIZED_PRECISIONS
from planner.cost.timing.floor import shape_floor_key
from planner.cost.workload import JobDefaults, Workload
from planner.engines.profiles import PROFILES
from planner.engines.rules import DEGREE_RULES, RULES, fp8_param_gather_by_default
from planner.model.frozen import evolve
from planner.search.admit import Admission
from planner.search.partition import class_lows, default_runs, linear_lead, nearest_partition, runnable
from planner.spec.job import Constraint


def divisors(n: int) -> list[int]:
    """Every divisor of n >= 1, ascending, from its prime factorization: trial division up to
    sqrt(n), so a world of 2^20 GPUs or a batch of 2^24 costs at most 4,096 divisions where
    testing every number up to n would cost n."""
    primes: list[tuple[int, int]] = []
    rest, p = n, 2
    while p * p <= rest:
        if rest % p == 0:
            power = 0
            while rest % p == 0:
                rest //= p
                power += 1
            primes.append((p, power))
        p += 1 if p == 2 else 2
    if rest > 1:
        primes.append((rest, 1))
    found = [1]
    for prime, power in primes:
        found = [d * prime**k for d in found for k in range(power + 1)]
    return sorted(found)


def _values(key: str, default: tuple, constraints: dict[str, Constraint]) -> tuple:
    """Values to enumerate for a key outside the first search: the constraint's list, else the default."""
    c = constraints.get(key)
    if c is not None and c.values is not None:
        return tuple(c.values)
    return default


CP_MIN_TOKENS = 8192
"""Context parallelism is searched by default only while each rank keeps at least this many
tokens of a sequence (CP pays for long contexts; Llama 3 trained 8K sequences without it)."""
VPP_CHOICES = (1, 2, 4)
"""Interleaved pipeline chunks searched by default (Megatron --num-layers-per-virtual-pipeline-stage)."""


def default_cps(seq_len: int, world: int) -> tuple[int, ...]:
    out, cp = [1], 2
    while seq_len // cp >= CP_MIN_TOKENS and world % cp == 0:
        out.append(cp)
        cp *= 2
    return tuple(out)


def default_eps(workload: Workload) -> tuple[int, ...]:
    """Expert parallelism: every divisor of the expert count (rules.py keeps ep inside dp x cp)."""
    moe = workload.arch.moe
    return tuple(divisors(moe.num_experts)) if moe is not None else (1,)


def default_quants(workload: Workload, cluster: Cluster, job_quant: str) -> tuple[str, ...]:
    """The job's storage of the base weights. A `quant` constraint opens the others (none, int8,
    nf4, fp8; fp8 only where the GPU has it): the launch configs do not carry the choice (it is
    the model loader's), so the search does not change it unasked."""
    return (job_quant,)


def default_precisions(job_precision: str, cluster: Cluster) -> tuple[str, ...]:
    """The job's precision; an fp8, mxfp8 or nvfp4 job may also run bf16 (fp8 only where the GPU has it:
    a layout whose shapes MXFP8 cannot block, rules._mx_blocks, still runs)."""
    if job_precision in QUANTIZED_PRECISIONS:
        return (job_precision, "bf16") if cluster.gpu.supports(job_precision) else ("bf16",)
    return (job_precision,)


def default_optimizers(job_optimizer: str) -> tuple[str, ...]:
    """The job's optimizer; a job that allows 8-bit AdamW may also use AdamW."""
    return ("adamw8bit", "adamw") if job_optimizer == "adamw8bit" else (job_optimizer,)


EXECUTION_KEYS = (("mbs", "gas"), ("sp",), ("zero",), ("recompute",), ("offload",), ("quant",), ("precision",),
                  ("optimizer",), ("lora_rank",))
"""The keys a layout's plans vary, in groups chosen together (gas follows from mbs), in the order of
their product: the micro-batch outermost."""


@dataclass(frozen=True)
class Layout:
    """Parallel degrees and partition of a family of candidates, and the execution values they may take."""

    plan: Plan
    """The degrees and partition; every other key at Plan's default but the engine (`framework`)."""
    options: tuple[tuple[tuple, ...], ...]
    """For each group of EXECUTION_KEYS, the value tuples it may take, in order."""


def candidate_plans(workload: Workload, cluster: Cluster, defaults: JobDefaults,
                    constraints: dict[str, Constraint], *, least_memory: bool = False) -> Iterator[Plan]:
    """Every structurally valid plan (rules.py) of the workload's engine, constraints not applied:
    every pipeline depth some partition the engine runs allows (search/partition.py), each plan
    with the default partition, or the runnable one nearest it where the engine cannot run the
    default. The search varies the partition and partial recompute of each of them.

    The plans are those of the product of each layout's options that `plan_problems` and the
    engine's `problems` pass, in that order; admit.py checks each rule once per combination of
    the values it reads instead of once per plan.

    `least_memory` (sizing.py): of each family, only the plans that can need its least memory:
    the smallest micro-batch the constraints allow (and, where gradients are not kept between
    steps, the one-micro-batch step, whose gradients appear only in backward), and the recompute
    policies other than none (recomputing every layer never saves more than recomputing none)."""
    return iter(candidates(workload, cluster, defaults, constraints, least_memory=least_memory, lazy=False))


def candidates(workload: Workload, cluster: Cluster, defaults: JobDefaults, constraints: dict[str, Constraint], *,
               least_memory: bool = False, lazy: bool = True) -> Candidates:
    """`candidate_plans`, as a sequence whose plans are built when first read; `lazy`: each
    layout's rows made when first read too (a search that reads every plan makes them at once)."""
    engine = PROFILES[workload.engine.name]
    admission = Admission((*DEGREE_RULES, *RULES, *engine.checks), workload, cluster, EXECUTION_KEYS)
    found: list[_LayoutRows] = []
    start = 0
    for layout in layouts(workload, cluster, defaults, constraints, least_memory=least_memory):
        if not admission.layout_passes(layout.plan):
            continue
        admitted: list[list[tuple]] = []
        rows = None if lazy else admission.rows(layout.plan, layout.options, admitted)
        count = admission.count(layout.plan, layout.options, admitted) if lazy else len(rows)
        if count:
            found.append(_LayoutRows(layout.plan, start, count, _shapes(admitted),
                                     tuple(map(tuple, admitted)), admission, layout.options, rows))
            start += count
    return Candidates(workload, found)


@dataclass
class _LayoutRows:
    """The admitted rows of execution values of one layout (EXECUTION_KEYS order), the first of
    them the `start`-th candidate: counted at once, made when first read (a search that builds
    its table only as far as its answer needs reads the rows of a third of DeepSeek-V3's
    layouts)."""

    base: Plan
    start: int
    count: int
    shapes: tuple[tuple, ...]
    """The (mbs, gas, sp, precision) its rows may take: the product of the values each group's
    own rules admit (a row's are among them)."""
    admitted: tuple[tuple[tuple, ...], ...]
    """The values each group's own rules admit, in order: a plan of any shape with each group's
    first is a legal plan's twin in all a floor key reads (`Candidates.shape_plan`)."""
    admission: Admission
    options: tuple[tuple[tuple, ...], ...]
    _rows: list[tuple] | None = None

    @property
    def rows(self) -> list[tuple]:
        if self._rows is None:
            self._rows = self.admission.rows(self.base, self.options)
        return self._rows

    def __getstate__(self) -> dict:
        """Pickled with its rows, without the admission (an engine's checks may be lambdas): for
        worker processes that do not inherit it (parallel.py)."""
        return {**self.__dict__, "_rows": self.rows, "admission": None}


def _shapes(admitted: list[list[tuple]]) -> tuple[tuple, ...]:
    """The (mbs, gas, sp, precision) of the product of each group's admitted values (EXECUTION_KEYS
    order, every group's: the layout has rows)."""
    batches, sps, precisions = (admitted[EXECUTION_KEYS.index(keys)] for keys in (("mbs", "gas"), ("sp",), ("precision",)))
    return tuple((mbs, gas, sp, precision) for mbs, gas in batches for (sp,) in sps for (precision,) in precisions)


_ROW_KEYS = tuple(key for group in EXECUTION_KEYS for key in group)
_SCREENED_TOGETHER = tuple(i for i, key in enumerate(_ROW_KEYS) if key not in ("mbs", "gas", "offload"))
"""The positions of a row that name its screening group with the layout (search/layouts.py
`TableBuilder.group`: every key but the micro-batch, its count and the offload)."""
_SHAPE = tuple(_ROW_KEYS.index(key) for key in ("mbs", "gas", "sp", "precision"))
"""The positions of a row that give a plan's shape with the layout (`Candidates.screening`)."""


class Candidates(Sequence[Plan]):
    """The candidate plans of one job, cluster and engine in `candidate_plans`' order, each built
    when first read: a search that builds its table only as far as its answer needs (bounded.py)
    reads the plans of a few hundred screening groups of DeepSeek-V3's 97,380 candidates."""

    def __init__(self, workload: Workload, layouts: list[_LayoutRows]):
        self.workload = workload
        self._layouts = layouts
        self._starts = [lay.start for lay in layouts]
        self._count = layouts[-1].start + layouts[-1].count if layouts else 0
        self._built: dict[int, Plan] = {}
        self._degrees: dict[tuple[int, bool], ParallelDims] = {}

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._count))]
        if i < 0:
            i += self._count
        if not 0 <= i < self._count:
            raise IndexError(i)
        plan = self._built.get(i)
        if plan is None:
            k = bisect.bisect_right(self._starts, i) - 1
            plan = self._built[i] = self._plan(k, self._layouts[k].rows[i - self._starts[k]])
        return plan

    def __iter__(self) -> Iterator[Plan]:
        for k, layout in enumerate(self._layouts):
            for j, row in enumerate(layout.rows):
                plan = self._built.get(layout.start + j)
                yield plan if plan is not None else self._plan(k, row)

    def screening(self, keep: Callable[[Plan], bool] | None = None
                  ) -> tuple[dict[tuple, list[int]], dict[tuple, dict[tuple, int]]]:
        """Without building a plan: the indices of the plans of each screening group
        (TableBuilder.group), the groups in the order of their first plan; and of each group, one
        plan of each floor key (timing/floor.py floor_key: the layout's degrees, the micro-batch,
        sequence parallelism and the precision), by its key. `keep`: only the layouts whose plan
        (degrees and partition, any of their plans') it keeps."""
        groups: dict[tuple, list[int]] = {}
        shapes: dict[tuple, dict[tuple, int]] = {}
        for k, layout in enumerate(self._layouts):
            if keep is None or keep(layout.base):
                found_groups, found_shapes = self.layout_screening(k)
                groups.update(found_groups)
                shapes.update(found_shapes)
        return groups, shapes

    def layout_screening(self, k: int) -> tuple[dict[tuple, list[int]], dict[tuple, dict[tuple, int]]]:
        """`screening` of the `k`-th layout alone (its groups are keyed (k, values))."""
        layout = self._layouts[k]
        pick, shape = itemgetter(*_SCREENED_TOGETHER), itemgetter(*_SHAPE)
        keys: dict[tuple, tuple] = {}  # the layout's shapes' floor keys
        # The layout's groups by their values, each with its plans and its shapes' keys.
        found: dict[tuple, tuple[list[int], dict[tuple, int]]] = {}
        for i, row in enumerate(layout.rows, start=layout.start):
            values = pick(row)
            entry = found.get(values)
            if entry is None:
                entry = found[values] = ([], {})
            entry[0].append(i)
            values = shape(row)
            key = keys.get(values)
            if key is None:
                key = keys[values] = shape_floor_key(layout.base, *values)
            if key not in entry[1]:
                entry[1][key] = i
        return ({(k, values): members for values, (members, _) in found.items()},
                {(k, values): keyed for values, (_, keyed) in found.items()})

    def layout_shapes(self, keep: Callable[[Plan], bool] | None = None) -> list[tuple[int, int, list[tuple]]]:
        """Without reading their rows: of each layout (`keep`: those it keeps), its index, its
        first plan's and the floor keys its plans may have (timing/floor.py shape_floor_key),
        each with the (layout, shape) `shape_plan` builds a plan of it from: a superset, the
        product of the values each group's own rules admit."""
        out = []
        for k, layout in enumerate(self._layouts):
            if keep is None or keep(layout.base):
                out.append((k, layout.start, [(shape_floor_key(layout.base, *shape), (k, shape))
                                              for shape in layout.shapes]))
        return out

    def shape_plan(self, token: tuple[int, tuple]) -> Plan:
        """A plan of layout k with shape (mbs, gas, sp, precision), `token` (k, shape), its other
        keys each group's first admitted value: what its floor key reads is the shape's
        (`layout_shapes`)."""
        k, (mbs, gas, sp, precision) = token
        first = dict(zip(_ROW_KEYS, (value for group in self._layouts[k].admitted for value in group[0])))
        first.update(mbs=mbs, gas=gas, sp=sp, precision=precision)
        return self._plan(k, tuple(first[key] for key in _ROW_KEYS))

    def least_memory_plans(self, k: int) -> list[Plan]:
        """Plans of the `k`-th layout that hold no more on their GPUs than any of its plans of
        their (quant, precision, optimizer, lora rank): for each such admitted combination, with
        sequence parallelism where admitted, the most sharded ZeRO stage, the most offloaded
        states and the most recompute its groups admit, and the least micro-batch, or (where
        gradients are not kept between steps) the whole step's (`_least_batches`: in-flight
        activations grow with the micro-batch, gradients appear in backward only without
        accumulation). Each value is one some row holds, not every combination a legal plan:
        a bound for the layout's plans, built without reading its rows."""
        admitted = dict(zip(EXECUTION_KEYS, self._layouts[k].admitted))
        counts = dict(admitted[("mbs", "gas")])  # micro-batch -> its count, the micro-batch ascending
        mbs, gas = next(iter(counts.items()))
        batches = [(m, counts[m]) for m in _least_batches(list(counts), mbs * gas, self.workload, {})]
        least = {"sp": max(sp for (sp,) in admitted[("sp",)]),
                 "zero": max(zero for (zero,) in admitted[("zero",)]),
                 "recompute": max((recompute for (recompute,) in admitted[("recompute",)]),
                                  key=RECOMPUTE_POLICIES.index),
                 "offload": max((offload for (offload,) in admitted[("offload",)]), key=OFFLOAD_CHOICES.index)}
        plans = []
        for (mbs, gas), (quant,), (precision,), (optimizer,), (rank,) in itertools.product(
                batches, *(admitted[(key,)] for key in ("quant", "precision", "optimizer", "lora_rank"))):
            values = {**least, "mbs": mbs, "gas": gas, "quant": quant, "precision": precision, "optimizer": optimizer,
                      "lora_rank": rank}
            plans.append(self._plan(k, tuple(values[key] for key in _ROW_KEYS)))
        return plans

    def layout_plan(self, k: int) -> Plan:
        """The `k`-th layout's plan (its degrees and partition)."""
        return self._layouts[k].base

    def layout_size(self, k: int) -> int:
        """The plans of the `k`-th layout."""
        return self._layouts[k].count

    def values(self, i: int, keys: tuple[str, ...]) -> tuple:
        """The execution values `keys` (EXECUTION_KEYS) of the `i`-th candidate, without building it."""
        k = bisect.bisect_right(self._starts, i) - 1
        row = self._layouts[k].rows[i - self._starts[k]]
        return tuple(row[_ROW_KEYS.index(key)] for key in keys)

    def layout_plans(self) -> list[Plan]:
        """Each layout's plan (its degrees and partition), in order."""
        return [layout.base for layout in self._layouts]

    def _plan(self, k: int, row: tuple) -> Plan:
        base = self._layouts[k].base
        mbs, gas, sp, zero, recompute, offload, quant, precision, optimizer, rank = row
        parallel = self._degrees.get((k, sp))
        if parallel is None:
            parallel = self._degrees[(k, sp)] = (base.parallel if base.parallel.sp == sp
                                                 else evolve(base.parallel, sp=sp))
        return evolve(base, parallel=parallel, zero=zero, recompute=recompute, mbs=mbs, gas=gas, lora_rank=rank,
                      quant=quant, precision=precision, offload=offload, optimizer=optimizer,
                      fp8_param_gather=fp8_param_gather_by_default(self.workload, precision, zero))


def layouts(workload: Workload, cluster: Cluster, defaults: JobDefaults, constraints: dict[str, Constraint], *,
            least_memory: bool = False) -> Iterator[Layout]:
    """The layouts of `candidate_plans`, in its order, with the values each may take (rules not yet applied)."""
    arch = workload.arch
    world = cluster.world
    engine = PROFILES[workload.engine.name]

    def runs(key: str, values) -> tuple:
        return tuple((v,) for v in values if engine.allows(key, v))

    cps = [c for (c,) in runs("cp", [c for c in _values("cp", default_cps(workload.seq_len, world), constraints)
                                     if isinstance(c, int) and c >= 1 and world % c == 0])]
    eps = [e for (e,) in runs("ep", _values("ep", default_eps(workload), constraints))]
    vpps = [v for (v,) in runs("vpp", _values("vpp", VPP_CHOICES, constraints))]
    offloads = runs("offload", [o for o in _values("offload", OFFLOAD_CHOICES, constraints) if o in OFFLOAD_CHOICES])
    quants = runs("quant", [q for q in _values("quant", default_quants(workload, cluster, defaults.quant), constraints)
                            if q in QUANT_CHOICES and (q != "fp8" or cluster.gpu.supports("fp8"))])
    precisions = runs("precision", _values("precision", default_precisions(defaults.precision, cluster), constraints))
    optimizers = runs("optimizer", _values("optimizer", default_optimizers(defaults.optimizer), constraints))
    ranks = runs("lora_rank", _values("lora_rank", defaults.lora_ranks, constraints))
    recomputes = runs("recompute", RECOMPUTE_POLICIES)
    if least_memory:
        # A `recompute` constraint is the stage variables' (search/point.py STAGE_KEYS): full
        # stands for none there, so none is left out only where full or selective remains.
        recomputes = tuple(r for r in recomputes if r != ("none",)) or recomputes
    sps = {tp_split: runs("sp", (False, True) if tp_split else (False,)) for tp_split in (False, True)}
    zeros = {staged: runs("zero", (0, 1) if staged else (0, 1, 2, 3)) for staged in (False, True)}
    heads = arch.attention.num_heads
    layers, uneven = arch.num_layers, engine.uneven_stages
    lead = max(1, linear_lead(workload) or 0)  # the leading dense block stays on the first stage
    for cp in cps:
        for tp in divisors(world // cp):
            if heads % tp or (not arch.attention.is_mla and arch.attention.num_kv_heads % tp):
                continue
            for pp in divisors(world // (cp * tp)):
                if (pp > layers or not engine.allows("pp", pp)
                        or not runnable(layers, pp, class_lows(pp, 1, lead), uneven)):
                    continue
                dp = world // (cp * tp * pp)
                if workload.global_batch % dp:
                    continue
                per_rank = workload.global_batch // dp
                for ep, vpp in itertools.product(eps, vpps if pp > 1 else (1,)):
                    if (dp * cp) % ep or (vpp > 1 and not runnable(layers, pp, class_lows(pp, vpp, lead), uneven)):
                        continue
                    # Interleaving needs the micro-batches of a step to be a multiple of pp.
                    batches = [m for m in divisors(per_rank) if vpp == 1 or (per_rank // m) % pp == 0]
                    if least_memory:
                        batches = _least_batches(batches, per_rank, workload, constraints)
                    first, last = _partition(layers, pp, vpp, lead, uneven)
                    plan = Plan(parallel=ParallelDims(tp=tp, pp=pp, dp=dp, cp=cp, ep=ep, vpp=vpp),
                                framework=engine.name, first_stage_layers=first, last_stage_layers=last)
                    yield Layout(plan, (tuple((m, per_rank // m) for m in batches), sps[tp > 1], zeros[pp > 1],
                                        recomputes, offloads, quants, precisions, optimizers, ranks))


def _least_batches(batches: list[int], per_rank: int, workload: Workload,
                   constraints: dict[str, Constraint]) -> list[int]:
    """The smallest micro-batch the constraints allow (in-flight activations grow with it), and,
    where gradients are not kept between steps, the one that makes a step one micro-batch
    (memory/phases.py: gradients then appear only in backward)."""
    allowed = [m for m in batches if "mbs" not in constraints or constraints["mbs"].allows(m)]
    keep = allowed[:1]
    if not workload.engine.persistent_gradients and per_rank in allowed and per_rank not in keep:
        keep.append(per_rank)
    return keep


def _partition(layers: int, pp: int, vpp: int, lead: int, uneven: bool) -> tuple[int | None, int | None]:
    """(first, last) stage layers of a candidate: (None, None) for the default split where the
    engine runs it, else the runnable split nearest it (search/partition.py), so that every
    candidate launches as it stands. The search varies the partition of every layout it can."""
    lows = class_lows(pp, vpp, lead)
    if pp == 1 or not uneven or default_runs(layers, pp, lows):
        return None, None
    first, _, last = nearest_partition(layers, pp, lows)
    return first, last
