"""The phases of a training step (forward end, backward start, backward through the layers, optimizer
step) and the activation terms each holds; the peak is the largest."""
from __future__ import annotations

from planner.cost import memo
from planner.cost.memory.activations import (
    adapted_modules,
    inflight_microbatches,
    layer_activation_bytes,
    norm_bytes,
)
from planner.cost.memory.kernels import Kernels
from planner.cost.memory.runtime import buffer_bytes
from planner.cost.memory.states import MIXED, workload_state_bytes
from planner.cost.partial import PartialTraining
from planner.cost.plan import Plan
from planner.cost.shard import StageShard
from planner.cost.workload import Workload
from planner.model.architecture import Architecture
from planner.model.frozen import evolve
from planner.model.params import layer_params, output_params


def peak_phase(plan: Plan, workload: Workload, shard: StageShard, tokens: float, k: Kernels,
                states: dict[str, float], weight_b: int, partial: PartialTraining | None = None,
                key: Plan | None = None) -> tuple[str, dict[str, float], dict[str, float]]:
    """The phase of the step with the most live bytes: (name, MemoryBreakdown terms, itemized terms).

    Megatron and DeepSpeed keep their gradient buffers for the whole step and step with fused
    Adam (`EngineTraits.persistent_gradients`): their peak is the start of backward with every
    term present. Under FSDP2 and torchtitan (PyTorch's own loop) the gradients
    only exist from backward on (unless accumulated over micro-batches), so the peak is one of:
      forward end      states + saved activations + all autocast weight copies (the autocast
                       cache lives until the forward ends, recomputed layers included)
      backward start   states + saved activations + the loss's fp32 gradients (logits_grad)
      backward layers  states + the output layer's gradients + saved activations + the working
                       set of the layer being recomputed (full recompute)
      optimizer step   states + all gradients + the foreach temporary

    `key`: `activation_key(plan, workload)`, when the caller has it (one per plan, whatever
    the stage)."""
    act = _activation_terms(plan, workload, shard, tokens, k, partial, key)
    buffers = buffer_bytes(plan, workload, shard, weight_b, k)
    all_grads = {"gradients": states["gradients"], "fp32_gradient_copy": states["fp32_gradient_copy"]}

    def phase(grads: dict[str, float], acts: dict[str, float], buf: dict[str, float], temp: float = 0.0):
        parts = {
            "weights": {"weights": states["weights"], "fp8_weight_cache": states["fp8_weight_cache"]},
            "gradients": grads,
            "optimizer": {"optimizer_states": states["optimizer_states"], "optimizer_step_temp": temp},
            "master_weights": {"master_weights": states["master_weights"]},
            "activations": acts,
            "buffers": buf,
        }
        memory = {term: sum(p.values()) for term, p in parts.items()}
        detail = {name: v for p in parts.values() for name, v in p.items() if v}
        return memory, detail

    saved = {n: act[n] for n in ("layers", "embedding", "final_norm", "logits")}
    if workload.engine.persistent_gradients:
        acts = {**saved, "logits_grad": act["logits_grad"], "recompute_working_set": act["recompute_working_set"],
                "autocast_weight_copies": act["autocast_weight_copies_saved"]}
        return ("backward start", *phase(all_grads, acts, buffers))

    lazy = plan.gas == 1  # zero_grad(set_to_none=True): gradients appear in backward
    fwd_grads = {} if lazy else all_grads
    candidates = {
        "forward end": phase(fwd_grads, {**saved, "autocast_weight_copies": act["autocast_weight_copies"]}, buffers),
        "backward start": phase(fwd_grads, {**saved, "logits_grad": act["logits_grad"],
                                            "autocast_weight_copies": act["autocast_weight_copies_saved"]}, buffers),
        "backward layers": phase(
            {**fwd_grads, "output_layer_grad": act["output_layer_grad"] if lazy else 0.0},
            {"layers": act["layers"], "embedding": act["embedding"],
             "autocast_weight_copies": act["autocast_weight_copies_layers"],
             "recompute_working_set": act["recompute_working_set"]}, buffers),
        "optimizer step": phase(all_grads, {}, {n: v for n, v in buffers.items() if n == "ddp_buckets"},
                                states["optimizer_step_temp"]),
    }
    name = max(candidates, key=lambda n: sum(candidates[n][0].values()))
    return (name, *candidates[name])


