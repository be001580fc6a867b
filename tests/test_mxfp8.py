"""mxfp8 training (OCP MX block scaling, one e8m0 scale per 32 elements) on the parts whose tensor
cores apply the block scales: what it keeps and moves against fp8's per-tensor scaling, the plans
Transformer Engine can launch with it, and the launch files of the engines that run it read
back as written (planner/cost/precisions.py)."""
from __future__ import annotations

import pytest
from conftest import B200_NODE, B200_NODES, inputs_from_text
from test_engine_round_trip import round_trip

from planner.cost.evaluate import evaluate
from planner.cost.inputs import parse_plan_spec
from planner.cost.memory.activations import layer_activation_bytes
from planner.cost.precisions import fp8_transposes
from planner.cost.timing import elementwise as elt
from planner.engines import with_framework
from planner.engines.megatron_flags import FlagReader, parse_flags
from planner.engines.megatron_states import fp8_param_gather, state_dtypes
from planner.engines.megatron_states import precision as megatron_precision
from planner.engines.rules import plan_problems
from planner.spec.errors import InputError


@pytest.fixture
def llama8b(tmp_path):
    return inputs_from_text(tmp_path, B200_NODE, "model: llama3-8b\ntraining: pretrain\nseq_len: 8192\n"
                                                 "global_batch: 64\nprecision: mxfp8\n")


def test_a_layer_keeps_fp8_inputs_and_one_scale_byte_per_32(llama8b):
    """Transformer Engine saves each linear layer's input for its weight gradient quantized
    column-wise (linear.py: `update_usage(rowwise_usage=False, columnwise_usage=True)`): one byte
    per element under both recipes, and under MXFP8 a uint8 scale per 32 of them. A dense Llama
    layer at tp 1 quantizes the QKV and fc1 inputs (h each), the out-projection's (the query
    width) and fc2's (the FFN width)."""
    arch = llama8b.workload.arch
    mx = parse_plan_spec("tp=1,pp=1,zero=1,mbs=1,precision=mxfp8", llama8b)
    per_tensor = mx.with_(precision="fp8")
    quantized = 2 * arch.hidden + arch.attention.q_dim + arch.ffn
    mx_bytes = layer_activation_bytes(arch, mx, llama8b.workload)(0)
    fp8_bytes = layer_activation_bytes(arch, per_tensor, llama8b.workload)(0)
    assert mx_bytes - fp8_bytes == quantized / 32 == 832


def test_block_scaling_moves_fewer_bytes_and_launches_fewer_kernels(llama8b):
    """No amax pass before a cast, the MLP activation writing its fp8 output itself, one kernel
    per quantization (transformer_engine 2.8 csrc: quantizer.cpp, activation.cpp): a layer's
    casts move fewer bytes than under current scaling, the norm outputs' alone the same plus the
    scales, and an expert's input costs one kernel instead of three."""
    arch = llama8b.workload.arch
    mx = elt.layer_bytes(arch, 0, "megatron", "mxfp8")
    cs = elt.layer_bytes(arch, 0, "megatron", "tensor")
    assert mx.cast_sharded < cs.cast_sharded and mx.backward_sharded < cs.backward_sharded
    assert mx.backward_residual < cs.backward_residual
    assert mx.cast_residual == cs.cast_residual + 2 * arch.hidden * 2 / 32
    assert (mx.residual_stream, mx.sharded) == (cs.residual_stream, cs.sharded)
    assert elt.layer_kernels(arch, 0, "megatron", "mxfp8", 1) < elt.layer_kernels(arch, 0, "megatron", "tensor", 1)
    experts = 16
    assert elt._expert_kernels("tensor", experts) - elt._expert_kernels("mxfp8", experts) == 2 * experts * (3 - 1)


def test_tensor_scaled_casts_write_no_transpose_on_blackwell(llama8b):
    """Blackwell's fp8 GEMMs take either operand layout, so Transformer Engine writes a cast
    tensor once, not also transposed (csrc/quantizer.cpp `Float8Quantizer`; pytorch/utils.py
    `is_non_tn_fp8_gemm_supported`): one byte less per quantized element, forward and backward."""
    arch = llama8b.workload.arch
    assert not fp8_transposes("b200_hgx") and fp8_transposes("h100_sxm_80gb") and fp8_transposes("rtx5090")
    hopper = elt.layer_bytes(arch, 0, "megatron", "tensor")
    blackwell = elt.layer_bytes(arch, 0, "megatron", "tensor", fp8_transpose=False)
    h, att = arch.hidden, arch.attention
    assert hopper.cast_residual - blackwell.cast_residual == 2 * h  # the QKV and fc1 inputs
    assert hopper.cast_sharded - blackwell.cast_sharded == att.num_heads * att.value_head_dim + arch.ffn
    assert hopper.backward_residual - blackwell.backward_residual == 2 * h
    assert hopper.backward_sharded - blackwell.backward_sharded == att.q_dim + 2 * att.kv_dim + 2 * arch.ffn
    # MXFP8 writes both usages with their scales on every GPU.
    assert elt.layer_bytes(arch, 0, "megatron", "mxfp8", fp8_transpose=False) == elt.layer_bytes(arch, 0, "megatron",
                                                                                                "mxfp8")


