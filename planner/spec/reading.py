"""The one way an input file is read: cluster.yaml, job.yaml, config.json, DeepSpeed configs and
Megatron-LM scripts all cross this boundary before anything else sees their bytes.

What crosses it is bounded, so no file can hang the planner, exhaust its memory or crash it:

- regular files only, refused by their type (os.stat) before a byte is read, then opened with
  O_NONBLOCK so that a FIFO swapped in between the check and the open cannot block the read;
- at most `MAX_FILE_BYTES`, read with that limit (a /proc file reports size 0);
- YAML (safe loading only, the C loader where PyYAML has one) and JSON nested at most
  `MAX_DEPTH` deep, with at most `MAX_VALUES` values (YAML aliases counted at every use, so a
  "billion laughs" document is refused), every number finite and every integer of at most
  `MAX_DIGITS` digits; a key given twice in one mapping is an error, as in DeepSpeed's config
  models (a silent last-one-wins would read `"stage": 3, "stage": 0` as stage 0).

Field-level bounds (GPUs, layers, bytes, rates) are the spec models' (cluster.py, job.py).
"""
from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from planner.spec.errors import SHOWN_CHARACTERS, InputError, shown

MAX_FILE_BYTES = 4 * 2**20
"""4 MiB: far beyond any cluster or job file, config.json or launch script (kilobytes each)."""
MAX_DEPTH = 64
"""Levels of nesting; the inputs use at most five (constraints.tp.values[0])."""
MAX_VALUES = 500_000
"""Scalars, lists and mappings in one document, aliases expanded."""
MAX_DIGITS = 100
"""Digits of an integer; Python refuses to read more than 4,300 (sys.get_int_max_str_digits)."""

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_regular(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def path_kind(path: str | Path, *, follow: bool = True) -> str | None:
    """'file', 'directory', 'link' (with follow=False), 'other', or None when nothing is there or
    the name cannot be looked up (too long, a null byte, a loop of links): never raises, where
    pathlib's exists() and is_dir() raise for a name longer than the file system allows."""
    try:
        mode = os.stat(path).st_mode if follow else os.lstat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISLNK(mode):
        return "link"
    return "file" if stat.S_ISREG(mode) else "directory" if stat.S_ISDIR(mode) else "other"


def read_text(path: str | Path, *, file: str | None = None, field: str | None = None,
              wanted: str = "file") -> str:
    """The UTF-8 text of the regular file `path`. Errors name `file` (default: the path itself) and
    `field`, and the path when `file` is another one; `wanted` says what to give instead."""
    path = Path(path)
    where = "" if file is None or file == str(path) else f"{path}: "

    def refuse(message: str) -> InputError:
        return InputError(where + message, file=file or str(path), field=field)

    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise refuse("file not found") from None
    except OSError as error:
        raise refuse(f"cannot read: {error.strerror or error}") from None
    except ValueError:  # a null byte in the name
        raise refuse("not a valid file name") from None
    kind = _not_regular(info.st_mode)
    if kind:
        raise refuse(f"is {kind}; give a {wanted}")
    if info.st_size > MAX_FILE_BYTES:
        raise refuse(f"is {info.st_size:,} bytes, more than the {MAX_FILE_BYTES:,} (4 MiB) an input file may have")
    try:
        data = _read_bounded(path)
    except OSError as error:
        raise refuse(f"cannot read: {error.strerror or error}") from None
    if data is None:
        raise refuse(f"is larger than the {MAX_FILE_BYTES:,} bytes (4 MiB) an input file may have")
    if isinstance(data, str):
        raise refuse(f"is {data}; give a {wanted}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise refuse("not a text file (cannot decode as UTF-8)") from None


def _read_bounded(path: Path) -> bytes | str | None:
    """The file's bytes; None when it holds more than MAX_FILE_BYTES; the kind of file in words
    when what was opened is no longer a regular file."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        kind = _not_regular(os.fstat(fd).st_mode)
        if kind:
            return kind
        chunks, size = [], 0
        while size <= MAX_FILE_BYTES:
            chunk = os.read(fd, min(2**20, MAX_FILE_BYTES + 1 - size))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
        return None
    finally:
        os.close(fd)


class _Huge:
    """An integer literal of more than MAX_DIGITS digits, kept as text until `check_values` names
    its field."""

    def __init__(self, text: str):
        self.digits = sum(ch.isdigit() for ch in text)


_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):
    """Safe YAML (C-accelerated where available) with duplicate keys refused and integers of
    more than MAX_DIGITS digits kept for `check_values` to refuse by field."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *defaults` merges another mapping; its keys may be overridden
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:
                    continue  # an unhashable key: the base constructor reports it
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {shown(key)}", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node):
        text = self.construct_scalar(node)
        if sum(ch.isdigit() for ch in text) > MAX_DIGITS:
            return _Huge(text)
        return super().construct_yaml_int(node)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def parse_yaml(text: str, *, file: str, field: str | None = None) -> Any:
    """A YAML document, checked by `check_values`."""
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no Python objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        kind = "YAML error" if problem.startswith("duplicate key") else "YAML syntax error"
        if "nesting depth" in problem:  # libyaml stops at 1,000 levels
            problem = f"nested more than {MAX_DEPTH} levels deep"
        raise InputError(f"{kind} at {where}{problem}", file=file, field=field) from None
    except RecursionError:
        raise InputError(f"nested more than {MAX_DEPTH} levels deep", file=file, field=field) from None
    check_values(data, file=file, field=field)
    return data


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _unique_object(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _json_int(text: str) -> int | _Huge:
    return _Huge(text) if len(text) > MAX_DIGITS else int(text)


def parse_json(text: str, *, file: str, field: str | None = None) -> Any:
    """A JSON document, checked by `check_values` (NaN and Infinity are not JSON: RFC 8259 §6)."""
    try:
        data = json.loads(text, object_pairs_hook=_unique_object, parse_int=_json_int)
    except json.JSONDecodeError as error:
        raise InputError(f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}",
                         file=file, field=field) from None
    except _DuplicateKey as error:
        raise InputError(f"not valid JSON: duplicate key {shown(error.key)} (each key may appear once"
                         " in an object)", file=file, field=field) from None
    except RecursionError:
        raise InputError(f"nested more than {MAX_DEPTH} levels deep", file=file, field=field) from None
    check_values(data, file=file, field=field)
    return data


def check_values(data: Any, *, file: str, field: str | None = None) -> None:
    """Every value of a loaded document: nesting within MAX_DEPTH, at most MAX_VALUES values,
    finite numbers, integers of at most MAX_DIGITS digits. Iterative, so depth costs no stack."""
    stack: list[tuple[Any, str, int]] = [(data, field or "", 0)]
    seen = 0
    while stack:
        value, where, depth = stack.pop()
        seen += 1
        problem = _problem(value, depth, seen)
        if problem:
            raise InputError(problem, file=file, field=where or None)
        if isinstance(value, dict):
            for key, item in value.items():
                problem = _key_problem(key)
                if problem:
                    raise InputError(problem, file=file, field=where or None)
                name = key if isinstance(key, str) and len(key) <= SHOWN_CHARACTERS else shown(key)
                stack.append((item, f"{where}.{name}" if where else name, depth + 1))
        elif isinstance(value, (list, tuple)):
            stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value))


