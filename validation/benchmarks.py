"""Predict every published run of today's engines in validation/data/benchmarks.yaml.

    python validation/benchmarks.py              # print the table
    python validation/benchmarks.py --write      # and rewrite docs/benchmarks.md and its plot

Each row goes through the planner's own path — the plan checked by `planner.engines.rules`
and evaluated by `planner.cost.evaluate.evaluate`, the functions behind `planner estimate` — on a
cluster built by `planner.cost.cluster.build_cluster` and an architecture from
`planner.model.load_architecture` (a preset, or the row's config.json fields). Nothing is fitted
per row: the constants are those of `planner.cost.calibration`, calibrated on all rows together
(docs/benchmarks.md lists them with their sensitivity).

Exit status 1 when a target is missed: median |error| of tokens/s per GPU ≤ 7 %, every row
≤ 20 %, every published layout legal and predicted to fit, no prediction above the hardware.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from planner.cost.cluster import Cluster, build_cluster  # noqa: E402
from planner.cost.engine import EngineTraits  # noqa: E402
from planner.cost.evaluate import Evaluation, evaluate  # noqa: E402
from planner.cost.inputs import model_windows  # noqa: E402
from planner.cost.plan import ParallelDims, Plan  # noqa: E402
from planner.cost.workload import Workload  # noqa: E402
from planner.engines.pipeline_layout import expand, stage_counts  # noqa: E402
from planner.engines.profiles import engine_traits  # noqa: E402
from planner.engines.rules import plan_problems  # noqa: E402
from planner.model import load_architecture  # noqa: E402
from planner.spec.cluster import ClusterSpec  # noqa: E402

DATA = ROOT / "validation" / "data" / "benchmarks.yaml"
GiB = 2**30

MEDIAN_TARGET = 0.07
MAX_TARGET = 0.20

ENGINE = {"megatron": "megatron", "torchtitan": "torchtitan", "fsdp2": "fsdp2"}
"""Engine of a row → the planner's engine, whose traits the memory and time models charge
(planner/engines/profiles/): Megatron-Core runs Transformer Engine's fused kernels; torchtitan and
NeMo AutoModel run PyTorch modules (eager norms and activations) under FSDP2."""


@dataclass(frozen=True)
class Case:
    id: str
    engine: str
    gpu: str
    published: float
    """Tokens per second per GPU as printed."""
    workload: Workload
    plan: Plan
    cluster: Cluster
    row: dict


@dataclass(frozen=True)
class Result:
    case: Case
    evaluation: Evaluation
    problems: tuple[str, ...]

    @property
    def predicted(self) -> float:
        return self.evaluation.time.tokens_per_s / self.case.cluster.world

    @property
    def error(self) -> float:
        """Signed relative error, (predicted − published) / published."""
        return self.predicted / self.case.published - 1


def _cluster(row: dict, networks: dict) -> Cluster:
    net = networks[row["network"]]
    gpus, per_node = row["gpus"], row["gpus_per_node"]
    nodes = max(1, gpus // per_node)
    gpu = row["gpu"]
    if isinstance(gpu, dict):
        gpu = {k: v for k, v in gpu.items()}
    inter = None
    if nodes > 1:
        inter = {"nic_gbps": net["nic_gbps"], "nics_per_node": net["nics_per_gpu"] * per_node, "kind": net["kind"]}
    spec = ClusterSpec(gpu=gpu, gpus_per_node=per_node, nodes=nodes, inter_node=inter)
    return build_cluster(spec, str(DATA))


def _partition(row: dict, pp: int) -> tuple[int | None, int | None]:
    """(first, last) stage layers of a Megatron pipeline layout, or the default split."""
    layout = row.get("pipeline_layout")
    if not layout:
        return None, None
    counts, _ = stage_counts(expand(layout), pp)
    return counts[0], counts[-1]


def plan_of(row: dict) -> Plan:
    """The row's layout as a plan, key for key."""
    tp, pp, cp = row["tp"], row["pp"], row["cp"]
    dp = row["gpus"] // (tp * pp * cp)
    mbs = row["mbs"]
    first, last = _partition(row, pp)
    recompute = row["recompute"]
    layers = row.get("recompute_layers")
    modules = row.get("recompute_modules")
    return Plan(
        # Megatron-Bridge and torchtitan run tensor parallelism with sequence parallelism.
        parallel=ParallelDims(tp=tp, pp=pp, dp=dp, cp=cp, ep=row["ep"], vpp=row["vp"], sp=tp > 1),
        zero=row["zero"], recompute=recompute, mbs=mbs, gas=row["global_batch"] // (mbs * dp),
        precision=_precision(row), first_stage_layers=first, last_stage_layers=last,
        recompute_layers=None if layers is None else (layers,) * pp,
        etp=row.get("etp"), recompute_modules=None if modules is None else tuple(modules),
        offload_activation_layers=row.get("activation_offload_layers", 0),
        moment_dtype=row.get("moment_dtype", "fp32"),
        fp8_param_gather=row.get("fp8_param_gather", False), pipeline_runs=row.get("pipeline_runs", 1),
    )


