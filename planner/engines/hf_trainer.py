"""The Hugging Face files beside an engine's config: TrainingArguments, PEFT's LoraConfig and
transformers' BitsAndBytesConfig as JSON, written for a plan and read back.

Names as the installed libraries define them: transformers 5.25 `TrainingArguments`
(transformers/training_args.py; `OptimizerNames` and the optimizers of trainer_optimizer.py) and
`BitsAndBytesConfig` (transformers/utils/quantization_config.py), PEFT 0.21 `LoraConfig`
(peft/tuners/lora/config.py). A training script loads them with
`HfArgumentParser(TrainingArguments).parse_json_file(...)`, `LoraConfig(**json)` and
`BitsAndBytesConfig(**json)`. `gradient_checkpointing` is written rather than transformers 5's
`activation_checkpointing` because transformers 4 knows only the first (5 keeps it as an alias).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from planner.cost.inputs import Inputs
from planner.cost.plan import Plan
from planner.engines import FrameworkJob, check_runnable
from planner.engines.deepspeed import parse_deepspeed_config
from planner.model.architecture import Architecture
from planner.model.params import ALL_LINEAR
from planner.spec.errors import InputError
from planner.spec.limits import MAX_BATCH
from planner.spec.reading import read_json_file

OUTPUT_DIR = "output"
"""TrainingArguments.output_dir: where the Trainer writes checkpoints."""
SGD_MOMENTUM = 0.9
"""The momentum written for `sgd-momentum` (trainer_optimizer.py `_get_sgd` reads optim_args)."""

# planner optimizer -> (TrainingArguments.optim, optim_args)
HF_OPTIM: dict[str, tuple[str, str | None]] = {
    "adamw": ("adamw_torch", None), "adamw8bit": ("adamw_bnb_8bit", None), "sgd": ("sgd", None),
    "sgd-momentum": ("sgd", f"momentum={SGD_MOMENTUM}"), "adafactor": ("adafactor", None),
}
# TrainingArguments.optim -> (planner optimizer, what differs from the planner's model of it)
_READ_OPTIM: dict[str, tuple[str, str | None]] = {
    "adamw_torch": ("adamw", None), "adamw_torch_fused": ("adamw", None), "adamw_apex_fused": ("adamw", None),
    "adamw_torch_npu_fused": ("adamw", None), "adamw_torch_xla": ("adamw", None),
    "adamw_anyprecision": ("adamw", "AnyPrecisionAdamW may keep states below fp32; counted in fp32"),
    "paged_adamw_32bit": ("adamw", "paged states move to the host under memory pressure; counted on the GPU"),
    "adamw_bnb_8bit": ("adamw8bit", None), "adamw_8bit": ("adamw8bit", None),
    "paged_adamw_8bit": ("adamw8bit", "paged states move to the host under memory pressure; counted on the GPU"),
    "adamw_torch_8bit": ("adamw8bit", "torchao 8-bit AdamW; counted as bitsandbytes' 8-bit states"),
    "adamw_torch_4bit": ("adamw8bit", "torchao 4-bit AdamW keeps half the state bytes; counted as 8-bit"),
    "adafactor": ("adafactor", None),
    "lion_32bit": ("sgd-momentum", "Lion keeps one momentum per parameter; counted like SGD with momentum"),
    "adagrad": ("sgd-momentum", "Adagrad keeps one state per parameter; counted like SGD with momentum"),
    "rmsprop": ("sgd-momentum", "RMSprop keeps one state per parameter; counted like SGD with momentum"),
}
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}

# TrainingArguments fields that change nothing the planner estimates.
_NO_EFFECT = frozenset("""
output_dir overwrite_output_dir do_train do_eval do_predict eval_strategy evaluation_strategy eval_steps
per_device_eval_batch_size eval_accumulation_steps eval_delay learning_rate weight_decay adam_beta1 adam_beta2
adam_epsilon max_grad_norm num_train_epochs max_steps lr_scheduler_type lr_scheduler_kwargs warmup_ratio warmup_steps
log_level log_level_replica log_on_each_node logging_dir logging_strategy logging_first_step logging_steps
logging_nan_inf_filter save_strategy save_steps save_total_limit save_safetensors save_on_each_node save_only_model
seed data_seed dataloader_drop_last dataloader_num_workers dataloader_prefetch_factor dataloader_pin_memory
dataloader_persistent_workers run_name disable_tqdm remove_unused_columns label_names load_best_model_at_end
metric_for_best_model greater_is_better report_to push_to_hub hub_model_id hub_strategy hub_token
hub_private_repo resume_from_checkpoint group_by_length length_column_name ddp_timeout ddp_backend
ddp_find_unused_parameters ddp_bucket_cap_mb ddp_broadcast_buffers bf16_full_eval fp16_full_eval tf32
prediction_loss_only include_tokens_per_second include_num_input_tokens_seen ignore_data_skip label_smoothing_factor
project trackio_space_id use_cpu accelerator_config full_determinism torch_empty_cache_steps
average_tokens_across_devices
""".split())
_NOT_MODELLED = {
    "auto_find_batch_size": "halves the micro-batch after an out-of-memory error; planned with the one written",
    "torch_compile": "torch.compile fuses kernels and may keep fewer activations; not modelled",
    "torch_compile_backend": "torch.compile; not modelled", "torch_compile_mode": "torch.compile; not modelled",
    "fsdp": "the Trainer's own FSDP settings; read the accelerate config for FSDP instead",
    "fsdp_config": "the Trainer's own FSDP settings; read the accelerate config for FSDP instead",
    "parallelism_config": "the Trainer's own ParallelismConfig; read the accelerate config's instead",
    "neftune_noise_alpha": "adds noise to embeddings; no effect on memory, a little time",
    "gradient_checkpointing_kwargs": "passed to torch.utils.checkpoint; planned as one checkpoint per layer",
}


def read_json(path: str | Path, what: str) -> dict:
    """A JSON object from `path`; InputError naming the file otherwise."""
    config = read_json_file(path)
    if not isinstance(config, dict):
        raise InputError(f"{what} is a JSON object", file=str(path))
    return config


def training_arguments(plan: Plan, *, checkpointing: bool, deepspeed: str | None = None) -> dict:
    """TrainingArguments for the plan. `checkpointing`: the Trainer checkpoints every layer (False
    when the engine does it itself, as FSDP's activation checkpointing). With `deepspeed` the
    Trainer must match the DeepSpeed config's batch and precision values
    (transformers/integrations/deepspeed.py `trainer_config_process`)."""
    optim, optim_args = HF_OPTIM.get(plan.optimizer, (None, None))
    args: dict = {"output_dir": OUTPUT_DIR, "per_device_train_batch_size": plan.mbs,
                  "gradient_accumulation_steps": plan.gas, "gradient_checkpointing": checkpointing,
                  "bf16": plan.precision == "bf16", "fp16": plan.precision == "fp16"}
    if optim is not None:
        args["optim"] = optim
    if optim_args is not None:
        args["optim_args"] = optim_args
    if deepspeed is not None:
        args["deepspeed"] = deepspeed
    return args


def script_notes(plan: Plan, trains_adapters: bool) -> list[str]:
    """Comment lines of a launch script: what TRAIN_SCRIPT must do with the files beside it."""
    lines = ["# TRAIN_SCRIPT: a Hugging Face Trainer script that reads its TrainingArguments from the JSON file it is",
             "#   given (HfArgumentParser(...).parse_json_file, as transformers' examples/pytorch/language-modeling/"
             "run_clm.py does);",
             "#   add its model and data arguments to training_args.json. The paths here are relative to this folder."]
    if trains_adapters:
        lines.append("# LoRA: the script wraps the model with peft.get_peft_model(model,"
                     " LoraConfig(**peft_config.json)).")
    if trains_adapters and plan.quant != "none":
        lines.append("#   It loads the base model with quantization_config=BitsAndBytesConfig(**bnb_config.json).")
    return lines


def peft_modules(arch: Architecture, targets: tuple[str, ...]) -> list[str] | str:
    """PEFT target_modules for the planner's LoRA targets: under multi-latent attention the
    transformers modules are q_a_proj/q_b_proj (or q_proj) and kv_a_proj_with_mqa/kv_b_proj
    (transformers/models/deepseek_v3/modeling_deepseek_v3.py), which planner/model/params.py
    `lora_params` counts for q_proj, k_proj and v_proj."""
    if ALL_LINEAR in targets:
        return ALL_LINEAR  # PEFT's own shorthand (peft/tuners/tuners_utils.py)
    att = arch.attention
    names: list[str] = []
    for target in targets:
        if att.is_mla and target == "q_proj":
            mapped = ["q_proj"] if att.q_lora_rank is None else ["q_a_proj", "q_b_proj"]
        elif att.is_mla and target in ("k_proj", "v_proj"):
            mapped = ["kv_a_proj_with_mqa", "kv_b_proj"]
        else:
            mapped = [target]
        names += [m for m in mapped if m not in names]
    return names


def lora_config(plan: Plan, arch: Architecture, targets: tuple[str, ...], alpha: float | None = None,
                dropout: float | None = None) -> dict:
    """PEFT LoraConfig fields. lora_alpha and lora_dropout change neither memory nor time; without
    the job's they are PEFT's defaults (8 and 0.0)."""
    config = {"r": plan.lora_rank, "lora_alpha": alpha if alpha is not None else 8,
              "target_modules": peft_modules(arch, targets), "task_type": "CAUSAL_LM"}
    if dropout is not None:
        config["lora_dropout"] = dropout
    return config


def bnb_config(plan: Plan, sharded: bool) -> dict | None:
    """BitsAndBytesConfig of the frozen base weights (None when they are not quantized by
    bitsandbytes). Sharded (FSDP, ZeRO-3) 4-bit weights are stored in the compute dtype so that
    FSDP can flatten them with the rest (transformers docs, "bitsandbytes" / FSDP-QLoRA:
    bnb_4bit_quant_storage)."""
    compute = DTYPES.get(plan.precision, "bfloat16")
    if plan.quant == "nf4":
        config = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
                  "bnb_4bit_compute_dtype": compute}
        if sharded:
            config["bnb_4bit_quant_storage"] = compute
        return config
    if plan.quant == "int8":
        return {"load_in_8bit": True}
    return None


@dataclass
class TrainerArgs:
    """What a TrainingArguments JSON sets that the planner reads."""

    micro_batch: int | None = None
    accumulation: int | None = None
    checkpointing: bool | None = None
    precision: str | None = None
    """bf16 | fp16 when the file enables one; None when it enables neither."""
    optimizer: str | None = None
    deepspeed: str | dict | None = None
    read: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class TrainerFiles:
    """The training script's Hugging Face configs, as JSON objects with their file names."""

    training_args: dict | None = None
    peft: dict | None = None
    bnb: dict | None = None
    files: dict[str, str] = field(default_factory=lambda: {"training_args": "training_args.json",
                                                           "peft": "peft_config.json", "bnb": "bnb_config.json"})

    @classmethod
    def read(cls, training_args: str | Path | None = None, peft: str | Path | None = None,
             bnb: str | Path | None = None) -> TrainerFiles:
        out = cls()
        for key, path, what in (("training_args", training_args, "TrainingArguments"),
                                ("peft", peft, "a LoraConfig"), ("bnb", bnb, "a BitsAndBytesConfig")):
            if path is not None:
                setattr(out, key, read_json(path, what))
                out.files[key] = str(path)
        return out


def read_training_args(args: dict, file: str) -> TrainerArgs:
    """The settings of a TrainingArguments JSON that move memory or time, and a warning for each
    other key that does (keys with no effect are read silently)."""
    out = TrainerArgs()

    def get(key: str, kind: type, minimum: int | None = None):
        if key not in args:
            return None
        value = given = args[key]
        if kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        # Counts of sequences: none can exceed the largest global batch a job may give.
        if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool) or \
                (minimum is not None and not minimum <= value <= MAX_BATCH):
            valid = {bool: "true or false", int: f"an integer from {minimum} to {MAX_BATCH:,}", str: "a string"}[kind]
            raise InputError(f"must be {valid}, got {json.dumps(given)}", file=file, field=key)
        out.read[key] = value
        return value

    out.micro_batch = get("per_device_train_batch_size", int, 1)
    out.accumulation = get("gradient_accumulation_steps", int, 1)
    checkpointing = [v for v in (get("gradient_checkpointing", bool), get("activation_checkpointing", bool))
                     if v is not None]
    out.checkpointing = any(checkpointing) if checkpointing else None
    kwargs = args.get("activation_checkpointing_kwargs")
    if isinstance(kwargs, dict) and kwargs.get("every_n_layers", 1) != 1:
        out.warnings.append(f"activation_checkpointing_kwargs.every_n_layers {kwargs['every_n_layers']}: checkpoints"
                            " some layers only; planned as every layer (activations under-estimated)")
    if isinstance(kwargs, dict) and kwargs.get("offload"):
        out.warnings.append("activation_checkpointing_kwargs.offload: checkpoints in host memory; the planner keeps"
                            " them on the GPU (activations over-estimated)")
    bf16, fp16 = get("bf16", bool), get("fp16", bool)
    if bf16 and fp16:
        raise InputError("bf16 and fp16 cannot both be true (TrainingArguments refuses it)", file=file, field="fp16")
    out.precision = "bf16" if bf16 else "fp16" if fp16 else None
    out.optimizer = _optimizer(args, out, file)
    if "deepspeed" in args:
        value = args["deepspeed"]
        if not isinstance(value, (str, dict)):
            raise InputError(f"must be a path or a DeepSpeed config object, got {json.dumps(value)}", file=file,
                             field="deepspeed")
        out.deepspeed, out.read["deepspeed"] = value, value if isinstance(value, str) else "(inline)"
    if args.get("use_cpu") is True:
        out.warnings.append("use_cpu true: trains on the CPU; the planner plans the cluster's GPUs")
    if args.get("tf32") is False:
        out.warnings.append("tf32 false: fp32 matmuls without TF32 tensor cores; the planner times fp32 at the TF32"
                            " peak (planner/cost/timing/compute.py)")
    known = {"per_device_train_batch_size", "gradient_accumulation_steps", "gradient_checkpointing",
             "activation_checkpointing", "activation_checkpointing_kwargs", "bf16", "fp16", "optim", "optim_args",
             "deepspeed"}
    for key in args:
        if key in _NOT_MODELLED:
            out.warnings.append(f"{key}: {_NOT_MODELLED[key]}")
        elif key not in known and key not in _NO_EFFECT:
            out.warnings.append(f"{key}: not read by the planner (its effect on memory and time is not counted)")
    return out


