"""The syntax tree of a bash script: words made of parts, and the commands that hold them.

Names follow bash's manual (GNU Bash Reference Manual, 3.2 "Shell Commands", 3.5 "Shell
Expansions"). Every node is immutable; an evaluation walks the tree and never changes it.
"""
from __future__ import annotations

from dataclasses import dataclass

# -- parts of a word -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lit:
    """Literal text; `quoted` text is neither split into fields nor read as a pattern."""

    text: str
    quoted: bool


@dataclass(frozen=True, slots=True)
class Param:
    """`$NAME`, `${NAME}`, `${NAME[sub]}`, `${#NAME}`, `${NAME<op><word>}` (manual 3.5.3)."""

    name: str
    subscript: Word | None
    op: str
    """'' | 'len' | one of - = + ? (with or without a leading :) | # ## % %% | / // /# /% | ^ ^^ , ,, | :"""
    arg: Word | None
    arg2: Word | None
    """The replacement of `${X/pat/rep}` or the length of `${X:offset:length}`."""
    quoted: bool
    raw: str
    """The text between `${` and `}` as written, for a value that is not known."""


@dataclass(frozen=True, slots=True)
class Arith:
    """`$((expression))`: the expression is expanded first, then evaluated (manual 3.5.5)."""

    expr: Word
    quoted: bool
    raw: str


@dataclass(frozen=True, slots=True)
class CmdSub:
    """`$(command)` or a backquoted command: never run, so its output is not known."""

    text: str
    quoted: bool


Part = Lit | Param | Arith | CmdSub


@dataclass(frozen=True, slots=True)
class Assign:
    """The `NAME=`, `NAME+=` or `NAME[sub]=` that starts an assignment word (manual 3.4)."""

    name: str
    subscript: Word | None
    append: bool
    value: Word | None
    """The value after `=`; None for an array literal, whose elements are `elements`."""
    elements: tuple[Word, ...] = ()


@dataclass(frozen=True, slots=True)
class Word:
    parts: tuple[Part, ...]
    line: int
    assign: Assign | None = None

    def literal(self) -> str | None:
        """The text of a word made only of unquoted literal text (a keyword, a name), else None."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Lit) and not self.parts[0].quoted:
            return self.parts[0].text
        return None


EMPTY_WORD = Word((), 0)

# -- commands --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Simple:
    """Assignments, then words; redirections are read and dropped."""

    assigns: tuple[Word, ...]
    words: tuple[Word, ...]
    line: int


@dataclass(frozen=True, slots=True)
class Pipeline:
    commands: tuple[Node, ...]
    negated: bool
    line: int


@dataclass(frozen=True, slots=True)
class AndOr:
    """`first && second || third`: ops[i] joins items[i] and items[i + 1]; sites[i] names the choice."""

    items: tuple[Node, ...]
    ops: tuple[str, ...]
    sites: tuple[int, ...]
    texts: tuple[str, ...]
    """The source text of everything left of each operator, for reports."""


@dataclass(frozen=True, slots=True)
class Sequence:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Clause:
    """One `if`/`elif` condition with its body."""

    condition: Node
    body: Node
    site: int
    text: str
    line: int


@dataclass(frozen=True, slots=True)
class If:
    clauses: tuple[Clause, ...]
    otherwise: Node | None
    line: int


@dataclass(frozen=True, slots=True)
class CaseItem:
    patterns: tuple[Word, ...]
    body: Node
    terminator: str
    """';;' (stop), ';&' (run the next body too) or ';;&' (test the next patterns)."""
    text: str


@dataclass(frozen=True, slots=True)
class Case:
    subject: Word
    items: tuple[CaseItem, ...]
    site: int
    text: str
    line: int


@dataclass(frozen=True, slots=True)
class For:
    name: str
    words: tuple[Word, ...] | None
    """None: `for NAME; do`, over the positional parameters."""
    body: Node
    site: int
    line: int


@dataclass(frozen=True, slots=True)
class ArithFor:
    init: Word
    condition: Word
    step: Word
    body: Node
    site: int
    text: str
    line: int


@dataclass(frozen=True, slots=True)
class While:
    condition: Node
    body: Node
    until: bool
    site: int
    text: str
    line: int


@dataclass(frozen=True, slots=True)
class Group:
    """`{ list; }` (same shell) or `( list )` (a subshell: its assignments do not last)."""

    body: Node
    subshell: bool


@dataclass(frozen=True, slots=True)
class FunctionDef:
    name: str
    body: Node
    line: int


@dataclass(frozen=True, slots=True)
class ArithCommand:
    """`(( expression ))`: status 0 when the value is not zero."""

    expr: Word
    line: int


@dataclass(frozen=True, slots=True)
class Cond:
    """`[[ expression ]]` (manual 3.2.5.2, 6.4): op is 'and' | 'or' | 'not' | 'word' | a test operator."""

    op: str
    args: tuple[Cond | Word, ...]
    pattern: bool = False
    """The right side of == or != is a pattern (manual 3.2.5.2)."""


@dataclass(frozen=True, slots=True)
class CondCommand:
    expr: Cond
    line: int


Node = (Simple | Pipeline | AndOr | Sequence | If | Case | For | ArithFor | While | Group | FunctionDef
        | ArithCommand | CondCommand)


@dataclass(frozen=True, slots=True)
class Program:
    body: Node
    file: str
    sites: int
    """The number of places a choice can be undecided; their ids run from 0."""
