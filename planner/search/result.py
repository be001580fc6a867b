"""What a search returns."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from planner.cost.evaluate import Evaluation

Status = Literal["optimal", "feasible", "infeasible", "time limit"]
"""`feasible`: plans found, the time limit ran out before the first was proven best; `time limit`:
it ran out before any plan was found or the problem was proven infeasible."""
PHASES = ("table", "solver", "explain")
"""The phases of a search, in order: the candidates and their cost table, the solver, and the
explanation of a search without plans."""


@dataclass(frozen=True)
class SolveResult:
    status: Status
    objective: str
    plans: tuple[Evaluation, ...]
    """Best first by the full models; distinct layouts, each with its best partition and
    recompute counts."""
    solve_seconds: float
    """The whole search: the cost table, the solver and, when nothing fits, the explanation (the
    sum of `timing`)."""
    candidates: int
    """The legal candidate plans searched, each ruled in or out by the models: its memory, the
    user's constraints, or a floor under its step time that the plans found beat (bounded.py)."""
    conflict: tuple[str, ...] = ()
    """When infeasible: the requirements that together leave no plan (`memory`, `constraints.tp` ...)."""
    reasons: tuple[str, ...] = ()
    """Why each runner-up loses to the best plan, in words (one per plan after the first)."""
    objective_values: tuple[int, ...] = ()
    """The solver's objective for each plan (µs, or KiB for `memory`), in the order of `plans`."""
    timing: dict[str, float] = field(default_factory=dict)
    """Seconds by phase (PHASES): the candidates and their cost table, the solver (the best plans,
    the other families, their full evaluation), the explanation of a search without plans."""

    def seconds_text(self) -> str:
        """How long the search took, as the summary line says it: "1.23 s (table 0.80 s, solver
        0.40 s, explanation 0.03 s)", phases that took no time left out."""
        names = {"table": "table", "solver": "solver", "explain": "explanation"}
        parts = [f"{names[phase]} {self.timing[phase]:.2f} s" for phase in PHASES if self.timing.get(phase)]
        return f"{self.solve_seconds:.2f} s" + (f" ({', '.join(parts)})" if parts else "")

    def with_explanation_time(self, seconds: float) -> SolveResult:
        """This result with the time its explanation took added to its timing and total."""
        timing = {**self.timing, "explain": self.timing.get("explain", 0.0) + seconds}
        return replace(self, timing=timing, solve_seconds=self.solve_seconds + seconds)
