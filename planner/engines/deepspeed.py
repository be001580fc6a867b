"""DeepSpeed configs to plans, and plans to DeepSpeed configs.

Keys, defaults and checks: deepspeed/runtime/config.py (`DeepSpeedConfig`; the batch rules of
`_set_batch_related_parameters` and `_batch_assertion`: train_batch_size = micro-batch x
accumulation x data-parallel size), deepspeed/runtime/zero/config.py and offload_config.py.
"auto" values are those the HF Trainer fills in (transformers/integrations/deepspeed.py,
`trainer_config_process` from TrainingArguments, `trainer_config_finalize` from the model):
batch values come from the job's global batch, ZeRO buckets from the model's hidden size.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from planner.cost.inputs import Inputs
from planner.cost.plan import ParallelDims, Plan
from planner.cost.workload import StateDtypes
from planner.engines import FrameworkJob, check_runnable, with_framework
from planner.engines import deepspeed_keys as K
from planner.model.params import count_params
from planner.spec.errors import InputError, did_you_mean
from planner.spec.reading import read_json_file

_BATCH_KEYS = ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps")


class _Config:
    """Typed access to a DeepSpeed config; errors name the file and the dotted key."""

    def __init__(self, config: dict, file: str):
        self.config, self.file = config, file
        self.read: dict[str, object] = {}
        self.warnings: list[str] = []
        self.states: StateDtypes | None = None

    def error(self, key: str, message: str) -> InputError:
        return InputError(message, file=self.file, field=key)

    def section(self, key: str) -> dict:
        value = self.config.get(key, {})
        if not isinstance(value, dict):
            raise self.error(key, f"must be a JSON object, got {json.dumps(value)}")
        return value

    def get(self, section: dict, key: str, path: str, default=None):
        if key in section:
            self.read[path] = section[key]
        return section.get(key, default)

    def integer(self, section: dict, key: str, path: str, default=None, minimum: int = 0, auto: bool = False):
        """An integer setting; a key DeepSpeed gives a default refuses null (its config models
        type such fields as integers), a key without one reads null as unset."""
        value = self.get(section, key, path, default)
        if value is None and default is not None:
            raise self.error(path, f"must be an integer >= {minimum}, got null (leave it out for {default:g})")
        if value == "auto" and auto:
            return value
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # 5e8 in JSON; DeepSpeed's pydantic fields take it as an integer
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
            extra = ' or "auto"' if auto else ""
            raise self.error(path, f"must be an integer >= {minimum}{extra}, got {json.dumps(value)}")
        return value

    def boolean(self, section: dict, key: str, path: str, default: bool = False, auto: bool = False):
        value = self.get(section, key, path, default)
        if not isinstance(value, bool) and not (auto and value == "auto"):
            extra = ' or "auto"' if auto else ""
            raise self.error(path, f"must be true or false{extra}, got {json.dumps(value)}")
        return value

    def check_keys(self, section: dict, prefix: str, known: set | frozenset, not_modelled: dict[str, str]) -> None:
        for key in section:
            if key in not_modelled:
                self.warnings.append(f"{prefix}{key}: {not_modelled[key]}")
            elif key not in known:
                hint = "" if is_comment(key) else did_you_mean(key, known)
                self.warnings.append(f"{prefix}{key} is not a DeepSpeed key{hint}; DeepSpeed's config models"
                                     " reject unknown keys")


def is_comment(key: str) -> bool:
    """Keys people write as comments in JSON (`_comment`, `//`, `#note`): never a setting."""
    return key.startswith(("_", "#", "//"))


def parse_deepspeed(path: str | Path, inputs: Inputs, *, gradient_checkpointing: bool | None = None,
                    micro_batch: int | None = None) -> FrameworkJob:
    """The plan a DeepSpeed config file runs for the job on the cluster.

    `gradient_checkpointing` and `micro_batch` are the HF Trainer's --gradient_checkpointing and
    --per_device_train_batch_size, which a config written for the Trainer leaves out or sets "auto".
    """
    config = read_json_file(path)
    return parse_deepspeed_config(config, inputs, str(path), gradient_checkpointing=gradient_checkpointing,
                                  micro_batch=micro_batch)


def parse_deepspeed_config(config: dict, inputs: Inputs, file: str = "<config>", *,
                           gradient_checkpointing: bool | None = None, micro_batch: int | None = None) -> FrameworkJob:
    if not isinstance(config, dict):
        raise InputError("a DeepSpeed config is a JSON object", file=file)
    c = _Config(config, file)
    arch, job, world = inputs.workload.arch, inputs.job, inputs.cluster.world
    tp = max(1, c.integer(c.section("tensor_parallel"), "autotp_size", "tensor_parallel.autotp_size", 1))
    cp = _sequence_parallel(c)
    if cp > 1:
        key = "sequence_parallel.size" if "sequence_parallel" in config else "sequence_parallel_size"
        c.warnings.append(f"{key} {cp}: DeepSpeed-Ulysses, modelled as context parallelism"
                          " (the same activation split; all-to-all instead of ring communication)")
    ep = _expert_parallel(c, tp)
    if world % (tp * cp):
        raise c.error("tensor_parallel.autotp_size", f"tp({tp}) * sequence parallel({cp}) = {tp * cp} does not"
                      f" divide the cluster's {world} GPUs")
    dp = world // (tp * cp)
    stated_dp = c.integer(config, "data_parallel_size", "data_parallel_size", None, minimum=1)
    if stated_dp is not None and stated_dp != dp:
        raise c.error("data_parallel_size", f"{stated_dp}, but the cluster's {world} GPUs / (tp {tp} * sequence"
                      f" parallel {cp}) = {dp}")
    zero = c.section("zero_optimization") if not isinstance(config.get("zero_optimization"), bool) \
        else {"stage": int(config["zero_optimization"])}  # the deprecated `"zero_optimization": true` is stage 1
    stage = c.integer(zero, "stage", "zero_optimization.stage", 0)
    if stage > 3:
        raise c.error("zero_optimization.stage", f"must be 0, 1, 2 or 3, got {stage}")
    mbs, gas = _batch(c, dp, job.global_batch, micro_batch)
    global_batch = mbs * gas * dp
    if global_batch != job.global_batch:
        c.warnings.append(f"the config's batch ({mbs} x {gas} accumulation x {dp} data-parallel = {global_batch})"
                          f" differs from the job's global_batch {job.global_batch}; planned with the config's")
    precision = _precision(c, job.precision, stage)
    if precision != job.precision:
        c.warnings.append(f"the config trains in {precision}; the job says {job.precision}; planned with the config's")
    plan = Plan(
        parallel=ParallelDims(tp=tp, pp=1, dp=dp, cp=cp, ep=ep), zero=stage,
        recompute=_recompute(c, gradient_checkpointing, tp), mbs=mbs, gas=gas,
        lora_rank=inputs.defaults.lora_ranks[0], quant=inputs.defaults.quant, precision=precision,
        offload=_offload(c, zero), optimizer=_optimizer(c, job.optimizer),
    )
    buffers = _buckets(c, zero, stage, arch, plan)
    workload = with_framework(replace(inputs.workload, global_batch=global_batch, states=c.states,
                                      framework_buffers=buffers), "deepspeed")
    _unread(c, zero)
    check_runnable(plan, workload, inputs.cluster, file)
    if any(v == "auto" for v in c.read.values()) and gradient_checkpointing is None and plan.recompute == "none":
        c.warnings.append("written for the HF Trainer, whose --gradient_checkpointing is not in this file: planned"
                          " without recompute (check with --gradient-checkpointing if the script enables it)")
    return FrameworkJob(framework="deepspeed", file=file, plan=plan, workload=workload, warnings=tuple(c.warnings),
                        read=c.read, framework_buffers=buffers)


def _sequence_parallel(c: _Config) -> int:
    """Ulysses sequence parallelism: DeepSpeed's `sequence_parallel_size` (deepspeed/runtime/config.py;
    ms-swift and others pass the same key), or LLaMA-Factory's `sequence_parallel: {size, mode}`
    section, which its trainer reads from the same file."""
    size = c.integer(c.config, "sequence_parallel_size", "sequence_parallel_size", None, minimum=1)
    section = c.config.get("sequence_parallel")
    if isinstance(section, int) and not isinstance(section, bool):
        section = {"size": section}
    if section is None:
        return size or 1
    if not isinstance(section, dict):
        raise c.error("sequence_parallel", f"must be a JSON object {{size, mode}}, got {json.dumps(section)}")
    other = c.integer(section, "size", "sequence_parallel.size", 1, minimum=1)
    mode = str(c.get(section, "mode", "sequence_parallel.mode", "ulysses"))
    if mode not in ("ulysses", "ring", "zigzag-ring", "llama3"):
        c.warnings.append(f"sequence_parallel.mode {mode}: modelled as context parallelism over {other} GPUs")
    if size is not None and size != other:
        raise c.error("sequence_parallel.size", f"{other}, but sequence_parallel_size is {size}; give one")
    return other


def _expert_parallel(c: _Config, tp: int) -> int:
    section = c.section("expert_parallel")
    if not c.boolean(section, "enabled", "expert_parallel.enabled", False):
        return 1
    ep = c.integer(section, "autoep_size", "expert_parallel.autoep_size", 1, minimum=1)
    etp = c.integer(section, "expert_tensor_parallel_size", "expert_parallel.expert_tensor_parallel_size", 1, minimum=1)
    if etp != tp:
        c.warnings.append(f"expert_parallel.expert_tensor_parallel_size {etp} with tp {tp}: the planner splits"
                          " experts over tp as well; expert memory and time are for that split")
    return ep


TRAINER_MICRO_BATCH = 8
"""The HF Trainer's default --per_device_train_batch_size (transformers/training_args.py)."""


