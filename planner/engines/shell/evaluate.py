"""Reading a script as bash would run it, without running anything: commands are recorded, not
executed; conditions on values that are not known become choices reported as UndecidedBranch.

An undecided choice is read one way (the caller may pick another with `choices`): where a
command's outcome decides it, the way the command succeeds; otherwise the last way (`else`, the
loop ending, the last case clause that could match), skipping ways that end the script.
"""
from __future__ import annotations

from collections.abc import Callable

from planner.engines.shell import builtins, patterns
from planner.engines.shell.conditions import Conditions, TestError
from planner.engines.shell.expand import NOTHING, ScriptExit
from planner.engines.shell.loops import LoopExit, Loops, changed
from planner.engines.shell.results import Alternative, Command, ShellScript, UndecidedBranch
from planner.engines.shell.state import Budget, State
from planner.engines.shell.syntax import (
    AndOr,
    ArithCommand,
    Case,
    CondCommand,
    FunctionDef,
    Group,
    If,
    Node,
    Pipeline,
    Program,
    Sequence,
    Simple,
    Word,
)
from planner.spec.errors import InputError

Way = Callable[["Evaluator"], None]


class FunctionReturn(Exception):
    def __init__(self, status: int | None):
        super().__init__(status)
        self.status = status


class Evaluator(Loops, Conditions):
    def __init__(self, program: Program, state: State, choices: dict[int, int], budget: Budget, record: bool):
        self.program, self.state, self.choices, self.budget, self.record = program, state, choices, budget, record
        self.file = program.file
        self.line = 0
        self.out = ShellScript()
        self.why: tuple[str, frozenset[str]] = ("value", NOTHING)
        """Why $? is not known: ('command', {name}) or ('value', {names not known})."""
        self._notes: dict[str, str] = {}
        self._reads: set[str] | None = None
        self._taken: dict[int, int] = {}

    # -- services for the expander --------------------------------------------------------
    def note(self, key: str, message: str) -> None:
        self._notes.setdefault(key, message)

    def fail(self, message: str) -> InputError:
        return InputError(message, file=self.file, field=f"line {self.line}" if self.line else None)

    def read(self, name: str) -> None:
        if self._reads is not None:
            self._reads.add(name)

    def absent(self, name: str, default: str | None) -> None:
        if not name.isidentifier():
            return
        if default is None:
            self.out.unset.add(name)
        else:
            self.out.defaults.setdefault(name, default)

    def unknown_status(self, kind: str, names: frozenset[str] | set[str]) -> None:
        self.state.status = None
        self.why = (kind, frozenset(names))

    # -- commands -------------------------------------------------------------------------
    def run(self, node: Node) -> None:
        self.budget.step()
        self.budget.enter()
        try:
            getattr(self, "_" + type(node).__name__)(node)
        finally:
            self.budget.leave()

    def _Sequence(self, node: Sequence) -> None:
        for item in node.items:
            self.run(item)

    def _Simple(self, node: Simple) -> None:
        self.line = node.line
        head = node.words[0].literal() if node.words else None
        if head in builtins.DECLARATIONS:
            builtins.declare(self, head, node.words[1:])
            return
        words: list[tuple[str, frozenset[str]]] = []
        for word in node.words:
            fields, unknown = self.expand(word)
            words.extend((f, unknown) for f in fields)
        if not words:
            for word in node.assigns:
                self.assignment(word)
            self.state.status = 0
            return
        for word in node.assigns:  # NAME=value command: expanded, for the command only (manual 3.7.4)
            if word.assign.value is not None:
                self.expand_string(word.assign.value)
        builtins.run(self, words, node)

    def assignment(self, word: Word, local: bool = False) -> None:
        a = word.assign
        if local:
            builtins.make_local(self, a.name)
        self._reads = set()
        index = None
        if a.subscript is not None:
            index, unknown = self.arith_word(a.subscript)
            if index is None:
                self.state.unknown.add(a.name)
                self.state.variables.setdefault(a.name, "${" + a.name + "}")
                self._reads = None
                return
        if a.value is None:
            values: list[str] = []
            unknown = NOTHING
            for element in a.elements:
                fields, names = self.expand(element)
                values += fields
                unknown |= names
            self.assign(a.name, values, bool(unknown), append=a.append)
        else:
            text, unknown = self.expand_string(a.value)
            self.assign(a.name, text, bool(unknown), index, a.append)
        self.out.uses.setdefault(a.name, set()).update(self._reads - {a.name})
        self._reads = None

    def record_command(self, words: list[tuple[str, frozenset[str]]]) -> None:
        if self.record:
            self.out.commands.append(Command(tuple(w for w, _ in words), self.line,
                                             frozenset(k for k, (_, u) in enumerate(words) if u)))

    def call(self, function: FunctionDef, args: list[tuple[str, frozenset[str]]]) -> None:
        st = self.state
        saved = st.positional, st.positional_unknown
        st.positional = tuple(a for a, _ in args)
        st.positional_unknown = frozenset(k for k, (_, u) in enumerate(args) if u)
        st.frames.append({})
        self.budget.enter()
        try:
            self.run(function.body)
        except FunctionReturn as returned:
            if returned.status is not None:
                st.status = returned.status
        finally:
            self.budget.leave()
            builtins.restore_locals(self, st.frames.pop())
            st.positional, st.positional_unknown = saved

    def _Pipeline(self, node: Pipeline) -> None:
        for command in node.commands:
            self.run(command)
        if node.negated and self.state.status is not None:
            self.state.status = int(self.state.status == 0)

    def _FunctionDef(self, node: FunctionDef) -> None:
        self.state.functions[node.name] = node
        self.state.status = 0

    def _Group(self, node: Group) -> None:
        if not node.subshell:
            self.run(node.body)
            return
        outer = self.state
        self.state = outer.fork()  # a subshell's assignments do not reach its parent
        try:
            self.run(node.body)
        except ScriptExit as ended:
            self.state.status = ended.status
        finally:
            status, self.state = self.state.status, outer
            self.state.status = status

    def _ArithCommand(self, node: ArithCommand) -> None:
        self.line = node.line
        value, unknown = self.arith_word(node.expr)
        if value is None:
            self.unknown_status("value", unknown)
        else:
            self.state.status = int(value == 0)

    def _CondCommand(self, node: CondCommand) -> None:
        self.line = node.line
        unknown: set[str] = set()
        self.set_truth(self.cond(node.expr, unknown), unknown)

    def set_truth(self, truth: bool | None, unknown: set[str]) -> None:
        if truth is None:
            self.unknown_status("value", unknown)
        else:
            self.state.status = 0 if truth else 1

    def test(self, args, unknown):
        """`test` and `[`: an error is reported, and the status is 2, which reads as false."""
        try:
            return super().test(args, unknown)
        except TestError as error:
            self.note(f"test{self.line}", f"line {self.line}: test: {error} (bash returns 2: false)")
            return False

    # -- choices --------------------------------------------------------------------------
    def decide(self, site: int, kind: str, line: int, text: str, ways: list[tuple[str, Way]],
               on_command: int) -> int:
        """The way to follow at an undecided choice; the first time it is met in a reading, every
        way is looked into and the choice is recorded."""
        chosen = self.choices.get(site)
        if chosen is not None and not 0 <= chosen < len(ways):
            raise InputError(f"choice {chosen} for the {kind} at line {line}: it has {len(ways)} ways (0 to"
                             f" {len(ways) - 1})", file=self.file)
        if site in self._taken:
            return self._taken[site] if chosen is None else chosen
        command = self.why[0] == "command"
        default = on_command if command else len(ways) - 1
        if not self.record:
            self._taken[site] = default
            return default if chosen is None else chosen
        why = self.why
        before = self.state
        outcomes = [self._look_into(way) for _, way in ways]
        if outcomes[default][1] and not all(ended for _, ended in outcomes):
            default = max(k for k, (_, ended) in enumerate(outcomes) if not ended)
        taken = default if chosen is None else chosen
        self._taken[site] = default
        names = sorted({name for after, _ in outcomes for name in changed(before, after)})
        alternatives = tuple(
            Alternative(label, {n: _export(after.variables.get(n)) for n in names},
                        frozenset(n for n in names if n in after.unknown), ended)
            for (label, _), (after, ended) in zip(ways, outcomes, strict=True))
        self.out.branches.append(UndecidedBranch(site, line, kind, text, tuple(sorted(why[1])), alternatives, taken))
        self.why = why
        return taken

    def _look_into(self, way: Way) -> tuple[State, bool]:
        probe = Evaluator(self.program, self.state.fork(), self.choices, self.budget, record=False)
        probe.line, probe.why = self.line, self.why
        try:
            way(probe)
        except ScriptExit:
            return probe.state, True
        except (FunctionReturn, LoopExit):
            pass
        return probe.state, False

    def _If(self, node: If, start: int = 0) -> None:
        for k in range(start, len(node.clauses)):
            clause = node.clauses[k]
            self.run(clause.condition)
            status = self.state.status
            if status is None:
                ways = [("then", lambda ev, body=clause.body: ev.run(body)),
                        ("else", lambda ev, k=k: ev._If(node, k + 1))]
                taken = self.decide(clause.site, "elif" if k else "if", clause.line, clause.text, ways, 0)
                ways[taken][1](self)
                return
            if status == 0:
                self.run(clause.body)
                return
        if node.otherwise is not None:
            self.run(node.otherwise)
        else:
            self.state.status = 0

    def _AndOr(self, node: AndOr, start: int | None = None) -> None:
        """`a && b || c`, from the operator `start` on (None: from the first command)."""
        if start is None:
            self.run(node.items[0])
        for k in range(start or 0, len(node.ops)):
            status = self.state.status
            if status is None:
                def holds(ev, k=k, status=0):
                    ev.state.status = status
                    ev._AndOr(node, k)
                ways = [("true", holds), ("false", lambda ev, k=k: holds(ev, k, 1))]
                taken = self.decide(node.sites[k], node.ops[k], self.line, node.texts[k], ways, 0)
                ways[taken][1](self)
                return
            if (status == 0) == (node.ops[k] == "&&"):
                self.run(node.items[k + 1])

    def _Case(self, node: Case, start: int = 0) -> None:
        self.line = node.line
        subject, unknown = self.expand_string(node.subject)
        possible: list[int] = []
        depends: set[str] = set(unknown)
        definite = False
        for k in range(start, len(node.items)):
            result: bool | None = False
            for pattern in node.items[k].patterns:
                segments, names = self.expand_pattern(pattern)
                ps = patterns.pieces(segments)
                if ps == ["*"]:
                    result = True
                elif unknown or names:
                    depends |= names
                    result = None
                    continue
                elif patterns.matches(ps, subject):
                    result = True
                if result:
                    break
            if result is not False:
                possible.append(k)
            if result is True:
                definite = True
                break
        if len(possible) == 1 and definite:
            self._case_body(node, possible[0], subject)
            return
        if not possible:
            self.state.status = 0
            return
        ways = [(node.items[k].text, lambda ev, k=k: ev._case_body(node, k, subject)) for k in possible]
        if not definite:
            ways.append(("no clause", lambda ev: setattr(ev.state, "status", 0)))
        self.why = ("value", frozenset(depends))
        taken = self.decide(node.site, "case", node.line, node.text, ways, len(ways) - 1)
        ways[taken][1](self)

    def _case_body(self, node: Case, k: int, subject: str) -> None:
        while k < len(node.items):
            item = node.items[k]
            self.run(item.body)
            if item.terminator == ";;&":
                self._Case(node, k + 1)
                return
            if item.terminator != ";&":
                return
            k += 1

def _export(value):
    return [value[k] for k in sorted(value)] if isinstance(value, dict) else value
