"""Megatron-LM launch scripts to plans (the bash reader, Megatron's flags and checks) and plans to
Megatron arguments and torchrun commands, round trip included."""
import os
import shutil
import subprocess

import pytest
import yaml
from conftest import EXAMPLES, space_gpu
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.cost.inputs import load_inputs
from planner.cost.plan import ParallelDims, Plan
from planner.cost.shard import stage_layer_counts
from planner.engines import UnsupportedPlan
from planner.engines.megatron import parse_megatron, parse_megatron_text
from planner.engines.megatron_emit import emit_megatron, emit_torchrun, megatron_problems, model_flags
from planner.engines.megatron_flags import compare_shapes, launch_arguments, parse_flags
from planner.engines.megatron_models import bridged, pretrain_gpt_gaps, unbuildable
from planner.engines.rules import fills_chunks
from planner.engines.shell import read_script
from planner.model import architecture_from_config, load_architecture
from planner.model.presets import list_presets
from planner.search.space import candidate_plans
from planner.spec.errors import InputError
from planner.spec.job import Constraint

CLUSTER_64 = EXAMPLES / "clusters" / "h100-8nodes-ib.yaml"
LLAMA_8B = EXAMPLES / "jobs" / "llama3-8b-pretrain.yaml"  # seq 8192, global batch 512


@pytest.fixture(scope="module")
def llama():
    return load_inputs(CLUSTER_64, LLAMA_8B)


def script(plan: Plan, inputs) -> str:
    """The launch script emit_megatron writes for the plan on the inputs' cluster."""
    return emit_megatron(plan, inputs.workload, inputs.cluster)["megatron_launch.sh"]


def args(text: str, **kw) -> str:
    """A launch script running pretrain_gpt.py with the given arguments."""
    return f"torchrun --nproc-per-node 8 --nnodes 8 pretrain_gpt.py --seq-length 8192 --global-batch-size 512 {text}"


# -- the bash reader ------------------------------------------------------------------------

def test_variables_expansions_and_arithmetic():
    script = read_script(
        'GPUS=8   # per node\n'
        'NODES=${NODES:-4}\n'
        'WORLD=$((GPUS * NODES))\n'
        'TP=2; PP="${PP:-"1"}"\n'
        'export NAME=run-$TP\n'
        'ARGS="--a 1 \\\n   --b ${TP}"\n'
        "QUOTED='$TP stays'\n"
        'OUT=$(date)\n')
    assert script.variables == {"GPUS": "8", "NODES": "4", "WORLD": "32", "TP": "2", "PP": "1", "NAME": "run-2",
                                "ARGS": "--a 1    --b 2", "QUOTED": "$TP stays", "OUT": "$(date)"}
    assert script.notes == ["$(date) is a command substitution, not run; left as written"]


def test_arrays_word_splitting_and_the_launch_line():
    script = read_script(
        'A=(\n  --x 1   # a comment\n  --y "two words"\n)\n'
        'A+=(--z)\n'
        'S="--s 3"\n'
        'CUDA_DEVICE_MAX_CONNECTIONS=1 torchrun --nnodes 2 pretrain_gpt.py \\\n'
        '    ${A[@]} "${A[@]}" $S "$S" --save $CKPT 2>&1 | tee log.txt\n')
    launch = launch_arguments(script)
    assert launch.args == ("--x", "1", "--y", "two", "words", "--z", "--x", "1", "--y", "two words", "--z",
                           "--s", "3", "--s 3", "--save", "${CKPT}")
    assert (launch.form, launch.program, launch.launcher, launch.line) == (
        "launch line", "pretrain_gpt.py", ("torchrun", "--nnodes", "2"), 7)
    assert script.unset == {"CKPT"}


def test_an_arguments_file_and_a_fragment_of_lists():
    plain = launch_arguments(read_script("--num-layers 32\n# comment\n--bf16 --micro-batch-size=2\n"))
    assert (plain.form, plain.args) == ("arguments file", ("--num-layers", "32", "--bf16", "--micro-batch-size=2"))
    fragment = launch_arguments(read_script('M=(--a 1)\nP=(--b)\nALL=("${M[@]}" "${P[@]}")\nX=(--c)\n'))
    assert (fragment.form, fragment.args) == ("variables", ("--a", "1", "--b", "--c"))
    assert launch_arguments(read_script("echo hello\n")) is None


def test_flags_parse_as_argparse_would():
    flags, notes = parse_flags(["--a", "1", "--b=2", "--c", "--d", "x", "y", "--tensor_model_parallel_size", "4",
                                "--a", "3", "stray"][:-1] + ["--e", "-1"])
    assert flags == {"a": "3", "b": "2", "c": True, "d": ["x", "y"], "tensor-model-parallel-size": "4", "e": "-1"}
    assert notes == ["--tensor_model_parallel_size: Megatron-LM spells it --tensor-model-parallel-size; read as that",
                     "--a is given more than once; the last value counts (argparse)"]


