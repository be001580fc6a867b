"""Tokens of a bash script (GNU Bash Reference Manual, 3.2 "Shell Commands", 3.6 "Redirections"):
words, operators, newlines and the `((` of an arithmetic command; here-document bodies are skipped.
"""
from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass

from planner.engines.shell.syntax import Assign, Lit, Word
from planner.engines.shell.words import WordReader
from planner.spec.errors import InputError

_ASSIGN_START = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?=\[|\+?=)")
_BLANKS = re.compile(r"(?:[ \t\r]|\\\n)*")
_REDIR = re.compile(r"(?:[0-9]+|\{[A-Za-z_][A-Za-z0-9_]*\})?(?:<<<|<<-|<<|<>|<&|>&|>>|>\||&>>|&>|<|>)")
_OP = re.compile(r";;&|;;|;&|;|&&|&|\|\||\|&|\||\(|\)")


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    """'word' | 'op' | 'newline' | 'redir' | 'arith' (the `((` of an arithmetic command) | 'eof'."""
    value: object
    """The Word (word, redir target, arith), the operator text, or None."""
    start: int
    line: int
    op: str = ""
    """The redirection operator of a 'redir' token."""


class Lexer(WordReader):
    def __init__(self, text: str, file: str):
        self.s = text.replace("\r\n", "\n")
        self.file = file
        self.pos = 0
        self.depth = 0
        self._newlines = [m.start() for m in re.finditer("\n", self.s)]
        self._heredocs: list[tuple[str, bool, int]] = []

    def line_at(self, pos: int) -> int:
        return bisect_left(self._newlines, pos) + 1

    def error(self, pos: int, message: str) -> InputError:
        return InputError(message, file=self.file, field=f"line {self.line_at(pos)}")

    # -- tokens -----------------------------------------------------------------------------
    def skip_blanks(self) -> None:
        s = self.s
        self.pos = _BLANKS.match(s, self.pos).end()
        if self.pos < len(s) and s[self.pos] == "#":
            end = s.find("\n", self.pos)
            self.pos = len(s) if end < 0 else end

    def token(self) -> Token:
        self.skip_blanks()
        s, pos = self.s, self.pos
        line = self.line_at(pos)
        if pos >= len(s):
            self._heredocs.clear()  # bash warns "here-document delimited by end-of-file" and reads on
            return Token("eof", None, pos, line)
        if s[pos] == "\n":
            self.pos = pos + 1
            self._skip_heredocs()
            return Token("newline", None, pos, line)
        m = _REDIR.match(s, pos)
        if m:
            op = m.group(0).lstrip("0123456789")
            op = op[op.index("}") + 1:] if op.startswith("{") else op
            self.pos = m.end()
            self.skip_blanks()
            if self.pos >= len(s) or s[self.pos] in "\n;&|()<>":
                raise self.error(pos, f"the redirection {m.group(0)} has no file or word after it")
            target = self.word()
            if op in ("<<", "<<-"):
                delimiter = "".join(p.text for p in target.parts if isinstance(p, Lit))
                self._heredocs.append((delimiter, op == "<<-", line))
            return Token("redir", target, pos, line, op)
        if s.startswith("((", pos):
            self.pos = pos + 2
            return Token("arith", self.arith(self.pos, "))", pos), pos, line)
        m = _OP.match(s, pos)
        if m:
            self.pos = m.end()
            return Token("op", m.group(0), pos, line)
        return Token("word", self.word(), pos, line)

    def _skip_heredocs(self) -> None:
        """Here-document bodies start after the newline that ends their command (manual 3.6.6)."""
        s = self.s
        for delimiter, strip_tabs, _ in self._heredocs:
            while True:
                if self.pos >= len(s):
                    break  # bash warns "here-document delimited by end-of-file" and reads on
                end = s.find("\n", self.pos)
                end = len(s) if end < 0 else end
                text = s[self.pos:end]
                self.pos = min(end + 1, len(s))
                if (text.lstrip("\t") if strip_tabs else text) == delimiter:
                    break
        self._heredocs.clear()

    # -- words ------------------------------------------------------------------------------
    def word(self) -> Word:
        """A word at self.pos: an assignment when it starts with NAME=, NAME+= or NAME[sub]=."""
        s, start = self.s, self.pos
        line = self.line_at(start)
        m = _ASSIGN_START.match(s, start)
        if m:
            pos, subscript = m.end(), None
            if s.startswith("[", pos):
                subscript = self.arith(pos + 1, "]", pos)
                pos = self.pos
            append = s.startswith("+=", pos)
            if append or s.startswith("=", pos):
                pos += 2 if append else 1
                prefix = Lit(s[start:pos], False)
                if s.startswith("(", pos):
                    elements = self._array(pos + 1, line)
                    return Word((prefix,), line, Assign(m.group(1), subscript, append, None, elements))
                self.pos = pos
                parts = self._unquoted()
                value = Word(tuple(parts), line)
                return Word((prefix, *parts), line, Assign(m.group(1), subscript, append, value))
            self.pos = start
        return Word(tuple(self._unquoted()), line)

    def _array(self, pos: int, line: int) -> tuple[Word, ...]:
        """The words of `NAME=( ... )` up to its `)`: newlines and comments may come between."""
        s = self.s
        self.pos = pos
        words = []
        while True:
            self.skip_blanks()
            if self.pos >= len(s):
                raise InputError("the ( of this array is never closed", file=self.file, field=f"line {line}")
            c = s[self.pos]
            if c == ")":
                self.pos += 1
                return tuple(words)
            if c == "\n":
                self.pos += 1
            elif c in ";&|(<>":
                raise self.error(self.pos, f"unexpected {c!r} in an array")
            else:
                words.append(Word(tuple(self._unquoted()), self.line_at(self.pos)))
