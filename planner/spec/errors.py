"""Errors that reach the user as one paragraph and exit code 2 (bad input)."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class InputError(Exception):
    """Bad input: names the file, the field and what would be valid.

    The CLI prints `str(error)` on stderr and exits 2, never a traceback.
    """

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None):
        self.file = file
        self.field = field
        self.detail = message
        where = ": ".join(p for p in (file, field) if p)
        super().__init__(f"{where}: {message}" if where else message)

    def located(self, file: str | None = None, field_prefix: str | None = None) -> "InputError":
        """The same error placed in a file and under a parent field."""
        field = self.field
        if field_prefix:
            field = f"{field_prefix}.{field}" if field else field_prefix
        return InputError(self.detail, file=file or self.file, field=field)


SHOWN_CHARACTERS = 60
"""Longest echo of an input value in a message; longer ones are cut and their length given."""


def shown(value: object, limit: int = SHOWN_CHARACTERS) -> str:
    """`value` as repr() writes it, cut to `limit` characters: an error never echoes a whole long
    input back (a 10 MB `gpu:` string would flood the terminal twice)."""
    quoted = repr(value)
    if len(quoted) <= limit:
        return quoted
    size = len(value) if isinstance(value, str) else len(quoted)
    return f"{quoted[:limit]}… ({size:,} characters)"


def did_you_mean(name: str, valid: Iterable[str], limit: int = 3) -> str:
    """' (did you mean x?)' for close matches of `name`, else ''."""
    if not isinstance(name, str) or len(name) > SHOWN_CHARACTERS:
        return ""  # no name is that long; difflib's cost grows with the length
    valid = list(valid)
    close = difflib.get_close_matches(name, valid, n=limit, cutoff=0.6)
    if not close:
        lowered = {v.lower(): v for v in valid}
        close = [lowered[v] for v in difflib.get_close_matches(name.lower(), list(lowered), n=limit, cutoff=0.5)]
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> str:
    """Message for an unknown preset/GPU/choice, with suggestions and the valid names."""
    valid = sorted(valid)
    listed = ", ".join(valid) if len(valid) <= 40 else ", ".join(valid[:40]) + ", ..."
    shown_name = shown(name)
    return f"unknown {kind} {shown_name}{did_you_mean(name, valid)}; valid: {listed}"
