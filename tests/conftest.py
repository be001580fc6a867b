"""Shared fixtures: paths to the examples and helpers to write small input files."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture
def write_yaml(tmp_path):
    """Write a mapping (or raw text) as a YAML file under tmp_path and return its path."""
    def write(name: str, content) -> Path:
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
        return path
    return write
