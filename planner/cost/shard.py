"""Which parameters one GPU holds: pipeline stages and tensor/expert-parallel shards.

Shared by the memory and time models so that both see the same partition.
Megatron-LM splits layers evenly over pipeline stages (`--num-layers` must divide by pp unless
`--decoder-first/last-pipeline-num-layers` is set); the first stage also holds the input
embedding and the last the final norm and output layer (megatron/core/models/gpt/gpt_model.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from planner.cost.plan import Plan
from planner.model.architecture import Architecture
from planner.model.frozen import hash_once
from planner.model.params import embedding_params, layer_params, output_params


@hash_once
@dataclass(frozen=True)
class StageShard:
    """Parameters held by one GPU of a pipeline stage, after TP and EP sharding."""

    stage: int
    first_layer: int
    num_layers: int
    dense: float
    """Non-expert parameters on this GPU (attention, dense MLPs, shared experts, router, norms,
    embedding/output on the end stages), divided by tp."""
    expert: float
    """Routed-expert parameters on this GPU: E/ep experts per MoE layer, each divided by the expert
    tensor-parallel degree etp (Megatron-Core `--expert-tensor-parallel-size`, tp by default)."""
    moe_layers: int
    linear_dense: float = 0.0
    """The part of `dense` in the layers' linear projections (attention, dense MLP, shared
    experts): the GEMM weights Megatron-Core builds as Transformer Engine modules. Not the
    embedding, the output layer, the norms or the router, which stay 16-bit torch modules."""

    @property
    def total(self) -> float:
        return self.dense + self.expert


def stage_layer_counts(num_layers: int, pp: int) -> tuple[int, ...]:
    """Layers per stage: even, with the remainder on the middle stages' side of the ends.

    When pp divides the layers this is Megatron's even split; otherwise the leftover layers go
    to the stages after the first, so that the first (embedding) and last (logits) stages are
    the lighter ones, as users set with --decoder-first/last-pipeline-num-layers.
    """
    base, extra = divmod(num_layers, pp)
    counts = [base] * pp
    order = list(range(1, pp - 1)) + [pp - 1, 0] if pp > 2 else list(range(pp))[::-1]
    for i in range(extra):
        counts[order[i % len(order)]] += 1
    return tuple(counts)


@lru_cache(maxsize=4096)
def _layer_sums(arch: Architecture, first: int, count: int) -> tuple[int, int, int, int]:
    dense = expert = moe_layers = linear = 0
    for index in range(first, first + count):
        p = layer_params(arch, index)
        expert += p.routed_experts
        dense += p.total - p.routed_experts
        linear += p.attention + p.dense_mlp + p.shared_experts
        moe_layers += arch.is_moe_layer(index)
    return dense, expert, moe_layers, linear


def stage_shards(plan: Plan, arch: Architecture, only: tuple[int, ...] | None = None) -> list[StageShard]:
    """One `StageShard` per pipeline stage, in order; `only`: just these stages, in order."""
    pp = plan.parallel.pp
    counts = plan.layer_partition(arch.num_layers) or stage_layer_counts(arch.num_layers, pp)
    return list(_shards(arch, counts, plan.parallel.tp, plan.parallel.ep, plan.expert_tp, only))


def layer_shard(arch: Architecture, index: int, tp: int, ep: int, etp: int) -> StageShard:
    """One GPU's share of layer `index` alone: a stage of that one layer between the ends (no
    embedding, no output layer)."""
    return _shards(arch, (index, 1, arch.num_layers - index - 1), tp, ep, etp, (1,))[0]


def end_shards(arch: Architecture, pp: int, tp: int, ep: int, etp: int) -> tuple[StageShard, ...]:
    """What the first and the last of `pp` stages hold besides their layers: the embedding, and the
    output layer (with the tied embedding's copy where pp > 1); one shard holding both where pp is 1."""
    return _shards(arch, (0,) * pp, tp, ep, etp, (0, pp - 1) if pp > 1 else None)


@lru_cache(maxsize=4096)
def _shards(arch: Architecture, counts: tuple[int, ...], tp: int, ep: int, etp: int,
            only: tuple[int, ...] | None) -> tuple[StageShard, ...]:
    """The shards of a partition, made once: a search asks for the same ones for every plan of
    its layout (and the same objects hash once, hash_once, as memo keys)."""
    pp = len(counts)
    shards = []
    first = 0
    for stage, count in enumerate(counts):
        if only is not None and stage not in only:
            first += count
            continue
        dense, expert, moe_layers, linear = _layer_sums(arch, first, count)
        if stage == 0:
            dense += embedding_params(arch)
        if stage == pp - 1:
            # Tied embeddings with pp > 1: the last stage keeps its own copy of the embedding as
            # the output layer, synchronized by an all-reduce (Megatron shared_embedding).
            dense += output_params(arch)
            if arch.tied_embeddings and pp > 1:
                dense += arch.vocab * arch.hidden
        shards.append(StageShard(
            stage=stage,
            first_layer=first,
            num_layers=count,
            dense=dense / tp,
            expert=expert / (etp * ep),
            moe_layers=moe_layers,
            linear_dense=linear / tp,
        ))
        first += count
    return tuple(shards)