def _optimizer(args: dict, out: TrainerArgs, file: str) -> str | None:
    if "optim" not in args:
        return None
    name = args["optim"]
    if not isinstance(name, str):
        raise InputError(f"must be an optimizer name, got {json.dumps(name)}", file=file, field="optim")
    out.read["optim"] = name
    if name == "sgd":
        momentum = _optim_args(args.get("optim_args"), file).get("momentum", "0")
        out.read["optim_args"] = args.get("optim_args")
        try:
            return "sgd-momentum" if float(momentum) else "sgd"
        except ValueError:
            raise InputError(f"momentum={momentum!r} is not a number", file=file, field="optim_args") from None
    if name not in _READ_OPTIM:
        out.warnings.append(f"optim {name} is not modelled; planned with the job's optimizer")
        return None
    ours, note = _READ_OPTIM[name]
    if note:
        out.warnings.append(f"optim {name}: {note}")
    return ours


def _optim_args(text: object, file: str) -> dict[str, str]:
    """`key=value,key=value`, as trainer_optimizer.py `_parse_optim_args` splits it."""
    if text is None:
        return {}
    if not isinstance(text, str):
        raise InputError(f"must be a string of key=value pairs, got {json.dumps(text)}", file=file, field="optim_args")
    pairs = [p for p in text.replace(" ", "").split(",") if p]
    if any("=" not in p for p in pairs):
        raise InputError(f"{text!r}: write key=value pairs separated by commas", file=file, field="optim_args")
    return dict(p.split("=", 1) for p in pairs)


