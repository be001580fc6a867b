"""What an eager engine's own kernels and loop save for backward: the model's output freed before
backward (torchtitan, NeMo AutoModel), AutoModel's fp32 RMSNorm op and its DeepEP grouped experts."""
from dataclasses import replace

from planner.cost.cluster import build_cluster
from planner.cost.engine import expert_passes
from planner.cost.memory import estimate_memory, kernels, layer_activation_bytes_per_token
from planner.cost.memory.activations import EXPERT_MLP_CHUNK_BYTES, norm_bytes
from planner.cost.plan import ParallelDims, Plan
from planner.cost.timing.compute import _linear_seconds, _Rate
from planner.cost.workload import Workload
from planner.engines.profiles import engine_traits
from planner.model import architecture_from_config, load_architecture
from planner.model.params import layer_params
from planner.spec.cluster import ClusterSpec

H100 = build_cluster(ClusterSpec(gpu="h100_sxm_80gb", gpus_per_node=8, nodes=1))
FSDP2 = engine_traits("fsdp2")
AUTOMODEL = replace(FSDP2, fused_norm=True, fused_moe_activation=True)


def _plan(mbs=1, ep=1, recompute="none"):
    return Plan(parallel=ParallelDims(dp=8, ep=ep), zero=3, recompute=recompute, mbs=mbs, gas=1,
                precision="bf16-pure", framework="fsdp2")


def _workload(name, engine, seq=4096):
    return Workload(arch=load_architecture(name), training="pretrain", seq_len=seq, global_batch=8, engine=engine)


def test_a_loop_that_frees_the_output_keeps_only_the_fp32_log_softmax():
    arch = load_architecture("llama3-8b")
    tokens = 4096
    logits = {}
    for freed in (False, True):
        w = _workload("llama3-8b", replace(FSDP2, output_freed_before_backward=freed))
        logits[freed] = estimate_memory(_plan(), w, H100)[0].detail["logits"]
    assert logits[False] == int(tokens * (2 + 4) * arch.vocab)
    assert logits[True] == int(tokens * 4 * arch.vocab)
    assert engine_traits("torchtitan").output_freed_before_backward
    assert not FSDP2.output_freed_before_backward  # transformers' Trainer keeps the logits


def test_the_fp32_rmsnorm_op_saves_only_its_input():
    arch = load_architecture("llama3-8b")
    h = arch.hidden
    eager, fused = kernels(FSDP2, "bf16-pure", 3), kernels(AUTOMODEL, "bf16-pure", 3)
    assert norm_bytes(arch, eager, True) == 4 * h + 4 + 2 * h
    assert norm_bytes(arch, fused, True) == 2 * h
    w_eager, w_fused = _workload("llama3-8b", FSDP2), _workload("llama3-8b", AUTOMODEL)
    per_layer = [layer_activation_bytes_per_token(arch, 1, _plan(), w) for w in (w_eager, w_fused)]
    assert per_layer[0] - per_layer[1] == 2 * (4 * h + 4)  # the layer's two norms


def _routed_difference(name, mbs):
    """Bytes per token of one MoE layer with AutoModel's DeepEP experts minus the eager experts'."""
    arch = load_architecture(name)
    w_eager, w_deepep = _workload(name, replace(AUTOMODEL, fused_moe_activation=False)), _workload(name, AUTOMODEL)
    index = next(i for i in range(arch.num_layers) if arch.is_moe_layer(i))
    plan = _plan(mbs=mbs, ep=8)
    return arch, (layer_activation_bytes_per_token(arch, index, plan, w_deepep)
                  - layer_activation_bytes_per_token(arch, index, plan, w_eager))


def test_deepep_experts_with_fused_swiglu_keep_no_expert_output():
    arch, diff = _routed_difference("qwen3-30b-a3b", 1)
    e, h, i, k = 2, arch.hidden, arch.moe.expert_ffn, arch.moe.top_k
    eager = 2 * e * h + 3 * e * i + e * i + 32  # gathered input and output, gate/up, SiLU, product
    deepep = e * h + 4 + 2 * e * i + e * i  # input, routing weight, the fused SwiGLU's input, fc2 input
    assert diff == k * (deepep - eager)