def _batch(c: _Config, dp: int, job_batch: int, micro_batch: int | None) -> tuple[int, int]:
    """(micro-batch, accumulation steps) by DeepSpeed's rules, after the HF Trainer fills "auto".

    transformers/integrations/deepspeed.py `trainer_config_process` replaces "auto" with
    TrainingArguments: train_micro_batch_size_per_gpu = per_device_train_batch_size (default 8;
    --micro-batch here), gradient_accumulation_steps = gradient_accumulation_steps (taken here as
    what reaches the job's global batch), train_batch_size = world x micro x accumulation. A file
    with "auto" in its batch runs under the Trainer, which fills nothing that is absent: DeepSpeed
    then derives the micro-batch from the filled train_batch_size, which is the Trainer's
    micro-batch again."""
    tb, mb, ga = (c.integer(c.config, k, k, None, minimum=1, auto=True) for k in _BATCH_KEYS)
    if micro_batch is not None:
        if mb == "auto" or (mb is None and tb == "auto"):
            c.read["per_device_train_batch_size"] = micro_batch
        else:
            c.warnings.append(f"--micro-batch {micro_batch} not used: train_micro_batch_size_per_gpu is"
                              f" {json.dumps(mb)}, not \"auto\"")
    if "auto" in (tb, mb, ga):
        if mb == "auto" or (mb is None and tb == "auto"):
            how = "\"auto\"" if mb == "auto" else "absent, derived by DeepSpeed from the Trainer's train_batch_size"
            if micro_batch is None:
                c.warnings.append(f"train_micro_batch_size_per_gpu is {how}: the HF Trainer runs its"
                                  f" --per_device_train_batch_size, default {TRAINER_MICRO_BATCH}; planned with"
                                  f" {TRAINER_MICRO_BATCH} (give --micro-batch N for the value the script passes)")
            mb = micro_batch or TRAINER_MICRO_BATCH
        if ga == "auto" or (ga is None and tb == "auto"):
            if job_batch % (mb * dp):
                raise c.error("gradient_accumulation_steps", f"\"auto\" (the HF Trainer's"
                              f" --gradient_accumulation_steps): the job's global_batch {job_batch} is not a multiple"
                              f" of micro-batch {mb} x data-parallel size {dp}; give --micro-batch N")
            ga = job_batch // (mb * dp)
            state = '"auto"' if "gradient_accumulation_steps" in c.config else "absent"
            c.warnings.append(f"gradient_accumulation_steps is {state}"
                              f" (the HF Trainer's --gradient_accumulation_steps): planned with {ga}, which reaches"
                              f" the job's global_batch {job_batch} with micro-batch {mb} on {dp} data-parallel ranks")
        if tb == "auto":
            tb = mb * (ga or 1) * dp

    def divide(key: str, by: int) -> int:
        if tb % by:
            raise c.error(key, f"train_batch_size {tb} is not a multiple of {by} (the other batch factors x"
                               f" data-parallel size {dp})")
        return tb // by

    # deepspeed/runtime/config.py _set_batch_related_parameters, then _batch_assertion.
    if tb is not None and mb is not None and ga is None:
        ga = divide("gradient_accumulation_steps", mb * dp)
    elif tb is not None and mb is None:
        ga = ga or 1
        mb = divide("train_micro_batch_size_per_gpu", ga * dp)
    elif tb is None and mb is not None:
        ga = ga or 1
    elif tb is None:
        raise c.error("train_micro_batch_size_per_gpu", "set train_batch_size or train_micro_batch_size_per_gpu"
                                                        " (DeepSpeed needs one of them)")
    if tb is not None and tb != mb * ga * dp:
        raise c.error("train_batch_size", f"{tb} != train_micro_batch_size_per_gpu ({mb}) *"
                      f" gradient_accumulation_steps ({ga}) * data-parallel size ({dp})")
    return mb, ga


