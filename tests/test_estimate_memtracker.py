"""The MemTracker measurements of Hugging Face training steps (validation/memory/data/) reached the way
a user reaches them: a job file with `framework: fsdp2` and `planner estimate --plan`, its JSON
total (less the runtime term, which the CPU tools do not have) within the same ±5 % of the measured
peak as tests/test_memory_validation.py holds the memory model to."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from planner.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "validation" / "memory" / "data"
HF_RUNS = [p for p in sorted(DATA.glob("*.json")) if json.loads(p.read_text())["planner"]["framework"] == "hf"]
TOTAL_TOLERANCE = 0.05  # validation/memory/compare.py TOTAL_TOLERANCE


def job_and_plan(planner: dict) -> tuple[dict, str]:
    """The job file and --plan spec of a measured configuration, with framework: fsdp2."""
    job = {"model": planner["model"], "training": planner["training"], "seq_len": planner["seq_len"],
           "global_batch": planner["mbs"] * planner["dp"], "precision": planner["precision"],
           "optimizer": planner["optimizer"], "framework": "fsdp2"}
    if planner.get("lora"):
        job["lora"] = planner["lora"]
    if planner.get("partial"):
        job["trainable"] = {k: v for k, v in planner["partial"].items() if v is not None}
    spec = (f"zero={planner['zero']},recompute={planner['recompute']},mbs={planner['mbs']},"
            f"offload={planner['offload']}")
    return job, spec


def test_every_hugging_face_measurement_is_covered():
    assert len(HF_RUNS) >= 15


@pytest.mark.parametrize("path", HF_RUNS, ids=[p.stem for p in HF_RUNS])
def test_estimate_with_framework_fsdp2_matches_the_measured_peak(path, tmp_path):
    doc = json.loads(path.read_text())
    job, spec = job_and_plan(doc["planner"])
    cluster = {"gpu": "h100_sxm_80gb", "gpus_per_node": doc["planner"]["dp"], "nodes": 1}
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(cluster))
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    result = CliRunner().invoke(app, ["estimate", str(tmp_path / "cluster.yaml"), str(tmp_path / "job.yaml"),
                                      "--plan", spec, "--json"])
    assert result.exit_code in (0, 1), result.output
    estimate = json.loads(result.stdout)
    assert estimate["framework"] == "fsdp2"
    predicted = estimate["memory"]["total"] - estimate["memory"]["runtime"]
    measured = doc["output"]["peak"]["Total"]
    assert abs(predicted - measured) / measured <= TOTAL_TOLERANCE, (predicted, measured)
