"""Plans into DeepSpeed launches: what DeepSpeed cannot launch, and for a plan it can the
ds_config.json, the `deepspeed` launch line and the Hugging Face TrainingArguments (with PEFT and
bitsandbytes configs for LoRA/QLoRA) that run it."""
from __future__ import annotations

import json

from planner.cost.cluster import Cluster
from planner.cost.memory import DDP_BUCKET_BYTES, largest_module_params
from planner.cost.plan import Plan
from planner.cost.workload import Workload
from planner.engines import UnsupportedPlan, framework_problems
from planner.engines import deepspeed_keys as K
from planner.engines import hf_trainer as H

CONFIG, LAUNCH, TRAINING_ARGS = "ds_config.json", "deepspeed_launch.sh", "training_args.json"
PEFT_CONFIG, BNB_CONFIG = "peft_config.json", "bnb_config.json"


def deepspeed_problems(plan: Plan, workload: Workload) -> list[str]:
    """Why DeepSpeed cannot run this plan as the planner models it (empty when it can): its
    profile's values and rules (planner/engines/profiles/deepspeed.py), which the search obeys too."""
    return framework_problems("deepspeed", plan, workload)


def emit_deepspeed(plan: Plan, workload: Workload, cluster: Cluster, *, lora_alpha: float | None = None,
                   lora_dropout: float | None = None) -> dict[str, str]:
    """The files that launch `plan` with DeepSpeed, by name: ds_config.json, deepspeed_launch.sh,
    training_args.json (the HF Trainer's, pointing at the config), and for LoRA/QLoRA jobs
    peft_config.json and bnb_config.json. UnsupportedPlan when DeepSpeed cannot run the plan."""
    config = deepspeed_config(plan, workload)
    if plan.parallel.world != cluster.world:
        raise UnsupportedPlan(f"the plan uses {plan.parallel.world} GPUs; the cluster has {cluster.world}")
    files = {CONFIG: json.dumps(config, indent=2) + "\n"}
    # The Trainer checkpoints the layers itself (--gradient_checkpointing); the config's
    # activation_checkpointing section only configures deepspeed.checkpointing.
    args = H.training_arguments(plan, checkpointing=plan.recompute == "full", deepspeed=CONFIG)
    files[TRAINING_ARGS] = json.dumps(args, indent=2) + "\n"
    if workload.trains_adapters:
        lora = H.lora_config(plan, workload.arch, workload.lora_targets, lora_alpha, lora_dropout)
        files[PEFT_CONFIG] = json.dumps(lora, indent=2) + "\n"
        bnb = H.bnb_config(plan, sharded=plan.zero == 3)
        if bnb is not None:
            files[BNB_CONFIG] = json.dumps(bnb, indent=2) + "\n"
    files[LAUNCH] = _launch(plan, workload, cluster, sorted(files))
    return files


def _launch(plan: Plan, workload: Workload, cluster: Cluster, names: list[str]) -> str:
    """The `deepspeed` launcher line (deepspeed/launcher/runner.py): --num_gpus per node, and for
    several nodes a hostfile of `host slots=N` lines with --num_nodes taking its first N hosts."""
    lines = ["#!/usr/bin/env bash",
             f"# DeepSpeed launch from `planner` for {workload.arch.name} on {cluster.nodes} node(s) x"
             f" {cluster.gpus_per_node} {cluster.gpu.id}: {describe(plan)}",
             f"# Files: {', '.join(names)}.",
             *H.script_notes(plan, workload.trains_adapters)]
    if plan.parallel.tp * plan.parallel.cp > 1:
        lines.append("# train_batch_size is left to DeepSpeed (micro-batch x accumulation x data-parallel size): the HF"
                     " Trainer would check it against all processes, not the data-parallel ones.")
    lines += ["set -euo pipefail", 'cd "$(dirname "$0")"', "deepspeed \\"]
    if cluster.nodes > 1:
        # No quotes or apostrophes inside ${VAR:?message}: bash would look for their match.
        lines += [f'    --hostfile "${{HOSTFILE:?set HOSTFILE to a file with one line per node: HOST'
                  f' slots={cluster.gpus_per_node}}}" \\',
                  f"    --num_nodes {cluster.nodes} \\",
                  '    --master_addr "${MASTER_ADDR:?set MASTER_ADDR to the address of the first node}" \\',
                  '    --master_port "${MASTER_PORT:-29500}" \\']
    lines += [f"    --num_gpus {cluster.gpus_per_node} \\",
              '    "${TRAIN_SCRIPT:?set TRAIN_SCRIPT: your training script}" \\',
              f"    {TRAINING_ARGS}"]
    return "\n".join(lines) + "\n"