def test_gpt_oss_compiled_geglu_saves_its_input_until_its_chunks_are_checkpointed():
    arch, diff = _routed_difference("gpt-oss-20b", 2)
    e, h, i, k = 2, arch.hidden, arch.moe.expert_ffn, arch.moe.top_k
    eager = 2 * e * h + 4 * e * i + 32
    # quick_geglu_deepep is torch.compile'd: it keeps its input (gate and up) like the fused SwiGLU,
    # e h + 3 e i + 4 per routed row in all (validation/memory/automodel_experts.py; eager it would keep
    # 8 e i + e h + 4: tests/validate/test_automodel_experts.py).
    assert diff == k * (e * h + 4 + 2 * e * i + e * i - eager)
    # One more sequence per micro-batch puts the gate/up output over 512 MiB: only the input stays.
    assert 3 * 4096 * k * 2 * i * e > EXPERT_MLP_CHUNK_BYTES >= 2 * 4096 * k * 2 * i * e
    _, chunked = _routed_difference("gpt-oss-20b", 3)
    assert chunked == k * (e * h + 4 - eager)


def test_deepep_accounting_is_automodel_s_alone():
    # Transformers' own experts (the fsdp2 profile) and Megatron-Core's keep their accounting.
    assert not kernels(FSDP2, "bf16-pure", 3).deepep_experts
    assert kernels(AUTOMODEL, "bf16-pure", 3).deepep_experts
    assert not kernels(replace(AUTOMODEL, kernels="megatron"), "bf16", 1).deepep_experts


def test_fsdp2_without_reshard_keeps_every_layer_gathered_until_backward():
    arch = load_architecture("gpt-oss-20b")
    plan = _plan(ep=8)
    on, off = (_workload("gpt-oss-20b", replace(AUTOMODEL, reshard_after_forward=r)) for r in (True, False))
    kept = estimate_memory(plan, off, H100)[0].detail
    assert "zero3_gathered_layers" not in kept
    # ep = dp: FSDP leaves the experts to EP, so only the dense parameters stay gathered (bf16).
    dense = sum(layer_params(arch, i).total - layer_params(arch, i).routed_experts for i in range(arch.num_layers))
    assert kept["fsdp_unsharded_layers"] == 2 * dense
    assert estimate_memory(plan, on, H100)[0].detail["zero3_gathered_layers"] < kept["fsdp_unsharded_layers"]


def test_the_fp32_rmsnorm_op_on_query_and_key_heads_saves_only_its_inputs():
    arch = load_architecture("qwen3-30b-a3b")
    att, h = arch.attention, arch.hidden
    w_eager = _workload("qwen3-30b-a3b", replace(AUTOMODEL, fused_norm=False))
    w_fused = _workload("qwen3-30b-a3b", AUTOMODEL)
    eager, fused = (layer_activation_bytes_per_token(arch, 1, _plan(ep=8), w) for w in (w_eager, w_fused))
    layer_norms = 2 * (4 * h + 4)
    head_norms = 4 * att.q_dim + 4 * att.num_heads + 4 * att.kv_dim + 4 * att.num_kv_heads
    assert eager - fused == layer_norms + head_norms


# transformers' own norms and routers, by model_type (checked against autograd's saved tensors in
# tests/validate/test_hf_activations.py).
def _layer(name_or_arch, engine, index=1, precision="bf16-pure"):
    arch = load_architecture(name_or_arch) if isinstance(name_or_arch, str) else name_or_arch
    w = Workload(arch=arch, training="pretrain", seq_len=4096, global_batch=8, engine=engine)
    plan = Plan(parallel=ParallelDims(dp=8), zero=3, recompute="none", mbs=1, gas=1, precision=precision,
                framework=engine.name)
    return layer_activation_bytes_per_token(arch, index, plan, w)


def test_gemma2_keeps_four_norms_with_their_fp32_normalized_inputs():
    # Gemma2RMSNorm: fp32 input copy, rsqrt and the fp32 normalized input (`output * (1.0 + weight)`),
    # before and after each half: 4 x (4h + 4 + 4h); Llama's norm keeps a 16-bit normalized copy.
    gemma = load_architecture("gemma2-9b")
    h = gemma.hidden
    as_llama = replace(gemma, family="llama", norms_per_layer=2)
    assert _layer(gemma, FSDP2) - _layer(as_llama, FSDP2) == 4 * (8 * h + 4) - 2 * (6 * h + 4)


def test_the_engine_s_own_model_code_keeps_llama_s_norm():
    # torchtitan and NeMo AutoModel run their own modules: no transformers-specific norm or router.
    olmo = load_architecture("olmo2-7b")
    h = olmo.hidden
    assert _layer(olmo, FSDP2) - _layer(olmo, engine_traits("torchtitan")) == 2 * 2 * h + 2 * 2 * olmo.attention.q_dim
    assert not engine_traits("torchtitan").transformers_modules and engine_traits("deepspeed").transformers_modules


