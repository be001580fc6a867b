"""Shared fixtures: paths to the examples and helpers to write small input files."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import settings

# `HYPOTHESIS_PROFILE=deep` runs the property tests of tests/test_hostile.py with 1,000 examples
# per command, in a fixed order (about a quarter of an hour on 2 cores); the default run keeps to
# hypothesis' defaults and 50 per command there.
settings.register_profile("deep", max_examples=1000, deadline=None, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

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
