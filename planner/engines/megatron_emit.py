"""Plans into Megatron-LM launch scripts and torchrun lines; what Megatron-LM cannot launch.

`emit_megatron` writes one complete bash script: the torchrun line for the cluster and
`pretrain_gpt.py` with the model's shape, the plan's parallel layout, recompute, precision,
optimizer and batch, and clearly marked placeholders for what the plan does not decide (data,
tokenizer, checkpoints, learning rate, rotary base). Flags: megatron/training/arguments.py
(Megatron-LM core_r0.16); their megatron-core fields: TransformerConfig and ModelParallelConfig.
`planner check --megatron` of the script reads back the plan (megatron.py), and its model flags
read back to the job's architecture through planner.model.megatron_args.
"""
from __future__ import annotations

from planner.cost.cluster import Cluster
from planner.cost.plan import Plan
from planner.cost.shard import stage_layer_counts
from planner.cost.workload import Workload
from planner.engines import UnsupportedPlan, framework_problems
from planner.engines.deepspeed_emit import describe
from planner.engines.megatron import SGD_MOMENTUM_DEFAULT
from planner.engines.megatron_models import BRIDGE_RELEASE, bridged, pretrain_gpt_gaps
from planner.engines.megatron_states import MXFP8_GATHER_BUFFER
from planner.engines.pipeline_layout import layout_string
from planner.model.architecture import Architecture

LAUNCH = "megatron_launch.sh"
ROTARY_BASE_DEFAULT = 10000
"""--rotary-base default (arguments.py), also transformers' default rope_theta for Llama; the
planner's architecture does not carry the model's own (Llama 3: 500000), so the script asks."""


def megatron_problems(plan: Plan) -> list[str]:
    """Why Megatron-LM cannot run this plan (empty when it can)."""
    problems = framework_problems("megatron", plan)
    if plan.parallel.ep > 1 and plan.parallel.tp > 1 and not plan.parallel.sp:
        problems.append("expert and tensor parallelism without sequence parallelism (validate_args requires sp)")
    return problems


