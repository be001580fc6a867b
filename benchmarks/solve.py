"""Solver speed on the reference cases: seconds to the best plan, status, and CP-SAT vs brute force.

Run: `.venv/bin/python benchmarks/solve.py`. Each case builds the candidate table once (the
models' cost, shown apart) and then times the CP-SAT model and brute-force enumeration on the
same table, so the ratio compares the two searches and nothing else.
"""
from __future__ import annotations

import time

from planner.cluster import build_cluster
from planner.model import load_architecture
from planner.search import JobDefaults, candidate_table
from planner.search.brute import solve_brute
from planner.search.cpsat import solve_cpsat
from planner.search.table import capacity_mib, host_capacity_mib
from planner.spec.cluster import ClusterSpec
from planner.workload import Workload

CASES = [
    # (name, model, gpu, nodes, nic Gbps, seq, global batch)
    ("Llama-3-8B on 8 H100", "llama3-8b", "h100_sxm_80gb", 1, 400, 8192, 64),
    ("Llama-3-70B on 256 H100", "llama3-70b", "h100_sxm_80gb", 32, 400, 8192, 512),
    ("Llama-3.1-405B on 16,384 H100", "llama3.1-405b", "h100_sxm_80gb", 2048, 400, 8192, 2048),
    ("DeepSeek-V3 on 2,048 H800", "deepseek-v3", "h800_sxm_80gb", 256, 400, 4096, 15360),
]
DEFAULTS = JobDefaults(precision="bf16", optimizer="adamw", lora_ranks=(0,), quant="none")


def main() -> None:
    print(f"{'case':34} {'plans':>7} {'table s':>8} {'cp-sat s':>9} {'brute s':>8} {'ratio':>6}  status    best plan")
    for name, model, gpu, nodes, nic, seq, batch in CASES:
        cluster = build_cluster(ClusterSpec(gpu=gpu, gpus_per_node=8, nodes=nodes,
                                            inter_node={"nic_gbps": nic, "nics_per_node": 8}))
        workload = Workload(arch=load_architecture(model), training="pretrain", seq_len=seq, global_batch=batch)
        start = time.perf_counter()
        rows = candidate_table(workload, cluster, DEFAULTS, {}, "step-time")
        table_s = time.perf_counter() - start
        cap, host = capacity_mib(cluster), host_capacity_mib(cluster)
        start = time.perf_counter()
        status, best, _ = solve_cpsat(rows, {}, cap, host, top=1)
        cpsat_s = time.perf_counter() - start
        start = time.perf_counter()
        brute = solve_brute(rows, {}, cap, host, top=1)
        brute_s = time.perf_counter() - start
        assert [r.cost for r in best] == [r.cost for r in brute], name
        plan = best[0].evaluation.plan if best else None
        layout = (f"tp{plan.tp} pp{plan.pp} dp{plan.dp} zero{plan.zero} {plan.recompute} mbs{plan.mbs}"
                  if plan else "-")
        print(f"{name:34} {len(rows):>7,} {table_s:>8.2f} {cpsat_s:>9.3f} {brute_s:>8.3f}"
              f" {cpsat_s / brute_s if brute_s else float('nan'):>6.1f}  {status:9} {layout}")


if __name__ == "__main__":
    main()
