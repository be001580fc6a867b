"""Megatron-Core's `--pipeline-model-parallel-layout`: which layers each virtual pipeline stage holds.

The string lists pp × vpp virtual stages in model order, separated by `|`: virtual stage k runs
on pipeline rank k mod pp as its chunk k div pp (interleaved schedule). `E` is the embedding,
`t` a decoder layer, `m` a multi-token-prediction layer, `L` the output layer and loss; `x*n`
and `(…)*n` repeat, commas are cosmetic (megatron/core/transformer/pipeline_parallel_layer_layout.py).
It expresses splits the --decoder-first/last-pipeline-num-layers flags cannot, such as Llama 3
405B's: 126 layers over 16 stages of 8 chunks, the first chunk holding only the embedding and
the last only the loss.
"""
from __future__ import annotations

import re

_GROUP = re.compile(r"\(([^()]*)\)\*(\d+)")
_SYMBOL = re.compile(r"([EtmL])\*(\d+)")


def layout_string(counts: tuple[int, ...], vpp: int) -> str:
    """The layout of stages holding `counts` layers in `vpp` chunks each: chunks as even as the
    counts allow, the first stage's lightest chunk first (beside the embedding) and the last
    stage's lightest chunk last (beside the loss)."""
    pp = len(counts)
    chunks = []
    for i, n in enumerate(counts):
        base, extra = divmod(n, vpp)
        sizes = [base] * vpp
        heavier = list(range(vpp))[::-1] if i == 0 else list(range(vpp))
        for k in heavier[:extra]:
            sizes[k] += 1
        chunks.append(sizes)
    stages = []
    for chunk in range(vpp):
        for rank in range(pp):
            stage = "E" if rank == 0 and chunk == 0 else ""
            stage += "t" * chunks[rank][chunk]
            stage += "L" if rank == pp - 1 and chunk == vpp - 1 else ""
            stages.append(stage)
    return "|".join(stages)


def expand(text: str) -> list[str]:
    """The virtual stages of a layout string, repetitions expanded; raises ValueError."""
    flat = re.sub(r"[\s,]", "", text)
    for _ in range(64):  # nested groups expand from the inside out
        expanded = _GROUP.sub(lambda m: m.group(1) * int(m.group(2)), flat)
        if expanded == flat:
            break
        flat = expanded
    flat = _SYMBOL.sub(lambda m: m.group(1) * int(m.group(2)), flat)
    if re.search(r"[^EtmL|]", flat):
        raise ValueError(f"unexpected symbols in {text!r}: use E, t, m, L, |, (…)*n and x*n")
    return flat.split("|")


def stage_counts(stages: list[str], pp: int) -> tuple[tuple[int, ...], int]:
    """(decoder layers per pipeline rank, vpp) of expanded virtual stages; raises ValueError."""
    if len(stages) % pp:
        raise ValueError(f"{len(stages)} virtual stages do not divide by pipeline-model-parallel-size {pp}")
    counts = [0] * pp
    for k, stage in enumerate(stages):
        counts[k % pp] += stage.count("t")
    return tuple(counts), len(stages) // pp
