"""Stored weight formats a config.json's `quantization_config` declares, and the bytes of one
linear layer in each, scales and zero points included.

Formats (transformers 5.24 quantizers/quantizer_*.py and integrations/*.py read the same keys):
  mxfp4         gpt-oss: FP4 (E2M1) codes, 2 per byte, and one E8M0 (1-byte) scale per 32 inputs
                (OCP Microscaling Formats v1.0 §5; integrations/mxfp4.py stores `*_blocks`
                [.., d_in/32, 16] and `*_scales` [.., d_in/32] uint8). transformers swaps only
                the routed experts (GptOssExperts); attention, router, embeddings and lm_head
                stay 16-bit.
  fp8           e4m3 codes, 1 byte each; with `weight_block_size` [b_out, b_in] one fp32
                `weight_scale_inv` per block (DeepSeek-V3's 128 x 128; integrations/
                finegrained_fp8.py FP8Linear), else one fp32 scale per tensor.
  gptq          GPTQ (AutoGPTQ/GPTQModel QuantLinear): `qweight` int32 [d_in·bits/32, d_out],
                `qzeros` int32 [groups, d_out·bits/32], `scales` fp16 [groups, d_out] and `g_idx`
                int32 [d_in]; groups = d_in / group_size (group_size -1: one group).
  awq           AWQ GEMM (AutoAWQ WQLinear_GEMM): `qweight` int32 [d_in, d_out·bits/32],
                `qzeros` int32 [groups, d_out·bits/32], `scales` fp16 [groups, d_out].
  bitsandbytes  4-bit (nf4 or fp4): codes 2 per byte and an absmax per 64 weights, fp32, or with
                `bnb_4bit_use_double_quant` 8-bit with one fp32 scale per 256 absmax values
                (QLoRA, arXiv 2305.14314 §3; bitsandbytes Params4bit); 8-bit: int8 codes and an
                fp32 absmax per output row (LLM.int8, arXiv 2208.07339 §3; Int8Params.SCB).
Biases stay 16-bit in every format. Every format except mxfp4 stores the linear layers of the
blocks (attention, MLP, shared and routed experts); norms, routers, embeddings and lm_head stay
16-bit, as the quantizers skip them. Pure functions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from planner.spec.errors import InputError

Method = Literal["mxfp4", "fp8", "gptq", "awq", "bitsandbytes"]
METHODS = ("mxfp4", "fp8", "gptq", "awq", "bitsandbytes")
MX_BLOCK = 32
"""Elements per shared E8M0 scale in MXFP4 (OCP MX v1.0)."""
BNB_BLOCK = 64
"""bitsandbytes 4-bit: weights per absmax (Params4bit blocksize)."""
BNB_NESTED_BLOCK = 256
"""bitsandbytes double quantization: 8-bit absmax values per fp32 scale."""
DENSE_BYTES = 2
"""Bytes of what no format quantizes: the checkpoints' 16-bit (bf16/fp16) tensors."""


@dataclass(frozen=True)
class WeightFormat:
    """How a checkpoint stores its linear weights."""

    method: Method
    bits: int
    """Bits of one weight code."""
    group_size: int | None = None
    """Inputs per scale (GPTQ, AWQ; None: one group over all inputs)."""
    block: tuple[int, int] | None = None
    """fp8: (outputs, inputs) per fp32 scale; None: one scale per tensor."""
    double_quant: bool = False
    """bitsandbytes 4-bit: absmax values quantized to 8 bits."""
    experts_only: bool = False
    """Only the routed experts are stored in this format (mxfp4)."""

    @property
    def label(self) -> str:
        if self.method == "mxfp4":
            return "mxfp4 experts"
        if self.method == "fp8":
            return f"fp8 block {self.block[0]}x{self.block[1]}" if self.block else "fp8 per tensor"
        if self.method in ("gptq", "awq"):
            group = f"g{self.group_size}" if self.group_size else "one group"
            return f"{self.method} int{self.bits} {group}"
        return f"bitsandbytes {self.bits}-bit" + (" double-quant" if self.double_quant else "")

    @property
    def nominal_bytes_per_param(self) -> Fraction:
        """Code bytes per weight, without scales: the rule of thumb's figure."""
        return Fraction(self.bits, 8)


