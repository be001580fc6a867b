"""Searches in worker processes (planner/search/parallel.py) give the answers of the serial search,
byte for byte, and fail as it does: bad input stays bad input, a bug is never an answer, and no
worker outlives the block that started it."""
import json
import os
import pickle
import subprocess
import sys
import time

import pytest
from conftest import EXAMPLES, ROOT
from typer.testing import CliRunner

from hardware import get_accelerator
from planner.cli.app import app
from planner.cli.searching import SHARED_PLANS
from planner.cost.inputs import load_inputs, load_job_inputs
from planner.engines.profiles import engine_workload
from planner.search import parallel, table
from planner.search.capacity import cluster_for, plan_capacities
from planner.search.parallel import Workers, tell
from planner.search.space import candidate_plans
from planner.search.stacks import engine_candidates
from planner.search.table import build_table
from planner.spec.errors import InputError

runner = CliRunner()
JOB = EXAMPLES / "jobs" / "llama3-8b-full-finetune.yaml"
CLUSTER = EXAMPLES / "clusters" / "h100-1node.yaml"
TIMING = ("solve_seconds", "timing")


def _cli(*args) -> tuple[int, str]:
    """Exit code and stdout of the command in a fresh interpreter (the start method a user gets)."""
    done = subprocess.run([sys.executable, "-m", "planner.cli.app", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return done.returncode, done.stdout


def _untimed(stdout: str) -> dict:
    doc = json.loads(stdout)
    return {k: v for k, v in doc.items() if k not in TIMING}


def test_capacity_rows_are_the_serial_ones_byte_for_byte():
    args = ["capacity", str(JOB), "--gpu", "h100", "--gpu", "l40s", "--max-gpus", "8", "--price", "2", "--json"]
    serial = runner.invoke(app, [*args, "--jobs", "1"])
    assert serial.exit_code == 0, serial.output
    for jobs in ("2", "3"):
        assert runner.invoke(app, [*args, "--jobs", jobs]).stdout == serial.stdout


def test_solve_under_auto_is_the_serial_answer_in_a_fresh_process():
    code, serial = _cli("solve", CLUSTER, JOB, "--json", "--jobs", "1")
    again, parallel_out = _cli("solve", CLUSTER, JOB, "--json", "--jobs", "4")
    assert code == again == 0
    assert _untimed(parallel_out) == _untimed(serial)
    assert len(json.loads(serial)["engines"]) == 4  # every engine searched, in the same order
    doc = json.loads(parallel_out)
    assert doc["solve_seconds"] == pytest.approx(sum(doc["timing"].values()), abs=1e-9)


README_JOB = [EXAMPLES / "clusters" / "h100-8nodes-ib.yaml", EXAMPLES / "jobs" / "llama3-70b-pretrain.yaml"]


def test_a_large_engine_built_in_shares_is_the_serial_answer_in_a_fresh_process():
    """Megatron-Core's 5,337 candidates of the README example are built in shares of its layouts, one
    per worker, each reading the costs the others solved (bounded.Part, in shared memory where
    the workers are forked): the serial answer, to the plans, times and reasons."""
    assert len(engine_candidates("megatron", *_job_of(*README_JOB)).plans) >= SHARED_PLANS
    code, serial = _cli("solve", *README_JOB, "--json", "--jobs", "1")
    assert code == 0
    for jobs in ("2", "3"):
        again, shared = _cli("solve", *README_JOB, "--json", "--jobs", jobs)
        assert again == 0 and _untimed(shared) == _untimed(serial)


def test_shares_without_shared_memory_and_with_nothing_fitting_answer_as_the_serial_search():
    """In this process (the solver loaded: a pool of forkserver workers, whose shares cannot share
    memory) and for a job that fits nowhere (the shares' table, then the whole one explained)."""
    for args in (["solve", *map(str, README_JOB), "--framework", "megatron", "--json"],
                 ["solve", str(EXAMPLES / "clusters" / "rtx4090-pcie-box.yaml"),
                  str(EXAMPLES / "jobs" / "gpt3-175b-pretrain.yaml"), "--framework", "megatron", "--json"]):
        serial = runner.invoke(app, [*args, "--jobs", "1"])
        shared = runner.invoke(app, [*args, "--jobs", "2"])
        assert serial.exit_code == shared.exit_code and serial.exit_code in (0, 1)
        assert _untimed(shared.stdout) == _untimed(serial.stdout)


def _job_of(cluster, job):
    inputs = load_inputs(cluster, job)
    return inputs.workload, inputs.cluster, inputs.defaults, inputs.job.constraints


def test_solve_with_nothing_fitting_explains_as_the_serial_search():
    args = ["solve", str(EXAMPLES / "clusters" / "rtx4090-pcie-box.yaml"),
            str(EXAMPLES / "jobs" / "llama3.1-405b-full-finetune.yaml"), "--json"]
    serial = runner.invoke(app, [*args, "--jobs", "1"])
    several = runner.invoke(app, [*args, "--jobs", "2"])
    assert serial.exit_code == several.exit_code == 1
    assert _untimed(several.stdout) == _untimed(serial.stdout) and json.loads(serial.stdout)["explanation"]
    doc = json.loads(several.stdout)
    assert doc["timing"]["explain"] > 0 and doc["solve_seconds"] == pytest.approx(sum(doc["timing"].values()))


def test_plan_capacities_in_workers_equal_the_serial_rows():
    job = load_job_inputs(JOB)
    workloads = [engine_workload(job.workload, e) for e in ("deepspeed", "fsdp2")]
    nodes = [cluster_for(get_accelerator(g), None, 1.0) for g in ("a100_sxm_80gb", "mi300x")]

    def rows(jobs):
        return [[(r.gpu, r.gpus, r.nodes, r.best) for r in engine] for engine in
                plan_capacities(workloads, job.defaults, {}, nodes, max_gpus=16, jobs=jobs)]
    serial = rows(1)
    assert all(any(best is not None for *_, best in engine) for engine in serial)
    assert rows(2) == serial  # Evaluations, compared field by field after their round trip


@pytest.mark.parametrize("objective, screen", [("step-time", True), ("memory", True), ("step-time", False)])
def test_a_table_built_in_workers_is_the_serial_table(monkeypatch, objective, screen):
    # 8B on a PCIe box of L40S under DeepSpeed: of the 176 offload plans, 28 are skipped because
    # the same layout fits without offload and 27 make layouts: both sides of the deferral.
    inputs = load_inputs(EXAMPLES / "clusters" / "l40s-pcie-box.yaml", JOB, "deepspeed")
    wl, cluster = engine_workload(inputs.workload, "deepspeed"), inputs.cluster
    plans = list(candidate_plans(wl, cluster, inputs.defaults, {}))
    serial = build_table(plans, wl, cluster, objective, screen=screen)
    monkeypatch.setattr(table, "PARALLEL_PLANS", 1)
    monkeypatch.setattr(table, "TASK_PLANS", 7)  # many tasks, groups split across the workers
    done: list[int] = []
    assert build_table(plans, wl, cluster, objective, done.append, screen, jobs=2) == serial
    assert done == sorted(done) and done[-1] == len(plans)


@pytest.mark.parametrize("framework", ["megatron", "auto"])
def test_tables_in_workers_give_the_serial_answer(monkeypatch, framework):
    # Every table is "large": one engine's, or each engine's in turn under auto, by the workers.
    # The whole table: a step-time search by CP-SAT builds only its cheapest part, in one process
    # per engine (planner/search/bounded.py); the memory objective builds all of it.
    monkeypatch.setattr(table, "PARALLEL_PLANS", 1)
    built: list[int] = []
    real = table._build_in_workers
    monkeypatch.setattr(table, "_build_in_workers", lambda plans, *rest: built.append(len(plans)) or real(plans, *rest))
    args = ["solve", str(CLUSTER), str(JOB), "--framework", framework, "--objective", "memory", "--json"]
    serial = runner.invoke(app, [*args, "--jobs", "1"])
    assert serial.exit_code == 0 and not built, serial.output
    several = runner.invoke(app, [*args, "--jobs", "2"])
    assert several.exit_code == 0, several.output
    assert _untimed(several.stdout) == _untimed(serial.stdout)
    assert len(built) == (1 if framework == "megatron" else 4)


@pytest.mark.parametrize("value", ["0", "-1", "257"])
@pytest.mark.parametrize("command", ["solve", "capacity", "report"])
def test_bad_jobs_is_bad_input(command, value, tmp_path):
    args = {"solve": [CLUSTER, JOB], "capacity": [JOB, "--gpu", "h100"],
            "report": [CLUSTER, JOB, "--out", tmp_path / "page"]}[command]
    result = runner.invoke(app, [command, *map(str, args), "--jobs", value])
    assert result.exit_code == 2 and "--jobs" in result.stderr
    assert not (tmp_path / "page").exists()


# ---- the pool itself, with tasks of this module (they pickle by name)


def _square(x: int) -> int:
    tell(("squaring", x))
    return x * x


def _bad_input(x: int) -> int:
    raise InputError(f"{x} is not valid", file="job.yaml", field="global_batch")


def _bug(x: int) -> int:
    return x // 0


def _sleep(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


_SHARED_OBJECTS = """
from planner.search.parallel import Workers, _context

def where(x):
    return id(x), x

shared, other = [1, 2, 3], [4, 5]
with Workers(2, shared=(shared,)) as workers:
    workers.submit("shared", where, shared)
    workers.submit("other", where, other)
    got = dict(workers.results())
print(_context().get_start_method(), got["shared"] == (id(shared), shared), got["other"][0] != id(other),
      got["other"][1] == other)
"""


def test_forked_workers_get_shared_arguments_as_the_parents_objects():
    """A fresh process forks its workers (no solver loaded yet): an argument named in `shared`
    arrives as the object the worker inherited, the parent's very one; any other as a copy."""
    out = subprocess.run([sys.executable, "-c", _SHARED_OBJECTS], capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout.split()
    if out[0] != "fork":
        pytest.skip(f"workers start by {out[0]} here: every argument is a copy")
    assert out[1:] == ["True", "True", "True"]


@pytest.mark.parametrize("jobs", [1, 2])
def test_results_come_by_key_with_the_tasks_messages(jobs):
    told = []
    with Workers(jobs, on_message=told.append) as workers:
        for x in range(6):
            workers.submit(x, _square, x)
        got = {}
        for key, value in workers.results():
            got[key] = value
            if key == 0:
                workers.submit("late", _square, 7)  # submitted while the others run
    assert got == {**{x: x * x for x in range(6)}, "late": 49}
    assert sorted(told) == sorted(("squaring", x) for x in (*range(6), 7))


@pytest.mark.parametrize("jobs", [1, 2])
def test_bad_input_in_a_worker_is_the_same_input_error(jobs):
    with pytest.raises(InputError) as caught, Workers(jobs) as workers:
        workers.submit(0, _bad_input, 3)
        list(workers.results())
    assert (caught.value.file, caught.value.field) == ("job.yaml", "global_batch")
    assert str(caught.value) == "job.yaml: global_batch: 3 is not valid"


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_bug_in_a_worker_is_raised_never_returned(jobs):
    with pytest.raises(ZeroDivisionError), Workers(jobs) as workers:
        workers.submit(0, _square, 2)
        workers.submit(1, _bug, 2)
        list(workers.results())


def test_leaving_the_block_ends_every_worker():
    with pytest.raises(KeyboardInterrupt), Workers(2) as workers:
        processes = list(workers._pool._pool)
        workers.submit(0, _sleep, 60)
        raise KeyboardInterrupt  # Ctrl-C while a task runs
    assert processes and not any(p.is_alive() for p in processes)


def test_search_results_pickle_whole():
    """What workers send back: a search's result, its plans' full evaluations included."""
    from planner.cli.searching import _search_engine
    from planner.cost.inputs import load_inputs

    inputs = load_inputs(CLUSTER, JOB, None)
    args = ("fsdp2", inputs.workload, inputs.cluster, inputs.defaults, inputs.job.constraints, "step-time", 3,
            "cp-sat", None)
    outcome = _search_engine(*args, whole_table=True)  # a report's: every layout comes back
    back = pickle.loads(pickle.dumps(outcome))
    assert outcome.result.plans and back.result == outcome.result and back.workload == outcome.workload
    assert outcome.rows and [row.plan for row in back.rows] == [row.plan for row in outcome.rows]
    # A solve's that found plans: only they come back, the layouts are read nowhere else.
    solved = _search_engine(*args)
    assert solved.result.plans == outcome.result.plans and solved.rows == ()


def test_usable_cpus_is_the_affinity_mask():
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert parallel.usable_cpus() == expected == parallel.worker_count(None)
    assert parallel.worker_count(3) == 3
