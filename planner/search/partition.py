"""Pipeline partitions the engines run: layers per stage class (first, middle, last).

Megatron-LM splits the layers evenly unless --decoder-first/last-pipeline-num-layers set the end
stages, the middle ones sharing the rest evenly (planner/cost/plan.py `layer_partition`); with
vpp chunks per stage every stage fills its chunks, the end stages one chunk short (the embedding
or the loss in a chunk of their own: rules.chunk_lows). torchtitan places any split through
`module_fqns_per_model_part` (engines/torchtitan_emit.py). Every such partition is
first + (pp − 2)·middle + last = layers with each class at least its low, so a pipeline depth
can run as soon as the lows sum to no more than the layers. An engine whose profile says it runs
only even stages (`uneven_stages` False) runs a depth only where its even split exists.
"""
from __future__ import annotations

from functools import lru_cache

from planner.cost.shard import stage_layer_counts
from planner.cost.workload import Workload
from planner.engines.rules import chunk_lows
from planner.model.architecture import Architecture
from planner.model.params import layer_params


def linear_lead(workload: Workload) -> int | None:
    """`lead_layers` of the job's stack, or None when memory and time are not linear in the layers
    a stage holds: partial fine-tuning of chosen layers makes each layer's cost its own."""
    if workload.partial is not None and workload.partial.layers is not None:
        return None
    return lead_layers(workload.arch)


def lead_layers(arch: Architecture) -> int | None:
    """Leading layers unlike the rest (DeepSeek's dense-first layers); None when the layers after
    them still differ (interleaved MoE, sliding-window patterns): such stacks are not linear."""
    def signature(i: int) -> tuple:
        p = layer_params(arch, i)
        return (p.total, p.routed_experts, arch.is_moe_layer(i))
    last = signature(arch.num_layers - 1)
    lead = 0
    while lead < arch.num_layers and signature(lead) != last:
        lead += 1
    if any(signature(i) != last for i in range(lead, arch.num_layers)):
        return None
    return lead


@lru_cache(maxsize=1024)
def partitions(layers: int, pp: int, first_low: int, mid_low: int = 1,
               last_low: int = 1) -> tuple[tuple[int, int, int], ...]:
    """Every (first, middle, last) split with first + (pp − 2)·middle + last = layers (pp ≥ 2;
    middle is 0 for pp = 2) and each class at least its low."""
    out = []
    mids = [0] if pp == 2 else range(mid_low, (layers - first_low - last_low) // (pp - 2) + 1)
    for mid in mids:
        rest = layers - (pp - 2) * mid
        for first in range(first_low, rest - last_low + 1):
            out.append((first, mid, rest - first))
    return tuple(out)


def class_lows(pp: int, vpp: int, lead: int) -> tuple[int, int, int]:
    """Fewest layers of the (first, middle, last) stage classes: one, the leading block on the
    first stage, and with interleaving enough to fill the chunks (rules.chunk_lows)."""
    lows = chunk_lows(pp, vpp)
    return max(lows[0], lead), lows[1] if pp > 2 else 1, lows[-1]


def runnable(layers: int, pp: int, lows: tuple[int, int, int], uneven: bool = True) -> bool:
    """Some partition of `layers` over `pp` stages meets the class lows: any (first, middle,
    last) split where the engine runs uneven stages, else the even split alone."""
    if pp == 1:
        return layers >= 1
    if not uneven:
        return layers % pp == 0 and all(layers // pp >= low for low in lows)
    first, mid, last = lows
    return first + (pp - 2) * mid + last <= layers


@lru_cache(maxsize=1024)
def nearest_partition(layers: int, pp: int, lows: tuple[int, int, int]) -> tuple[int, int, int]:
    """The (first, middle, last) split meeting the lows nearest the default split
    (shard.stage_layer_counts; ties: the busiest stage lightest, then fewer layers first).
    The default split itself wherever it is one."""
    even = stage_layer_counts(layers, pp)
    target = (even[0], even[1] if pp > 2 else 0, even[-1])
    if target[0] + (pp - 2) * target[1] + target[2] == layers and target[0] >= lows[0] and target[2] >= lows[2] \
            and (pp == 2 or target[1] >= lows[1]):
        return target  # the default split is a partition: the nearest (distance 0)
    return min(partitions(layers, pp, *lows),
               key=lambda t: (sum(abs(a - b) for a, b in zip(t, target)), max(t), t))


def expand(counts: tuple[int, int, int], pp: int) -> tuple[int, ...]:
    """Layers per stage of a (first, middle, last) partition."""
    first, mid, last = counts
    return (first,) if pp == 1 else (first, last) if pp == 2 else (first,) + (mid,) * (pp - 2) + (last,)


def default_runs(layers: int, pp: int, lows: tuple[int, int, int]) -> bool:
    """The default split (shard.stage_layer_counts) is one Megatron's flags say: only the end
    stages differ from the middle ones, and every class meets its low."""
    counts = stage_layer_counts(layers, pp)
    ends = (counts[0], counts[-1])
    return (len(set(counts[1:-1])) <= 1 and ends[0] >= lows[0] and ends[1] >= lows[2]
            and all(n >= lows[1] for n in counts[1:-1]))
