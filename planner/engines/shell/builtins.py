"""The builtins a launch script uses (GNU Bash Reference Manual, 4.1 and 4.2), read for their
effect on variables and on the script's course; every other command is recorded, not run, and
its outcome is not known.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from planner.engines.shell.expand import NOTHING, ScriptExit
from planner.engines.shell.syntax import Simple, Word

if TYPE_CHECKING:
    from planner.engines.shell.evaluate import Evaluator

Args = list[tuple[str, frozenset[str]]]

DECLARATIONS = frozenset({"export", "declare", "typeset", "local", "readonly"})
_SUCCEED = frozenset({":", "true", "echo", "set", "shopt", "trap", "ulimit", "umask", "alias", "wait",
                      "hash", "cd", "pushd", "popd", "sleep"})
"""Commands taken to succeed (status 0); other commands' outcomes are not known."""
_NOT_RECORDED = frozenset({":", "true", "false", "set", "shopt", "trap", "shift", "unset", "return", "exit",
                           "break", "continue", "source", ".", "eval", "read", "let", "test", "[", "getopts",
                           "mapfile", "readarray", "wait", "hash", "alias", "ulimit", "umask"})


def make_local(ev: Evaluator, name: str) -> None:
    """`local NAME`: the function's own NAME, unset until assigned; the caller's comes back on return."""
    st = ev.state
    if not st.frames:
        ev.note("local", f"line {ev.line}: local outside a function (bash refuses it); read as a plain assignment")
        return
    frame = st.frames[-1]
    if name not in frame:
        frame[name] = (st.variables.get(name), name in st.unknown, name in st.removed)
    ev.unset(name)


def restore_locals(ev: Evaluator, frame: dict) -> None:
    st = ev.state
    for name, (value, unknown, removed) in frame.items():
        if value is None:
            st.variables.pop(name, None)
        else:
            st.variables[name] = value
        (st.unknown.add if unknown else st.unknown.discard)(name)
        (st.removed.add if removed else st.removed.discard)(name)


def declare(ev: Evaluator, builtin: str, words: tuple[Word, ...]) -> None:
    """export, declare, typeset, local, readonly: their NAME=value words are assignments, not split."""
    in_function = bool(ev.state.frames)
    local = builtin == "local" or (builtin in ("declare", "typeset") and in_function)
    for word in words:
        if word.assign is not None:
            ev.assignment(word, local=local)
            continue
        fields, unknown = ev.expand(word)
        for field in fields:
            if field.startswith(("-", "+")):
                if "A" in field and field.startswith("-"):
                    ev.note("assoc", f"line {ev.line}: associative arrays are not read; their values are not known")
                local = local and "g" not in field
                continue
            name, eq, value = field.partition("=")
            if not name.isidentifier():
                continue
            if local:
                make_local(ev, name)
            if eq:
                ev.assign(name, value, bool(unknown))
    ev.state.status = 0


def _integer(text: str, default: int) -> int | None:
    try:
        return int(text) if text else default
    except ValueError:
        return None


def run(ev: Evaluator, words: Args, node: Simple) -> None:
    """A command after expansion: a builtin, a function the script defined, or a program."""
    name, rest = words[0][0], words[1:]
    st = ev.state
    while name in ("command", "builtin") and rest and not rest[0][0].startswith("-"):
        name, rest = rest[0][0], rest[1:]
    if name in st.functions and not words[0][1]:
        ev.call(st.functions[name], rest)
        return
    if name not in _NOT_RECORDED and name != "exec":
        ev.record_command(words)
    if name in _SUCCEED:
        st.status = 0
        if name == "set":
            _set(ev, rest)
        return
    handler = _HANDLERS.get(name)
    if handler is not None:
        handler(ev, rest)
        return
    ev.unknown_status("command", {name})


def _set(ev: Evaluator, args: Args) -> None:
    texts = [a for a, _ in args]
    if "--" in texts:
        start = texts.index("--") + 1
    elif texts and not texts[0].startswith(("-", "+")):
        start = 0
    else:
        return
    ev.state.positional = tuple(texts[start:])
    ev.state.positional_unknown = frozenset(k for k, (_, u) in enumerate(args[start:]) if u)


def _false(ev: Evaluator, args: Args) -> None:
    ev.state.status = 1


def _test(ev: Evaluator, args: Args) -> None:
    unknown: set[str] = set()
    ev.set_truth(ev.test(args, unknown), unknown)


