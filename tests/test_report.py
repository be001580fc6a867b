"""`planner report`: one self-contained page, PNGs beside it, exit codes, nothing written on bad input."""
import json
import re

import pytest
from conftest import EXAMPLES
from typer.testing import CliRunner

from planner.cli.app import app
from planner.report.charts import Point, pareto_front

runner = CliRunner()
CLUSTER = EXAMPLES / "clusters" / "h100-1node.yaml"
JOB = EXAMPLES / "jobs" / "llama3-8b-full-finetune.yaml"
TOP = 3
CHART_IDS = ["memory-plans", "memory-stages", "step-time", "memory-vs-step-time"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    """One report for the tests of this module (a search takes seconds): its folder and --json document."""
    out = tmp_path_factory.mktemp("report")
    result = run("report", CLUSTER, JOB, "--out", out, "--top", TOP, "--json")
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


@pytest.fixture(scope="module")
def report_dir(report_run):
    return report_run[0]


def test_report_writes_the_page_and_one_png_per_chart(report_dir):
    assert sorted(p.name for p in report_dir.iterdir()) == sorted(["report.html", *(f"{c}.png" for c in CHART_IDS)])
    for chart in CHART_IDS:
        assert (report_dir / f"{chart}.png").read_bytes().startswith(PNG_MAGIC)


def test_every_chart_is_inline_svg_with_its_id(report_dir):
    page = (report_dir / "report.html").read_text()
    for chart in CHART_IDS:
        assert f'<svg id="{chart}"' in page


def test_the_page_needs_no_network_and_no_scripts(report_dir):
    page = (report_dir / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page)
    assert "<script" not in page and "<link" not in page and "@import" not in page


def test_the_page_has_unique_ids(report_dir):
    ids = re.findall(r'\bid="([^"]+)"', (report_dir / "report.html").read_text())
    assert len(ids) == len(set(ids))


def test_the_page_shows_the_plans_their_time_and_the_inputs(report_dir):
    page = (report_dir / "report.html").read_text()
    for heading in ("Best plans", "Per-GPU memory by term", "Step time", "Every plan considered", "Inputs"):
        assert f"<h2>{heading}</h2>" in page
    assert "GiB (2<sup>30</sup> bytes)" in page
    assert re.search(r"exposed (TP|CP|EP|PP|DP) comm", page)  # the step-time legend names its comm parts
    assert "model: llama3-8b" in page and "gpus_per_node: 8" in page  # the inputs as given


def test_json_is_the_solve_document_plus_the_files(report_run):
    out, doc = report_run
    assert doc["status"] in ("optimal", "feasible") and len(doc["plans"]) == TOP
    assert doc["plans"][0]["fits"] and "explanation" in doc
    assert sorted(doc["files"]) == sorted(str(out / name) for name in ["report.html", *(f"{c}.png" for c in CHART_IDS)])


def test_no_plan_fits_writes_the_page_with_the_reason_and_exits_1(tmp_path, write_yaml):
    job = write_yaml("job.yaml", {"model": "llama3-8b", "training": "full", "seq_len": 4096, "global_batch": 8,
                                  "constraints": {"tp": 1, "pp": 1, "zero": 0}})
    out = tmp_path / "r"
    result = run("report", CLUSTER, job, "--out", out)
    assert result.exit_code == 1
    assert f"wrote {out / 'report.html'}" in result.stdout
    page = (out / "report.html").read_text()
    assert "No plan fits" in page and '<svg id="memory-vs-step-time"' in page
    assert (out / "memory-vs-step-time.png").exists()


@pytest.mark.parametrize("args, fragment", [
    ((CLUSTER, "missing.yaml"), "missing.yaml: file not found"),
    ((CLUSTER, JOB, "--objective", "speed"), "--objective: unknown value 'speed'"),
    ((CLUSTER, JOB, "--solver", "greedy"), "--solver: unknown value 'greedy'"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, args, fragment):
    out = tmp_path / "r"
    result = run("report", *args, "--out", out)
    assert result.exit_code == 2
    assert fragment in result.stderr and "Traceback" not in result.output
    assert not out.exists()


def test_bad_field_in_a_file_exits_2_naming_it(tmp_path, write_yaml):
    job = write_yaml("job.yaml", {"model": "llama3-8b", "seq_len": 4096, "global_batch": 8,
                                  "constraints": {"zero": [7]}})
    out = tmp_path / "r"
    result = run("report", CLUSTER, job, "--out", out)
    assert result.exit_code == 2
    assert f"{job}: constraints.zero: 7 is not valid" in result.stderr
    assert not out.exists()


def test_out_that_is_a_file_exits_2(tmp_path):
    out = tmp_path / "taken"
    out.write_text("keep me")
    result = run("report", CLUSTER, JOB, "--out", out)
    assert result.exit_code == 2 and "--out" in result.stderr
    assert out.read_text() == "keep me"


def test_missing_out_is_a_usage_error():
    result = run("report", CLUSTER, JOB)
    assert result.exit_code == 2 and "--out" in result.output


def test_report_has_help():
    result = run("report", "--help")
    assert result.exit_code == 0 and "--out" in result.stdout and "--json" in result.stdout


def test_pareto_front_keeps_fitting_plans_no_other_beats_on_both_axes():
    points = [Point(10, 50, True), Point(12, 40, True), Point(11, 60, True),  # 11 s is beaten by 10 s
              Point(8, 90, False),  # faster, but does not fit
              Point(20, 40, True),  # as small as 12 s, but slower
              Point(30, 20, True)]
    assert pareto_front(points) == [0, 1, 5]


def test_pareto_front_of_nothing_that_fits_is_empty():
    assert pareto_front([Point(1, 100, False)]) == []
