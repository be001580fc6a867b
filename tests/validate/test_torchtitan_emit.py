"""Emitted torchtitan job files and flavor modules against torchtitan 0.2.2 itself.

`ConfigManager().parse_args(["--job.config_file", FILE])` reads each emitted job.toml into a
JobConfig as `torchtitan.train` does (tyro refuses unknown keys and wrong types), and
`ParallelDims` checks its degrees against the world size. The shapes the emitter matches
torchtitan's shipped flavors by are read from the flavors' own model args, the models an
emitted flavor module registers are built on the meta device and hold the planner's parameter
count, and the reader's default pipeline split is torchtitan's `generate_llm_fqn_per_model_part`.
Importing torchtitan needs triton (its MoE kernels), which the validate extra installs.

Run: .venv/bin/python -m pytest -m validate tests/validate/test_torchtitan_emit.py -q
"""
from __future__ import annotations

import copy
import importlib
import sys

import pytest
from conftest import space_gpu

torch = pytest.importorskip("torch")
torchtitan = pytest.importorskip("torchtitan")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_engines_torchtitan import _JOBS  # noqa: E402
from torchtitan.config import ConfigManager  # noqa: E402
from torchtitan.distributed.parallel_dims import ParallelDims  # noqa: E402
from torchtitan.distributed.pipeline_parallel import generate_llm_fqn_per_model_part  # noqa: E402
from torchtitan.protocols.train_spec import get_train_spec  # noqa: E402

from planner.cost.inputs import load_inputs  # noqa: E402
from planner.cost.plan import ParallelDims as PlanDims  # noqa: E402
from planner.cost.plan import Plan  # noqa: E402
from planner.engines.rules import plan_problems  # noqa: E402
from planner.engines.torchtitan import _generated_stages  # noqa: E402
from planner.engines.torchtitan_emit import emit_torchtitan, torchtitan_problems  # noqa: E402
from planner.engines.torchtitan_models import SHIPPED  # noqa: E402
from planner.model import count_params, load_architecture  # noqa: E402
from planner.search.space import candidate_plans  # noqa: E402
from planner.spec.job import Constraint  # noqa: E402

pytestmark = pytest.mark.validate


def shape_of(name: str, args, model) -> tuple:
    """The emitter's shape key of a torchtitan model built from `args`."""
    if name == "llama3":
        kv = args.n_kv_heads or args.n_heads
        return ("llama3", args.dim, args.n_layers, args.n_heads, kv, args.dim // args.n_heads,
                model.layers["0"].feed_forward.w1.out_features, args.vocab_size, False, False, 0, 0, 0, 0, 0, None)
    moe = args.moe_args
    if name == "qwen3":
        experts = (moe.num_experts, moe.top_k, args.moe_inter_dim) if args.moe_enabled else (0, 0, 0)
        return ("qwen3", args.dim, args.n_layers, args.n_heads, args.n_kv_heads, args.head_dim, args.hidden_dim,
                args.vocab_size, args.enable_weight_tying, args.qk_norm, *experts, 0, 0, None)
    return ("deepseek_v3", args.dim, args.n_layers, args.n_heads, args.n_heads,
            args.qk_nope_head_dim + args.qk_rope_head_dim, args.inter_dim, args.vocab_size, False, True,
            moe.num_experts, moe.top_k, args.moe_inter_dim, moe.num_shared_experts, args.n_dense_layers,
            (args.q_lora_rank, args.kv_lora_rank, args.qk_rope_head_dim, args.v_head_dim))


def build(name: str, flavor: str):
    spec = get_train_spec(name)
    args = copy.copy(spec.model_args[flavor])
    if name == "deepseek_v3":  # DeepSeekV3ModelArgs.update_from_config: expert_parallel_comm_backend's default
        args.moe_impl = "standard"
    with torch.device("meta"):
        return args, spec.model_cls(args)


@pytest.mark.parametrize("name, flavor", sorted(SHIPPED))
def test_shipped_flavor_shapes_are_torchtitans(name, flavor):
    args, model = build(name, flavor)
    assert shape_of(name, args, model) == SHIPPED[(name, flavor)]


@pytest.mark.parametrize("preset, flavor", [("llama3-8b", ("llama3", "8B")), ("llama3-70b", ("llama3", "70B")),
                                            ("qwen3-8b", ("qwen3", "8B")), ("qwen3-32b", ("qwen3", "32B"))])
def test_shipped_flavors_hold_the_planners_parameter_count(preset, flavor):
    _, model = build(*flavor)
    assert sum(p.numel() for p in model.parameters()) == count_params(load_architecture(preset)).total


@pytest.mark.parametrize("model", ["debug", "debug-moe", "llama3.2-1b", "mixtral-8x7b", "qwen3-30b-a3b",
                                   "mistral-7b"])