def _linear_params(arch: Architecture, index: int) -> int:
    p = layer_params(arch, index)
    return p.total - p.norms


_ACTIVATIONS = memo.new_cache()


def activation_key(plan: Plan, workload: Workload) -> Plan:
    """The plan with the keys `_activation_terms` never reads reset: the context-parallel size
    and the micro-batch (both reach it through `tokens`), the end stages' layer counts (the shard
    carries its layers), offload and the engine (the workload's traits name its kernels). Under
    Megatron kernels it also never reads what only the output layer's gradients of the Hugging
    Face path read (`_output_grad_bytes`): the data-parallel and expert grids, ZeRO (Megatron's
    kernels do not depend on it: kernels.py), the optimizer, its moments, fp8 gathers and
    quantization. It reads tp, pp, vpp, sp, expert TP (the gathered tokens of the experts) and
    whether ep > 1, the micro-batches of a step, ZeRO under the other kernels, the precision, the recompute policy, layers and modules, the LoRA rank and
    activation offload. The micro-batches of a pipeline run count only up to the pipeline's in-flight
    limit (`inflight_microbatches`: at most pp·(vpp + 1) − 1 chunks), so the key keeps no more:
    plans of the same shape on more or fewer GPUs share their activations."""
    parallel = plan.parallel
    pp, vpp, ep = parallel.pp, parallel.vpp, parallel.ep
    reset = dict(mbs=1, first_stage_layers=None, last_stage_layers=None, offload="none", framework="megatron",
                 gas=min(plan.microbatches_per_run, pp * (vpp + 1)), pipeline_runs=1)
    if workload.engine.kernels != "megatron":
        return evolve(plan, parallel=evolve(parallel, cp=1), **reset)
    return evolve(plan, parallel=evolve(parallel, cp=1, dp=1, ep=min(ep, 2)), etp=plan.expert_tp if ep > 1 else 1,
                  zero=0, optimizer="adamw", moment_dtype="fp32", fp8_param_gather=False, quant="none", **reset)


def _activation_terms(plan: Plan, workload: Workload, shard: StageShard, tokens: float, k: Kernels,
                      partial: PartialTraining | None = None, key: Plan | None = None) -> dict[str, float]:
    """Activation bytes of one GPU of the stage, by kind; memoized within a search
    (planner/cost/memo.py) on every input it reads (`key`: the plan's `activation_key`, when
    the caller has it)."""
    key = key if key is not None else activation_key(plan, workload)
    # Of the shard it reads only which layers the stage holds, not the parameters they hold.
    where = evolve(shard, dense=0.0, expert=0.0, moe_layers=0)
    return dict(memo.lookup(_ACTIVATIONS, (key, workload, where, tokens, k, partial),
                            lambda: _fresh_activation_terms(plan, workload, shard, tokens, k, partial)))


