"""Per-GPU memory: exact model-state bytes (ZeRO paper), published activation formulas, properties."""
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.cost.cluster import build_cluster
from planner.cost.memory import (
    PRECISION_STATE_BYTES,
    QUANT_WEIGHT_BYTES,
    estimate_memory,
    inflight_microbatches,
    layer_activation_bytes_per_token,
    optimizer_state_bytes,
)
from planner.cost.partial import PartialTraining
from planner.cost.plan import ParallelDims, Plan
from planner.cost.workload import Workload
from planner.engines.profiles import engine_traits
from planner.model import load_architecture
from planner.model.architecture import Architecture, Attention
from planner.spec.cluster import ClusterSpec

LLAMA3_8B = 8_030_261_248
H100 = build_cluster(ClusterSpec(gpu="h100_sxm_80gb", gpus_per_node=8, nodes=1))


def states(stage) -> int:
    m = stage.memory
    return m.weights + m.gradients + m.optimizer + m.master_weights


def llama8b(training="full", batch=8):
    return Workload(arch=load_architecture("llama3-8b"), training=training, seq_len=4096, global_batch=batch)


@pytest.mark.parametrize("zero, per_param", [
    # ZeRO paper §5 (arXiv 1910.02054): 2 + 2 + 12 bytes per parameter, sharded over d = 8.
    (0, (2, 2, 8, 4)),
    (1, (2, 2, 8 / 8, 4 / 8)),
    (2, (2, 2 / 8, 8 / 8, 4 / 8)),
    (3, (2 / 8, 2 / 8, 8 / 8, 4 / 8)),
])
def test_zero_stages_follow_the_zero_paper(zero, per_param):
    # The paper's mixed precision is fp16 (fp16 gradients); Megatron's bf16 keeps fp32 ones (below).
    plan = Plan(parallel=ParallelDims(dp=8), zero=zero, gas=1, precision="fp16")
    (stage,) = estimate_memory(plan, llama8b(), H100)
    m = stage.memory
    expected = [int(LLAMA3_8B * b) for b in per_param]
    assert [m.weights, m.gradients, m.optimizer, m.master_weights] == expected


def test_sixteen_bytes_per_parameter_without_zero():
    (stage,) = estimate_memory(Plan(parallel=ParallelDims(dp=8), precision="fp16"), llama8b(), H100)
    assert states(stage) == 16 * LLAMA3_8B


def test_megatron_bf16_keeps_fp32_gradients_like_its_theoretical_memory():
    """Megatron-LM accumulates bf16 gradients in fp32: 18 B/param, 6 + 12/d with the distributed
    optimizer (megatron/training/theoretical_memory_usage.py)."""
    (plain,) = estimate_memory(Plan(parallel=ParallelDims(dp=8)), llama8b(), H100)
    assert states(plain) == 18 * LLAMA3_8B
    (dist,) = estimate_memory(Plan(parallel=ParallelDims(dp=8), zero=1), llama8b(), H100)
    assert states(dist) == int(6 * LLAMA3_8B) + int(12 * LLAMA3_8B / 8)


def test_pure_bf16_and_fp32_state_bytes():
    assert PRECISION_STATE_BYTES["bf16-pure"] == (2, 2, 0)
    (pure,) = estimate_memory(Plan(parallel=ParallelDims(dp=8), precision="bf16-pure"), llama8b(), H100)
    assert states(pure) == 8 * LLAMA3_8B  # bf16 weights, grads and both Adam moments
    (fp32,) = estimate_memory(Plan(parallel=ParallelDims(dp=8), precision="fp32"), llama8b(), H100)
    assert states(fp32) == 16 * LLAMA3_8B  # 4 + 4 + 8, no master copy


def gpt_layer(h=6144, heads=64, vocab=51200):
    return Architecture(name="gpt", family="gpt2", hidden=h, num_layers=4, vocab=vocab, ffn=4 * h,
                        attention=Attention(num_heads=heads, num_kv_heads=heads, head_dim=h // heads,
                                            qkv_bias=True, out_bias=True),
                        gated_mlp=False, mlp_bias=True, norm="layernorm", position="learned", max_positions=2048)


@pytest.mark.parametrize("tp", [1, 2, 8])
def test_gpt_layer_matches_korthikanti_table_2(tp):
    """Korthikanti et al. 2022 Table 2, TP + SP + selective recompute: 34 s b h / t bytes per layer,
    of which 2 s b h / t are the two 1-byte dropout masks that modern pretraining does not keep."""
    arch = gpt_layer()
    plan = Plan(parallel=ParallelDims(tp=tp, sp=tp > 1, dp=1), recompute="selective")
    per_token = layer_activation_bytes_per_token(arch, 0, plan)
    assert per_token == pytest.approx((34 - 2) * arch.hidden / tp)


