"""Frozen dataclasses that hash once.

A search looks the same architecture, workload and cluster up in its caches hundreds of
thousands of times (planner/cost/memo.py, the lru_caches of the per-layer terms), and a frozen
dataclass's generated `__hash__` rebuilds the tuple of every field, nested dataclasses included,
on each call. `hash_once` keeps the first result on the instance: the fields cannot change, so
neither can their hash. Equality is untouched (the stored value is not a field), and the value
is left out of pickles, since string hashes differ between processes.
"""
from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")

_SLOT = "_hash_once"


def hash_once(cls: type[T]) -> type[T]:
    """Class decorator for a frozen dataclass (apply it above `@dataclass(frozen=True)`)."""
    fields_hash = cls.__hash__
    if fields_hash is None:
        raise TypeError(f"{cls.__name__} is not hashable")

    def __hash__(self) -> int:
        try:
            return self.__dict__[_SLOT]
        except KeyError:
            value = fields_hash(self)
            object.__setattr__(self, _SLOT, value)
            return value

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != _SLOT}

    cls.__hash__ = __hash__  # type: ignore[method-assign]
    cls.__getstate__ = __getstate__  # type: ignore[attr-defined]
    return cls
