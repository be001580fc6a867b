"""What users write: cluster.yaml and job.yaml as validated pydantic models.

The names load with their module on first use (PEP 562), so a command that only needs
`planner.spec.errors` (the catalog commands) does not build the pydantic models."""
from __future__ import annotations

import importlib

_HOMES = {
    "ClusterSpec": "cluster", "CustomGPU": "cluster", "InterNode": "cluster", "IntraNode": "cluster",
    "Constraint": "job", "JobSpec": "job", "LoraSpec": "job", "TrainableSpec": "job",
    "load_cluster": "load", "load_job": "load", "read_yaml": "load",
}

__all__ = list(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
