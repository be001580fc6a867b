"""Loops (GNU Bash Reference Manual, 3.2.5.1 "Looping Constructs"): `for NAME in WORDS`,
`for ((init; condition; step))`, `while` and `until`, with `break N` and `continue N`. A loop
over values not known is read once; one whose condition is not known is an undecided choice; one
that runs more than MAX_ITERATIONS rounds is stopped, and what it sets is then not known.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from planner.engines.shell.expand import NOTHING, Expander
from planner.engines.shell.state import MAX_ITERATIONS, State
from planner.engines.shell.syntax import ArithFor, For, Node, While

if TYPE_CHECKING:
    from planner.engines.shell.evaluate import Evaluator


class LoopExit(Exception):
    """`break N` (continues=False) or `continue N`."""

    def __init__(self, levels: int, continues: bool):
        super().__init__(levels)
        self.levels, self.continues = levels, continues


def changed(before: State, after: State) -> set[str]:
    """The variables whose value or knownness differs."""
    names = set(before.variables) | set(after.variables)
    return {n for n in names if before.variables.get(n) != after.variables.get(n)
            or (n in before.unknown) != (n in after.unknown)}


class Loops(Expander):
    """The loop commands of the Evaluator (which provides run, decide and why)."""

    def _loop_body(self, body: Node) -> bool:
        """Runs one round; False when the loop ends here (`break`)."""
        try:
            self.run(body)
        except LoopExit as exit_:
            if exit_.levels > 1:
                raise LoopExit(exit_.levels - 1, exit_.continues) from None
            return exit_.continues
        return True

    def _too_long(self, line: int, before: State) -> None:
        names = sorted(changed(before, self.state))
        self.note(f"loop{line}", f"line {line}: the loop runs more than {MAX_ITERATIONS} times; stopped there,"
                                 f" and what it sets ({', '.join(names) or 'nothing'}) is not known")
        self.state.unknown.update(names)

    def _For(self, node: For) -> None:
        self.line = node.line
        if node.words is None:
            values = [(v, NOTHING) for v in self.state.positional or ()]
            unknown = NOTHING if self.state.positional is not None else frozenset({"$@"})
        else:
            values, unknown = [], NOTHING
            for word in node.words:
                fields, names = self.expand(word)
                values += [(f, names) for f in fields]
                unknown |= names
        if unknown:
            self.note(f"for{node.line}", f"line {node.line}: the loop over values not known ({', '.join(sorted(unknown))})"
                                         f" is read once, with {node.name} not known")
            values = [("${" + node.name + "}", unknown)]
        before = self.state.fork()
        self.state.status = 0
        for k, (value, names) in enumerate(values):
            if k == MAX_ITERATIONS:
                self._too_long(node.line, before)
                return
            self.assign(node.name, value, bool(names))
            if not self._loop_body(node.body):
                return

    def _While(self, node: While) -> None:
        before = self.state.fork()
        rounds = 0
        while True:
            self.run(node.condition)
            status = self.state.status
            if status is None:
                ways = [("runs again", lambda ev: ev._loop_body(node.body) and ev._While(node)),
                        ("ends", lambda ev: None)]
                if self.decide(node.site, "until" if node.until else "while", node.line, node.text, ways, 1) == 1:
                    break
            elif (status == 0) == node.until:
                break
            rounds += 1
            if rounds > MAX_ITERATIONS:
                self._too_long(node.line, before)
                break
            if not self._loop_body(node.body):
                break
        self.state.status = 0

    def _ArithFor(self, node: ArithFor) -> None:
        self.line = node.line
        self.arith_word(node.init)
        self._arith_rounds(node, self.state.fork())
        self.state.status = 0

    def _arith_rounds(self, node: ArithFor, before: State) -> None:
        rounds = 0
        while True:
            value, unknown = (1, NOTHING) if not node.condition.parts else self.arith_word(node.condition)
            if value is None:
                self.why = ("value", unknown)

                def again(ev: Evaluator) -> None:
                    if ev._loop_body(node.body):
                        ev.arith_word(node.step)
                        ev._arith_rounds(node, before)
                ways = [("runs again", again), ("ends", lambda ev: None)]
                if self.decide(node.site, "for", node.line, node.text, ways, 1) == 1:
                    return
            elif value == 0:
                return
            rounds += 1
            if rounds > MAX_ITERATIONS:
                self._too_long(node.line, before)
                return
            if not self._loop_body(node.body):
                return
            self.arith_word(node.step)