# -- scripts to plans -----------------------------------------------------------------------

def test_llama3_8b_example(llama):
    shape, job = parse_megatron(EXAMPLES / "megatron" / "llama3-8b-pretrain.sh", llama)
    assert job.plan == Plan(parallel=ParallelDims(tp=2, pp=1, dp=32, sp=True), zero=1, recompute="selective",
                            mbs=1, gas=16, precision="bf16", optimizer="adamw")
    assert job.workload.engine.name == "megatron" and job.workload.global_batch == 512
    assert shape["num-layers"] == "32" and shape["swiglu"] is True and "micro-batch-size" not in shape
    assert job.read["form"] == "launch line" and job.read["--tensor-model-parallel-size"] == "2"
    assert len(job.warnings) == 1 and job.warnings[0].startswith("read; no effect on the planner's memory or step"
                                                                 " time: --use-mcore-models, --transformer-impl")


def test_tp_comm_overlap_is_read_as_not_modelled(llama, tmp_path):
    """Transformer Engine's userbuffers hide TP communication the planner charges exposed: the check
    says so instead of listing the flag among those with no effect."""
    script = (EXAMPLES / "megatron" / "llama3-8b-pretrain.sh").read_text()
    path = tmp_path / "train.sh"
    path.write_text(script.replace("--use-mcore-models", "--use-mcore-models\n    --tp-comm-overlap", 1))
    _, job = parse_megatron(path, llama)
    assert job.warnings[0].startswith("--tp-comm-overlap: overlaps the tensor-parallel all-gathers and"
                                      " reduce-scatters with the GEMMs")
    assert "--tp-comm-overlap" not in job.warnings[-1]


def test_mixtral_example_with_expert_parallelism():
    inputs = load_inputs(CLUSTER_64, EXAMPLES / "jobs" / "mixtral-8x7b-pretrain.yaml")
    _, job = parse_megatron(EXAMPLES / "megatron" / "mixtral-8x7b-ep.sh", inputs)
    assert job.plan == Plan(parallel=ParallelDims(tp=1, pp=4, dp=16, ep=8), zero=1, mbs=1, gas=16,
                            precision="bf16", optimizer="adamw")
    assert job.warnings[:2] == (
        "line 106: `[ -n \"${WANDB_API_KEY}\" ]` depends on WANDB_API_KEY, which is not known: read as 'else'"
        " (the other way: 'then'); the ways differ in LOGGING_ARGS",
        "--sequence-parallel with tensor-model-parallel-size 1: Megatron-LM disables it")


@pytest.mark.parametrize("flags, field, message", [
    ("--bf16", "--micro-batch-size", "missing (Megatron-LM requires it)"),
    ("--micro-batch-size 1 --tensor-model-parallel-size $TP", "--tensor-model-parallel-size",
     "'${TP}' cannot be read without running the script (TP not set in the script)"),
    ("--micro-batch-size 1 --tensor-model-parallel-size 3", "--tensor-model-parallel-size",
     "tp(3) * pp(1) * cp(1) = 3 does not divide the cluster's 64 GPUs"),
    ("--micro-batch-size 3", "--global-batch-size",
     "512 is not a multiple of micro-batch-size (3) * data-parallel size (64 = 64 GPUs / (tp 1 * pp 1 * cp 1))"),
    ("--micro-batch-size 1 --bf16 --fp16", "--fp16", "cannot be combined with --bf16"),
    ("--micro-batch-size 1 --bf16 yes", "--bf16", "takes no value, got 'yes'"),
    ("--micro-batch-size 1 --pipeline-model-parallel-size 4 --num-layers-per-virtual-pipeline-stage 3",
     "--num-layers-per-virtual-pipeline-stage", "3 does not divide the 32 layers per pipeline stage evenly"),
    ("--micro-batch-size 1 --pipeline-model-parallel-size 4 --num-layers-per-virtual-pipeline-stage 2"
     " --num-virtual-stages-per-pipeline-rank 2", "--num-virtual-stages-per-pipeline-rank", "give only one of"),
    ("--micro-batch-size 1 --pipeline-model-parallel-size 4 --decoder-first-pipeline-num-layers 6",
     "--decoder-first-pipeline-num-layers", "first 6, last None: the other 26 of 32 layers do not split evenly"
                                            " over 3 middle stages"),
    ("--micro-batch-size 1 --recompute-granularity some", "--recompute-granularity",
     "must be one of full, selective, got 'some'"),
])
def test_bad_arguments_name_file_and_flag(llama, flags, field, message):
    with pytest.raises(InputError) as err:
        parse_megatron_text(args(flags), llama, "train.sh")
    assert (err.value.file, err.value.field) == ("train.sh", field)
    assert message in err.value.detail