def test_gpt_layer_without_sp_keeps_norm_and_matmul_inputs_replicated():
    # Table 2, TP + selective: sbh (10 + 24/t); without the 2 dropout bytes: 8 + 24/t.
    arch, tp = gpt_layer(), 8
    plan = Plan(parallel=ParallelDims(tp=tp), recompute="selective")
    assert layer_activation_bytes_per_token(arch, 0, plan) == pytest.approx(arch.hidden * (8 + 24 / tp))


def test_full_recompute_keeps_the_layer_input():
    arch = gpt_layer()
    plan = Plan(parallel=ParallelDims(tp=4, sp=True), recompute="full")
    assert layer_activation_bytes_per_token(arch, 0, plan) == 2 * arch.hidden / 4


@pytest.mark.parametrize("pp, vpp, gas, runs, stage, expected", [
    (4, 1, 16, 1, 0, 4), (4, 1, 16, 1, 3, 1), (4, 1, 2, 1, 0, 2),
    # Interleaved: first stage p (1 + (p - 1)/(p v)) = 4 * (1 + 3/8) = 5.5 (Korthikanti §4.2.3).
    (4, 2, 16, 1, 0, 5.5),
    # Several runs of the schedule per step: each drains before the next fills, so only one run's
    # micro-batches are ever in flight: 8 runs of 2; interleaved, min(3·2 + 1·4 + 1 chunks, 2·2) / 2.
    (4, 1, 16, 4, 0, 4), (4, 1, 16, 8, 0, 2), (4, 2, 16, 8, 0, 2),
])
def test_inflight_microbatches_of_1f1b(pp, vpp, gas, runs, stage, expected):
    plan = Plan(parallel=ParallelDims(pp=pp, vpp=vpp), gas=gas, pipeline_runs=runs)
    assert inflight_microbatches(plan, stage) == expected


def test_each_pipeline_run_holds_only_its_own_micro_batches():
    wl = Workload(arch=load_architecture("llama3-8b"), training="pretrain", seq_len=4096, global_batch=64)
    plan = Plan(parallel=ParallelDims(tp=2, pp=4, sp=True), zero=1, gas=64, framework="torchtitan")
    runs = [estimate_memory(plan.with_(pipeline_runs=r), wl, H100)[0].memory.activations for r in (1, 16, 32)]
    alone = estimate_memory(plan.with_(gas=2), replace(wl, global_batch=2), H100)[0].memory.activations
    assert runs[0] == runs[1] > runs[2] == alone  # 4 micro-batches in flight, 4, then 2 of each run's 2


def test_pipeline_stages_hold_their_share_and_ends_carry_embedding_and_logits():
    wl = Workload(arch=load_architecture("llama3-70b"), training="pretrain", seq_len=8192, global_batch=64)
    plan = Plan(parallel=ParallelDims(tp=8, pp=4, dp=2), zero=1, gas=32)
    stages = estimate_memory(plan, wl, H100)
    assert [s.layers for s in stages] == [20, 20, 20, 20]
    middle = stages[1].memory.weights
    assert stages[0].memory.weights > middle and stages[-1].memory.weights > middle
    # 1F1B: activations fall along the pipeline except for the last stage's logits.
    assert stages[0].memory.activations > stages[1].memory.activations > stages[2].memory.activations


def test_lora_trains_only_adapters_and_qlora_stores_nf4():
    arch = load_architecture("llama3-8b")
    targets = ("q_proj", "k_proj", "v_proj", "o_proj")
    lora = Workload(arch=arch, training="lora", seq_len=2048, global_batch=8, lora_targets=targets)
    full = Workload(arch=arch, training="full", seq_len=2048, global_batch=8)
    plan = Plan(parallel=ParallelDims(dp=8), lora_rank=16)
    (lo,) = estimate_memory(plan, lora, H100)
    (fu,) = estimate_memory(plan.with_(lora_rank=0), full, H100)
    assert lo.memory.optimizer < fu.memory.optimizer / 100
    assert lo.memory.weights < fu.memory.weights * 1.02
    (q,) = estimate_memory(plan.with_(quant="nf4"), lora, H100)
    assert q.memory.weights < 0.4 * lo.memory.weights


plans = st.builds(
    lambda tp, pp, dp, zero, rc, mbs, sp: Plan(parallel=ParallelDims(tp=tp, pp=pp, dp=dp, sp=sp and tp > 1),
                                              zero=zero if pp == 1 else min(zero, 1), recompute=rc, mbs=mbs, gas=8),
    tp=st.sampled_from([1, 2, 4, 8]), pp=st.sampled_from([1, 2, 4]), dp=st.sampled_from([1, 2, 4, 16]),
    zero=st.integers(0, 3), rc=st.sampled_from(["none", "selective", "full"]), mbs=st.sampled_from([1, 2, 4]),
    sp=st.booleans())