def _bracket(ev: Evaluator, args: Args) -> None:
    if not args or args[-1][0] != "]":
        ev.note(f"[{ev.line}", f"line {ev.line}: [ without its closing ] (bash returns 2: false)")
        ev.state.status = 2
        return
    _test(ev, args[:-1])


def _exit(ev: Evaluator, args: Args) -> None:
    raise ScriptExit(_integer(args[0][0], 0) if args else ev.state.status)


def _return(ev: Evaluator, args: Args) -> None:
    from planner.engines.shell.evaluate import FunctionReturn
    status = _integer(args[0][0], 0) if args else ev.state.status
    if not ev.state.frames:
        raise ScriptExit(status)
    raise FunctionReturn(status)


def _loop_exit(continues: bool):
    def handler(ev: Evaluator, args: Args) -> None:
        from planner.engines.shell.loops import LoopExit
        levels = _integer(args[0][0], 1) if args else 1
        raise LoopExit(max(levels or 1, 1), continues)
    return handler


def _shift(ev: Evaluator, args: Args) -> None:
    st = ev.state
    n = _integer(args[0][0], 1) if args else 1
    if st.positional is None or n is None:
        ev.unknown_status("value", {"$@"})
        return
    if n > len(st.positional):
        st.status = 1
        return
    st.positional = st.positional[n:]
    st.positional_unknown = frozenset(k - n for k in st.positional_unknown if k >= n)
    st.status = 0


def _unset(ev: Evaluator, args: Args) -> None:
    functions = args and args[0][0] == "-f"
    for text, _ in args:
        if text.startswith("-"):
            continue
        if functions:
            ev.state.functions.pop(text, None)
        elif text.isidentifier():
            ev.unset(text)
    ev.state.status = 0


def _source(ev: Evaluator, args: Args) -> None:
    target = args[0][0] if args else ""
    ev.note(f"source {target}", f"line {ev.line}: source {target} is not followed; what it sets is not known")
    ev.state.status = 0


def _eval(ev: Evaluator, args: Args) -> None:
    text = " ".join(a for a, _ in args)
    ev.note(f"eval{ev.line}", f"line {ev.line}: eval {text} is not read; what it does is not known")
    ev.unknown_status("command", {"eval"})


def _sets_unknown(command: str, option_values: str, default: str | None, skip: int = 0):
    """read, getopts, mapfile: the variables they name get values not known here."""
    def handler(ev: Evaluator, args: Args) -> None:
        names, k = [], skip
        while k < len(args):
            text = args[k][0]
            if text.startswith("-") and len(text) == 2:
                if text[1] in option_values and k + 1 < len(args):
                    if text[1] in "av":
                        names.append(args[k + 1][0])
                    k += 1
            elif text.isidentifier():
                names.append(text)
            k += 1
        if not names and default:
            names.append(default)
        for name in names:
            ev.assign(name, "${" + name + "}", True)
        ev.unknown_status("command", {command})
    return handler


def _let(ev: Evaluator, args: Args) -> None:
    value, unknown = 0, NOTHING
    for text, names in args:
        if names:
            ev.unknown_status("value", names)
            return
        value, unknown = ev.arith(text)
        if value is None:
            ev.unknown_status("value", unknown)
            return
    ev.state.status = int(value == 0)


def _exec(ev: Evaluator, args: Args) -> None:
    if not args:
        ev.state.status = 0
        return
    ev.record_command(args)
    raise ScriptExit(None)  # exec replaces the shell: nothing after it runs


def _printf(ev: Evaluator, args: Args) -> None:
    if args and args[0][0] == "-v" and len(args) > 1:
        ev.assign(args[1][0], "${" + args[1][0] + "}", True)
    ev.state.status = 0


_HANDLERS = {
    "false": _false, "test": _test, "[": _bracket, "exit": _exit, "return": _return, "break": _loop_exit(False),
    "continue": _loop_exit(True), "shift": _shift, "unset": _unset, "source": _source, ".": _source, "eval": _eval,
    "read": _sets_unknown("read", "adinNptu", "REPLY"), "getopts": _sets_unknown("getopts", "", None, skip=1),
    "mapfile": _sets_unknown("mapfile", "dnOsuCc", "MAPFILE"),
    "readarray": _sets_unknown("readarray", "dnOsuCc", "MAPFILE"), "let": _let, "exec": _exec, "printf": _printf,
}
