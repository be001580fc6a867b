"""The shell's variables and functions during a reading, and the limits every reading keeps to."""
from __future__ import annotations

from dataclasses import dataclass, field

from planner.engines.shell.syntax import FunctionDef

Stored = str | dict[int, str]
"""A scalar, or an indexed array by index (bash's arrays may have gaps: manual 6.7)."""

MAX_STEPS = 100_000
"""Commands, expansions and loop rounds together."""
MAX_ITERATIONS = 10_000
"""Rounds of one loop; a loop that runs longer is stopped and what it sets is not known."""
MAX_WORD = 1 << 22
"""Characters in one expanded word (4 Mi)."""
MAX_TOTAL = 1 << 26
"""Characters all expansions and assignments produce together (64 Mi)."""
MAX_DEPTH = 100
"""Compound commands, function calls and expansions inside one another."""


class LimitExceeded(Exception):
    pass


@dataclass
class Budget:
    """Shared by a reading and the alternatives it looks into."""

    steps: int = 0
    chars: int = 0
    depth: int = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise LimitExceeded(f"the script runs more than {MAX_STEPS} steps; a launch script should not")

    def produce(self, length: int) -> None:
        if length > MAX_WORD:
            raise LimitExceeded(f"a word expands to {length} characters, more than {MAX_WORD}")
        self.chars += length
        if self.chars > MAX_TOTAL:
            raise LimitExceeded(f"the script's expansions produce more than {MAX_TOTAL} characters")

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise LimitExceeded(f"commands, function calls or expansions nest more than {MAX_DEPTH} deep")

    def leave(self) -> None:
        self.depth -= 1


@dataclass
class State:
    variables: dict[str, Stored] = field(default_factory=dict)
    unknown: set[str] = field(default_factory=set)
    """Variables whose value is not known."""
    removed: set[str] = field(default_factory=set)
    """Variables the script unset: empty, not unknown."""
    functions: dict[str, FunctionDef] = field(default_factory=dict)
    positional: tuple[str, ...] | None = None
    """$1, $2 ...; None when the caller did not give the script's arguments."""
    positional_unknown: frozenset[int] = frozenset()
    """Positions (from 0) of the arguments whose value is not known (a function called with them)."""
    status: int | None = 0
    """$?; None when not known."""
    closed: bool = False
    """The environment holds exactly the given variables: others are unset, as under `env -i`."""
    frames: list[dict[str, tuple[Stored | None, bool, bool]]] = field(default_factory=list)
    """Per function call, the variables `local` shadows: (old value, was unknown, was removed)."""

    def fork(self) -> State:
        return State(dict(self.variables), set(self.unknown), set(self.removed), dict(self.functions),
                     self.positional, self.positional_unknown, self.status, self.closed,
                     [dict(f) for f in self.frames])
