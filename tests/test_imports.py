"""Each command imports what it uses: the solver (OR-Tools, without the pandas its `cp_model` module
would import: planner/search/ortools_cp.py) and matplotlib only where a command solves or draws. Each command runs in a fresh
interpreter, which reports the modules it loaded."""
import json
import subprocess
import sys

import pytest
from conftest import EXAMPLES, ROOT

CLUSTER, JOB = EXAMPLES / "clusters" / "h100-1node.yaml", EXAMPLES / "jobs" / "llama3-8b-full-finetune.yaml"
HEAVY = ("ortools", "pandas", "matplotlib", "planner.search.cpsat", "multiprocessing.pool")

RUN = """
import json, os, runpy, sys
out, sys.argv = sys.argv[2], ["planner", *json.loads(sys.argv[1])]
command, leave = os.getpid(), os._exit

def report(code):  # the command leaves by os._exit (cli/app.py _leave): what it loaded by then
    if os.getpid() == command:  # not a forked worker's own exit
        with open(out, "w") as f:
            json.dump({"code": code, "modules": sorted(sys.modules)}, f)
    leave(code)

os._exit = report
runpy.run_module("planner.cli.app", run_name="__main__")
"""


def loaded(tmp_path, *args, watch: tuple[str, ...] = HEAVY) -> set[str]:
    out = tmp_path / "modules.json"
    subprocess.run([sys.executable, "-c", RUN, json.dumps([str(a) for a in args]), str(out)], cwd=ROOT,
                   capture_output=True, timeout=120)
    result = json.loads(out.read_text())
    assert result["code"] in (0, 1)  # the command ran (1: a plan that does not fit), not bad input
    return {name for name in watch if name in result["modules"]}


@pytest.mark.parametrize("args", [
    ["--help"],
    ["params", "llama3-8b"],
    ["gpus"],
    ["models"],
    ["infer", "llama3-8b", "--gpu", "h100"],
    ["estimate", CLUSTER, JOB, "--plan", "tp=1,pp=1,zero=3,recompute=full,mbs=1"],
    ["check", CLUSTER, JOB, "--deepspeed", EXAMPLES / "deepspeed" / "zero3-hf-auto.json"],
])
def test_commands_that_neither_solve_nor_draw_load_neither(tmp_path, args):
    assert loaded(tmp_path, *args) == set()


@pytest.mark.parametrize("args", [["--help"], ["params", "llama3-8b"], ["gpus"], ["models"]])
def test_catalog_commands_load_neither_the_cost_model_nor_the_search(tmp_path, args):
    assert loaded(tmp_path, *args, watch=("planner.search", "planner.cost.evaluate", "planner.engines")) == set()


@pytest.mark.parametrize("args", [
    ["estimate", CLUSTER, JOB, "--plan", "tp=1,pp=1,zero=3,recompute=full,mbs=1"],
    ["check", CLUSTER, EXAMPLES / "jobs" / "llama3-8b-pretrain.yaml",
     "--megatron", EXAMPLES / "megatron" / "llama3-8b-pretrain.sh"],
])
def test_evaluating_one_plan_loads_neither_numpy_nor_the_plan_space(tmp_path, args):
    """A plan that fits is evaluated alone: the candidate space, the table and numpy load only
    when `check` looks for the nearest plans that fit."""
    watch = ("numpy", "planner.search.space", "planner.search.layouts", "planner.engines.emit")
    assert loaded(tmp_path, *args, watch=watch) == set()


def test_solve_loads_the_solver_but_not_matplotlib(tmp_path):
    modules = loaded(tmp_path, "solve", CLUSTER, JOB, "--json", "--jobs", "1", watch=(*HEAVY, "rich"))
    assert {"ortools", "planner.search.cpsat"} <= modules and "matplotlib" not in modules
    assert "rich" not in modules  # the terminal's views and progress bar, for a terminal only
    assert "pandas" not in modules  # cp_model loaded against a stand-in (ortools_cp.py)
    assert "multiprocessing.pool" not in modules  # one process: no pool


LATE_PANDAS = """
import sys
from planner.search.ortools_cp import cp_model
assert "pandas" not in sys.modules
import pandas
assert pandas.Series([1, 2, 3]).sum() == 6 and hasattr(pandas, "DataFrame")
model = cp_model.CpModel()
x = model.new_int_var(0, 10, "x")
model.maximize(x)
solver = cp_model.CpSolver()
assert solver.solve(model) == cp_model.OPTIMAL and solver.value(x) == 10
"""


def test_pandas_imported_after_the_solver_is_pandas_itself():
    """The stand-in is gone once cp_model is loaded: a later import loads pandas, and CP-SAT solves."""
    subprocess.run([sys.executable, "-c", LATE_PANDAS], cwd=ROOT, check=True, capture_output=True, timeout=120)


def test_pandas_loaded_first_is_the_one_cp_model_uses():
    code = ("import pandas, sys\nfrom planner.search.ortools_cp import cp_model\n"
            "assert cp_model.pd is pandas and sys.modules['pandas'] is pandas")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, timeout=120)


def test_solve_in_worker_processes_leaves_the_solver_to_the_parent(tmp_path):
    """The engines' tables are built in forked workers and handed back where some plan fits;
    the parent loads the solver once, its workers forked by then, and searches each (a process
    that has run CP-SAT is not forked: planner/search/parallel.py), rather than each worker
    loading it for its own engine."""
    for cluster, job in ((CLUSTER, JOB), (EXAMPLES / "clusters" / "h100-8nodes-ib.yaml",
                                          EXAMPLES / "jobs" / "llama3-70b-pretrain.yaml")):  # Megatron-Core in shares
        modules = loaded(tmp_path, "solve", cluster, job, "--json", "--jobs", "2")
        assert "multiprocessing.pool" in modules and "planner.search.cpsat" in modules


def test_report_draws_with_matplotlib(tmp_path):
    assert "matplotlib" in loaded(tmp_path, "report", CLUSTER, JOB, "--out", tmp_path / "page", "--json")