def test_same_plan_in_mxfp8_is_faster_than_fp8_and_bf16_on_blackwell(llama8b):
    plan = parse_plan_spec("tp=1,pp=1,zero=1,mbs=1,recompute=full,precision=mxfp8", llama8b)
    mx, cs, bf = (evaluate(plan.with_(precision=p, fp8_param_gather=False), llama8b.workload, llama8b.cluster)
                  for p in ("mxfp8", "fp8", "bf16"))
    assert mx.time.step < cs.time.step < bf.time.step
    # The same states; the saved fp8 inputs only gain their scales. Transformer Engine's cached fp8
    # copy of each linear weight holds both usages under MXFP8 (2 + 2/32 bytes) and one under
    # tensor scaling (1 byte: a B200's fp8 GEMMs take either layout, no transpose); bf16 has none.
    linear = 32 * (4096 * 10240 + 3 * 4096 * 14336)  # Llama 3 8B's projections
    assert mx.memory.weights - bf.memory.weights == pytest.approx(linear * (2 + 2 / 32), abs=8)
    assert cs.memory.weights - bf.memory.weights == pytest.approx(linear, abs=8)
    assert mx.memory.optimizer == cs.memory.optimizer
    gathered = {p: evaluate(plan.with_(precision=p, fp8_param_gather=True), llama8b.workload, llama8b.cluster)
                for p in ("mxfp8", "fp8")}
    # fp8 parameters instead: the MXFP8 pair replaces the 16-bit weight, a lone fp8 tensor halves it.
    assert gathered["mxfp8"].memory.weights - bf.memory.weights == pytest.approx(linear / 16, abs=8)
    assert bf.memory.weights - gathered["fp8"].memory.weights == pytest.approx(linear, abs=8)
    assert 0 <= mx.memory.activations - cs.memory.activations < 0.01 * cs.memory.activations
    for ev in (mx, cs, bf):
        assert 0 < ev.time.mfu <= 1


def test_mxfp8_needs_block_scaling_tensor_cores(tmp_path):
    inputs = inputs_from_text(tmp_path, "gpu: h100_sxm_80gb\ngpus_per_node: 8\n",
                              "model: llama3-8b\nseq_len: 8192\nglobal_batch: 64\nprecision: fp8\n")
    with pytest.raises(InputError, match="--plan: h100_sxm_80gb has no mxfp8 .block-scaled fp8. tensor cores; use fp8"):
        parse_plan_spec("tp=1,pp=1,zero=1,mbs=1,precision=mxfp8", inputs)
    plan = parse_plan_spec("tp=1,pp=1,zero=1,mbs=1,precision=fp8", inputs).with_(precision="mxfp8")
    assert "h100_sxm_80gb has no mxfp8 (block-scaled fp8) tensor cores" in plan_problems(plan, inputs.workload,
                                                                                          inputs.cluster)


@pytest.mark.parametrize("spec", [
    # Llama 3 8B's FFN (14,336) over tp 8 is 1,792 = 56 x 32, its query width 4,096 / 8 = 512, its
    # key-value width 1,024 / 8 = 128; 8,192 tokens per micro-batch, 1,024 per SP shard.
    "tp=8,sp=true,pp=1,zero=1,mbs=1",
    "tp=4,sp=true,pp=1,zero=1,mbs=1",
])
def test_llama_shapes_block_on_every_tp_rank(llama8b, spec):
    plan = parse_plan_spec(f"{spec},precision=mxfp8", llama8b)
    assert [p for p in plan_problems(plan, llama8b.workload, llama8b.cluster) if "mxfp8" in p] == []


@pytest.mark.parametrize("precision, hidden, heads, block", [("mxfp8", 4080, 34, 32), ("nvfp4", 4072, 8, 16)])
def test_shapes_that_do_not_divide_by_the_block_are_refused_on_megatron(tmp_path, precision, hidden, heads, block):
    """Transformer Engine checks both dimensions of every tensor it quantizes to MXFP8, both
    flattened ones under NVFP4 (quantizer.cpp `MXFP8Quantizer::create_tensor`,
    `NVFP4Quantizer::create_tensor`): a hidden size of 4,080 and 2,040 tokens per micro-batch do
    not divide by 32, 4,072 and 2,040 not by 16."""
    model = (f'{{"model_type": "llama", "hidden_size": {hidden}, "intermediate_size": 11008, "num_hidden_layers": 4,'
             f' "num_attention_heads": {heads}, "num_key_value_heads": {heads}, "vocab_size": 32000}}')
    inputs = inputs_from_text(tmp_path, B200_NODE,
                              f"model: {model}\nseq_len: 2040\nglobal_batch: 64\nprecision: {precision}\n")
    plan = parse_plan_spec(f"tp=1,pp=1,zero=1,mbs=1,precision={precision}", inputs)
    problems = [p for p in plan_problems(plan, inputs.workload, inputs.cluster) if precision in p]
    assert problems == [f"{precision}: hidden {hidden} is not a multiple of {block}",
                        f"{precision}: query width / tp {hidden} is not a multiple of {block}",
                        f"{precision}: key-value width / tp {hidden} is not a multiple of {block}",
                        f"{precision}: 2040 tokens per micro-batch and rank (mbs x seq_len / cp) is not a multiple"
                        f" of {block}"]
    # 4,080 tokens divide by 16, not by 32.
    assert bool([p for p in plan_problems(plan.with_(mbs=2), inputs.workload, inputs.cluster) if "tokens" in p]) \
        == (block == 32)
    if precision == "mxfp8":  # torchtitan (torchao) leaves such a layer in 16 bits instead of failing.
        titan = with_framework(inputs.workload, "torchtitan")
        assert not [p for p in plan_problems(plan.with_(framework="torchtitan", zero=3), titan, inputs.cluster)
                    if "mxfp8" in p]


