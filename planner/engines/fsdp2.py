"""accelerate config files to plans: FSDP (version 2, or 1) and DDP read as the fsdp2 engine (Hugging
Face modules on PyTorch FSDP2, kernel family `hf`), DeepSpeed sections as the deepspeed engine.

Keys as accelerate 1.16 reads them: `ClusterConfig` (accelerate/commands/config/config_args.py,
which refuses unknown top-level keys), the launcher's defaults and environment
(accelerate/commands/launch.py `launch_command_parser`, accelerate/utils/launch.py
`prepare_multi_gpu_env`), `FullyShardedDataParallelPlugin.__post_init__` and `DeepSpeedPlugin`
(accelerate/utils/dataclasses.py), and `ParallelismConfig` (accelerate/parallelism_config.py). The
batch, gradient checkpointing, precision flags and optimizer live in the training script's
TrainingArguments (read with `--training-args`); LoRA rank and quantization in its PEFT and
bitsandbytes configs (`--peft-config`, `--bnb-config`); each falls back to the job's when not given.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml

from planner.cost.inputs import Inputs
from planner.cost.plan import ParallelDims, Plan
from planner.engines import FrameworkJob, check_runnable, with_framework
from planner.engines import hf_trainer as H
from planner.spec.errors import InputError, did_you_mean
from planner.spec.reading import read_text

_TOP = frozenset("""compute_environment distributed_type mixed_precision use_cpu debug num_processes machine_rank
num_machines gpu_ids main_process_ip main_process_port rdzv_backend same_network main_training_function
enable_cpu_affinity fp8_config deepspeed_config fsdp_config parallelism_config megatron_lm_config mpirun_config
downcast_bf16 tpu_name tpu_zone tpu_use_cluster tpu_use_sudo command_file commands tpu_vm tpu_env dynamo_config
fp16 dynamo_backend""".split())
_FSDP_READ = frozenset("""fsdp_version fsdp_reshard_after_forward fsdp_sharding_strategy fsdp_offload_params
fsdp_activation_checkpointing fsdp_auto_wrap_policy""".split())
_FSDP_NO_EFFECT = frozenset("""fsdp_transformer_layer_cls_to_wrap fsdp_min_num_params fsdp_backward_prefetch
fsdp_forward_prefetch fsdp_state_dict_type fsdp_use_orig_params fsdp_cpu_ram_efficient_loading
fsdp_sync_module_states""".split())
_FSDP_NOT_MODELLED = {
    "fsdp_activation_checkpointing_offload": "keeps checkpointed layer inputs in pinned host memory; the planner"
                                             " keeps them on the GPU (activations over-estimated)",
    "fsdp_ignored_modules": "leaves these modules unsharded; the planner shards every parameter",
}
_PARALLEL = "parallelism_config_"
_DEEPSPEED_NO_EFFECT = frozenset("""gradient_clipping zero3_init_flag zero3_save_16bit_model
deepspeed_multinode_launcher deepspeed_hostfile deepspeed_exclusion_filter deepspeed_inclusion_filter
deepspeed_moe_layer_cls_names transformer_moe_cls_names offload_optimizer_nvme_path offload_param_nvme_path""".split())
# FSDP1 sharding strategies (accelerate/utils/constants.py FSDP_SHARDING_STRATEGY, 1-based) as ZeRO stages.
_STRATEGIES = {"FULL_SHARD": 3, "SHARD_GRAD_OP": 2, "NO_SHARD": 0, "HYBRID_SHARD": 3, "HYBRID_SHARD_ZERO2": 2}


def parse_accelerate(path: str | Path, inputs: Inputs, hf: H.TrainerFiles | None = None, *,
                     micro_batch: int | None = None, gradient_checkpointing: bool | None = None) -> FrameworkJob:
    """The plan an accelerate config file runs for the job on the cluster."""
    text = read_text(path)
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise InputError(f"not valid YAML{where}: {getattr(error, 'problem', error)}", file=str(path)) from None
    return parse_accelerate_config(config, inputs, str(path), hf, base_dir=Path(path).parent,
                                   micro_batch=micro_batch, gradient_checkpointing=gradient_checkpointing)


def parse_accelerate_config(config: object, inputs: Inputs, file: str = "<config>",
                            hf: H.TrainerFiles | None = None,
                            *, base_dir: Path | None = None, micro_batch: int | None = None,
                            gradient_checkpointing: bool | None = None) -> FrameworkJob:
    if not isinstance(config, dict):
        raise InputError("an accelerate config is a YAML mapping", file=file)
    hf = hf or H.TrainerFiles()
    trainer = H.read_training_args(hf.training_args, hf.files["training_args"]) if hf.training_args is not None \
        else H.TrainerArgs()
    if micro_batch is not None:
        trainer.micro_batch = trainer.micro_batch or micro_batch
    if gradient_checkpointing is not None and trainer.checkpointing is None:
        trainer.checkpointing = gradient_checkpointing
    c = _Reader(config, file)
    for key in config:
        if key not in _TOP:
            raise c.error(key, f"not an accelerate config key{did_you_mean(key, _TOP)} (ClusterConfig refuses"
                               " unknown keys)")
    if config.get("compute_environment", "LOCAL_MACHINE") != "LOCAL_MACHINE":
        raise c.error("compute_environment", f"{config['compute_environment']!r}: only LOCAL_MACHINE configs are read")
    kind = c.text(config, "distributed_type", "distributed_type")
    if kind is None:
        raise c.error("distributed_type", "missing (accelerate requires it): FSDP, MULTI_GPU, DEEPSPEED or NO")
    world = inputs.cluster.world
    processes = c.integer(config, "num_processes", "num_processes", 1 if kind == "NO" else None)
    if processes is not None and processes != world:
        c.warnings.append(f"num_processes {processes}: the cluster has {world} GPUs; planned for the cluster")
    machines = c.integer(config, "num_machines", "num_machines", 1)
    if machines != inputs.cluster.nodes:
        c.warnings.append(f"num_machines {machines}: the cluster has {inputs.cluster.nodes} nodes")
    if c.flag(config, "use_cpu", "use_cpu", False):
        raise c.error("use_cpu", "true: the config trains on CPUs; the planner plans GPU clusters")
    if kind == "NO" and world > 1:
        raise c.error("distributed_type", f"NO runs one process; the cluster has {world} GPUs (use FSDP or MULTI_GPU)")
    if kind == "DEEPSPEED":
        return _deepspeed(c, inputs, trainer, hf, base_dir)
    if kind not in ("FSDP", "MULTI_GPU", "NO"):
        raise c.error("distributed_type", f"{kind!r} is not read: use FSDP, MULTI_GPU, DEEPSPEED or NO")
    return _fsdp(c, kind, inputs, trainer, hf)


class _Reader:
    """Typed access to the config; errors name the file and the dotted key."""

    def __init__(self, config: dict, file: str):
        self.config, self.file = config, file
        self.read: dict[str, object] = {}
        self.warnings: list[str] = []

    def error(self, key: str, message: str) -> InputError:
        return InputError(message, file=self.file, field=key)

    def section(self, key: str) -> dict:
        value = self.config.get(key) or {}
        if not isinstance(value, dict):
            raise self.error(key, f"must be a mapping, got {value!r}")
        return value

    def text(self, section: dict, key: str, path: str, default: str | None = None) -> str | None:
        if key not in section or section[key] is None:
            return default
        self.read[path] = section[key]
        return str(section[key])

    def integer(self, section: dict, key: str, path: str, default: int | None = None) -> int | None:
        value = section.get(key)
        if value is None:
            return default
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.error(path, f"must be an integer >= 1, got {value!r}")
        self.read[path] = value
        return value

    def flag(self, section: dict, key: str, path: str, default: bool) -> bool:
        """true/false, as accelerate's str_to_bool reads them (strings included)."""
        value = section.get(key)
        if value is None:
            return default
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0", "on", "off"):
            value = value.lower() in ("true", "yes", "1", "on")
        if not isinstance(value, bool):
            raise self.error(path, f"must be true or false, got {value!r}")
        self.read[path] = value
        return value


