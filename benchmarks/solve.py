"""Where users wait: whole commands timed from process start to exit, imports included.

Run: `.venv/bin/python benchmarks/solve.py [--repeat 3] [--write] [--baseline DIR]`. Each command runs `--repeat`
times in a fresh interpreter; the median CPU seconds (user + system of the child, from
getrusage) and wall seconds are shown, with the phases a `--json` search reports (`timing`:
table, solver, explain) beside them. Then CP-SAT and brute force solve the same factored table
in-process (every layout x partition x recompute count per stage class), so their ratio compares
the two searches and nothing else; both must find the same best objective. `--write` puts the
output in docs/performance.md with the machine it ran on; `--baseline DIR` times the same commands
with another checkout's planner in the same run, alternating, so before and after share the
machine's load. Both checkouts are byte-compiled first, as an install does. Cases:
benchmarks/cases/README.md.
"""
from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "benchmarks" / "cases"
EX = ROOT / "examples"

COMMANDS: list[tuple[str, list[str]]] = [
    ("--help", ["--help"]),
    ("gpus", ["gpus"]),
    ("params llama3-70b", ["params", "llama3-70b"]),
    ("estimate Llama-3-70B, 64 H100", ["estimate", f"{EX}/clusters/h100-8nodes-ib.yaml",
                                       f"{EX}/jobs/llama3-70b-pretrain.yaml", "--plan", "tp=8,pp=4,zero=1,recompute=selective,mbs=1",
                                       "--json"]),
    ("check Megatron script, 8 H100", ["check", f"{EX}/clusters/h100-1node.yaml", f"{EX}/jobs/llama3-8b-pretrain.yaml",
                                       "--megatron", f"{EX}/megatron/llama3-8b-pretrain.sh", "--json"]),
    ("solve README example (4 engines)", ["solve", f"{EX}/clusters/h100-8nodes-ib.yaml",
                                          f"{EX}/jobs/llama3-70b-pretrain.yaml", "--json"]),
    ("solve QLoRA Qwen3-8B, 1 RTX 4090", ["solve", f"{CASES}/rtx4090-1gpu.yaml", f"{CASES}/qwen3-8b-qlora.yaml",
                                          "--json"]),
    ("solve Llama-3-8B, 8 H100", ["solve", f"{CASES}/h100-1node.yaml", f"{CASES}/llama3-8b-full.yaml", "--json"]),
    ("solve Qwen3-30B-A3B LoRA, 8 H100", ["solve", f"{CASES}/h100-1node.yaml", f"{CASES}/qwen3-30b-a3b-lora.yaml",
                                         "--json"]),
    ("solve Llama-3-70B, 512 H100", ["solve", f"{CASES}/h100-64nodes.yaml", f"{CASES}/llama3-70b-pretrain.yaml",
                                     "--json"]),
    ("solve Llama-3.1-405B, 2,048 H100", ["solve", f"{CASES}/h100-256nodes.yaml",
                                          f"{CASES}/llama3.1-405b-pretrain.yaml", "--json"]),
    ("solve Llama-3.1-405B, 16,384 H100", ["solve", f"{CASES}/h100-2048nodes.yaml",
                                           f"{CASES}/llama3.1-405b-pretrain.yaml", "--json"]),
    ("solve Mixtral-8x7B, 64 H100, megatron", ["solve", f"{CASES}/h100-8nodes.yaml",
                                               f"{CASES}/mixtral-8x7b-pretrain.yaml", "--framework", "megatron",
                                               "--json"]),
    ("solve 405B on 2 H100 (no fit), megatron", ["solve", f"{CASES}/h100-2gpus.yaml",
                                                 f"{CASES}/llama3.1-405b-pretrain.yaml", "--framework", "megatron",
                                                 "--json"]),
    ("solve DeepSeek-V3, 2,048 H800, megatron", ["solve", f"{CASES}/h800-256nodes.yaml",
                                                 f"{CASES}/deepseek-v3-bf16.yaml", "--framework", "megatron",
                                                 "--json"]),
    ("solve DeepSeek-V3 fp8, 2,048 H800, megatron", ["solve", f"{CASES}/h800-256nodes.yaml",
                                                     f"{CASES}/deepseek-v3-fp8.yaml", "--framework", "megatron",
                                                     "--json"]),
    ("capacity 8B, 5 GPU types x 10 counts", ["capacity", f"{EX}/jobs/llama3-8b-full-finetune.yaml",
                                              *[a for g in ("h100", "a100", "h200", "l40s", "mi300x")
                                                for a in ("--gpu", g)], "--max-gpus", "512", "--json"]),
    ("capacity 405B, 3 GPU types to 1,024", ["capacity", f"{CASES}/llama3.1-405b-pretrain.yaml",
                                             "--gpu", "h100", "--gpu", "a100", "--gpu", "h200", "--max-gpus", "1024",
                                             "--json"]),
]


def byte_compile(code: Path) -> None:
    """Write the bytecode of the checkout's packages, as `pip install` does for every user: a machine
    with PYTHONDONTWRITEBYTECODE set would otherwise compile every module in every timed run."""
    for package in ("planner", "hardware"):
        compileall.compile_dir(code / package, quiet=1)


