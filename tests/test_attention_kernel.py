"""The fused attention kernel's time (planner/cost/timing/attention.py): whole tiles, the rate by
sequence and head dim, and the model FLOPs it leaves alone."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.cost import calibration as cal
from planner.cost.cluster import build_cluster
from planner.cost.plan import ParallelDims, Plan
from planner.cost.shard import stage_shards
from planner.cost.timing import attention as att
from planner.cost.timing import estimate_time
from planner.cost.timing.compute import stage_compute
from planner.cost.workload import Workload
from planner.model.architecture import Architecture, Attention
from planner.model.flops import keys_per_query, layer_flops
from planner.spec.cluster import ClusterSpec


def node(gpu: str = "h100_sxm_80gb"):
    return build_cluster(ClusterSpec(gpu=gpu, gpus_per_node=8, nodes=1))


def arch(head_dim: int = 128, heads: int = 32, layers: int = 2) -> Architecture:
    hidden = 4096
    return Architecture(name="t", family="llama", hidden=hidden, num_layers=layers, vocab=1024, ffn=4 * hidden,
                        attention=Attention(heads, 8, head_dim), gated_mlp=True, mlp_bias=False,
                        norm="rmsnorm", tied_embeddings=False, position="rope", max_positions=1 << 20)


def test_whole_tiles_by_hand():
    # Causal, 4,096 tokens in 32 blocks of 128 queries: block m computes m + 1 whole key tiles,
    # so a row sees 128·(1 + … + 32)/32 = 2,112 keys, 64 more than the 2,048 counted.
    assert att.tile_keys_per_query(4096) == 2112
    assert keys_per_query(4096) == 2048
    # 1,000 tokens: seven full blocks (1..7 tiles) and 104 rows in the eighth (8 tiles).
    assert att.tile_keys_per_query(1000) == pytest.approx((128 * 128 * 28 + 104 * 8 * 128) / 1000)
    # A window of 128 (window_size_left 127): block 0 one tile, every later block two
    # (tiles m − 1 and m): (128 + 31·256)/32 = 252 keys against the ~128 counted.
    assert att.tile_keys_per_query(4096, 128) == 252
    # A window of one key: one diagonal tile per block; a window over the whole sequence: causal.
    assert att.tile_keys_per_query(4096, 1) == 128
    assert att.tile_keys_per_query(4096, 4096) == att.tile_keys_per_query(4096)


def _tiles_block_by_block(seq: int, window: int | None) -> float:
    """FlashAttention-2's loop bounds, query block by query block (flash_fwd_kernel.h)."""
    rows, keys = att.TILE_ROWS, att.TILE_KEYS
    total = 0
    for m in range(-(-seq // rows)):
        hi = min(-(-seq // keys), -(-((m + 1) * rows) // keys))
        lo = max(0, (m * rows - (window - 1)) // keys) if window is not None and window < seq else 0
        total += min(rows, seq - m * rows) * (hi - lo) * keys
    return total / seq


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 20000), st.one_of(st.none(), st.integers(1, 30000)))
def test_whole_tiles_cover_the_counted_keys_and_at_most_two_tiles_more(seq, window):
    tiles = att.tile_keys_per_query(seq, window)
    assert tiles == pytest.approx(_tiles_block_by_block(seq, window), rel=1e-12)
    counted = keys_per_query(seq, True, window)
    assert counted <= tiles + 1e-9
    assert tiles <= counted + att.TILE_ROWS + att.TILE_KEYS


def test_overhead_from_the_8k_and_16k_readings():
    # rate ∝ counted / (tiles + overhead): 610/640 at 8K of 16K gives
    # (4096·8256 − (610/640)·8192·4160) / ((610/640)·8192 − 4096) = 1,335,296 / 3,712 keys.
    assert att.overhead_keys(610 / 640) == pytest.approx(1335296 / 3712)
    # No fall from 16K to 8K beyond the diagonal tiles: no overhead at all.
    assert att.overhead_keys((4096 / 4160) / (8192 / 8256)) == pytest.approx(0, abs=1e-9)


def _rate(kernel, seq, head_dim=128, window=None):
    """(forward, backward) FLOP/s on the benchmarks' count: 4·d and 10·d per counted key."""
    a = Attention(16, 16, head_dim)
    rows = 1e6
    fwd, bwd = kernel.seconds(a, seq, window, rows)
    counted = rows * keys_per_query(seq, True, window) * 4 * head_dim
    return counted / fwd, 2.5 * counted / bwd


@pytest.mark.parametrize("gpu", ["h100_sxm_80gb", "h200_sxm_141gb", "a100_sxm_80gb"])
def test_kernel_reproduces_the_readings_it_is_built_from(gpu):
    cluster = node(gpu)
    peak = cluster.gpu.peak("bf16")
    kernel = att.flash_kernel(cluster.gpu)
    forward, backward = cal.flash_attention_fraction(gpu)
    f16, b16 = _rate(kernel, 16384)
    f8, b8 = _rate(kernel, 8192)
    assert f16 == pytest.approx(forward * peak) and b16 == pytest.approx(backward * peak)
    assert f8 / f16 == pytest.approx(cal.FLASH_ATTENTION_8K_OF_16K[0])
    assert b8 / b16 == pytest.approx(cal.FLASH_ATTENTION_8K_OF_16K[1])


def test_head_dim_scales_with_the_exponentials_share():
    # Hopper: 256 tensor FLOPs per exponential. Forward, 4·d FLOPs per score: head dim 64 runs
    # at (256/512) / (512/768) = 0.75 of head dim 128; backward, 10·d: (640/896) / (1280/1536).
    h100 = att.flash_kernel(node().gpu)
    f64, b64 = _rate(h100, 16384, 64)
    f128, b128 = _rate(h100, 16384, 128)
    assert f64 / f128 == pytest.approx(0.75)
    assert b64 / b128 == pytest.approx((640 / 896) / (1280 / 1536))
    # Ampere: 128 per exponential; head dim 64 forward at (256/384) / (512/640) = 5/6.
    a100 = att.flash_kernel(node("a100_sxm_80gb").gpu)
    assert _rate(a100, 16384, 64)[0] / _rate(a100, 16384, 128)[0] == pytest.approx(5 / 6)
    # Nothing runs faster than the best-shape GEMM, however wide the heads.
    wide = _rate(h100, 1 << 20, 4096)[0]
    assert wide <= cal.mamf_fraction("h100_sxm_80gb", "bf16") * node().gpu.peak("bf16") * (1 + 1e-9)


@settings(max_examples=60, deadline=None)
@given(st.integers(6, 16), st.sampled_from([64, 96, 128, 192, 256]))
def test_longer_sequences_and_wider_heads_run_faster(log_seq, head_dim):
    kernel = att.flash_kernel(node().gpu)
    seq = 2 ** log_seq
    f, b = _rate(kernel, seq, head_dim)
    f2, b2 = _rate(kernel, 2 * seq, head_dim)
    assert f2 > f and b2 > b
    assert _rate(kernel, seq, 2 * head_dim)[0] >= f


def test_windowed_layers_take_their_whole_tiles_but_count_their_window():
    # gpt-oss-like: 64-wide heads, a 128-token window on every other layer.
    a = arch(head_dim=64, heads=64)
    cluster = node()
    seq = 4096
    windows = (128, None)
    plan = Plan(parallel=ParallelDims(dp=8), mbs=1, gas=1)
    wl = Workload(arch=a, training="pretrain", seq_len=seq, global_batch=8, layer_windows=windows)
    kernel = att.flash_kernel(cluster.gpu)
    rows = seq * a.attention.num_heads
    windowed = kernel.seconds(a.attention, seq, 128, rows)
    full = kernel.seconds(a.attention, seq, None, rows)
    # The window's counted FLOPs are 1/16 of the full layer's, its time far more than that:
    # 252 keys in whole tiles plus the row's overhead against 2,112 + overhead.
    flops_w = layer_flops(a, 0, seq, window=128).attention
    flops_f = layer_flops(a, 1, seq).attention
    assert flops_w / flops_f == pytest.approx(keys_per_query(seq, True, 128) / keys_per_query(seq))
    overhead = kernel.forward.overhead
    assert windowed[0] / full[0] == pytest.approx((252 + overhead) / (2112 + overhead))
    assert windowed[0] / full[0] > 3 * flops_w / flops_f
    # The stage's attention time is the two layers' kernel time; model FLOPs keep the window's.
    sc = stage_compute(plan, wl, cluster, stage_shards(plan, a)[0])
    assert sc.attention_forward == pytest.approx(windowed[0] + full[0])
    t, _ = estimate_time(plan, wl, cluster)
    t_full, _ = estimate_time(plan, dataclasses.replace(wl, layer_windows=None), cluster)
    assert t.model_flops < t_full.model_flops
    assert t.compute < t_full.compute


def test_parts_without_a_sweep_keep_the_gemm_rate():
    assert att.flash_kernel(node("mi300x").gpu) is None