def emit_megatron(plan: Plan, workload: Workload, cluster: Cluster) -> dict[str, str]:
    """{megatron_launch.sh: the script}: run on every node with NODE_RANK set. UnsupportedPlan when
    Megatron-LM cannot run the plan or its pretrain_gpt.py flags cannot build the model."""
    problems = megatron_problems(plan)
    if problems:
        raise UnsupportedPlan("Megatron-LM cannot run this plan: " + "; ".join(problems))
    if plan.parallel.world != cluster.world:
        raise UnsupportedPlan(f"the plan uses {plan.parallel.world} GPUs; the cluster has {cluster.world}")
    arch = workload.arch
    model, notes = model_flags(arch, workload.layer_windows, workload.seq_len)
    parallel, training, more = plan_flags(plan, workload)
    notes += more
    data = ['--data-path "${DATA_PATH:?set DATA_PATH to a preprocessed dataset prefix (tools/preprocess_data.py)}"',
            "--split 99,1,0", "--tokenizer-type HuggingFaceTokenizer",
            '--tokenizer-model "${TOKENIZER_MODEL:?set TOKENIZER_MODEL to a Hugging Face tokenizer name or folder}"']
    if workload.tokens:
        iters = -(-int(workload.tokens) // workload.tokens_per_step)
        schedule = [f"--train-iters {iters}"]
    else:
        schedule = ['--train-iters "${TRAIN_ITERS:?set TRAIN_ITERS: optimizer steps to run}"']
    schedule += ['--lr "${LR:-3.0e-4}"', '--min-lr "${MIN_LR:-3.0e-5}"', "--lr-decay-style cosine",
                 '--lr-warmup-iters "${WARMUP_ITERS:-100}"', "--weight-decay 0.1", "--clip-grad 1.0",
                 '--save "${CHECKPOINT_DIR:-checkpoints}"', '--load "${CHECKPOINT_DIR:-checkpoints}"',
                 "--save-interval 1000", "--log-interval 10", "--eval-interval 1000", "--eval-iters 10"]
    master = "${MASTER_ADDR:-localhost}" if cluster.nodes == 1 else \
        "${MASTER_ADDR:?set MASTER_ADDR to the address of the first node}"
    launch = [f"--nnodes {cluster.nodes}", f"--nproc-per-node {cluster.gpus_per_node}", "--rdzv-backend c10d",
              f'--rdzv-endpoint "{master}:${{MASTER_PORT:-29500}}"', '--rdzv-id "${JOB_ID:-planner}"']
    lines = ["#!/usr/bin/env bash",
             f"# Megatron-LM launch from `planner` for {arch.name} on {cluster.nodes} node(s) x {cluster.gpus_per_node}"
             f" {cluster.gpu.id}: {describe(plan)}",
             "# Run on every node" + (" with MASTER_ADDR set to the address of the first node." if cluster.nodes > 1
                                       else "."),
             "# Placeholders: MEGATRON_LM (a Megatron-LM checkout), DATA_PATH, TOKENIZER_MODEL; optional: ROTARY_BASE"
             " (the model's rope_theta),",
             "#   LR, MIN_LR, WARMUP_ITERS, CHECKPOINT_DIR, MASTER_PORT, JOB_ID."
             " Flags: megatron/training/arguments.py."]
    lines += [f"# {note}" for note in notes]
    # TP/SP communication overlap needs one hardware queue (Megatron-LM's example scripts export it).
    lines += ["set -euo pipefail", "export CUDA_DEVICE_MAX_CONNECTIONS=1", ""]
    for name, flags in (("DISTRIBUTED_ARGS", launch), ("MODEL_ARGS", model), ("PARALLEL_ARGS", parallel),
                        ("TRAINING_ARGS", training),
                        ("DATA_ARGS", data), ("SCHEDULE_ARGS", schedule)):
        lines += [f"{name}=("] + [f"    {flag}" for flag in flags] + [")"]
    lines += ["", 'cd "${MEGATRON_LM:?set MEGATRON_LM to your Megatron-LM checkout}"',
              'torchrun "${DISTRIBUTED_ARGS[@]}" pretrain_gpt.py \\',
              '    "${MODEL_ARGS[@]}" "${PARALLEL_ARGS[@]}" "${TRAINING_ARGS[@]}" "${DATA_ARGS[@]}"'
              ' "${SCHEDULE_ARGS[@]}"']
    return {LAUNCH: "\n".join(lines) + "\n"}


def plan_flags(plan: Plan, workload: Workload) -> tuple[list[str], list[str], list[str]]:
    """(parallel flags, training flags, notes) of a plan Megatron-LM runs."""
    p, arch = plan.parallel, workload.arch
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
    # fp8: current (per-tensor) scaling, the recipe the time model charges (precisions.py) and
    # Megatron-Bridge's bf16_with_fp8_current_scaling_mixed runs; Megatron-LM's default recipe is
    # delayed scaling (transformer_config.py `fp8_recipe`). MXFP8: e4m3 for every tensor,
    # Transformer Engine's MXFP8BlockScaling (megatron/core/fp8_utils.py `get_fp8_recipe`). NVFP4:
    # e2m1 with Transformer Engine's NVFP4BlockScaling (megatron/core/fp4_utils.py `get_fp4_recipe`).
    training += {"bf16": ["--bf16"], "fp16": ["--fp16"],
                 "fp8": ["--bf16", "--fp8-format hybrid", "--fp8-recipe tensorwise"],
                 "mxfp8": ["--bf16", "--fp8-format e4m3", "--fp8-recipe mxfp8"],
                 "nvfp4": ["--bf16", "--fp4-format e2m1", "--fp4-recipe nvfp4"], "fp32": []
                 }[plan.precision]
    if plan.fp8_param_gather:
        training.append("--fp8-param-gather")  # fp8 parameters, gathered in 8 bits (rules.engine_defaults)
        if plan.precision == "mxfp8":  # as Megatron-Bridge's MXFP8 recipe, which asserts it
            training.append(f"--{MXFP8_GATHER_BUFFER}")
    if plan.precision == "nvfp4":
        notes.append("nvfp4: every layer runs in 4 bits, as planned; Megatron-Bridge's Llama 3 8B NVFP4 recipe keeps"
                     " the last 4 layers in bf16 for accuracy (--first-last-layers-bf16 --num-layers-at-start-in-bf16 0"
                     " --num-layers-at-end-in-bf16 4), which the plan does not count")
    training += ["--optimizer sgd", f"--sgd-momentum {SGD_MOMENTUM_DEFAULT if plan.optimizer == 'sgd-momentum' else 0}"
                 ] if plan.optimizer.startswith("sgd") else ["--optimizer adam"]
    return parallel, training, notes


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


def model_flags(arch: Architecture, windows: tuple[int | None, ...] | None = None,
                seq_len: int | None = None) -> tuple[list[str], list[str]]:
    """(pretrain_gpt.py flags that build `arch`, notes); planner.model.megatron_args reads the flags
    back to the same shape, the vocabulary padded as Megatron pads it. UnsupportedPlan when the
    flags cannot express the model (with the job's attention windows at `seq_len`: megatron_models)."""
    why_not = pretrain_gpt_gaps(arch, windows, seq_len)
    if why_not:
        bridge = (f"; Megatron-Bridge builds it from its Hugging Face checkpoint ({BRIDGE_RELEASE}, AutoBridge):"
                  f" launch the plan there" if bridged(arch) else "")
        raise UnsupportedPlan(f"Megatron-LM's pretrain_gpt.py flags cannot build {arch.name}: it has {why_not}{bridge}")
    att = arch.attention
    flags = [f"--num-layers {arch.num_layers}", f"--hidden-size {arch.hidden}", f"--ffn-hidden-size {arch.ffn}",
             f"--num-attention-heads {att.num_heads}"]
    if att.is_mla:  # megatron-core MLASelfAttention (multi_latent_attention.py)
        flags.append("--multi-latent-attention")
        flags += [f"--q-lora-rank {att.q_lora_rank}"] if att.q_lora_rank is not None else []
        flags += [f"--kv-lora-rank {att.kv_lora_rank}", f"--qk-head-dim {att.qk_nope_head_dim}",
                  f"--qk-pos-emb-head-dim {att.qk_rope_head_dim}", f"--v-head-dim {att.value_head_dim}"]
    else:
        flags.append(f"--kv-channels {att.head_dim}")
        if att.num_kv_heads != att.num_heads:
            flags += ["--group-query-attention", f"--num-query-groups {att.num_kv_heads}"]
    if arch.position == "rope":
        flags += ["--position-embedding-type rope", f'--rotary-base "${{ROTARY_BASE:-{ROTARY_BASE_DEFAULT}}}"']
        if att.rotary_dim is not None and att.rotary_dim != att.head_dim:
            flags.append(f"--rotary-percent {att.rotary_dim / att.head_dim:g}")
    else:
        flags += ["--position-embedding-type learned_absolute", f"--max-position-embeddings {arch.max_positions}"]
    flags.append(f"--normalization {'RMSNorm' if arch.norm == 'rmsnorm' else 'LayerNorm'}")
    if arch.gated_mlp:
        flags.append("--swiglu")
    elif arch.mlp_activation == "relu2":
        flags.append("--squared-relu")
    flags += [] if arch.tied_embeddings else ["--untie-embeddings-and-output-weights"]
    if not arch.mlp_bias:
        flags.append("--disable-bias-linear")
        flags += ["--add-qkv-bias"] if att.qkv_bias else []
    flags += ["--qk-layernorm"] if att.qk_norm in ("head", "latent") else []
    moe = arch.moe
    if moe is not None:
        flags += [f"--num-experts {moe.num_experts}", f"--moe-router-topk {moe.top_k}",
                  f"--moe-ffn-hidden-size {moe.expert_ffn}", "--moe-grouped-gemm",
                  "--moe-token-dispatcher-type alltoall"]
        pattern = [int(arch.is_moe_layer(i)) for i in range(arch.num_layers)]
        if not all(pattern):
            flags.append(f"--moe-layer-freq '[{','.join(map(str, pattern))}]'")
        if moe.group_limited:
            flags += [f"--moe-router-num-groups {moe.route_groups}", f"--moe-router-group-topk {moe.route_group_topk}"]
        if moe.shared_ffn:
            flags.append(f"--moe-shared-expert-intermediate-size {moe.shared_ffn}")
            flags += ["--moe-shared-expert-gate"] if moe.shared_expert_gate else []
    if arch.mtp_layers:
        flags.append(f"--mtp-num-layers {arch.mtp_layers}")
    flags.append(f"--vocab-size {arch.vocab}")
    notes = ["--vocab-size: the model's; HuggingFaceTokenizer gives its own size, and Megatron pads either to a"
             " multiple of 128 x tp (_vocab_size_with_padding)"]
    if arch.position == "rope":
        notes.append(f"--rotary-base: set ROTARY_BASE to the model's rope_theta (config.json); {ROTARY_BASE_DEFAULT}"
                     " is Megatron's default")
    return flags, notes


def emit_torchrun(plan: Plan, cluster: Cluster) -> str:
    """A torchrun launch for every node of the cluster; the training program and its arguments follow."""
    if plan.parallel.world != cluster.world:
        raise UnsupportedPlan(f"the plan uses {plan.parallel.world} GPUs; the cluster has {cluster.world}")
    return "\n".join([
        "#!/usr/bin/env bash",
        f"# torchrun on {cluster.nodes} node(s) x {cluster.gpus_per_node} {cluster.gpu.id}: {describe(plan)}",
        "# Run on every node: ./torchrun.sh TRAIN_SCRIPT ARGS... (megatron_launch.sh carries its own torchrun line)",
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
