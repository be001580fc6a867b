"""Plans into torchtitan launches: what torchtitan cannot launch, and for a plan it can the job TOML,
its torchrun line, and when torchtitan ships no flavor of the model's shape, a module that
registers one.

torchtitan 0.2.2, the last release that reads job TOML files (0.3 replaced them with Python config
registries, `--module`/`--config`): sections and keys of torchtitan/config/job_config.py, parallel
rules of distributed/parallel_dims.py and models/llama3/infra/parallelize.py (FSDP2 over dp_shard x
cp whenever either exceeds 1, else DDP only as the one parallel dimension; TP always with sequence
parallelism; mixed precision by FSDP2's MixedPrecisionPolicy, or torch.autocast under DDP, and none
under TP or PP without FSDP: distributed/utils.py `maybe_enable_amp`), pipeline stages of
distributed/pipeline_parallel.py. Models are torch-native modules under FSDP2 mixed precision,
which is the `hf` kernel family's accounting (planner/cost/memory/kernels.py: fp32 sharded
parameters, bf16 compute modules when sharded, autocast under DDP); no torchtitan source gives a
reason to count them otherwise.
"""
from __future__ import annotations

import json
import re

from planner.cost.cluster import Cluster
from planner.cost.plan import Plan
from planner.cost.shard import stage_layer_counts
from planner.cost.workload import Workload
from planner.engines import UnsupportedPlan
from planner.engines.deepspeed_emit import describe
from planner.engines.pipeline_layout import expand, layout_string
from planner.engines.profiles import profile
from planner.engines.torchtitan_models import model_shape, shipped_flavor

JOB_TOML, LAUNCH, FLAVOR_MODULE = "job.toml", "torchtitan_launch.sh", "planner_flavor.py"
FLOAT8 = "quantize.linear.float8"
"""The float8 converter's registered name (components/quantization/float8.py)."""
MX = "quantize.linear.mx"
"""The MX (mxfp8) converter's registered name (components/quantization/mx.py); its default recipe,
`mxfp8_cublas`, is torchao's MXFP8 with cuBLAS's block-scaled GEMMs."""
CONVERTERS = {"fp8": FLOAT8, "mxfp8": MX}
"""The linear-layer converter of each 8-bit precision."""

TORCHTITAN_VALUES: dict[str, tuple] = profile("torchtitan").values
"""The plan values torchtitan launches: its profile's (planner/engines/profiles/torchtitan.py)."""
_WORDS = {"zero": "ZeRO stage (FSDP2 shards as ZeRO-3, or ZeRO-2 without resharding; DDP is ZeRO-0)",
          "offload": "offload (training.enable_cpu_offload moves parameters, gradients and optimizer together)",
          "recompute": "recompute (activation_checkpoint.mode full or none)",
          "precision": "precision (bf16 mixed, bf16 training.dtype, fp32, float8, mxfp8)", "optimizer": "optimizer",
          "lora_rank": "LoRA", "quant": "quantized base weights"}

def torchtitan_problems(plan: Plan, workload: Workload) -> list[str]:
    """Why torchtitan 0.2.2 cannot run this plan as the planner models it (empty when it can)."""
    problems = [f"{_WORDS[key]}: {key}={getattr(plan, key)} (it runs {key} in {', '.join(map(str, values))})"
                for key, values in TORCHTITAN_VALUES.items() if getattr(plan, key) not in values]
    if plan.recompute_layers is not None:
        problems.append("recompute of some layers per stage (torchtitan checkpoints every Nth layer)")
    why = model_shape(workload.arch)[1]
    if why:
        problems.append(f"its models cannot build {workload.arch.name}: it has {why}")
    return problems + profile("torchtitan").rules(plan, workload)


def emit_torchtitan(plan: Plan, workload: Workload, cluster: Cluster) -> dict[str, str]:
    """{job.toml, torchtitan_launch.sh, and planner_flavor.py when no shipped flavor has the model's
    shape}. UnsupportedPlan when torchtitan cannot run the plan."""
    problems = torchtitan_problems(plan, workload)
    if problems:
        raise UnsupportedPlan("torchtitan cannot run this plan: " + "; ".join(problems))
    if plan.parallel.world != cluster.world:
        raise UnsupportedPlan(f"the plan uses {plan.parallel.world} GPUs; the cluster has {cluster.world}")
    arch = workload.arch
    key, _ = model_shape(arch)
    name, flavor = key[0], shipped_flavor(key)
    files = {}
    if flavor is None:
        flavor = "planner_" + re.sub(r"[^A-Za-z0-9_]", "_", arch.name)
        files[FLAVOR_MODULE] = flavor_module(key, flavor, arch.name)
    files[JOB_TOML] = job_toml(plan, workload, cluster, name, flavor, custom=FLAVOR_MODULE in files)
    files[LAUNCH] = _launch(plan, workload, cluster)
    return files