def test_registered_flavors_build_the_jobs_model(model, tmp_path, write_yaml, monkeypatch):
    cluster = write_yaml("cluster.yaml", {"gpu": "h100_sxm_80gb", "gpus_per_node": 8, "nodes": 1})
    inputs = load_inputs(cluster, write_yaml("job.yaml", {"model": model, "seq_len": 256, "global_batch": 8}))
    files = emit_torchtitan(Plan(parallel=PlanDims(dp=8), zero=3, mbs=1, gas=1), inputs.workload, inputs.cluster)
    job = tomllib_loads(files["job.toml"])
    name, flavor = job["model"]["name"], job["model"]["flavor"]
    if "planner_flavor.py" in files:
        (tmp_path / "planner_flavor.py").write_text(files["planner_flavor.py"])
        monkeypatch.syspath_prepend(str(tmp_path))
        sys.modules.pop("planner_flavor", None)
        importlib.import_module("planner_flavor")  # what custom_import does before the model is built
    _, built = build(name, flavor)
    arch = inputs.workload.arch
    assert sum(p.numel() for p in built.parameters()) == count_params(arch).total


def tomllib_loads(text: str) -> dict:
    from planner.engines.torchtitan import tomllib
    return tomllib.loads(text)


@pytest.mark.parametrize("stages, layers, first, last", [(2, 3, 2, 2), (4, 30, 1, 1), (4, 32, 1, 1), (8, 32, 1, 1),
                                                         (16, 126, 1, 1), (6, 61, 2, 1), (3, 10, 0, 0)])
def test_default_pipeline_split_is_torchtitans(stages, layers, first, last):
    theirs = generate_llm_fqn_per_model_part(stages, layers, first, last)
    ours = _generated_stages(stages, layers, first, last)
    assert [sum(m.startswith("layers.") for m in part) for part in theirs] == [s.count("t") for s in ours]


@pytest.fixture(scope="module")
def spaces(tmp_path_factory):
    import yaml
    root = tmp_path_factory.mktemp("torchtitan-validate")
    for gpu in ("h100_sxm_80gb", "b200_hgx"):
        (root / f"{gpu}.yaml").write_text(yaml.safe_dump({"gpu": gpu, "gpus_per_node": 8, "nodes": 1}))
    out = {}
    for name, (job, constraints) in _JOBS.items():
        (root / f"{name}.yaml").write_text(yaml.safe_dump(job))
        inputs = load_inputs(root / f"{space_gpu(job)}.yaml", root / f"{name}.yaml")
        limits = {k: Constraint(values=tuple(v)) for k, v in constraints.items()}
        out[name] = (inputs, [p for p in candidate_plans(inputs.workload, inputs.cluster, inputs.defaults, limits)
                              if not torchtitan_problems(p, inputs.workload)])
    return out


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_emitted_jobs_parse_into_torchtitans_job_config(spaces, data, tmp_path_factory):
    name = data.draw(st.sampled_from(sorted(spaces)))
    inputs, plans = spaces[name]
    plan = data.draw(st.sampled_from(plans))
    if plan.pp > 1:  # torchtitan's accumulation under PP: one run of the schedule per local batch
        runs = [r for r in range(1, plan.gas + 1) if plan.gas % r == 0
                and not plan_problems(plan.with_(pipeline_runs=r), inputs.workload, inputs.cluster)]
        plan = plan.with_(pipeline_runs=data.draw(st.sampled_from(runs)))
    path = tmp_path_factory.mktemp("job") / "job.toml"
    path.write_text(emit_torchtitan(plan, inputs.workload, inputs.cluster)["job.toml"])
    config = ConfigManager().parse_args(["--job.config_file", str(path)])
    par, p = config.parallelism, plan.parallel
    dims = ParallelDims(dp_replicate=par.data_parallel_replicate_degree, dp_shard=par.data_parallel_shard_degree,
                        cp=par.context_parallel_degree, tp=par.tensor_parallel_degree, pp=par.pipeline_parallel_degree,
                        ep=par.expert_parallel_degree, etp=par.expert_tensor_parallel_degree,
                        world_size=inputs.cluster.world)
    assert (dims.tp, dims.pp, dims.cp, dims.ep, dims.dp_replicate * dims.dp_shard) == (p.tp, p.pp, p.cp, p.ep, p.dp)
    assert dims.fsdp_enabled == (plan.zero >= 2)
    assert (config.training.global_batch_size, config.training.seq_len) == (plan.global_batch, inputs.workload.seq_len)
    assert config.activation_checkpoint.mode == ("full" if plan.recompute == "full" else "none")
    assert config.training.enable_cpu_offload == (plan.offload == "optimizer+params")
    assert ("quantize.linear.float8" in config.model.converters) == (plan.precision == "fp8")
    assert ("quantize.linear.mx" in config.model.converters) == (plan.precision == "mxfp8")
    if plan.precision == "mxfp8":
        assert config.quantize.linear.mx.filter_fqns == ["output"]
    if p.pp > 1:
        parts = config.parallelism.module_fqns_per_model_part
        assert len(parts) == p.pp * p.vpp
        names = [m for part in parts for m in part]
        layers = inputs.workload.arch.num_layers
        assert names == ["tok_embeddings"] + [f"layers.{i}" for i in range(layers)] + ["norm", "output"]
        local, micro = config.training.local_batch_size, config.parallelism.pipeline_parallel_microbatch_size
        assert (micro, local // micro) == (plan.mbs, plan.microbatches_per_run)
        # train.py: gradient_accumulation_steps = global_batch_size // (local_batch_size * dp).
        assert config.training.global_batch_size // (local * p.dp) == plan.pipeline_runs
