"""Brute force over the candidate table: the oracle the CP-SAT model is tested against."""
from __future__ import annotations

from planner.search.table import Row
from planner.spec.job import Constraint


def admissible(row: Row, constraints: dict[str, Constraint], capacity_mib: int, host_capacity_mib: int | None) -> bool:
    if row.memory_mib > capacity_mib:
        return False
    if host_capacity_mib is not None and row.host_mib > host_capacity_mib:
        return False
    return all(c.allows(row.values[key]) for key, c in constraints.items())


def solve_brute(rows: list[Row], constraints: dict[str, Constraint], capacity_mib: int,
                host_capacity_mib: int | None, top: int) -> list[Row]:
    """The `top` admissible rows of lowest cost (ties in table order)."""
    ok = [r for r in rows if admissible(r, constraints, capacity_mib, host_capacity_mib)]
    ok.sort(key=lambda r: r.cost)
    return ok[:top]