def test_no_arguments_and_a_lora_job_are_bad_input(llama, write_yaml):
    with pytest.raises(InputError, match="no Megatron-LM arguments found"):
        parse_megatron_text("echo hi\n", llama, "train.sh")
    job = write_yaml("lora.yaml", {"model": "llama3-8b", "training": "lora", "seq_len": 4096, "global_batch": 64})
    with pytest.raises(InputError) as err:
        parse_megatron_text(args("--micro-batch-size 1"), load_inputs(CLUSTER_64, job), "train.sh")
    assert (err.value.file, err.value.field) == (str(job), "training")


@pytest.mark.parametrize("flags, recompute, warning", [
    ("--recompute-granularity full --recompute-method uniform --recompute-num-layers 1", "full", None),
    ("--recompute-granularity selective", "selective", None),
    ("--recompute-activations", "selective", None),
    ("--recompute-granularity full --recompute-method block --recompute-num-layers 32", "full", None),
    ("--recompute-granularity full --recompute-method block --recompute-num-layers 0", "none", None),
    ("--recompute-granularity full --recompute-method uniform --recompute-num-layers 2", "full",
     "--recompute-method uniform --recompute-num-layers 2: checkpoints every 2 layers and rebuilds 2 at once; the"
     " planner models one checkpoint per layer"),
    ("--recompute-method uniform", "none", "--recompute-method / --recompute-num-layers do nothing without"
                                           " --recompute-granularity"),
])
def test_recompute(llama, flags, recompute, warning):
    _, job = parse_megatron_text(args(f"--micro-batch-size 1 --bf16 {flags}"), llama)
    assert job.plan.recompute == recompute
    assert warning is None or warning in job.warnings


@pytest.mark.parametrize("flags, expected", [
    ("--bf16 --fp8-format hybrid", {"precision": "fp8"}),
    ("--fp16", {"precision": "fp16"}),
    ("", {"precision": "fp32"}),
    ("--bf16 --optimizer sgd", {"optimizer": "sgd-momentum"}),
    ("--bf16 --optimizer sgd --sgd-momentum 0", {"optimizer": "sgd"}),
    ("--bf16 --use-distributed-optimizer --optimizer-cpu-offload", {"zero": 1, "offload": "optimizer"}),
    ("--bf16 --use-torch-fsdp2", {"zero": 3}),
    ("--bf16 --use-megatron-fsdp --data-parallel-sharding-strategy optim_grads", {"zero": 2}),
    ("--bf16 --tensor-model-parallel-size 4 --pipeline-model-parallel-size 4 --num-layers-per-virtual-pipeline-stage 2"
     " --sequence-parallel --context-parallel-size 2", {"tp": 4, "pp": 4, "vpp": 4, "cp": 2, "dp": 2, "sp": True,
                                                        "gas": 256}),
])
def test_plan_keys(llama, flags, expected):
    _, job = parse_megatron_text(args(f"--micro-batch-size 1 {flags}"), llama)
    assert {k: getattr(job.plan, k) for k in expected} == expected


def test_block_recompute_counts_the_first_layers_of_every_stage(llama):
    script = args("--micro-batch-size 1 --bf16 --pipeline-model-parallel-size 4 --decoder-first-pipeline-num-layers 3"
                  " --decoder-last-pipeline-num-layers 5 --recompute-granularity full --recompute-method block"
                  " --recompute-num-layers 4")
    _, job = parse_megatron_text(script, llama)
    plan = job.plan
    assert plan.layer_partition(32) == (3, 12, 12, 5)
    # megatron-core recomputes the first N layers of each stage; the 3-layer first stage all of its.
    assert (plan.recompute, plan.recompute_layers) == ("full", (3, 4, 4, 4))
    assert [plan.recomputed_layers(i, n) for i, n in enumerate((3, 12, 12, 5))] == [3, 4, 4, 4]
    assert not job.warnings or all("recompute" not in w for w in job.warnings)


def test_per_stage_counts_are_emitted_as_the_largest_with_a_note(llama):
    plan = Plan(parallel=ParallelDims(pp=4, dp=16), zero=1, mbs=1, gas=32, recompute="full",
                first_stage_layers=6, last_stage_layers=6, recompute_layers=(4, 2, 2, 0))
    text = script(plan, llama)
    assert "--recompute-method block" in text and "--recompute-num-layers 4" in text
    assert "--decoder-first-pipeline-num-layers 6" in text and "--decoder-last-pipeline-num-layers 6" in text
    assert "# the plan recomputes 4/2/2/0 layers per stage" in text
    _, job = parse_megatron_text(text, llama)
    assert job.plan == plan.with_(recompute_layers=(4, 4, 4, 4))