def _precision(c: _Config, job_precision: str, stage: int) -> str:
    """The training precision as DeepSpeed 0.18+ runs it (deepspeed/runtime/config.py,
    precision_config.py, engine.py `_configure_distributed_model`): with bf16 or fp16 enabled the
    engine casts the parameters to that dtype, torch_autocast or not; the ZeRO optimizer keeps fp32
    master weights, gradients and states unless bf16_master_weights_and_grads (with
    bf16_optimizer_states) keeps them in bf16 (zero/stage_1_and_2.py `master_weights_and_grads_dtype`),
    which is the planner's bf16-pure. torch_autocast alone keeps fp32 parameters and runs the
    linear layers in its dtype (deepspeed/runtime/torch_autocast.py)."""
    bf16_key = "bf16" if "bf16" in c.config or "bfloat16" not in c.config else "bfloat16"
    enabled = {}
    for key, dtype in ((bf16_key, "bf16"), ("fp16", "fp16")):
        section = c.section(key)
        c.check_keys(section, f"{key}.", *K.SECTION_KEYS[dtype])
        value = c.boolean(section, "enabled", f"{key}.enabled", False, auto=True)
        if value == "auto":
            value = job_precision.startswith(dtype) or (dtype == "bf16" and job_precision == "fp8")
            c.warnings.append(f"{key}.enabled is \"auto\" (the HF Trainer's --{dtype}): took the job's precision"
                              f" {job_precision}")
        enabled[dtype] = value
    if enabled["bf16"] and enabled["fp16"]:
        raise c.error("fp16.enabled", "bf16 and fp16 cannot both be enabled (DeepSpeedConfig asserts it)")
    bf16 = c.section(bf16_key)
    master = c.boolean(bf16, "bf16_master_weights_and_grads", f"{bf16_key}.bf16_master_weights_and_grads", False)
    states = c.boolean(bf16, "bf16_optimizer_states", f"{bf16_key}.bf16_optimizer_states", False)
    if states and not master:
        raise c.error(f"{bf16_key}.bf16_optimizer_states", "needs bf16_master_weights_and_grads: true"
                      " (DeepSpeedConfig asserts it)")
    if master and stage == 0:
        raise c.error(f"{bf16_key}.bf16_master_weights_and_grads", "needs zero_optimization.stage 1, 2 or 3"
                      " (DeepSpeedConfig asserts it)")
    autocast = c.section("torch_autocast")
    c.check_keys(autocast, "torch_autocast.", *K.SECTION_KEYS["torch_autocast"])
    autocast_on = c.boolean(autocast, "enabled", "torch_autocast.enabled", False)
    dtype = str(c.get(autocast, "dtype", "torch_autocast.dtype", "bfloat16")) if autocast_on else None
    if enabled["bf16"]:
        if master and not states:
            c.states = StateDtypes(moments=8)
            c.warnings.append(f"{bf16_key}.bf16_master_weights_and_grads without bf16_optimizer_states: bf16 master"
                              " weights and gradients, fp32 Adam moments")
        if autocast_on:
            c.warnings.append("torch_autocast with bf16 enabled: the engine keeps the parameters in bf16, and"
                              " autocast runs the linear layers in bf16 on them (no fp32 weights, no cast copies);"
                              " counted as bf16 modules")
        return "bf16-pure" if master else "bf16"
    if master:
        c.warnings.append(f"{bf16_key}.bf16_master_weights_and_grads with bf16 disabled: has no effect")
    if enabled["fp16"]:
        return "fp16"
    if autocast_on:
        if dtype not in ("bfloat16", "bf16", "torch.bfloat16"):
            c.warnings.append(f"torch_autocast.dtype {dtype}: counted like bf16 autocast (fp32 weights and states)")
        return "bf16-autocast"
    return "fp32"


