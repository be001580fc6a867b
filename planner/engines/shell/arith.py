"""Shell arithmetic (GNU Bash Reference Manual, 6.5 "Shell Arithmetic"): 64-bit integers, C's
operators and precedence, `**`, assignments and `++`/`--`, variables whose values are themselves
expressions. Parsed and evaluated in one pass, as bash's expr.c does, with a `skip` count for the
branches `&&`, `||` and `?:` do not take (no side effects and no arithmetic errors there; a malformed
constant is still an error, since bash converts each number as it reads it).

Where bash silently wraps around 64 bits (`9**99`, `1<<63`), the result is an error instead: a
launch script that overflows is wrong, and a wrapped number would be planned as if it were meant.
"""
from __future__ import annotations

import re
from typing import Protocol

INT_MAX = 2**63 - 1
INT_MIN = -2**63
MAX_DEPTH = 100
"""Parentheses, right-associative chains and variables holding expressions, all together."""

_TOKEN = re.compile(r"""\s*(?:
    (?P<num>[0-9][0-9A-Za-z_@#]*)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><<=|>>=|\*\*|\+\+|--|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&^|]=|[-+*/%<>!~&^|?:=(),\[\]])
)""", re.X)
_INTEGER = re.compile(r"\s*-?[0-9]+\s*")
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ@_"

# Left binding powers; `**`, `?:` and the assignments group to the right (manual 6.5).
_BINARY = {",": 1, "||": 4, "&&": 5, "|": 6, "^": 7, "&": 8, "==": 9, "!=": 9, "<": 10, ">": 10, "<=": 10,
           ">=": 10, "<<": 11, ">>": 11, "+": 12, "-": 12, "*": 13, "/": 13, "%": 13, "**": 14}
_ASSIGN_OPS = frozenset("= += -= *= /= %= <<= >>= &= ^= |=".split())
_TERNARY = 3
_UNARY = 15


class ArithError(Exception):
    """An expression bash would refuse (its message says why), or one that overflows."""


class ArithUnknown(Exception):
    """The value depends on something not known; `names` says what."""

    def __init__(self, names: frozenset[str]):
        super().__init__(", ".join(sorted(names)))
        self.names = names


class Scope(Protocol):
    def lookup(self, name: str, index: int | None) -> str | None:
        """The variable's text, None when unset; raises ArithUnknown when not known."""

    def assign(self, name: str, index: int | None, value: int) -> None: ...


def _check(value: int) -> int:
    if not INT_MIN <= value <= INT_MAX:
        raise ArithError("the result does not fit bash's 64-bit integers (bash would wrap it around)")
    return value


def _truncating_divide(a: int, b: int) -> tuple[int, int]:
    """C's / and % (toward zero), which bash uses; Python's // floors."""
    q = abs(a) // abs(b)
    q = q if (a >= 0) == (b >= 0) else -q
    return q, a - b * q


def _binary(op: str, a: int, b: int) -> int:
    if op in ("/", "%"):
        if b == 0:
            raise ArithError("division by 0")
        q, r = _truncating_divide(a, b)
        return _check(q if op == "/" else r)
    if op == "**":
        if b < 0:
            raise ArithError("exponent less than 0")
        if abs(a) > 1 and b >= 64:
            raise ArithError("the result does not fit bash's 64-bit integers (bash would wrap it around)")
        return _check(a ** b)
    if op in ("<<", ">>"):
        if not 0 <= b < 64:
            raise ArithError(f"shift count {b} is outside 0..63")
        return _check(a << b) if op == "<<" else a >> b
    return _check({
        "+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "&": lambda: a & b, "|": lambda: a | b,
        "^": lambda: a ^ b, "<": lambda: int(a < b), ">": lambda: int(a > b), "<=": lambda: int(a <= b),
        ">=": lambda: int(a >= b), "==": lambda: int(a == b), "!=": lambda: int(a != b),
    }[op]())


def constant(text: str) -> int:
    """An integer constant: decimal, 0x hex, 0 octal or base#digits with base 2 to 64 (manual 6.5)."""
    base, digits = 10, text
    if "#" in text:
        head, _, digits = text.partition("#")
        if not head.isdigit() or not 2 <= int(head) <= 64 or not digits:
            raise ArithError(f"{text}: invalid arithmetic base")
        base = int(head)
    elif text[:2] in ("0x", "0X"):
        base, digits = 16, text[2:]
    elif text.startswith("0") and len(text) > 1:
        base, digits = 8, text[1:]
    value = 0
    for ch in digits:
        d = _DIGITS.find(ch if base > 36 else ch.lower())
        if not 0 <= d < base:
            raise ArithError(f"{text}: value too great for base")
        value = value * base + d
        if value > INT_MAX + 1:
            raise ArithError(f"{text}: the number does not fit bash's 64-bit integers")
    return value