def test_what_differs_from_the_job_is_said(llama):
    script = ("torchrun --nproc-per-node 8 --nnodes 2 pretrain_gpt.py --micro-batch-size 1 --bf16 --seq-length 4096"
              " --global-batch-size 256 --pipeline-model-parallel-size 4 --decoder-first-pipeline-num-layers 6"
              " --decoder-last-pipeline-num-layers 6 --num-layers 32 --hidden-size 5120 --num-attention-heads 32"
              " --group-query-attention --num-query-groups 8 --ffn-hidden-size 14336 --swiglu --normalization RMSNorm"
              " --position-embedding-type rope --untie-embeddings-and-output-weights --disable-bias-linear"
              " --vocab-size 128256 --moe-expert-capacity-factor 1.25 --my-flag 3 --lr 1e-4")
    _, job = parse_megatron_text(script, llama)
    assert (job.workload.seq_len, job.workload.global_batch, job.plan.gas) == (4096, 256, 16)
    assert (job.plan.first_stage_layers, job.plan.last_stage_layers) == (6, 6)
    assert job.plan.layer_partition(32) == (6, 10, 10, 6)
    assert job.warnings == (
        "--global-batch-size 256 differs from the job's global_batch 512; planned with the script's",
        "--seq-length 4096 differs from the job's seq_len 8192; planned with the script's",
        "--hidden-dropout 0.1 (the default): dropout keeps masks the planner does not count (it assumes no dropout,"
        " as in Llama-style recipes)",
        "--attention-dropout 0.1 (the default): dropout keeps masks the planner does not count (it assumes no"
        " dropout, as in Llama-style recipes)",
        "the script's model differs from the job's llama3-8b (script vs job): hidden size 5120 vs 4096; head dim 160"
        " vs 128 (10.46 B vs 8.03 B parameters); planned with the job's",
        "the launch line starts 2 x 8 = 16 GPUs; the cluster has 64; planned for the cluster",
        "--moe-expert-capacity-factor: drops or pads tokens at a capacity; the planner assumes dropless routing with"
        " balanced experts",
        "not modelled (their effect on memory and time is not counted): --my-flag",
        "read; no effect on the planner's memory or step time: --lr",
    )


# -- plans to arguments ---------------------------------------------------------------------

def test_emit_megatron(llama):
    plan = Plan(parallel=ParallelDims(tp=2, pp=4, dp=8, vpp=2, sp=True), zero=1, recompute="full", mbs=2, gas=32,
                precision="fp8", offload="optimizer")
    text = script(plan, llama)
    lists = read_script(text).variables
    assert lists["MODEL_ARGS"] == [
        "--num-layers", "32", "--hidden-size", "4096", "--ffn-hidden-size", "14336", "--num-attention-heads", "32",
        "--kv-channels", "128", "--group-query-attention", "--num-query-groups", "8", "--position-embedding-type",
        "rope", "--rotary-base", "10000", "--normalization", "RMSNorm", "--swiglu",
        "--untie-embeddings-and-output-weights", "--disable-bias-linear", "--vocab-size", "128256"]
    assert lists["PARALLEL_ARGS"] == [
        "--tensor-model-parallel-size", "2", "--pipeline-model-parallel-size", "4", "--context-parallel-size", "1",
        "--num-layers-per-virtual-pipeline-stage", "4", "--sequence-parallel", "--use-distributed-optimizer",
        "--optimizer-cpu-offload", "--optimizer-offload-fraction", "1.0"]
    assert lists["TRAINING_ARGS"] == [
        "--micro-batch-size", "2", "--global-batch-size", "512", "--seq-length", "8192", "--max-position-embeddings",
        "8192", "--attention-dropout", "0.0", "--hidden-dropout", "0.0", "--recompute-granularity", "full",
        "--recompute-method", "uniform", "--recompute-num-layers", "1", "--bf16", "--fp8-format", "hybrid",
        "--fp8-recipe", "tensorwise", "--optimizer", "adam"]
    # The torchrun line starts the cluster's 8 nodes x 8 GPUs; llama3-8b-pretrain's 15T tokens are
    # 15e12 / (512 x 8192) = 3,576,278.6 steps.
    assert lists["DISTRIBUTED_ARGS"][:4] == ["--nnodes", "8", "--nproc-per-node", "8"]
    assert "--train-iters" in lists["SCHEDULE_ARGS"] and "3576279" in lists["SCHEDULE_ARGS"]
    assert text.splitlines()[-2:] == ['torchrun "${DISTRIBUTED_ARGS[@]}" pretrain_gpt.py \\',
                                      '    "${MODEL_ARGS[@]}" "${PARALLEL_ARGS[@]}" "${TRAINING_ARGS[@]}"'
                                      ' "${DATA_ARGS[@]}" "${SCHEDULE_ARGS[@]}"']
    _, job = parse_megatron_text(text, llama)
    assert job.plan == plan
    assert job.read["form"] == "launch line" and job.read["program"] == "pretrain_gpt.py"


