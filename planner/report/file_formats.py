"""docs/file-formats.md from the pydantic models of planner/spec: every field, its type, default and
meaning, taken from the field's docstring, so the page cannot drift from what is validated.

`docs/gen_file_formats.py` writes the page; tests/test_file_formats.py checks the committed copy.
"""
from __future__ import annotations

import ast
import inspect
import textwrap
import types
import typing
from collections.abc import Iterator

import annotated_types
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from planner.model.architecture import MAX_EXPERTS, MAX_HIDDEN, MAX_LAYERS, MAX_PARAMS, MAX_VOCAB
from planner.spec import (
    ClusterSpec,
    Constraint,
    CustomGPU,
    InterNode,
    IntraNode,
    JobSpec,
    LoraSpec,
    TrainableSpec,
)
from planner.spec.reading import MAX_DEPTH, MAX_DIGITS, MAX_FILE_BYTES, MAX_VALUES

# (file, top-level model, nested models in the order they are introduced)
FILES = (
    ("cluster.yaml", ClusterSpec, (InterNode, IntraNode, CustomGPU)),
    ("job.yaml", JobSpec, (LoraSpec, TrainableSpec, Constraint)),
)

HEADER = f"""# File formats

The two inputs of every command, field by field. This page is generated from the models that
validate the files (`planner/spec/`) by `python docs/gen_file_formats.py`; a test fails when it
is out of date. Unknown fields are errors (with the valid names), so a typo never passes silently.

Sizes accept units: `80GiB` (GiB = 2^30 bytes), `2TB` (TB = 10^12 bytes), or a plain number of
bytes. Rates: `400Gbps` is bits per second, `3.35TB/s` bytes per second. Counts: `1.5e12`, `15T`, `2B`.

Every input file (these two, a config.json, a DeepSpeed config, a Megatron-LM script) must be a
regular file of at most {MAX_FILE_BYTES // 2**20} MiB; YAML and JSON nest at most {MAX_DEPTH} levels deep, hold at
most {MAX_VALUES:,} values (YAML aliases counted at every use) and no key twice in one mapping.
Numbers are finite (no `.inf` or `.nan`), integers have at most {MAX_DIGITS} digits, and an integer
field takes neither `true` nor `1.5`. Each field's bounds are in its type below: far beyond any
machine or run, they keep what the models compute within the solver's 64-bit integers. A model
(a preset, a config.json or inline fields) has at most {MAX_LAYERS:,} layers, a hidden size of
{MAX_HIDDEN:,}, {MAX_VOCAB:,} tokens of vocabulary, {MAX_EXPERTS:,} experts and 10^{len(str(MAX_PARAMS)) - 1}
parameters; its key/value heads divide its heads and its top-k is within its experts.
"""


def file_formats_markdown() -> str:
    """The whole page."""
    parts = [HEADER]
    for file_name, model, nested in FILES:
        parts.append(f"## `{file_name}`\n\n{_doc(model)}\n\n{_field_table(model)}")
        for sub in nested:
            parts.append(f"### `{sub.__name__}`\n\n{_doc(sub)}\n\n{_field_table(sub)}")
    return "\n\n".join(part.rstrip("\n") for part in parts) + "\n"


def _doc(model: type[BaseModel]) -> str:
    return " ".join(inspect.getdoc(model).split())


def _field_table(model: type[BaseModel]) -> str:
    docs = field_docstrings(model)
    lines = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        kind = type_text(field.annotation, field.metadata)
        lines.append(f"| `{name}` | {kind} | {_default_text(field)} | {_cell(docs.get(name, ''))} |")
    return "\n".join(lines)


def field_docstrings(model: type[BaseModel]) -> dict[str, str]:
    """The string literal under each annotated field in the class body (the torchtitan habit of
    documenting a field where it is defined), by field name."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(model)))
    body = tree.body[0].body
    docs = {}
    for statement, following in zip(body, body[1:]):
        if (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            docs[statement.target.id] = " ".join(following.value.value.split())
    return docs


def type_text(annotation, metadata=()) -> str:
    """A type as a reader would write it: `int > 0`, `` `a` \\| `b` ``, `list of str`, a link to a section."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_text(args[0], (*args[1:], *metadata))
    if origin in (typing.Union, types.UnionType):
        shown = " or ".join(type_text(a, metadata) for a in args if a is not type(None))
        return shown + (" (optional)" if type(None) in args else "")
    bounds = " and ".join(text for text in map(_bound_text, metadata) if text)
    return f"{_bare_type_text(annotation)} {bounds}" if bounds else _bare_type_text(annotation)


def _bare_type_text(annotation) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (list, tuple):
        return f"list of {type_text(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {type_text(args[0])} to {type_text(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[`{annotation.__name__}`](#{annotation.__name__.lower()})"
    if annotation is typing.Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _bound_text(constraint) -> str:
    for kind, attribute, symbol in ((annotated_types.Gt, "gt", ">"), (annotated_types.Ge, "ge", "≥"),
                                    (annotated_types.Lt, "lt", "<"), (annotated_types.Le, "le", "≤")):
        if isinstance(constraint, kind):
            return f"{symbol} {_number_text(getattr(constraint, attribute))}"
    return ""


def _number_text(value: float) -> str:
    """Integers exactly, with thousands separators (a bound of 2^20 reads 1,048,576); other
    numbers as %g."""
    if isinstance(value, int) or (float(value).is_integer() and abs(value) < 1e7):
        return f"{int(value):,}"
    return f"{value:g}"


def _default_text(field) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if value is None or value is PydanticUndefined:
        return "—"
    if value == {}:
        return "none"
    if isinstance(value, list):
        return "`[" + ", ".join(map(str, value)) + "]`"
    return f"`{value}`"


def _cell(text: str) -> str:
    # A `|` inside a table cell would end the cell.
    return text.replace("|", "\\|")


def changed_lines(committed: str, generated: str) -> Iterator[str]:
    """The first differing lines, for a readable test failure."""
    for number, (a, b) in enumerate(zip(committed.splitlines(), generated.splitlines()), 1):
        if a != b:
            yield f"line {number}: committed {a!r}, generated {b!r}"
