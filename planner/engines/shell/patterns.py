"""Pattern matching (GNU Bash Reference Manual, 3.5.8.1 "Pattern Matching"): `*`, `?` and
bracket expressions, with quoted characters matching themselves. Used by `case`, `[[ == ]]` and
`${X#pattern}`-style expansions. Matching a whole string places the fixed pieces between stars
leftmost, one search each, so its cost stays linear in the string for a fixed pattern.
"""
from __future__ import annotations

import re

_CLASSES = {"alnum": r"0-9A-Za-z", "alpha": "A-Za-z", "blank": r" \t", "digit": "0-9", "lower": "a-z",
            "upper": "A-Z", "space": r"\s", "xdigit": "0-9A-Fa-f", "punct": r"!-/:-@\[-`{-~", "word": r"\w"}
_LONG_TEXT = 20_000
"""Prefix and suffix removal on longer text with several stars is not attempted (its regular
expression could backtrack for a long time); the value is then not known."""


class TooCostly(Exception):
    pass


def _bracket(text: str, i: int) -> tuple[str, int] | None:
    """The regex class for the bracket expression at text[i] == '[', and the index after it;
    None when it is not closed (the '[' then matches itself)."""
    j = i + 1
    negate = j < len(text) and text[j] in "!^"
    j += negate
    out = []
    first = True
    while j < len(text):
        c = text[j]
        if c == "]" and not first:
            return "[" + ("^" if negate else "") + "".join(out) + "]", j + 1
        first = False
        if c == "[" and text.startswith("[:", j):
            end = text.find(":]", j + 2)
            if end > 0 and text[j + 2:end] in _CLASSES:
                out.append(_CLASSES[text[j + 2:end]])
                j = end + 2
                continue
        if c == "\\" and j + 1 < len(text):
            j += 1
            c = text[j]
        elif c == "-" and out and j + 1 < len(text) and text[j + 1] != "]":
            out.append("-")
            j += 1
            continue
        out.append(re.escape(c))
        j += 1
    return None


def pieces(segments: list[tuple[str, bool]]) -> list[str]:
    """The pattern as regex pieces: '*' for a star, else a regex matching one character."""
    text = "".join(re.sub(r"([][*?\\])", r"\\\1", t) if quoted else t for t, quoted in segments)
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):  # a quoted or escaped character matches itself
            out.append(re.escape(text[i + 1]))
            i += 2
        elif c == "*":
            if not out or out[-1] != "*":
                out.append("*")
            i += 1
        elif c == "?":
            out.append("(?s:.)")
            i += 1
        elif c == "[" and (found := _bracket(text, i)):
            out.append(found[0])
            i = found[1]
        else:
            out.append(re.escape(c))
            i += 1
    return out


def _segments(ps: list[str]) -> list[list[str]]:
    groups: list[list[str]] = [[]]
    for p in ps:
        if p == "*":
            groups.append([])
        else:
            groups[-1].append(p)
    return groups


def matches(ps: list[str], text: str) -> bool:
    """Whether the whole text matches the pattern."""
    groups = _segments(ps)
    if len(groups) == 1:
        return re.fullmatch("".join(groups[0]), text, re.S) is not None
    first, middle, last = groups[0], groups[1:-1], groups[-1]
    m = re.match("".join(first), text, re.S)
    if not m:
        return False
    pos = m.end()
    for group in middle:
        if not group:
            continue
        m = re.compile("".join(group), re.S).search(text, pos)
        if not m:
            return False
        pos = m.end()
    tail_start = len(text) - len(last)
    return tail_start >= pos and re.fullmatch("".join(last), text[tail_start:], re.S) is not None


def _regex(ps: list[str], longest: bool) -> str:
    return "".join((".*" if longest else ".*?") if p == "*" else p for p in ps)


def remove(ps: list[str], text: str, op: str) -> str:
    """`${X#p}` `${X##p}` (shortest, longest prefix) and `${X%p}` `${X%%p}` (suffixes) removed."""
    if ps.count("*") > 1 and len(text) > _LONG_TEXT:
        raise TooCostly
    longest = len(op) == 2
    if op.startswith("#"):
        m = re.match(_regex(ps, longest), text, re.S)
        return text[m.end():] if m else text
    m = re.match(_regex(ps[::-1], longest), text[::-1], re.S)  # a suffix is a prefix of the reversed text
    return text[:len(text) - m.end()] if m else text


def replace(ps: list[str], text: str, replacement: str, op: str) -> str:
    """`${X/p/r}` (first match), `${X//p/r}` (every match), `${X/#p/r}` (prefix), `${X/%p/r}` (suffix)."""
    if not ps:
        return text
    if ps.count("*") > 1 and len(text) > _LONG_TEXT:
        raise TooCostly
    rx = _regex(ps, True)
    rx = {"/#": "^(?:" + rx + ")", "/%": "(?:" + rx + r")\Z"}.get(op, rx)
    return re.sub(rx, lambda m: replacement, text, count=0 if op == "//" else 1, flags=re.S)
