"""Hostile and extreme input: never a traceback, never a hang, never a write outside what was asked.

Each example users hit is a regression test (exit 2 naming the file and field, and nothing
written; or the right answer where the input is legal); a hypothesis property runs arbitrary
documents and argument lists through every command in-process. Default: 50 examples per command;
HYPOTHESIS_PROFILE=deep (tests/conftest.py) runs 1,000.
"""
from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from unittest import mock

import pytest
import yaml
from conftest import EXAMPLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import planner.cli.solve as solve_command
from hardware import catalog
from hardware.catalog import DTYPES
from planner.cli.app import app
from planner.cli.options import emit_json
from planner.search.space import divisors
from planner.spec import reading, writing
from planner.spec.cluster import PEAK_DTYPES
from planner.spec.errors import InputError

runner = CliRunner()

CLUSTER = {"gpu": "h100_sxm_80gb", "gpus_per_node": 2}
JOB = {"model": "debug", "seq_len": 128, "global_batch": 4}
"""A legal pair that solves in about a second: the tiny debug preset on two GPUs."""
TINY_LLAMA = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 4, "vocab_size": 256}


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def error_of(result) -> str:
    """The error of a --json run: exit 2, no traceback, one JSON document {"error": ...}."""
    assert result.exit_code == 2, (result.exit_code, result.stdout[-500:], result.stderr[-500:])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    return json.loads(result.stdout)["error"]


def write(path: Path, content) -> Path:
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content), encoding="utf-8")
    return path