def read_lora(config: dict, arch: Architecture, file: str) -> tuple[int, list[str]]:
    """(rank, warnings) of a PEFT LoraConfig JSON."""
    rank = config.get("r", 8)  # LoraConfig's default rank
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise InputError(f"must be an integer >= 1, got {json.dumps(rank)}", file=file, field="r")
    warnings = []
    if config.get("use_dora"):
        warnings.append("use_dora: DoRA keeps a magnitude vector and a weight-norm pass per adapted layer; counted"
                        " as plain LoRA")
    for key in ("rank_pattern", "layers_to_transform", "modules_to_save", "target_parameters"):
        if config.get(key):
            warnings.append(f"{key}: adapts other parameters than the job's LoRA targets; counted with the job's")
    return rank, warnings


def read_bnb(config: dict, file: str) -> tuple[str, list[str]]:
    """(quant, warnings) of a BitsAndBytesConfig JSON: nf4, int8 or none."""
    warnings = []
    if config.get("load_in_4bit") and config.get("load_in_8bit"):
        raise InputError("load_in_4bit and load_in_8bit cannot both be true (BitsAndBytesConfig refuses it)",
                         file=file, field="load_in_8bit")
    if config.get("load_in_4bit"):
        kind = config.get("bnb_4bit_quant_type", "fp4")  # BitsAndBytesConfig's default type
        if kind != "nf4":
            warnings.append(f"bnb_4bit_quant_type {kind}: counted as nf4 (the same 4 bits per weight)")
        if not config.get("bnb_4bit_use_double_quant", False):
            warnings.append("bnb_4bit_use_double_quant false: fp32 absmax per 64 weights (0.5 bit per weight) where"
                            " the planner counts double quantization's 0.127 bit")
        return "nf4", warnings
    if config.get("load_in_8bit"):
        return "int8", warnings
    return "none", warnings


