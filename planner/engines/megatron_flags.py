"""Megatron-LM arguments: where a launch script passes them, how they parse (as argparse would),
which the planner reads, which only shape the model and which change nothing it estimates; and
the model-shape flags to and from an `Architecture`.

Flag names: megatron/training/arguments.py (Megatron-LM core_r0.12 to 0.16). The mapping of
shape flags to an architecture is `planner.model.megatron_args`; here the result is compared with
the job's model (megatron_emit.py writes the job's model back as flags that mapping reads).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from planner.engines.shell import ShellScript
from planner.model.architecture import Architecture
from planner.model.params import count_params
from planner.spec.errors import InputError

_LAUNCH_PREFERRED = ("pretrain", "train")
DEEPSPEED_SPELLINGS = frozenset({"deepspeed_config", "deepscale_config"})
"""Flags DeepSpeed's own argparse group spells with underscores (deepspeed/__init__.py
`_add_core_arguments`), which Megatron-DeepSpeed launches pass."""

# Flags that size the model (mapped by planner/model/megatron_args.py).
SHAPE_FLAGS = frozenset("""
num-layers hidden-size ffn-hidden-size num-attention-heads group-query-attention num-query-groups kv-channels
max-position-embeddings position-embedding-type use-rotary-position-embeddings rotary-base rotary-percent
rotary-interleaved rotary-seq-len-interpolation-factor use-rope-scaling rope-scaling-factor no-rope-freq
normalization norm-epsilon apply-layernorm-1p swiglu squared-relu openai-gelu untie-embeddings-and-output-weights
disable-bias-linear add-bias-linear add-qkv-bias qk-layernorm softmax-type vocab-size padded-vocab-size
make-vocab-size-divisible-by tokenizer-type tokenizer-model vocab-file merge-file num-experts moe-router-topk
moe-ffn-hidden-size moe-shared-expert-intermediate-size moe-shared-expert-gate moe-shared-expert-overlap
moe-layer-freq multi-latent-attention q-lora-rank kv-lora-rank qk-head-dim qk-pos-emb-head-dim v-head-dim
mtp-num-layers window-size num-key-value-heads no-position-embedding pad-vocab-size-to embed-layernorm
moe-router-num-groups moe-router-group-topk
""".split())

# Flags that change nothing the planner estimates (data, logging, checkpoints, learning-rate
# schedule, initialization, loss scaling, MoE routing losses), or that it assumes anyway: flash
# attention, fused kernels, DP communication overlapped with compute (timing.py), and DDP buckets,
# which in Megatron-Core are views into the contiguous gradient buffer
# (megatron/core/distributed/param_and_grad_buffer.py) and take no memory of their own.
NO_EFFECT_FLAGS = frozenset("""
lr min-lr lr-decay-style lr-decay-iters lr-decay-samples lr-warmup-iters lr-warmup-samples lr-warmup-fraction
lr-warmup-init lr-wsd-decay-style lr-wsd-decay-iters lr-wsd-decay-samples weight-decay start-weight-decay
end-weight-decay weight-decay-incr-style clip-grad adam-beta1 adam-beta2 adam-eps init-method-std seed
train-iters train-samples exit-interval exit-duration-in-mins log-interval save-interval eval-interval eval-iters
save load pretrained-checkpoint finetune no-load-optim no-load-rng no-save-optim no-save-rng ckpt-format async-save
ckpt-fully-parallel-save ckpt-fully-parallel-load dist-ckpt-strictness use-checkpoint-args auto-detect-ckpt-format
use-dist-ckpt data-path train-data-path valid-data-path test-data-path split data-cache-path mock-data num-workers
dataloader-type data-args-path per-split-data-args-path tensorboard-dir tensorboard-log-interval
tensorboard-queue-size wandb-project wandb-exp-name wandb-save-dir log-throughput log-timers-to-tensorboard
log-validation-ppl-to-tensorboard log-memory-to-tensorboard log-num-zeros-in-grad log-params-norm
log-loss-scale-to-tensorboard log-world-size-to-tensorboard timing-log-level timing-log-option log-progress
distributed-backend distributed-timeout-minutes local-rank eod-mask-loss reset-position-ids reset-attention-mask
no-create-attention-mask-in-dataloader use-mcore-models use-legacy-models transformer-impl attention-backend
use-flash-attn attention-softmax-in-fp32 accumulate-allreduce-grads-in-fp32 no-masked-softmax-fusion
no-bias-gelu-fusion no-bias-swiglu-fusion no-bias-dropout-fusion no-rope-fusion no-gradient-accumulation-fusion
cross-entropy-loss-fusion cross-entropy-fusion-impl overlap-grad-reduce overlap-param-gather
overlap-param-gather-with-optimizer-step align-grad-reduce align-param-gather ddp-bucket-size
ddp-average-in-collective manual-gc manual-gc-interval check-for-nan-in-loss-and-grad
no-check-for-nan-in-loss-and-grad calculate-per-token-loss profile profile-step-start profile-step-end
profile-ranks use-pytorch-profiler loss-scale initial-loss-scale min-loss-scale loss-scale-window hysteresis
no-store-param-remainders
fp8-recipe fp8-margin fp8-amax-history-len fp8-amax-compute-algo moe-aux-loss-coeff moe-z-loss-coeff
moe-router-load-balancing-type moe-router-score-function moe-router-pre-softmax moe-router-enable-expert-bias
moe-router-bias-update-rate moe-router-topk-scaling-factor moe-token-dispatcher-type moe-grouped-gemm
moe-permute-fusion moe-router-dtype moe-router-fusion moe-input-jitter-eps moe-per-layer-logging
rerun-mode num-dataset-builder-threads object-storage-cache-path
sgd-momentum optimizer-offload-fraction
""".split())

# Flags that change memory or time in ways the planner does not model, with what they do.
NOT_MODELLED = {
    "distribute-saved-activations": "splits the checkpointed layer inputs over the TP ranks; the planner keeps"
                                    " them whole (activations over-estimated)",
    "moe-expert-capacity-factor": "drops or pads tokens at a capacity; the planner assumes dropless routing"
                                  " with balanced experts",
    "moe-pad-expert-input-to-capacity": "pads every expert's input to capacity; not counted",
    "account-for-embedding-in-pipeline-split": "moves layers between stages; the planner splits layers as"
                                               " planner/cost/shard.py does",
    "account-for-loss-in-pipeline-split": "moves layers between stages; the planner splits layers as"
                                          " planner/cost/shard.py does",
    "partition-activations": "Megatron-DeepSpeed: splits the checkpointed layer inputs over the TP ranks; the"
                             " planner keeps them whole (activations over-estimated)",
    "checkpoint-in-cpu": "Megatron-DeepSpeed: keeps the checkpointed layer inputs on the host; the planner"
                         " keeps them on the GPU (activations over-estimated)",
    "microbatch-group-size-per-virtual-pipeline-stage": "changes the interleaved schedule's micro-batches in"
                                                        " flight; the planner models Megatron's default",
    "tp-comm-overlap": "overlaps the tensor-parallel all-gathers and reduce-scatters with the GEMMs"
                       " (Transformer Engine userbuffers); the planner charges them exposed (step time"
                       " over-estimated by up to the plan's TP share)",
    "first-last-layers-bf16": "runs the first and last layers in bf16 under fp8 or fp4; time and memory counted"
                              " as if every layer ran in fp8 or fp4",
    "num-layers-at-start-in-bf16": "runs some layers in bf16 under fp8 or fp4; counted in fp8 or fp4",
    "num-layers-at-end-in-bf16": "runs some layers in bf16 under fp8 or fp4; counted in fp8 or fp4 (Megatron-Bridge's"
                                 " Llama 3 8B NVFP4 recipe keeps the last 4 in bf16)",
    "fp4-param-gather": "keeps the parameters in fp4 and gathers them so; the planner counts 16-bit parameters"
                        " and gathers (memory and DP traffic over-estimated)",
}


def _shape(arch: Architecture) -> dict[str, object]:
    att, moe = arch.attention, arch.moe
    return {
        "layers": arch.num_layers, "hidden size": arch.hidden, "ffn hidden size": arch.ffn,
        "attention heads": att.num_heads, "query groups": att.num_kv_heads, "head dim": att.head_dim,
        "MLA": att.is_mla, "vocabulary": arch.vocab, "swiglu": arch.gated_mlp, "norm": arch.norm,
        "tied embeddings": arch.tied_embeddings, "position embedding": arch.position,
        "linear biases": arch.mlp_bias, "qkv bias": att.qkv_bias, "qk norm": att.qk_norm,
        "experts": moe.num_experts if moe else 0, "router top-k": moe.top_k if moe else 0,
        "expert ffn": moe.expert_ffn if moe else 0, "MoE layers": arch.num_moe_layers,
        "shared expert ffn": moe.shared_ffn if moe else 0,
    }


def compare_shapes(shape: dict[str, object], flags: dict[str, object], arch: Architecture) -> list[str]:
    """Warnings where the script's model (its shape flags) differs from the job's, which is planned."""
    if not shape:
        return []
    try:
        from planner.model.megatron_args import architecture_from_megatron_args
    except ImportError:
        return [f"model-shape flags not read ({', '.join('--' + n for n in shape)}); planned with the job's"
                f" model {arch.name}"]
    try:
        theirs = architecture_from_megatron_args(flags, name="script")
    except InputError as error:
        return [f"the script's model shape could not be read ({error}); planned with the job's model {arch.name}"]
    ours_shape, their_shape = _shape(arch), _shape(theirs)
    diffs = [f"{key} {their_shape[key]} vs {value}" for key, value in ours_shape.items() if their_shape[key] != value]
    out = []
    if diffs:
        ours_total, their_total = count_params(arch).total, count_params(theirs).total
        out.append(f"the script's model differs from the job's {arch.name} (script vs job): {'; '.join(diffs)}"
                   f" ({their_total / 1e9:.2f} B vs {ours_total / 1e9:.2f} B parameters); planned with the job's")
    if theirs.extra.get("unmodeled_flags"):
        out.append(f"shape flags not modelled: {', '.join(theirs.extra['unmodeled_flags'])}")
    return out


@dataclass(frozen=True)
class LaunchArgs:
    """The arguments the training program gets, and where they were found."""

    args: tuple[str, ...]
    form: str
    """'launch line' (torchrun/python ... pretrain_gpt.py ARGS), 'arguments file' or 'variables'."""
    program: str | None = None
    launcher: tuple[str, ...] = ()
    """The launcher's words before the program: `torchrun --nnodes 4 --nproc-per-node 8`."""
    line: int | None = None


