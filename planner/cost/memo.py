"""Memoized model terms, for the span of one search.

A search evaluates thousands of plans that differ in a few keys (ZeRO stage, offload, optimizer,
the data-parallel size ...), while some terms read only a few of them: a stage's compute seconds
do not change with the ZeRO stage. Such a term is looked up under a key holding every input it
reads: the frozen inputs themselves, the plan with only the keys it provably never reads reset
(`dataclasses.replace`), so that a key added to the plan later is part of the key until someone
shows the term ignores it.

The caches live for one `session()` (a search builds its table inside one) and are emptied when
the outermost ends: outside a session every term is computed afresh, so a single evaluation, or
a change to the calibration constants between searches (the tests patch them), never reads a
stale value. tests/test_memo.py holds memoized and fresh values equal on random plans of every
engine.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

LIMIT = 1 << 16
"""Entries a cache keeps before it starts over (a bound on memory for long searches)."""

_depth = 0
_stores: list[dict] = []


def new_cache() -> dict:
    """A cache that lives for a session."""
    store: dict = {}
    _stores.append(store)
    return store


def lookup(store: dict, key: Hashable, compute: Callable[[], T]) -> T:
    """`compute()`, once per distinct `key` within a session (every time outside one)."""
    if not _depth:
        return compute()
    try:
        return store[key]
    except KeyError:
        pass
    if len(store) >= LIMIT:
        store.clear()
    value = store[key] = compute()
    return value


@contextmanager
def session() -> Iterator[None]:
    """Caches on until the outermost session ends, then emptied."""
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if not _depth:
            for store in _stores:
                store.clear()