def job_sections(plan: Plan, workload: Workload, name: str, flavor: str, custom: bool) -> dict[str, dict]:
    """The job config of the plan, section by section (job_config.py names)."""
    p, arch = plan.parallel, workload.arch
    fsdp = plan.zero >= 2
    local = plan.mbs * (plan.microbatches_per_run if p.pp > 1 else 1)  # one pipeline run per local batch
    training = {"local_batch_size": local, "global_batch_size": plan.global_batch,
                "seq_len": workload.seq_len, "steps": -(-int(workload.tokens) // workload.tokens_per_step)
                if workload.tokens else 1000, "dataset": "c4",
                "mixed_precision_param": "float32" if plan.precision == "fp32" else "bfloat16",
                "mixed_precision_reduce": "float32",
                "dtype": "bfloat16" if plan.precision == "bf16-pure" else "float32",
                "enable_cpu_offload": plan.offload == "optimizer+params"}
    parallel = {"data_parallel_replicate_degree": 1 if fsdp else p.dp,
                "data_parallel_shard_degree": p.dp if fsdp else 1,
                "fsdp_reshard_after_forward": {3: "always", 2: "never"}.get(plan.zero, "default"),
                "tensor_parallel_degree": p.tp, "enable_async_tensor_parallel": False,
                "pipeline_parallel_degree": p.pp, "context_parallel_degree": p.cp, "expert_parallel_degree": p.ep,
                "expert_tensor_parallel_degree": p.tp if p.ep > 1 else 1}
    if p.pp > 1:
        counts = plan.layer_partition(arch.num_layers) or stage_layer_counts(arch.num_layers, p.pp)
        parallel.update({"pipeline_parallel_schedule": "Interleaved1F1B" if p.vpp > 1 else "1F1B",
                         "pipeline_parallel_microbatch_size": plan.mbs,
                         "module_fqns_per_model_part": model_parts(counts, p.vpp)})
    model = {"name": name, "flavor": flavor, "hf_assets_path": "./assets/hf/tokenizer"}
    if plan.precision in CONVERTERS:
        model["converters"] = [CONVERTERS[plan.precision]]
    sections = {"job": {"dump_folder": "./outputs", "description": f"{arch.name} from planner"}, "model": model,
                "optimizer": {"name": {"adam": "Adam"}.get(plan.optimizer, "AdamW"), "lr": 3e-4},
                "training": training, "parallelism": parallel,
                "activation_checkpoint": {"mode": "full" if plan.recompute == "full" else "none"},
                "compile": {"enable": False}}
    if plan.precision in CONVERTERS:
        sections[CONVERTERS[plan.precision]] = {"filter_fqns": ["output"]}
    if custom:
        sections["experimental"] = {"custom_import": FLAVOR_MODULE.removesuffix(".py")}
    return sections


def model_parts(counts: tuple[int, ...], vpp: int) -> list[list[str]]:
    """Module names of each virtual pipeline stage in model order (rank k mod pp holds stage k, as
    the looped schedules place them: pipeline_parallel.py `_get_stage_indices`), the chunks split as
    Megatron's layout would (pipeline_layout.py)."""
    parts, layer = [], 0
    for stage in expand(layout_string(counts, vpp)):
        names = ["tok_embeddings"] if "E" in stage else []
        names += [f"layers.{layer + i}" for i in range(stage.count("t"))]
        layer += stage.count("t")
        parts.append(names + (["norm", "output"] if "L" in stage else []))
    return parts


def job_toml(plan: Plan, workload: Workload, cluster: Cluster, name: str, flavor: str, custom: bool) -> str:
    lines = [f"# torchtitan job from `planner` for {workload.arch.name} on {cluster.nodes} node(s) x"
             f" {cluster.gpus_per_node} {cluster.gpu.id}: {describe(plan)}",
             "# torchtitan 0.2.2 (torchtitan/config/job_config.py); torchtitan_launch.sh runs it and passes"
             " HF_ASSETS_PATH as model.hf_assets_path.",
             "# Placeholders: training.dataset (c4 streams from the Hugging Face Hub), optimizer.lr, training.steps"
             + (" (from the job's tokens)" if workload.tokens else "") + "."]
    if workload.arch.mtp_layers:
        lines.append(f"# torchtitan builds no multi-token-prediction modules ({workload.arch.mtp_layers} in the job's"
                     " model).")
    for section, values in job_sections(plan, workload, name, flavor, custom).items():
        lines.append(f"\n[{section}]")
        lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    """A TOML value: booleans, integers, floats, strings and (nested) lists of them."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string is a JSON string
    return "[" + ", ".join(_toml(v) for v in value) + "]"


def flavor_module(key: tuple, flavor: str, model: str) -> str:
    """Python that registers the flavor in torchtitan's model registry before the trainer looks it up
    (train.py imports experimental.custom_import first)."""
    (name, dim, layers, heads, kv, head_dim, ffn, vocab, tied, qk_norm, experts, top_k, expert_ffn, shared,
     dense, mla) = key
    if name == "llama3":
        # TransformerModelArgs sizes the MLP as multiple_of x ceil(multiplier x int(8 dim / 3) / multiple_of).
        base = int(8 * dim / 3)
        multiplier = None if base <= ffn else ffn / base
        args = dict(dim=dim, n_layers=layers, n_heads=heads, n_kv_heads=kv, vocab_size=vocab, multiple_of=ffn,
                    ffn_dim_multiplier=multiplier)
        imports = ["from torchtitan.models.llama3 import llama3_args as registry",
                   "from torchtitan.models.llama3.model.args import TransformerModelArgs as Args"]
    elif name == "qwen3":
        args = dict(dim=dim, n_layers=layers, n_heads=heads, n_kv_heads=kv, head_dim=head_dim, hidden_dim=ffn,
                    vocab_size=vocab, qk_norm=qk_norm, enable_weight_tying=tied)
        if experts:
            args.update(moe_enabled=True, moe_inter_dim=expert_ffn,
                        moe_args=f"MoEArgs(num_experts={experts}, num_shared_experts=0, top_k={top_k})")
        imports = ["from torchtitan.models.moe import MoEArgs",
                   "from torchtitan.models.qwen3 import qwen3_args as registry",
                   "from torchtitan.models.qwen3.model.args import Qwen3ModelArgs as Args"]
    else:
        q, kv_rank, rope, v = mla
        args = dict(dim=dim, n_layers=layers, n_dense_layers=dense, n_heads=heads, inter_dim=ffn,
                    moe_inter_dim=expert_ffn, vocab_size=vocab, q_lora_rank=q, kv_lora_rank=kv_rank,
                    qk_nope_head_dim=head_dim - rope, qk_rope_head_dim=rope, v_head_dim=v,
                    moe_args=f"MoEArgs(num_experts={experts}, num_shared_experts={shared}, top_k={top_k})")
        imports = ["from torchtitan.models.deepseek_v3 import deepseekv3_args as registry",
                   "from torchtitan.models.deepseek_v3.model.args import DeepSeekV3ModelArgs as Args",
                   "from torchtitan.models.moe import MoEArgs"]
    shown = ",\n    ".join(f"{k}={v if isinstance(v, str) else repr(v)}" for k, v in args.items())
    return (f'"""Registers torchtitan flavor {flavor!r} of its {name} model: the shape of {model}, which torchtitan'
            ' 0.2.2 does not ship.\n\nImported by job.toml ([experimental] custom_import) before the model is built.'
            ' rope_theta and norm_eps\nkeep the model class defaults: set them to the model\'s own.\n"""\n'
            + "\n".join(sorted(imports)) + f"\n\nregistry[{flavor!r}] = Args(\n    {shown},\n)\n")


