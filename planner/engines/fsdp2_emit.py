"""Plans into launches of Hugging Face models on PyTorch FSDP2 through accelerate: what that stack
cannot launch, and for a plan it can the accelerate config, the `accelerate launch` line, the
Trainer's TrainingArguments, and PEFT and bitsandbytes configs for LoRA/QLoRA.

accelerate 1.16: the config file's keys are `ClusterConfig`'s (accelerate/commands/config/
config_args.py); `accelerate launch` copies `fsdp_config` and `parallelism_config` into the
environment (accelerate/utils/launch.py `prepare_multi_gpu_env`,
`prepare_extend_env_parallelism_config`), where `FullyShardedDataParallelPlugin` and
`ParallelismConfig` read them (accelerate/utils/dataclasses.py, accelerate/parallelism_config.py).
ZeRO stages as FSDP2 runs them: 3 is `fully_shard(reshard_after_forward=True)`, 2 keeps the
gathered parameters from forward to backward (`reshard_after_forward: false`), 0 is DDP; FSDP2
has no ZeRO-1. Tensor and context parallelism come from `parallelism_config` (TP through the
model's transformers `tp_plan`, CP through torch's context_parallel on SDPA), which accelerate
composes only with FSDP2 sharding over `dp_shard` x `cp` (ParallelismConfig._validate_accelerator).
"""
from __future__ import annotations

import json

import yaml

from planner.cost.cluster import Cluster
from planner.cost.plan import Plan
from planner.cost.workload import Workload
from planner.engines import UnsupportedPlan
from planner.engines import hf_trainer as H
from planner.engines.deepspeed_emit import describe
from planner.engines.profiles import profile

ACCELERATE_CONFIG, LAUNCH, TRAINING_ARGS = "accelerate_config.yaml", "fsdp2_launch.sh", "training_args.json"
PEFT_CONFIG, BNB_CONFIG = "peft_config.json", "bnb_config.json"

# Plan values the stack launches (the rest of this module adds the rules between them).
FSDP2_VALUES: dict[str, tuple] = profile("fsdp2").values
"""The plan values fsdp2 launches: its profile's (planner/engines/profiles/fsdp2.py)."""
_WORDS = {"pp": "pipeline parallelism (accelerate has none)", "vpp": "interleaved pipeline stages",
          "sp": "Megatron sequence parallelism (transformers' tp_plan keeps norms replicated)",
          "ep": "expert parallelism", "zero": "ZeRO stage (FSDP2 shards as ZeRO-3, or ZeRO-2 without resharding)",
          "offload": "offload (FSDP2's CPUOffloadPolicy moves parameters, gradients and optimizer together)",
          "recompute": "recompute (FSDP's activation checkpointing wraps whole layers)",
          "precision": "precision", "optimizer": "optimizer (TrainingArguments.optim)",
          "quant": "quantized base weights (bitsandbytes: int8 or nf4)"}

