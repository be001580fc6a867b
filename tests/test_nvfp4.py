"""nvfp4 training (Transformer Engine's NVFP4BlockScaling: e2m1 elements, an e4m3 scale per 16, a
random Hadamard transform before the weight-gradient GEMM) on Blackwell with Megatron-Core: what it
keeps and moves against the 8-bit recipes, the plans Transformer Engine can launch with it, and
Megatron-LM's flags for it read back as written (planner/cost/precisions.py)."""
from __future__ import annotations

import pytest
from conftest import B200_NODE, B200_NODES, inputs_from_text
from test_engine_round_trip import round_trip

from planner.cost.evaluate import evaluate
from planner.cost.inputs import load_inputs, parse_plan_spec
from planner.cost.memory.activations import layer_activation_bytes
from planner.cost.precisions import fp8_weight_bytes, saved_bytes_per_element
from planner.cost.timing import elementwise as elt
from planner.engines import framework_problems, with_framework
from planner.engines.megatron_flags import FlagReader, parse_flags
from planner.engines.megatron_states import fp8_param_gather, state_dtypes
from planner.engines.megatron_states import precision as megatron_precision
from planner.engines.rules import engine_defaults, plan_problems
from planner.spec.errors import InputError


@pytest.fixture
def llama8b(tmp_path):
    return inputs_from_text(tmp_path, B200_NODE, "model: llama3-8b\ntraining: pretrain\nseq_len: 8192\n"
                                                 "global_batch: 64\nprecision: nvfp4\n")


def test_an_nvfp4_element_is_half_a_byte_and_a_sixteenth_of_a_scale():
    """Two e2m1 values per byte and one e4m3 scale per 16 (transformer_engine 2.8
    tensor/nvfp4_tensor.py `get_scale_shape`): the saved column-wise usage, and both usages of a
    weight's cached copy."""
    assert saved_bytes_per_element("nvfp4") == 0.5625
    assert fp8_weight_bytes("nvfp4", "b200_hgx") == 1.125
    assert saved_bytes_per_element("mxfp8") == 1 + 1 / 32


def test_a_layer_keeps_its_gemm_inputs_in_four_bits(llama8b):
    """The four GEMM inputs of a dense Llama layer at tp 1 (QKV and fc1: h each, the out-projection:
    the query width, fc2: the FFN width) are saved in 0.5625 bytes instead of MXFP8's 1 + 1/32."""
    arch = llama8b.workload.arch
    nv = parse_plan_spec("tp=1,pp=1,zero=1,mbs=1,precision=nvfp4", llama8b)
    quantized = 2 * arch.hidden + arch.attention.q_dim + arch.ffn
    nv_bytes = layer_activation_bytes(arch, nv, llama8b.workload)(0)
    mx_bytes = layer_activation_bytes(arch, nv.with_(precision="mxfp8"), llama8b.workload)(0)
    assert mx_bytes - nv_bytes == quantized * (1 + 1 / 32 - 0.5625)


def test_each_cast_reads_its_input_three_times_in_three_kernels(llama8b):
    """The recipe's Hadamard transform needs its amax before either cast, and no norm or
    activation quantizes in its own kernel (csrc/quantizer.cpp `NVFP4Quantizer::quantize_impl`,
    extensions/normalization.cpp and activation.cpp `UNFUSED`): per element 2 + 2 + 2 read, two
    usages of 0.5625 written; the norm outputs and the attention output are written in 16 bits
    first, the activation's output too (2 more than MXFP8, which writes it fused)."""
    arch = llama8b.workload.arch
    h, att, ffn = arch.hidden, arch.attention, arch.ffn
    assert elt.NVFP4_QUANTIZE_BYTES == 7.125
    nv = elt.layer_bytes(arch, 0, "megatron", "nvfp4")
    mx = elt.layer_bytes(arch, 0, "megatron", "mxfp8")
    assert nv.cast_residual == 2 * 9.125 * h
    assert nv.cast_sharded == 9.125 * att.num_heads * att.value_head_dim + 7.125 * ffn
    assert nv.backward_residual == 2 * 7.125 * h
    assert nv.backward_sharded == 7.125 * (att.q_dim + 2 * att.kv_dim + 2 * ffn)
    assert (nv.residual_stream, nv.sharded) == (mx.residual_stream, mx.sharded)
    assert nv.cast_residual > mx.cast_residual and nv.backward_sharded > mx.backward_sharded
    assert elt.layer_kernels(arch, 0, "megatron", "nvfp4", 1) - elt.layer_kernels(arch, 0, "megatron", None, 1) == 12
    assert elt._expert_kernels("nvfp4", 8) == 2 * 8 * (1 + 3)


