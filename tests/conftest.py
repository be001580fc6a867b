"""Shared fixtures: paths to the examples, helpers to write small input files, and a strategy of
small random jobs on every engine."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import settings
from hypothesis import strategies as st

from planner.cost.cluster import build_cluster
from planner.cost.workload import JobDefaults, Workload
from planner.engines.profiles import PROFILES, engine_workload
from planner.model import load_architecture
from planner.spec.cluster import ClusterSpec

# The property tests draw the same examples on every run ("fixed"), so that a commit is green or red
# whatever machine runs it. `HYPOTHESIS_PROFILE=deep` runs those of tests/test_hostile.py with 1,000
# examples per command, also in a fixed order (about a quarter of an hour on 2 cores); the default
# run keeps to hypothesis' defaults and 50 per command there. `HYPOTHESIS_PROFILE=explore` draws
# afresh on each run, to look for new counterexamples: add what it finds as an `@example`.
settings.register_profile("fixed", derandomize=True)
settings.register_profile("deep", max_examples=1000, deadline=None, derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fixed"))

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


B200_NODE = "gpu: b200_hgx\ngpus_per_node: 8\nnodes: 1\n"
B200_NODES = ("gpu: b200_hgx\ngpus_per_node: 8\nnodes: 4\n"
              "inter_node: {nic_gbps: 400, nics_per_node: 8, kind: infiniband}\n")
"""Blackwell clusters (block-scaled fp8 and fp4 tensor cores), as cluster.yaml text."""


def inputs_from_text(tmp_path: Path, cluster: str, job: str, framework: str = "megatron"):
    """The inputs of a cluster and a job given as YAML text (written under tmp_path)."""
    from planner.cost.inputs import load_inputs

    (tmp_path / "cluster.yaml").write_text(cluster)
    (tmp_path / "job.yaml").write_text(job)
    return load_inputs(tmp_path / "cluster.yaml", tmp_path / "job.yaml", framework)


def space_gpu(job: dict) -> str:
    """The GPU of the engines' round-trip spaces: an H100, or a B200 for the jobs in mxfp8 or nvfp4,
    which only block-scaling tensor cores run."""
    return "b200_hgx" if job.get("precision") in ("mxfp8", "nvfp4") else "h100_sxm_80gb"


@pytest.fixture
def write_yaml(tmp_path):
    """Write a mapping (or raw text) as a YAML file under tmp_path and return its path."""
    def write(name: str, content) -> Path:
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
        return path
    return write


@st.composite
def small_jobs(draw, seq_lens: list[int], gpus: list[str], gpus_per_node: list[int], lora_rank: int):
    """(workload on its engine, cluster, defaults) of a small random job: an engine, a training mode
    it runs, a tiny or small model, and one node of the given GPUs."""
    engine = draw(st.sampled_from(sorted(PROFILES)))
    training = draw(st.sampled_from([t for t in ("pretrain", "full", "lora") if t in PROFILES[engine].training]))
    wl = engine_workload(Workload(arch=load_architecture(draw(st.sampled_from(["debug", "debug-moe", "qwen3-0.6b"]))),
                                  training=training, seq_len=draw(st.sampled_from(seq_lens)),
                                  global_batch=draw(st.sampled_from([8, 16])),
                                  lora_targets=("q_proj", "v_proj") if training == "lora" else ()), engine)
    defaults = JobDefaults(precision="bf16", optimizer="adamw", lora_ranks=(lora_rank if training == "lora" else 0,),
                           quant="none")
    cluster = build_cluster(ClusterSpec(gpu=draw(st.sampled_from(gpus)),
                                        gpus_per_node=draw(st.sampled_from(gpus_per_node))))
    return wl, cluster, defaults