DECODER_LAYERS = {
    "llama": "LlamaDecoderLayer", "granite": "GraniteDecoderLayer", "mistral": "MistralDecoderLayer",
    "phi3": "Phi3DecoderLayer", "qwen2": "Qwen2DecoderLayer", "qwen3": "Qwen3DecoderLayer",
    "gemma": "GemmaDecoderLayer", "gemma2": "Gemma2DecoderLayer", "gemma3_text": "Gemma3DecoderLayer",
    "olmo2": "Olmo2DecoderLayer", "olmo3": "Olmo3DecoderLayer", "nemotron": "NemotronDecoderLayer",
    "gpt_neox": "GPTNeoXLayer",
    "gpt2": "GPT2Block", "bloom": "BloomBlock", "falcon": "FalconDecoderLayer", "mixtral": "MixtralDecoderLayer",
    "llama4_text": "Llama4TextDecoderLayer", "gpt_oss": "GptOssDecoderLayer", "minimax_m2": "MiniMaxM2DecoderLayer",
    "qwen2_moe": "Qwen2MoeDecoderLayer", "qwen3_moe": "Qwen3MoeDecoderLayer",
    "deepseek_v2": "DeepseekV2DecoderLayer", "deepseek_v3": "DeepseekV3DecoderLayer",
    "glm4_moe": "Glm4MoeDecoderLayer", "seed_oss": "SeedOssDecoderLayer", "smollm3": "SmolLM3DecoderLayer",
    "ernie4_5": "Ernie4_5DecoderLayer", "hunyuan_v1_dense": "HunYuanDenseV1DecoderLayer",
    "exaone4": "Exaone4DecoderLayer", "ernie4_5_moe": "Ernie4_5_MoeDecoderLayer",
    "hunyuan_v1_moe": "HunYuanMoEV1DecoderLayer", "glm": "GlmDecoderLayer", "glm4": "Glm4DecoderLayer",
    "starcoder2": "Starcoder2DecoderLayer", "phimoe": "PhimoeDecoderLayer", "granitemoe": "GraniteMoeDecoderLayer",
    "granitemoeshared": "GraniteMoeSharedDecoderLayer", "cohere": "CohereDecoderLayer",
    "cohere2": "Cohere2DecoderLayer", "glm4_moe_lite": "Glm4MoeLiteDecoderLayer",
    "ministral": "MinistralDecoderLayer", "ministral3": "Ministral3DecoderLayer", "mistral4": "Mistral4DecoderLayer",
    "dots1": "Dots1DecoderLayer", "solar_open": "SolarOpenDecoderLayer", "exaone_moe": "ExaoneMoeDecoderLayer",
    "arcee": "ArceeDecoderLayer", "apertus": "ApertusDecoderLayer", "olmoe": "OlmoeDecoderLayer",
}
"""The transformers decoder-layer class of each family the planner reads (`_no_split_modules` of
its *ForCausalLM in transformers 5.25), which FSDP wraps one at a time."""


def fsdp2_problems(plan: Plan, workload: Workload) -> list[str]:
    """Why accelerate + FSDP2 cannot run this plan as the planner models it (empty when it can)."""
    problems = [f"{_WORDS[key]}: {key}={_shown(getattr(plan, key))} (it runs {key} in"
                f" {', '.join(_shown(v) for v in values)})"
                for key, values in FSDP2_VALUES.items() if getattr(plan, key) not in values]
    return problems + profile("fsdp2").rules(plan, workload)