def _recompute(c: _Config, gradient_checkpointing: bool | None, tp: int) -> str:
    section = c.section("activation_checkpointing")
    c.check_keys(section, "activation_checkpointing.", *K.SECTION_KEYS["activation_checkpointing"])
    if c.boolean(section, "partition_activations", "activation_checkpointing.partition_activations") and tp > 1:
        c.warnings.append("activation_checkpointing.partition_activations splits checkpoints over the TP ranks;"
                          " the planner keeps them whole (activations over-estimated)")
    if c.boolean(section, "cpu_checkpointing", "activation_checkpointing.cpu_checkpointing"):
        c.warnings.append("activation_checkpointing.cpu_checkpointing moves checkpoints to the host; the planner"
                          " keeps them on the GPU (activations over-estimated)")
    if gradient_checkpointing is not None:
        c.read["gradient_checkpointing"] = gradient_checkpointing
        if not gradient_checkpointing and "activation_checkpointing" in c.config:
            c.warnings.append("activation_checkpointing is configured but gradient checkpointing is off: no layer"
                              " is checkpointed")
        return "full" if gradient_checkpointing else "none"
    if "activation_checkpointing" in c.config:
        c.warnings.append("activation_checkpointing only configures checkpointing; assumed the model checkpoints"
                          " every layer (HF --gradient_checkpointing or Megatron-DeepSpeed --checkpoint-activations)")
        return "full"
    return "none"