def _fresh_activation_terms(plan: Plan, workload: Workload, shard: StageShard, tokens: float, k: Kernels,
                            partial: PartialTraining | None = None) -> dict[str, float]:
    """Activation bytes of one GPU of the stage, by kind."""
    arch = workload.arch
    tp, sp = plan.parallel.tp, plan.parallel.sp
    adapted = adapted_modules(plan, workload)
    first, last = shard.stage == 0, shard.stage == plan.parallel.pp - 1
    layers = range(shard.first_layer, shard.first_layer + shard.num_layers)
    # Partial recompute (recompute_layers): the stage's first layers are recomputed, the rest keep
    # everything (Megatron --recompute-method block).
    recomputed = plan.recomputed_layers(shard.stage, shard.num_layers)
    kept = plan.with_(recompute="none") if plan.recompute == "full" else plan
    saving, keeping = (layer_activation_bytes(arch, p, workload, partial=partial) for p in (plan, kept))
    per_token = [saving(i) if n < recomputed else keeping(i) for n, i in enumerate(layers)]
    inflight = inflight_microbatches(plan, shard.stage)
    offloaded = min(plan.offload_activation_layers, shard.num_layers)
    out = dict.fromkeys(("layers", "embedding", "final_norm", "logits", "logits_grad", "recompute_working_set",
                         "autocast_weight_copies", "autocast_weight_copies_saved",
                         "autocast_weight_copies_layers", "output_layer_grad"), 0.0)
    out["layers"] = inflight * tokens * sum(per_token)
    if offloaded:
        # Megatron-Core cpu_offloading_num_layers: the saved tensors of that many layers go to host
        # memory after their forward and come back before their backward; one layer's are on the
        # GPU in transit (megatron/core/cpu_offload.py, a layer-wise double buffer).
        out["layers"] -= inflight * tokens * sum(per_token[:offloaded]) - tokens * max(per_token[:offloaded])
    if recomputed:
        # Recomputing a layer in backward rebuilds its full activations, whose input is the
        # checkpoint already counted: one layer's working set on top of the checkpoints.
        unrecomputed = layer_activation_bytes(arch, plan.with_(recompute="none"), workload, partial=partial)
        out["recompute_working_set"] = tokens * (max(unrecomputed(i) for i in layers) - per_token[0])
    vocab = arch.vocab / tp
    if workload.engine.kernels == "megatron":
        if first:
            # Embedding output (the first layer's input), per in-flight micro-batch.
            out["embedding"] = inflight * tokens * k.act * arch.hidden / (tp if sp else 1)
        if last:
            # Logits: Megatron-Core's fused vocab-parallel cross entropy (cross_entropy_loss_fusion,
            # set by Megatron-Bridge's recipes; megatron/core/fusions/fused_cross_entropy.py) saves
            # only the fp32 exponentials for backward: the 16-bit logits themselves are saved by
            # no module (Korthikanti §4.3: 4 s b V / t in fp32).
            out["logits"] = tokens * 4 * vocab
        return out
    if last:
        # HF: the final norm and the lm_head input (when lm_head trains); the logits the model
        # returns (e bytes) and the fp32 log-softmax cross entropy saves (transformers
        # ForCausalLMLoss upcasts the logits); backward starts with two fp32 b s V gradients
        # (of the log-softmax output and of the logits) alive together (MemTracker `Temp`).
        head_trains = adapted is None and (partial is None or partial.output)
        h_in = arch.hidden * (2 if k.autocast else k.residual) if head_trains else 0
        out["final_norm"] = tokens * (norm_bytes(arch, k, head_trains) + h_in) / (tp if sp else 1)
        # A loop that frees the model's output before backward keeps only the fp32 log-softmax.
        out["logits"] = tokens * (4 if workload.engine.output_freed_before_backward else k.act + 4) * vocab
        out["logits_grad"] = tokens * 8 * vocab
        out["output_layer_grad"] = _output_grad_bytes(plan, workload, k) if partial is None or partial.output else 0.0
    if k.autocast and not (adapted is not None and plan.precision in MIXED):
        # torch.autocast caches a bf16 copy of every linear weight it casts until the autocast
        # region (the forward) ends; matmuls save them for backward, so without recompute they
        # live until each layer's backward (+2 B/param: docs/memory-validation.md, bf16-autocast). Recompute drops them
        # with the cache and rebuilds one layer's copies; lm_head's stay saved.
        # Partial fine-tuning in mixed precision keeps frozen weights in bf16, which autocast uses as
        # they are: only the trainable (fp32) linears get a bf16 copy.
        only_trainable = partial is not None and plan.precision in MIXED
        layer_copies = [2 * (sum(partial.trainable_linear(arch, i)) if only_trainable else _linear_params(arch, i))
                        / tp for i in layers]
        head = 2 * output_params(arch) / tp if last and (not only_trainable or partial.output) else 0.0
        out["autocast_weight_copies"] = sum(layer_copies) + head
        recomputed = plan.recompute == "full"
        out["autocast_weight_copies_saved"] = head + (0.0 if recomputed else sum(layer_copies))
        out["autocast_weight_copies_layers"] = max(layer_copies, default=0.0) if recomputed else sum(layer_copies)
    return out


def _output_grad_bytes(plan: Plan, workload: Workload, k: Kernels) -> float:
    """Gradients of the output layer, the first ones backward allocates (hf, full training)."""
    if workload.trains_adapters:
        return 0.0
    arch = workload.arch
    params = output_params(arch) / plan.parallel.tp
    if plan.zero == 3:
        # FSDP2 reduce-scatters the root module's gradients only when its backward ends.
        return params * k.act
    return params * workload_state_bytes(workload, plan, workload.arch.hidden)[1] / (plan.parallel.dp if plan.zero >= 2 else 1)
