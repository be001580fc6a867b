"""What reading a script gives: its variables, the commands it would run, and the choices it
makes on values that are not known."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

Value = str | list[str]
"""A variable: a string or an indexed array's elements in index order."""


@dataclass(frozen=True)
class Command:
    """A command the script would run, its words expanded (one word per argument it would get)."""

    words: tuple[str, ...]
    line: int
    unknown: frozenset[int] = frozenset()
    """Positions of the words that hold something not known (written `${NAME}` or `$(command)`)."""

    @property
    def python_script(self) -> str | None:
        """The first `*.py` word: the program a `python`/`torchrun`/`deepspeed` launch line runs."""
        return next((w for w in self.words if w.endswith(".py")), None)

    @property
    def program_name(self) -> str | None:
        script = self.python_script
        return PurePosixPath(script).name if script else None


@dataclass(frozen=True)
class Alternative:
    """One way an undecided choice can go, and the values it leaves."""

    label: str
    """'then', 'else', 'true', 'false', 'runs again', 'ends', or a case clause ('8B|9B)', 'no clause')."""
    values: dict[str, Value | None]
    """After this way: every variable that some way of this choice changes (None: unset)."""
    unknown: frozenset[str]
    """Those of `values` whose value is not known."""
    exits: bool = False
    """This way ends the script (`exit`)."""


@dataclass(frozen=True)
class UndecidedBranch:
    """A choice the script makes on something not known: a variable neither set in the script nor
    given, a command's output or outcome. Read again with `choices={id: index}` to take another way."""

    id: int
    line: int
    kind: str
    """'if', 'elif', '&&', '||', 'case', 'while', 'until' or 'for'."""
    condition: str
    """The condition (or `case WORD`) as written."""
    depends_on: tuple[str, ...]
    """What is not known: variable names, `$(command)`, or the command whose outcome decides."""
    alternatives: tuple[Alternative, ...]
    taken: int
    """The alternative this reading followed."""


@dataclass
class ShellScript:
    variables: dict[str, Value] = field(default_factory=dict)
    """Every variable at the end of the script (the given environment included)."""
    commands: list[Command] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    uses: dict[str, set[str]] = field(default_factory=dict)
    """Variables each assignment read (to find the argument lists no other list includes)."""
    unset: set[str] = field(default_factory=set)
    """Variables whose value was needed but which neither the script sets nor the environment gives
    (MASTER_ADDR, DATA_PATH ...): written `${NAME}` where used."""
    unknown: set[str] = field(default_factory=set)
    """Variables in `variables` whose value is not known (it holds `${NAME}` or `$(command)`)."""
    defaults: dict[str, str] = field(default_factory=dict)
    """Variables read as unset because nothing gives them, with the default the script used
    (`NNODES=${SLURM_NNODES:-8}` gives {'SLURM_NNODES': '8'}); `--env` overrides them."""
    branches: list[UndecidedBranch] = field(default_factory=list)
    """The choices this reading could not decide, in the order it met them."""
    exited: int | None = None
    """The line of the `exit` that ended the reading, if one did."""

    @property
    def python_scripts(self) -> list[str]:
        """The `*.py` programs the script's commands run, in order (the launch line's is last)."""
        return [c.python_script for c in self.commands if c.python_script]
