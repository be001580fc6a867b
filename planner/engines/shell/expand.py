"""Word expansion (GNU Bash Reference Manual, 3.5): parameters, arithmetic, command substitution
(never run: its output is not known), word splitting of unquoted results on blanks (3.5.7) and
quote removal. Pathname expansion is not done: a `*` stays as written.

A value that is not known is written `${NAME}` (`${NAME%/*}`, `$(command)`, `$((expression))`)
and is never split; the expansion also says which names it could not know.
"""
from __future__ import annotations

import re

from planner.engines.shell import patterns
from planner.engines.shell.arith import ArithError, ArithUnknown, assigned_names, evaluate
from planner.engines.shell.state import Budget, State, Stored
from planner.engines.shell.syntax import Arith, CmdSub, Lit, Param, Part, Word

_BLANKS = " \t\n"
_SPLIT = re.compile(r"[ \t\n]+")
_FIELD = re.compile(r"(?:\$\((?:[^()]|\([^()]*\))*\)|\$\{[^}]*\}|[^ \t\n])+")
"""A field of a value not known: its `$(command)` and `${NAME}` stay whole."""
NOTHING: frozenset[str] = frozenset()


class Piece:
    """One part's value: a string, or the elements of `${A[@]}`/`$@` (`star`: `${A[*]}`/`$*`)."""

    __slots__ = ("value", "quoted", "unknown", "star")

    def __init__(self, value: str | list[str], quoted: bool, unknown: frozenset[str] = NOTHING, star: bool = False):
        self.value, self.quoted, self.unknown, self.star = value, quoted, unknown, star


class ScriptExit(Exception):
    """`exit`, or `${X?message}` on an unset X: the script stops here."""

    def __init__(self, status: int | None):
        super().__init__(status)
        self.status = status