@pytest.mark.parametrize("flags, expected", [
    ("--bf16 --fp8-format e4m3 --fp8-recipe mxfp8", "mxfp8"),
    ("--bf16 --fp8-format hybrid --fp8-recipe tensorwise", "fp8"),
    ("--bf16 --fp8-format hybrid", "fp8"),
    ("--bf16", "bf16"),
])
def test_megatron_flags_name_the_recipe(flags, expected):
    reader = FlagReader(parse_flags(flags.split())[0], "train.sh", set())
    assert megatron_precision(reader) == expected


@pytest.mark.parametrize("flags, precision, zero, gathered, warned", [
    ("--fp8-param-gather --reuse-grad-buf-for-mxfp8-param-ag", "mxfp8", 1, True, False),
    ("--fp8-param-gather", "mxfp8", 1, True, True),  # Megatron-Bridge asserts the gradient-buffer gather
    ("--fp8-param-gather", "fp8", 1, True, False),
    ("--fp8-param-gather", "fp8", 0, False, True),    # no distributed optimizer: 16-bit weights and TE's cache
    ("--fp8-param-gather", "bf16", 1, False, True),   # no fp8: the parameters stay 16-bit
])
def test_megatron_fp8_param_gather_is_read_into_the_plan(flags, precision, zero, gathered, warned):
    warnings: list[str] = []
    reader = FlagReader(parse_flags(flags.split())[0], "train.sh", set())
    assert fp8_param_gather(reader, precision, zero, False, warnings) is gathered
    assert bool(warnings) is warned


@pytest.mark.parametrize("flags, precision, master", [
    ("--bf16", "bf16", 2),                                        # 16-bit remainders of the fp32 values
    ("--bf16 --fp8-format hybrid", "fp8", 2),                     # delayed scaling: the same
    ("--bf16 --fp8-format hybrid --fp8-recipe tensorwise", "fp8", None),  # fp32 master weights
    ("--bf16 --fp8-format e4m3 --fp8-recipe mxfp8", "mxfp8", None),
])
def test_the_precision_aware_optimizer_keeps_remainders_only_without_a_scaling_fp8_recipe(flags, precision, master):
    """megatron-core optimizer_config.py `use_precision_aware_optimizer_no_fp8_or_ds_fp8`: TE's
    FusedAdam keeps the master weights (as 16-bit remainders beside bf16 parameters) only without
    fp8 or with delayed scaling; current scaling and MXFP8 keep the distributed optimizer's fp32 copy."""
    words = (flags + " --use-distributed-optimizer --use-precision-aware-optimizer"
             " --exp-avg-dtype bf16 --exp-avg-sq-dtype bf16").split()
    reader = FlagReader(parse_flags(words)[0], "train.sh", set())
    assert megatron_precision(reader) == precision
    dtypes = state_dtypes(reader, precision, False, [])
    assert (dtypes.master, dtypes.moments) == (master, 2 + 2)


@pytest.mark.parametrize("engine", ["megatron", "torchtitan"])
def test_mxfp8_plans_round_trip_through_the_engines_files(tmp_path, engine):
    (tmp_path / "cluster.yaml").write_text(B200_NODES)
    (tmp_path / "job.yaml").write_text("model: llama3-8b\ntraining: pretrain\nseq_len: 8192\nglobal_batch: 256\n"
                                       "precision: mxfp8\nconstraints:\n  precision: [mxfp8]\n")
    assert round_trip(tmp_path / "cluster.yaml", tmp_path / "job.yaml", engine, tmp_path / "launch") == "fits"
    text = "\n".join(p.read_text() for p in (tmp_path / "launch").iterdir() if p.is_file())
    assert ("--fp8-recipe mxfp8" in text) if engine == "megatron" else ('"quantize.linear.mx"' in text)
    if engine == "megatron" and "--fp8-param-gather" in text:
        assert "--reuse-grad-buf-for-mxfp8-param-ag" in text