def _launch(plan: Plan, workload: Workload, cluster: Cluster) -> str:
    master = "${MASTER_ADDR:-localhost}" if cluster.nodes == 1 else \
        "${MASTER_ADDR:?set MASTER_ADDR to the address of the first node}"
    return "\n".join([
        "#!/usr/bin/env bash",
        f"# torchtitan launch from `planner` for {workload.arch.name} on {cluster.nodes} node(s) x"
        f" {cluster.gpus_per_node} {cluster.gpu.id}: {describe(plan)}",
        "# Run on every node" + (" with MASTER_ADDR set to the first node's address." if cluster.nodes > 1 else ".")
        + " HF_ASSETS_PATH: the tokenizer folder (torchtitan's scripts/download_hf_assets.py --assets tokenizer).",
        "set -euo pipefail",
        'cd "$(dirname "$0")"  # job.toml and any flavor module it imports are here',
        "torchrun \\",
        f"    --nnodes {cluster.nodes} \\",
        f"    --nproc-per-node {cluster.gpus_per_node} \\",
        "    --rdzv-backend c10d \\",
        f'    --rdzv-endpoint "{master}:${{MASTER_PORT:-29500}}" \\',
        '    --rdzv-id "${JOB_ID:-planner}" \\',
        "    -m torchtitan.train \\",
        f"    --job.config_file {JOB_TOML} \\",
        '    --model.hf_assets_path "${HF_ASSETS_PATH:?set HF_ASSETS_PATH to the tokenizer folder}"',
    ]) + "\n"