def _offload(c: _Config, zero: dict) -> str:
    devices = {}
    for kind, legacy in (("optimizer", "cpu_offload"), ("param", "cpu_offload_param")):
        key = f"offload_{kind}"
        section = zero.get(key) or {}
        if not isinstance(section, dict):
            raise c.error(f"zero_optimization.{key}", f"must be a JSON object, got {json.dumps(section)}")
        c.check_keys(section, f"zero_optimization.{key}.", K.OFFLOAD_KEYS, {})
        device = c.get(section, "device", f"zero_optimization.{key}.device", "none")
        if c.boolean(zero, legacy, f"zero_optimization.{legacy}", False):
            device = "cpu"  # deprecated spelling of offload_*.device = cpu
        if device not in ("none", "cpu", "nvme"):
            raise c.error(f"zero_optimization.{key}.device", f"must be none, cpu or nvme, got {json.dumps(device)}")
        if device == "nvme":
            c.warnings.append(f"zero_optimization.{key}.device nvme: counted as host memory (the planner has no NVMe tier)")
        if device != "none" and not c.boolean(section, "pin_memory", f"zero_optimization.{key}.pin_memory", True):
            c.warnings.append(f"zero_optimization.{key}.pin_memory false: pageable host memory transfers more"
                              " slowly than the planner assumes")
        ratio = section.get("ratio", 1.0)
        if device != "none" and isinstance(ratio, (int, float)) and ratio < 1:
            c.read[f"zero_optimization.{key}.ratio"] = ratio
            c.warnings.append(f"zero_optimization.{key}.ratio {ratio:g}: partial offload counted as full")
        devices[kind] = device != "none"
    if devices["param"] and not devices["optimizer"]:
        return "params"  # ZeRO-3 parameters on the host, optimizer states and the step on the GPU
    return "optimizer+params" if devices["param"] else "optimizer" if devices["optimizer"] else "none"