def _precision(row: dict) -> str:
    """The planner's precision for a row. NeMo AutoModel loads the model in its config's dtype
    (bfloat16) and FSDP2 keeps those bf16 parameters as the optimizer's, so AdamW's moments are
    bf16 too: no fp32 master copy (nemo_automodel 0.7 components/distributed/config.py: "pair
    with model.torch_dtype: float32 for fp32 optimizer state"), which is the planner's
    bf16-pure. torchtitan keeps fp32 sharded parameters under FSDP2's MixedPrecisionPolicy
    (bf16 compute, fp32 reduce): bf16 mixed precision."""
    if row["engine"] == "fsdp2" and row["precision"] == "bf16":
        return "bf16-pure"
    return row["precision"]


def _traits(row: dict, arch=None) -> EngineTraits:
    """The engine's traits with what the row states about its run: Megatron-Core's token
    dispatcher (`moe_dispatcher`: alltoall, or flex with DeepEP / HybridEP, which sends a token
    once per remote node) and whether its all-to-alls overlap another micro-batch's compute
    (`ep_overlap`)."""
    traits = engine_traits(ENGINE[row["engine"]])
    dispatcher = row.get("moe_dispatcher")
    if dispatcher is not None:
        traits = replace(traits, moe_dispatch="alltoall" if dispatcher == "alltoall" else "deduplicated")
    if row["source"] == "automodel":
        # NeMo AutoModel runs its own model code, not transformers': Transformer Engine's fused
        # RoPE (BackendConfig.rope_fusion), a compiled fp32 RMSNorm and, in the DeepEP experts,
        # Megatron-Core's fused weighted SwiGLU (planner/cost/engine.py cites the source); its
        # experts dispatch through DeepEP, which sends a token once per remote node; its recipe
        # frees the model's output before backward, and its pipeline stages reduce their
        # gradients once the run's backwards are done (planner/cost/engine.py cites the sources).
        traits = replace(traits, fused_rope=True, fused_norm=True, fused_moe_activation=True,
                         moe_dispatch="deduplicated", output_freed_before_backward=True, transformers_modules=False,
                         pipeline_deferred_sync=True)
        if arch is not None and arch.moe is not None:
            # Its MoE parallelizer keeps every block gathered after forward (planner/cost/engine.py).
            traits = replace(traits, reshard_after_forward=False)
    return replace(traits, ep_overlap=bool(row.get("ep_overlap", False)))


def load_cases(path: Path = DATA) -> list[Case]:
    data = yaml.safe_load(path.read_text())
    cases = []
    for row in data["rows"]:
        arch = load_architecture(row["model"], file=str(path))
        workload = Workload(arch=arch, training="pretrain", seq_len=row["seq_len"],
                            global_batch=row["global_batch"], engine=_traits(row, arch),
                            layer_windows=model_windows(row["model"], arch, file=str(path)))
        cluster = _cluster(row, data["networks"])
        gpu = row["gpu"] if isinstance(row["gpu"], str) else row["gpu"]["id"]
        cases.append(Case(row["id"], row["engine"], gpu, float(row["published"]["tokens_per_s_per_gpu"]),
                          workload, plan_of(row).with_(framework=ENGINE[row["engine"]]), cluster, row))
    return cases


