"""What a search returns."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from planner.evaluate import Evaluation

Status = Literal["optimal", "feasible", "infeasible"]


@dataclass(frozen=True)
class SolveResult:
    status: Status
    objective: str
    plans: tuple[Evaluation, ...]
    """Best first; distinct plans."""
    solve_seconds: float
    candidates: int
    """Legal plans considered (before memory and the user's constraints)."""
    conflict: tuple[str, ...] = ()
    """When infeasible: the requirements that together leave no plan (`memory`, `constraints.tp` ...)."""