def quantized_linear_bytes(d_in: int, d_out: int, bias: bool, fmt: WeightFormat) -> int:
    """Bytes of one `d_in × d_out` linear layer stored in `fmt` (module docstring)."""
    n = d_in * d_out
    bias_b = DENSE_BYTES * d_out if bias else 0
    if n == 0:
        return bias_b
    if fmt.method == "mxfp4":
        return math.ceil(n / 2) + math.ceil(d_in / MX_BLOCK) * d_out + bias_b
    if fmt.method == "fp8":
        if fmt.block is None:
            return n + 4 + bias_b
        b_out, b_in = fmt.block
        return n + 4 * math.ceil(d_out / b_out) * math.ceil(d_in / b_in) + bias_b
    if fmt.method in ("gptq", "awq"):
        groups = math.ceil(d_in / fmt.group_size) if fmt.group_size else 1
        packed_out = math.ceil(d_out * fmt.bits / 32)  # int32 words per row of outputs
        zeros_b, scales_b = 4 * groups * packed_out, DENSE_BYTES * groups * d_out
        if fmt.method == "gptq":
            return 4 * math.ceil(d_in * fmt.bits / 32) * d_out + zeros_b + scales_b + 4 * d_in + bias_b
        return 4 * d_in * packed_out + zeros_b + scales_b + bias_b
    if fmt.bits == 8:
        return n + 4 * d_out + bias_b
    blocks = math.ceil(n / BNB_BLOCK)
    absmax_b = blocks + 4 * math.ceil(blocks / BNB_NESTED_BLOCK) if fmt.double_quant else 4 * blocks
    return math.ceil(n / 2) + absmax_b + bias_b


def weight_format_from_config(cfg: dict) -> WeightFormat | None:
    """The format `quantization_config` declares, or None without one. Raises InputError
    naming the field for an unknown method or an invalid value."""
    q = cfg.get("quantization_config")
    if q is None:
        return None
    if not isinstance(q, dict):
        raise InputError(f"must be a mapping, got {q!r}", field="quantization_config")
    method = q.get("quant_method")
    where = "quantization_config."
    if method == "mxfp4":
        return WeightFormat("mxfp4", 4, experts_only=True)
    if method == "fp8":
        block = q.get("weight_block_size")
        if block is not None and (not isinstance(block, list) or len(block) != 2
                                  or not all(_is_positive(b) for b in block)):
            raise InputError(f"must be [outputs, inputs], got {block!r}", field=where + "weight_block_size")
        return WeightFormat("fp8", 8, block=tuple(block) if block else None)
    if method in ("gptq", "awq"):
        bits = _int_field(q, "bits", 4, (2, 3, 4, 8) if method == "gptq" else (4,), where)
        group = q.get("group_size", 128 if method == "awq" else -1)
        if group != -1 and not _is_positive(group):
            raise InputError(f"must be a positive integer or -1, got {group!r}", field=where + "group_size")
        return WeightFormat(method, bits, group_size=None if group == -1 else group)
    if method == "bitsandbytes":
        if q.get("load_in_4bit"):
            return WeightFormat("bitsandbytes", 4, double_quant=bool(q.get("bnb_4bit_use_double_quant")))
        if q.get("load_in_8bit"):
            return WeightFormat("bitsandbytes", 8)
        raise InputError("needs load_in_4bit or load_in_8bit", field="quantization_config")
    raise InputError(f"unknown quant_method {method!r}; supported: {', '.join(METHODS)} "
                     "(or give --precision to size the weights yourself)", field=where + "quant_method")


def _is_positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _int_field(q: dict, key: str, default: int, allowed: tuple[int, ...], where: str) -> int:
    value = q.get(key, default)
    if value not in allowed or isinstance(value, bool):
        raise InputError(f"must be one of {', '.join(map(str, allowed))}, got {value!r}", field=where + key)
    return value
