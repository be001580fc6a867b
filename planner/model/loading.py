"""Where a model comes from: a preset name, a config.json on disk, or inline config.json fields."""
from __future__ import annotations

import json
from pathlib import Path

from planner.model.architecture import Architecture
from planner.model.hf_config import architecture_from_config
from planner.model.presets import get_preset, list_presets
from planner.spec.errors import InputError, unknown_name


def load_architecture(value: str | dict, base_dir: Path | None = None,
                      file: str | None = None) -> Architecture:
    """A preset name, a path to a config.json (or a checkpoint folder holding one, relative to
    `base_dir`), or an inline mapping of config.json fields. `file` is the job file, for errors."""
    if isinstance(value, dict):
        try:
            return architecture_from_config(value, name=str(value.get("model_type", "custom")))
        except InputError as error:
            raise error.located(file=file, field_prefix="model") from None
    if value in list_presets():
        return get_preset(value)
    path = Path(base_dir or ".") / value
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        message = unknown_name("model preset", value, list_presets())
        raise InputError(f"{message}; nor is it a config.json file ({path})", file=file, field="model")
    try:
        cfg = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"cannot read {path} as JSON: {error}", file=file, field="model") from None
    if not isinstance(cfg, dict):
        raise InputError(f"{path} holds no JSON object", file=file, field="model")
    try:
        return architecture_from_config(cfg, name=path.parent.name or path.stem)
    except InputError as error:
        raise error.located(file=str(path)) from None
