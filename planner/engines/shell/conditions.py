"""`test`/`[` (GNU Bash Reference Manual, 4.1 "test" and 6.4 "Bash Conditional Expressions") and
`[[ ]]` (3.2.5.2), in three values: True, False, or None when what they test is not known.
File tests are never known: the script's files are not looked at.
"""
from __future__ import annotations

import re

from planner.engines.shell import patterns
from planner.engines.shell.expand import Expander
from planner.engines.shell.syntax import Cond, Word

Truth = bool | None
_INTEGER = re.compile(r"\s*[-+]?[0-9]+\s*")
_STRING_UNARY = {"-z": lambda s: s == "", "-n": lambda s: s != ""}
_FILE_UNARY = frozenset("-a -b -c -d -e -f -g -h -k -p -r -s -t -u -w -x -G -L -N -O -S".split())
_COMPARE = {"-eq": lambda a, b: a == b, "-ne": lambda a, b: a != b, "-lt": lambda a, b: a < b,
            "-le": lambda a, b: a <= b, "-gt": lambda a, b: a > b, "-ge": lambda a, b: a >= b}
_STRING_BINARY = {"=": lambda a, b: a == b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
                  "<": lambda a, b: a < b, ">": lambda a, b: a > b}
_TEST_BINARY = frozenset(_COMPARE) | frozenset(_STRING_BINARY) | {"-nt", "-ot", "-ef"}


class TestError(Exception):
    """`test` would print an error and return 2 (which `if` reads as false)."""


def _and(a: Truth, b: Truth) -> Truth:
    return False if a is False or b is False else (None if a is None or b is None else True)


def _or(a: Truth, b: Truth) -> Truth:
    return True if a is True or b is True else (None if a is None or b is None else False)


def _not(a: Truth) -> Truth:
    return None if a is None else not a


