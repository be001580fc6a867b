"""Where the constants of planner/cost/calibration.py come from, with the residuals of each fit.

    python validation/calibrate.py

1. Collectives: the only measurements fitted, the four `collectives` of
   validation/data/runs.yaml ([MLE] nccl-tests busbw). Three constants: the NVLink ring
   efficiency (two ring points, geometric mean), the NVLS all-reduce efficiency of Hopper (one
   point) and the per-collective base latency (the 16 MiB point; NCCL's per-step latencies are
   kept). Residuals are printed for the fitted values and for those in calibration.py.
2. Compute: GEMM_FRACTION_OF_MAMF and HBM_EFFICIENCY solved from two cells of [SEL22] Table 4
   (22B layer, TP 8, b 4, s 2048, h 6144, A100): the forward with SP (7.2 ms)
   and the selective-recompute overhead (13.1 − 11.8 ms). The other cells are printed as checks.
   These are per-layer timings, not the step times of runs.yaml that validation/runs.py checks.

Nothing is written; copy rounded values into planner/cost/calibration.py by hand.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from planner.cost import calibration as cal  # noqa: E402
from planner.cost.cluster import build_cluster  # noqa: E402
from planner.cost.comm import Group, bus_factor, collective_time  # noqa: E402
from planner.cost.topology import ring_steps  # noqa: E402
from planner.spec.cluster import ClusterSpec  # noqa: E402

DATA = ROOT / "validation" / "data" / "runs.yaml"


# ----------------------------------------------------------------------------- collectives

def _node(gpu: str):
    return build_cluster(ClusterSpec(gpu=gpu, gpus_per_node=8, nodes=1))


def _is_ring(c: dict) -> bool:
    """Measured with NVLS off: the note says ring, or the part has no NVLS (A100)."""
    return "ring" in c.get("note", "") or not any(c["gpu"].startswith(p) for p in cal.NVLS_ALLREDUCE_EFFICIENCY)


def _predicted_busbw(c: dict, e_ring: float, e_nvls: float, alpha_base: float) -> float:
    n = c["ranks"]
    line = _node(c["gpu"]).scale_up_bandwidth
    eff = e_ring if _is_ring(c) else e_nvls
    alpha = alpha_base + ring_steps(c["op"], n) * cal.ALPHA_STEP_S["scale_up"]
    f = bus_factor(c["op"], n)
    t = alpha + f * c["bytes"] / (eff * line)
    return f * c["bytes"] / t / 1e9


def fit_collectives(collectives: list[dict]) -> dict[str, float]:
    """Closed-form fit of the three constants, in order (each step uses the previous)."""
    big = [c for c in collectives if c["bytes"] >= 2**30]
    small = [c for c in collectives if c["bytes"] < 2**30]
    rings = [c["busbw_GBps"] * 1e9 / _node(c["gpu"]).scale_up_bandwidth for c in big if _is_ring(c)]
    nvls = [c["busbw_GBps"] * 1e9 / _node(c["gpu"]).scale_up_bandwidth for c in big if not _is_ring(c)]
    e_ring = math.exp(sum(map(math.log, rings)) / len(rings))
    e_nvls = math.exp(sum(map(math.log, nvls)) / len(nvls))
    alphas = []
    for c in small:  # measured time − bandwidth term − NCCL per-step latencies
        n, f = c["ranks"], bus_factor(c["op"], c["ranks"])
        eff = e_ring if _is_ring(c) else e_nvls
        t = f * c["bytes"] / (c["busbw_GBps"] * 1e9)
        alphas.append(t - f * c["bytes"] / (eff * _node(c["gpu"]).scale_up_bandwidth)
                      - ring_steps(c["op"], n) * cal.ALPHA_STEP_S["scale_up"])
    return {"e_ring": e_ring, "e_nvls": e_nvls, "alpha_base": sum(alphas) / len(alphas)}


def collective_report(collectives: list[dict]) -> list[str]:
    fit = fit_collectives(collectives)
    used = {"e_ring": cal.LINK_EFFICIENCY["nvlink"], "e_nvls": cal.NVLS_ALLREDUCE_EFFICIENCY["h200"],
            "alpha_base": cal.ALPHA_BASE_S}
    lines = ["## Collectives (validation/data/runs.yaml `collectives`, [MLE] nccl-tests busbw)", "",
             f"fitted:  NVLink ring e = {fit['e_ring']:.3f}, Hopper NVLS e = {fit['e_nvls']:.3f},"
             f" base latency = {fit['alpha_base'] * 1e6:.1f} µs",
             f"in use:  NVLink ring e = {used['e_ring']:.3f}, Hopper NVLS e = {used['e_nvls']:.3f},"
             f" base latency = {used['alpha_base'] * 1e6:.1f} µs",
             f"host op: base latency − NCCL's own {cal.NCCL_BASE_LATENCY_S * 1e6:.1f} µs ="
             f" {cal.HOST_OP_S * 1e6:.1f} µs (calibration.HOST_OP_S: one framework-issued op;"
             f" DeepSpeed ZeRO-3 issues n per collective)", "",
             f"{'id':28s} {'measured':>9s} {'fitted':>9s} {'resid':>7s} {'in use':>9s} {'resid':>7s}"]
    for c in collectives:
        meas = c["busbw_GBps"]
        a = _predicted_busbw(c, **fit)
        b = _predicted_busbw(c, **used)
        lines.append(f"{c['id']:28s} {meas:9.1f} {a:9.1f} {100 * (a / meas - 1):+6.1f}% {b:9.1f} {100 * (b / meas - 1):+6.1f}%")
    # The planner's own function agrees with the in-use column (NVLS on for Hopper at 8 GPUs).
    for c in collectives:
        if not _is_ring(c) or not any(c["gpu"].startswith(p) for p in cal.NVLS_ALLREDUCE_EFFICIENCY):
            t = collective_time(c["op"], c["bytes"], Group(c["ranks"], c["ranks"], 1), _node(c["gpu"]))
            planner = bus_factor(c["op"], c["ranks"]) * c["bytes"] / t / 1e9
            assert abs(planner / _predicted_busbw(c, **used) - 1) < 1e-9, c["id"]
    return lines


# ----------------------------------------------------------------------------- compute

SEL22_TABLE4_MS = {  # [SEL22] Table 4: (forward, backward) ms of one layer
    "baseline": (7.7, 11.9), "sp": (7.2, 11.8), "full": (7.7, 19.5),
    "selective": (7.7, 13.2), "selective+sp": (7.2, 13.1),
}
B, S, H, HEADS, T = 4, 2048, 6144, 64, 8  # the 22B layer of Table 4


def _layer_terms() -> dict[str, float]:
    """FLOPs, bytes and TP seconds of the 22B layer on one GPU, as planner/cost/timing/ counts them."""
    cluster = build_cluster(ClusterSpec(gpu="a100_sxm_80gb", gpus_per_node=8, nodes=1))
    gpu = cluster.gpu
    tokens = B * S
    tensor = tokens * H * 2
    group = Group(T, T, 1)
    return {
        "peak": gpu.peak("bf16"), "mamf": cal.mamf_fraction(gpu.id, "bf16"), "hbm": gpu.hbm_bandwidth,
        "linear": 24 * tokens * H * H / T,            # QKV, out-proj, 4h MLP: 2·12h² per token
        "bmm": 2 * 4 * B * S * S * H / T / 2,          # unfused: full s×s, 2× the causal count
        "scores": B * HEADS / T * S * S,
        "elt_sp": tokens * (sum(cal.ELEMENTWISE_BYTES_PER_TOKEN.values()) * H / T
                            + cal.ACTIVATION_BYTES_PER_FFN_UNIT["gelu"] * 4 * H / T),
        "elt": tokens * (sum(cal.ELEMENTWISE_BYTES_PER_TOKEN.values()) * H
                         + cal.ACTIVATION_BYTES_PER_FFN_UNIT["gelu"] * 4 * H / T),
        "tp_sp": 2 * (collective_time("all_gather", tensor, group, cluster)
                      + collective_time("reduce_scatter", tensor, group, cluster)),
        "tp": 2 * collective_time("all_reduce", tensor, group, cluster),
    }


def _size(flops: float, peak: float) -> float:
    return flops / (flops + peak * cal.GEMM_HALF_EFFICIENCY_S)


def fit_compute() -> dict[str, float]:
    """Solve (GEMM fraction of MAMF, HBM efficiency) from SP forward and selective recompute."""
    x = _layer_terms()
    rate = x["peak"] * x["mamf"]
    # Unknowns u = 1/gemm_fraction, w = 1/hbm_efficiency; times are linear in them.
    gemm = (x["linear"] / _size(x["linear"] / 4, x["peak"]) + x["bmm"] / _size(x["bmm"], x["peak"])) / rate
    bmm = x["bmm"] / _size(x["bmm"], x["peak"]) / rate
    f_score = x["scores"] * cal.UNFUSED_ATTENTION_BYTES_PER_SCORE["forward"] / x["hbm"]
    # (1) SP forward: tp_sp + gemm·u + (f_score + elt_sp/hbm)·w = 7.2 ms
    # (2) selective recompute: bmm·u + f_score·w = 13.1 − 11.8 ms
    a1, b1, c1 = gemm, f_score + x["elt_sp"] / x["hbm"], SEL22_TABLE4_MS["sp"][0] / 1e3 - x["tp_sp"]
    a2, b2, c2 = bmm, f_score, (SEL22_TABLE4_MS["selective+sp"][1] - SEL22_TABLE4_MS["sp"][1]) / 1e3
    det = a1 * b2 - a2 * b1
    u, w = (c1 * b2 - c2 * b1) / det, (a1 * c2 - a2 * c1) / det
    return {"gemm_fraction": 1 / u, "hbm_efficiency": 1 / w}


def predicted_table4(gemm_fraction: float, hbm_efficiency: float) -> dict[str, tuple[float, float]]:
    """(forward, backward) ms of each Table 4 configuration under the time model."""
    x = _layer_terms()
    rate = x["peak"] * x["mamf"] * gemm_fraction
    hbm = x["hbm"] * hbm_efficiency
    gemm = x["linear"] / _size(x["linear"] / 4, x["peak"]) / rate
    bmm = x["bmm"] / _size(x["bmm"], x["peak"]) / rate
    sf = x["scores"] * cal.UNFUSED_ATTENTION_BYTES_PER_SCORE["forward"] / hbm
    sb = x["scores"] * cal.UNFUSED_ATTENTION_BYTES_PER_SCORE["backward"] / hbm
    k = cal.ELEMENTWISE_BACKWARD_FACTOR
    out = {}
    for name, sp in (("baseline", False), ("sp", True)):
        tp, elt = (x["tp_sp"], x["elt_sp"]) if sp else (x["tp"], x["elt"])
        fwd = tp + gemm + bmm + sf + elt / hbm
        bwd = tp + 2 * (gemm + bmm) + sb + k * elt / hbm
        out[name] = (fwd, bwd)
    f, b = out["baseline"]
    out["full"] = (f, b + f)  # the forward again, with its TP collectives (methodology §6.2 redo)
    out["selective"] = (f, b + bmm + sf)
    f, b = out["sp"]
    out["selective+sp"] = (f, b + bmm + sf)
    return {k: (1e3 * v[0], 1e3 * v[1]) for k, v in out.items()}


def compute_report() -> list[str]:
    fit = fit_compute()
    used = {"gemm_fraction": cal.GEMM_FRACTION_OF_MAMF, "hbm_efficiency": cal.HBM_EFFICIENCY}
    lines = ["## Compute ([SEL22] Table 4, 22B layer, TP 8, A100; ms per layer)", "",
             f"solved:  GEMM fraction of MAMF = {fit['gemm_fraction']:.3f},"
             f" HBM efficiency = {fit['hbm_efficiency']:.3f}",
             f"in use:  GEMM fraction of MAMF = {used['gemm_fraction']:.3f},"
             f" HBM efficiency = {used['hbm_efficiency']:.3f}", "",
             f"{'configuration':14s} {'measured fwd/bwd':>17s} {'in use fwd/bwd':>16s} {'resid fwd/bwd':>16s}"]
    pred = predicted_table4(**used)
    for name, (mf, mb) in SEL22_TABLE4_MS.items():
        pf, pb = pred[name]
        lines.append(f"{name:14s} {mf:8.1f} {mb:8.1f} {pf:8.2f} {pb:7.2f} {100 * (pf / mf - 1):+7.1f}% {100 * (pb / mb - 1):+6.1f}%")
    return lines


def main() -> int:
    collectives = yaml.safe_load(DATA.read_text())["collectives"]
    print("\n".join(collective_report(collectives) + [""] + compute_report()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
