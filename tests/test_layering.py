"""Dependencies point one way: spec → model, hardware → cost → engines → search → report → cli.

Read from the source (ast), so a function-level import counts as much as a top-level one. A
layer may import its own package and any layer below it, never one above.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {
    "planner.spec": 0,
    "hardware": 1,
    "planner.model": 1,
    "planner.cost": 2,
    "planner.engines": 3,
    "planner.search": 4,
    "planner.report": 5,
    "planner.cli": 6,
}


def layer_of(module: str) -> str | None:
    for name in sorted(LAYERS, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return name
    return None


def modules() -> list[tuple[str, Path]]:
    found = []
    for package in ("planner", "hardware"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found.append((".".join(p for p in parts if p != "__init__"), path))
    return found


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] in ("planner", "hardware")}


def test_every_module_belongs_to_a_layer():
    loose = [m for m, _ in modules() if m not in ("planner", "hardware") and layer_of(m) is None]
    assert loose == [], f"modules outside the layers: {loose}"


@pytest.mark.parametrize("module,path", modules(), ids=[m for m, _ in modules()])
def test_imports_point_down(module, path):
    own = layer_of(module)
    if own is None:
        return
    upward = sorted(n for n in imports(path)
                    if (target := layer_of(n)) is not None and LAYERS[target] > LAYERS[own])
    assert upward == [], f"{module} ({own}) imports from a layer above it: {upward}"


def test_models_never_import_search_report_or_cli():
    for module, path in modules():
        if layer_of(module) in ("planner.model", "planner.cost", "hardware"):
            assert not {layer_of(n) for n in imports(path)} & {"planner.search", "planner.report", "planner.cli"}, module


def test_spec_never_imports_cost():
    for module, path in modules():
        if layer_of(module) == "planner.spec":
            assert not any(layer_of(n) == "planner.cost" for n in imports(path)), module


def test_no_command_imports_the_application():
    for module, path in modules():
        if module.startswith("planner.cli.") and module != "planner.cli.app":
            assert not any(n.startswith("planner.cli.app") for n in imports(path)), module
