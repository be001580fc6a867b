"""Unit strings parsed once, at the input boundary: sizes, rates and counts.

GB means 10^9 bytes and GiB 2^30 (IEC 80000-13). Network rates are bits per second
(`400Gbps`); `GB/s` is bytes per second. Everything returned is in bytes, bytes/s or plain counts.
"""
from __future__ import annotations

import math
import re

from planner.spec.errors import shown

_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50,
}
_BIT_RATE_UNITS = {"bps": 1, "kbps": 10**3, "mbps": 10**6, "gbps": 10**9, "tbps": 10**12}
_BYTE_RATE_UNITS = {"b/s": 1, "kb/s": 10**3, "mb/s": 10**6, "gb/s": 10**9, "tb/s": 10**12}
_COUNT_SUFFIXES = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}

_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)"
_PATTERN = re.compile(rf"^\s*{_NUMBER}\s*([A-Za-z/ ]*?)\s*$")


def _finite(number: float, what: str) -> float:
    """`number` as a finite float (ints too large for a float are refused as well)."""
    try:
        number = float(number)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number, got {shown(str(number))}")
    return number


def _split(text: str, what: str) -> tuple[float, str]:
    m = _PATTERN.match(text.replace("_", "").replace(",", "")) if len(text) <= 100 else None
    if not m:
        raise ValueError(f"cannot read {shown(text)} as {what}")
    return _finite(float(m.group(1)), f"the number in {shown(text)}"), m.group(2).replace(" ", "").lower()


def parse_size(value: str | int | float) -> int:
    """Bytes from `80GiB`, `2TB`, `512MiB` or a plain number of bytes."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number or a string like '80GiB'")
    if isinstance(value, (int, float)):
        number, unit = _finite(value, "a size"), ""
    else:
        number, unit = _split(value, "a size (like 80GiB or 2TB)")
    if unit not in _SIZE_UNITS:
        raise ValueError(f"unknown size unit {shown(unit)}; use B, KB, MB, GB, TB (10^3 steps) or KiB, MiB, GiB, TiB (2^10 steps)")
    return int(round(_finite(number * _SIZE_UNITS[unit], "a size")))


def parse_rate(value: str | int | float) -> float:
    """Bytes per second from `400Gbps` (bits), `50GB/s` (bytes) or a plain number of bits/s."""
    if isinstance(value, bool):
        raise ValueError("a rate must be a number or a string like '400Gbps'")
    if isinstance(value, (int, float)):
        return _finite(value, "a rate") / 8
    number, unit = _split(value, "a rate (like 400Gbps or 50GB/s)")
    if unit in _BIT_RATE_UNITS:
        return _finite(number * _BIT_RATE_UNITS[unit] / 8, "a rate")
    if unit in _BYTE_RATE_UNITS:
        return _finite(number * _BYTE_RATE_UNITS[unit], "a rate")
    raise ValueError(f"unknown rate unit {shown(unit)}; use bps, Mbps, Gbps, Tbps (bits) or MB/s, GB/s, TB/s (bytes)")


def parse_count(value: str | int | float) -> float:
    """A count from `16M`, `1.5T`, `1e12` or a plain number (tokens, parameters)."""
    if isinstance(value, bool):
        raise ValueError("a count must be a number or a string like '16M'")
    if isinstance(value, (int, float)):
        return _finite(value, "a count")
    number, unit = _split(value, "a count (like 16M or 1.5T)")
    unit = unit.removesuffix("tokens").removesuffix("token")
    if unit not in _COUNT_SUFFIXES:
        raise ValueError(f"unknown count suffix {shown(unit)}; use K, M, B (or G), T")
    return _finite(number * _COUNT_SUFFIXES[unit], "a count")


def gib(n_bytes: float) -> float:
    return n_bytes / 2**30


def gb(n_bytes: float) -> float:
    return n_bytes / 10**9
