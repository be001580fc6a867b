"""Reading a bash launch script as bash would, far enough to know its variables and commands; it runs nothing.

Megatron-LM jobs start from scripts like Megatron-LM's examples/gpt3/train_gpt3_175b_distributed.sh
and examples/llama/train_llama3_8b_h100_fp8.sh: variables (`TP=8`), arrays of arguments
(`GPT_MODEL_ARGS=( --num-layers 96 ... )`) or strings (`GPT_ARGS="--num-layers 96 ..."`), line
continuations, comments, and a launch line (`torchrun ${DISTRIBUTED_ARGS[@]} pretrain_gpt.py
${GPT_MODEL_ARGS[@]} ...`). Read here: assignments (`=`, `+=`, arrays, export/declare), expansions
`$X ${X} ${X:-default} ${A[@]} $((arithmetic))`, word splitting of unquoted expansions, quotes
and redirections. Command substitutions `$(...)` and variables the script does not define stay
as written (`${DATA_PATH}`); the first are reported in `notes`, the second in `unset`.
Finding the launch line and its arguments: megatron_flags.py.
"""
from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass, field

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(\+?)=")
_KEYWORDS = {"if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac",
             "function", "{", "}", "!"}
_DECLARE = {"export", "declare", "local", "readonly", "typeset"}


@dataclass
class _Word:
    parts: list[tuple[str, str, bool]]
    """(kind, text, quoted): kind lit | var (the text inside ${}) | arith | cmd."""
    line: int

    def assignment(self) -> tuple[str, bool, "_Word"] | None:
        """(name, append, value word) when the word is `NAME=value` or `NAME+=value`."""
        if not self.parts or self.parts[0][0] != "lit" or self.parts[0][2]:
            return None
        m = _ASSIGN.match(self.parts[0][1])
        if not m:
            return None
        rest = self.parts[0][1][m.end():]
        value = ([("lit", rest, False)] if rest else []) + self.parts[1:]
        return m.group(1), bool(m.group(2)), _Word(value, self.line)


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]
    line: int


@dataclass
class ShellScript:
    variables: dict[str, str | list[str]] = field(default_factory=dict)
    commands: list[Command] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    uses: dict[str, set[str]] = field(default_factory=dict)
    """Variables each assignment read (to find the argument lists no other list includes)."""
    unset: set[str] = field(default_factory=set)
    """Variables used but not set in the script (the environment's: MASTER_ADDR, DATA_PATH ...)."""


class _Lexer:
    """Tokens: ('word', _Word) | ('sep', text) | ('lparen',) | ('rparen',) | ('redir',)."""

    def __init__(self, text: str):
        self.s = text.replace("\r\n", "\n")
        self.line_of = [0]
        for ch in self.s:
            self.line_of.append(self.line_of[-1] + (ch == "\n"))
        self.tokens: list[tuple] = []
        self.parts: list[tuple[str, str, bool]] = []
        self.quoted = False
        """A quote was seen in the current word: `""` is a word even when empty."""
        self.start = 0

    def _lit(self, text: str, quoted: bool) -> None:
        if self.parts and self.parts[-1][0] == "lit" and self.parts[-1][2] == quoted:
            self.parts[-1] = ("lit", self.parts[-1][1] + text, quoted)
        else:
            self.parts.append(("lit", text, quoted))

    def _flush(self) -> None:
        if self.parts or self.quoted:
            self.tokens.append(("word", _Word(self.parts or [("lit", "", True)], self.line_of[self.start] + 1)))
            self.parts = []
            self.quoted = False

    def run(self) -> list[tuple]:
        s, i = self.s, 0
        while i < len(s):
            c = s[i]
            if not self.parts and not self.quoted:
                self.start = i
            if c in " \t\r":
                self._flush()
                i += 1
            elif c == "\n":
                self._flush()
                self.tokens.append(("sep", "\n"))
                i += 1
            elif c == "#" and not self.parts and not self.quoted:
                while i < len(s) and s[i] != "\n":
                    i += 1
            elif c in ";&|":
                self._flush()
                j = i
                while j < len(s) and s[j] in ";&|":
                    j += 1
                self.tokens.append(("sep", s[i:j]))
                i = j
            elif c == "(":
                word = _Word(self.parts, 0)
                is_array = word.assignment() is not None and not word.assignment()[2].parts
                self._flush()
                self.tokens.append(("lparen",) if is_array else ("sep", "("))
                i += 1
            elif c == ")":
                self._flush()
                self.tokens.append(("rparen",))
                i += 1
            elif c in "<>":
                if len(self.parts) == 1 and self.parts[0][0] == "lit" and self.parts[0][1].isdigit():
                    self.parts = []  # the file descriptor of `2>&1`
                self._flush()
                j = i
                while j < len(s) and s[j] in "<>&":
                    j += 1
                self.tokens.append(("redir",))
                i = j
            elif c == "'":
                self.quoted = True
                end = s.find("'", i + 1)
                end = len(s) if end < 0 else end
                self._lit(s[i + 1:end], True)
                i = end + 1
            elif c == '"':
                self.quoted = True
                i = self._double_quoted(i + 1)
            elif c == "\\":
                if s[i + 1:i + 2] != "\n":  # a backslash-newline continues the line
                    self._lit(s[i + 1:i + 2], True)
                i += 2
            elif c == "$":
                i = self._dollar(i, quoted=False)
            elif c == "`":
                end = s.find("`", i + 1)
                end = len(s) if end < 0 else end
                self.parts.append(("cmd", s[i + 1:end], False))
                i = end + 1
            else:
                self._lit(c, False)
                i += 1
        self._flush()
        return self.tokens

    def _double_quoted(self, i: int) -> int:
        s = self.s
        while i < len(s) and s[i] != '"':
            if s[i] == "\\" and i + 1 < len(s) and s[i + 1] in '\\"$`\n':
                if s[i + 1] != "\n":
                    self._lit(s[i + 1], True)
                i += 2
            elif s[i] == "$":
                i = self._dollar(i, quoted=True)
            else:
                self._lit(s[i], True)
                i += 1
        return i + 1

    def _dollar(self, i: int, quoted: bool) -> int:
        s = self.s
        nxt = s[i + 1:i + 2]
        if s.startswith("$((", i):
            end = _matching(s, i + 1, "(", ")")
            self.parts.append(("arith", s[i + 3:end - 1], quoted))
            return end + 1
        if nxt == "(":
            end = _matching(s, i + 1, "(", ")")
            self.parts.append(("cmd", s[i + 2:end], quoted))
            return end + 1
        if nxt == "{":
            end = _matching(s, i + 1, "{", "}")
            self.parts.append(("var", s[i + 2:end], quoted))
            return end + 1
        m = _NAME.match(s, i + 1)
        if m:
            self.parts.append(("var", m.group(0), quoted))
            return m.end()
        if nxt and (nxt.isdigit() or nxt in "@*#?$!-"):
            self.parts.append(("var", nxt, quoted))
            return i + 2
        self._lit("$", quoted)
        return i + 1


