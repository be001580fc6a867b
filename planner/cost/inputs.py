"""From files to the models' inputs: the one place that reads cluster and job files."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from hardware import Accelerator
from planner.cost.cluster import Cluster, build_cluster
from planner.cost.partial import PartialTraining
from planner.cost.plan import (
    KEY_ALIASES,
    MOMENT_DTYPES,
    OFFLOAD_CHOICES,
    PLAN_KEYS,
    QUANT_CHOICES,
    RECOMPUTE_MODULES,
    RECOMPUTE_POLICIES,
    ParallelDims,
    Plan,
    PlanError,
)
from planner.cost.timing.compute import COMPUTE_DTYPE
from planner.cost.timing.step import MFU_PEAK_DTYPE
from planner.cost.workload import JobDefaults, Workload
from planner.model import load_architecture
from planner.model.context import layer_windows
from planner.model.loading import read_config_file
from planner.model.presets import list_presets, preset_config
from planner.spec import JobSpec, load_cluster, load_job
from planner.spec.errors import InputError, did_you_mean, shown
from planner.spec.job import Optimizer, Precision
from planner.spec.plan_keys import AUTO, resolve_framework


@dataclass(frozen=True)
class JobInputs:
    workload: Workload
    job: JobSpec
    defaults: JobDefaults
    job_file: str
    framework: str = AUTO
    """The engine the job runs on (job.yaml `framework:`, or `--framework`), or `auto`."""


@dataclass(frozen=True)
class Inputs:
    cluster: Cluster
    workload: Workload
    job: JobSpec
    defaults: JobDefaults
    cluster_file: str
    job_file: str
    framework: str = AUTO
    """The engine the job runs on (job.yaml `framework:`, or `--framework`), or `auto`: every
    engine that can run it. `workload` has Megatron-Core's traits; the engines layer gives each
    engine's (planner.engines.profiles.engine_workload)."""


def load_job_inputs(job_path: str | Path, gpu: Accelerator | None = None, framework: str | None = None) -> JobInputs:
    """The job: its architecture, workload and plan defaults; its precision checked against
    `gpu` when given (capacity planning reads the job alone). `framework` (the `--framework`
    option) overrides the job's `framework:`."""
    job = load_job(job_path)
    engine = job.framework if framework is None else resolve_framework(framework, field="--framework")
    arch = load_architecture(job.model, base_dir=Path(job_path).parent, file=str(job_path))
    targets = tuple(job.lora.targets) if job.lora else ()
    workload = Workload(arch=arch, training=job.training, seq_len=job.seq_len,
                        global_batch=job.global_batch, lora_targets=targets, tokens=job.tokens,
                        partial=_partial(job, arch, str(job_path)),
                        layer_windows=model_windows(job.model, arch, Path(job_path).parent, str(job_path)))
    defaults = JobDefaults(
        precision=job.precision,
        optimizer=job.optimizer,
        lora_ranks=job.lora.ranks if job.lora else (0,),
        quant=job.base_quant,
    )
    _check_precision(job.precision, gpu, str(job_path))
    allowed = job.constraints.get("precision")
    for precision in (allowed.values or ()) if allowed else ():
        _check_precision(precision, gpu, str(job_path), field="constraints.precision")
    return JobInputs(workload=workload, job=job, defaults=defaults, job_file=str(job_path), framework=engine)


def model_windows(model: str | dict, arch, base_dir: Path | None = None,
                  file: str | None = None) -> tuple[int | None, ...] | None:
    """Keys each layer attends to (planner.model.context.layer_windows) from the config.json
    fields the model came from: a preset's, an inline mapping's, or the file's; None when every
    layer attends to the whole sequence."""
    if isinstance(model, dict):
        cfg = model if "config" not in model else read_config_file(model["config"], base_dir, file, "model.config")[1]
    elif model in list_presets():
        cfg = preset_config(model)
    else:
        cfg = read_config_file(model, base_dir, file)[1]
    try:
        windows = layer_windows(arch, cfg)
    except InputError as error:
        raise error.located(file=file, field_prefix="model") from None
    return windows if any(w is not None for w in windows) else None


def _check_precision(precision: str, gpu: Accelerator | None, job_file: str | None,
                     field: str = "precision") -> None:
    """The job's precision on the GPU's tensor cores, and within what the models cover."""
    def fail(message: str) -> InputError:
        return InputError(message, file=job_file, field=field)

    if gpu is not None:
        if precision == "fp8" and not gpu.supports("fp8"):
            raise fail(f"{gpu.id} has no fp8 tensor cores; use bf16")
        if precision == "mxfp8" and not gpu.supports("mxfp8"):
            raise fail(f"{gpu.id} has no mxfp8 (block-scaled fp8) tensor cores;"
                       f" use {'fp8' if gpu.supports('fp8') else 'bf16'}")
        if precision == "nvfp4" and not gpu.supports("nvfp4"):
            fallback = next(p for p in ("mxfp8", "fp8", "bf16") if p == "bf16" or gpu.supports(p))
            raise fail(f"{gpu.id} has no nvfp4 (block-scaled fp4) tensor cores; use {fallback}")
        if precision.startswith("bf16") and not gpu.supports("bf16"):
            raise fail(f"{gpu.id} has no bf16 support; use fp16")
        missing = missing_peak(precision, gpu)
        if missing:
            raise fail(f"{missing}; use bf16")


