"""Terminal output for people: units on every number, memory bars, the tightest stage stands out,
and nothing breaks on a pipe, without colour or without UTF-8."""
import os
import subprocess
import sys
from pathlib import Path

from conftest import EXAMPLES
from rich.console import Console

from planner.cost.evaluate import evaluate
from planner.cost.inputs import load_inputs, parse_plan_spec
from planner.report import tables

PLANNER = Path(sys.executable).parent / "planner"
CLUSTER = EXAMPLES / "clusters" / "h100-8nodes-ib.yaml"
JOB = EXAMPLES / "jobs" / "llama3-70b-pretrain.yaml"
PLAN = "tp=8,pp=4,zero=1,mbs=1"


def planner(*args, **env):
    return subprocess.run([str(PLANNER), *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **env})


def evaluation(plan=PLAN):
    inputs = load_inputs(CLUSTER, JOB, "megatron")  # the engine of a tp8 pp4 plan
    return evaluate(parse_plan_spec(plan, inputs), inputs.workload, inputs.cluster)


def rendered(renderable) -> str:
    console = Console(width=200, no_color=True)
    with console.capture() as capture:
        console.print(renderable)
    return capture.get()


def test_tightest_term_is_the_largest_term_of_the_most_loaded_stage():
    ev = evaluation()
    stage, term = tables.tightest_term(ev)
    assert stage == ev.peak_stage.stage
    assert getattr(ev.peak_stage.memory, term) == max(getattr(ev.peak_stage.memory, t) for t in tables.MEMORY_TERMS)


def test_stage_table_shows_headroom_of_every_stage():
    ev = evaluation()
    text = rendered(tables.estimate_view(ev, "title", all_stages=True))
    assert "headroom" in text and "GiB (2^30 bytes)" in text
    free = (ev.capacity - ev.stages[-1].memory.total) / 2**30
    assert f"{free:,.2f}" in text
    assert "share of step" in text and "100.0%" in text


def test_piped_estimate_has_no_escape_codes_and_units():
    result = planner("estimate", CLUSTER, JOB, "--plan", PLAN, "--stages")
    assert result.returncode in (0, 1), result.stderr
    assert "\x1b[" not in result.stdout
    assert "GiB" in result.stdout and " s" in result.stdout and "tokens/s" in result.stdout


def test_output_that_cannot_encode_unicode_still_prints():
    result = planner("estimate", CLUSTER, JOB, "--plan", PLAN, PYTHONIOENCODING="ascii")
    assert result.returncode in (0, 1)
    assert "Traceback" not in result.stdout + result.stderr and "GiB" in result.stdout


def test_memory_bar_falls_back_to_ascii(monkeypatch):
    class AsciiStream:
        encoding = "ascii"
    monkeypatch.setattr(sys, "stdout", AsciiStream())
    assert set(tables._bar(1, 2).plain) <= {"#", "."}


def test_a_plan_names_its_precision_unless_bf16():
    """A job in fp8 may also be planned in bf16 (search.space.default_precisions): the rows of
    one table can differ in precision, so each says its own."""
    assert tables.describe_layout(evaluation()) == "tp8 pp4 dp2"
    assert tables.describe_layout(evaluation(PLAN + ",precision=fp8")) == "tp8 pp4 dp2 · fp8"