def test_deepseek_style_routers_keep_an_fp32_copy_of_their_input_beside_the_shared_experts_input():
    arch = load_architecture("glm-4.5-air")
    h, index = arch.hidden, 1  # the first MoE layer
    assert arch.is_moe_layer(index) and arch.moe.shared_ffn
    # transformers: the router's fp32 copy (4h) and the shared experts' 16-bit input (2h); an
    # engine's own bf16 router and the shared experts save one 16-bit input between them.
    own_code = replace(FSDP2, transformers_modules=False)
    assert _layer(arch, FSDP2, index) - _layer(arch, own_code, index) == 4 * h


def test_transformers_mla_keeps_its_latent_norms_and_the_whole_kv_up_projection():
    arch = load_architecture("deepseek-v3")
    att, h, e = arch.attention, arch.hidden, 2
    own_code = replace(FSDP2, transformers_modules=False)
    latents = sum(4 * w + 4 + e * w + e * w for w in (att.q_lora_rank, att.kv_lora_rank))
    own_latents = 2 * e * (att.q_lora_rank + att.kv_lora_rank + att.qk_rope_head_dim)
    k_nope = e * att.num_heads * (att.head_dim - att.qk_rope_head_dim)  # beside V in kv_b_proj's output
    assert _layer(arch, FSDP2, 3) - _layer(arch, own_code, 3) == latents - own_latents + k_nope + 4 * h


def test_one_norm_feeds_both_halves_of_a_parallel_block():
    # Command R (CohereLayerNorm): one norm per layer whose output both halves read (saved once);
    # in fp32, (x - mean) twice for the variance and the normalization, rsqrt, the normalized input.
    config = {"model_type": "cohere", "vocab_size": 1000, "hidden_size": 256, "intermediate_size": 512,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}
    cohere = architecture_from_config(config, "command-r")
    h = cohere.hidden
    two_norms = replace(cohere, family="llama", norms_per_layer=2)
    # Llama-style: two norms of 4h + 4 + 2h and two saved 16-bit norm outputs (2h each).
    assert _layer(two_norms, FSDP2) - _layer(cohere, FSDP2) == 2 * (6 * h + 4) + 2 * 2 * h - (12 * h + 4) - 2 * h


def test_transformers_llama4_runs_every_expert_on_every_token():
    # Llama4TextMoe: hidden_states.repeat(num_experts, 1) * router_scores, one bmm over all experts.
    arch = load_architecture("llama4-scout")
    moe, e, h = arch.moe, 2, arch.hidden
    index = next(i for i in range(arch.num_layers) if arch.is_moe_layer(i))
    assert (expert_passes(arch, True), expert_passes(arch, False)) == (moe.num_experts, moe.top_k)
    own_code = replace(FSDP2, transformers_modules=False)
    per_pass = 2 * e * h + 4 * e * moe.expert_ffn  # input, scaled input or output, gate/up, SiLU, product
    assert _layer(arch, FSDP2, index) - _layer(arch, own_code, index) == \
        moe.num_experts * (per_pass + e) - moe.top_k * (per_pass + 32)
    # The GEMMs: every expert's over every token, E / top_k times the model's routed FLOPs.
    rate = _Rate(H100.gpu, "bf16")
    dense = _linear_seconds(rate, rate, arch, index, 1e9, 8192, 1, _plan(), moe.num_experts, 3, moe.num_experts)
    routed = _linear_seconds(rate, rate, arch, index, 1e9, 8192, 1, _plan(), moe.num_experts, 3)
    assert dense[0] == routed[0] and dense[1] > moe.num_experts / moe.top_k * routed[1] / 2