def _fsdp(c: _Reader, kind: str, inputs: Inputs, trainer: H.TrainerArgs, hf: H.TrainerFiles) -> FrameworkJob:
    world, job = inputs.cluster.world, inputs.job
    fsdp = {(k if k.startswith("fsdp") else f"fsdp_{k}"): v for k, v in c.section("fsdp_config").items()}
    if fsdp and kind != "FSDP":
        c.warnings.append(f"fsdp_config: ignored with distributed_type {kind}")
    sizes = _parallel_sizes(c, world)
    replicate, shard, tp, cp = sizes
    dp = replicate * shard
    zero, recompute_fsdp, offload = 0, False, "none"
    if kind == "FSDP":
        zero, recompute_fsdp, offload = _fsdp_section(c, fsdp, replicate, shard, cp)
    recompute = "full" if recompute_fsdp or trainer.checkpointing else "none"
    if recompute_fsdp and trainer.checkpointing:
        raise InputError("gradient_checkpointing is true and fsdp_activation_checkpointing is on: the Trainer refuses"
                         " both (transformers/trainer.py); keep FSDP's", file=hf.files["training_args"],
                         field="gradient_checkpointing")
    mbs, gas = _batch(c, trainer, dp, job.global_batch)
    precision = _precision(c, trainer, job.precision)
    optimizer = trainer.optimizer or ("adamw" if hf.training_args is not None else job.optimizer)
    if optimizer != job.optimizer:
        c.warnings.append(f"the optimizer is {optimizer}; the job says {job.optimizer}; planned with {optimizer}")
    lora_rank, quant, more, read = H.adapters(inputs, hf)
    c.warnings += more
    c.read.update(read)
    plan = Plan(parallel=ParallelDims(tp=tp, dp=dp, cp=cp), zero=zero, recompute=recompute, mbs=mbs, gas=gas,
                lora_rank=lora_rank, quant=quant, precision=precision, offload=offload, optimizer=optimizer)
    workload = with_framework(replace(inputs.workload, global_batch=mbs * gas * dp), "fsdp2")
    _unread(c)
    check_runnable(plan, workload, inputs.cluster, c.file)
    c.read.update({f"training_args.{k}": v for k, v in trainer.read.items()})
    return FrameworkJob(framework="fsdp2", file=c.file, plan=plan, workload=workload,
                        warnings=tuple(c.warnings + trainer.warnings), read=c.read)