def predict(case: Case) -> Result:
    problems = tuple(plan_problems(case.plan, case.workload, case.cluster))
    return Result(case, evaluate(case.plan, case.workload, case.cluster), problems)


def run_all(path: Path = DATA) -> list[Result]:
    return [predict(c) for c in load_cases(path)]


def summary(results: list[Result]) -> tuple[float, float]:
    """(median, max) |error| of tokens/s per GPU."""
    errors = [abs(r.error) for r in results]
    return statistics.median(errors), max(errors)


def failures(results: list[Result]) -> list[str]:
    out = []
    med, _ = summary(results)
    if med > MEDIAN_TARGET:
        out.append(f"median |error| {100 * med:.1f}% > {100 * MEDIAN_TARGET:.0f}%")
    for r in results:
        if abs(r.error) > MAX_TARGET:
            out.append(f"{r.case.id}: |error| {100 * abs(r.error):.1f}% > {100 * MAX_TARGET:.0f}%")
        if not r.evaluation.fits:
            out.append(f"{r.case.id}: published layout predicted NOT to fit: {r.evaluation.why_not()}")
        if r.problems:
            out.append(f"{r.case.id}: layout rejected by planner.engines.rules: {'; '.join(r.problems)}")
        if r.evaluation.time.mfu > 1:
            out.append(f"{r.case.id}: MFU {r.evaluation.time.mfu:.2f} above the hardware's peak")
    return out


def where_time_goes(r: Result) -> str:
    """The step's largest parts, as shares of the step."""
    t = r.evaluation.time
    parts = {"compute": t.compute, "recompute": t.recompute, "bubble": t.bubble, "tp": t.tp, "cp": t.cp,
             "ep": t.ep, "pp": t.pp, "dp": t.dp, "optimizer": t.optimizer + t.offload}
    top = sorted(((v / t.step, k) for k, v in parts.items() if v > 0), reverse=True)[:4]
    return " ".join(f"{k} {100 * share:.0f}%" for share, k in top)


def table(results: list[Result]) -> list[str]:
    lines = [f"{'row':44} {'pred':>8} {'publ':>8} {'error':>7} {'MFU':>5} {'fits (GiB)':>16}  where the time goes"]
    for r in results:
        ev = r.evaluation
        fit = f"{'yes' if ev.fits else 'NO'} {ev.memory.total / GiB:5.1f}/{ev.capacity / GiB:4.1f}"
        lines.append(f"{r.case.id:44} {r.predicted:8.0f} {r.case.published:8.0f} {100 * r.error:+6.1f}%"
                     f" {ev.time.mfu:5.2f} {fit:>16}  {where_time_goes(r)}")
    med, worst = summary(results)
    lines.append(f"median |error| {100 * med:.1f}%, max {100 * worst:.1f}%")
    return lines


def markdown_rows(results: list[Result]) -> list[str]:
    out = []
    for r in results:
        ev = r.evaluation
        fit = f"{'yes' if ev.fits else '**NO**'} ({ev.memory.total / GiB:.1f} / {ev.capacity / GiB:.1f})"
        out.append(f"| {r.case.id} | {r.predicted:,.0f} | {r.case.published:,.0f} | {100 * r.error:+.1f}% |"
                   f" {ev.time.mfu:.2f} | {fit} | {where_time_goes(r)} |")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite docs/benchmarks.md and its plot")
    args = parser.parse_args(argv)
    results = run_all()
    print("\n".join(table(results)))
    missed = failures(results)
    for line in missed:
        print("MISSED:", line)
    if args.write:
        sys.path.insert(0, str(ROOT / "validation"))
        from benchmarks_doc import write_docs  # noqa: PLC0415

        write_docs(results, summary, markdown_rows(results), run_all, MEDIAN_TARGET, MAX_TARGET, failures)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