def missing_peak(precision: str, gpu: Accelerator) -> str | None:
    """Why `gpu` cannot time `precision`, or None: the step time divides by the GPU's peak at the
    precision's GEMM dtype and the MFU by its reference peak (timing/compute.py, timing/step.py),
    and the catalog gives no fp32 or tf32 peak for Gaudi and TPU parts."""
    for dtype in sorted({COMPUTE_DTYPE.get(precision, "bf16"), MFU_PEAK_DTYPE.get(precision, "bf16")}):
        try:
            gpu.peak(dtype)
        except KeyError:
            return f"{gpu.id} has no {dtype} peak in the catalog (`planner gpus`), so {precision} training" \
                   " cannot be timed on it"
    return None


def _partial(job: JobSpec, arch, job_file: str) -> PartialTraining | None:
    """job.yaml `trainable` checked against the model it names."""
    spec = job.trainable
    if spec is None:
        return None
    if spec.layers is not None and max(spec.layers) >= arch.num_layers:
        raise InputError(f"layer {max(spec.layers)} does not exist: {arch.name} has layers 0 to {arch.num_layers - 1}",
                         file=job_file, field="trainable.layers")
    if (spec.experts or spec.router) and arch.moe is None:
        raise InputError(f"{arch.name} is dense: it has no experts or router to train", file=job_file,
                         field="trainable.experts" if spec.experts else "trainable.router")
    if spec.experts and spec.experts > arch.moe.num_experts:
        raise InputError(f"{spec.experts} experts per layer, but {arch.name} has {arch.moe.num_experts}",
                         file=job_file, field="trainable.experts")
    layers = None if spec.layers is None else tuple(sorted(set(spec.layers)))
    return PartialTraining(**{**spec.model_dump(), "layers": layers})


def load_inputs(cluster_path: str | Path, job_path: str | Path, framework: str | None = None) -> Inputs:
    if framework is not None:
        resolve_framework(framework, field="--framework")  # a bad option fails before the files are read
    cluster_spec = load_cluster(cluster_path)
    cluster = build_cluster(cluster_spec, str(cluster_path))
    job = load_job_inputs(job_path, cluster.gpu, framework)
    return Inputs(cluster=cluster, workload=job.workload, job=job.job, defaults=job.defaults,
                  cluster_file=str(cluster_path), job_file=str(job_path), framework=job.framework)


_FLAGS = ("sp", "fp8_param_gather")
_BOOL = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}
_CHOICES = {"recompute": RECOMPUTE_POLICIES, "offload": OFFLOAD_CHOICES, "quant": QUANT_CHOICES,
            "moment_dtype": MOMENT_DTYPES,
            "precision": get_args(Precision),
            "optimizer": get_args(Optimizer)}