def test_same_plan_in_nvfp4_is_faster_than_mxfp8_and_keeps_less(llama8b):
    plan = parse_plan_spec("tp=1,pp=1,zero=1,mbs=1,recompute=full,precision=nvfp4", llama8b)
    nv, mx, bf = (evaluate(plan.with_(precision=p, fp8_param_gather=False), llama8b.workload, llama8b.cluster)
                  for p in ("nvfp4", "mxfp8", "bf16"))
    assert nv.time.step < mx.time.step < bf.time.step
    # GEMMs at twice the fp8 rate (B200: 9 against 4.5 PFLOP/s dense), the casts slower: between
    # the two, never the whole factor.
    assert mx.time.compute / 2 < nv.time.compute < mx.time.compute
    # Transformer Engine's cached copy of each linear weight: both 4-bit usages.
    linear = 32 * (4096 * 10240 + 3 * 4096 * 14336)  # Llama 3 8B's projections
    assert nv.memory.weights - bf.memory.weights == pytest.approx(linear * 1.125, abs=8)
    assert nv.memory.optimizer == mx.memory.optimizer == bf.memory.optimizer
    assert nv.memory.activations < mx.memory.activations
    for ev in (nv, mx, bf):
        assert 0 < ev.time.mfu <= 1


def test_nvfp4_needs_fp4_tensor_cores(tmp_path):
    for gpu, fallback in (("h100_sxm_80gb", "fp8"), ("a100_sxm_80gb", "bf16")):
        (tmp_path / "cluster.yaml").write_text(f"gpu: {gpu}\ngpus_per_node: 8\n")
        (tmp_path / "job.yaml").write_text("model: llama3-8b\nseq_len: 8192\nglobal_batch: 64\nprecision: nvfp4\n")
        with pytest.raises(InputError, match=f"{gpu} has no nvfp4 .block-scaled fp4. tensor cores; use {fallback}"):
            load_inputs(tmp_path / "cluster.yaml", tmp_path / "job.yaml", "megatron")
    inputs = inputs_from_text(tmp_path, "gpu: h100_sxm_80gb\ngpus_per_node: 8\n",
                              "model: llama3-8b\nseq_len: 8192\nglobal_batch: 64\nprecision: fp8\n")
    plan = parse_plan_spec("tp=1,pp=1,zero=1,mbs=1,precision=fp8", inputs).with_(precision="nvfp4")
    assert "h100_sxm_80gb has no nvfp4 (block-scaled fp4) tensor cores" in plan_problems(plan, inputs.workload,
                                                                                          inputs.cluster)


def test_only_megatron_core_plans_nvfp4(llama8b):
    """torchtitan 0.2.2 converts linears to float8 and MX only (no NVFP4 recipe in its
    components/quantization); DeepSpeed and FSDP2 with Hugging Face modules run no fp4 GEMMs."""
    plan = parse_plan_spec("tp=1,pp=1,zero=1,mbs=1,precision=nvfp4", llama8b)
    assert plan_problems(plan, llama8b.workload, llama8b.cluster) == []
    assert framework_problems("megatron", plan, llama8b.workload) == []
    for engine in ("torchtitan", "deepspeed", "fsdp2"):
        other = with_framework(llama8b.workload, engine)
        problems = framework_problems(engine, plan.with_(framework=engine), other)
        assert any("nvfp4" in p for p in problems), (engine, problems)


