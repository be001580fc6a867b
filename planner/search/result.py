"""What a search returns."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from planner.cost.evaluate import Evaluation

Status = Literal["optimal", "feasible", "infeasible"]


@dataclass(frozen=True)
class SolveResult:
    status: Status
    objective: str
    plans: tuple[Evaluation, ...]
    """Best first by the full models; distinct layouts, each with its best partition and
    recompute counts."""
    solve_seconds: float
    candidates: int
    """Layouts considered (before memory and the user's constraints)."""
    conflict: tuple[str, ...] = ()
    """When infeasible: the requirements that together leave no plan (`memory`, `constraints.tp` ...)."""
    reasons: tuple[str, ...] = ()
    """Why each runner-up loses to the best plan, in words (one per plan after the first)."""
    objective_values: tuple[int, ...] = ()
    """The solver's objective for each plan (µs, or KiB for `memory`), in the order of `plans`."""