def parse_plan_spec(text: str, inputs: Inputs) -> Plan:
    """A plan from `tp=8,pp=4,zero=1,recompute=selective,mbs=1` (docs/cli.md `--plan SPEC`);
    uneven pipelines and partial recompute: `first_stage_layers=6,last_stage_layers=6,
    recompute=full,recompute_layers=4/2/2/0`; Megatron-Core's expert tensor parallelism, selective
    recompute list, activation offload, precision-aware optimizer and fp8 gathers:
    `etp=1,recompute=selective,recompute_modules=layernorm/moe_act,offload_activation_layers=2,
    moment_dtype=bf16,fp8_param_gather=true`; torchtitan's gradient accumulation under PP, one run
    of the pipeline schedule per local batch: `pipeline_runs=4`.

    Omitted keys take the job's defaults; dp is derived from the GPU count, gas from the batch.
    `framework=deepspeed` (any name of an engine) names the engine; without it the plan's
    framework is the job's, which may be `auto` (the engines layer then picks one:
    planner.engines.profiles.default_engine).
    """
    values: dict[str, object] = {}
    for item in text.replace(",", " ").split():
        key, sep, raw = item.partition("=")
        key = KEY_ALIASES.get(key.strip(), key.strip())
        if key in _FLAGS and not sep:
            raw, sep = "true", "="
        if not sep or not raw:
            raise InputError(f"{shown(item)} is not key=value", field="--plan")
        if key not in PLAN_KEYS:
            raise InputError(f"unknown key {shown(key)}{did_you_mean(key, PLAN_KEYS)}; valid keys: {', '.join(PLAN_KEYS)}",
                             field="--plan")
        if key == "framework":
            values[key] = resolve_framework(raw, field="--plan")
        elif key in _FLAGS:
            if raw.lower() not in _BOOL:
                raise InputError(f"{key}={shown(raw)}: use true or false", field="--plan")
            values[key] = _BOOL[raw.lower()]
        elif key == "recompute_modules":
            modules = tuple(m for m in raw.split("/") if m)
            bad = [m for m in modules if m not in RECOMPUTE_MODULES]
            if bad or not modules:
                raise InputError(f"recompute_modules={raw!r}: modules separated by '/', valid:"
                                 f" {', '.join(RECOMPUTE_MODULES)}", field="--plan")
            values[key] = modules
        elif key == "recompute_layers":
            values[key] = tuple(_plan_integer(key, r, 0) for r in raw.split("/"))
        elif key in _CHOICES:
            if raw not in _CHOICES[key]:
                raise InputError(f"{key}={shown(raw)}: valid: {', '.join(_CHOICES[key])}", field="--plan")
            values[key] = raw
        else:
            low = 0 if key in ("zero", "lora_rank", "offload_activation_layers") else 1
            values[key] = _plan_integer(key, raw, low)
    world = inputs.cluster.world
    tp, pp, cp = (int(values.get(k, 1)) for k in ("tp", "pp", "cp"))
    if "dp" in values:
        dp = int(values["dp"])
    else:
        if world % (tp * pp * cp):
            raise InputError(f"tp({tp}) * pp({pp}) * cp({cp}) = {tp * pp * cp} does not divide the {world} GPUs",
                             field="--plan")
        dp = world // (tp * pp * cp)
    mbs = int(values.get("mbs", 1))
    if "gas" in values:
        gas = int(values["gas"])
    else:
        if inputs.workload.global_batch % (mbs * dp):
            raise InputError(f"global batch {inputs.workload.global_batch} does not divide by mbs({mbs}) * dp({dp})",
                             field="--plan")
        gas = inputs.workload.global_batch // (mbs * dp)
    d = inputs.defaults
    plan = Plan(
        parallel=ParallelDims(tp=tp, pp=pp, dp=dp, cp=cp, ep=int(values.get("ep", 1)),
                              vpp=int(values.get("vpp", 1)), sp=bool(values.get("sp", False))),
        zero=int(values.get("zero", 0)),
        recompute=values.get("recompute", "none"),
        mbs=mbs, gas=gas,
        lora_rank=int(values.get("lora_rank", d.lora_ranks[0])),
        quant=values.get("quant", d.quant),
        precision=str(values.get("precision", d.precision)),
        offload=values.get("offload", "none"),
        optimizer=str(values.get("optimizer", d.optimizer)),
        first_stage_layers=values.get("first_stage_layers"),
        last_stage_layers=values.get("last_stage_layers"),
        recompute_layers=_per_stage(values.get("recompute_layers"), pp),
        etp=values.get("etp"),
        recompute_modules=values.get("recompute_modules"),
        offload_activation_layers=int(values.get("offload_activation_layers", 0)),
        moment_dtype=values.get("moment_dtype", "fp32"),
        fp8_param_gather=values.get("fp8_param_gather"),  # None: the engine's default (rules.engine_defaults)
        pipeline_runs=int(values.get("pipeline_runs", 1)),
        framework=str(values.get("framework", inputs.framework)),
    )
    _check_plan(plan, inputs)
    return plan


PLAN_INTEGER_MAX = 2**31
"""The largest integer `--plan` reads: any degree, batch or layer count beyond it exceeds the
bounds of the cluster and job files (cluster.py, job.py)."""


def _plan_integer(key: str, raw: str, low: int) -> int:
    """An integer value of `--plan`, from `low` to PLAN_INTEGER_MAX."""
    text = raw.strip()
    value = int(text) if text.lstrip("+-").isdigit() and len(text) <= 12 else None
    if value is None or not low <= value <= PLAN_INTEGER_MAX:
        what = "a count per pipeline stage, e.g. 4/2/2/0, or one count for every stage" \
            if key == "recompute_layers" else "an integer"
        raise InputError(f"{key}={shown(raw)}: must be {what} from {low} to {PLAN_INTEGER_MAX:,}", field="--plan")
    return value


def _check_plan(plan: Plan, inputs: Inputs) -> None:
    """What a plan spec sets that only makes sense with other keys: pipeline stages and chunks need
    pp > 1 and whole layers on every stage; the precision needs the GPU's peaks."""
    layers = inputs.workload.arch.num_layers
    if plan.parallel.vpp > 1 and plan.parallel.pp == 1:
        raise InputError(f"vpp={plan.parallel.vpp}: interleaved pipeline chunks need pp > 1", field="--plan")
    try:
        partition = plan.layer_partition(layers)
    except PlanError:
        partition = None  # rules.plan_problems says why, with the rest of what is wrong
    if partition is not None and min(partition) < 1:
        shown_partition = "/".join(map(str, partition))
        raise InputError(f"first_stage_layers/last_stage_layers leave {shown_partition} layers per stage of the"
                         f" {layers}; every stage needs at least one", field="--plan")
    _check_precision(plan.precision, inputs.cluster.gpu, None, field="--plan")


def _per_stage(counts: tuple[int, ...] | None, pp: int) -> tuple[int, ...] | None:
    """`recompute_layers=4` means 4 on every stage (Megatron --recompute-num-layers)."""
    return counts * pp if counts is not None and len(counts) == 1 else counts