def _parallel_sizes(c: _Reader, world: int) -> tuple[int, int, int, int]:
    """(dp_replicate, dp_shard, tp, cp) from parallelism_config; without one every GPU shards."""
    section = c.section("parallelism_config")
    if not section:
        return 1, world, 1, 1
    sizes = {name: c.integer(section, f"{_PARALLEL}{name}_size", f"parallelism_config.{_PARALLEL}{name}_size", 1)
             for name in ("dp_replicate", "dp_shard", "tp", "cp", "sp")}
    if sizes["sp"] > 1:
        c.warnings.append(f"{_PARALLEL}sp_size {sizes['sp']}: DeepSpeed-Ulysses sequence parallelism, modelled as"
                          " context parallelism (the same activation split; all-to-all instead of ring)")
    cp = sizes["cp"] * sizes["sp"]
    total = sizes["dp_replicate"] * sizes["dp_shard"] * sizes["tp"] * cp
    if total != world:
        raise c.error(f"parallelism_config.{_PARALLEL}dp_shard_size",
                      f"dp_replicate x dp_shard x tp x cp x sp = {total}, but the cluster has {world} GPUs"
                      " (ParallelismConfig requires them equal)")
    for key in section:
        name = key.removeprefix(_PARALLEL)
        if name.endswith("_size"):
            continue
        if name in ("cp_comm_strategy", "cp_backend", "sp_backend", "sp_seq_length", "sp_seq_length_is_variable",
                    "sp_attn_implementation"):
            c.read[f"parallelism_config.{key}"] = section[key]
        else:
            c.warnings.append(f"parallelism_config.{key}: not an accelerate parallelism key")
    return sizes["dp_replicate"], sizes["dp_shard"], sizes["tp"], cp


