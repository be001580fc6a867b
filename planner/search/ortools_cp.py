"""OR-Tools' CP-SAT module (`ortools.sat.python.cp_model`), loaded without pandas.

cp_model imports pandas when it loads, for its `*_series` helpers (variables and intervals over a
pandas Index), and pandas takes about half a second to import on two cores: half of a small
`planner solve`, for helpers the planner never calls. Where pandas is not loaded yet, cp_model is
loaded against a stand-in module under that name, whose attributes (`Index`, `Series`) are classes
nothing is an instance of: the annotations and isinstance checks that read them at load time see
no pandas object, and the planner passes none. The stand-in is in `sys.modules` only while
cp_model loads, so a later `import pandas`, anywhere, loads pandas itself; cp_model's `*_series`
helpers would then refuse a real Index, and nothing here calls them (tests/test_imports.py).
"""
from __future__ import annotations

import sys
import types


class _NoPandas(types.ModuleType):
    """A module whose every attribute is an empty class of that name, made once."""

    def __getattr__(self, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        made = type(name, (), {"__module__": "pandas (not loaded)"})
        setattr(self, name, made)
        return made


def _load_cp_model() -> types.ModuleType:
    if "pandas" in sys.modules or "ortools.sat.python.cp_model" in sys.modules:
        from ortools.sat.python import cp_model
        return cp_model
    stand_in = _NoPandas("pandas")
    sys.modules["pandas"] = stand_in
    try:
        from ortools.sat.python import cp_model
    finally:
        if sys.modules.get("pandas") is stand_in:
            del sys.modules["pandas"]
    return cp_model


cp_model = _load_cp_model()