def tree(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


@pytest.fixture
def files(tmp_path):
    """(cluster, job) paths from mappings or raw text, defaulting to the legal pair."""
    def make(cluster=None, job=None) -> tuple[Path, Path]:
        return (write(tmp_path / "cluster.yaml", CLUSTER if cluster is None else cluster),
                write(tmp_path / "job.yaml", JOB if job is None else job))
    return make


# --- numbers without bounds -------------------------------------------------------------------

BAD_CLUSTERS = [
    ("nodes: " + "9" * 5000, "nodes: an integer of 5,000 digits"),
    ({**CLUSTER, "memory_reserve_gib": math.inf}, "memory_reserve_gib: inf is not a finite number"),
    ({**CLUSTER, "host_memory_gib": math.inf}, "host_memory_gib: inf is not a finite number"),
    ({"gpu": {"memory": "1e400GiB", "peak_tflops": {"bf16": 100}, "hbm_bandwidth": "1TB/s"}},
     "gpu.memory: the number in '1e400GiB' must be a finite number"),
    ({"gpu": {"memory": "80GiB", "peak_tflops": {"bf16": 100}, "hbm_bandwidth": "1e-300TB/s"}},
     "gpu.hbm_bandwidth: Input should be greater than or equal to 1000000"),
    ({"gpu": {"memory": "80GiB", "peak_tflops": {"bf16": math.nan}, "hbm_bandwidth": "1TB/s"}},
     "gpu.peak_tflops.bf16: nan is not a finite number"),
    ({"gpu": {"memory": 10**30, "peak_tflops": {"bf16": 100}, "hbm_bandwidth": "1TB/s"}},
     "gpu.memory: Input should be less than or equal to 1125899906842624"),
    ({"gpu": {"memory": "80GiB", "peak_tflops": {"bf16": -5}, "hbm_bandwidth": "1TB/s"}},
     "gpu.peak_tflops.bf16: Input should be greater than 0"),
    ({"gpu": {"memory": "80GiB", "peak_tflops": {"bf17": 100}, "hbm_bandwidth": "1TB/s"}},
     "gpu.peak_tflops.bf17"),
    ({"gpu": {"memory": "80GiB", "peak_tflops": {"fp32": 100}, "hbm_bandwidth": "1TB/s"}},
     "needs a bf16 or fp16 peak"),
    ({"gpu": "h100_sxm_80gb", "nodes": 2, "inter_node": {"nic_gbps": math.inf}},
     "inter_node.nic_gbps: inf is not a finite number"),
    ({"gpu": "h100_sxm_80gb", "nodes": 2, "inter_node": {"nic_gbps": 1e300}},
     "inter_node.nic_gbps: Input should be less than or equal to 8000000"),
    ("gpu: h100_sxm_80gb\nnodes: yes\n", "nodes: Input should be a valid integer"),
    ({"gpu": "h100_sxm_80gb", "nodes": 10**9, "inter_node": {"nic_gbps": 400}},
     "nodes: Input should be less than or equal to 131072"),
    ({"gpu": "h100_sxm_80gb", "nodes": 131072, "gpus_per_node": 1024, "inter_node": {"nic_gbps": 400}},
     "at most 1,048,576"),
    ({"gpu": "[/x] not markup"}, "unknown GPU '[/x] not markup'"),
]


@pytest.mark.parametrize("cluster, fragment", BAD_CLUSTERS, ids=range(len(BAD_CLUSTERS)))
def test_impossible_cluster_numbers_are_bad_input(files, tmp_path, cluster, fragment):
    c, j = files(cluster=cluster)
    before = tree(tmp_path)
    message = error_of(cli("solve", c, j, "--json", "--emit", "deepspeed", "--out", tmp_path / "out"))
    assert message.startswith(f"{c}: ") and fragment in message
    assert tree(tmp_path) == before


BAD_JOBS = [
    ('{"model": "debug", "seq_len": 128, "global_batch": ' + "9" * 5000 + "}",
     "global_batch: an integer of 5,000 digits"),
    ({**JOB, "constraints": {"tp": {"min": math.nan}}}, "constraints.tp.min: nan is not a finite number"),
    ({**JOB, "model": {**TINY_LLAMA, "hidden_size": 10**20}}, "model.hidden_size: must be a positive integer"),
    ({**JOB, "model": {**TINY_LLAMA, "head_dim": 0}}, "model.head_dim: must be a positive integer"),
    ({**JOB, "model": {**TINY_LLAMA, "num_key_value_heads": 3}}, "model: 3 key/value heads do not divide 4"),
    ({**JOB, "model": {**TINY_LLAMA, "model_type": "mixtral", "num_local_experts": 0, "num_experts_per_tok": 2}},
     "model: 0 routed experts, but 2 routed to per token"),
    ({**JOB, "model": {**TINY_LLAMA, "model_type": ["llama"]}}, "model.model_type: must be a name such as 'llama'"),
    ({**JOB, "model": {"model_type": "qwen3_vl", "text_config": {**TINY_LLAMA, "model_type": {"a": 1}}}},
     "model.text_config.model_type: must be a name such as 'llama', got {'a': 1}"),
    ({**JOB, "model": {**TINY_LLAMA, "tie_word_embeddings": "no"}},
     "model.tie_word_embeddings: must be true or false, got 'no'"),
    ({**JOB, "model": {"model_type": "qwen3_vl", "text_config": TINY_LLAMA, "tie_word_embeddings": "yes"}},
     "model.tie_word_embeddings: must be true or false, got 'yes'"),
    ({**JOB, "model": {**TINY_LLAMA, "read_as": ["llama"]}}, "model.read_as: unknown model type \"['llama']\""),
    ({**JOB, "model": {**TINY_LLAMA, "model_type": "cohere2", "sliding_window_pattern": "LLLG"}},
     "model.sliding_window_pattern: must be a whole number of layers (every that many one global), got 'LLLG'"),
    ({**JOB, "model": {**TINY_LLAMA, "model_type": "qwen2", "num_key_value_heads": 2, "use_sliding_window": True,
                       "max_window_layers": [2]}},
     "model.max_window_layers: must be a whole number of layers"),
    ({**JOB, "model": {**TINY_LLAMA, "model_type": "mistral", "num_key_value_heads": 2,
                       "layer_types": [["full_attention"], 1]}},
     "model.layer_types: must be a list of attention kinds per layer"),
    ({**JOB, "model": {**TINY_LLAMA, "model_type": "mistral", "num_key_value_heads": 2, "sliding_window": "4k"}},
     "model.sliding_window: must be a positive integer, got '4k'"),
    ({**JOB, "model": {**TINY_LLAMA, "num_hidden_layers": 10**12}},
     "model.num_hidden_layers: must be a positive integer of at most 16,384"),
    ({**JOB, "global_batch": 10**18}, "global_batch: Input should be less than or equal to 16777216"),
    ({**JOB, "seq_len": 2**24, "global_batch": 2**24}, "tokens per step; at most 4,294,967,296"),
    ({**JOB, "constraints": {"precision": ["bf17"]}}, "constraints.precision: 'bf17' is not valid"),
    ({**JOB, "constraints": {"optimizer": ["lion"]}}, "constraints.optimizer: 'lion' is not valid"),
    ({**JOB, "constraints": {"precision": [1]}}, "constraints.precision: 1 is not valid"),
    ({**JOB, "constraints": {"zero": [True]}}, "constraints.zero: True is not valid"),
    ({**JOB, "constraints": {"tp": [10**12]}}, "constraints.tp: 1000000000000 is not a positive integer"),
    ({**JOB, "constraints": {"lora": {"rank": []}}}, "constraints.lora_rank.rank: unknown field"),
    ({**JOB, "training": "lora", "lora": {"rank": []}}, "lora.rank: List should have at least 1 item"),
    ({**JOB, "constraints": {"first_stage_layers": {"min": math.inf}}},
     "constraints.first_stage_layers.min: inf is not a finite number"),
    ({**JOB, "constraints": {"first_stage_layers": {"min": 1e30}}},
     "constraints.first_stage_layers.min: Input should be less than or equal to 2147483648"),
    ({**JOB, "tokens": math.inf}, "tokens: inf is not a finite number"),
    ({**JOB, "tokens": "1e400"}, "tokens: the number in '1e400' must be a finite number"),
    ({**JOB, "precision": "mxfp8"}, "precision: h100_sxm_80gb has no mxfp8"),
    ({**JOB, "precision": "nvfp4"}, "precision: h100_sxm_80gb has no nvfp4"),
]


@pytest.mark.parametrize("job, fragment", BAD_JOBS, ids=range(len(BAD_JOBS)))
def test_impossible_job_numbers_are_bad_input(files, tmp_path, job, fragment):
    c, j = files(job=job)
    before = tree(tmp_path)
    message = error_of(cli("report", c, j, "--json", "--out", tmp_path / "report"))
    assert message.startswith(f"{j}: ") and fragment in message
    assert tree(tmp_path) == before


@pytest.mark.parametrize("gpu", ["gaudi2", "gaudi3", "tpu_v5e", "tpu_v5p"])
def test_fp32_on_a_gpu_without_an_fp32_peak_is_bad_input(files, gpu):
    assert not {"fp32", "tf32"} & set(catalog()[gpu].peak_flops)  # what makes fp32 untimeable there
    c, j = files(cluster={"gpu": gpu, "gpus_per_node": 2}, job={**JOB, "precision": "fp32"})
    assert f"precision: {gpu} has no fp32 peak" in error_of(cli("solve", c, j, "--json"))
    c, j = files(cluster={"gpu": gpu, "gpus_per_node": 2}, job={**JOB, "constraints": {"precision": ["fp32"]}})
    assert f"constraints.precision: {gpu} has no fp32 peak" in error_of(cli("solve", c, j, "--json"))
    c, j = files(cluster={"gpu": gpu, "gpus_per_node": 2})
    assert f"--plan: {gpu} has no fp32 peak" in error_of(cli("estimate", c, j, "--plan", "precision=fp32", "--json"))
    # A DeepSpeed config enabling neither bf16 nor fp16 trains in fp32 (DeepSpeed's default).
    ds = write(c.parent / "ds.json", json.dumps({"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 2,
                                                 "zero_optimization": {"stage": 1}}))
    message = error_of(cli("check", c, j, "--deepspeed", ds, "--json"))
    assert message.startswith(f"{ds}: this configuration cannot run") and f"{gpu} has no fp32 peak" in message


@pytest.mark.parametrize("plan, fragment", [
    ("pp=2,first_stage_layers=1000", "leave 1000/-996 layers per stage of the 4"),
    ("vpp=2", "vpp=2: interleaved pipeline chunks need pp > 1"),
    ("tp=" + "9" * 40, "must be an integer from 1 to 2,147,483,648"),
    ("x" * 100_000 + "=1", "… (100,000 characters)"),
])
def test_impossible_plans_are_bad_input(files, plan, fragment):
    c, j = files()
    message = error_of(cli("estimate", c, j, "--plan", plan, "--json"))
    assert message.startswith("--plan: ") and fragment in message and len(message) < 1000


def test_the_catalog_dtypes_are_the_custom_gpus():
    assert PEAK_DTYPES == DTYPES


# --- work without bounds ----------------------------------------------------------------------

def _divisors_by_pairs(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted({*small, *(n // d for d in small)})


def test_divisors_come_from_the_factorization():
    assert all(divisors(n) == [d for d in range(1, n + 1) if n % d == 0] for n in range(1, 2000))
    assert len(divisors(10**18)) == 19 * 19  # 2^18 5^18, at once, where a loop to n would never end
    for n in (2**20, 2**24 - 3, 2**20 * 3**5 * 7, 1_048_573):  # the bounds' largest worlds and batches
        assert divisors(n) == _divisors_by_pairs(n)


def test_top_is_capped_at_the_candidates_and_says_so(files):
    c, j = files()
    result = cli("solve", c, j, "--top", 10**9, "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert "note: --top 1,000,000,000: showing at most" in " ".join(result.stderr.split())
    assert 1 <= len(doc["plans"]) <= doc["candidates"]


def test_max_gpus_is_bounded(tmp_path):
    job = write(tmp_path / "job.yaml", {**JOB, "tokens": 1e9})
    result = cli("capacity", job, "--gpu", "h100_sxm_80gb", "--max-gpus", 10**18, "--json")
    assert result.exit_code == 2 and "--max-gpus" in result.stderr


def test_a_huge_string_is_refused_by_size_and_a_long_one_echoed_short(files, tmp_path):
    c, j = files(cluster=f"gpu: {'x' * 5_000_000}\n")
    message = error_of(cli("solve", c, j, "--json"))
    assert "more than the 4,194,304 (4 MiB) an input file may have" in message and len(message) < 300
    c, j = files(cluster={"gpu": "x" * 300})
    message = error_of(cli("solve", c, j, "--json"))
    assert "gpu: String should have at most 256 characters" in message and len(message) < 300
    c, j = files(cluster={"gpu": "x" * 255})
    message = error_of(cli("solve", c, j, "--json"))
    assert "unknown GPU 'xxx" in message and "(255 characters)" in message and len(message) < 1000


# --- files that are not files -----------------------------------------------------------------

def _fifo(tmp_path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("where", ["cluster", "job", "--deepspeed", "--megatron", "model"])
def test_a_fifo_is_refused_without_blocking(files, tmp_path, where):
    fifo = _fifo(tmp_path)
    c, j = files()
    args = {"cluster": ("solve", fifo, j), "job": ("solve", c, fifo), "--deepspeed": ("check", c, j, where, fifo),
            "--megatron": ("check", c, j, where, fifo), "model": ("params", fifo)}[where]
    message = error_of(cli(*args, "--json"))
    assert "fifo" in message and ("named pipe (FIFO)" in message or "nor is it a config.json file" in message)


@pytest.mark.parametrize("device, fragment", [("/dev/zero", "is a character device"),
                                              ("/proc/self/mem", "cannot read: Input/output error")])
def test_devices_and_proc_files_are_refused(files, device, fragment):
    if not os.path.exists(device):
        pytest.skip(f"no {device} here")
    c, j = files()
    assert error_of(cli("solve", device, j, "--json")).startswith(f"{device}: {fragment}")
    assert error_of(cli("check", c, j, "--deepspeed", device, "--json")).startswith(device)


def test_the_type_is_checked_again_after_opening(tmp_path, monkeypatch):
    # A FIFO swapped in after the stat: opened O_NONBLOCK, so fstat refuses it instead of a read blocking.
    regular = write(tmp_path / "c.yaml", CLUSTER)
    fifo = _fifo(tmp_path)
    real_open = os.open
    monkeypatch.setattr(reading.os, "open", lambda path, flags, *a: real_open(fifo, flags, *a))
    with pytest.raises(InputError, match="is a named pipe"):
        reading.read_text(regular)


@pytest.mark.parametrize("text, fragment", [
    ("gpu: " + "[" * 100_000 + "]" * 100_000, "nested more than 64 levels deep"),
    ("gpu: " + "[" * 100 + "]" * 100, "gpu" + "[0]" * 64 + ": nested more than 64 levels deep"),
    ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, n in zip("abcdefgh", "bcdefghi")), "more than 500,000 values"),
    ("gpu: h100_sxm_80gb\nnodes: 1\nnodes: 2\n", "line 3, column 1: duplicate key 'nodes'"),
    ("gpu: 1.0e+400", "gpu: inf is not a finite number"),
])
def test_yaml_documents_are_bounded(files, text, fragment):
    c, j = files(cluster=text)
    message = error_of(cli("solve", c, j, "--json"))
    assert message.startswith(str(c)) and fragment in message


def test_json_documents_are_bounded(files, tmp_path):
    c, j = files()
    ds = tmp_path / "ds.json"
    cases = {
        '{"train_batch_size": 4, "zero_optimization": {"stage": 3, "stage": 0}}': "duplicate key 'stage'",
        '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}": "nested more than 64 levels deep",
        '{"train_batch_size": ' + "1" * 5000 + "}": "train_batch_size: an integer of 5,000 digits",
        '{"train_batch_size": NaN}': "train_batch_size: nan is not a finite number",
        '{"gradient_clipping": 1e999}': "gradient_clipping: inf is not a finite number",
    }
    for text, fragment in cases.items():
        ds.write_text(text)
        assert fragment in error_of(cli("check", c, j, "--deepspeed", ds, "--json")), text[:40]
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**TINY_LLAMA, "vocab_size": 1}).replace('"vocab_size": 1', '"vocab_size": '
                                                                          + "7" * 200))
    message = error_of(cli("params", config, "--json"))
    assert "cannot read" in message and "vocab_size: an integer of 200 digits" in message


# --- output that is not JSON ------------------------------------------------------------------

@pytest.mark.parametrize("price", ["nan", "inf", "-5", "1e300"])
def test_a_price_must_be_a_finite_number_of_at_least_zero(tmp_path, price):
    job = write(tmp_path / "job.yaml", {**JOB, "tokens": 1e9})
    plot = tmp_path / "plot.png"
    message = error_of(cli("capacity", job, "--gpu", "h100_sxm_80gb", "--price", price, "--plot", plot, "--json"))
    assert message.startswith("--price: ") and "a price per GPU-hour is a number from 0 to 1,000,000" in message
    assert not plot.exists()


def test_json_output_is_strict():
    with pytest.raises(ValueError):
        emit_json({"cost": math.nan})


# --- a crash is never an answer ---------------------------------------------------------------

def test_an_internal_error_is_exit_3_and_debug_shows_it(files):
    c, j = files()
    with mock.patch.object(solve_command, "search_job", side_effect=ZeroDivisionError("boom")):
        result = cli("solve", c, j, "--json")
        assert result.exit_code == 3 and "Traceback" not in result.stderr
        assert json.loads(result.stdout)["error"].startswith(
            "internal error: ZeroDivisionError: boom; please report it on the project's issue tracker")
        result = cli("--debug", "solve", c, j)
        assert isinstance(result.exception, ZeroDivisionError)


# --- writes are atomic and contained ----------------------------------------------------------

def test_report_replaces_a_symlink_instead_of_writing_through_it(files, tmp_path):
    c, j = files()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = write(elsewhere / "file", "keep me")
    out = tmp_path / "r"
    out.mkdir()
    (out / "report.html").symlink_to(Path("..") / "elsewhere" / "file")
    assert cli("report", c, j, "--out", out, "--top", 1).exit_code == 0
    assert target.read_text() == "keep me"
    assert not (out / "report.html").is_symlink() and "<html" in (out / "report.html").read_text()
    assert not [p for p in out.iterdir() if p.name.startswith(".planner-")]


def test_emit_does_not_make_a_linked_target_executable(files, tmp_path):
    c, j = files()
    target = write(tmp_path / "precious.txt", "keep me")
    target.chmod(0o600)
    out = tmp_path / "launch"
    out.mkdir()
    (out / "torchrun.sh").symlink_to(target)
    assert cli("solve", c, j, "--top", 1, "--emit", "torchrun", "--out", out).exit_code == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_text() == "keep me"
    script = out / "torchrun.sh"
    assert not script.is_symlink() and stat.S_IMODE(script.stat().st_mode) == 0o755


def test_a_failed_report_leaves_nothing(files, tmp_path, monkeypatch):
    c, j = files()
    out = tmp_path / "new" / "r"
    real = writing._write_temporary
    calls = []

    def fail_on_the_third(folder, data, mode):
        calls.append(folder)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(folder, data, mode)

    monkeypatch.setattr(writing, "_write_temporary", fail_on_the_third)
    message = error_of(cli("report", c, j, "--out", out, "--top", 1, "--json"))
    assert "No space left on device; nothing was written" in message
    assert not (tmp_path / "new").exists()


def test_a_report_file_name_taken_by_a_folder_writes_nothing(files, tmp_path):
    c, j = files()
    out = tmp_path / "r"
    (out / "memory-plans.png").mkdir(parents=True)
    message = error_of(cli("report", c, j, "--out", out, "--top", 1, "--json"))
    assert "memory-plans.png exists there and is a folder" in message
    assert [p.name for p in out.iterdir()] == ["memory-plans.png"]


def test_too_long_names_leave_no_folder_behind(files, tmp_path):
    c, j = files()
    long_name = "x" * 300
    result = cli("solve", c, j, "--top", 1, "--emit", "torchrun", "--out", tmp_path / "new" / long_name, "--json")
    assert "File name too long" in error_of(result)
    job = write(tmp_path / "job.yaml", {**JOB, "tokens": 1e9})
    result = cli("capacity", job, "--gpu", "h100_sxm_80gb", "--max-gpus", 2, "--plot",
                 tmp_path / "plots" / f"{long_name}.png", "--json")
    assert "File name too long" in error_of(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster.yaml", "job.yaml"]


# --- the property: any document, any arguments ------------------------------------------------

EXAMPLES_PER_COMMAND = settings.default.max_examples if os.environ.get("HYPOTHESIS_PROFILE") == "deep" else 50
"""Per command: 1,000 under the deep profile (.ci/run), 50 in the README's test run (`report`,
which draws four charts per answer, 20)."""

numbers = st.one_of(
    st.integers(min_value=-3, max_value=8),  # small and legal, so that some runs reach the solver
    st.sampled_from([0, 2**24 + 1, 10**18, 10**30, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e-300, 1e300]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20),
                    st.sampled_from(["80GiB", "1e400GiB", "400Gbps", "1e-300TB/s", "15T", "[/x]", "yes"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)


class Deep:
    """A document nested `levels` deep, written as text (PyYAML's and json's writers recurse)."""

    def __init__(self, levels: int):
        self.levels = levels


PROPERTY_CLUSTER = {"gpu": "h100_sxm_80gb", "gpus_per_node": 1}
PROPERTY_JOB = {"model": "debug", "seq_len": 64, "global_batch": 2, "tokens": 1e9}
"""The legal documents the property mutates: one GPU and the debug preset keep a legal run to a
fraction of a second (a legal but huge search is not what this test is after)."""
FIELDS = {
    "cluster": {
        "gpu": st.one_of(st.sampled_from(["h100_sxm_80gb", "a100_sxm_80gb", "gaudi2", "tpu_v5e", "nope"]), values,
                         st.fixed_dictionaries({"memory": scalars, "peak_tflops": st.dictionaries(
                             st.sampled_from(["bf16", "fp32", "x"]), numbers), "hbm_bandwidth": scalars})),
        "gpus_per_node": numbers, "nodes": numbers, "scale_up_domain": numbers,
        "inter_node": st.one_of(values, st.fixed_dictionaries({"nic_gbps": numbers})),
        "intra_node": values, "memory_reserve_gib": numbers, "host_memory_gib": numbers,
        "price_per_gpu_hour": numbers,
    },
    "job": {
        "model": st.one_of(st.sampled_from(["debug", "debug-moe", "nope"]), values,
                           st.fixed_dictionaries({k: st.one_of(st.just(v), numbers) for k, v in TINY_LLAMA.items()})),
        "training": st.sampled_from(["pretrain", "full", "lora", "qlora", "x"]),
        "seq_len": numbers, "global_batch": numbers,
        "precision": st.sampled_from(["bf16", "fp16", "fp8", "fp32", "mxfp8", "nvfp4", "bf17"]),
        "optimizer": st.sampled_from(["adamw", "sgd", "lion"]), "lora": values, "trainable": values,
        "quant": st.sampled_from(["none", "nf4", "x"]), "tokens": scalars,
        "constraints": st.dictionaries(st.sampled_from(["tp", "pp", "zero", "precision", "first_stage_layers",
                                                        "recompute", "x"]), values, max_size=3),
    },
    "deepspeed": {
        "train_micro_batch_size_per_gpu": numbers, "gradient_accumulation_steps": numbers,
        "train_batch_size": numbers, "zero_optimization": st.one_of(
            values, st.fixed_dictionaries({"stage": numbers}, optional={"offload_optimizer": values})),
        "bf16": st.fixed_dictionaries({"enabled": st.one_of(st.booleans(), scalars)}), "x": values,
    },
}
BASES = {"cluster": PROPERTY_CLUSTER, "job": PROPERTY_JOB,
         "deepspeed": {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 2,
                       "zero_optimization": {"stage": 1}}}


@st.composite
def documents(draw, kind: str):
    """Mostly the legal base with a field or two replaced or dropped; else an arbitrary mapping or
    value, or nesting thousands of levels deep."""
    base, fields = BASES[kind], FIELDS[kind]
    shape = draw(st.sampled_from(["base", "base", "mutated", "mutated", "mutated", "arbitrary", "value", "deep"]))
    if shape == "deep":
        return Deep(draw(st.integers(min_value=60, max_value=3000)))
    if shape == "value":
        return draw(values)
    if shape == "arbitrary":
        return draw(st.dictionaries(st.sampled_from(sorted(fields)), values, max_size=5))
    document = dict(base)
    if shape == "mutated":
        for name in draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=2, unique=True)):
            if name in document and draw(st.booleans()):
                del document[name]
            else:
                document[name] = draw(fields[name])
    return document


def as_text(document, form: str) -> str:
    if isinstance(document, Deep):
        nested = "[" * document.levels + "]" * document.levels
        return f'{{"gpu": {nested}}}' if form == "json" else f"gpu: {nested}\n"
    if form == "json":
        return json.dumps(document)  # NaN and Infinity as Python writes them: not JSON, and refused
    return yaml.safe_dump(document, width=10**6)


MEGATRON_SCRIPTS = st.one_of(
    st.just("torchrun pretrain_gpt.py --num-layers 4 --hidden-size 256 --num-attention-heads 4 --seq-length 64"
            " --micro-batch-size 1 --global-batch-size 2 --tensor-model-parallel-size 1 --bf16\n"),
    st.builds(lambda flag, value: f"torchrun pretrain_gpt.py --num-layers 4 --hidden-size 256"
                                  f" --num-attention-heads 4 --seq-length 64 --global-batch-size 2 {flag} {value}\n",
              st.sampled_from(["--micro-batch-size", "--tensor-model-parallel-size", "--pipeline-model-parallel-size",
                               "--num-layers", "--recompute-granularity", "--seq-length"]),
              st.sampled_from(["1", "2", "0", "-1", "99999999999999999999999", "nan", "x", "'", "$((1<<62))"])),
    st.text(max_size=60),
)
option_values = st.one_of(st.sampled_from(["1", "2", "0", "-1", "nan", "inf", "1e400", "10" * 30, "x",
                                           "h100_sxm_80gb", "deepspeed", "torchrun", "tp=1", "pp=2,vpp=2",
                                           "mbs=1,gas=2", "precision=fp32", "[/x]"]),
                          st.text(max_size=10))
SMALL = {"--top": st.sampled_from(["1", "2", "0", "x", "1000000000"]),
         "--max-gpus": st.sampled_from(["1", "2", "0", "x", "1000000000000000000"]),
         "--batch": st.sampled_from(["1", "2", "0", "x", "99999999999999999999"]),
         "--context": st.sampled_from(["1", "128", "0", "x", "99999999999999999999"]),
         "--plan": st.one_of(st.sampled_from(["tp=1", "mbs=1", "mbs=2,gas=1", "zero=1,recompute=full"]),
                             option_values)}
"""Options whose legal values stay small, so that a legal run stays fast."""
OUTPUT_PATHS = st.sampled_from(["{out}/r", "{out}/r.png", "{out}/a/" + "x" * 300 + ".png", "{cluster}", "{out}"])
COMMANDS = {
    # command: (positional kinds, options it must have to get past usage, other options)
    "solve": (("cluster", "job"), (), ("--top", "--objective", "--solver", "--time-limit", "--emit", "--out")),
    "estimate": (("cluster", "job"), ("--plan",), ("--stages",)),
    "check": (("cluster", "job"), ("--deepspeed",), ("--megatron", "--micro-batch", "--emit", "--out", "--top",
                                                     "--gradient-checkpointing")),
    "capacity": (("job",), ("--gpu", "--max-gpus"), ("--price", "--objective", "--plot", "--cluster")),
    "report": (("cluster", "job"), ("--out",), ("--top", "--objective", "--solver")),
    "infer": (("model",), (), ("--gpu", "--precision", "--batch", "--context", "--kv-dtype", "--tp", "--allowance")),
    "params": (("model",), (), ("--seq-len",)),
    "gpus": ((), (), ()),
    "models": ((), (), ()),
}
FLAGS = ("--stages", "--gradient-checkpointing")


@st.composite
def option(draw, name: str) -> list[str]:
    if name in FLAGS:
        return [name]
    if name in ("--out", "--plot"):
        return [name, draw(OUTPUT_PATHS)]
    if name in ("--deepspeed", "--megatron", "--cluster"):
        default = {"--deepspeed": "{deepspeed}", "--megatron": "{megatron}", "--cluster": "{cluster}"}[name]
        return [name, draw(st.sampled_from([default, default, "{job}", "{out}/missing"]))]
    if name == "--max-gpus":
        return [name, draw(st.sampled_from(["2", "2", "0", "1000000000000000000"]))]
    if name == "--gpu":
        return [name, draw(st.one_of(st.just("h100_sxm_80gb"), option_values))]
    return [name, draw(SMALL.get(name, option_values))]


@st.composite
def invocations(draw, command: str):
    """(input files' texts, argument list with {cluster}, {job}, {deepspeed}, {megatron}, {out})."""
    texts = {kind: as_text(draw(documents(kind)), draw(st.sampled_from(["yaml", "json"])))
             for kind in ("cluster", "job")}
    texts["deepspeed"] = as_text(draw(documents("deepspeed")), "json")
    texts["megatron"] = draw(MEGATRON_SCRIPTS)
    positionals, required, others = COMMANDS[command]
    args = [command]
    for kind in positionals:
        if kind == "model":
            args.append(draw(st.sampled_from(["debug", "debug-moe", "{job}", "nope", "7B", "1e400", "1e300", "-1"])))
        else:
            args.append(draw(st.one_of(st.just("{%s}" % kind), st.just("{%s}" % kind), option_values)))
    for name in required:
        if draw(st.sampled_from([True, True, True, False])):
            args += draw(option(name))
    for name in draw(st.lists(st.sampled_from(others), max_size=3, unique=True)) if others else []:
        args += draw(option(name))
    if draw(st.booleans()):
        args.append("--json")
    return texts, args


def _check_invocation(tmp_path_factory, invocation) -> None:
    texts, args = invocation
    home = tmp_path_factory.mktemp("run")
    inputs, out = home / "in", home / "out"
    inputs.mkdir()
    out.mkdir()
    names = {"cluster": "cluster.yaml", "job": "job.yaml", "deepspeed": "ds.json", "megatron": "train.sh"}
    places = {kind: str(write(inputs / names[kind], text)) for kind, text in texts.items()}
    places["out"] = str(out)
    argv = []
    for arg in args:
        for kind, path in places.items():
            arg = arg.replace("{%s}" % kind, path)
        argv.append(arg)
    result = runner.invoke(app, argv)
    assert result.exit_code in (0, 1, 2), (argv, result.exit_code, result.stderr[-2000:])
    assert result.exception is None or isinstance(result.exception, SystemExit), (argv, repr(result.exception))
    assert "Traceback" not in result.stdout + result.stderr, argv
    if "--json" in argv and result.stdout.strip():
        json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"{c} in JSON output of {argv}"))
    if result.exit_code == 2:
        assert not any(out.iterdir()), (argv, list(out.iterdir()))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_any_input_is_an_answer_or_bad_input(tmp_path_factory, command):
    examples = EXAMPLES_PER_COMMAND if command != "report" or EXAMPLES_PER_COMMAND > 50 else 20

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(invocations(command))
    def run(invocation):
        _check_invocation(tmp_path_factory, invocation)
    run()


# -- config.json fields of any value ---------------------------------------------------------------

def _config_fields() -> list[str]:
    from planner.model.hf_defaults import DEFAULTS
    read = {key for defaults in DEFAULTS.values() for key in defaults}
    return sorted(read | {
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "head_dim", "moe_intermediate_size", "rope_scaling", "rope_parameters",
        "max_position_embeddings", "sliding_window", "layer_types", "sliding_window_pattern", "use_sliding_window",
        "max_window_layers", "attention_chunk_size", "no_rope_layers", "no_rope_layer_interval", "moe_layers",
        "mlp_only_layers", "hidden_act", "hidden_activation", "architectures", "quantization_config",
        "vision_config", "text_config", "model_type", "read_as"})


_SHAPE = {"vocab_size": 100, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 4,
          "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "moe_intermediate_size": 32,
          "num_experts": 4, "num_local_experts": 4, "n_routed_experts": 4, "num_experts_per_tok": 2,
          "q_lora_rank": 16, "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 8,
          "n_embd": 64, "n_layer": 4, "n_head": 4, "n_embed": 64, "moe_k": 2, "moe_num_experts": 4, "moe_topk": 2}
"""A small valid shape under every family's field names, which the drawn fields then spoil."""
_JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 10), st.sampled_from([10**30, 1.5, math.nan, math.inf]),
    st.text(max_size=3), st.lists(st.integers(-1, 5) | st.text(max_size=2), max_size=5),
    st.dictionaries(st.text(max_size=2), st.integers(0, 3), max_size=2),
    st.sampled_from([["full_attention"] * 4, ["sliding_attention"] * 4, [0, 1, 0, 1]]))