def _matching(s: str, i: int, open_: str, close: str) -> int:
    """Index of the bracket closing the one at s[i] (or the end of the text)."""
    depth = 0
    for j in range(i, len(s)):
        if s[j] == open_:
            depth += 1
        elif s[j] == close:
            depth -= 1
            if depth == 0:
                return j
    return len(s)


_ARITH_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
              ast.Div: operator.floordiv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
              ast.Pow: operator.pow}


def _arith(node: ast.AST) -> int:
    if isinstance(node, ast.Expression):
        return _arith(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH_OPS:
        return _ARITH_OPS[type(node.op)](_arith(node.left), _arith(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return -_arith(node.operand) if isinstance(node.op, ast.USub) else _arith(node.operand)
    raise ValueError("not integer arithmetic")


class _Interpreter:
    def __init__(self):
        self.script = ShellScript()
        self.reads: set[str] = set()
        self._noted: set[str] = set()

    def note(self, key: str, message: str) -> None:
        if key not in self._noted:
            self._noted.add(key)
            self.script.notes.append(message)

    # -- expansion -----------------------------------------------------------------------
    def _value(self, body: str) -> str | list[str]:
        """The value of `${body}`: a string, or a list for `${A[@]}`."""
        if body in ("@", "*"):
            self.note("$@", "the script passes its own command-line arguments ($@) on; they are not known here")
            return []
        if body.startswith("#") and len(body) > 1:
            value = self._value(body[1:])
            return str(len(value))
        m = _NAME.match(body) or re.match(r"\d+", body)
        if not m:
            self.note(f"${body}", f"${{{body}}} is a special parameter; left as written")
            return f"${{{body}}}"
        name, rest = m.group(0), body[m.end():]
        self.reads.add(name)
        value = None if name.isdigit() else self.script.variables.get(name)
        index = re.match(r"\[([^\]]*)\]", rest)
        if index:
            rest = rest[index.end():]
            key = index.group(1)
            if value is not None and key not in ("@", "*"):
                items = value if isinstance(value, list) else [value]
                pos = int(key) if key.isdigit() else 0
                value = items[pos] if pos < len(items) else ""
        op = re.match(r":?[-=+?]", rest)
        if op:
            word = self._expand_text(rest[op.end():])
            unset = value is None or (op.group(0).startswith(":") and value in ("", []))
            if op.group(0).endswith("+"):
                return "" if unset else word
            if unset:
                if op.group(0).endswith("="):
                    self.script.variables[name] = word
                return word
        if value is None:
            self.script.unset.add(name)
            return f"${{{name}}}"
        return value

    def _expand_text(self, text: str) -> str:
        """A default word (`${X:-word}`): quotes removed and expansions done, not split."""
        words = [tok[1] for tok in _Lexer(text).run() if tok[0] == "word"]
        return " ".join(f for w in words for f in self.expand(w, split=False))

    def _arith_value(self, expr: str) -> str:
        def substitute(m: re.Match) -> str:
            value = self._value(m.group(1) or m.group(2))
            return value if isinstance(value, str) else " ".join(value)
        text = re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?|\b([A-Za-z_][A-Za-z0-9_]*)\b", substitute, expr)
        try:
            return str(_arith(ast.parse(text.strip(), mode="eval")))
        except (SyntaxError, ValueError, ZeroDivisionError, TypeError):
            self.note(f"$(({expr}))", f"$(({expr})) could not be computed; left as written")
            return f"$(({expr}))"

    def expand(self, word: _Word, split: bool = True) -> list[str]:
        """Fields of one word: unquoted expansions split on whitespace, "${A[@]}" one field each."""
        fields: list[str] = []
        current: str | None = None  # None: no field started
        for kind, text, quoted in word.parts:
            if kind == "lit":
                current = (current or "") + text
                continue
            if kind == "cmd":
                self.note(f"$({text})", f"$({text}) is a command substitution, not run; left as written")
                value: str | list[str] = f"$({text})"
            elif kind == "arith":
                value = self._arith_value(text)
            else:
                value = self._value(text)
            if isinstance(value, list):
                items = value if (quoted or not split) else [w for v in value for w in v.split()]
                for k, item in enumerate(items):
                    if k == 0:
                        current = (current or "") + item
                    else:
                        fields.append(current)
                        current = item
                continue
            if quoted or not split:
                current = (current or "") + value
                continue
            pieces = value.split()
            if not pieces:
                continue
            if value[0].isspace() and current:
                fields.append(current)
                current = None
            for k, piece in enumerate(pieces):
                if k:
                    fields.append(current)
                    current = None
                current = (current or "") + piece
            if value[-1].isspace():
                fields.append(current)
                current = None
        if current is not None:
            fields.append(current)
        return fields

    # -- commands ------------------------------------------------------------------------
    def assign(self, name: str, append: bool, value: str | list[str]) -> None:
        self.script.uses.setdefault(name, set()).update(self.reads - {name})
        old = self.script.variables.get(name)
        if append and old is not None:
            if isinstance(old, list) or isinstance(value, list):
                old_list = old if isinstance(old, list) else [old]
                value = old_list + (value if isinstance(value, list) else [value])
            else:
                value = old + value
        self.script.variables[name] = value

    def command(self, items: list) -> None:
        index = 0
        while index < len(items):
            item = items[index]
            if isinstance(item, tuple):  # array assignment
                _, name, append, words = item
                self.reads = set()
                self.assign(name, append, [f for w in words for f in self.expand(w)])
            elif item.assignment() is not None and (index == 0 or self._declaring):
                name, append, value = item.assignment()
                self.reads = set()
                self.assign(name, append, " ".join(self.expand(value, split=False)))
            else:
                break
            index += 1
        self._declaring = False
        if index == len(items):
            return
        first = " ".join(self.expand(items[index]))
        if first in _DECLARE:
            self._declaring = True
            rest = [it for it in items[index + 1:] if isinstance(it, tuple) or it.assignment() is not None]
            self.command(rest)
            return
        if first in _KEYWORDS:
            self.note("keywords", "the script has shell conditionals or loops; every branch was read in order"
                                  " (the last assignment wins)")
            self.command(items[index + 1:])
            return
        words = [f for it in items[index:] if not isinstance(it, tuple) for f in self.expand(it)]
        self.script.commands.append(Command(tuple(words), items[index].line))

    _declaring = False

    def run(self, tokens: list[tuple]) -> ShellScript:
        items: list = []
        k = 0
        skip_next = False
        while k < len(tokens):
            tok = tokens[k]
            if tok[0] == "word":
                word = tok[1]
                if skip_next:
                    skip_next = False
                elif (k + 1 < len(tokens) and tokens[k + 1][0] == "lparen" and word.assignment()):
                    name, append, _ = word.assignment()
                    k += 2
                    words = []
                    while k < len(tokens) and tokens[k][0] != "rparen":
                        if tokens[k][0] == "word":
                            words.append(tokens[k][1])
                        k += 1
                    items.append(("array", name, append, words))
                else:
                    items.append(word)
            elif tok[0] == "redir":
                skip_next = True
            else:  # sep, a stray parenthesis
                if items:
                    self.command(items)
                items = []
                skip_next = False
            k += 1
        if items:
            self.command(items)
        return self.script


def read_script(text: str) -> ShellScript:
    """Variables, expanded commands and notes of a bash script."""
    return _Interpreter().run(_Lexer(text).run())