def _optimizer(c: _Config, job_optimizer: str) -> str:
    section = c.section("optimizer")
    c.check_keys(section, "optimizer.", *K.SECTION_KEYS["optimizer"])
    if "type" not in section:
        return job_optimizer  # the training script (e.g. HF --optim) builds the optimizer
    name = str(c.get(section, "type", "optimizer.type"))
    params = section.get("params") or {}
    if name.lower() == "sgd":
        momentum = params.get("momentum", 0) if isinstance(params, dict) else 0
        c.read["optimizer.params.momentum"] = momentum
        ours, note = ("sgd-momentum" if momentum else "sgd"), None
    elif name.lower() in K.OPTIMIZERS:
        ours, note = K.OPTIMIZERS[name.lower()]
    else:
        c.warnings.append(f"optimizer.type {name} is not modelled; planned with the job's optimizer {job_optimizer}")
        return job_optimizer
    if note:
        c.warnings.append(f"optimizer.type {name}: {note}")
    if ours != job_optimizer:
        c.warnings.append(f"optimizer.type {name} differs from the job's optimizer {job_optimizer}; planned with {ours}")
    return ours


def _buckets(c: _Config, zero: dict, stage: int, arch, plan: Plan) -> int | None:
    """Bytes of ZeRO buckets the settings imply; HF "auto" sizes from the hidden size.

    DeepSpeedZeroConfig (deepspeed/runtime/zero/config.py) takes its stage-3 fields by name and by
    their `stage3_` alias (`max_live_parameters` or `stage3_max_live_parameters`); the HF Trainer
    fills "auto" only under the prefixed names (transformers/integrations/deepspeed.py
    `trainer_config_finalize`)."""
    if stage == 0:
        return None
    hf = {"reduce_bucket_size": arch.hidden ** 2, "prefetch_bucket_size": int(0.9 * arch.hidden ** 2)}
    values = {}
    for key, default in (("reduce_bucket_size", K.REDUCE_BUCKET_DEFAULT),
                         ("allgather_bucket_size", K.ALLGATHER_BUCKET_DEFAULT),
                         ("prefetch_bucket_size", K.PREFETCH_BUCKET_DEFAULT),
                         ("max_live_parameters", K.MAX_LIVE_DEFAULT)):
        name = _zero_name(c, zero, key)
        value = c.integer(zero, name, f"zero_optimization.{name}", default, auto=name in K.HF_AUTO_ZERO)
        values[key] = hf[key] if value == "auto" else value
    for key in ("param_persistence_threshold",):
        name = _zero_name(c, zero, key)
        c.integer(zero, name, f"zero_optimization.{name}", None, auto=name in K.HF_AUTO_ZERO)
    overlap = zero.get("overlap_comm")
    overlap = stage == 3 if overlap is None else c.boolean(zero, "overlap_comm", "zero_optimization.overlap_comm")
    params = count_params(arch).total / (plan.parallel.tp * plan.parallel.pp)
    return K.bucket_bytes(stage, values["reduce_bucket_size"], values["allgather_bucket_size"], overlap,
                          values["max_live_parameters"], params)


def _zero_name(c: _Config, zero: dict, field: str) -> str:
    """The name the file uses for a ZeRO field: the field's own or its `stage3_` alias."""
    alias = K.ZERO_ALIASES.get(field)
    if alias is None:
        return field
    if field in zero and alias in zero:
        raise c.error(f"zero_optimization.{field}", f"given twice, also as {alias}: DeepSpeedZeroConfig takes one")
    return field if field in zero else alias


def _unread(c: _Config, zero: dict) -> None:
    c.check_keys(zero, "zero_optimization.", K.ZERO_READ | K.ZERO_NO_EFFECT, K.ZERO_NOT_MODELLED)
    ignored = [k for k in c.config if k in K.TOP_NO_EFFECT or is_comment(k)]
    for key in c.config:
        if key in K.TOP_NOT_MODELLED:
            c.warnings.append(f"{key}: {K.TOP_NOT_MODELLED[key]}")
        elif key in K.TOP_REMOVED:
            c.warnings.append(f"{key}: removed in DeepSpeed 0.19, whose DeepSpeedConfig rejects it")
        elif key not in K.TOP_READ and key not in K.TOP_NO_EFFECT and not is_comment(key):
            c.warnings.append(f"{key}: not modelled{did_you_mean(key, K.TOP_READ | K.TOP_NO_EFFECT)}")
    if ignored:
        c.warnings.append(f"read; no effect on the planner's memory or step time: {', '.join(ignored)}")