class Expander:
    """Expansion over a State; the evaluator adds the commands. Errors name the current line."""

    state: State
    budget: Budget
    line: int

    # -- provided by the evaluator ----------------------------------------------------------
    def note(self, key: str, message: str) -> None:
        raise NotImplementedError

    def fail(self, message: str) -> Exception:
        raise NotImplementedError

    def read(self, name: str) -> None:
        """`name` was read (the evaluator tracks what each assignment used)."""

    def absent(self, name: str, default: str | None) -> None:
        """`name` is neither set nor given; `default` is what the script used instead, if anything."""

    # -- variables --------------------------------------------------------------------------
    def base(self, name: str, index: int | None = None, whole: bool = False, subscripted: bool = False,
             ) -> tuple[str, str | list[str]]:
        """(how, value): how is 'set', 'unknown' (set to something not known), 'unset' (known to be
        empty) or 'absent' (neither set by the script nor given). `whole` asks for ${NAME[@]};
        `subscripted`: ${NAME[...]}, an array, which no environment gives (manual 6.7: arrays are
        not exported)."""
        st = self.state
        self.read(name)
        if name in ("@", "*"):
            if st.positional is None:
                return "absent", []
            return ("unknown" if st.positional_unknown else "set"), list(st.positional)
        if name == "#":
            return ("absent", "") if st.positional is None else ("set", str(len(st.positional)))
        if name.isdigit():
            n = int(name)
            if n == 0 or st.positional is None:
                return "absent", ""
            if n > len(st.positional):
                return "unset", ""
            return ("unknown" if n - 1 in st.positional_unknown else "set"), st.positional[n - 1]
        if name == "?":
            return ("unknown", "$?") if st.status is None else ("set", str(st.status))
        if name in ("$", "!", "-"):
            return "absent", ""
        if name not in st.variables:
            known_unset = name in st.removed or st.closed or subscripted
            return ("unset" if known_unset else "absent"), ([] if whole else "")
        stored = st.variables[name]
        how = "unknown" if name in st.unknown else "set"
        if isinstance(stored, str):
            stored = {0: stored}
        if whole:
            return how, [stored[k] for k in sorted(stored)]
        index = index or 0
        if index < 0:
            index += max(stored) + 1 if stored else 0
        return (how, stored[index]) if index in stored else ("unset", "")

    def assign(self, name: str, value: str | list[str], unknown: bool, index: int | None = None,
               append: bool = False) -> None:
        """NAME=value, NAME+=value, NAME[index]=value, NAME=(elements), NAME+=(elements)."""
        st = self.state
        self.budget.produce(len(value) if isinstance(value, str) else sum(map(len, value)))
        old = st.variables.get(name)
        was_unknown = name in st.unknown
        new: Stored
        if isinstance(value, list):
            base = {} if old is None or not append else ({0: old} if isinstance(old, str) else dict(old))
            start = max(base) + 1 if base else 0
            new = {**base, **{start + k: v for k, v in enumerate(value)}}
        elif index is not None or isinstance(old, dict):
            array = {} if old is None else ({0: old} if isinstance(old, str) else dict(old))
            index = index or 0
            if index < 0:
                index += max(array) + 1 if array else 0
                if index < 0:
                    raise self.fail(f"{name}[{index}]: bad array subscript")
            array[index] = array.get(index, "") + value if append else value
            new = array
        else:
            new = (old or "") + value if append else value
        st.variables[name] = new
        st.removed.discard(name)
        if unknown or (was_unknown and (append or index is not None)):
            st.unknown.add(name)
        else:
            st.unknown.discard(name)

    def unset(self, name: str) -> None:
        self.state.variables.pop(name, None)
        self.state.unknown.discard(name)
        self.state.removed.add(name)

    # -- arithmetic -------------------------------------------------------------------------
    def arith(self, text: str) -> tuple[int | None, frozenset[str]]:
        """The value of an expanded expression, or None and what was not known."""
        try:
            return evaluate(text, _ArithScope(self), self.budget.depth), NOTHING
        except ArithUnknown as unknown:
            for name in assigned_names(text):
                self.state.unknown.add(name)
                self.state.variables.setdefault(name, f"${{{name}}}")
            return None, unknown.names
        except ArithError as error:
            shown = " ".join(text.split())
            shown = shown if len(shown) <= 60 else shown[:60] + " ..."
            raise self.fail(f"$(({shown})): {error}") from None

    def arith_word(self, word: Word) -> tuple[int | None, frozenset[str]]:
        text, unknown = self.expand_string(word)
        if unknown:
            return None, unknown
        return self.arith(text)

    # -- words ------------------------------------------------------------------------------
    def piece(self, part: Part) -> Piece:
        if isinstance(part, Lit):
            return Piece(part.text, part.quoted)
        self.budget.step()
        if isinstance(part, CmdSub):
            text = " ".join(part.text.split())
            self.note(f"$({text})", f"$({text}) is a command substitution, not run; left as written")
            return Piece(f"$({text})", True, frozenset({f"$({text})"}))
        if isinstance(part, Arith):
            self.budget.enter()
            value, unknown = self.arith_word(part.expr)
            self.budget.leave()
            if value is None:
                return Piece(f"$(({part.raw}))", True, unknown)
            return Piece(str(value), part.quoted)
        self.budget.enter()
        try:
            return self._param(part)
        finally:
            self.budget.leave()

    def _param(self, p: Param) -> Piece:
        placeholder = "${" + p.raw + "}"
        if p.op == "indirect":
            self.note("indirect", f"{placeholder}: indirect expansion is not read; its value is not known")
            return Piece(placeholder, True, frozenset({placeholder}))
        whole = p.name in ("@", "*")
        star = p.name == "*"
        index = None
        if p.subscript is not None:
            sub = p.subscript.literal()
            if sub in ("@", "*"):
                whole, star = True, sub == "*"
            else:
                index, unknown = self.arith_word(p.subscript)
                if index is None:
                    return Piece(placeholder, True, unknown)
        how, value = self.base(p.name, index, whole, p.subscript is not None)
        if how == "absent" and p.name in ("@", "*"):
            self.note("$@", "the script passes its own command-line arguments ($@) on; they are not known here")
            return Piece([], p.quoted, NOTHING, star)
        op = p.op
        if op == "len":
            if how in ("absent", "unknown"):
                return self._not_known(p, how)
            return Piece(str(len(value)), p.quoted)
        if op == "":
            if how == "absent":
                return self._not_known(p, how)
            return Piece(value, p.quoted, frozenset({p.name}) if how == "unknown" else NOTHING, star)
        if op.lstrip(":") in ("-", "=", "+", "?"):
            return self._test_op(p, how, value, star)
        if how in ("absent", "unknown"):
            return self._not_known(p, how)
        items = value if isinstance(value, list) else [value]
        if op == ":":
            result = self._substring(p, items, whole)
        else:
            result = self._pattern_op(p, items)
        if result is None:
            return Piece(placeholder, True, frozenset({placeholder}))
        return Piece(result if isinstance(value, list) else result[0], p.quoted, NOTHING, star)

    def _not_known(self, p: Param, how: str) -> Piece:
        if how == "absent":
            self.absent(p.name, None)
        return Piece("${" + p.raw + "}", True, frozenset({p.name}))

    def _test_op(self, p: Param, how: str, value: str | list[str], star: bool) -> Piece:
        """${X-w} ${X:-w} ${X=w} ${X:=w} ${X+w} ${X:+w} ${X?w} ${X:?w} (manual 3.5.3): with the colon,
        an empty X counts as unset. A variable nothing gives is read as unset here."""
        if how == "unknown":
            return Piece("${" + p.raw + "}", True, frozenset({p.name}))
        null = how in ("unset", "absent") or (p.op.startswith(":") and value in ("", []))
        kind = p.op[-1]
        if kind == "+":
            if null:
                return Piece("", p.quoted)
            return self._word_piece(p.arg, p.quoted)
        if not null:
            return Piece(value, p.quoted, NOTHING, star)
        if kind == "?":
            if how == "absent":
                self.absent(p.name, None)
                return Piece("${" + p.raw + "}", True, frozenset({p.name}))
            message, _ = self.expand_string(p.arg) if p.arg else ("parameter null or not set", NOTHING)
            self.note(f"?{p.name}", f"line {self.line}: ${{{p.raw}}}: {p.name} is not set; bash stops here ({message})")
            raise ScriptExit(1)
        piece = self._word_piece(p.arg, p.quoted)
        if how == "absent" and not piece.unknown:
            self.absent(p.name, piece.value)
        if kind == "=":
            if not (p.name.isidentifier() and p.subscript is None):
                raise self.fail(f"${{{p.raw}}}: cannot assign in this way")
            self.assign(p.name, piece.value, bool(piece.unknown))
        return piece

    def _word_piece(self, word: Word | None, quoted: bool) -> Piece:
        """The word of ${X:-word}: expanded, not split; quoted text in it stays one field."""
        if word is None:
            return Piece("", quoted)
        text, unknown = self.expand_string(word)
        has_quotes = any(getattr(part, "quoted", False) for part in word.parts)
        return Piece(text, quoted or has_quotes or bool(unknown), unknown)

    def _substring(self, p: Param, items: list[str], whole: bool) -> list[str] | None:
        """${X:offset} and ${X:offset:length} (negative values count from the end)."""
        offset, _ = self.arith_word(p.arg) if p.arg else (0, NOTHING)
        length, _ = self.arith_word(p.arg2) if p.arg2 is not None else (None, NOTHING)
        if offset is None or (p.arg2 is not None and length is None):
            return None

        def cut(seq):
            n = len(seq)
            start = max(offset + n, 0) if offset < 0 else min(offset, n)
            if length is None:
                return seq[start:]
            end = n + length if length < 0 else start + length
            if end < start:
                raise self.fail(f"${{{p.raw}}}: substring expression < 0")
            return seq[start:end]
        if whole:
            return cut(items)
        return [cut(item) for item in items]

    def _pattern_op(self, p: Param, items: list[str]) -> list[str] | None:
        segments, unknown = self.expand_pattern(p.arg) if p.arg else ([], NOTHING)
        if unknown:
            return None
        ps = patterns.pieces(segments)
        try:
            if p.op in ("#", "##", "%", "%%"):
                return [patterns.remove(ps, item, p.op) for item in items]
            if p.op.startswith("/"):
                replacement, unknown = self.expand_string(p.arg2) if p.arg2 else ("", NOTHING)
                if unknown:
                    return None
                return [patterns.replace(ps, item, replacement, p.op) for item in items]
        except patterns.TooCostly:
            self.note("costly", f"line {self.line}: ${{{p.raw}}} on a long value is not worked out; not known")
            return None
        if segments:  # ${X^^pattern}: case changes of matching characters only
            return None
        convert = {"^^": str.upper, ",,": str.lower, "^": lambda s: s[:1].upper() + s[1:],
                   ",": lambda s: s[:1].lower() + s[1:]}[p.op]
        return [convert(item) for item in items]

    def expand(self, word: Word) -> tuple[list[str], frozenset[str]]:
        """The fields of a word: unquoted results split on blanks, "${A[@]}" one field per element."""
        fields: list[str] = []
        current: list[str] | None = None
        unknown: frozenset[str] = NOTHING
        for part in word.parts:
            piece = self.piece(part)
            unknown |= piece.unknown
            value = piece.value
            if isinstance(value, list):
                if piece.quoted and not piece.star:
                    for k, item in enumerate(value):
                        if k:
                            fields.append("".join(current))
                            current = None
                        if current is None:
                            current = [item]
                        else:
                            current.append(item)
                    continue
                value = " ".join(value)
            if piece.quoted:
                if current is None:
                    current = [value]
                else:
                    current.append(value)
                continue
            if piece.unknown:
                words = _FIELD.findall(value)
            else:
                words = _SPLIT.split(value.strip(_BLANKS)) if value.strip(_BLANKS) else []
            if value and value[0] in _BLANKS and current is not None:
                fields.append("".join(current))
                current = None
            for k, w in enumerate(words):
                if k:
                    fields.append("".join(current))
                    current = None
                if current is None:
                    current = [w]
                else:
                    current.append(w)
            if words and value[-1] in _BLANKS:
                fields.append("".join(current))
                current = None
        if current is not None:
            fields.append("".join(current))
        for f in fields:
            self.budget.produce(len(f))
        return fields, unknown

    def expand_string(self, word: Word) -> tuple[str, frozenset[str]]:
        """A word expanded without splitting (assignments, case subjects, [[ ]] operands)."""
        out: list[str] = []
        unknown: frozenset[str] = NOTHING
        for part in word.parts:
            piece = self.piece(part)
            unknown |= piece.unknown
            out.append(piece.value if isinstance(piece.value, str) else " ".join(piece.value))
        text = "".join(out)
        self.budget.produce(len(text))
        return text, unknown

    def expand_pattern(self, word: Word) -> tuple[list[tuple[str, bool]], frozenset[str]]:
        """A pattern's text in segments, quoted ones matching themselves."""
        segments: list[tuple[str, bool]] = []
        unknown: frozenset[str] = NOTHING
        for part in word.parts:
            piece = self.piece(part)
            unknown |= piece.unknown
            value = piece.value if isinstance(piece.value, str) else " ".join(piece.value)
            segments.append((value, piece.quoted and not piece.unknown))
        return segments, unknown


class _ArithScope:
    """The variables as arithmetic sees them (arith.Scope)."""

    def __init__(self, expander: Expander):
        self.expander = expander

    def lookup(self, name: str, index: int | None) -> str | None:
        how, value = self.expander.base(name, index)
        if how == "absent":
            self.expander.absent(name, None)
        if how in ("absent", "unknown"):
            raise ArithUnknown(frozenset({name}))
        return value if isinstance(value, str) else None

    def assign(self, name: str, index: int | None, value: int) -> None:
        self.expander.assign(name, str(value), False, index)