class _Evaluator:
    def __init__(self, text: str, scope: Scope, depth: int):
        self.tokens = self._tokenize(text)
        self.k = 0
        self.scope = scope
        self.depth = depth
        self.skip = 0

    @staticmethod
    def _tokenize(text: str) -> list[tuple[str, str]]:
        tokens, pos = [], 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise ArithError(f"syntax error: invalid arithmetic operator (error token is \"{text[pos:].strip()}\")")
            kind = m.lastgroup
            tokens.append((kind, m.group(kind)))
            pos = m.end()
        return tokens

    def peek(self) -> str | None:
        return self.tokens[self.k][1] if self.k < len(self.tokens) and self.tokens[self.k][0] == "op" else None

    def take(self, op: str) -> None:
        if self.peek() != op:
            found = self.tokens[self.k][1] if self.k < len(self.tokens) else "end of expression"
            raise ArithError(f"syntax error: {op!r} expected, found {found!r}")
        self.k += 1

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ArithError(f"expression nested more than {MAX_DEPTH} deep")

    # -- variables --------------------------------------------------------------------------
    def value_of(self, name: str, index: int | None) -> int:
        if self.skip:
            return 0
        text = self.scope.lookup(name, index)
        if text is None or text.strip() == "":
            return 0
        if _INTEGER.fullmatch(text):
            return _check(int(text))
        return evaluate(text, self.scope, self.depth + 1)  # a variable's value is an expression

    def store(self, name: str, index: int | None, value: int) -> int:
        if not self.skip:
            self.scope.assign(name, index, value)
        return value

    # -- expressions ------------------------------------------------------------------------
    def expression(self, min_bp: int = 0) -> int:
        self.nest()
        left, target = self.prefix()
        while True:
            op = self.peek()
            if op in _ASSIGN_OPS and min_bp < 2:
                if target is None:
                    raise ArithError("attempted assignment to non-variable")
                self.k += 1
                value = self.expression(1)
                if op != "=":
                    current = self.value_of(*target)
                    value = 0 if self.skip else _binary(op[:-1], current, value)
                left, target = self.store(*target, value), None
                continue
            if op == "?" and min_bp < _TERNARY:
                self.k += 1
                left = self._ternary(left)
                target = None
                continue
            bp = _BINARY.get(op or "")
            if bp is None or bp <= min_bp:
                break
            self.k += 1
            target = None
            if op in ("&&", "||"):
                decided = (left == 0) if op == "&&" else (left != 0)
                self.skip += decided
                right = self.expression(bp)
                self.skip -= decided
                left = int(left != 0 and right != 0) if op == "&&" else int(left != 0 or right != 0)
            elif op == ",":
                left = self.expression(bp)
            else:
                right = self.expression(bp - 1 if op == "**" else bp)
                left = 0 if self.skip else _binary(op, left, right)
        self.depth -= 1
        return left

    def _ternary(self, condition: int) -> int:
        self.skip += condition == 0
        yes = self.expression(0)
        self.skip -= condition == 0
        self.take(":")
        self.skip += condition != 0
        no = self.expression(2)
        self.skip -= condition != 0
        return yes if condition else no

    def prefix(self) -> tuple[int, tuple[str, int | None] | None]:
        """A value, and the variable it is when it can be assigned."""
        if self.k >= len(self.tokens):
            raise ArithError("syntax error: operand expected")
        kind, text = self.tokens[self.k]
        self.k += 1
        if kind == "num":
            value = constant(text)  # read even where not taken: bash's readtok converts every constant
            return (0 if self.skip else value), None
        if kind == "name":
            index = None
            if self.peek() == "[":
                self.k += 1
                index = self.expression(0)
                self.take("]")
            target = (text, index)
            if self.peek() == "=":
                return 0, target  # assigned, not read
            if self.peek() in ("++", "--"):
                op = self.tokens[self.k][1]
                self.k += 1
                old = self.value_of(*target)
                self.store(*target, _check(old + (1 if op == "++" else -1)))
                return old, None
            return self.value_of(*target), target
        if text == "(":
            value = self.expression(0)
            self.take(")")
            return value, None
        if text in ("++", "--"):
            if self.k >= len(self.tokens) or self.tokens[self.k][0] != "name":
                raise ArithError(f"syntax error: {text} needs a variable")
            _, target = self.prefix()
            if target is None:
                raise ArithError(f"syntax error: {text} needs a variable")
            value = _check(self.value_of(*target) + (1 if text == "++" else -1))
            return self.store(*target, value), None
        if text in ("-", "+", "!", "~"):
            self.nest()
            value = self.expression(_UNARY - 1 if text in "!~" else _BINARY["**"])
            self.depth -= 1
            if self.skip:
                return 0, None
            return {"-": lambda: _check(-value), "+": lambda: value, "!": lambda: int(value == 0),
                    "~": lambda: ~value}[text](), None
        raise ArithError(f"syntax error: operand expected (error token is {text!r})")


def evaluate(text: str, scope: Scope, depth: int = 0) -> int:
    """The value of an expression whose expansions are done; ArithError or ArithUnknown."""
    if depth > MAX_DEPTH:
        raise ArithError(f"variables refer to expressions more than {MAX_DEPTH} deep (bash: expression"
                         " recursion level exceeded)")
    ev = _Evaluator(text, scope, depth)
    if not ev.tokens:
        return 0
    value = ev.expression(0)
    if ev.k < len(ev.tokens):
        raise ArithError(f"syntax error in expression (error token is {ev.tokens[ev.k][1]!r})")
    return value


_ASSIGNED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:\[[^\]]*\])?\s*(?:\+\+|--|(?:<<|>>|[-+*/%&^|])?=(?!=))"
                       r"|(?:\+\+|--)\s*([A-Za-z_][A-Za-z0-9_]*)")


def assigned_names(text: str) -> set[str]:
    """The variables an expression may assign: they are not known when its value is not."""
    return {m.group(1) or m.group(2) for m in _ASSIGNED.finditer(text)}
