"""Solver speed on the reference cases: seconds to the best plan, status, CP-SAT vs brute force,
and the reasons the runners-up lose.

Run: `.venv/bin/python benchmarks/solve.py [--top K]`. Each case builds the layout table once
(the pure models evaluated at probe plans: `table s`, shown apart), then times the CP-SAT model
and brute-force enumeration of the same factored space (every layout x partition x recompute
count per stage class) on it, so the ratio compares the two searches and nothing else. Both
must find the same best objective. For Llama-3.1-405B the best plan of Meta's published family
(TP 8, PP 16) is solved for as well and compared term by term.
"""
from __future__ import annotations

import argparse
import time

from planner.cost.cluster import build_cluster
from planner.cost.evaluate import evaluate
from planner.cost.workload import Workload
from planner.model import load_architecture
from planner.search import JobDefaults, candidate_table, reasons
from planner.search.brute import solve_brute
from planner.search.cpsat import solve_cpsat
from planner.search.explain import describe_plan
from planner.search.table import capacity_kib, host_capacity_kib
from planner.spec.cluster import ClusterSpec
from planner.spec.job import Constraint

CASES = [
    # (name, model, gpu, nodes, nic Gbps, seq, global batch, published family to compare)
    ("Llama-3-8B on 8 H100", "llama3-8b", "h100_sxm_80gb", 1, 400, 8192, 64, None),
    ("Llama-3-70B on 256 H100", "llama3-70b", "h100_sxm_80gb", 32, 400, 8192, 512, None),
    ("Llama-3.1-405B on 16,384 H100", "llama3.1-405b", "h100_sxm_80gb", 2048, 400, 8192, 2048, (8, 16)),
    ("DeepSeek-V3 on 2,048 H800", "deepseek-v3", "h800_sxm_80gb", 256, 400, 4096, 15360, None),
]
DEFAULTS = JobDefaults(precision="bf16", optimizer="adamw", lora_ranks=(0,), quant="none")


def _layout(ev) -> str:
    stages = [s.layers for s in ev.stages]
    split = f" layers {stages[0]}/{stages[1] if len(stages) > 2 else ''}.../{stages[-1]}" if len(stages) > 1 else ""
    return f"{describe_plan(ev.plan)}{split} · step {ev.time.step:.3f} s · MFU {ev.time.mfu:.1%}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--top", type=int, default=3, help="plans per case (runners-up give the reasons)")
    args = parser.parse_args()
    print(f"{'case':31} {'layouts':>7} {'table s':>8} {'cp-sat s':>9} {'brute s':>8} {'ratio':>6}  status")
    for name, model, gpu, nodes, nic, seq, batch, family in CASES:
        cluster = build_cluster(ClusterSpec(gpu=gpu, gpus_per_node=8, nodes=nodes,
                                            inter_node={"nic_gbps": nic, "nics_per_node": 8}))
        workload = Workload(arch=load_architecture(model), training="pretrain", seq_len=seq, global_batch=batch)
        layers = workload.arch.num_layers
        start = time.perf_counter()
        layouts = candidate_table(workload, cluster, DEFAULTS, {}, "step-time")
        table_s = time.perf_counter() - start
        cap, host = capacity_kib(cluster), host_capacity_kib(cluster)
        start = time.perf_counter()
        status, best, _ = solve_cpsat(layouts, {}, cap, host, 1, "step-time", layers)
        cpsat_s = time.perf_counter() - start
        start = time.perf_counter()
        brute = solve_brute(layouts, {}, cap, host, 1, "step-time", layers)
        brute_s = time.perf_counter() - start
        assert [p.cost for p in best] == [p.cost for p in brute], name
        print(f"{name:31} {len(layouts):>7,} {table_s:>8.2f} {cpsat_s:>9.3f} {brute_s:>8.3f}"
              f" {cpsat_s / brute_s if brute_s else float('nan'):>6.2f}  {status}")
        _, top, _ = solve_cpsat(layouts, {}, cap, host, args.top, "step-time", layers)
        plans = tuple(sorted((evaluate(p.plan(layers), workload, cluster) for p in top), key=lambda ev: ev.time.step))
        if plans:
            print(f"    best: {_layout(plans[0])}")
            for text in reasons(plans, "step-time"):
                print(f"    runner-up {text}")
        if family is not None and plans:
            tp, pp = family
            limits = {"tp": Constraint(values=(tp,)), "pp": Constraint(values=(pp,))}
            _, fam, _ = solve_cpsat(layouts, limits, cap, host, 1, "step-time", layers)
            if fam:
                ev = evaluate(fam[0].plan(layers), workload, cluster)
                print(f"    published family TP {tp} x PP {pp}: {_layout(ev)}")
                for text in reasons((plans[0], ev), "step-time"):
                    print(f"      vs best: {text}")


if __name__ == "__main__":
    main()
