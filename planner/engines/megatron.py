"""Megatron-LM launch scripts and argument lists to plans, and plans to Megatron-LM arguments.

Flag names, defaults and checks follow megatron/training/arguments.py (`_add_distributed_args`,
`_add_training_args`, `_add_mixed_precision_args`, `validate_args`) and megatron-core's
TransformerConfig (megatron/core/transformer/transformer_config.py). The model's shape comes from
the job (job.yaml `model`); the script's shape flags are mapped by `planner.model.megatron_args`
and every difference from the job's model is a warning.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from planner.cost.cluster import Cluster
from planner.cost.inputs import Inputs
from planner.cost.plan import RECOMPUTE_MODULES, ParallelDims, Plan
from planner.cost.shard import stage_layer_counts
from planner.cost.workload import StateDtypes, Workload
from planner.engines import FrameworkJob, check_runnable, with_framework
from planner.engines import megatron_deepspeed as mds
from planner.engines import megatron_states as states
from planner.engines.megatron_flags import (
    NO_EFFECT_FLAGS,
    NOT_MODELLED,
    SHAPE_FLAGS,
    FlagReader,
    FlagValue,
    LaunchArgs,
    compare_shapes,
    launch_arguments,
    parse_flags,
)
from planner.engines.megatron_states import SGD_MOMENTUM_DEFAULT
from planner.engines.pipeline_layout import expand, stage_counts
from planner.engines.shell import ShellScript, read_script
from planner.spec.errors import InputError
from planner.spec.reading import read_text

__all__ = ["SGD_MOMENTUM_DEFAULT", "megatron_job", "parse_megatron", "parse_megatron_text"]

_DROPOUT_DEFAULT = 0.1  # --hidden-dropout and --attention-dropout default (arguments.py)

# Megatron-LM's entry points for models other than decoder-only GPT (its pretrain_*.py scripts).
_NOT_GPT = {
    "pretrain_t5.py": "an encoder-decoder T5", "pretrain_bert.py": "an encoder-only BERT",
    "pretrain_mamba.py": "a Mamba (state-space) hybrid model", "pretrain_retro.py": "a retrieval-augmented RETRO",
    "pretrain_vlm.py": "a vision-language model", "pretrain_ict.py": "an ICT retriever of BERT encoders",
}


def parse_megatron(path: str | Path, inputs: Inputs, env: Mapping[str, str] | None = None,
                   ) -> tuple[dict[str, FlagValue], FrameworkJob]:
    """(model-shape flags, job) from a Megatron-LM launch script or arguments file; `env`: the
    variables the script reads from its environment."""
    text = read_text(path, wanted="launch script or arguments file")
    return parse_megatron_text(text, inputs, file=str(path), env=env)


def parse_megatron_text(text: str, inputs: Inputs, file: str = "<arguments>", env: Mapping[str, str] | None = None,
                        ) -> tuple[dict[str, FlagValue], FrameworkJob]:
    return megatron_job(read_script(text, env=env, file=file), inputs, file)


def megatron_job(script: ShellScript, inputs: Inputs, file: str) -> tuple[dict[str, FlagValue], FrameworkJob]:
    """(model-shape flags, job) of one reading of a launch script (planner.engines.shell)."""
    launch = launch_arguments(script)
    if launch is None:
        raise InputError("no Megatron-LM arguments found: expected a launch line (torchrun ... pretrain_gpt.py"
                         " --flags), a file of --flags, or NAME=( --flags ... ) lists", file=file)
    if launch.program in _NOT_GPT:
        raise InputError(f"{launch.program} trains {_NOT_GPT[launch.program]}; planner models decoder-only GPT"
                         " models", file=file, field=f"line {launch.line}")
    flags, notes = parse_flags(launch.args)
    if inputs.workload.trains_adapters:
        raise InputError(f"training: {inputs.job.training} needs LoRA adapters, which Megatron-LM's pretrain"
                         " scripts do not have; use training: pretrain or full", file=inputs.job_file, field="training")
    r = FlagReader(flags, file, script.unset)
    warnings = list(script.notes) + notes
    plan, workload = _plan(r, inputs, warnings)
    shape = {name: value for name, value in flags.items() if name in SHAPE_FLAGS}
    warnings += compare_shapes(shape, {**flags}, inputs.workload.arch)
    warnings += _launcher_warnings(launch, inputs.cluster)
    warnings += _unread(flags, r)
    check_runnable(plan, workload, inputs.cluster, file)
    read = {"form": launch.form, **({"program": launch.program} if launch.program else {}), **r.used}
    return shape, FrameworkJob(framework=workload.engine.name, file=file, plan=plan, workload=workload,
                               warnings=tuple(warnings), read=read)


def _plan(r: FlagReader, inputs: Inputs, warnings: list[str]) -> tuple[Plan, Workload]:
    arch, job, world = inputs.workload.arch, inputs.job, inputs.cluster.world
    deepspeed = mds.is_megatron_deepspeed(r.flags)
    tp = r.integer("tensor-model-parallel-size", 1)
    pp = r.integer("pipeline-model-parallel-size", 1)
    if r.flag("no-pipeline-parallel") and pp > 1:
        raise r.error("no-pipeline-parallel", f"builds the model without pipeline stages; it needs"
                      f" --pipeline-model-parallel-size 1, got {pp}")
    cp = _context_parallel(r, warnings)
    ep = r.integer("expert-model-parallel-size", 1)
    # --expert-tensor-parallel-size: the experts' own TP degree; megatron-core carves the expert
    # group of ep x etp ranks from tp x dp x cp (parallel_state.py), so ep may exceed dp.
    etp = r.integer("expert-tensor-parallel-size", minimum=1)
    if etp == tp:
        etp = None
    if world % (tp * pp * cp):
        raise r.error("tensor-model-parallel-size", f"tp({tp}) * pp({pp}) * cp({cp}) = {tp * pp * cp} does not"
                      f" divide the cluster's {world} GPUs")
    dp = world // (tp * pp * cp)
    layout = r.text("pipeline-model-parallel-layout")
    if layout is not None:
        vpp, first, last = _layout(r, layout, arch.num_layers, pp, warnings)
    else:
        vpp = _virtual_stages(r, arch.num_layers, pp)
        if deepspeed and pp > 1:
            first, last = _deepspeed_partition(r, arch, pp, warnings)
        else:
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

    precision = states.precision(r)
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
        zero=states.zero_stage(r, deepspeed, warnings), mbs=mbs,
        gas=global_batch // (mbs * dp), lora_rank=0, quant="none", precision=precision,
        offload=states.offload(r, warnings), optimizer=states.optimizer(r, job.optimizer, warnings),
        first_stage_layers=first, last_stage_layers=last, etp=etp,
        offload_activation_layers=_activation_offload(r),
    )
    stage_layers = plan.layer_partition(arch.num_layers) or stage_layer_counts(arch.num_layers, pp)
    recompute, recompute_layers = _recompute(r, stage_layers, vpp, warnings)
    plan = plan.with_(recompute=recompute, recompute_layers=recompute_layers,
                      recompute_modules=_recompute_modules(r) if recompute == "selective" else None)
    gather = states.fp8_param_gather(r, precision, plan.zero, deepspeed, warnings)
    plan = plan.with_(fp8_param_gather=gather)
    dtypes = states.state_dtypes(r, precision, deepspeed, warnings, fp8_params=gather)
    if deepspeed and plan.zero == 0 and precision == "bf16" and not r.flag("no-pipeline-parallel"):
        # DeepSpeed's engine runs a bf16 PipelineModule at stage 0 with its BF16_Optimizer
        # (engine.py: bf16 parameters and gradients with pipeline parallelism), which partitions the
        # fp32 master weights and optimizer states over the data-parallel ranks and accumulates
        # into a whole fp32 gradient buffer (bf16_optimizer.py `fp32_groups_gradients_flat`).
        plan = plan.with_(zero=1)
        dtypes = replace(dtypes or StateDtypes(), gradient=4)
        warnings.append("bf16 at ZeRO stage 0 through DeepSpeed's pipeline engine: its BF16_Optimizer shards the"
                        " fp32 master weights and optimizer states over data parallel (planned as zero 1) and keeps"
                        " whole fp32 gradients")
    if deepspeed:
        warnings.append("--deepspeed: Megatron-DeepSpeed trains through DeepSpeed's engine, so model states are"
                        " counted as DeepSpeed keeps them (the optimizer's fp32 gradient copy: bf16_optimizer.py,"
                        " zero/stage_1_and_2.py) and its ZeRO buckets are not (they are in the --deepspeed_config"
                        " JSON); kernels and activations are Megatron's 16-bit modules")
    workload = replace(inputs.workload, global_batch=global_batch, seq_len=seq_len, states=dtypes)
    return plan, with_framework(workload, "deepspeed" if deepspeed else "megatron")


def _recompute_modules(r: FlagReader) -> tuple[str, ...] | None:
    """--recompute-modules: the modules selective recompute rebuilds (megatron-core
    transformer_config.py `recompute_modules`, default core_attn); None: that default."""
    modules = r.flags.get("recompute-modules")
    if modules is None:
        return None
    r.used["--recompute-modules"] = modules
    names = tuple([modules] if isinstance(modules, str) else modules if isinstance(modules, list) else ())
    bad = [n for n in names if n not in RECOMPUTE_MODULES]
    if bad or not names:
        raise r.error("recompute-modules", f"{' '.join(bad) or 'nothing'}: valid modules are"
                      f" {', '.join(RECOMPUTE_MODULES)} (transformer_config.py)")
    return None if names == ("core_attn",) else names


def _activation_offload(r: FlagReader) -> int:
    """--cpu-offloading with --cpu-offloading-num-layers N: the activations of N layers per
    stage live in host memory (megatron-core cpu_offload.py; transformer_config.py
    `cpu_offloading_num_layers`, default 0)."""
    if not r.flag("cpu-offloading"):
        if "cpu-offloading-num-layers" in r.flags:
            r.used["--cpu-offloading-num-layers"] = r.flags["cpu-offloading-num-layers"]
        return 0
    return r.integer("cpu-offloading-num-layers", 0, minimum=0)


def _context_parallel(r: FlagReader, warnings: list[str]) -> int:
    """--context-parallel-size, or Megatron-DeepSpeed's --ds-sequence-parallel-size: DeepSpeed-Ulysses
    (its all-to-all splits the sequence as context parallelism does; the planner charges ring traffic)."""
    cp = r.integer("context-parallel-size", 1)
    ulysses = r.integer("ds-sequence-parallel-size", 1)
    if cp > 1 and ulysses > 1:
        raise r.error("ds-sequence-parallel-size", f"cannot be combined with --context-parallel-size {cp}")
    if ulysses > 1:
        warnings.append(f"--ds-sequence-parallel-size {ulysses}: DeepSpeed-Ulysses sequence parallelism, modelled"
                        f" as context parallelism cp {ulysses} (the same activation split; all-to-all instead of"
                        " ring communication)")
    return max(cp, ulysses)


def _deepspeed_partition(r: FlagReader, arch, pp: int, warnings: list[str]) -> tuple[int | None, int | None]:
    """Megatron-DeepSpeed's pipeline stages: PipelineModule's partition of GPTModelPipe's layers
    (planner/engines/megatron_deepspeed.py), as the plan's first/last stage layers, or the nearest
    split the plan can express (equal middle stages) with a warning."""
    method = r.text("pp-partition-method") or mds.DEFAULT_PARTITION
    try:
        counts = mds.type_partition(method, arch.num_layers, pp, embed_layernorm=r.flag("embed-layernorm"),
                                    untied=r.flag("untie-embeddings-and-output-weights"))
    except ValueError as error:
        raise r.error("pp-partition-method", str(error)) from None
    shown = "/".join(map(str, counts))
    if 0 in counts:
        raise r.error("pp-partition-method", f"{method} leaves a pipeline stage without layers ({shown})")
    nearest = _nearest_split(counts)
    if nearest != counts:
        warnings.append(f"--pp-partition-method {method}: DeepSpeed's PipelineModule splits the {arch.num_layers}"
                        f" layers {shown}; the planner keeps its middle stages equal and plans"
                        f" {'/'.join(map(str, nearest))}, with the same largest stage")
    if nearest == stage_layer_counts(arch.num_layers, pp):
        return None, None
    return nearest[0], nearest[-1]


def _nearest_split(counts: tuple[int, ...]) -> tuple[int, ...]:
    """The split with equal middle stages closest to `counts` (fewest layers moved, then the same
    largest stage)."""
    pp, total = len(counts), sum(counts)
    if pp <= 2 or len(set(counts[1:-1])) == 1:
        return counts
    best = None
    for middle in range(1, total // (pp - 2) + 1):
        rest = total - middle * (pp - 2)
        for first in range(1, rest):
            split = (first,) + (middle,) * (pp - 2) + (rest - first,)
            key = (sum(abs(a - b) for a, b in zip(split, counts)), abs(max(split) - max(counts)))
            if best is None or key < best[0]:
                best = (key, split)
    return best[1]


def _virtual_stages(r: FlagReader, layers: int, pp: int) -> int:
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


def _layout(r: FlagReader, text: str, layers: int, pp: int, warnings: list[str]
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


def _partition(r: FlagReader, layers: int, pp: int, vpp: int, warnings: list[str]
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


def _recompute(r: FlagReader, stage_layers: tuple[int, ...], vpp: int, warnings: list[str]
               ) -> tuple[str, tuple[int, ...] | None]:
    """The recompute policy, and for `--recompute-method block` the layers recomputed on each
    stage: megatron-core recomputes the first N layers of every stage (transformer_block.py
    _checkpointed_forward), so a stage of fewer layers recomputes all of them."""
    granularity = r.choice("recompute-granularity", ("full", "selective"))
    method = None
    if r.flag("recompute-activations"):  # arguments.py: the old flag means selective
        granularity = granularity or "selective"
    if r.flag("checkpoint-activations"):
        # Megatron-LM before core_r0.5 and Megatron-DeepSpeed: full recompute, one layer per
        # checkpoint (Megatron-DeepSpeed arguments.py sets granularity full, method uniform).
        granularity = granularity or "full"
        method = "uniform"
    method = r.choice("recompute-method", ("uniform", "block")) or method
    count = r.integer("recompute-num-layers", minimum=0)
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


def _unread(flags: dict[str, FlagValue], r: FlagReader) -> list[str]:
    known = set(f.removeprefix("--") for f in r.used) | SHAPE_FLAGS
    special = [f"--{n}: {NOT_MODELLED[n]}" for n in flags if n in NOT_MODELLED and n not in known]
    no_effect = NO_EFFECT_FLAGS | (mds.NO_EFFECT if mds.is_megatron_deepspeed(flags) else frozenset())
    ignored = [f"--{n}" for n in flags if n in no_effect and n not in known]
    unknown = [f"--{n}" for n in flags if n not in known and n not in no_effect and n not in NOT_MODELLED]
    out = special
    if unknown:
        out.append(f"not modelled (their effect on memory and time is not counted): {', '.join(unknown)}")
    if ignored:
        out.append(f"read; no effect on the planner's memory or step time: {', '.join(ignored)}")
    return out