models = st.sampled_from(["debug", "debug-moe", "llama3-8b", "mixtral-8x7b", "qwen3-30b-a3b"])


@settings(max_examples=60, deadline=None)
@given(plans, models)
def test_more_zero_never_raises_state_bytes(plan, model):
    wl = Workload(arch=load_architecture(model), training="pretrain", seq_len=2048, global_batch=8)
    if plan.zero == 3 or (plan.pp > 1 and plan.zero == 1):
        return
    before = estimate_memory(plan, wl, H100)
    after = estimate_memory(plan.with_(zero=plan.zero + 1), wl, H100)
    assert all(states(b) >= states(a) for a, b in zip(after, before))


@settings(max_examples=60, deadline=None)
@given(plans, models)
def test_more_dp_never_raises_state_bytes(plan, model):
    wl = Workload(arch=load_architecture(model), training="pretrain", seq_len=2048, global_batch=8)
    before = estimate_memory(plan, wl, H100)
    after = estimate_memory(plan.with_(dp=plan.dp * 2), wl, H100)
    assert all(states(b) >= states(a) for a, b in zip(after, before))


@settings(max_examples=60, deadline=None)
@given(plans, models)
def test_recompute_never_raises_activation_bytes(plan, model):
    wl = Workload(arch=load_architecture(model), training="pretrain", seq_len=2048, global_batch=8)
    by_policy = {rc: estimate_memory(plan.with_(recompute=rc), wl, H100) for rc in ("none", "selective", "full")}
    for i in range(plan.pp):
        none, selective, full = (by_policy[rc][i].memory.activations for rc in ("none", "selective", "full"))
        # Each policy keeps at most what no recompute keeps; full vs selective depends on the
        # stage (one layer and one micro-batch in flight: full recompute rebuilds it all).
        assert selective <= none and full <= none


# ---------------------------------------------------------------- training modes the seed examples need

def mixtral(training="full", **kw):
    return Workload(arch=load_architecture("mixtral-8x7b"), training=training, seq_len=4096, global_batch=1,
                    engine=engine_traits("fsdp2"), **kw)


def test_partial_training_counts_the_seed_examples():
    """The seed examples: router only; 6 layers x 2 experts = 2,113,929,216 (3 x 4096 x 14336 per expert)."""
    arch = load_architecture("mixtral-8x7b")
    assert PartialTraining(router=True).trainable_params(arch) == 32 * 8 * 4096
    assert PartialTraining(layers=tuple(range(6)), experts=2).trainable_params(arch) == 6 * 2 * 176_160_768


def test_partial_training_frozen_weights_cost_only_their_bytes():
    arch = load_architecture("mixtral-8x7b")
    total = 46_702_792_704
    plan = Plan(parallel=ParallelDims(), precision="bf16", recompute="full")
    part = PartialTraining(layers=tuple(range(6)), experts=2)
    trainable = part.trainable_params(arch)
    (s,) = estimate_memory(plan, mixtral(), H100, partial=part)
    # hf mixed precision: trainable weights fp32 (4 B), frozen bf16 (2 B); fp32 gradients, 8 B of Adam.
    assert s.memory.weights == 4 * trainable + 2 * (total - trainable)
    assert s.detail["optimizer_states"] == 8 * trainable
    # Under Megatron: bf16 weights, fp32 gradients and master, Adam, for the trainable part only.
    meg = Workload(arch=arch, training="full", seq_len=4096, global_batch=1)
    (m,) = estimate_memory(plan, meg, H100, partial=part)
    assert (m.memory.weights, m.memory.gradients, m.memory.master_weights) == (2 * total, 4 * trainable, 4 * trainable)


def test_partial_training_spreads_trained_experts_over_ep():
    arch = load_architecture("mixtral-8x7b")
    wl = Workload(arch=arch, training="full", seq_len=4096, global_batch=8)
    part = PartialTraining(layers=(0,), experts=2)
    expert = 176_160_768
    (one,) = estimate_memory(Plan(parallel=ParallelDims(dp=8), precision="bf16"), wl, H100, partial=part)
    (ep8,) = estimate_memory(Plan(parallel=ParallelDims(dp=8, ep=8), precision="bf16"), wl, H100, partial=part)
    assert one.memory.gradients == 4 * 2 * expert
    assert ep8.memory.gradients == 4 * 1 * expert  # two trained experts on eight ranks: one on the busiest