def test_emit_refuses_plans_megatron_cannot_run(llama):
    plan = Plan(parallel=ParallelDims(dp=64), zero=3, mbs=1, gas=8, optimizer="adamw8bit")
    with pytest.raises(UnsupportedPlan) as err:
        script(plan, llama)
    assert str(err.value) == ("Megatron-LM cannot run this plan: ZeRO stage zero=3 (it runs zero in 0, 1);"
                              " optimizer=adamw8bit (it runs optimizer in adamw, adam, sgd, sgd-momentum)")


def test_emit_torchrun(llama):
    plan = Plan(parallel=ParallelDims(tp=8, dp=8), zero=1, mbs=1, gas=64)
    lines = emit_torchrun(plan, llama.cluster).splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert lines[5:] == ["torchrun \\", "    --nnodes 8 \\", "    --nproc-per-node 8 \\", "    --rdzv-backend c10d \\",
                         '    --rdzv-endpoint "${MASTER_ADDR:?set MASTER_ADDR}:${MASTER_PORT:-29500}" \\',
                         '    --rdzv-id "${JOB_ID:-planner}" \\', '    "$@"']
    with pytest.raises(UnsupportedPlan, match="the plan uses 8 GPUs; the cluster has 64"):
        emit_torchrun(Plan(parallel=ParallelDims(dp=8)), llama.cluster)


# Round trip over the solver's plan space on small jobs: every plan Megatron-LM runs.
_JOBS = {
    "dense": ({"model": "debug", "seq_len": 512, "global_batch": 32},
              {"precision": ["bf16", "fp16", "fp8", "fp32"], "optimizer": ["adamw", "sgd", "sgd-momentum"],
               "offload": ["none", "optimizer"], "cp": [1, 2], "vpp": [1, 2]}),
    "uneven": ({"model": {"model_type": "llama", "hidden_size": 256, "intermediate_size": 704,
                          "num_hidden_layers": 6, "num_attention_heads": 8, "num_key_value_heads": 4,
                          "vocab_size": 1024}, "seq_len": 256, "global_batch": 16, "optimizer": "adam"}, {}),
    "moe": ({"model": "debug-moe", "seq_len": 256, "global_batch": 16}, {"ep": [1, 2, 4, 8]}),
    # Dense: megatron-core's config checks Transformer Engine's version for fp8 MoE (validate suite).
    "blackwell": ({"model": "debug", "seq_len": 512, "global_batch": 32, "precision": "mxfp8"}, {"cp": [1, 2]}),
    "fp4": ({"model": "debug", "seq_len": 512, "global_batch": 32, "precision": "nvfp4"}, {"cp": [1, 2]}),
}


@pytest.fixture(scope="module")
def spaces(tmp_path_factory):
    root = tmp_path_factory.mktemp("megatron")
    for gpu in ("h100_sxm_80gb", "b200_hgx"):
        (root / f"{gpu}.yaml").write_text(yaml.safe_dump({"gpu": gpu, "gpus_per_node": 8, "nodes": 1}))
    out = {}
    for name, (job, constraints) in _JOBS.items():
        (root / f"{name}.yaml").write_text(yaml.safe_dump(job))
        inputs = load_inputs(root / f"{space_gpu(job)}.yaml", root / f"{name}.yaml")
        limits = {k: Constraint(values=tuple(v)) for k, v in constraints.items()}
        plans = [p for p in candidate_plans(inputs.workload, inputs.cluster, inputs.defaults, limits)
                 if not megatron_problems(p)]
        out[name] = (inputs, plans)
    return out


