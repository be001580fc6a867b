"""The parts of one word (GNU Bash Reference Manual, 3.1.2 "Quoting" and 3.5 "Shell Expansions"):
quoted text, `$NAME`, `${...}`, `$((...))`, `$(...)` and backquotes. Literal runs are matched with
regular expressions, so reading stays linear in the text.
"""
from __future__ import annotations

import re

from planner.engines.shell.syntax import Arith, CmdSub, Lit, Param, Part, Word
from planner.spec.errors import InputError

MAX_NESTING = 100
"""Brackets, quotes and compound commands nested deeper than this are refused (bash has no such
limit, but no launch script comes near it, and it keeps every reader within Python's stack)."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+|[@*#?$!0-]")
_SPECIAL = re.compile(r"[0-9@*#?$!-]")
_UNQUOTED_RUN = re.compile(r"[^\s;&|()<>'\"\\$`]+")
_DQUOTED_RUN = re.compile(r"[^\"\\$`]+")
_ARITH_RUN = re.compile(r"[^()\[\]$\"'\\`]+")
_CMDSUB_RUN = re.compile(r"[^()'\"\\`#$]+")
_DQ_SKIP_RUN = re.compile(r"[^\"\\`$]+")
_ANSI_C = re.compile(r"(?:[^'\\]|\\.)*'", re.S)
_ANSI_ESCAPE = re.compile(r"\\(?:x([0-9A-Fa-f]{1,2})|([0-7]{1,3})|c(.)|(.))", re.S)
_ANSI_SIMPLE = {"a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
                "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?"}
_PARAM_OPS = (":-", ":=", ":+", ":?", "-", "=", "+", "?", "##", "#", "%%", "%", "//", "/#", "/%", "/", "^^", "^",
              ",,", ",", ":")


def _ansi_c(text: str) -> str:
    """The value of `$'text'` (manual 3.1.2.4)."""
    def one(m: re.Match) -> str:
        if m.group(1):
            return chr(int(m.group(1), 16))
        if m.group(2):
            return chr(int(m.group(2), 8) & 0xFF)
        if m.group(3):
            return chr(ord(m.group(3)) & 0x1F)
        return _ANSI_SIMPLE.get(m.group(4), "\\" + m.group(4))
    return _ANSI_ESCAPE.sub(one, text)


class _Parts:
    """A list of parts that merges adjacent literal text of the same quoting."""

    def __init__(self):
        self.items: list[Part] = []

    def lit(self, text: str, quoted: bool) -> None:
        if self.items and isinstance(self.items[-1], Lit) and self.items[-1].quoted == quoted:
            self.items[-1] = Lit(self.items[-1].text + text, quoted)
        else:
            self.items.append(Lit(text, quoted))

    def add(self, part: Part) -> None:
        self.items.append(part)


class WordReader:
    """Reads the parts of words from `s` at `pos`; errors name the line where a quote or bracket opened."""

    s: str
    pos: int
    depth: int

    def line_at(self, pos: int) -> int:
        raise NotImplementedError

    def error(self, pos: int, message: str) -> InputError:
        raise NotImplementedError

    def enter(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.error(pos, f"nested more than {MAX_NESTING} levels deep; not read")

    def leave(self) -> None:
        self.depth -= 1

    def _unquoted(self) -> list[Part]:
        """Parts of an unquoted word up to a blank or an operator."""
        s, parts = self.s, _Parts()
        n = len(s)
        while self.pos < n:
            pos = self.pos
            c = s[pos]
            m = _UNQUOTED_RUN.match(s, pos)
            if m:
                parts.lit(m.group(0), False)
                self.pos = m.end()
            elif c == "'":
                end = s.find("'", pos + 1)
                if end < 0:
                    raise self.error(pos, "the ' opened here is never closed (bash: unexpected end of file while"
                                          " looking for the matching ')")
                parts.lit(s[pos + 1:end], True)
                self.pos = end + 1
            elif c == '"':
                self._dquoted(pos + 1, parts)
            elif c == "\\":
                if s.startswith("\n", pos + 1):
                    self.pos = pos + 2
                else:
                    parts.lit(s[pos + 1:pos + 2] or "\\", True)
                    self.pos = pos + 2
            elif c == "$":
                self._dollar(pos, False, parts)
            elif c == "`":
                parts.add(CmdSub(self._backquoted(pos), False))
            else:
                break
        return parts.items

    def _dquoted(self, pos: int, parts: _Parts) -> None:
        """Parts of "text" from after the opening quote; `""` leaves an empty quoted part."""
        s, opened = self.s, pos - 1
        count = len(parts.items)
        self.pos = pos
        while True:
            pos = self.pos
            if pos >= len(s):
                raise self.error(opened, 'the " opened here is never closed (bash: unexpected end of file while'
                                         ' looking for the matching ")')
            c = s[pos]
            m = _DQUOTED_RUN.match(s, pos)
            if m:
                parts.lit(m.group(0), True)
                self.pos = m.end()
            elif c == '"':
                self.pos = pos + 1
                if len(parts.items) == count:  # "" is an empty word; "$@" with no arguments is none
                    parts.add(Lit("", True))
                return
            elif c == "\\":
                nxt = s[pos + 1:pos + 2]
                if nxt in ('"', "\\", "$", "`"):
                    parts.lit(nxt, True)
                elif nxt != "\n":
                    parts.lit("\\" + nxt, True)
                self.pos = pos + 2
            elif c == "$":
                self._dollar(pos, True, parts)
            else:
                parts.add(CmdSub(self._backquoted(pos), True))

    def _backquoted(self, pos: int) -> str:
        s, end = self.s, pos + 1
        while True:
            end = s.find("`", end)
            if end < 0:
                raise self.error(pos, "the ` opened here is never closed")
            if s[end - 1] != "\\":
                break
            end += 1
        self.pos = end + 1
        return s[pos + 1:end]

    def _dollar(self, pos: int, quoted: bool, parts: _Parts) -> None:
        s = self.s
        nxt = s[pos + 1:pos + 2]
        if s.startswith("$((", pos):
            self.enter(pos)
            expr = self.arith(pos + 3, "))", pos)
            parts.add(Arith(expr, quoted, s[pos + 3:self.pos - 2]))
            self.leave()
        elif nxt == "(":
            end = self._skip_command(pos + 2)
            parts.add(CmdSub(s[pos + 2:end], quoted))
            self.pos = end + 1
        elif nxt == "{":
            self.enter(pos)
            parts.add(self._braced(pos, quoted))
            self.leave()
        elif nxt == "'" and not quoted:
            m = _ANSI_C.match(s, pos + 2)
            if not m:
                raise self.error(pos, "the $' opened here is never closed")
            parts.lit(_ansi_c(m.group(0)[:-1]), True)
            self.pos = m.end()
        elif nxt == '"' and not quoted:
            self._dquoted(pos + 2, parts)  # $"..." is translated text: read as "..."
        else:
            m = _NAME.match(s, pos + 1) or _SPECIAL.match(s, pos + 1)
            if m:
                parts.add(Param(m.group(0), None, "", None, None, quoted, m.group(0)))
                self.pos = m.end()
            else:
                parts.lit("$", quoted)
                self.pos = pos + 1

    def _braced(self, pos: int, quoted: bool) -> Param:
        """`${...}` from its `$` (manual 3.5.3)."""
        s = self.s
        start = pos + 2
        p = start
        op = ""
        if s.startswith("#", p) and not s.startswith("}", p + 1) and _PARAM_NAME.match(s, p + 1):
            op, p = "len", p + 1
        if s.startswith("!", p) and not s.startswith("}", p + 1):
            end = self._close_brace(p, pos)
            return Param("!", None, "indirect", None, None, quoted, s[start:end])
        m = _PARAM_NAME.match(s, p)
        if not m:
            end = self._close_brace(p, pos)
            raise self.error(pos, f"${{{s[start:end]}}}: bad substitution")
        name, p = m.group(0), m.end()
        subscript = None
        if s.startswith("[", p) and _NAME.fullmatch(name):
            subscript = self.arith(p + 1, "]", pos)
            p = self.pos
        arg = arg2 = None
        if op != "len" and not s.startswith("}", p):
            op = next((o for o in _PARAM_OPS if s.startswith(o, p)), "")
            if not op:
                end = self._close_brace(p, pos)
                raise self.error(pos, f"${{{s[start:end]}}}: bad substitution")
            p += len(op)
            if op.startswith("/"):
                arg = self._param_word(p, quoted, "/}", pos)
                if s.startswith("/", self.pos):
                    arg2 = self._param_word(self.pos + 1, quoted, "}", pos)
            elif op == ":":
                arg = self._param_word(p, quoted, ":}", pos)
                if s.startswith(":", self.pos):
                    arg2 = self._param_word(self.pos + 1, quoted, "}", pos)
            else:
                arg = self._param_word(p, quoted, "}", pos)
            p = self.pos
        if not s.startswith("}", p):
            raise self.error(pos, "the ${ opened here is never closed")
        self.pos = p + 1
        return Param(name, subscript, op, arg, arg2, quoted, s[start:p])

    def _close_brace(self, p: int, opened: int) -> int:
        end = self.s.find("}", p)
        if end < 0:
            raise self.error(opened, "the ${ opened here is never closed")
        self.pos = end + 1
        return end

    def _param_word(self, pos: int, quoted: bool, stops: str, opened: int) -> Word:
        """The word of `${NAME<op>word}` up to one of `stops`; blanks are part of it."""
        s, parts = self.s, _Parts()
        run = re.compile(r"[^'\"\\$`" + re.escape(stops) + "]+")
        self.pos = pos
        line = self.line_at(pos)
        while True:
            p = self.pos
            if p >= len(s):
                raise self.error(opened, "the ${ opened here is never closed")
            c = s[p]
            m = run.match(s, p)
            if m:
                parts.lit(m.group(0), quoted)
                self.pos = m.end()
            elif c in stops:
                return Word(tuple(parts.items), line)
            elif c == "'":
                if quoted:  # inside "...", a single quote in ${X:-'a'} is an ordinary character
                    parts.lit("'", True)
                    self.pos = p + 1
                else:
                    end = s.find("'", p + 1)
                    if end < 0:
                        raise self.error(p, "the ' opened here is never closed")
                    parts.lit(s[p + 1:end], True)
                    self.pos = end + 1
            elif c == '"':
                self._dquoted(p + 1, parts)
            elif c == "\\":
                parts.lit(s[p + 1:p + 2], True)
                self.pos = p + 2
            elif c == "$":
                self._dollar(p, quoted, parts)
            else:
                parts.add(CmdSub(self._backquoted(p), quoted))

    def arith(self, pos: int, close: str, opened: int) -> Word:
        """The text of an arithmetic expression up to `close` ('))' or ']') outside parentheses,
        with its expansions and quotes as parts; self.pos ends after `close`."""
        s, parts = self.s, _Parts()
        depth = 0
        self.pos = pos
        line = self.line_at(pos)
        while True:
            p = self.pos
            if p >= len(s):
                what = "$((" if close == "))" else "["
                raise self.error(opened, f"the {what} opened here is never closed")
            c = s[p]
            m = _ARITH_RUN.match(s, p)
            if m:
                parts.lit(m.group(0), False)
                self.pos = m.end()
            elif c in "([":
                if (c == "[") == (close == "]"):
                    depth += 1
                    if depth > MAX_NESTING:
                        raise self.error(p, f"parentheses nested more than {MAX_NESTING} deep; not read")
                parts.lit(c, False)
                self.pos = p + 1
            elif c in ")]":
                if s.startswith(close, p) and depth == 0:
                    self.pos = p + len(close)
                    return Word(tuple(parts.items), line)
                if (c == "]") == (close == "]"):
                    depth -= 1
                    if depth < 0:
                        raise self.error(opened, f"unbalanced {c!r} in arithmetic")
                parts.lit(c, False)
                self.pos = p + 1
            elif c == '"':
                self._dquoted(p + 1, parts)
            elif c == "'":
                parts.lit("'", False)
                self.pos = p + 1
            elif c == "\\":
                parts.lit(s[p + 1:p + 2], True)
                self.pos = p + 2
            elif c == "$":
                self._dollar(p, True, parts)
            else:
                parts.add(CmdSub(self._backquoted(p), True))

    def _skip_command(self, pos: int) -> int:
        """The index of the `)` closing a `$(` whose text starts at pos; quotes and nested
        substitutions are stepped over without being read."""
        s, stack = self.s, ["("]
        opened = pos - 2
        while stack:
            if pos >= len(s):
                raise self.error(opened, "the $( opened here is never closed")
            if len(stack) > MAX_NESTING:
                raise self.error(pos, f"command substitutions nested more than {MAX_NESTING} deep; not read")
            c = s[pos]
            if stack[-1] == '"':
                m = _DQ_SKIP_RUN.match(s, pos)
                if m:
                    pos = m.end()
                elif c == '"':
                    stack.pop()
                    pos += 1
                elif c == "\\":
                    pos += 2
                elif c == "$":
                    if s.startswith("$(", pos):
                        stack.append("(")
                    pos += 2 if s.startswith("$(", pos) else 1
                else:
                    self._backquoted(pos)
                    pos = self.pos
                continue
            m = _CMDSUB_RUN.match(s, pos)
            if m:
                pos = m.end()
            elif c == "(":
                stack.append("(")
                pos += 1
            elif c == ")":
                stack.pop()
                if not stack:
                    return pos
                pos += 1
            elif c == "'":
                end = s.find("'", pos + 1)
                if end < 0:
                    raise self.error(pos, "the ' opened here is never closed")
                pos = end + 1
            elif c == '"':
                stack.append('"')
                pos += 1
            elif c == "\\":
                pos += 2
            elif c == "#" and (pos == 0 or s[pos - 1] in " \t\n;("):
                end = s.find("\n", pos)
                pos = len(s) if end < 0 else end
            elif c == "$":
                pos += 1
            else:
                self._backquoted(pos)
                pos = self.pos
        return pos
