"""Seconds of the fused attention core (FlashAttention-2/3 and the kernels built like them): the
kernel's measured rate, as it changes with head dim and sequence length, on the work it does in
whole tiles.

A fused kernel gives each block of TILE_ROWS queries to one thread block, which loops over the
tiles of TILE_KEYS keys those rows may see and computes every tile whole, however much of it
the causal mask or the window hides (FlashAttention-2, flash-attn 2.8.3
csrc/flash_attn/src/flash_fwd_kernel.h: the loop runs from `n_block_min` to `n_block_max`). A
query row's time is then

    (keys in whole tiles + overhead keys) × matmul FLOPs per score / asymptotic rate,

the overhead being the row's work outside that loop (its queries loaded, its output and
log-sum-exp written; in backward the key tile's gradients), in keys' worth. Model FLOPs, the
numerator of MFU, stay those of planner/model/flops.py: only the time follows the tiles.

The asymptotic rate and the overhead follow from the published sweeps at head dim 128
(calibration.FLASH_ATTENTION_FRACTION, FLASH_ATTENTION_8K_OF_16K); other head dims scale with the
share of the kernel's time its exponentials take (calibration.TENSOR_FLOPS_PER_EXP).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from planner.cost import calibration as cal
from planner.model.architecture import Attention
from planner.model.flops import keys_per_query

TILE_ROWS = 128
"""Queries per thread block: FlashAttention-2's kBlockM for head dims 64 and 128 (flash-attn 2.8.3
csrc/flash_attn/src/flash_fwd_launch_template.h, `run_mha_fwd_hdim64`, `run_mha_fwd_hdim128`)."""
TILE_KEYS = 128
"""Keys per tile: kBlockN of the same kernels at head dim 64 (64 at head dim 128 on A100, which
gives the same whole tiles wherever the window and TILE_ROWS are multiples of 64)."""

ANCHOR_SEQ = 16384
"""Sequence of FLASH_ATTENTION_FRACTION's measured point (causal, head dim 128)."""
ANCHOR_HEAD_DIM = 128


