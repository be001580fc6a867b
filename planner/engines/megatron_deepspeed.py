"""Megatron-DeepSpeed (microsoft/Megatron-DeepSpeed, bigscience-workshop/Megatron-DeepSpeed): the
flags its launch scripts add to Megatron-LM's, and how DeepSpeed's PipelineModule splits its layers.

A launch with `--deepspeed` trains through DeepSpeed's engine: ZeRO from the `--deepspeed_config`
JSON (the example scripts write its stage from the same variable as `--zero-stage`), Ulysses
sequence parallelism from `--ds-sequence-parallel-size`, and pipeline stages built by
`GPTModelPipe` (megatron/model/gpt_model.py), a `PipelineModule` that partitions its list of layer
specs by `--pp-partition-method` (default `type:transformer`): deepspeed/runtime/pipe/module.py
`_partition_layers` weighs every spec whose class name matches the regex 1 and the others 0, and
deepspeed/runtime/utils.py `partition_balanced` splits the weights into contiguous parts whose
largest and smallest sums differ least.
"""
from __future__ import annotations

import math
import re

# GPTModelPipe's layer specs in order (megatron/model/gpt_model.py): the fp16/bf16 cast
# function, the tied input embedding, an embedding LayerNorm with --embed-layernorm (BLOOM),
# the transformer layers, the final norm and the tied embedding again as the output layer
# (LMHeadPipe when untied). Functions count by their __name__ (`_to_float16`, `<lambda>`).
_EMBEDDING, _LAYER, _NORM, _HEAD = "EmbeddingPipe", "ParallelTransformerLayerPipe", "MixedFusedLayerNorm", "LMHeadPipe"

DEFAULT_PARTITION = "type:transformer"
"""GPTModelPipe's partition_method unless --pp-partition-method says otherwise."""

# Flags of Megatron-DeepSpeed's arguments.py (and deepspeed.add_config_arguments) that change
# nothing the planner estimates, or that it reads through other flags.
NO_EFFECT = frozenset("""
deepspeed deepspeed-config deepspeed_config deepscale deepscale-config deepspeed-activation-checkpointing
zero-reduce-scatter zero-contigious-gradients zero-reduce-bucket-size zero-allgather-bucket-size
remote-device use-pin-memory synchronize-each-layer contigious-checkpointing profile-backward
abort-on-unmet-fused-kernel-constraints kill-switch-path
log-batch-size-to-tensorboard log-optimizer-states-to-tensorboard codecarbon-dir curriculum-learning
tokenizer-name-or-path sync-tp-duplicated-parameters
train-weighted-split-paths valid-weighted-split-paths test-weighted-split-paths
train-weighted-split-weights valid-weighted-split-weights test-weighted-split-weights
train-weighted-split-splits valid-weighted-split-splits test-weighted-split-splits
train-weighted-split-names valid-weighted-split-names test-weighted-split-names data-impl
skip-train-iteration-range universal-checkpoint use-dataset-only no-query-key-layer-scaling
""".split())

def is_megatron_deepspeed(flags: dict) -> bool:
    """A launch through DeepSpeed's engine: Megatron-DeepSpeed's `--deepspeed` (or its config)."""
    return any(name in flags for name in ("deepspeed", "deepspeed-config", "deepspeed_config", "deepscale"))


def layer_specs(num_layers: int, embed_layernorm: bool, untied: bool) -> list[str]:
    """Class or function names of GPTModelPipe's layer specs, in order."""
    return (["_to_float16", _EMBEDDING] + ([_NORM] if embed_layernorm else []) + [_LAYER] * num_layers
            + ["<lambda>", _NORM, _HEAD if untied else _EMBEDDING])


def partition_balanced(weights: list[int], parts: int) -> list[int]:
    """deepspeed/runtime/utils.py `partition_balanced`: boundaries of `parts` contiguous parts whose
    largest and smallest weight sums differ least (ties to the latest split, as its `>=`)."""
    n = len(weights)
    if n <= parts:
        return [min(p, n) for p in range(parts + 1)]  # partition_uniform's trivial case
    inf = math.inf
    prefix = [0]
    for w in weights:
        prefix.append(prefix[-1] + w)
    high = [[inf] * (parts + 1) for _ in range(n + 1)]
    low = [[inf] * (parts + 1) for _ in range(n + 1)]
    cost = [[inf] * (parts + 1) for _ in range(n + 1)]
    position = [[0] * (parts + 1) for _ in range(n + 1)]
    high[0][0] = cost[0][0] = 0
    for i in range(1, n + 1):
        for j in range(1, min(i, parts) + 1):
            for k in range(i):
                top = max(high[k][j - 1], prefix[i] - prefix[k])
                bottom = min(low[k][j - 1], prefix[i] - prefix[k])
                if cost[i][j] >= top - bottom:
                    cost[i][j], high[i][j], low[i][j], position[i][j] = top - bottom, top, bottom, k
    bounds = [n]
    for j in range(parts, 0, -1):
        bounds.append(position[bounds[-1]][j])
    return bounds[::-1]


def type_partition(method: str, num_layers: int, pp: int, embed_layernorm: bool = False,
                   untied: bool = False) -> tuple[int, ...]:
    """Transformer layers per pipeline stage under `--pp-partition-method` (`type:REGEX`,
    `uniform`, `parameters`); raises ValueError for a method DeepSpeed does not have."""
    specs = layer_specs(num_layers, embed_layernorm, untied)
    method = method.strip().strip("'\"")
    lowered = method.lower()
    if lowered == "uniform":
        size, extra = divmod(len(specs), pp)
        bounds = [0]
        for stage in range(pp):
            bounds.append(bounds[-1] + size + (stage < extra))
    elif lowered.startswith("type:"):
        pattern = re.compile(method.split(":", 1)[1], re.IGNORECASE)
        weights = [1 if pattern.search(name) else 0 for name in specs]
        if not any(weights):
            raise ValueError(f"{method!r} matches no layer of GPTModelPipe ({', '.join(sorted(set(specs)))})")
        bounds = partition_balanced(weights, pp)
    elif lowered == "parameters":
        raise ValueError("'parameters' balances parameter counts; give type:transformer for the planner to follow")
    else:
        raise ValueError(f"{method!r} is not a DeepSpeed partition method (uniform, parameters, type:REGEX)")
    return tuple(specs[bounds[s]:bounds[s + 1]].count(_LAYER) for s in range(pp))
