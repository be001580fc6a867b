"""The CP-SAT model: an outer layout, and per stage the layers it holds and the layers it recomputes.

One Boolean per outer layout (layouts.py), exactly one chosen. The layouts of one pipeline depth
share integer variables per stage class: layers (first, middle, last; first + (pp − 2)·middle +
last = layers) and recomputed layers, with a Boolean "recomputes at all" for the working set;
where an engine recomputes one count in every stage, that count too (each class min(n, count)).
The chosen layout's linear coefficients bind them: each class's memory within the GPU (and host
memory under offload), and the step time as

    step = p2p + max over classes (m + (p − 1)/v)·(t_F + t_B) + max over classes tail

with the two maxima as variables bounded below by every class of the chosen layout (exact at the
optimum). Memory, host memory and every user constraint hold through assumption literals, so an
infeasible model comes back with the requirements to blame (SufficientAssumptionsForInfeasibility,
shrunk to a minimal core). The runners-up: runners_up.py.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

from planner.search.layouts import Layout, Linear
from planner.search.ortools_cp import cp_model
from planner.search.point import (
    Point,
    first_last_allowed,
    layout_forbidden,
    lower_bound,
    peak_kib,
    recompute_allowed,
    untimed_unfit,
)
from planner.search.runners_up import layout_best, next_best
from planner.spec.job import Constraint

# Solver parameters in one place: deterministic (one worker, fixed seed).
SOLVER_WORKERS = 1
RANDOM_SEED = 17
CORE_TRIAL_WORK = 5.0
"""CP-SAT's deterministic time (work units of about a second each on a current core) for each
trial of the minimal core's deletion filter; undecided within it, the assumption stays in the
core. Deterministic, with one worker and a fixed seed: the same explanation on any machine under
any load (`max_deterministic_time`, ortools sat_parameters.proto)."""


@dataclass
class _Group:
    """Variables shared by the layouts of one pipeline depth."""

    n: list[cp_model.IntVar]
    r: list[cp_model.IntVar]
    y: list[cp_model.IntVar]


@dataclass
class PlanModel:
    model: cp_model.CpModel
    chosen: list[cp_model.IntVar]
    """chosen[i]: layout i is the plan."""
    groups: dict[int, _Group]
    assumptions: dict[int, str]
    """Assumption literal index -> what it enforces (`memory`, `host memory`, `constraints.tp`)."""
    objective: cp_model.LinearExprT
    """What the model minimizes."""


def _linear(coef: tuple[int, int, int, int], g: _Group | None, k: int):
    a, b, c, w = coef
    if g is None:
        return a
    return a + b * g.n[k] + c * g.r[k] + w * g.y[k]


def build_model(layouts: list[Layout], constraints: dict[str, Constraint], capacity_kib: int,
                host_capacity_kib: int | None, objective: str, layers: int) -> PlanModel:
    model = cp_model.CpModel()
    chosen = [model.new_bool_var(f"layout_{i}") for i in range(len(layouts))]
    assumptions: dict[int, str] = {}
    literals: dict[str, cp_model.IntVar] = {}

    def literal(name: str) -> cp_model.IntVar:
        if name not in literals:
            literals[name] = model.new_bool_var(name)
            assumptions[literals[name].index] = name
        return literals[name]

    # Exactly one layout.
    model.add_exactly_one(chosen)
    # Stage variables per pipeline depth: layers and recomputed layers per class.
    groups: dict[int, _Group] = {}
    for pp in sorted({lay.pp for lay in layouts if not lay.exact}):
        classes = 1 if pp == 1 else 2 if pp == 2 else 3
        n = [model.new_int_var(1, layers, f"layers_pp{pp}_{k}") for k in range(classes)]
        r = [model.new_int_var(0, layers, f"recomputed_pp{pp}_{k}") for k in range(classes)]
        y = [model.new_bool_var(f"recomputes_pp{pp}_{k}") for k in range(classes)]
        # The classes hold every layer once: first + (pp − 2)·middle + last.
        model.add(sum(cnt * v for cnt, v in zip((1,) if pp == 1 else (1, 1) if pp == 2 else (1, pp - 2, 1), n))
                  == layers)
        for k in range(classes):
            # Recompute at most the stage's layers; y says whether any (the working set).
            model.add(r[k] <= n[k])
            model.add(r[k] >= y[k])
            model.add(r[k] <= layers * y[k])
        groups[pp] = _Group(n=n, r=r, y=y)

    # One recompute count for every class (Layout.recompute_step): R, a multiple of the step, per
    # pipeline depth and step, and each class's min(n, R), which binds the chosen layout's counts.
    shared: dict[tuple[int, int], list[cp_model.IntVar]] = {}

    def shared_recomputed(pp: int, step: int) -> list[cp_model.IntVar]:
        if (pp, step) not in shared:
            chunks = model.new_int_var(0, -(-layers // step), f"recompute_chunks_pp{pp}_s{step}")
            count = model.new_int_var(0, -(-layers // step) * step, f"recompute_count_pp{pp}_s{step}")
            model.add(count == step * chunks)
            counts = []
            for k, n in enumerate(groups[pp].n):
                least = model.new_int_var(0, layers, f"recomputed_pp{pp}_s{step}_{k}")
                model.add_min_equality(least, [n, count])
                counts.append(least)
            shared[pp, step] = counts
        return shared[pp, step]

    # The maxima within the range their terms can take, not an arbitrary big number: CP-SAT
    # relaxes each enforced row with a big-M from the variables' domains, and an M of 2^50 next
    # to costs of 10^7 left its LP bounds wrong: an optimum "proven" 7% above a plan of the model
    # (tests/test_solver_agreement.py).
    low, high = _term_range(layouts, objective, layers)
    pace = model.new_int_var(low, high, "pace")
    tail = model.new_int_var(low, high, "tail")
    for i, (lay, x) in enumerate(zip(layouts, chosen)):
        g = None if lay.exact else groups[lay.pp]
        # The user's limits on outer keys switch the layout off.
        for key in layout_forbidden(lay, constraints):
            model.add_implication(literal(f"constraints.{key}"), x.Not())
        if untimed_unfit(lay, capacity_kib, objective):
            model.add_implication(literal("memory"), x.Not())
            continue
        if g is not None:
            for k, cls in enumerate(lay.classes):
                # The layout's partition: fixed, or free above the class's fewest layers.
                if cls.fixed is not None:
                    model.add(g.n[k] == cls.fixed).only_enforce_if(x)
                else:
                    model.add(g.n[k] >= cls.low).only_enforce_if(x)
                # Recompute: none, any count, or the whole stage.
                if cls.recompute == "none":
                    model.add(g.y[k] == 0).only_enforce_if(x)
                elif cls.recompute == "all":
                    model.add(g.r[k] == g.n[k]).only_enforce_if([x, g.y[k]])
            if lay.recompute_step:
                for k, least in enumerate(shared_recomputed(lay.pp, lay.recompute_step)):
                    model.add(g.r[k] == least).only_enforce_if(x)
            # The user's recompute policies: `none` is no stage recomputing, `full` some.
            if lay.plan.recompute == "full":
                allow_none, allow_full = recompute_allowed(constraints)
                if not (allow_none and allow_full):
                    lit = literal("constraints.recompute")
                    if not allow_none and not allow_full:
                        model.add_implication(lit, x.Not())
                    elif not allow_none:
                        model.add(sum(g.y) >= 1).only_enforce_if([x, lit])
                    else:
                        model.add(sum(g.y) == 0).only_enforce_if([x, lit])
            # The user's bounds on the first and last stages' layers.
            if lay.pp > 1:
                for key, k in (("first_stage_layers", 0), ("last_stage_layers", len(lay.classes) - 1)):
                    c = constraints.get(key)
                    if c is None:
                        continue
                    lit = literal(f"constraints.{key}")
                    if c.values is not None:
                        allowed = [v for v in c.values if isinstance(v, int)]
                        model.add_linear_expression_in_domain(
                            g.n[k], cp_model.Domain.from_values(allowed)).only_enforce_if([x, lit])
                    if c.min is not None:
                        model.add(g.n[k] >= math.ceil(c.min)).only_enforce_if([x, lit])
                    if c.max is not None:
                        model.add(g.n[k] <= math.floor(c.max)).only_enforce_if([x, lit])
        elif not first_last_allowed(lay, constraints):
            for key in ("first_stage_layers", "last_stage_layers"):
                if key in constraints:
                    model.add_implication(literal(f"constraints.{key}"), x.Not())
        # Every stage within the GPU's usable memory, and the node's host memory under offload.
        def within(term: Linear, k: int, limit: int, name: str) -> None:
            used = _linear(term, g, k)
            if g is None:  # a number: the layout is in or out
                if used > limit:
                    model.add_implication(literal(name), x.Not())
            else:
                model.add(used <= limit).only_enforce_if([x, literal(name)])

        for k in range(len(lay.classes)):
            within(lay.mem[k], k, capacity_kib, "memory")
            if host_capacity_kib is not None and lay.plan.offload != "none":
                within(lay.host[k], k, host_capacity_kib, "host memory")
        # The objective's maxima over the classes of the chosen layout.
        for k in range(len(lay.classes)):
            if objective in ("step-time", "cost"):
                model.add(pace >= _linear(lay.pace[k], g, k)).only_enforce_if(x)
                model.add(tail >= _linear(lay.tail[k], g, k)).only_enforce_if(x)
            elif objective == "comm":
                model.add(pace >= _linear(lay.comm[k], g, k)).only_enforce_if(x)
            else:
                model.add(pace >= _linear(lay.mem[k], g, k)).only_enforce_if(x)

    model.add_assumptions([model.get_bool_var_from_proto_index(i) for i in assumptions])
    consts = [0 if objective == "memory" else lay.const for lay in layouts]
    total = sum(c * x for c, x in zip(consts, chosen)) + pace
    if objective in ("step-time", "cost"):
        total += tail
    else:
        model.add(tail == 0)
    model.minimize(total)
    return PlanModel(model=model, chosen=chosen, groups=groups, assumptions=assumptions, objective=total)


def _term_range(layouts: list[Layout], objective: str, layers: int) -> tuple[int, int]:
    """Bounds on any class's value of the objective's terms over every layout, partition and
    recompute count: a + b·n + c·r + w·[r > 0] with 0 ≤ r ≤ n ≤ layers."""
    terms = {"step-time": ("pace", "tail"), "cost": ("pace", "tail"), "comm": ("comm",)}.get(objective, ("mem",))
    low = high = 0
    for lay in layouts:
        for name in terms:
            for a, b, c, w in getattr(lay, name):
                high = max(high, a + max(0, b) * layers + max(0, b + c) * layers + max(0, w))
                low = min(low, a + min(0, b) * layers + min(0, b + c) * layers + min(0, w))
    return low, high


def _new_solver(time_limit: float | None = None, work_limit: float | None = None) -> cp_model.CpSolver:
    """`time_limit`: wall seconds (the user's --time-limit); `work_limit`: deterministic time."""
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = SOLVER_WORKERS
    solver.parameters.random_seed = RANDOM_SEED
    # The model is one exactly-one over layouts with enforced linear rows, already in the form
    # presolve would bring it to: presolving it took 0.06-0.18 s of wall time (its fix-point loop
    # over the cost variables' wide domains; CP-SAT 9.15, `log_search_progress`) where the search
    # then proves the optimum in a few milliseconds from the hinted incumbent.
    solver.parameters.cp_model_presolve = False
    if time_limit is not None:
        solver.parameters.max_time_in_seconds = time_limit
    if work_limit is not None:
        solver.parameters.max_deterministic_time = work_limit
    return solver


def _warm_start(pm: PlanModel, index: int, point: Point | None) -> None:
    """Start from layout `index` (the least lower bound), and bound the objective by its own best
    point's cost (`point`: a plan of the model, so no optimum costs more). Every row but one is
    enforced by a layout, so the linear relaxation bounds nothing: hinted with the layout alone,
    the search walked down from a poor point of it in thousands of small improvements (8.6 s for
    an 8B model on 256 L40S; 0.05 s with the bound). Hinting the point's stage variables instead
    held the search beside them: Llama-3-70B on 8 H100 stayed at a plan 10% slower than the
    optimum for 20 s, which the bound alone finds in 0.2 s."""
    pm.model.add_hint(pm.chosen[index], True)
    if point is not None:
        pm.model.add(pm.objective <= point.cost)


def _minimal_core(pm: PlanModel, core: list[int]) -> list[int]:
    """Shrink a sufficient set of assumptions to one where each is needed (deletion filter):
    CP-SAT's core is sufficient, not minimal, and the explanation should name only the culprits."""
    kept = list(core)
    for index in list(core):
        trial = [i for i in kept if i != index]
        pm.model.clear_assumptions()
        pm.model.add_assumptions([pm.model.get_bool_var_from_proto_index(i) for i in trial])
        # A feasibility question: the first plan answers it (the objective would have the solver
        # prove an optimum first). Undecided within the budget: the assumption stays in the core.
        solver = _new_solver(work_limit=CORE_TRIAL_WORK)
        solver.parameters.stop_after_first_solution = True
        if solver.solve(pm.model) == cp_model.INFEASIBLE:
            kept = trial
    return kept


FIRST_BATCH = 48
"""Layouts in the first lazy round; each later round takes four times as many."""


def solve_cpsat(layouts: list[Layout], constraints: dict[str, Constraint], capacity_kib: int,
                host_capacity_kib: int | None, top: int, objective: str, layers: int,
                time_limit: float | None = None,
                bounds: list[int] | None = None) -> tuple[str, list[Point], tuple[str, ...]]:
    """(status, best points in order, conflicting requirements when infeasible). `bounds`: each
    layout's lower bound for the objective, when the caller has them (point.lower_bound).

    The best plan: lazy rounds, the layouts of lowest lower bound first (point.lower_bound); the
    plan found is the best of all once it costs no more than the lowest bound left out.
    Otherwise (or when the round is infeasible) four times as many layouts go in; the last round
    holds them all, and only it may call the problem infeasible. The first round holds every
    layout whose bound is no more than an incumbent's cost, where one is found: the layouts'
    own best points in the order of their bounds until one costs no more than the next bound
    (runners_up.next_best, exact; the search keeps each point for the runners-up, known_points),
    so one round proves the optimum and CP-SAT starts from the incumbent. The runners-up: the
    next best layouts at their own best points (runners_up.py).
    """
    if not layouts:
        return "infeasible", [], ()
    if bounds is None:
        bounds = [lower_bound(lay, objective, layers) for lay in layouts]
    order = sorted(range(len(layouts)), key=lambda i: (bounds[i], i))
    deadline = None if time_limit is None else time.perf_counter() + time_limit

    def left() -> float | None:
        return None if deadline is None else max(0.01, deadline - time.perf_counter())

    size, hint = FIRST_BATCH, 0
    incumbent = next_best(layouts, bounds, 1, constraints, capacity_kib, host_capacity_kib, objective, layers,
                          deadline=deadline)
    if incumbent:
        size = sum(1 for b in bounds if b <= incumbent[0].cost)
        hint = next(k for k, i in enumerate(order) if layouts[i] is incumbent[0].layout)
    while True:
        if size >= len(layouts):
            status, found, conflict = _solve(layouts, constraints, capacity_kib, host_capacity_kib, objective,
                                             layers, left(), hint=order[hint])
            break
        subset = [layouts[i] for i in order[:size]]
        status, found, conflict = _solve(subset, constraints, capacity_kib, host_capacity_kib, objective,
                                         layers, left(), hint=hint)
        hint = 0
        if status == "feasible" or (found and found[0].cost <= bounds[order[size]]):
            break
        size *= 4
    if found and status == "optimal":
        found = [_first_of_cost(layouts, bounds, found[0], constraints, capacity_kib, host_capacity_kib, objective,
                                layers)]
    if found and top > 1:
        # Ranked together: the enumerated points are exact, so none of them ever beats a proven
        # optimum, and a stable sort keeps the best first on a tie.
        found = sorted(found + next_best(layouts, bounds, top - 1, constraints, capacity_kib, host_capacity_kib,
                                         objective, layers, skip=found[0].layout, deadline=deadline),
                       key=lambda p: p.cost)
    return status, found, conflict


def _first_of_cost(layouts: list[Layout], bounds: list[int], optimum: Point, constraints: dict[str, Constraint],
                   capacity_kib: int, host_capacity_kib: int | None, objective: str, layers: int) -> Point:
    """The optimum as brute force ranks it: of the layouts whose own best point (runners_up.
    layout_best, exact) costs what CP-SAT proved optimal, the one that needs the least memory
    (point.peak_kib), then the first in table order, at that point. Layouts of equal cost are
    common (ZeRO 1 and 2 where the optimizer step is too short to tell them apart, ZeRO 0 and 1
    with one data-parallel rank), and which of them CP-SAT reports depends on the rest of the
    model: this way the answer is the one with more headroom, whatever else the table holds (a
    table built only as far as the answer needs, search/bounded.py). For the step time the
    layouts looked at are those whose costs are made as the optimum's (`_cost_shape`); one of
    another make that costs the same to the microsecond by coincidence is not looked for (each
    layout's best point is a few milliseconds where a recompute count is shared)."""
    # Step time: layouts tie where their costs are made alike (_cost_shape); elsewhere any layout
    # may (a communication objective of 0 on one GPU).
    shape = _cost_shape(optimum.layout) if objective in ("step-time", "cost") else None
    tied = [point for i, layout in enumerate(layouts) if bounds[i] <= optimum.cost
            and (shape is None or _cost_shape(layout) == shape)
            and (point := layout_best(layout, constraints, capacity_kib, host_capacity_kib, objective, layers))
            is not None and point.cost == optimum.cost]
    return min(tied, key=peak_kib) if tied else optimum


def _cost_shape(layout: Layout) -> tuple:
    """What a layout's step-time and communication costs are made of: layouts alike in it tie at
    every point (they differ in memory alone: the ZeRO stage, the offload of what the step time
    does not see)."""
    return layout.pace, layout.tail, layout.comm, layout.const, layout.classes, layout.exact, layout.recompute_step


def _solve(layouts: list[Layout], constraints: dict[str, Constraint], capacity_kib: int,
           host_capacity_kib: int | None, objective: str, layers: int,
           time_limit: float | None, hint: int) -> tuple[str, list[Point], tuple[str, ...]]:
    """The best point of the layouts (exactly one chosen), or, when there is none, the
    requirements to blame (a minimal core of the assumption literals)."""
    pm = build_model(layouts, constraints, capacity_kib, host_capacity_kib, objective, layers)
    _warm_start(pm, hint, layout_best(layouts[hint], constraints, capacity_kib, host_capacity_kib, objective, layers))
    solver = _new_solver(time_limit)
    status = solver.solve(pm.model)
    if status == cp_model.INFEASIBLE:
        core = _minimal_core(pm, list(solver.sufficient_assumptions_for_infeasibility()))
        return "infeasible", [], tuple(pm.assumptions[i] for i in core)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return "infeasible", [], ("time limit",)
    index = next(i for i, x in enumerate(pm.chosen) if solver.boolean_value(x))
    lay = layouts[index]
    if lay.exact:
        n = r = ()
    else:
        g = pm.groups[lay.pp]
        n = tuple(solver.value(v) for v in g.n)
        r = tuple(solver.value(v) for v in g.r)
    point = Point(layout=lay, layers=n, recomputed=r, cost=round(solver.objective_value))
    return "optimal" if status == cp_model.OPTIMAL else "feasible", [point], ()
