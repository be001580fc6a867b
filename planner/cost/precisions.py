"""Training precisions that run the linear layers in 8 bits, and how each scales its tensors.

- `fp8`: one scale per tensor (Transformer Engine's current scaling, FP8-CS, as today's
  Megatron-Bridge recipes run it on Hopper; torchao's tensorwise float8 under torchtitan).
- `mxfp8`: OCP Microscaling (MX) fp8: e4m3 elements with one power-of-two (e8m0) scale per block
  of 32 consecutive elements along the GEMM's reduction dimension (OCP Microscaling Formats
  v1.0 §5.3; Transformer Engine's MXFP8BlockScaling recipe, transformer_engine/common/recipe;
  torchao's mxfp8 under torchtitan). Blackwell's tensor cores read the block scales in the GEMM
  itself (tcgen05.mma `kind::mxf8f6f4`, at the fp8 rate); Hopper has no such GEMM.
- `nvfp4`: NVIDIA's 4-bit format, e2m1 elements with one e4m3 scale per block of 16 and one fp32
  scale per tensor (Transformer Engine's NVFP4BlockScaling recipe, transformer_engine 2.8
  common/recipe/__init__.py; Megatron-Core `--fp4-format e2m1 --fp4-recipe nvfp4`). Every GEMM of
  a linear layer (forward, data and weight gradients) runs at the GPU's fp4 rate (tcgen05.mma
  `kind::mxf4nvf4`); the weight-gradient GEMM's operands pass a 16-point random Hadamard transform
  first, the gradients round stochastically, the weights scale in 16 × 16 tiles. Blackwell only.

All three keep the model's weights, gradients and optimizer states as 16-bit mixed precision does.
Where they differ, in what a layer saves for backward and in the casts around each GEMM, the
memory and time models ask `te_recipe`.
"""
from __future__ import annotations

QUANTIZED_PRECISIONS = ("fp8", "mxfp8", "nvfp4")
"""Training precisions whose linear layers run below 16 bits."""

MX_BLOCK = 32
"""Elements per MX scale (OCP Microscaling Formats v1.0; transformer_engine csrc/quantizer.cpp
`MXFP8_BLOCK_SIZE`): a tensor's dimensions must divide by it."""

NVFP4_BLOCK = 16
"""Elements per NVFP4 scale (transformer_engine 2.8 pytorch/constants.py
`NVFP4_BLOCK_SCALING_SIZE`): both flattened dimensions of a quantized tensor must divide by it
(csrc/quantizer.cpp `NVFP4Quantizer::create_tensor`, NVTE_CHECK)."""

NVFP4_BYTES_PER_ELEMENT = 0.5 + 1 / NVFP4_BLOCK
"""One usage (row-wise or column-wise) of an NVFP4 tensor: two e2m1 elements per byte and an e4m3
scale per 16 elements (`NVFP4Quantizer::get_scale_shape`; its padding to 128 × 4 and the
per-tensor fp32 amax ignored)."""

BLOCKS = {"mxfp8": MX_BLOCK, "nvfp4": NVFP4_BLOCK}
"""Elements per scale of each block-scaled recipe: what a quantized tensor's dimensions must divide by."""


def te_recipe(precision: str, kernels: str) -> str | None:
    """Transformer Engine's quantization recipe for a precision under a kernel family: `tensor`
    (one scale per tensor), `mxfp8` (a scale per 32 elements), `nvfp4` (4-bit elements, a scale
    per 16), or None (16 or 32 bits, or kernels
    that are not TE's: Megatron-Core builds its layers from TE modules; the Hugging Face and
    torchtitan families quantize, if at all, through torchao's own casts)."""
    return {"fp8": "tensor", "mxfp8": "mxfp8", "nvfp4": "nvfp4"}.get(precision) if kernels == "megatron" else None


def saved_bytes_per_element(recipe: str) -> float:
    """Bytes per element of a GEMM input quantized for backward: the fp8 element, plus under MX
    its e8m0 scale shared by 32 elements (transformer_engine MXFP8Quantizer: uint8 data and a uint8
    scale per block, `get_scale_shape`; padding of the scale array to 128 × 4 ignored); under
    NVFP4 its column-wise usage (NVFP4_BYTES_PER_ELEMENT), what the weight gradient reads
    (pytorch/module/linear.py keeps the input's column-wise usage only after the forward GEMM)."""
    if recipe == "nvfp4":
        return NVFP4_BYTES_PER_ELEMENT
    return 1.0 + (1.0 / MX_BLOCK if recipe == "mxfp8" else 0.0)


FP8_ANY_LAYOUT_GPUS = frozenset({"b200_hgx", "gb200_nvl72_per_gpu", "b300_hgx", "gb300_nvl72_per_gpu"})
"""GPUs whose tensor-scaled fp8 GEMMs take their operands in either layout: compute capability
10.x (Transformer Engine 2.8 pytorch/utils.py `is_non_tn_fp8_gemm_supported`: 10.0 to 11.x and
13.0 on). Elsewhere (Hopper, Ada, the 12.x parts, and where it is not known) an fp8 tensor used
by both the forward and the backward GEMM keeps a transposed copy beside its data."""


def fp8_transposes(gpu_id: str) -> bool:
    """Whether a tensor-scaled fp8 tensor that feeds both a forward and a backward GEMM is also
    written transposed (FP8_ANY_LAYOUT_GPUS)."""
    return gpu_id not in FP8_ANY_LAYOUT_GPUS


def fp8_weight_bytes(recipe: str, gpu_id: str) -> float:
    """Bytes per weight of Transformer Engine's 8-bit form of a linear weight, with both usages a
    training step needs: row-wise for the forward GEMM, column-wise for the data gradient's.
    Tensor scaling: the fp8 data, plus its transpose where the GPU's fp8 GEMMs need the TN layout
    (csrc/quantizer.cpp `Float8Quantizer::create_tensor`: `with_transpose = columnwise_usage &&
    !nvte_is_non_tn_fp8_gemm_supported()`). MXFP8: row-wise and column-wise data, each with its
    e8m0 scale per 32 elements (`MXFP8Quantizer::create_tensor`): 2 + 2/32. NVFP4: both usages
    as well, each quantized from the 16-bit weight (`NVFP4Quantizer::create_tensor`; the recipe's
    16 × 16 weight tiles, `fp4_2d_quantization`, keep one layout per usage): 2 × (1/2 + 1/16)."""
    if recipe == "nvfp4":
        return 2 * NVFP4_BYTES_PER_ELEMENT
    if recipe == "mxfp8":
        return 2 * saved_bytes_per_element(recipe)
    return 2.0 if fp8_transposes(gpu_id) else 1.0
