"""Pipeline partitions and per-GPU parameter shards."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from planner.cost.plan import ParallelDims, Plan
from planner.cost.shard import stage_layer_counts, stage_shards
from planner.model import count_params, load_architecture


@given(st.integers(1, 200), st.integers(1, 64))
def test_partition_covers_every_layer_once(layers, pp):
    if pp > layers:
        return
    counts = stage_layer_counts(layers, pp)
    assert sum(counts) == layers and len(counts) == pp
    assert max(counts) - min(counts) <= 1
    # The ends (embedding, logits) are never heavier than the middle stages.
    if pp > 2:
        assert counts[0] <= min(counts[1:-1]) and counts[-1] <= max(counts[1:-1])


def test_llama_405b_on_16_stages_is_megatron_expressible():
    # 126 layers on pp=16 (Llama 3 paper's layout): first and last stages one layer lighter.
    assert stage_layer_counts(126, 16) == (7,) + (8,) * 14 + (7,)


@pytest.mark.parametrize("model", ["llama3-8b", "mixtral-8x7b", "qwen3-30b-a3b", "deepseek-v3"])
def test_shards_add_up_to_the_model(model):
    arch = load_architecture(model)
    plan = Plan(parallel=ParallelDims(tp=2, pp=4, dp=8, ep=2))
    shards = stage_shards(plan, arch)
    held = sum(s.dense * 2 + s.expert * 2 * 2 for s in shards)  # undo tp=2 (and ep=2 for experts)
    assert held == pytest.approx(count_params(arch).total)
    assert sum(s.num_layers for s in shards) == arch.num_layers


def test_tied_embeddings_get_a_copy_on_the_last_stage():
    arch = load_architecture("llama3.2-1b")
    one = stage_shards(Plan(parallel=ParallelDims(pp=1)), arch)
    two = stage_shards(Plan(parallel=ParallelDims(pp=2)), arch)
    extra = sum(s.total for s in two) - sum(s.total for s in one)
    assert extra == arch.vocab * arch.hidden  # Megatron's shared-embedding copy