def describe(plan: Plan) -> str:
    """The plan in one line, for the files' comments."""
    p = plan.parallel
    return (f"tp={p.tp} pp={p.pp} dp={p.dp} cp={p.cp} ep={p.ep} vpp={p.vpp} sp={str(p.sp).lower()} zero={plan.zero}"
            f" recompute={plan.recompute} mbs={plan.mbs} gas={plan.gas} {plan.precision} {plan.optimizer}"
            f" offload={plan.offload}" + (f" lora_rank={plan.lora_rank} quant={plan.quant}" if plan.lora_rank else ""))


def deepspeed_config(plan: Plan, workload: Workload) -> dict:
    """A DeepSpeed config running `plan` (pp == 1; tensor parallelism through AutoTP), with every
    value the plan decides written out (no "auto")."""
    problems = deepspeed_problems(plan, workload)
    p = plan.parallel
    if problems:
        raise UnsupportedPlan("DeepSpeed cannot run this plan: " + "; ".join(problems))
    config: dict = {
        "train_batch_size": plan.global_batch,
        "train_micro_batch_size_per_gpu": plan.mbs,
        "gradient_accumulation_steps": plan.gas,
        "zero_optimization": _zero_section(plan, workload),
    }
    if p.tp * p.cp > 1:
        del config["train_batch_size"]  # see _launch: DeepSpeed derives it from the data-parallel size
    if plan.precision == "bf16":
        config["bf16"] = {"enabled": True}
    elif plan.precision == "fp16":
        config["fp16"] = {"enabled": True, "loss_scale": 0, "initial_scale_power": 16}
    elif plan.precision == "bf16-autocast":
        config["torch_autocast"] = {"enabled": True, "dtype": "bfloat16"}
    optimizer = {"adamw": {"type": "AdamW"}, "adam": {"type": "Adam"},
                 "sgd": {"type": "SGD", "params": {"momentum": 0.0}},
                 "sgd-momentum": {"type": "SGD", "params": {"momentum": 0.9}}}.get(plan.optimizer)
    if optimizer:  # adamw8bit, adafactor: built by the training script (HF --optim)
        config["optimizer"] = optimizer
    if plan.recompute == "full":
        # Configures deepspeed.checkpointing; the model must checkpoint its layers
        # (HF --gradient_checkpointing, Megatron-DeepSpeed --checkpoint-activations).
        config["activation_checkpointing"] = {"partition_activations": False, "cpu_checkpointing": False,
                                              "contiguous_memory_optimization": False,
                                              "synchronize_checkpoint_boundary": False}
    if p.tp > 1:
        config["tensor_parallel"] = {"autotp_size": p.tp}
    if p.ep > 1:
        config["expert_parallel"] = {"enabled": True, "autoep_size": p.ep}
    if p.cp > 1:
        config["sequence_parallel_size"] = p.cp
        config["data_parallel_size"] = p.dp
    return config


def _zero_section(plan: Plan, workload: Workload) -> dict:
    """ZeRO settings whose buckets fit the planner's buffers term (memory.py): for stages 1-2
    the reduce and all-gather buckets within PyTorch DDP's 2 x 25 MiB; for stage 3 at most the
    two largest modules the planner counts as gathered (DeepSpeed gathers per module:
    EngineTraits.zero3_gather "modules", memory/runtime.py)."""
    zero: dict = {"stage": plan.zero}
    if plan.zero == 0:
        return zero
    bucket = int(DDP_BUCKET_BYTES / (K.OVERLAP_FACTOR * K.BUCKET_ELEMENT_BYTES * 2))
    zero.update({"overlap_comm": True, "contiguous_gradients": True})
    if plan.zero < 3:
        zero.update({"reduce_bucket_size": bucket, "allgather_bucket_size": bucket})
    else:
        module = max(1, largest_module_params(workload.arch) // plan.parallel.tp)
        reduce = min(bucket, module)
        zero.update({"reduce_bucket_size": reduce, "stage3_prefetch_bucket_size": module,
                     "stage3_max_live_parameters": 2 * module - reduce})
    if plan.offload != "none":
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if plan.offload == "optimizer+params":
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return zero