def _is_flag(word: str) -> bool:
    return word.startswith("--") and len(word) > 2 and word[2].isalpha()


def launch_arguments(script: ShellScript) -> LaunchArgs | None:
    """The training program's arguments: from the launch line (`... pretrain_gpt.py ARGS`), else
    the file's own words when it is a list of arguments, else the argument lists no other list
    includes (a fragment of `NAME=( --flag value ... )` definitions). None when nothing is found."""
    launches = []
    for cmd in script.commands:
        for pos, word in enumerate(cmd.words):
            if word.endswith(".py"):
                launches.append((cmd, pos))
                break
    if launches:
        preferred = [c for c in launches if PurePosixPath(c[0].words[c[1]]).name.startswith(_LAUNCH_PREFERRED)]
        cmd, pos = (preferred or launches)[-1]
        return LaunchArgs(args=cmd.words[pos + 1:], form="launch line", program=PurePosixPath(cmd.words[pos]).name,
                          launcher=cmd.words[:pos], line=cmd.line)
    if script.commands and all(_is_flag(c.words[0]) for c in script.commands):
        return LaunchArgs(args=tuple(w for c in script.commands for w in c.words), form="arguments file")
    included = {used for uses in script.uses.values() for used in uses}
    roots = []
    for name, value in script.variables.items():
        words = value if isinstance(value, list) else value.split()
        if name not in included and any(_is_flag(w) for w in words):
            roots.extend(words)
    return LaunchArgs(args=tuple(roots), form="variables") if roots else None


