"""Megatron-LM launch scripts and argument lists to plans, and plans to Megatron-LM arguments.

Flag names, defaults and checks follow megatron/training/arguments.py (`_add_distributed_args`,
`_add_training_args`, `_add_mixed_precision_args`, `validate_args`) and megatron-core's
TransformerConfig (megatron/core/transformer/transformer_config.py). The model's shape comes from
the job (job.yaml `model`); the script's shape flags are mapped by `planner.model.megatron_args`
and every difference from the job's model is a warning.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from planner.cost.cluster import Cluster
from planner.cost.inputs import Inputs
from planner.cost.plan import ParallelDims, Plan
from planner.cost.shard import stage_layer_counts
from planner.cost.workload import Workload
from planner.engines import FrameworkJob, check_runnable, with_framework
from planner.engines.megatron_flags import (
    NO_EFFECT_FLAGS,
    NOT_MODELLED,
    SHAPE_FLAGS,
    FlagValue,
    LaunchArgs,
    compare_shapes,
    launch_arguments,
    parse_flags,
)
from planner.engines.pipeline_layout import expand, stage_counts
from planner.engines.shell import read_script
from planner.spec.errors import InputError
from planner.spec.reading import read_text

# Megatron-FSDP's --data-parallel-sharding-strategy as ZeRO stages (megatron/core/distributed/fsdp).
_SHARDING = {"no_shard": 0, "optim": 1, "optim_grads": 2, "optim_grads_params": 3}
_DROPOUT_DEFAULT = 0.1  # --hidden-dropout and --attention-dropout default (arguments.py)
SGD_MOMENTUM_DEFAULT = 0.9  # --sgd-momentum default


class _Reader:
    """Typed access to the flags; errors name the file and the flag."""

    def __init__(self, flags: dict[str, FlagValue], file: str, unset: set[str]):
        self.flags, self.file, self.unset = flags, file, unset
        self.used: dict[str, FlagValue] = {}

    def _raw(self, name: str) -> FlagValue | None:
        if name in self.flags:
            self.used[f"--{name}"] = self.flags[name]
        return self.flags.get(name)

    def error(self, name: str, message: str) -> InputError:
        return InputError(message, file=self.file, field=f"--{name}")

    def text(self, name: str) -> str | None:
        value = self._raw(name)
        if value is None:
            return None
        if value is True or isinstance(value, list):
            raise self.error(name, "needs one value" if value is True else f"takes one value, got {' '.join(value)}")
        if "${" in value or "$((" in value:
            missing = sorted(v for v in self.unset if f"${{{v}}}" in value)
            why = f" ({', '.join(missing)} not set in the script)" if missing else ""
            raise self.error(name, f"{value!r} cannot be read without running the script{why}")
        return value

    def integer(self, name: str, default: int | None = None, minimum: int = 1) -> int | None:
        text = self.text(name)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            raise self.error(name, f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise self.error(name, f"must be >= {minimum}, got {value}")
        return value

    def number(self, name: str, default: float) -> float:
        text = self.text(name)
        try:
            return default if text is None else float(text)
        except ValueError:
            raise self.error(name, f"must be a number, got {text!r}") from None

    def flag(self, name: str) -> bool:
        value = self._raw(name)
        if value is None:
            return False
        if value is not True:
            raise self.error(name, f"takes no value, got {value if isinstance(value, str) else ' '.join(value)!r}")
        return True

    def choice(self, name: str, valid: tuple[str, ...]) -> str | None:
        value = self.text(name)
        if value is not None and value not in valid:
            raise self.error(name, f"must be one of {', '.join(valid)}, got {value!r}")
        return value


def parse_megatron(path: str | Path, inputs: Inputs) -> tuple[dict[str, FlagValue], FrameworkJob]:
    """(model-shape flags, job) from a Megatron-LM launch script or arguments file."""
    text = read_text(path, wanted="launch script or arguments file")
    return parse_megatron_text(text, inputs, file=str(path))


def parse_megatron_text(text: str, inputs: Inputs, file: str = "<arguments>") -> tuple[dict[str, FlagValue], FrameworkJob]:
    script = read_script(text)
    launch = launch_arguments(script)
    if launch is None:
        raise InputError("no Megatron-LM arguments found: expected a launch line (torchrun ... pretrain_gpt.py"
                         " --flags), a file of --flags, or NAME=( --flags ... ) lists", file=file)
    flags, notes = parse_flags(launch.args)
    if inputs.workload.trains_adapters:
        raise InputError(f"training: {inputs.job.training} needs LoRA adapters, which Megatron-LM's pretrain"
                         " scripts do not have; use training: pretrain or full", file=inputs.job_file, field="training")
    r = _Reader(flags, file, script.unset)
    warnings = list(script.notes) + notes
    plan, workload = _plan(r, inputs, warnings)
    shape = {name: value for name, value in flags.items() if name in SHAPE_FLAGS}
    warnings += compare_shapes(shape, {**flags}, inputs.workload.arch)
    warnings += _launcher_warnings(launch, inputs.cluster)
    warnings += _unread(flags, r)
    check_runnable(plan, workload, inputs.cluster, file)
    read = {"form": launch.form, **({"program": launch.program} if launch.program else {}), **r.used}
    return shape, FrameworkJob(framework="megatron", file=file, plan=plan, workload=workload,
                               warnings=tuple(warnings), read=read)


def _plan(r: _Reader, inputs: Inputs, warnings: list[str]) -> tuple[Plan, Workload]:
    arch, job, world = inputs.workload.arch, inputs.job, inputs.cluster.world
    tp = r.integer("tensor-model-parallel-size", 1)
    pp = r.integer("pipeline-model-parallel-size", 1)
    cp = r.integer("context-parallel-size", 1)
    ep = r.integer("expert-model-parallel-size", 1)
    etp = r.integer("expert-tensor-parallel-size")
    if etp is not None and etp != tp:
        warnings.append(f"--expert-tensor-parallel-size {etp}: the planner splits experts over tp ({tp}) as well"
                        " (expert tensor parallelism = tp); expert memory and time are for that split")
    if world % (tp * pp * cp):
        raise r.error("tensor-model-parallel-size", f"tp({tp}) * pp({pp}) * cp({cp}) = {tp * pp * cp} does not"
                      f" divide the cluster's {world} GPUs")
    dp = world // (tp * pp * cp)
    layout = r.text("pipeline-model-parallel-layout")
    if layout is not None:
        vpp, first, last = _layout(r, layout, arch.num_layers, pp, warnings)
    else:
        vpp = _virtual_stages(r, arch.num_layers, pp)
        first, last = _partition(r, arch.num_layers, pp, vpp, warnings)

    mbs = r.integer("micro-batch-size")
    if mbs is None:
        raise r.error("micro-batch-size", "missing (Megatron-LM requires it)")
    global_batch = r.integer("global-batch-size", mbs * dp)  # validate_args: default mbs * dp
    if global_batch % (mbs * dp):
        raise r.error("global-batch-size", f"{global_batch} is not a multiple of micro-batch-size ({mbs}) *"
                      f" data-parallel size ({dp} = {world} GPUs / (tp {tp} * pp {pp} * cp {cp}))")
    if global_batch != job.global_batch:
        warnings.append(f"--global-batch-size {global_batch} differs from the job's global_batch"
                        f" {job.global_batch}; planned with the script's")
    seq_len = r.integer("seq-length")
    if seq_len is None:
        seq_len = job.seq_len
        warnings.append(f"--seq-length is not set (Megatron-LM requires it); used the job's seq_len {seq_len}")
    elif seq_len != job.seq_len:
        warnings.append(f"--seq-length {seq_len} differs from the job's seq_len {job.seq_len}; planned with the script's")
    if "rampup-batch-size" in r.flags:
        r.used["--rampup-batch-size"] = r.flags["rampup-batch-size"]
        warnings.append("--rampup-batch-size: the batch grows during training; planned for the final"
                        f" global batch {global_batch}")

    precision = _precision(r, warnings)
    if precision != job.precision:
        warnings.append(f"the script trains in {precision}; the job says {job.precision}; planned with the script's")
    for name in ("hidden-dropout", "attention-dropout"):
        if r.number(name, _DROPOUT_DEFAULT) > 0:
            warnings.append(f"--{name} {r.number(name, _DROPOUT_DEFAULT):g}"
                            f"{'' if name in r.flags else ' (the default)'}: dropout keeps masks the planner does"
                            " not count (it assumes no dropout, as in Llama-style recipes)")
    sp = r.flag("sequence-parallel")
    if sp and tp == 1:  # validate_args turns it off with a warning
        warnings.append("--sequence-parallel with tensor-model-parallel-size 1: Megatron-LM disables it")
        sp = False
    if ep > 1 and tp > 1 and not sp:
        warnings.append(f"--sequence-parallel is missing: Megatron-LM asserts it with expert and tensor parallelism"
                        f" (ep {ep}, tp {tp}; validate_args); planned without it")
    plan = Plan(
        parallel=ParallelDims(tp=tp, pp=pp, dp=dp, cp=cp, ep=ep, vpp=vpp, sp=sp),
        zero=_zero(r), mbs=mbs,
        gas=global_batch // (mbs * dp), lora_rank=0, quant="none", precision=precision,
        offload=_offload(r, warnings), optimizer=_optimizer(r, job.optimizer, warnings),
        first_stage_layers=first, last_stage_layers=last,
    )
    stage_layers = plan.layer_partition(arch.num_layers) or stage_layer_counts(arch.num_layers, pp)
    recompute, recompute_layers = _recompute(r, stage_layers, vpp, warnings)
    plan = plan.with_(recompute=recompute, recompute_layers=recompute_layers)
    return plan, with_framework(replace(inputs.workload, global_batch=global_batch, seq_len=seq_len), "megatron")


def _virtual_stages(r: _Reader, layers: int, pp: int) -> int:
    given = [n for n in ("num-layers-per-virtual-pipeline-stage", "num-virtual-stages-per-pipeline-rank",
                         "virtual-pipeline-model-parallel-size") if n in r.flags]
    if len(given) > 1:
        raise r.error(given[1], f"give only one of --{given[0]} and --{given[1]}")
    if not given:
        return 1
    value = r.integer(given[0])
    if given[0] != "num-layers-per-virtual-pipeline-stage":
        return value
    # validate_args: vpp = (num_layers / pp) / num_layers_per_virtual_pipeline_stage
    if layers % pp or (layers // pp) % value:
        raise r.error(given[0], f"{value} does not divide the {layers} layers per pipeline stage evenly"
                      f" ({layers} layers / pp {pp})")
    return layers // pp // value


def _layout(r: _Reader, text: str, layers: int, pp: int, warnings: list[str]
            ) -> tuple[int, int | None, int | None]:
    """(vpp, first, last) of a --pipeline-model-parallel-layout (planner/engines/pipeline_layout.py)."""
    name = "pipeline-model-parallel-layout"
    for other in ("num-layers-per-virtual-pipeline-stage", "num-virtual-stages-per-pipeline-rank",
                  "virtual-pipeline-model-parallel-size", "decoder-first-pipeline-num-layers",
                  "decoder-last-pipeline-num-layers"):
        if other in r.flags:
            raise r.error(other, f"cannot be combined with --{name}, which sets the split itself")
    try:
        stages = expand(text)
        counts, vpp = stage_counts(stages, pp)
    except ValueError as e:
        raise r.error(name, str(e)) from None
    if sum(counts) != layers:
        raise r.error(name, f"places {sum(counts)} decoder layers; the model has {layers}")
    if "E" not in stages[0] or "L" not in stages[-1]:
        warnings.append(f"--{name}: the embedding (E) is not on the first virtual stage or the loss (L) not on"
                        " the last; the planner keeps them on the first and last pipeline stages")
    if any("m" in stage for stage in stages):
        warnings.append(f"--{name}: multi-token-prediction layers (m) are not modelled")
    if pp > 2 and len(set(counts[1:-1])) > 1:
        warnings.append(f"--{name}: middle stages of {'/'.join(map(str, counts))} layers; the planner models the"
                        " middle stages equal, so planned with the default split")
        return vpp, None, None
    if counts == stage_layer_counts(layers, pp) or pp == 1:
        return vpp, None, None
    return vpp, counts[0], counts[-1]


def _partition(r: _Reader, layers: int, pp: int, vpp: int, warnings: list[str]
               ) -> tuple[int | None, int | None]:
    """Uneven stages (--decoder-first/last-pipeline-num-layers), split as megatron-core's
    get_num_layers_to_build does: the middle stages share the rest evenly. Returned as the plan's
    first/last stage layers, or (None, None) when the split is the planner's default one
    (planner/cost/shard.py), so that every split has one spelling."""
    first = r.integer("decoder-first-pipeline-num-layers", minimum=0)
    last = r.integer("decoder-last-pipeline-num-layers", minimum=0)
    ours = stage_layer_counts(layers, pp)
    if first is None and last is None:
        if layers % pp and pp > 1:
            raise r.error("pipeline-model-parallel-size", f"the model's {layers} layers do not divide by pp {pp};"
                          " set --decoder-first-pipeline-num-layers / --decoder-last-pipeline-num-layers")
        return None, None
    if pp < 2:
        raise r.error("decoder-first-pipeline-num-layers" if first is not None else "decoder-last-pipeline-num-layers",
                      "needs --pipeline-model-parallel-size > 1")
    rest = layers - (first or 0) - (last or 0)
    stages_left = pp - (first is not None) - (last is not None)
    if rest < 0 or (stages_left and rest % stages_left) or (not stages_left and rest):
        raise r.error("decoder-first-pipeline-num-layers", f"first {first}, last {last}: the other"
                      f" {rest} of {layers} layers do not split evenly over {stages_left} middle stages")
    middle = rest // stages_left if stages_left else 0
    counts = (middle if first is None else first,) + (middle,) * (pp - 2) + (middle if last is None else last,)
    if counts == ours:
        return None, None
    if 0 in counts:
        warnings.append(f"the script splits the layers {list(counts)} over the pipeline stages; the planner"
                        f" models {list(ours)} (every stage holds a layer), so per-stage memory is for that split")
        return None, None
    return counts[0], counts[-1]


def _recompute(r: _Reader, stage_layers: tuple[int, ...], vpp: int, warnings: list[str]
               ) -> tuple[str, tuple[int, ...] | None]:
    """The recompute policy, and for `--recompute-method block` the layers recomputed on each
    stage: megatron-core recomputes the first N layers of every stage (transformer_block.py
    _checkpointed_forward), so a stage of fewer layers recomputes all of them."""
    granularity = r.choice("recompute-granularity", ("full", "selective"))
    if r.flag("recompute-activations"):  # arguments.py: the old flag means selective
        granularity = granularity or "selective"
    method = r.choice("recompute-method", ("uniform", "block"))
    count = r.integer("recompute-num-layers", minimum=0)
    modules = r.flags.get("recompute-modules")
    if modules is not None:
        r.used["--recompute-modules"] = modules
        names = [modules] if isinstance(modules, str) else list(modules) if isinstance(modules, list) else []
        if names != ["core_attn"]:
            warnings.append(f"--recompute-modules {' '.join(names)}: the planner's selective recompute is"
                            " core attention only (Korthikanti et al. 2022)")
    if granularity is None:
        if method or count is not None:
            warnings.append("--recompute-method / --recompute-num-layers do nothing without --recompute-granularity")
        return "none", None
    if granularity == "selective":
        if method:
            warnings.append("--recompute-method applies to full recompute only; ignored with selective")
        return "selective", None
    if method is None:
        warnings.append("--recompute-granularity full without --recompute-method: megatron-core requires uniform"
                        " or block (transformer_config.py); planned as uniform with one layer per checkpoint")
    elif method == "uniform" and (count or 1) > 1:
        warnings.append(f"--recompute-method uniform --recompute-num-layers {count}: checkpoints every {count}"
                        f" layers and rebuilds {count} at once; the planner models one checkpoint per layer")
    elif method == "block":
        count = count or 0
        if count == 0:
            return "none", None
        # With virtual stages the count applies to each of a stage's vpp model chunks.
        recomputed = tuple(min(n, count * vpp) for n in stage_layers)
        return "full", None if recomputed == tuple(stage_layers) else recomputed
    return "full", None


def _zero(r: _Reader) -> int:
    if r.flag("use-torch-fsdp2"):
        return 3
    if r.flag("use-megatron-fsdp") or r.flag("use-custom-fsdp"):
        return _SHARDING[r.choice("data-parallel-sharding-strategy", tuple(_SHARDING)) or "no_shard"]
    return 1 if r.flag("use-distributed-optimizer") else 0


def _offload(r: _Reader, warnings: list[str]) -> str:
    if not r.flag("optimizer-cpu-offload"):
        return "none"
    fraction = r.number("optimizer-offload-fraction", 1.0)
    if fraction < 1:
        warnings.append(f"--optimizer-offload-fraction {fraction:g}: the planner offloads all optimizer states"
                        " or none; planned as all")
    return "optimizer"


def _precision(r: _Reader, warnings: list[str]) -> str:
    bf16, fp16 = r.flag("bf16"), r.flag("fp16")
    if bf16 and fp16:
        raise r.error("fp16", "cannot be combined with --bf16 (validate_args)")
    fp8 = r.choice("fp8-format", ("e4m3", "hybrid"))
    if r.flag("fp8-param-gather"):
        warnings.append("--fp8-param-gather keeps fp8 copies of the weights; the planner counts 16-bit weights")
    dtypes = {n: r.text(n) for n in ("main-grads-dtype", "main-params-dtype", "exp-avg-dtype", "exp-avg-sq-dtype")}
    if r.flag("use-precision-aware-optimizer") and any(v not in (None, "fp32") for v in dtypes.values()):
        lowered = ", ".join(f"--{n} {v}" for n, v in dtypes.items() if v not in (None, "fp32"))
        warnings.append(f"{lowered}: optimizer states below fp32 are not modelled; counted in fp32")
    return "fp8" if fp8 else "bf16" if bf16 else "fp16" if fp16 else "fp32"


def _optimizer(r: _Reader, job_optimizer: str, warnings: list[str]) -> str:
    name = r.text("optimizer") or "adam"
    if name == "adam":  # Megatron's adam decouples weight decay (AdamW); same states either way
        if job_optimizer in ("adam", "adamw"):
            return job_optimizer
        warnings.append(f"--optimizer adam (AdamW) differs from the job's optimizer {job_optimizer}; planned with adamw")
        return "adamw"
    if name == "sgd":
        return "sgd-momentum" if r.number("sgd-momentum", SGD_MOMENTUM_DEFAULT) else "sgd"
    warnings.append(f"--optimizer {name} is not modelled; planned with the job's optimizer {job_optimizer}")
    return job_optimizer


def _launcher_warnings(launch: LaunchArgs, cluster: Cluster) -> list[str]:
    """The GPUs the launch line starts (torchrun --nnodes x --nproc-per-node), against the cluster."""
    flags, _ = parse_flags([w for w in launch.launcher if w.startswith("--") or not w.startswith("-")][1:])
    nodes = flags.get("nnodes")
    per_node = flags.get("nproc-per-node")
    try:
        nodes = int(str(nodes).split(":")[-1]) if isinstance(nodes, str) else None
        per_node = int(per_node) if isinstance(per_node, str) else None
    except ValueError:
        return []
    if nodes and per_node and nodes * per_node != cluster.world:
        return [f"the launch line starts {nodes} x {per_node} = {nodes * per_node} GPUs; the cluster has"
                f" {cluster.world}; planned for the cluster"]
    return []


def _unread(flags: dict[str, FlagValue], r: _Reader) -> list[str]:
    known = set(f.removeprefix("--") for f in r.used) | SHAPE_FLAGS
    special = [f"--{n}: {NOT_MODELLED[n]}" for n in flags if n in NOT_MODELLED and n not in known]
    ignored = [f"--{n}" for n in flags if n in NO_EFFECT_FLAGS and n not in known]
    unknown = [f"--{n}" for n in flags if n not in known and n not in NO_EFFECT_FLAGS and n not in NOT_MODELLED]
    out = special
    if unknown:
        out.append(f"not modelled (their effect on memory and time is not counted): {', '.join(unknown)}")
    if ignored:
        out.append(f"read; no effect on the planner's memory or step time: {', '.join(ignored)}")
    return out