def _shown(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def emit_fsdp2(plan: Plan, workload: Workload, cluster: Cluster, *, lora_alpha: float | None = None,
               lora_dropout: float | None = None) -> dict[str, str]:
    """The files that launch `plan` with accelerate on FSDP2, by name: accelerate_config.yaml,
    fsdp2_launch.sh, training_args.json, and for LoRA/QLoRA peft_config.json (and bnb_config.json).
    UnsupportedPlan when the stack cannot run the plan."""
    problems = fsdp2_problems(plan, workload)
    if problems:
        raise UnsupportedPlan("accelerate with FSDP2 cannot run this plan: " + "; ".join(problems))
    if plan.parallel.world != cluster.world:
        raise UnsupportedPlan(f"the plan uses {plan.parallel.world} GPUs; the cluster has {cluster.world}")
    sharded = plan.zero >= 2
    files = {ACCELERATE_CONFIG: accelerate_config_text(plan, workload, cluster)}
    # FSDP checkpoints the layers itself; the Trainer must not as well (trainer.py refuses both).
    args = H.training_arguments(plan, checkpointing=plan.recompute == "full" and not sharded)
    args["bf16"] = plan.precision in ("bf16", "bf16-autocast")  # accelerate's autocast (and FSDP2's policy)
    files[TRAINING_ARGS] = json.dumps(args, indent=2) + "\n"
    if workload.trains_adapters:
        lora = H.lora_config(plan, workload.arch, workload.lora_targets, lora_alpha, lora_dropout)
        files[PEFT_CONFIG] = json.dumps(lora, indent=2) + "\n"
        bnb = H.bnb_config(plan, sharded=sharded)
        if bnb is not None:
            files[BNB_CONFIG] = json.dumps(bnb, indent=2) + "\n"
    files[LAUNCH] = _launch(plan, workload, cluster, sorted(files))
    return files


def accelerate_config(plan: Plan, workload: Workload, cluster: Cluster) -> dict:
    """The accelerate config of the plan, as `accelerate config` writes it."""
    p = plan.parallel
    config: dict = {"compute_environment": "LOCAL_MACHINE", "debug": False}
    if plan.zero >= 2:
        config["distributed_type"] = "FSDP"
        fsdp = {"fsdp_version": 2, "fsdp_reshard_after_forward": plan.zero == 3,
                "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP"}
        # A multimodal model's vision blocks are FSDP units too: accelerate wraps its _no_split_modules.
        layer = DECODER_LAYERS.get(workload.arch.family) if "multimodal" not in workload.arch.extra else None
        if layer is not None:  # else accelerate wraps the model's _no_split_modules
            fsdp["fsdp_transformer_layer_cls_to_wrap"] = layer
        fsdp.update({"fsdp_activation_checkpointing": plan.recompute == "full",
                     "fsdp_offload_params": plan.offload == "optimizer+params",
                     # Loads the weights on rank 0 only and broadcasts them: the launcher requires
                     # fsdp_sync_module_states with it (prepare_multi_gpu_env).
                     "fsdp_cpu_ram_efficient_loading": True, "fsdp_sync_module_states": True,
                     "fsdp_state_dict_type": "SHARDED_STATE_DICT"})
        config["fsdp_config"] = fsdp
    else:
        config["distributed_type"] = "MULTI_GPU" if cluster.world > 1 else "NO"
    # bf16-pure runs without mixed precision on a model the script loads in bf16 (fsdp2_launch.sh says so).
    config["mixed_precision"] = {"bf16": "bf16", "bf16-autocast": "bf16", "fp16": "fp16"}.get(plan.precision, "no")
    config.update({"num_machines": cluster.nodes, "num_processes": cluster.world, "machine_rank": 0,
                   "main_process_ip": "127.0.0.1", "main_process_port": 29500, "use_cpu": False})
    if p.tp > 1 or p.cp > 1:
        prefix = "parallelism_config_"  # the keys `accelerate config` writes (commands/config/cluster.py)
        parallel = {f"{prefix}dp_replicate_size": 1, f"{prefix}dp_shard_size": p.dp, f"{prefix}tp_size": p.tp,
                    f"{prefix}cp_size": p.cp}
        if p.cp > 1:
            parallel.update({f"{prefix}cp_backend": "torch", f"{prefix}cp_comm_strategy": "allgather"})
        config["parallelism_config"] = parallel
    return config


def accelerate_config_text(plan: Plan, workload: Workload, cluster: Cluster) -> str:
    header = [f"# accelerate config from `planner` for {workload.arch.name} on {cluster.nodes} node(s) x"
              f" {cluster.gpus_per_node} {cluster.gpu.id}: {describe(plan)}",
              "# main_process_ip / machine_rank: fsdp2_launch.sh passes MASTER_ADDR and NODE_RANK on the command"
              " line, which accelerate launch takes over these."]
    return "\n".join(header) + "\n" + yaml.safe_dump(accelerate_config(plan, workload, cluster), sort_keys=False)


def _launch(plan: Plan, workload: Workload, cluster: Cluster, names: list[str]) -> str:
    lines = ["#!/usr/bin/env bash",
             f"# accelerate + FSDP2 launch from `planner` for {workload.arch.name} on {cluster.nodes} node(s) x"
             f" {cluster.gpus_per_node} {cluster.gpu.id}: {describe(plan)}",
             f"# Files: {', '.join(names)}.",
             *H.script_notes(plan, workload.trains_adapters)]
    if plan.precision == "bf16-pure":
        lines.append("# bf16-pure: the script loads the model with from_pretrained(..., dtype=torch.bfloat16) and"
                     " trains without mixed precision.")
    if plan.parallel.tp > 1:
        lines.append("# Tensor parallelism: the script loads the model with from_pretrained(..., tp_plan=\"auto\").")
    lines += ["set -euo pipefail", 'cd "$(dirname "$0")"', "accelerate launch \\",
              f"    --config_file {ACCELERATE_CONFIG} \\"]
    if cluster.nodes > 1:
        lines += ['    --machine_rank "${NODE_RANK:?set NODE_RANK: 0 on the first node, 1 on the next ...}" \\',
                  '    --main_process_ip "${MASTER_ADDR:?set MASTER_ADDR to the address of the first node}" \\',
                  '    --main_process_port "${MASTER_PORT:-29500}" \\']
    lines += ['    "${TRAIN_SCRIPT:?set TRAIN_SCRIPT: your training script}" \\', f"    {TRAINING_ARGS}"]
    return "\n".join(lines) + "\n"