def _fsdp_section(c: _Reader, fsdp: dict, replicate: int, shard: int, cp: int) -> tuple[int, bool, str]:
    """(ZeRO stage, activation checkpointing, offload) of an FSDP section, with the launcher's
    defaults (fsdp_version 1, FULL_SHARD, reshard after forward, no offload)."""
    version = c.integer(fsdp, "fsdp_version", "fsdp_config.fsdp_version", 1)
    if version not in (1, 2):
        raise c.error("fsdp_config.fsdp_version", f"must be 1 or 2, got {version}")
    if version == 2:
        zero = 3 if c.flag(fsdp, "fsdp_reshard_after_forward", "fsdp_config.fsdp_reshard_after_forward", True) else 2
    else:
        c.warnings.append("fsdp_version 1: FSDP1 flattens parameters per unit; planned as FSDP2 with the same"
                          " sharding")
        strategy = fsdp.get("fsdp_sharding_strategy", fsdp.get("fsdp_reshard_after_forward", "FULL_SHARD"))
        names = list(_STRATEGIES)
        if isinstance(strategy, int) and 1 <= strategy <= len(names) or str(strategy).isdigit():
            strategy = names[int(strategy) - 1] if 1 <= int(strategy) <= len(names) else strategy
        if str(strategy).upper() not in _STRATEGIES:
            raise c.error("fsdp_config.fsdp_sharding_strategy", f"{strategy!r}: valid: {', '.join(names)}")
        strategy = str(strategy).upper()
        c.read["fsdp_config.fsdp_sharding_strategy"] = strategy
        zero = _STRATEGIES[strategy]
        if strategy.startswith("HYBRID"):
            c.warnings.append(f"{strategy}: shards within a node and replicates across nodes; the planner shards"
                              " over every data-parallel rank (model states under-estimated)")
    if shard * cp == 1 and zero:
        raise c.error(f"parallelism_config.{_PARALLEL}dp_shard_size", "FSDP with dp_shard_size 1 and cp_size 1 has"
                      " nothing to shard over (accelerate refuses it)")
    if replicate > 1 and zero:
        c.warnings.append(f"HSDP: {_PARALLEL}dp_replicate_size {replicate} x dp_shard_size {shard}; the planner"
                          " shards over all of them (model states under-estimated)")
    offload = c.flag(fsdp, "fsdp_offload_params", "fsdp_config.fsdp_offload_params", False)
    if offload and zero == 2:
        c.warnings.append("fsdp_offload_params with fsdp_reshard_after_forward false: planned as resharding"
                          " (ZeRO-3), the only way the planner offloads parameters")
        zero = 3
    policy = c.text(fsdp, "fsdp_auto_wrap_policy", "fsdp_config.fsdp_auto_wrap_policy", "NO_WRAP")
    if zero and policy != "TRANSFORMER_BASED_WRAP":
        c.warnings.append(f"fsdp_auto_wrap_policy {policy}: the planner counts one decoder layer gathered at a time"
                          " (TRANSFORMER_BASED_WRAP); "
                          + ("without wrapping the whole model is gathered at once" if policy == "NO_WRAP"
                             else "size-based units may gather more"))
    checkpointing = c.flag(fsdp, "fsdp_activation_checkpointing", "fsdp_config.fsdp_activation_checkpointing", False)
    for key in fsdp:
        if key in _FSDP_NOT_MODELLED:
            c.warnings.append(f"fsdp_config.{key}: {_FSDP_NOT_MODELLED[key]}")
        elif key not in _FSDP_READ and key not in _FSDP_NO_EFFECT:
            c.warnings.append(f"fsdp_config.{key}: not an accelerate FSDP key"
                              f"{did_you_mean(key, _FSDP_READ | _FSDP_NO_EFFECT)}")
    return zero, checkpointing, "optimizer+params" if offload else "none"


def _batch(c: _Reader, trainer: H.TrainerArgs, dp: int, job_batch: int) -> tuple[int, int]:
    mbs = trainer.micro_batch
    if mbs is None:
        mbs = 1
        c.warnings.append("no micro-batch given (TrainingArguments.per_device_train_batch_size, --training-args or"
                          " --micro-batch): planned with 1")
    gas = trainer.accumulation
    if gas is None:
        if job_batch % (mbs * dp):
            raise InputError(f"the job's global_batch {job_batch} is not a multiple of micro-batch {mbs} x"
                             f" data-parallel size {dp}", file=c.file, field="gradient_accumulation_steps")
        gas = job_batch // (mbs * dp)
    elif mbs * gas * dp != job_batch:
        c.warnings.append(f"the training arguments' batch ({mbs} x {gas} accumulation x {dp} data-parallel ="
                          f" {mbs * gas * dp}) differs from the job's global_batch {job_batch}; planned with theirs")
    return mbs, gas


