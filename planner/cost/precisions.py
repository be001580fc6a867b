"""Training precisions that run the linear layers in 8 bits, and how each scales its tensors.

- `fp8`: one scale per tensor (Transformer Engine's current scaling, FP8-CS, as today's
  Megatron-Bridge recipes run it on Hopper; torchao's tensorwise float8 under torchtitan).
- `mxfp8`: OCP Microscaling (MX) fp8: e4m3 elements with one power-of-two (e8m0) scale per block
  of 32 consecutive elements along the GEMM's reduction dimension (OCP Microscaling Formats
  v1.0 §5.3; Transformer Engine's MXFP8BlockScaling recipe, transformer_engine/common/recipe;
  torchao's mxfp8 under torchtitan). Blackwell's tensor cores read the block scales in the GEMM
  itself (tcgen05.mma `kind::mxf8f6f4`, at the fp8 rate); Hopper has no such GEMM.

Both keep the model's weights, gradients and optimizer states as 16-bit mixed precision does.
Where they differ, in what a layer saves for backward and in the casts around each GEMM, the
memory and time models ask `fp8_recipe`.
"""
from __future__ import annotations

FP8_PRECISIONS = ("fp8", "mxfp8")

MX_BLOCK = 32
"""Elements per MX scale (OCP Microscaling Formats v1.0; transformer_engine csrc/quantizer.cpp
`MXFP8_BLOCK_SIZE`): a tensor's dimensions must divide by it."""


def fp8_recipe(precision: str) -> str | None:
    """`tensor` (one scale per tensor), `mxfp8` (a scale per 32 elements), or None (16 or 32 bits)."""
    return {"fp8": "tensor", "mxfp8": "mxfp8"}.get(precision)


def saved_bytes_per_element(recipe: str) -> float:
    """Bytes per element of a GEMM input quantized for backward: the fp8 element, plus under MX
    its e8m0 scale shared by 32 elements (transformer_engine MXFP8Quantizer: uint8 data and a uint8
    scale per block, `get_scale_shape`; padding of the scale array to 128 × 4 ignored)."""
    return 1.0 + (1.0 / MX_BLOCK if recipe == "mxfp8" else 0.0)