def test_the_round_trip_spaces_are_not_trivial(spaces):
    sizes = {name: len(plans) for name, (_, plans) in spaces.items()}
    assert sizes["dense"] > 1000 and sizes["uneven"] > 50 and sizes["moe"] > 100, sizes
    assert any(p.pp == 4 for p in spaces["uneven"][1])  # 6 layers over 4 stages: [1, 2, 2, 1]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_parse_of_emit_is_the_plan(spaces, data):
    name = data.draw(st.sampled_from(sorted(spaces)))
    inputs, plans = spaces[name]
    plan = data.draw(st.sampled_from(plans))
    _, job = parse_megatron_text(script(plan, inputs), inputs)
    assert job.plan == plan
    assert (job.workload.seq_len, job.workload.global_batch) == (inputs.workload.seq_len, inputs.workload.global_batch)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_parse_of_emit_keeps_partitions_and_block_recompute(spaces, data):
    """The solver's stage keys: uneven first/last stages and the first N layers of every stage
    recomputed (the plans planner.search.point.Point.plan builds, in their canonical form)."""
    inputs, plans = spaces["uneven"]
    layers = inputs.workload.arch.num_layers
    plan = data.draw(st.sampled_from([p for p in plans if p.pp > 1 and p.recompute == "full"]))
    pp, vpp = plan.pp, plan.vpp
    first = data.draw(st.integers(1, layers - (pp - 1)), label="first")
    last = data.draw(st.integers(1, layers - first - (pp - 2)), label="last")
    rest = layers - first - last
    if pp > 2 and rest % (pp - 2) or (pp == 2 and rest):
        return
    counts = (first,) + ((rest // (pp - 2),) * (pp - 2) if pp > 2 else ()) + (last,)
    if not fills_chunks(counts, vpp):  # rules.py: interleaving needs every chunk filled
        return
    plan = plan.with_(first_stage_layers=first, last_stage_layers=last)
    if counts == stage_layer_counts(layers, pp):
        plan = plan.with_(first_stage_layers=None, last_stage_layers=None)
    # Megatron recomputes the first N layers of each of a stage's vpp chunks.
    n = vpp * data.draw(st.integers(1, -(-max(counts) // vpp)), label="recompute-num-layers")
    clipped = tuple(min(c, n) for c in counts)
    plan = plan.with_(recompute_layers=None if clipped == counts else clipped)
    assert plan.layer_partition(layers) in (None, counts)
    _, job = parse_megatron_text(script(plan, inputs), inputs)
    assert job.plan == plan


def test_block_recompute_with_virtual_stages_counts_per_model_chunk(llama):
    # pp 4 × vpp 2 over 32 layers: 8 layers per stage in two chunks of 4; recomputing 4 per stage
    # is --recompute-num-layers 2 (megatron-core applies it to each chunk).
    plan = Plan(parallel=ParallelDims(pp=4, dp=16, vpp=2), zero=1, mbs=1, gas=32, recompute="full",
                recompute_layers=(4, 4, 4, 4))
    text = script(plan, llama)
    assert "--recompute-num-layers 2" in text and "# the plan recomputes" not in text
    _, job = parse_megatron_text(text, llama)
    assert job.plan == plan


def test_uneven_interleaved_stages_round_trip_as_flags_or_a_layout(llama):
    # 32 layers over pp 4 as 6/10/10/6 in vpp 2 chunks divides: first/last-stage flags. 7/9/9/7
    # does not: megatron-core's --pipeline-model-parallel-layout names every virtual stage.
    plan = Plan(parallel=ParallelDims(pp=4, dp=16, vpp=2), zero=1, mbs=1, gas=32,
                first_stage_layers=6, last_stage_layers=6)
    text = script(plan, llama)
    assert "--decoder-first-pipeline-num-layers 6" in text and "--num-virtual-stages-per-pipeline-rank 2" in text
    assert parse_megatron_text(text, llama)[1].plan == plan
    odd = plan.with_(first_stage_layers=7, last_stage_layers=7)
    text = script(odd, llama)
    assert '--pipeline-model-parallel-layout "Ettt|ttttt|ttttt|tttt|tttt|tttt|tttt|tttL"' in text
    assert "--decoder-first-pipeline-num-layers" not in text
    assert parse_megatron_text(text, llama)[1].plan == odd


def test_llama3_405b_layout_first_chunk_embedding_last_chunk_loss():
    from planner.engines.pipeline_layout import expand, layout_string, stage_counts

    counts = (7,) + (8,) * 14 + (7,)
    stages = expand(layout_string(counts, 8))
    assert len(stages) == 128 and stages[0] == "E" and stages[-1] == "L"
    assert all(stage == "t" for stage in stages[1:-1])
    assert stage_counts(stages, 16) == (counts, 8)
    # Megatron's own shorthand expands to the same stages.
    assert expand("E|(t|)*126,L") == stages


@pytest.mark.parametrize("flags, field, fragment", [
    ("--pipeline-model-parallel-layout 'Et|tt|tt|tL' --num-layers-per-virtual-pipeline-stage 1",
     "--num-layers-per-virtual-pipeline-stage", "cannot be combined"),
    ("--pipeline-model-parallel-layout 'Et|tt|tL'", "--pipeline-model-parallel-layout", "do not divide"),
    ("--pipeline-model-parallel-layout 'Et|tt|tt|tX'", "--pipeline-model-parallel-layout", "unexpected symbols"),
    ("--pipeline-model-parallel-layout 'Et|tt|tt|tL'", "--pipeline-model-parallel-layout", "places 6 decoder layers"),
])
def test_bad_layouts_name_the_flag(llama, flags, field, fragment):
    with pytest.raises(InputError) as e:
        parse_megatron_text(args(f"--micro-batch-size 1 --bf16 --pipeline-model-parallel-size 4 {flags}"), llama)
    assert e.value.field == field and fragment in str(e.value)


def test_entry_points_of_other_models_are_refused(llama):
    with pytest.raises(InputError) as err:
        parse_megatron_text("torchrun --nproc-per-node 8 pretrain_t5.py --micro-batch-size 1\n", llama, "t5.sh")
    assert str(err.value) == ("t5.sh: line 1: pretrain_t5.py trains an encoder-decoder T5; planner models"
                              " decoder-only GPT models")


def test_the_environment_reaches_the_script(llama):
    text = 'TP=${TP:-1}\n' + args("--micro-batch-size 1 --tensor-model-parallel-size $TP")
    assert parse_megatron_text(text, llama, "train.sh")[1].plan.parallel.tp == 1
    assert parse_megatron_text(text, llama, "train.sh", env={"TP": "4"})[1].plan.parallel.tp == 4


def test_expert_tensor_parallel_recompute_modules_and_activation_offload_are_plan_keys():
    inputs = load_inputs(CLUSTER_64, EXAMPLES / "jobs" / "mixtral-8x7b-pretrain.yaml")
    moe = ("--tensor-model-parallel-size 2 --expert-model-parallel-size 8 --expert-tensor-parallel-size 1"
           " --sequence-parallel --micro-batch-size 1 --bf16 --use-distributed-optimizer")
    _, job = parse_megatron_text(args(moe + " --recompute-granularity selective --recompute-modules core_attn moe_act"),
                                 inputs)
    assert (job.plan.etp, job.plan.expert_tp, job.plan.recompute, job.plan.recompute_modules) == \
        (1, 1, "selective", ("core_attn", "moe_act"))
    _, job = parse_megatron_text(args(moe + " --cpu-offloading --cpu-offloading-num-layers 2"), inputs)
    assert job.plan.offload_activation_layers == 2 and job.plan.recompute == "none"
    assert not any("offloading" in w for w in job.warnings)
    # etp equal to tp is the default (None), core_attn alone is Megatron's default module list
    _, job = parse_megatron_text(args(moe.replace("expert-tensor-parallel-size 1", "expert-tensor-parallel-size 2")
                                      + " --recompute-granularity selective --recompute-modules core_attn"), inputs)
    assert (job.plan.etp, job.plan.recompute_modules) == (None, None)
    with pytest.raises(InputError, match="recompute-modules"):
        parse_megatron_text(args(moe + " --recompute-granularity selective --recompute-modules attention"), inputs)


# -- the model's flags ----------------------------------------------------------------------------

_REFUSED = {
    "bloom-176b": "an embedding norm, alibi positions", "bloom-560m": "an embedding norm, alibi positions",
    "gemma-7b": "a gated gelu_pytorch_tanh MLP", "gemma2-9b": "4 norms per layer, a gated gelu_pytorch_tanh MLP",
    "gemma3-1b": "4 norms per layer, a gated gelu_pytorch_tanh MLP", "grok-1": "4 norms per layer, a gated gelu MLP",
    "gpt-oss-20b": "attention sinks, a gated sigmoid_glu_clamped MLP, these linear biases, these expert biases",
    "gpt-oss-120b": "attention sinks, a gated sigmoid_glu_clamped MLP, these linear biases, these expert biases",
    "minimax-m2": "projection qk norm", "olmo2-7b": "projection qk norm", "pythia-6.9b": "parallel residual blocks",
}
_BRIDGED = {"gemma-7b", "gemma2-9b", "gemma3-1b", "gpt-oss-20b", "gpt-oss-120b", "minimax-m2"}
"""Of those, the models Megatron-Bridge builds from their Hugging Face checkpoints."""
_BRIDGE = "; Megatron-Bridge builds it from its Hugging Face checkpoint (megatron-bridge 0.6.2, AutoBridge): launch the plan there"


def test_plain_mlps_build_only_with_the_activations_the_flags_name():
    """pretrain_gpt.py builds an ungated MLP with GELU or squared ReLU (--squared-relu): Arcee's
    squared ReLU builds, Apertus's xIELU does not and no bridge covers it."""
    shape = {"vocab_size": 1024, "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2}
    arcee = architecture_from_config({"model_type": "arcee", **shape}, "arcee")
    assert unbuildable(arcee) is None and "--squared-relu" in model_flags(arcee)[0]
    apertus = architecture_from_config({"model_type": "apertus", **shape}, "apertus")
    assert unbuildable(apertus) == ("a xielu MLP (beyond pretrain_gpt.py's flags), and megatron-bridge 0.6.2 has no"
                                    " bridge for apertus")


@pytest.mark.parametrize("name", list_presets())
def test_model_flags_read_back_to_the_presets(name):
    """The emitted shape flags build the job's model through planner.model.megatron_args (MLA,
    MoE layer patterns, shared experts, partial rotary and squared ReLU included), up to
    Megatron's vocabulary padding to a multiple of 128 (tp 1)."""
    arch = load_architecture(name)
    if name in _REFUSED:
        with pytest.raises(UnsupportedPlan) as err:
            model_flags(arch)
        bridge = _BRIDGE if name in _BRIDGED else ""
        assert str(err.value) == f"Megatron-LM's pretrain_gpt.py flags cannot build {name}: it has {_REFUSED[name]}{bridge}"
        # Megatron-Core builds the others neither way: the search and `estimate` leave it out.
        unbuilt = unbuildable(arch)
        assert (unbuilt is None) == (name in _BRIDGED)
        if unbuilt is not None:
            assert unbuilt == f"{_REFUSED[name]} (beyond pretrain_gpt.py's flags), and megatron-bridge 0.6.2 has no" \
                              f" bridge for {arch.family}"
        return
    assert unbuildable(arch) is None
    flags, _ = model_flags(arch)
    words = read_script("A=(" + " ".join(flags) + ")").variables["A"]
    parsed, notes = parse_flags(words)
    assert notes == []
    padded = -(-arch.vocab // 128) * 128
    warnings = compare_shapes(parsed, parsed, arch)
    if padded == arch.vocab:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warnings[0].startswith(
            f"the script's model differs from the job's {name} (script vs job): vocabulary {padded} vs {arch.vocab} (")


def test_the_script_is_bash_that_stops_at_its_first_placeholder(tmp_path, llama):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash on this machine")
    path = tmp_path / "megatron_launch.sh"
    path.write_text(script(Plan(parallel=ParallelDims(tp=8, dp=8, sp=True), zero=1, mbs=1, gas=64), llama))
    run = subprocess.run([bash, str(path)], capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    # Several nodes: MASTER_ADDR first, on the DISTRIBUTED_ARGS line, before anything runs.
    assert run.returncode != 0 and "MASTER_ADDR: set MASTER_ADDR to the address of the first node" in run.stderr
    run = subprocess.run([bash, str(path)], capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"], "MASTER_ADDR": "node0"})
    assert "DATA_PATH: set DATA_PATH to a preprocessed dataset prefix" in run.stderr


def test_multimodal_models_run_through_megatron_bridge_or_not_at_all():
    """A multimodal config is its text decoder plus encoders pretrain_gpt.py cannot build:
    Megatron-Bridge bridges Qwen3-VL (emitting a script says so), not Llama 4's multimodal model
    (the search leaves Megatron-Core out)."""
    text = {"vocab_size": 1000, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2}
    with pytest.warns(UserWarning, match="encoders"):
        qwen = load_architecture({"model_type": "qwen3_vl", "text_config": {**text, "head_dim": 16},
                                  "vision_config": {}})
        llama4 = load_architecture({"model_type": "llama4", "vision_config": {},
                                    "text_config": {**text, "num_local_experts": 2, "intermediate_size_mlp": 128}})
    assert unbuildable(qwen) is None
    assert pretrain_gpt_gaps(qwen) == "the encoders of a qwen3_vl model" and bridged(qwen)
    assert unbuildable(llama4) == ("the encoders of a llama4 model (beyond pretrain_gpt.py's flags), and"
                                   " megatron-bridge 0.6.2 has no bridge for llama4")
    with pytest.raises(UnsupportedPlan, match="Megatron-Bridge builds it"):
        model_flags(qwen)


def test_windows_shorter_than_the_sequence_are_beyond_pretrain_gpt_flags():
    """The emitted script attends in full; the time model charges a layer's window. Where a
    window is shorter than the job's sequences the flags do not build the model timed: Mistral's
    Megatron-Bridge bridge sets its window (mistral_bridge.py `window_size`), Llama 4's chunked
    layers have no bridge. Windows that cover the sequence change nothing."""
    mistral, llama4 = load_architecture("mistral-7b"), load_architecture("llama4-scout")
    mistral_windows, llama4_windows = (4096,) * mistral.num_layers, (8192, 8192, 8192, None) * 12
    assert pretrain_gpt_gaps(mistral, mistral_windows, 8192) == \
        "attention windows of 4,096 tokens within its 8,192-token sequences" and bridged(mistral)
    assert unbuildable(mistral, mistral_windows, 8192) is None
    assert pretrain_gpt_gaps(mistral, mistral_windows, 4096) is None
    assert unbuildable(llama4, llama4_windows, 16384) == (
        "attention windows of 8,192 tokens within its 16,384-token sequences (beyond pretrain_gpt.py's flags),"
        " and megatron-bridge 0.6.2 has no bridge for llama4_text")
    assert unbuildable(llama4, llama4_windows, 8192) is None
    with pytest.raises(UnsupportedPlan, match="Megatron-Bridge builds it"):
        model_flags(mistral, mistral_windows, 8192)
