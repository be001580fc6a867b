"""torchtitan job TOML files to plans (engine torchtitan, kernel family `hf`: torchtitan_emit.py says why).

Sections, keys and defaults of torchtitan 0.2.2 (torchtitan/config/job_config.py): a key the file
leaves out takes JobConfig's default, as ConfigManager fills it. The data-parallel degrees,
FSDP, DDP and mixed-precision rules follow distributed/parallel_dims.py, the models' parallelize
functions and distributed/utils.py `maybe_enable_amp`; batch and gradient accumulation follow
train.py (global_batch_size -1 = local_batch_size x data-parallel degree; under pipeline
parallelism each accumulated local batch is one run of the schedule, `Plan.pipeline_runs`);
pipeline stages follow distributed/pipeline_parallel.py. The model's shape is the job's; a shipped flavor of another
shape, or a flavor registered by code (experimental.custom_import, which the planner never runs),
is a warning.
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from planner.cost.inputs import Inputs
from planner.cost.plan import ParallelDims, Plan
from planner.cost.shard import stage_layer_counts
from planner.engines import FrameworkJob, check_runnable, with_framework
from planner.engines.pipeline_layout import stage_counts
from planner.engines.torchtitan_emit import FLOAT8, MX
from planner.engines.torchtitan_models import SHIPPED, model_shape
from planner.spec.errors import InputError, did_you_mean
from planner.spec.reading import read_text

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as the tomli package
    import tomli as tomllib

# Keys that change nothing the planner estimates, by section ("*": the whole section).
_NO_EFFECT = {
    "job": "*", "profiling": "*", "metrics": "*", "lr_scheduler": "*", "checkpoint": "*", "comm": "*",
    "memory_estimation": "*", "debug": "*", "validation": "*",
    "model": {"name", "flavor", "hf_assets_path", "tokenizer_path", "print_after_conversion"},
    "optimizer": {"lr", "beta1", "beta2", "eps", "weight_decay", "implementation"},
    "training": {"dataset", "dataset_path", "max_norm", "steps", "gc_freq", "gc_debug", "dataloader"},
    "parallelism": {"enable_async_tensor_parallel", "pipeline_parallel_schedule_csv", "context_parallel_load_balancer",
                    "context_parallel_rotate_method", "expert_parallel_comm_backend",
                    "pipeline_parallel_expert_parallel_overlap"},
    "activation_checkpoint": {"preserve_rng_state", "determinism_check", "debug", "early_stop",
                              "per_op_sac_force_recompute_mm_shapes_by_fqns", "visualize_memory_budget_pareto"},
    "quantize": "*", "experimental": {"custom_args_module"},
}
_NOT_MODELLED = {
    "optimizer.early_step_in_backward": "steps each parameter in backward and frees its gradient (less memory)",
    "parallelism.disable_loss_parallel": "gathers full-vocabulary logits on every TP rank (more memory)",
    "compile.enable": "torch.compile fuses kernels and may keep fewer activations; not modelled",
    "fault_tolerance.enable": "TorchFT replicas; the planner counts one replica group",
    "activation_checkpoint.memory_budget": "the budget mode's recompute choice; planned as selective",
}
_SECTIONS = frozenset("""job profiling metrics model optimizer lr_scheduler training parallelism checkpoint
activation_checkpoint compile quantize comm memory_estimation fault_tolerance experimental validation debug""".split())
_SINGLE_STAGE = ("1F1B", "GPipe")  # torch.distributed.pipelining PipelineScheduleSingle subclasses


class _Toml:
    def __init__(self, config: dict, file: str):
        self.config, self.file = config, file
        self.read: dict[str, object] = {}
        self.warnings: list[str] = []

    def error(self, key: str, message: str) -> InputError:
        return InputError(message, file=self.file, field=key)

    def get(self, section: str, key: str, default=None, kind: type | tuple = int, minimum: int | None = 1):
        values = self.config.get(section, {})
        if not isinstance(values, dict):
            raise self.error(section, f"must be a table, got {values!r}")
        if key not in values:
            return default
        value = values[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)) or \
                (minimum is not None and isinstance(value, int) and not isinstance(value, bool) and value < minimum):
            raise self.error(f"{section}.{key}", f"must be {_KINDS.get(kind, 'a string')}"
                             f"{f' >= {minimum}' if kind is int and minimum is not None else ''}, got {value!r}")
        self.read[f"{section}.{key}"] = value
        return value


_KINDS = {int: "an integer", bool: "true or false", str: "a string", list: "a list"}


def parse_torchtitan(path: str | Path, inputs: Inputs) -> FrameworkJob:
    """The plan a torchtitan job TOML runs for the job on the cluster."""
    text = read_text(path)
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"not valid TOML: {error}", file=str(path)) from None
    return parse_torchtitan_config(config, inputs, str(path))


def parse_torchtitan_config(config: dict, inputs: Inputs, file: str = "<job.toml>") -> FrameworkJob:
    t = _Toml(config, file)
    arch, job, world = inputs.workload.arch, inputs.job, inputs.cluster.world
    replicate = t.get("parallelism", "data_parallel_replicate_degree", 1)
    shard = t.get("parallelism", "data_parallel_shard_degree", -1, minimum=None)
    tp = t.get("parallelism", "tensor_parallel_degree", 1)
    pp = t.get("parallelism", "pipeline_parallel_degree", 1)
    cp = t.get("parallelism", "context_parallel_degree", 1)
    ep = t.get("parallelism", "expert_parallel_degree", 1)
    if shard == -1:  # ParallelDims._validate
        if world % (replicate * cp * tp * pp):
            raise t.error("parallelism.data_parallel_shard_degree", f"-1 (the rest) does not divide: {world} GPUs /"
                          f" (replicate {replicate} x cp {cp} x tp {tp} x pp {pp})")
        shard = world // (replicate * cp * tp * pp)
    if shard < 1 or replicate * shard * cp * tp * pp != world:
        raise t.error("parallelism.data_parallel_shard_degree", f"dp_replicate({replicate}) x dp_shard({shard}) x"
                      f" cp({cp}) x tp({tp}) x pp({pp}) != the cluster's {world} GPUs (ParallelDims asserts it)")
    fsdp, dp = shard > 1 or cp > 1, replicate * shard
    if not fsdp and replicate > 1 and replicate != world:
        raise t.error("parallelism.data_parallel_replicate_degree", "DDP with other parallel dimensions:"
                      " torchtitan raises 'DDP has not supported > 1D parallelism'")
    if replicate > 1 and fsdp:
        t.warnings.append(f"HSDP: data_parallel_replicate_degree {replicate} x data_parallel_shard_degree {shard}; the"
                          " planner shards over all of them (model states under-estimated)")
    etp = t.get("parallelism", "expert_tensor_parallel_degree", 1)
    if ep > 1 and etp != tp:
        t.warnings.append(f"expert_tensor_parallel_degree {etp} with tp {tp}: the planner splits experts over tp as"
                          " well; expert memory and time are for that split")
    zero = _zero(t, fsdp, pp)
    precision = _precision(t, fsdp, tp, pp, job.precision)
    first, last, vpp, counts = _stages(t, arch.num_layers, pp)
    mbs, gas, runs, global_batch = _batch(t, dp, pp, job.global_batch)
    seq_len = t.get("training", "seq_len", 2048)
    if seq_len != job.seq_len:
        t.warnings.append(f"training.seq_len {seq_len} differs from the job's seq_len {job.seq_len}; planned with the"
                          " file's")
    recompute, recompute_layers = _recompute(t, counts)
    offload = "optimizer+params" if t.get("training", "enable_cpu_offload", False, bool) else "none"
    plan = Plan(parallel=ParallelDims(tp=tp, pp=pp, dp=dp, cp=cp, ep=ep, vpp=vpp, sp=tp > 1), zero=zero,
                recompute=recompute, mbs=mbs, gas=gas, precision=precision, offload=offload,
                optimizer=_optimizer(t, job.optimizer), first_stage_layers=first, last_stage_layers=last,
                recompute_layers=recompute_layers, pipeline_runs=runs)
    _model(t, arch)
    _unread(t)
    if inputs.workload.trains_adapters:
        raise InputError(f"training: {job.training} needs LoRA adapters, which torchtitan does not train; use"
                         " training: pretrain or full", file=inputs.job_file, field="training")
    workload = with_framework(replace(inputs.workload, global_batch=global_batch, seq_len=seq_len), "torchtitan")
    check_runnable(plan, workload, inputs.cluster, file)
    return FrameworkJob(framework="torchtitan", file=file, plan=plan, workload=workload, warnings=tuple(t.warnings),
                        read=t.read)


def _zero(t: _Toml, fsdp: bool, pp: int) -> int:
    policy = t.get("parallelism", "fsdp_reshard_after_forward", "default", str)
    if policy not in ("default", "always", "never"):
        raise t.error("parallelism.fsdp_reshard_after_forward", f"{policy!r}: valid: default, always, never")
    if not fsdp:
        return 0
    # apply_fsdp: "default" reshards unless pipeline parallelism is on.
    return 2 if policy == "never" or (policy == "default" and pp > 1) else 3


def _precision(t: _Toml, fsdp: bool, tp: int, pp: int, job_precision: str) -> str:
    dtype = t.get("training", "dtype", "float32", str)
    param = t.get("training", "mixed_precision_param", "bfloat16", str)
    converters = t.get("model", "converters", [], list)
    for name in converters:
        if name not in (FLOAT8, "float8", MX, "mx"):
            t.warnings.append(f"model.converters {name}: not modelled")
    if dtype not in ("float32", "bfloat16"):
        raise t.error("training.dtype", f"{dtype!r}: valid: float32, bfloat16")
    if dtype == "bfloat16":
        precision = "bf16-pure"
    elif any(n in (MX, "mx") for n in converters):
        precision = "mxfp8"
    elif any(n in (FLOAT8, "float8") for n in converters):
        precision = "fp8"
    elif param == "float32":
        precision = "fp32"
    elif not fsdp and (tp > 1 or pp > 1):
        t.warnings.append("mixed_precision_param bfloat16 with tp or pp but no FSDP: torchtitan trains in fp32"
                          " (maybe_enable_amp); planned as fp32")
        precision = "fp32"
    else:
        precision = "bf16"
    if precision != job_precision:
        t.warnings.append(f"the file trains in {precision}; the job says {job_precision}; planned with the file's")
    return precision


def _stages(t: _Toml, layers: int, pp: int) -> tuple[int | None, int | None, int, tuple[int, ...]]:
    """(first, last, vpp, layers per stage) of the pipeline, as pipeline_llm splits the model."""
    schedule = t.get("parallelism", "pipeline_parallel_schedule", "1F1B", str)
    parts = t.get("parallelism", "module_fqns_per_model_part", None, list)
    if pp == 1:
        return None, None, 1, (layers,)
    if schedule not in ("1F1B", "Interleaved1F1B"):
        t.warnings.append(f"pipeline_parallel_schedule {schedule}: the planner models 1F1B and interleaved 1F1B;"
                          " planned as " + ("1F1B" if schedule in _SINGLE_STAGE else "interleaved 1F1B"))
    if parts is not None:
        stages = []
        for part in parts:
            if not isinstance(part, list):
                raise t.error("parallelism.module_fqns_per_model_part", "must be a list of lists of module names")
            stages.append(("E" if "tok_embeddings" in part else "") + "t" * sum(str(m).startswith("layers.")
                                                                               for m in part)
                          + ("L" if "output" in part else ""))
    else:
        first_less = t.get("parallelism", "pipeline_parallel_first_stage_less_layers", 1)
        last_less = t.get("parallelism", "pipeline_parallel_last_stage_less_layers", 1)
        per = t.get("parallelism", "pipeline_parallel_layers_per_stage", None)
        single = schedule in _SINGLE_STAGE
        total = math.ceil((layers + first_less + last_less) / per) if per else pp * (1 if single else 2)
        stages = _generated_stages(total, layers, first_less, last_less)
    try:
        counts, vpp = stage_counts(stages, pp)
    except ValueError as error:
        raise t.error("parallelism.module_fqns_per_model_part", str(error)) from None
    if sum(counts) != layers:
        raise t.error("parallelism.module_fqns_per_model_part", f"places {sum(counts)} layers; the model has {layers}")
    if pp > 2 and len(set(counts[1:-1])) > 1:
        t.warnings.append(f"pipeline stages of {'/'.join(map(str, counts))} layers: the planner models the middle"
                          " stages equal; planned with the default split")
        return None, None, vpp, stage_layer_counts(layers, pp)
    if counts == stage_layer_counts(layers, pp):
        return None, None, vpp, counts
    return counts[0], counts[-1], vpp, counts


def _generated_stages(stages: int, layers: int, first_less: int, last_less: int) -> list[str]:
    """generate_llm_fqn_per_model_part: the embedding and the output count as first_less and
    last_less layers, and the effective layers are spread evenly, the first stages one more."""
    effective = layers + first_less + last_less
    if stages > effective or effective // stages == 0:
        raise InputError(f"{stages} pipeline stages for {effective} effective layers leave a stage empty",
                         field="parallelism.pipeline_parallel_layers_per_stage")
    per, extra = divmod(effective, stages)
    out = []
    for i in range(stages):
        n = per + (i < extra) - (first_less if i == 0 else 0) - (last_less if i == stages - 1 else 0)
        out.append(("E" if i == 0 else "") + "t" * max(0, n) + ("L" if i == stages - 1 else ""))
    return out


def _batch(t: _Toml, dp: int, pp: int, job_batch: int) -> tuple[int, int, int, int]:
    """(micro-batch, micro-batches per step, pipeline runs per step, global batch): train.py
    accumulates global / (local x dp) steps; under pipeline parallelism each of them is one run of
    the schedule over its local batch, split into micro-batches of
    pipeline_parallel_microbatch_size."""
    local = t.get("training", "local_batch_size", 8)
    global_batch = t.get("training", "global_batch_size", -1, minimum=None)
    if global_batch < 0:
        global_batch = local * dp
    if global_batch % (local * dp):
        raise t.error("training.global_batch_size", f"{global_batch} is not a multiple of local_batch_size {local} x"
                      f" data-parallel degree {dp}")
    accumulation = global_batch // (local * dp)
    mbs = local
    if pp > 1:
        mbs = t.get("parallelism", "pipeline_parallel_microbatch_size", 1)
        if local % mbs:
            raise t.error("parallelism.pipeline_parallel_microbatch_size", f"{mbs} does not divide local_batch_size"
                          f" {local}")
    if global_batch != job_batch:
        t.warnings.append(f"the file's global batch {global_batch} differs from the job's global_batch {job_batch};"
                          " planned with the file's")
    return mbs, accumulation * (local // mbs), accumulation if pp > 1 else 1, global_batch


def _recompute(t: _Toml, counts: tuple[int, ...]) -> tuple[str, tuple[int, ...] | None]:
    mode = t.get("activation_checkpoint", "mode", "selective", str)
    if mode == "none":
        return "none", None
    if mode == "full":
        return "full", None
    if mode == "memory_budget":
        t.warnings.append("activation_checkpoint.mode memory_budget: "
                          + _NOT_MODELLED["activation_checkpoint.memory_budget"])
        return "selective", None
    if mode != "selective":
        raise t.error("activation_checkpoint.mode", f"{mode!r}: valid: selective, full, memory_budget, none")
    option = str(t.get("activation_checkpoint", "selective_ac_option", "2", (str, int)))
    if option == "op":
        t.warnings.append("selective_ac_option op: torchtitan saves matmul and attention outputs and recomputes the"
                          " rest; the planner's selective recompute rebuilds core attention instead")
        return "selective", None
    if not option.isdigit():
        raise t.error("activation_checkpoint.selective_ac_option", f"{option!r}: valid: op or a layer frequency")
    every = int(option)
    if every <= 1:
        return "full", None
    # _apply_layer_sac checkpoints every `every`-th block a rank builds.
    recomputed = tuple(n // every for n in counts)
    return ("full", recomputed) if any(recomputed) else ("none", None)


def _optimizer(t: _Toml, job_optimizer: str) -> str:
    name = t.get("optimizer", "name", "AdamW", str)
    ours = {"AdamW": "adamw", "Adam": "adam"}.get(name)  # components/optimizer.py builds these two
    if ours is None:
        t.warnings.append(f"optimizer.name {name}: torchtitan builds Adam and AdamW only; planned with the job's"
                          f" {job_optimizer}")
        return job_optimizer
    if ours != job_optimizer:
        t.warnings.append(f"optimizer {name} differs from the job's optimizer {job_optimizer}; planned with {ours}")
    return ours


def _model(t: _Toml, arch) -> None:
    name = t.get("model", "name", "llama3", str)
    flavor = t.get("model", "flavor", "debugmodel", str)
    custom = t.get("experimental", "custom_import", "", str)
    shipped = SHIPPED.get((name, flavor))
    if shipped is None:
        source = f", registered by experimental.custom_import {custom} (which the planner does not run)" if custom \
            else ""
        t.warnings.append(f"model {name} {flavor}: not a flavor torchtitan 0.2.2 ships{source}; its shape is not"
                          f" checked; planned with the job's {arch.name}")
    elif shipped != model_shape(arch)[0]:
        t.warnings.append(f"model {name} {flavor} is not the job's {arch.name} (another shape); planned with the job's")


def _unread(t: _Toml) -> None:
    read = {"model": {"converters"}, "optimizer": {"name"},
            "training": {"local_batch_size", "global_batch_size", "seq_len", "dtype", "mixed_precision_param",
                         "mixed_precision_reduce", "enable_cpu_offload"},
            "parallelism": {"data_parallel_replicate_degree", "data_parallel_shard_degree", "tensor_parallel_degree",
                            "pipeline_parallel_degree", "context_parallel_degree", "expert_parallel_degree",
                            "expert_tensor_parallel_degree", "fsdp_reshard_after_forward", "pipeline_parallel_schedule",
                            "module_fqns_per_model_part", "pipeline_parallel_microbatch_size",
                            "pipeline_parallel_layers_per_stage", "pipeline_parallel_first_stage_less_layers",
                            "pipeline_parallel_last_stage_less_layers"},
            "activation_checkpoint": {"mode", "selective_ac_option", "memory_budget"},
            "experimental": {"custom_import"}, "compile": {"components", "backend"},
            "fault_tolerance": set()}
    for section, values in t.config.items():
        if section not in _SECTIONS:
            t.warnings.append(f"[{section}]: not a torchtitan 0.2.2 section{did_you_mean(section, _SECTIONS)}")
            continue
        if not isinstance(values, dict) or _NO_EFFECT.get(section) == "*":
            continue
        for key in values:
            path = f"{section}.{key}"
            if path in _NOT_MODELLED:
                if values[key] is True:
                    t.warnings.append(f"{path}: {_NOT_MODELLED[path]}")
            elif key not in read.get(section, set()) and key not in _NO_EFFECT.get(section, set()):
                t.warnings.append(f"{path}: not read by the planner (its effect on memory and time is not counted)")
