"""Where a model comes from: a preset name, a config.json on disk, or inline config.json fields.

A job's `model` is a preset name, a path to a config.json (or a folder holding one), a mapping of
config.json fields, or a mapping `{config: PATH, read_as: TYPE}` that reads a config.json file as
a known family's (hf_config.py: `read_as` for configs no reader covers by their model_type or
architectures). A field mapping may hold `read_as` among its fields.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from planner.model.architecture import Architecture
from planner.model.hf_config import READ_AS, architecture_from_config
from planner.model.presets import get_preset, list_presets
from planner.spec.errors import InputError, unknown_name
from planner.spec.reading import path_kind, read_json_file


def load_architecture(value: str | dict, base_dir: Path | None = None,
                      file: str | None = None) -> Architecture:
    """A preset name, a path to a config.json (or a checkpoint folder holding one, relative to
    `base_dir`), or an inline mapping of config.json fields (or of `config` and `read_as`).
    `file` is the job file, for errors."""
    if isinstance(value, dict) and "config" in value:
        return _noted(_file_read_as(value, base_dir, file), file)
    if isinstance(value, dict):
        try:
            return _noted(architecture_from_config(value, name=str(value.get("model_type", "custom"))), file)
        except InputError as error:
            raise error.located(file=file, field_prefix="model") from None
    if value in list_presets():
        return get_preset(value)
    path, cfg = read_config_file(value, base_dir, file)
    try:
        arch = architecture_from_config(cfg, name=path.parent.name or path.stem)
    except InputError as error:
        raise error.located(file=str(path)) from None
    return _noted(arch, str(path))


def _noted(arch: Architecture, where: str | None) -> Architecture:
    """The architecture, after a warning (one line on stderr from the commands) when the config
    describes more than the planner models: a multimodal model's encoders."""
    if "encoders" in arch.extra:
        warnings.warn(f"{where or 'model'}: {arch.extra['encoders']}", stacklevel=3)
    return arch


def _file_read_as(value: dict, base_dir: Path | None, file: str | None) -> Architecture:
    """`{config: PATH, read_as: TYPE}`: the file's fields read as family TYPE."""
    extra = sorted(set(value) - {"config", READ_AS})
    if extra:
        raise InputError(f"a mapping with 'config' takes only 'config' and '{READ_AS}', got {extra}",
                         file=file, field="model")
    if not isinstance(value["config"], str):
        raise InputError(f"must be a path to a config.json, got {value['config']!r}", file=file,
                         field="model.config")
    path, cfg = read_config_file(value["config"], base_dir, file, field="model.config")
    if value.get(READ_AS) is not None:
        cfg = {**cfg, READ_AS: value[READ_AS]}
    try:
        return architecture_from_config(cfg, name=path.parent.name or path.stem)
    except InputError as error:
        if error.field == READ_AS:
            raise error.located(file=file, field_prefix="model") from None
        raise error.located(file=str(path)) from None


def read_config_file(value: str, base_dir: Path | None = None, file: str | None = None,
                     field: str = "model") -> tuple[Path, dict]:
    """The path of a config.json (given as a file or a folder holding one, relative to
    `base_dir`) and its fields. Raises InputError naming `file` and `field` when it is missing
    or not a JSON object."""
    path = Path(base_dir or ".") / value
    if path_kind(path) == "directory":
        path = path / "config.json"
    if path_kind(path) != "file":
        message = unknown_name("model preset", value, list_presets()) + "; nor is it" \
            if field == "model" else "not"
        raise InputError(f"{message} a config.json file ({path})", file=file, field=field)
    try:
        cfg = read_json_file(path)
    except InputError as error:
        where = f"{error.field}: " if error.field else ""
        raise InputError(f"cannot read {path} as JSON: {where}{error.detail}", file=file, field=field) from None
    if not isinstance(cfg, dict):
        raise InputError(f"{path} holds no JSON object", file=file, field=field)
    return path, cfg
