"""Frozen dataclasses that hash once.

A search looks the same architecture, workload and cluster up in its caches hundreds of
thousands of times (planner/cost/memo.py, the lru_caches of the per-layer terms), and a frozen
dataclass's generated `__hash__` rebuilds the tuple of every field, nested dataclasses included,
on each call. `hash_once` keeps the first result on the instance: the fields cannot change, so
neither can their hash. Equality is untouched (the stored value is not a field), and the value
is left out of pickles, since string hashes differ between processes.
"""
from __future__ import annotations

from dataclasses import fields
from functools import cached_property
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


_FIELDS: dict[type, tuple[frozenset[str], bool]] = {}


def evolve(obj: T, **changes) -> T:
    """`dataclasses.replace` for a frozen dataclass without `__post_init__`: the same object,
    built without running the generated `__init__` (a third of the cost of the search's memo
    keys, which build a plan with a few keys reset for every lookup)."""
    cls = obj.__class__
    try:
        names, plain = _FIELDS[cls]
    except KeyError:
        names, plain = _FIELDS[cls] = _describe(cls)
    if not names.issuperset(changes):
        raise TypeError(f"{cls.__name__} has no field {', '.join(sorted(changes.keys() - names))}")
    new = _new(cls)
    if plain:
        state = obj.__dict__.copy()
        state.pop(_SLOT, None)
        state.update(changes)
    else:
        state = {name: changes[name] if name in changes else obj.__dict__[name] for name in names}
    _set(new, "__dict__", state)
    return new


_new = object.__new__
_set = object.__setattr__


def _describe(cls: type) -> tuple[frozenset[str], bool]:
    """(its field names, whether an instance holds nothing but its fields)."""
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} checks its fields in __post_init__: use dataclasses.replace")
    names = frozenset(f.name for f in fields(cls))  # type: ignore[arg-type]
    # Where the instance holds nothing but its fields (no cached properties), its state is
    # copied whole.
    plain = not any(isinstance(v, cached_property) for k in cls.__mro__ for v in vars(k).values())
    return names, plain
