"""The CP-SAT model: choose one plan of the candidate table, within memory and the user's limits.

One Boolean per candidate plan, exactly one chosen; the objective is the chosen plan's integer
cost. Memory, host memory and every user constraint each switch off the candidates that break
them, through an assumption literal, so that an infeasible problem comes back with the subset of
requirements to blame (SufficientAssumptionsForInfeasibility, shrunk to a minimal core).
Top-K distinct plans come from re-solving with each plan found switched off (a no-good cut).
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
    chosen: list[cp_model.IntVar]
    """chosen[i]: candidate i is the plan."""
    assumptions: dict[int, str]
    """Assumption literal index -> what it enforces (`memory`, `host memory`, `constraints.tp`)."""


def build_model(rows: list[Row], constraints: dict[str, Constraint], capacity_mib: int,
                host_capacity_mib: int | None) -> PlanModel:
    model = cp_model.CpModel()
    chosen = [model.new_bool_var(f"plan_{i}") for i in range(len(rows))]
    assumptions: dict[int, str] = {}

    def forbid_when_assumed(name: str, broken: list[int]) -> None:
        lit = model.new_bool_var(name)
        assumptions[lit.index] = name
        model.add(sum(chosen[i] for i in broken) == 0).only_enforce_if(lit)

    # Exactly one plan.
    model.add_exactly_one(chosen)
    # Every stage of the plan within the GPU's usable memory (and the node's host memory).
    forbid_when_assumed("memory", [i for i, r in enumerate(rows) if r.memory_mib > capacity_mib])
    if host_capacity_mib is not None:
        forbid_when_assumed("host memory", [i for i, r in enumerate(rows) if r.host_mib > host_capacity_mib])
    # The user's limits on plan keys.
    for key, c in constraints.items():
        forbid_when_assumed(f"constraints.{key}", [i for i, r in enumerate(rows) if not c.allows(r.values[key])])

    model.add_assumptions([model.get_bool_var_from_proto_index(i) for i in assumptions])
    model.minimize(sum(r.cost * x for r, x in zip(rows, chosen)))
    return PlanModel(model=model, chosen=chosen, assumptions=assumptions)


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
    """(status, best rows in order, conflicting requirements when infeasible)."""
    if not rows:
        return "infeasible", [], ()
    pm = build_model(rows, constraints, capacity_mib, host_capacity_mib)
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
            if not found:
                return "infeasible", [], ("time limit",)
            break  # the time limit ran out before the next plan
        if status == cp_model.FEASIBLE:
            status_name = "feasible"
        index = next(i for i, x in enumerate(pm.chosen) if solver.boolean_value(x))
        found.append(rows[index])
        # No-good cut: the next plan is another one.
        pm.model.add(pm.chosen[index] == 0)
    return status_name, found, ()