def _problem(value: Any, depth: int, seen: int) -> str | None:
    if seen > MAX_VALUES:
        return f"more than {MAX_VALUES:,} values (YAML aliases count at every use)"
    if depth > MAX_DEPTH:
        return f"nested more than {MAX_DEPTH} levels deep"
    if isinstance(value, _Huge):
        return f"an integer of {value.digits:,} digits; a number here has at most {MAX_DIGITS}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{_float_text(value)} is not a finite number"
    return None


def _key_problem(key: Any) -> str | None:
    if isinstance(key, _Huge) or (isinstance(key, float) and not math.isfinite(key)):
        return "a key must be a name, not a number out of range"
    if not isinstance(key, (str, int, float, bool)) and key is not None:
        return f"a key must be a name, got a {type(key).__name__}"
    return None


def _float_text(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def read_yaml_file(path: str | Path, *, file: str | None = None, field: str | None = None) -> Any:
    """The checked YAML document in `path`."""
    text = read_text(path, file=file, field=field, wanted="YAML file")
    return parse_yaml(text, file=file or str(path), field=field)


def read_json_file(path: str | Path, *, file: str | None = None, field: str | None = None) -> Any:
    """The checked JSON document in `path`."""
    text = read_text(path, file=file, field=field, wanted="JSON file")
    return parse_json(text, file=file or str(path), field=field)