@st.composite
def _spoilt_configs(draw) -> dict:
    from planner.model.hf_config import MULTIMODAL, supported_model_types
    model_type = draw(st.sampled_from(supported_model_types() + sorted(MULTIMODAL)))
    text = dict(_SHAPE)
    config = {"model_type": model_type, "text_config": text} if model_type in MULTIMODAL else \
        {"model_type": model_type, **text}
    target = text if model_type in MULTIMODAL and draw(st.booleans()) else config
    for key, value in draw(st.lists(st.tuples(st.sampled_from(_config_fields()), _JSON_VALUES), min_size=1,
                                    max_size=3)):
        target[key] = value
    return config


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_spoilt_configs())
def test_any_config_field_value_is_read_or_refused_by_name(config):
    """A config.json whose fields hold any JSON value is an architecture, or bad input naming the
    field: never an internal error (a TypeError on a list where a number belongs, a None width)."""
    import warnings

    from planner.model import architecture_from_config, count_params
    from planner.model.context import context_limit, layer_windows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            arch = architecture_from_config(config, "spoilt")
            count_params(arch)
            layer_windows(arch, config)
            context_limit(config)
        except InputError:
            pass


def _key_paths(tree: dict, prefix: tuple = ()) -> list[tuple]:
    out = []
    for key, value in tree.items():
        out.append(prefix + (key,))
        if isinstance(value, dict):
            out += _key_paths(value, prefix + (key,))
    return out