def test_partial_training_and_lora_do_not_combine():
    with pytest.raises(ValueError):
        estimate_memory(Plan(parallel=ParallelDims(), lora_rank=16), mixtral("lora", lora_targets=("q_proj",)), H100,
                        partial=PartialTraining(router=True))


def test_nf4_double_quantization_bytes():
    """QLoRA §3: 4-bit codes + an 8-bit absmax per 64 weights + an fp32 scale per 256 absmax = 4.127 bits."""
    assert QUANT_WEIGHT_BYTES["nf4"] == pytest.approx((4 + 8 / 64 + 32 / (64 * 256)) / 8, rel=1e-3)


@pytest.mark.parametrize("optimizer, per_param", [
    ("adamw", 8.0), ("sgd", 0.0), ("sgd-momentum", 4.0),
    # bitsandbytes 8-bit Adam: two 1-byte moments and an fp32 absmax per 2048-element block.
    ("adamw8bit", 2 + 8 / 2048),
    # Adafactor: a row and a column second moment per h x h matrix: 2h fp32 values for h^2 weights.
    ("adafactor", 4 * 2 / 4096),
])
def test_optimizer_state_bytes_per_parameter(optimizer, per_param):
    assert optimizer_state_bytes(optimizer, "bf16", 4096) == pytest.approx(per_param)


def test_deepspeed_offload_keeps_sixteen_bytes_per_parameter_on_the_host():
    """ZeRO-Offload: fp32 master 4 + Adam 8 + fp32 gradients 4 per parameter of the partition on the
    host (DeepSpeed's estimator: 16 B/param per node before its 1.5 margin); the GPU keeps no gradient
    partition under ZeRO-2/3; with the parameters offloaded as well, 2 more on the host."""
    wl = Workload(arch=load_architecture("llama3-8b"), training="full", seq_len=4096, global_batch=8,
                  engine=engine_traits("deepspeed"))
    for zero in (2, 3):
        (s,) = estimate_memory(Plan(parallel=ParallelDims(dp=8), zero=zero, offload="optimizer"), wl, H100)
        assert s.host_bytes == pytest.approx(16 * LLAMA3_8B / 8, rel=1e-9)
        assert s.memory.gradients == 0 and s.memory.optimizer == 0 and s.memory.master_weights == 0
    (s,) = estimate_memory(Plan(parallel=ParallelDims(dp=8), zero=3, offload="optimizer+params"), wl, H100)
    assert s.host_bytes == pytest.approx(18 * LLAMA3_8B / 8, rel=1e-9)
    assert s.memory.weights == 0


def test_offload_host_bytes_are_checked_against_host_memory():
    from planner.cost.evaluate import evaluate
    wl = Workload(arch=load_architecture("llama3-8b"), training="full", seq_len=4096, global_batch=8,
                  engine=engine_traits("deepspeed"))
    plan = Plan(parallel=ParallelDims(dp=8), zero=3, offload="optimizer", framework="deepspeed")
    small = build_cluster(ClusterSpec(gpu="h100_sxm_80gb", gpus_per_node=8, nodes=1, host_memory_gib=64))
    big = build_cluster(ClusterSpec(gpu="h100_sxm_80gb", gpus_per_node=8, nodes=1, host_memory_gib=512))
    assert not evaluate(plan, wl, small).fits_host
    assert evaluate(plan, wl, big).fits_host


def test_docs_seed_training_section_is_what_the_script_prints():
    import importlib.util
    import sys
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "validation" / "memory" / "seed_examples.py"
    spec = importlib.util.spec_from_file_location("seed_examples", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    page = module.DOC.read_text()
    assert module.section() in page, "docs/examples.md is stale: run validation/memory/seed_examples.py --write"


def test_expert_tensor_parallel_ranks_keep_the_gathered_tokens():
    # Under expert TP each rank's grouped GEMM saves the tokens of all etp ranks (gathered after
    # the all-to-all) for 1/etp of the expert width: etp = tp = 2 keeps more of a MoE layer than
    # etp = 1, by the routed copies' inputs and probabilities of the other rank.
    from planner.cost.memory.activations import layer_activation_bytes

    arch = load_architecture("qwen3-30b-a3b")
    wl = Workload(arch=arch, training="pretrain", seq_len=4096, global_batch=64, engine=engine_traits("megatron"))
    base = dict(parallel=ParallelDims(tp=2, dp=4, ep=8, sp=True), precision="bf16", recompute="none")
    one = layer_activation_bytes(arch, Plan(etp=1, **base), wl)(0)
    two = layer_activation_bytes(arch, Plan(etp=2, **base), wl)(0)
    assert two - one == pytest.approx(arch.moe.top_k * (2 * arch.hidden + 4) * (2 - 1) / 2)
