"""Plans into Megatron-LM arguments and torchrun launch lines; what Megatron-LM cannot launch."""
from __future__ import annotations

from planner.cost.cluster import Cluster
from planner.cost.plan import Plan
from planner.cost.shard import stage_layer_counts
from planner.cost.workload import Workload
from planner.engines import UnsupportedPlan, framework_problems
from planner.engines.megatron import SGD_MOMENTUM_DEFAULT
from planner.engines.megatron_flags import (
    model_args,
)
from planner.engines.pipeline_layout import layout_string
from planner.model.architecture import Architecture


def megatron_problems(plan: Plan) -> list[str]:
    """Why Megatron-LM cannot run this plan (empty when it can)."""
    problems = framework_problems("megatron", plan)
    if plan.parallel.ep > 1 and plan.parallel.tp > 1 and not plan.parallel.sp:
        problems.append("expert and tensor parallelism without sequence parallelism (validate_args requires sp)")
    return problems


def emit_megatron(plan: Plan, workload: Workload, arch: Architecture) -> str:
    """Megatron-LM arguments for a plan, as bash arrays (MEGATRON_ARGS holds them all)."""
    problems = megatron_problems(plan)
    if problems:
        raise UnsupportedPlan("Megatron-LM cannot run this plan: " + "; ".join(problems))
    p = plan.parallel
    parallel = [f"--tensor-model-parallel-size {p.tp}", f"--pipeline-model-parallel-size {p.pp}",
                f"--context-parallel-size {p.cp}"]
    if arch.moe is not None:
        parallel.append(f"--expert-model-parallel-size {p.ep}")
    counts = plan.layer_partition(arch.num_layers) or stage_layer_counts(arch.num_layers, p.pp)
    if p.vpp > 1 and any(n % p.vpp for n in counts):
        # Chunks the first/last-stage flags cannot split: the layout names every virtual stage.
        parallel.append(f'--pipeline-model-parallel-layout "{layout_string(counts, p.vpp)}"')
    else:
        if p.vpp > 1 and len(set(counts)) > 1:
            parallel.append(f"--num-virtual-stages-per-pipeline-rank {p.vpp}")
        elif p.vpp > 1:
            parallel.append(f"--num-layers-per-virtual-pipeline-stage {arch.num_layers // p.pp // p.vpp}")
        if len(set(counts)) > 1:
            parallel += [f"--decoder-first-pipeline-num-layers {counts[0]}",
                         f"--decoder-last-pipeline-num-layers {counts[-1]}"]
    if p.sp:
        parallel.append("--sequence-parallel")
    if plan.zero == 1:
        parallel.append("--use-distributed-optimizer")
    if plan.offload == "optimizer":
        parallel += ["--optimizer-cpu-offload", "--optimizer-offload-fraction 1.0"]
    training = [f"--micro-batch-size {plan.mbs}", f"--global-batch-size {plan.global_batch}",
                f"--seq-length {workload.seq_len}"]
    if arch.position != "learned":  # learned positions set it in MODEL_ARGS
        training.append(f"--max-position-embeddings {workload.seq_len}")
    # The planner's activations have no dropout masks (Llama-style); Megatron's default is 0.1.
    training += ["--attention-dropout 0.0", "--hidden-dropout 0.0"]
    block = _block_recompute(plan, counts)
    notes = []
    if block is not None:
        training += ["--recompute-granularity full", "--recompute-method block", f"--recompute-num-layers {block}"]
        planned = [plan.recomputed_layers(i, n) for i, n in enumerate(counts)]
        if planned != [min(n, block * p.vpp) for n in counts]:
            notes.append(f"the plan recomputes {'/'.join(map(str, planned))} layers per stage; Megatron-LM takes one"
                         f" --recompute-num-layers for every stage, so each stage recomputes its first {block}"
                         " (less memory, a little more time than planned)")
    else:
        training += {"none": [], "selective": ["--recompute-granularity selective"],
                     "full": ["--recompute-granularity full", "--recompute-method uniform", "--recompute-num-layers 1"]
                     }[plan.recompute]
    training += {"bf16": ["--bf16"], "fp16": ["--fp16"], "fp8": ["--bf16", "--fp8-format hybrid"], "fp32": []
                 }[plan.precision]
    training += ["--optimizer sgd", f"--sgd-momentum {SGD_MOMENTUM_DEFAULT if plan.optimizer == 'sgd-momentum' else 0}"
                 ] if plan.optimizer.startswith("sgd") else ["--optimizer adam"]
    model, note = model_args(arch)
    blocks = [("MODEL_ARGS", model), ("PARALLEL_ARGS", parallel), ("TRAINING_ARGS", training)]
    lines = [f"# Megatron-LM arguments from `planner` for {arch.name}: {_describe(plan)}",
             "# Flags: megatron/training/arguments.py. Add data, tokenizer, checkpoint and learning-rate flags."]
    for text in ([note] if note else []) + notes:
        lines.append(f"# {text}")
    for name, flags in blocks:
        lines += [f"{name}=("] + [f"    {flag}" for flag in flags] + [")"]
    lines.append('MEGATRON_ARGS=("${MODEL_ARGS[@]}" "${PARALLEL_ARGS[@]}" "${TRAINING_ARGS[@]}")')
    return "\n".join(lines) + "\n"


def _block_recompute(plan: Plan, counts: tuple[int, ...]) -> int | None:
    """`--recompute-num-layers` of block recompute for a plan that recomputes only some layers of
    a stage (the largest per-stage count: Megatron-LM has one, applied to each of a stage's vpp
    model chunks), or None when every layer of every stage is recomputed or none is."""
    if plan.recompute != "full" or plan.recompute_layers is None:
        return None
    planned = [plan.recomputed_layers(i, n) for i, n in enumerate(counts)]
    if planned == list(counts):
        return None
    return -(-max(planned) // plan.parallel.vpp)


def _describe(plan: Plan) -> str:
    p = plan.parallel
    return (f"tp={p.tp} pp={p.pp} dp={p.dp} cp={p.cp} ep={p.ep} vpp={p.vpp} sp={str(p.sp).lower()} zero={plan.zero}"
            f" recompute={plan.recompute} mbs={plan.mbs} gas={plan.gas} {plan.precision} {plan.optimizer}"
            f" offload={plan.offload}")


def emit_torchrun(plan: Plan, cluster: Cluster) -> str:
    """A torchrun launch for every node of the cluster; the training program and its arguments follow."""
    if plan.parallel.world != cluster.world:
        raise UnsupportedPlan(f"the plan uses {plan.parallel.world} GPUs; the cluster has {cluster.world}")
    return "\n".join([
        "#!/usr/bin/env bash",
        f"# torchrun on {cluster.nodes} node(s) x {cluster.gpus_per_node} {cluster.gpu.id}: {_describe(plan)}",
        "# Run on every node: ./torchrun.sh pretrain_gpt.py \"${MEGATRON_ARGS[@]}\"  (or train.py --deepspeed ds_config.json)",
        "# MASTER_ADDR: the first node's address; JOB_ID: the same on every node (e.g. $SLURM_JOB_ID).",
        "set -euo pipefail",
        "torchrun \\",
        f"    --nnodes {cluster.nodes} \\",
        f"    --nproc-per-node {cluster.gpus_per_node} \\",
        "    --rdzv-backend c10d \\",
        '    --rdzv-endpoint "${MASTER_ADDR:?set MASTER_ADDR}:${MASTER_PORT:-29500}" \\',
        '    --rdzv-id "${JOB_ID:-planner}" \\',
        '    "$@"',
    ]) + "\n"