def test_autocast_casts_once_per_fused_projection_and_output_norms_read_16_bits():
    # Under torch.autocast each linear saves its own bf16 cast of its input: Phi-3's fused
    # qkv_proj and gate_up_proj save one each where Llama's five linears save five.
    phi3 = architecture_from_config({"model_type": "phi3", "vocab_size": 1000, "hidden_size": 256,
                                     "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4,
                                     "num_key_value_heads": 2}, "phi3")
    h = phi3.hidden
    as_llama = replace(phi3, family="llama")
    autocast = "bf16-autocast"
    assert _layer(as_llama, FSDP2, precision=autocast) - _layer(phi3, FSDP2, precision=autocast) == (5 - 2) * 2 * h
    # EXAONE 4 normalizes the halves' 16-bit outputs: the normalized copies are 2h, not the fp32 residual's 4h.
    exaone = architecture_from_config({"model_type": "exaone4", "vocab_size": 1000, "hidden_size": 256,
                                       "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4,
                                       "num_key_value_heads": 2}, "exaone4")
    assert _layer(replace(exaone, family="llama"), FSDP2, precision=autocast) \
        - _layer(exaone, FSDP2, precision=autocast) == 2 * 2 * h


def test_both_layernorms_of_a_parallel_block_save_one_input():
    pythia = load_architecture("pythia-6.9b")
    assert pythia.parallel_residual and pythia.norms_per_layer == 2 and pythia.norm == "layernorm"
    h = pythia.hidden
    sequential = replace(pythia, parallel_residual=False)
    assert _layer(sequential, FSDP2) - _layer(pythia, FSDP2) == 2 * h  # the second norm's 16-bit input


def test_dropout_on_each_half_keeps_a_one_byte_mask():
    # Seed-OSS applies residual_dropout (0.1 by default) to the attention and MLP outputs.
    config = {"model_type": "seed_oss", "vocab_size": 1000, "hidden_size": 256, "intermediate_size": 512,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64}
    seed = architecture_from_config(config, "seed-oss")
    off = architecture_from_config({**config, "residual_dropout": 0.0}, "seed-oss")
    assert (seed.residual_dropout, off.residual_dropout) == (0.1, 0.0)
    assert _layer(seed, FSDP2) - _layer(off, FSDP2) == 2 * seed.hidden
    assert _layer(seed, engine_traits("torchtitan")) == _layer(off, engine_traits("torchtitan"))


def test_xielu_keeps_four_intermediates_and_its_mask():
    # Apertus's xIELU in Python keeps x, alpha_p·x, expm1's output and that minus x (16-bit, but
    # alpha_p·x in fp32 under autocast) and the x > 0 mask, where squared ReLU keeps its input.
    config = {"model_type": "apertus", "vocab_size": 1000, "hidden_size": 256, "intermediate_size": 512,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}
    apertus = architecture_from_config(config, "apertus")
    relu2 = replace(apertus, mlp_activation="relu2")
    i = apertus.ffn
    assert _layer(apertus, FSDP2) - _layer(relu2, FSDP2) == (4 * 2 + 1 - 2) * i
    autocast = "bf16-autocast"
    assert _layer(apertus, FSDP2, precision=autocast) - _layer(relu2, FSDP2, precision=autocast) \
        == (3 * 2 + 4 + 1 - 2) * i


def test_fsdp_under_a_pipeline_schedule_keeps_gradients_and_layers_unsharded_through_the_run():
    """torchtitan with PP: every backward of a run accumulates its gradients unsharded, in the
    reduce dtype, and nothing reshards until the run ends (planner/cost/engine.py
    `pipeline_deferred_sync`); without PP, or on Megatron-Core, the gradients stay sharded."""
    from planner.cost.memory import estimate_memory

    arch = load_architecture("llama3-8b")
    cluster = build_cluster(ClusterSpec(gpu="h100_sxm_80gb", gpus_per_node=8, nodes=1))
    titan = engine_traits("torchtitan")
    w = Workload(arch=arch, training="pretrain", seq_len=4096, global_batch=64, engine=titan)
    piped = Plan(parallel=ParallelDims(pp=2, dp=4), zero=3, recompute="full", mbs=1, gas=16, precision="bf16",
                 framework="torchtitan")
    (first, _), flat = estimate_memory(piped, w, cluster), estimate_memory(piped.with_(pp=1, dp=8, gas=8), w, cluster)
    # fp32 parameters sharded over dp 4, fp32 gradients of the whole stage: four times as many bytes.
    assert abs(first.detail["gradients"] - 4 * first.detail["weights"]) <= 4
    assert "fsdp_unsharded_layers" in first.detail and "zero3_gathered_layers" not in first.detail
    assert flat[0].detail["gradients"] == flat[0].detail["weights"] and "zero3_gathered_layers" in flat[0].detail
    off = replace(titan, pipeline_deferred_sync=False)
    (kept, _) = estimate_memory(piped, replace(w, engine=off), cluster)
    assert abs(kept.detail["gradients"] - first.detail["gradients"] / 4) <= 1