def adapters(inputs: Inputs, hf: TrainerFiles) -> tuple[int, str, list[str], dict]:
    """(LoRA rank, quantization, warnings, read) from the PEFT and bitsandbytes configs, else the job's."""
    d, workload = inputs.defaults, inputs.workload
    rank, quant, warnings, read = d.lora_ranks[0], d.quant, [], {}
    if not workload.trains_adapters:
        warnings = [f"{hf.files[key]}: the job trains {inputs.job.training}, without adapters; not read"
                    for key in ("peft", "bnb") if getattr(hf, key) is not None]
        return 0, "none", warnings, read
    if hf.peft is not None:
        rank, more = read_lora(hf.peft, workload.arch, hf.files["peft"])
        warnings += more
        read["peft.r"] = rank
    if hf.bnb is not None:
        quant, more = read_bnb(hf.bnb, hf.files["bnb"])
        warnings += more
        read["bnb.quant"] = quant
    return rank, quant, warnings, read


def deepspeed_with_trainer(ds: dict, inputs: Inputs, file: str, hf: TrainerFiles, trainer: TrainerArgs,
                           mixed: str | None = None) -> FrameworkJob:
    """A DeepSpeed config as the HF Trainer runs it: TrainingArguments fill its "auto" values
    (transformers/integrations/deepspeed.py trainer_config_process) and build the optimizer it
    leaves out; `mixed` (accelerate's mixed_precision) adds the precision section
    (DeepSpeedPlugin.set_mixed_precision); LoRA rank and quantization from the PEFT and
    bitsandbytes configs."""
    if ds.get("gradient_accumulation_steps") == "auto" and trainer.accumulation is not None:
        ds = {**ds, "gradient_accumulation_steps": trainer.accumulation}
    mixed = trainer.precision or mixed
    if mixed in ("bf16", "fp16") and mixed not in ds:
        ds = {**ds, mixed: {"enabled": True}}
    for key in ("bf16", "fp16"):
        if isinstance(ds.get(key), dict) and ds[key].get("enabled") == "auto":
            ds = {**ds, key: {**ds[key], "enabled": mixed == key}}
    job = parse_deepspeed_config(ds, inputs, file, gradient_checkpointing=trainer.checkpointing,
                                 micro_batch=trainer.micro_batch)
    plan, warnings = job.plan, list(trainer.warnings)
    if "optimizer" not in ds and trainer.optimizer is not None:  # the Trainer builds it (optim)
        plan = plan.with_(optimizer=trainer.optimizer)
    rank, quant, more, read = adapters(inputs, hf)
    if inputs.workload.trains_adapters:
        plan = plan.with_(lora_rank=rank, quant=quant)
    check_runnable(plan, job.workload, inputs.cluster, file)
    read = {**{f"deepspeed.{k}": v for k, v in job.read.items()}, **read,
            **{f"training_args.{k}": v for k, v in trainer.read.items()}}
    return replace(job, plan=plan, warnings=tuple(warnings + more) + job.warnings, read=read)
