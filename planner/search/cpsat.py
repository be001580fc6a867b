"""The CP-SAT model: choose one plan of the candidate table, within memory and the user's limits.

Each plan key is an integer variable (categorical keys by index); a table constraint ties the
keys to the plan's integer costs (peak MiB, host MiB, objective). Memory and every user
constraint are enforced through assumption literals, so that an infeasible problem comes back
with the subset of them that is to blame (SufficientAssumptionsForInfeasibility).
Top-K distinct plans come from re-solving with a no-good cut on each plan found.
"""
from __future__ import annotations

from dataclasses import dataclass

from ortools.sat.python import cp_model

from planner.search.table import Row
from planner.spec.job import Constraint

# Solver parameters in one place: deterministic (one worker, fixed seed).
SOLVER_WORKERS = 1
RANDOM_SEED = 17


@dataclass
class PlanModel:
    model: cp_model.CpModel
    keys: dict[str, cp_model.IntVar]
    codes: dict[str, list]
    """Per key, the value behind each integer code."""
    cost: cp_model.IntVar
    assumptions: dict[int, str]
    """Assumption literal index -> what it enforces (`memory`, `host memory`, `constraints.tp`)."""


def _encode(value) -> object:
    # bools and strings are categorical; ints stay themselves so bounds keep their meaning.
    return ("b", value) if isinstance(value, bool) else value


def build_model(rows: list[Row], constraints: dict[str, Constraint], capacity_mib: int,
                host_capacity_mib: int | None) -> PlanModel:
    model = cp_model.CpModel()
    keys = list(rows[0].values)
    codes: dict[str, list] = {}
    variables: dict[str, cp_model.IntVar] = {}
    for key in keys:
        seen = sorted({_encode(r.values[key]) for r in rows}, key=repr)
        numeric = all(isinstance(v, int) for v in seen)
        codes[key] = sorted(seen) if numeric else seen
        if numeric:
            variables[key] = model.new_int_var_from_domain(cp_model.Domain.from_values(codes[key]), key)
        else:
            variables[key] = model.new_int_var(0, len(seen) - 1, key)

    def code(key: str, value) -> int:
        value = _encode(value)
        return value if isinstance(value, int) else codes[key].index(value)

    max_mem = max(r.memory_mib for r in rows)
    max_host = max(r.host_mib for r in rows)
    max_cost = max(r.cost for r in rows)
    memory = model.new_int_var(0, max_mem, "peak_mib")
    host = model.new_int_var(0, max_host, "host_mib")
    cost = model.new_int_var(0, max_cost, "cost")

    # Each plan is one row of the candidate table: keys, memory and cost move together.
    model.add_allowed_assignments(
        [variables[k] for k in keys] + [memory, host, cost],
        [[code(k, r.values[k]) for k in keys] + [r.memory_mib, r.host_mib, r.cost] for r in rows],
    )

    assumptions: dict[int, str] = {}

    def assumed(name: str) -> cp_model.IntVar:
        lit = model.new_bool_var(name)
        assumptions[lit.index] = name
        return lit

    # Every stage of the plan within the GPU's usable memory (and the node's host memory).
    model.add(memory <= capacity_mib).only_enforce_if(assumed("memory"))
    if host_capacity_mib is not None:
        model.add(host <= host_capacity_mib).only_enforce_if(assumed("host memory"))

    # The user's limits on plan keys.
    for key, c in constraints.items():
        var = variables[key]
        lit = assumed(f"constraints.{key}")
        if c.values is not None:
            allowed = [code(key, v) for v in c.values if _encode(v) in codes[key]]
            if allowed:
                model.add_linear_expression_in_domain(var, cp_model.Domain.from_values(allowed)).only_enforce_if(lit)
            else:
                model.add_bool_or([]).only_enforce_if(lit)  # no legal plan has any of these values
        if c.min is not None:
            model.add(var >= int(-(-c.min // 1))).only_enforce_if(lit)
        if c.max is not None:
            model.add(var <= int(c.max // 1)).only_enforce_if(lit)

    model.add_assumptions([model.get_bool_var_from_proto_index(i) for i in assumptions])
    model.minimize(cost)
    return PlanModel(model=model, keys=variables, codes=codes, cost=cost, assumptions=assumptions)


def _decode(pm: PlanModel, solver: cp_model.CpSolver) -> tuple:
    out = []
    for key, var in pm.keys.items():
        value = solver.value(var)
        if isinstance(pm.codes[key][0], int) and not isinstance(pm.codes[key][0], tuple):
            out.append(value)
        else:
            item = pm.codes[key][value]
            out.append(item[1] if isinstance(item, tuple) else item)
    return tuple(out)


def _new_solver(time_limit: float | None = None) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = SOLVER_WORKERS
    solver.parameters.random_seed = RANDOM_SEED
    if time_limit is not None:
        solver.parameters.max_time_in_seconds = time_limit
    return solver


def _minimal_core(pm: PlanModel, core: list[int]) -> list[int]:
    """Shrink a sufficient set of assumptions to one where each is needed (deletion filter):
    CP-SAT's core is sufficient, not minimal, and the explanation should name only the culprits."""
    kept = list(core)
    for index in list(core):
        trial = [i for i in kept if i != index]
        pm.model.clear_assumptions()
        pm.model.add_assumptions([pm.model.get_bool_var_from_proto_index(i) for i in trial])
        if _new_solver().solve(pm.model) == cp_model.INFEASIBLE:
            kept = trial
    return kept


def solve_cpsat(rows: list[Row], constraints: dict[str, Constraint], capacity_mib: int,
                host_capacity_mib: int | None, top: int, time_limit: float | None = None,
                ) -> tuple[str, list[Row], tuple[str, ...]]:
    """(status, best rows, conflicting requirements when infeasible)."""
    if not rows:
        return "infeasible", [], ()
    pm = build_model(rows, constraints, capacity_mib, host_capacity_mib)
    by_values = {tuple(r.values.values()): r for r in rows}
    found: list[Row] = []
    status_name = "optimal"
    while len(found) < top:
        solver = _new_solver(time_limit)
        status = solver.solve(pm.model)
        if status == cp_model.INFEASIBLE:
            if not found:
                core = _minimal_core(pm, list(solver.sufficient_assumptions_for_infeasibility()))
                return "infeasible", [], tuple(pm.assumptions[i] for i in core)
            break
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            break  # time limit before any further solution
        if status == cp_model.FEASIBLE and not found:
            status_name = "feasible"
        values = _decode(pm, solver)
        found.append(by_values[values])
        # No-good cut: the next plan differs from this one in at least one key.
        differs = []
        for (key, var), value in zip(pm.keys.items(), values):
            b = pm.model.new_bool_var(f"differs_{key}_{len(found)}")
            pm.model.add(var != solver.value(var)).only_enforce_if(b)
            differs.append(b)
        pm.model.add_bool_or(differs)
    return status_name, found, ()