def run(args: list[str], code: Path = ROOT) -> tuple[float, float, int, str]:
    """(CPU s, wall s, exit code, stdout) of one command in a fresh interpreter, with the planner
    of the checkout at `code` (the case files are always this checkout's)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "planner.cli.app", *args], cwd=code, capture_output=True, text=True,
                          check=False,
                          env={**os.environ, "PYTHONPATH": str(code)})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, done.returncode, done.stdout


def phases(stdout: str) -> str:
    """The search's own phases from a --json document, when it reports them."""
    try:
        doc = json.loads(stdout)
    except ValueError:
        return ""
    timing = doc.get("timing") if isinstance(doc, dict) else None
    if not timing:
        return f"{len(doc['rows'])} rows" if isinstance(doc, dict) and "rows" in doc else ""
    return (f"table {timing['table']:.1f} · solver {timing['solver']:.1f} · explain {timing['explain']:.1f}"
            f" · {doc.get('candidates', 0):,} plans · {doc.get('status')}")


def solver_ratio() -> list[str]:
    """CP-SAT against brute force on the same tables, in-process."""
    sys.path.insert(0, str(ROOT))
    from planner.cost.cluster import build_cluster
    from planner.cost.workload import Workload
    from planner.model import load_architecture
    from planner.search import JobDefaults, candidate_table
    from planner.search.brute import solve_brute
    from planner.search.cpsat import solve_cpsat
    from planner.search.table import capacity_kib, host_capacity_kib
    from planner.spec.cluster import ClusterSpec

    defaults = JobDefaults(precision="bf16", optimizer="adamw", lora_ranks=(0,), quant="none")
    lines = [f"| {'case':28} | layouts | table s | CP-SAT s | brute s | CP-SAT / brute |", "|---|---:|---:|---:|---:|---:|"]
    for name, model, nodes, batch in (("Llama-3-8B on 8 H100", "llama3-8b", 1, 64),
                                      ("Llama-3-70B on 256 H100", "llama3-70b", 32, 512)):
        cluster = build_cluster(ClusterSpec(gpu="h100_sxm_80gb", gpus_per_node=8, nodes=nodes,
                                            inter_node={"nic_gbps": 400, "nics_per_node": 8}))
        wl = Workload(arch=load_architecture(model), training="pretrain", seq_len=8192, global_batch=batch)
        start = time.process_time()
        rows = candidate_table(wl, cluster, defaults, {}, "step-time")
        table_s = time.process_time() - start
        args = ({}, capacity_kib(cluster), host_capacity_kib(cluster), 1, "step-time", wl.arch.num_layers)
        start = time.process_time()
        _, best, _ = solve_cpsat(rows, *args)
        cpsat_s = time.process_time() - start
        start = time.process_time()
        brute = solve_brute(rows, *args)
        brute_s = time.process_time() - start
        assert [p.cost for p in best] == [p.cost for p in brute], name
        lines.append(f"| {name:28} | {len(rows):,} | {table_s:.2f} | {cpsat_s:.3f} | {brute_s:.3f} |"
                     f" {cpsat_s / brute_s if brute_s else float('nan'):.2f} |")
    return lines


def _middle(runs: list[tuple[float, float, int, str]]) -> tuple[float, float, int, str]:
    """The run of median wall time, whose phases then add up to no more than its wall."""
    return sorted(runs, key=lambda r: r[1])[len(runs) // 2]


def _cells(runs: list[tuple[float, float, int, str]]) -> str:
    middle = _middle(runs)
    return f"{statistics.median(r[0] for r in runs):.2f} | {middle[1]:.2f} | {middle[2]}"


def _describe(code: Path) -> str:
    """The checkout's commit, for the record."""
    rev = subprocess.run(["git", "-C", str(code), "log", "-1", "--format=%h %s"], capture_output=True, text=True,
                         check=False).stdout.strip()
    return f"`{rev[:72]}`" if rev else str(code)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores visible, Python {platform.python_version()}, {platform.system()}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3, help="runs per command (the median is shown)")
    parser.add_argument("--write", action="store_true", help="write docs/performance.md")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also time each command with the planner of another checkout (e.g. `git worktree add"
                             " /tmp/before <rev>`), in the same run: before and after side by side")
    args = parser.parse_args()
    for code in (ROOT, args.baseline) if args.baseline else (ROOT,):
        byte_compile(code)
    before = " | before: CPU s | wall s | exit" if args.baseline else ""
    out = [f"Machine: {machine()}. Median of {args.repeat} runs, each a fresh process (start to exit).", ""]
    if args.baseline:
        out += [f"Before: {_describe(args.baseline)}; after: {_describe(ROOT)}; alternating runs.", ""]
    out += [f"| command | CPU s | wall s | exit | the search's own phases (s){before} |",
            "|---|---:|---:|---:|---|" + ("---:|---:|---:|" if args.baseline else "")]
    print("\n".join(out), flush=True)
    for name, argv in COMMANDS:
        runs, old = [], []
        for _ in range(args.repeat):
            runs.append(run(argv))
            if args.baseline:
                old.append(run(argv, args.baseline))
        line = f"| {name} | {_cells(runs)} | {phases(_middle(runs)[3])} |"
        if old:
            line += f" {_cells(old)} |"
        print(line, flush=True)
        out.append(line)
    out += ["", "CP-SAT against brute force on the same factored table (in-process CPU s, best objective equal):", ""]
    ratio = solver_ratio()
    print("\n".join(out[-3:] + ratio))
    out += ratio
    if args.write:
        text = ("# Performance\n\nWritten by `benchmarks/solve.py --write`: whole commands as users run them,"
                " with their default `--jobs` (the usable CPUs: searches in worker processes, so CPU seconds"
                " may exceed wall seconds).\n\n"
                + "\n".join(out) + "\n")
        (ROOT / "docs" / "performance.md").write_text(text)


if __name__ == "__main__":
    main()