def test_nvfp4_keeps_16_bit_parameters_by_default(llama8b):
    """Megatron-Core's fp8 parameters are fp8 mode's (transformer_config.py: `fp8_param` needs
    `fp8`); its fp4 parameters (`--fp4-param-gather`) are not planned."""
    plan = parse_plan_spec("tp=1,pp=1,zero=1,mbs=1,precision=nvfp4", llama8b).with_(fp8_param_gather=None)
    assert engine_defaults(plan, llama8b.workload).fp8_param_gather is False
    problems = plan_problems(plan.with_(fp8_param_gather=True), llama8b.workload, llama8b.cluster)
    assert "fp8_param_gather needs precision fp8 or mxfp8" in problems


@pytest.mark.parametrize("flags, expected", [
    ("--bf16 --fp4-format e2m1", "nvfp4"),
    ("--bf16 --fp4-format e2m1 --fp4-recipe nvfp4", "nvfp4"),
    ("--bf16 --fp8-format e4m3 --fp8-recipe mxfp8", "mxfp8"),
])
def test_megatron_flags_name_the_fp4_recipe(flags, expected):
    reader = FlagReader(parse_flags(flags.split())[0], "train.sh", set())
    assert megatron_precision(reader) == expected


@pytest.mark.parametrize("flags, message", [
    ("--bf16 --fp4-format e2m1 --fp8-format e4m3", "cannot be combined with --fp8-format"),
    ("--bf16 --fp4-format e2m1 --fp4-recipe custom", "custom quantizers are not modelled"),
    ("--bf16 --fp4-format e3m0", "e2m1"),
])
def test_megatron_fp4_flags_that_cannot_run_are_refused(flags, message):
    reader = FlagReader(parse_flags(flags.split())[0], "train.sh", set())
    with pytest.raises(InputError, match=message):
        megatron_precision(reader)


def test_fp8_parameters_under_fp4_are_read_as_16_bit():
    warnings: list[str] = []
    reader = FlagReader(parse_flags(["--fp8-param-gather"])[0], "train.sh", set())
    assert fp8_param_gather(reader, "nvfp4", 1, False, warnings) is False
    assert "--fp4-param-gather" in warnings[0]


def test_the_precision_aware_optimizer_keeps_remainders_under_fp4():
    """optimizer_config.py `use_precision_aware_optimizer_no_fp8_or_ds_fp8`: with no fp8 recipe
    (fp4 sets none), TE's FusedAdam keeps 16-bit remainders beside the bf16 parameters."""
    words = ("--bf16 --fp4-format e2m1 --use-distributed-optimizer --use-precision-aware-optimizer"
             " --exp-avg-dtype bf16 --exp-avg-sq-dtype bf16").split()
    reader = FlagReader(parse_flags(words)[0], "train.sh", set())
    assert megatron_precision(reader) == "nvfp4"
    dtypes = state_dtypes(reader, "nvfp4", False, [])
    assert (dtypes.master, dtypes.moments) == (2, 2 + 2)


def test_nvfp4_plans_round_trip_through_megatron_lm_flags(tmp_path):
    (tmp_path / "cluster.yaml").write_text(B200_NODES)
    (tmp_path / "job.yaml").write_text("model: llama3-8b\ntraining: pretrain\nseq_len: 8192\nglobal_batch: 256\n"
                                       "precision: nvfp4\nconstraints:\n  precision: [nvfp4]\n")
    assert round_trip(tmp_path / "cluster.yaml", tmp_path / "job.yaml", "megatron", tmp_path / "launch") == "fits"
    text = "\n".join(p.read_text() for p in (tmp_path / "launch").iterdir() if p.is_file())
    assert "--fp4-format e2m1\n" in text and "--fp4-recipe nvfp4\n" in text
    assert "--fp8" not in text
    # Megatron-Bridge's recipe keeps its last layers in bf16; the plan runs all in 4 bits and says so.
    assert "# nvfp4: every layer runs in 4 bits" in text