@st.composite
def _spoilt_deepspeed_configs(draw) -> dict:
    """The example ZeRO-3 config with one to three of its keys set to any JSON value."""
    import copy
    config = copy.deepcopy(json.loads((EXAMPLES / "deepspeed" / "zero3-hf-auto.json").read_text()))
    paths = _key_paths(config)
    for path, value in draw(st.lists(st.tuples(st.sampled_from(paths), _JSON_VALUES), min_size=1, max_size=3)):
        section = config
        for key in path[:-1]:
            section = section.get(key) if isinstance(section, dict) else None
        if isinstance(section, dict):
            section[path[-1]] = value
    return config


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_spoilt_deepspeed_configs())
def test_any_deepspeed_value_is_read_or_refused_by_name(config):
    """A DeepSpeed config whose keys hold any JSON value is a plan, or bad input naming the key: a
    null where DeepSpeed has a default (its config models refuse it) raised an internal error."""
    from planner.cost.evaluate import evaluate
    from planner.cost.inputs import load_inputs
    from planner.engines.deepspeed import parse_deepspeed_config
    inputs = load_inputs(EXAMPLES / "clusters" / "h100-1node.yaml", EXAMPLES / "jobs" / "llama3-8b-full-finetune.yaml")
    try:
        job = parse_deepspeed_config(config, inputs)
        evaluate(job.plan, job.workload, inputs.cluster)
    except InputError:
        pass
