"""The plan space: every legal value of each plan key for one job on one cluster.

Candidates obey `planner.rules` (what Megatron-LM and DeepSpeed accept); the user's
constraints are NOT applied here: the solver adds them as constraints of its own so that it can
say which of them make a problem infeasible.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from planner.cluster import Cluster
from planner.plan import OFFLOAD_CHOICES, QUANT_CHOICES, RECOMPUTE_POLICIES, ParallelDims, Plan
from planner.rules import plan_problems
from planner.shard import stage_layer_counts
from planner.spec.job import Constraint
from planner.workload import Workload


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@dataclass(frozen=True)
class JobDefaults:
    """Plan keys the job fixes unless a constraint lists other values."""

    precision: str
    optimizer: str
    lora_ranks: tuple[int, ...]
    quant: str


def _values(key: str, default: tuple, constraints: dict[str, Constraint]) -> tuple:
    """Values to enumerate for a key outside the first search: the constraint's list, else the default."""
    c = constraints.get(key)
    if c is not None and c.values is not None:
        return tuple(c.values)
    return default


def _expressible(layers: int, pp: int) -> bool:
    """Megatron can launch this partition: even, or only the first/last stages differ
    (--decoder-first/last-pipeline-num-layers)."""
    counts = stage_layer_counts(layers, pp)
    return len(set(counts[1:-1])) <= 1


def candidate_plans(workload: Workload, cluster: Cluster, defaults: JobDefaults,
                    constraints: dict[str, Constraint]) -> Iterator[Plan]:
    """Every structurally valid plan (rules.py), constraints not applied."""
    arch = workload.arch
    world = cluster.world
    cps = [c for c in _values("cp", (1,), constraints) if isinstance(c, int) and c >= 1 and world % c == 0]
    eps = _values("ep", (1,), constraints)
    vpps = _values("vpp", (1,), constraints)
    offloads = [o for o in _values("offload", ("none",), constraints) if o in OFFLOAD_CHOICES]
    quants = [q for q in _values("quant", (defaults.quant,), constraints) if q in QUANT_CHOICES]
    precisions = _values("precision", (defaults.precision,), constraints)
    optimizers = _values("optimizer", (defaults.optimizer,), constraints)
    ranks = _values("lora_rank", defaults.lora_ranks, constraints)
    heads = arch.attention.num_heads
    for cp in cps:
        for tp in divisors(world // cp):
            if heads % tp or (not arch.attention.is_mla and arch.attention.num_kv_heads % tp):
                continue
            for pp in divisors(world // (cp * tp)):
                if pp > arch.num_layers or not _expressible(arch.num_layers, pp):
                    continue
                dp = world // (cp * tp * pp)
                if workload.global_batch % dp:
                    continue
                per_rank = workload.global_batch // dp
                for ep, vpp, mbs in itertools.product(eps, vpps, divisors(per_rank)):
                    sps = (False, True) if tp > 1 else (False,)
                    zeros = (0, 1, 2, 3) if pp == 1 else (0, 1)
                    for sp, zero, recompute, offload, quant, precision, optimizer, rank in itertools.product(
                            sps, zeros, RECOMPUTE_POLICIES, offloads, quants, precisions, optimizers, ranks):
                        plan = Plan(
                            parallel=ParallelDims(tp=tp, pp=pp, dp=dp, cp=cp, ep=ep, vpp=vpp, sp=sp),
                            zero=zero, recompute=recompute, mbs=mbs, gas=per_rank // mbs,
                            lora_rank=rank, quant=quant, precision=precision, offload=offload,
                            optimizer=optimizer,
                        )
                        if not plan_problems(plan, workload, cluster):
                            yield plan
