"""What a search may minimize, and with which solver: names the commands check before any
search module (the table's numpy, the solver's OR-Tools) loads."""
from __future__ import annotations

from planner.cost.evaluate import Evaluation

OBJECTIVES = ("step-time", "comm", "memory", "cost")
SOLVERS = ("cp-sat", "brute")


def bounded_applies(objective: str, solver: str) -> bool:
    """Whether a search may build only part of its table (search/bounded.py): step time has a
    floor, and brute force reads every layout."""
    return objective == "step-time" and solver == "cp-sat"


def exact_objective(ev: Evaluation, objective: str) -> float:
    """The objective by the full models (seconds, GPU-seconds or bytes)."""
    if objective == "memory":
        return ev.memory.total
    if objective == "comm":
        return ev.time.comm_exposed
    return ev.time.step * (ev.plan.parallel.world if objective == "cost" else 1)