FlagValue = bool | str | list[str]


def parse_flags(words: tuple[str, ...] | list[str]) -> tuple[dict[str, FlagValue], list[str]]:
    """`--name value`, `--name=value`, `--name v1 v2` and bare `--name` (True), the last of a
    repeated flag winning as with argparse; names keep their dashes. Returns (flags, notes)."""
    flags: dict[str, FlagValue] = {}
    notes: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if not _is_flag(word):
            notes.append(f"{word!r} follows no --flag; ignored")
            i += 1
            continue
        name, eq, inline = word[2:].partition("=")
        if "_" in name and name not in DEEPSPEED_SPELLINGS:
            notes.append(f"--{name}: Megatron-LM spells it --{name.replace('_', '-')}; read as that")
            name = name.replace("_", "-")
        if eq:
            values = [inline]
            i += 1
        else:
            j = i + 1
            while j < len(words) and not _is_flag(words[j]):
                j += 1
            values = list(words[i + 1:j])
            i = j
        if name in flags:
            notes.append(f"--{name} is given more than once; the last value counts (argparse)")
        flags[name] = True if not values else (values[0] if len(values) == 1 else values)
    return flags, notes


class FlagReader:
    """Typed access to the flags; errors name the file and the flag."""

    def __init__(self, flags: dict[str, FlagValue], file: str, unset: set[str]):
        self.flags, self.file, self.unset = flags, file, unset
        self.used: dict[str, FlagValue] = {}

    def _raw(self, name: str) -> FlagValue | None:
        if name in self.flags:
            self.used[f"--{name}"] = self.flags[name]
        return self.flags.get(name)

    def error(self, name: str, message: str) -> InputError:
        return InputError(message, file=self.file, field=f"--{name}")

    def text(self, name: str) -> str | None:
        value = self._raw(name)
        if value is None:
            return None
        if value is True or isinstance(value, list):
            raise self.error(name, "needs one value" if value is True else f"takes one value, got {' '.join(value)}")
        if "${" in value or "$(" in value:
            missing = sorted(v for v in self.unset if f"${{{v}}}" in value)
            why = f" ({', '.join(missing)} not set in the script)" if missing else ""
            raise self.error(name, f"{value!r} cannot be read without running the script{why}")
        return value

    def integer(self, name: str, default: int | None = None, minimum: int = 1) -> int | None:
        text = self.text(name)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            raise self.error(name, f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise self.error(name, f"must be >= {minimum}, got {value}")
        return value

    def number(self, name: str, default: float) -> float:
        text = self.text(name)
        try:
            return default if text is None else float(text)
        except ValueError:
            raise self.error(name, f"must be a number, got {text!r}") from None

    def flag(self, name: str) -> bool:
        value = self._raw(name)
        if value is None:
            return False
        if value is not True:
            raise self.error(name, f"takes no value, got {value if isinstance(value, str) else ' '.join(value)!r}")
        return True

    def choice(self, name: str, valid: tuple[str, ...]) -> str | None:
        value = self.text(name)
        if value is not None and value not in valid:
            raise self.error(name, f"must be one of {', '.join(valid)}, got {value!r}")
        return value