@lru_cache(maxsize=1024)
def tile_keys_per_query(seq_len: int, window: int | None = None) -> float:
    """Keys a query row is scored against in whole tiles, on average over a causal sequence of
    `seq_len` (`window`: the keys each query sees at most, the window_size_left of w − 1 that
    Megatron-Bridge passes for a window of w, e.g. gpt_oss_bridge.py). Query block m covers
    key tiles floor((m·M − (w − 1)) / N) up to ceil((m + 1)·M / N) (flash_fwd_kernel.h)."""
    rows, keys = TILE_ROWS, TILE_KEYS
    r = rows // keys  # key tiles per query block (TILE_ROWS is a multiple of TILE_KEYS)
    blocks = -(-seq_len // rows)
    last = seq_len - (blocks - 1) * rows  # rows of the last, possibly partial, query block
    # Block m < blocks − 1 ends at key tile (m + 1)·r; the last at the sequence's last tile.
    tiles = rows * r * (blocks - 1) * blocks // 2 + last * -(-seq_len // keys)
    if window is not None and window < seq_len:
        # Block m starts at key tile max(0, m·r − c), c = ceil((w − 1) / N): the tiles before it
        # are skipped, summed over the blocks where m·r > c.
        c = -(-(window - 1) // keys)
        first = -(-c // r)  # first block that skips any
        full = max(0, blocks - 1 - first)  # full blocks from `first` to blocks − 2
        tiles -= rows * (r * (first + blocks - 2) * full // 2 - c * full)
        tiles -= last * max(0, (blocks - 1) * r - c)
    return tiles * keys / seq_len


def overhead_keys(ratio_8k_of_16k: float) -> float:
    """Keys' worth of a row's work outside the key loop, from the measured rate at 8K tokens over
    the rate at 16K (causal): rate ∝ counted keys / (tile keys + overhead) at both lengths."""
    c1, c2 = keys_per_query(ANCHOR_SEQ // 2), keys_per_query(ANCHOR_SEQ)
    k1, k2 = tile_keys_per_query(ANCHOR_SEQ // 2), tile_keys_per_query(ANCHOR_SEQ)
    return (c1 * k2 - ratio_8k_of_16k * c2 * k1) / (ratio_8k_of_16k * c2 - c1)


def forward_flops_per_score(head_dim: int, value_head_dim: int) -> int:
    """Matmul FLOPs of one score in the forward: S = QKᵀ (2·d_qk) and O = PV (2·d_v)."""
    return 2 * (head_dim + value_head_dim)


def backward_flops_per_score(head_dim: int, value_head_dim: int) -> int:
    """Matmul FLOPs of one score in the backward: S again, dP = dO·Vᵀ, dV = Pᵀ·dO, dQ = dS·K and
    dK = dSᵀ·Q (FlashAttention-2, Dao 2023, Algorithm 2): 6·d_qk + 4·d_v, 2.5 times the forward's
    at equal head dims, as its benchmarks count it."""
    return 6 * head_dim + 4 * value_head_dim


@dataclass(frozen=True)
class _Pass:
    rate: float
    """FLOP/s of the key loop at head dim 128 with no overhead (the asymptote of long sequences)."""
    overhead: float
    """Keys' worth of each row's work outside the loop."""
    flops_per_score: Callable[[int, int], int]
    """Matmul FLOPs per score of this pass, by (d_qk, d_v)."""


@dataclass(frozen=True)
class FlashKernel:
    """The fused attention kernel on one GPU: forward and backward rates."""

    forward: _Pass
    backward: _Pass
    flops_per_exp: float | None
    """Tensor FLOPs per exponential (calibration.TENSOR_FLOPS_PER_EXP); None: head dim ignored."""
    ceiling: float
    """No head dim runs faster than the best-shape GEMM (calibration.mamf_fraction)."""

    def _rate(self, p: _Pass, head_dim: int, value_head_dim: int) -> float:
        if self.flops_per_exp is None:
            return p.rate
        # Per score: the matmuls' FLOPs and one exponential on units `flops_per_exp` times slower,
        # in sequence (FlashAttention-3 §3.1: at head dim 128 the exponentials take half the
        # matmuls' time): the matmuls' share of the time scales the rate.
        f = p.flops_per_score(head_dim, value_head_dim)
        anchor = p.flops_per_score(ANCHOR_HEAD_DIM, ANCHOR_HEAD_DIM)
        share, share_anchor = f / (f + self.flops_per_exp), anchor / (anchor + self.flops_per_exp)
        return min(self.ceiling, p.rate * share / share_anchor)

    def seconds(self, attention: Attention, seq_len: int, window: int | None,
                rows: float) -> tuple[float, float]:
        """(forward, backward) seconds of `rows` query rows (tokens × heads on one GPU)."""
        keys = tile_keys_per_query(seq_len, window)
        d_qk, d_v = attention.head_dim, attention.value_head_dim
        out = []
        for p in (self.forward, self.backward):
            flops = rows * (keys + p.overhead) * p.flops_per_score(d_qk, d_v)
            out.append(flops / self._rate(p, d_qk, d_v))
        return out[0], out[1]


def flash_kernel(gpu) -> FlashKernel | None:
    """The fused attention kernel's rates on `gpu`, or None where no sweep was published (the
    attention core then runs at the GEMM rate on its counted FLOPs). Read from calibration on
    every call: a few operations, once per plan's layer terms."""
    gpu_id, peak_bf16 = gpu.id, gpu.peak("bf16")
    fractions = cal.flash_attention_fraction(gpu_id)
    if fractions is None:
        return None
    passes = []
    for fraction, ratio, flops in zip(fractions, cal.FLASH_ATTENTION_8K_OF_16K,
                                      (forward_flops_per_score, backward_flops_per_score), strict=True):
        overhead = overhead_keys(ratio)
        measured = fraction * peak_bf16  # at ANCHOR_SEQ, counted keys
        rate = measured * (tile_keys_per_query(ANCHOR_SEQ) + overhead) / keys_per_query(ANCHOR_SEQ)
        passes.append(_Pass(rate=rate, overhead=overhead, flops_per_score=flops))
    return FlashKernel(forward=passes[0], backward=passes[1], flops_per_exp=cal.tensor_flops_per_exp(gpu_id),
                       ceiling=cal.mamf_fraction(gpu_id, "bf16") * peak_bf16)