class Conditions(Expander):
    # -- test and [ -------------------------------------------------------------------------
    def test(self, args: list[tuple[str, frozenset[str]]], unknown: set[str]) -> Truth:
        """`test ARGS`; names not known are added to `unknown`. Raises TestError."""
        words = [a for a, _ in args]
        n = len(words)
        if n == 0:
            return False
        if n == 1:
            return self._string(args[0], unknown)
        if n == 2:
            if words[0] == "!":
                return _not(self._string(args[1], unknown))
            if words[0] in _STRING_UNARY or words[0] in _FILE_UNARY or words[0] == "-v":
                return self._unary(words[0], args[1], unknown)
            raise TestError(f"{words[0]}: unary operator expected")
        if n == 3:
            if words[1] in _TEST_BINARY:
                return self._binary(words[1], args[0], args[2], unknown, pattern=False)
            if words[0] == "!":
                return _not(self.test(args[1:], unknown))
            if words[0] == "(" and words[2] == ")":
                return self._string(args[1], unknown)
            if words[1] in ("-a", "-o"):
                a, b = self._string(args[0], unknown), self._string(args[2], unknown)
                return _and(a, b) if words[1] == "-a" else _or(a, b)
            raise TestError(f"{words[1]}: binary operator expected")
        if n == 4:
            if words[0] == "!":
                return _not(self.test(args[1:], unknown))
            if words[0] == "(" and words[3] == ")":
                return self.test(args[1:3], unknown)
        value, k = self._test_or(args, 0, unknown)
        if k != n:
            raise TestError("too many arguments")
        return value

    def _test_or(self, args, k, unknown) -> tuple[Truth, int]:
        value, k = self._test_and(args, k, unknown)
        while k < len(args) and args[k][0] == "-o":
            right, k = self._test_and(args, k + 1, unknown)
            value = _or(value, right)
        return value, k

    def _test_and(self, args, k, unknown) -> tuple[Truth, int]:
        value, k = self._test_primary(args, k, unknown)
        while k < len(args) and args[k][0] == "-a":
            right, k = self._test_primary(args, k + 1, unknown)
            value = _and(value, right)
        return value, k

    def _test_primary(self, args, k, unknown) -> tuple[Truth, int]:
        negations = 0
        while k < len(args) and args[k][0] == "!":
            negations, k = negations + 1, k + 1
        if k >= len(args):
            raise TestError("argument expected")
        word = args[k][0]
        if word == "(":
            self.budget.enter()
            value, k = self._test_or(args, k + 1, unknown)
            self.budget.leave()
            if k >= len(args) or args[k][0] != ")":
                raise TestError("')' expected")
            k += 1
        elif k + 2 < len(args) and args[k + 1][0] in _TEST_BINARY:
            value, k = self._binary(args[k + 1][0], args[k], args[k + 2], unknown, pattern=False), k + 3
        elif (word in _STRING_UNARY or word in _FILE_UNARY or word == "-v") and k + 1 < len(args):
            value, k = self._unary(word, args[k + 1], unknown), k + 2
        else:
            value, k = self._string(args[k], unknown), k + 1
        for _ in range(negations):
            value = _not(value)
        return value, k

    @staticmethod
    def _string(arg: tuple[str, frozenset[str]], unknown: set[str]) -> Truth:
        if arg[1]:
            unknown |= arg[1]
            return None
        return arg[0] != ""

    def _unary(self, op: str, arg: tuple[str, frozenset[str]], unknown: set[str]) -> Truth:
        text, names = arg
        if names:
            unknown |= names
            return None
        if op in _STRING_UNARY:
            return _STRING_UNARY[op](text)
        if op == "-v":
            how, _ = self.base(text)
            if how in ("absent", "unknown"):
                unknown.add(text)
                return None
            return how == "set"
        unknown.add(f"{op} {text}")  # the file system is not looked at
        return None

    def _binary(self, op: str, left: tuple[str, frozenset[str]], right: tuple[str, frozenset[str]],
                unknown: set[str], pattern: bool) -> Truth:
        if left[1] or right[1]:
            unknown |= left[1] | right[1]
            return None
        a, b = left[0], right[0]
        if op in _COMPARE:
            if not _INTEGER.fullmatch(a) or not _INTEGER.fullmatch(b):
                raise TestError(f"{a if not _INTEGER.fullmatch(a) else b}: integer expression expected")
            return _COMPARE[op](int(a), int(b))
        if op in ("-nt", "-ot", "-ef"):
            unknown.add(f"{a} {op} {b}")
            return None
        return _STRING_BINARY[op](a, b)

    # -- [[ ]] ------------------------------------------------------------------------------
    def cond(self, expr: Cond, unknown: set[str]) -> Truth:
        op = expr.op
        if op in ("and", "or"):
            left = self.cond(expr.args[0], unknown)
            if left is (op == "or"):  # && stops at false, || at true (manual 3.2.5.2)
                return left
            right = self.cond(expr.args[1], unknown)
            return _and(left, right) if op == "and" else _or(left, right)
        if op == "not":
            return _not(self.cond(expr.args[0], unknown))
        if op == "unreadable":
            unknown.add("[[ ]] not read")
            self.note("[[", f"line {self.line}: a [[ ]] expression (regular expressions with brackets ...) is not"
                            " read; its result is not known")
            return None
        words: list[Word] = [a for a in expr.args if isinstance(a, Word)]
        if op == "word":
            return self._string(self.expand_string(words[0]), unknown)
        if len(words) == 1:
            return self._unary(op, self.expand_string(words[0]), unknown)
        left = self.expand_string(words[0])
        if op in _COMPARE:
            return self._arith_compare(op, left, self.expand_string(words[1]), unknown)
        if expr.pattern:
            segments, names = self.expand_pattern(words[1])
            if left[1] or names:
                unknown |= left[1] | names
                return None
            found = patterns.matches(patterns.pieces(segments), left[0])
            return found if op != "!=" else not found
        right = self.expand_string(words[1])
        if op == "=~":
            if left[1] or right[1]:
                unknown |= left[1] | right[1]
                return None
            try:
                return re.search(right[0], left[0]) is not None
            except re.error:
                unknown.add(f"=~ {right[0]}")
                return None
        return self._binary(op, left, right, unknown, pattern=False)

    def _arith_compare(self, op, left, right, unknown) -> Truth:
        """In [[ ]], the operands of -eq and the like are arithmetic expressions."""
        values = []
        for text, names in (left, right):
            if names:
                unknown |= names
                return None
            value, names = self.arith(text)
            if value is None:
                unknown |= names
                return None
            values.append(value)
        return _COMPARE[op](*values)
