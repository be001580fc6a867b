"""What users write: cluster.yaml and job.yaml as validated pydantic models."""
from planner.spec.cluster import ClusterSpec, CustomGPU, InterNode, IntraNode
from planner.spec.job import Constraint, JobSpec, LoraSpec, TrainableSpec
from planner.spec.load import load_cluster, load_job, read_yaml

__all__ = [
    "ClusterSpec", "CustomGPU", "InterNode", "IntraNode",
    "Constraint", "JobSpec", "LoraSpec", "TrainableSpec",
    "load_cluster", "load_job", "read_yaml",
]
