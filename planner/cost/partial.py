"""Partial fine-tuning: which parameters of a model train when only some do.

The seed cases: a Mixtral router alone; 6 layers x 2 experts; attention only. Shared by the
memory model (states and activations of what trains) and the time model (weight gradients of
what trains, input gradients above the first trainable layer).
"""
from __future__ import annotations

from dataclasses import dataclass

from planner.cost.plan import Plan
from planner.cost.shard import StageShard
from planner.model.architecture import Architecture
from planner.model.params import (
    attention_linears,
    embedding_params,
    layer_params,
    output_params,
)

NORMS, ROUTER = "norms", "router"


@dataclass(frozen=True)
class PartialTraining:
    """Partial fine-tuning: only the chosen parameters train, everything else is frozen.

    Frozen parameters cost only their weight bytes (in the compute dtype, as LoRA's frozen base);
    trainable ones carry the full state (gradient, master weight, optimizer states), as with LoRA,
    which stores no optimizer state for frozen weights (arXiv 2106.09685 §4.2). E.g. Mixtral router-only:
    `PartialTraining(router=True)`; 6 layers x 2 experts: `PartialTraining(layers=(0, ..., 5), experts=2)`.
    Activations follow the LoRA rule (`layer_activation_bytes_per_token`): layers before the first
    trainable one keep nothing, a frozen linear keeps no input, a frozen norm no normalized copy.
    Checked against MemTracker in validation/memory/ (partial-*). Routed experts are counted one
    module per expert (Megatron SequentialMLP); transformers' fused expert tensors train all
    experts of a layer or none.
    """

    layers: tuple[int, ...] | None = None
    """Decoder layers (0-based) whose chosen parts train; None: every layer."""
    experts: int = 0
    """Routed experts trained in each chosen MoE layer (the whole expert FFN)."""
    router: bool = False
    """The MoE router (gate) of each chosen MoE layer."""
    attention: bool = False
    """Attention projections of each chosen layer."""
    mlp: bool = False
    """Dense MLP and shared experts of each chosen layer."""
    norms: bool = False
    """Norms of each chosen layer."""
    embedding: bool = False
    output: bool = False
    """The output layer (lm_head) and the final norm."""

    def layer_trainable(self, arch: Architecture, index: int) -> tuple[int, int]:
        """(non-expert, routed-expert) trainable parameters of layer `index`, before sharding."""
        if self.layers is not None and index not in self.layers:
            return 0, 0
        p = layer_params(arch, index)
        dense = (p.attention * self.attention + (p.dense_mlp + p.shared_experts) * self.mlp
                 + p.norms * self.norms + p.router * self.router)
        return dense, p.per_expert * min(self.experts, p.num_experts)

    def layer_modules(self, arch: Architecture, index: int) -> frozenset[str]:
        """The trainable modules of layer `index` by LoRA-style name (experts as gate/up/down_proj)."""
        if self.layers is not None and index not in self.layers:
            return frozenset()
        names: set[str] = set()
        if self.attention:
            names.update(attention_linears(arch.attention, arch.hidden))
        if self.mlp or (self.experts and arch.is_moe_layer(index)):
            names.update(("gate_proj", "up_proj", "down_proj"))
        if self.router and arch.is_moe_layer(index):
            names.add(ROUTER)
        if self.norms:
            names.add(NORMS)
        return frozenset(names)

    def first_trainable_layer(self, arch: Architecture) -> int | None:
        """The first layer whose input needs a gradient's path (0 when the embedding trains)."""
        if self.embedding:
            return 0
        return next((i for i in range(arch.num_layers) if any(self.layer_trainable(arch, i))), None)

    def trainable_params(self, arch: Architecture) -> int:
        """Trainable parameters of the whole model (no parallelism)."""
        out = sum(sum(self.layer_trainable(arch, i)) for i in range(arch.num_layers))
        return out + embedding_params(arch) * self.embedding + output_params(arch) * self.output

    def weight_grad_fraction(self, arch: Architecture, index: int, linear_flops_per_token: float) -> float:
        """Share of layer `index`'s GEMM FLOPs whose weights train (their weight gradients are
        computed). A token reaches top_k of the E routed experts, so the trained experts see
        experts/E of the routed tokens on average."""
        if linear_flops_per_token <= 0:
            return 0.0
        return min(1.0, 2 * self.active_trainable_linear(arch, index) / linear_flops_per_token)

    def trainable_linear(self, arch: Architecture, index: int) -> tuple[int, int]:
        """(non-expert, routed-expert) trainable GEMM weights of layer `index`: its trainable
        parameters less its norms, which are not GEMMs."""
        dense, expert = self.layer_trainable(arch, index)
        if self.norms and (self.layers is None or index in self.layers):
            dense -= layer_params(arch, index).norms
        return dense, expert

    def active_trainable_linear(self, arch: Architecture, index: int) -> float:
        """Trainable GEMM weights one token of layer `index` passes through, on average."""
        dense, expert = self.trainable_linear(arch, index)
        routed = 0.0
        if expert and arch.is_moe_layer(index):
            routed = expert * arch.moe.top_k / arch.moe.num_experts
        return dense + routed

    def active_trainable_params(self, arch: Architecture) -> float:
        """Trainable GEMM weights one token passes through, over the whole model (for model FLOPs)."""
        return (sum(self.active_trainable_linear(arch, i) for i in range(arch.num_layers))
                + output_params(arch) * self.output)


def partial_trainable(plan: Plan, arch: Architecture, shard: StageShard,
                       partial: PartialTraining) -> tuple[float, float]:
    """(non-expert, routed-expert) trainable parameters on one GPU of the stage.

    Routed experts: E/ep of each layer live on a GPU; the trained ones are assumed spread evenly,
    so the most loaded GPU holds ceil(trained / ep) of them (never more than E/ep)."""
    tp, ep = plan.parallel.tp, plan.parallel.ep
    dense = expert = 0.0
    for i in range(shard.first_layer, shard.first_layer + shard.num_layers):
        d, e = partial.layer_trainable(arch, i)
        dense += d
        if e:
            p = layer_params(arch, i)
            local = min(-(-min(partial.experts, p.num_experts) // ep), p.num_experts // ep)
            expert += local * p.per_expert
    if shard.stage == 0 and partial.embedding:
        dense += embedding_params(arch)
    if shard.stage == plan.parallel.pp - 1 and partial.output:
        dense += output_params(arch)
    return dense / tp, expert / plan.expert_tp


def describe(partial: PartialTraining, arch: Architecture) -> str:
    """`partial: router` or `partial: 2 experts, layers 0-5`: what trains, in a few words."""
    parts = [f"{partial.experts} experts"] if partial.experts else []
    parts += [name for name in ("router", "attention", "mlp", "norms", "embedding", "output") if getattr(partial, name)]
    if partial.layers is not None:
        layers = sorted(partial.layers)
        contiguous = layers == list(range(layers[0], layers[-1] + 1))
        parts.append(f"layers {layers[0]}-{layers[-1]}" if contiguous and len(layers) > 1
                     else "layers " + ",".join(map(str, layers)))
    return f"partial: {', '.join(parts)}; {partial.trainable_params(arch):,} trainable"