def _precision(c: _Reader, trainer: H.TrainerArgs, job_precision: str) -> str:
    mixed = c.text(c.config, "mixed_precision", "mixed_precision", "fp16" if c.config.get("fp16") else "no")
    if mixed not in ("no", "bf16", "fp16", "fp8"):
        raise c.error("mixed_precision", f"{mixed!r}: valid: no, bf16, fp16, fp8")
    if mixed == "fp8":
        c.warnings.append("mixed_precision fp8: accelerate's Transformer Engine or torchao float8 training, counted as"
                          " the planner's fp8")
    if c.section("fp8_config"):
        c.read["fp8_config"] = c.config["fp8_config"]
    ours = {"no": "fp32"}.get(mixed, mixed)
    if trainer.precision is not None and trainer.precision != ours:
        # TrainingArguments.__post_init__ takes bf16/fp16 over ACCELERATE_MIXED_PRECISION.
        c.warnings.append(f"TrainingArguments set {trainer.precision}, the config mixed_precision {mixed}: the"
                          f" Trainer's {trainer.precision} counts")
        ours = trainer.precision
    # The model's own dtype is the script's (from_pretrained dtype=...), which no file here says: the
    # job's bf16-pure is mixed_precision no on a bf16 model; its bf16-autocast is mixed_precision bf16.
    if (ours, job_precision) in (("fp32", "bf16-pure"), ("bf16", "bf16-autocast")):
        ours = job_precision
    if ours != job_precision:
        c.warnings.append(f"the config trains in {ours}; the job says {job_precision}; planned with the config's")
    return ours


def _unread(c: _Reader) -> None:
    dynamo = c.section("dynamo_config").get("dynamo_backend", c.config.get("dynamo_backend", "NO"))
    if str(dynamo).upper() not in ("NO", "NONE"):
        c.warnings.append(f"dynamo_backend {dynamo}: torch.compile fuses kernels and may keep fewer activations;"
                          " not modelled")
    if c.section("megatron_lm_config"):
        c.warnings.append("megatron_lm_config: ignored unless distributed_type is MEGATRON_LM")
    if c.section("deepspeed_config"):
        c.warnings.append("deepspeed_config: ignored unless distributed_type is DEEPSPEED")


def _deepspeed(c: _Reader, inputs: Inputs, trainer: H.TrainerArgs, hf: H.TrainerFiles,
               base_dir: Path | None) -> FrameworkJob:
    """A DEEPSPEED config: the DeepSpeed config accelerate's DeepSpeedPlugin builds from it (its
    deepspeed_config_file, or the config made of zero_stage, offload devices and accumulation)."""
    section = c.section("deepspeed_config")
    config_file = section.get("deepspeed_config_file")
    if config_file not in (None, "none"):
        path = Path(str(config_file))
        path = path if path.is_absolute() or base_dir is None else base_dir / path
        ds = H.read_json(path, "a DeepSpeed config")
        c.read["deepspeed_config.deepspeed_config_file"] = str(config_file)
        file = str(path)
        others = sorted(set(section) - {"deepspeed_config_file"} - _DEEPSPEED_NO_EFFECT)
        if others:
            c.warnings.append(f"deepspeed_config: {', '.join(others)} beside deepspeed_config_file fill only its"
                              " \"auto\" values (DeepSpeedPlugin.fill_match)")
    else:
        ds = {"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto",
              "gradient_accumulation_steps": section.get("gradient_accumulation_steps", "auto"),
              "zero_optimization": {"stage": section.get("zero_stage", 2),  # DeepSpeedPlugin's default stage
                                    "offload_optimizer": {"device": section.get("offload_optimizer_device", "none")},
                                    "offload_param": {"device": section.get("offload_param_device", "none")}}}
        file = c.file
        for key in section:
            if key not in ("zero_stage", "offload_optimizer_device", "offload_param_device",
                           "gradient_accumulation_steps") and key not in _DEEPSPEED_NO_EFFECT:
                c.warnings.append(f"deepspeed_config.{key}: not an accelerate DeepSpeed key")
            c.read[f"deepspeed_config.{key}"] = section[key]
    mixed = trainer.precision or c.text(c.config, "mixed_precision", "mixed_precision", "no")
    job = H.deepspeed_with_trainer(ds, inputs, file, hf, trainer, mixed)
    _unread(_without(c, "deepspeed_config"))
    return replace(job, file=c.file, warnings=tuple(c.warnings) + job.warnings, read={**c.read, **job.read})


def _without(c: _Reader, key: str) -> _Reader:
    """The reader without one section, for the checks of what is left."""
    other = _Reader({k: v for k, v in c.config.items() if k != key}, c.file)
    other.warnings = c.warnings
    return other
