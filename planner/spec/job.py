"""job.yaml: what to train and how it may be laid out (docs/cli.md, "Input files").

Every number is finite and bounded (as in cluster.py): a sequence of 2^24 tokens, a batch of
2^24 sequences, 2^32 tokens in one step and a 10^18-token budget are all far beyond any run.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    field_validator,
    model_validator,
)

from planner.spec.cluster import MAX_NAME, Count, Number
from planner.spec.errors import InputError
from planner.spec.limits import (  # noqa: F401  (job.py's names too)
    MAX_BATCH,
    MAX_BOUND,
    MAX_LAYER_INDEX,
    MAX_LIST,
    MAX_RANK,
    MAX_SEQ_LEN,
    MAX_STEP_TOKENS,
    MAX_TOKENS,
)
from planner.spec.plan_keys import resolve_framework
from planner.spec.units import parse_count

Training = Literal["pretrain", "full", "lora", "qlora"]
Precision = Literal["bf16", "fp16", "fp8", "mxfp8", "nvfp4", "fp32", "bf16-pure", "bf16-autocast"]
Optimizer = Literal["adamw", "adam", "adamw8bit", "sgd", "sgd-momentum", "adafactor"]
Quant = Literal["none", "int8", "nf4", "fp8"]

DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")

Rank = Annotated[int, Strict(), Gt(0), Le(MAX_RANK)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LoraSpec(_Strict):
    """LoRA adapters (arXiv 2106.09685): rank r adds r*(d_in + d_out) parameters per target."""

    rank: Rank | Annotated[list[Rank], Field(min_length=1, max_length=MAX_LIST)] = 16
    """One rank, or a list of ranks to search."""
    targets: list[Annotated[str, Field(max_length=MAX_NAME)]] = Field(
        default_factory=lambda: list(DEFAULT_LORA_TARGETS), max_length=MAX_LIST)
    """Module names: q_proj k_proj v_proj o_proj gate_proj up_proj down_proj (or `all-linear`)."""
    alpha: Number | None = None
    """Scaling only; does not change memory or time."""
    dropout: Number | None = Field(default=None, ge=0, le=1)
    """Adapter dropout probability; does not change memory or time."""

    @property
    def ranks(self) -> tuple[int, ...]:
        return tuple(self.rank) if isinstance(self.rank, list) else (self.rank,)


class TrainableSpec(_Strict):
    """Partial fine-tuning (training: full): only these parameters train, the rest is frozen.
    `{router: true}` trains a MoE's routers; `{layers: [0, 1, 2, 3, 4, 5], experts: 2}` two
    experts in each of six layers."""

    layers: Annotated[list[Annotated[int, Strict(), Ge(0), Le(MAX_LAYER_INDEX)]],
                      Field(max_length=MAX_LAYER_INDEX)] | None = None
    """Decoder layers (0-based) whose chosen parts train; omitted: every layer."""
    experts: Count = Field(default=0, ge=0, le=2**16)
    """Routed experts trained in each chosen MoE layer (whole expert FFNs)."""
    router: bool = False
    """The router (gate) of each chosen MoE layer."""
    attention: bool = False
    """The attention projections of each chosen layer."""
    mlp: bool = False
    """The dense MLP (and shared experts) of each chosen layer."""
    norms: bool = False
    """The norms of each chosen layer."""
    embedding: bool = False
    """The input embedding."""
    output: bool = False
    """The output layer (lm_head) and the final norm."""

    @model_validator(mode="after")
    def _something_trains(self):
        if not (self.experts or self.router or self.attention or self.mlp or self.norms or self.embedding
                or self.output):
            raise ValueError("nothing would train: set experts, router, attention, mlp, norms, embedding or output")
        if self.layers is not None and (not self.layers or min(self.layers) < 0):
            raise ValueError("layers: give 0-based layer indices (at least one), or leave it out for every layer")
        return self


class Constraint(_Strict):
    """Allowed values of one plan key: a list, or bounds (both inclusive)."""

    values: Annotated[tuple[Any, ...], Field(max_length=MAX_LIST)] | None = None
    """The allowed values (`tp: [1, 2, 4]` is shorthand for `tp: {values: [1, 2, 4]}`), each one
    the key can take (checked by key when the job is loaded)."""
    min: Number | None = Field(default=None, ge=-MAX_BOUND, le=MAX_BOUND)
    """Smallest allowed value, inclusive (a number of at most 2^31 either way)."""
    max: Number | None = Field(default=None, ge=-MAX_BOUND, le=MAX_BOUND)
    """Largest allowed value, inclusive (a number of at most 2^31 either way)."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v):
        # `tp: [1, 2, 4]`, `tp: 8`, `sp: true` or `pp: {max: 16}`
        if isinstance(v, list):
            return {"values": tuple(v)}
        if isinstance(v, (int, float, str, bool)):
            return {"values": (v,)}
        return v

    @model_validator(mode="after")
    def _not_empty(self):
        if self.values is not None and len(self.values) == 0:
            raise ValueError("an empty list allows nothing; give at least one value")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) > max ({self.max:g})")
        return self

    def allows(self, value: Any) -> bool:
        if self.values is not None and value not in self.values:
            return False
        if self.min is not None and value < self.min:
            return False
        if self.max is not None and value > self.max:
            return False
        return True

    def describe(self) -> str:
        parts = []
        if self.values is not None:
            parts.append("in [" + ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in self.values) + "]")
        if self.min is not None:
            parts.append(f">= {self.min:g}")
        if self.max is not None:
            parts.append(f"<= {self.max:g}")
        return " and ".join(parts)


class JobSpec(_Strict):
    """A training job: the model, the data shape, the training mode and any limits on the plan."""

    model: Annotated[str, Field(max_length=4096)] | dict[str, Any]
    """A preset from `planner models`, a path to a Hugging Face config.json (relative to the job
    file), or an inline mapping of config.json fields."""
    training: Training = "pretrain"
    """pretrain or full (every weight trains), lora (adapters on frozen 16-bit weights) or
    qlora (adapters on frozen weights stored in `quant`, nf4 by default)."""
    seq_len: Count = Field(gt=0, le=MAX_SEQ_LEN)
    """Tokens per sequence, at most 16,777,216 (2^24)."""
    global_batch: Count = Field(gt=0, le=MAX_BATCH)
    """Sequences per optimizer step (= mbs * gas * dp), at most 16,777,216 (2^24); with seq_len at
    most 2^32 tokens per step."""
    precision: Precision = "bf16"
    """bf16/fp16/fp8: mixed precision with fp32 master weights and optimizer states; mxfp8:
    the same with fp8 GEMMs that scale each block of 32 elements (Blackwell, MI355X; Megatron-Core
    and torchtitan); nvfp4: the same with 4-bit GEMMs, a scale per 16 elements (Blackwell;
    Megatron-Core with Transformer Engine's NVFP4 recipe)."""
    optimizer: Optimizer = "adamw"
    """adamw/adam (two fp32 states), adamw8bit (two 8-bit states with block scales), sgd,
    sgd-momentum (one state) or adafactor (factored second moment)."""
    lora: LoraSpec | None = None
    """Adapter rank(s) and target modules, for lora and qlora."""
    trainable: TrainableSpec | None = None
    """Partial fine-tuning with training: full — only these parameters train."""
    quant: Quant | None = None
    """Frozen base-weight storage for lora/qlora (qlora defaults to nf4)."""
    tokens: Number | None = Field(default=None, gt=0, le=MAX_TOKENS)
    """Training budget in tokens (`1.0e12`, `15T`), for time and cost; at most 10^18."""
    framework: str = "auto"
    """The engine that will run the job: `megatron` (Megatron-Core, as Megatron-LM, NeMo and
    Megatron-Bridge run it), `deepspeed` (DeepSpeed's ZeRO engine with Hugging Face modules),
    `fsdp2` (Hugging Face transformers with accelerate or the Trainer on PyTorch FSDP2; PEFT and
    bitsandbytes for LoRA/QLoRA), `torchtitan` (PyTorch-native FSDP2, TP, PP, CP), or `auto`
    (default): every engine that can run the job is searched and each plan names its engine.
    Common names work too (`megatron-lm`, `nemo`, `ds`, `hf`, `accelerate`, `fsdp`, `titan`)."""
    constraints: dict[Annotated[str, Field(max_length=MAX_NAME)], Constraint] = Field(default_factory=dict)
    """Limits on any plan key: `{tp: [1, 2, 4, 8], pp: {max: 16}, zero: [1, 3]}`."""

    @field_validator("constraints", mode="before")
    @classmethod
    def _aliases(cls, v):
        # docs/cli.md calls the LoRA rank `lora` in plan specs too; accept it here as well.
        if isinstance(v, dict) and "lora" in v and "lora_rank" not in v:
            v = {("lora_rank" if k == "lora" else k): c for k, c in v.items()}
        if isinstance(v, dict) and "framework" in v:
            raise ValueError("the engine is not a constraint: set `framework:` (an engine, or auto) at the top"
                             " of the job")
        return v

    @field_validator("framework", mode="before")
    @classmethod
    def _engine(cls, v):
        if not isinstance(v, str):
            raise ValueError(f"an engine name, got {v!r}")
        try:
            return resolve_framework(v)
        except InputError as error:
            raise ValueError(error.detail) from None

    @field_validator("tokens", mode="before")
    @classmethod
    def _count(cls, v):
        return parse_count(v) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _coherent(self):
        if self.seq_len * self.global_batch > MAX_STEP_TOKENS:
            raise ValueError(f"seq_len × global_batch = {self.seq_len:,} × {self.global_batch:,} ="
                             f" {self.seq_len * self.global_batch:,} tokens per step; at most {MAX_STEP_TOKENS:,}"
                             " (2^32)")
        if self.training in ("lora", "qlora") and self.lora is None:
            object.__setattr__(self, "lora", LoraSpec())
        if self.training not in ("lora", "qlora") and self.lora is not None:
            raise ValueError(f"lora: given, but training is {self.training!r}; use training: lora or qlora")
        if self.trainable is not None and self.training != "full":
            raise ValueError(f"trainable: partial fine-tuning needs training: full (training is {self.training!r})")
        if self.quant not in (None, "none") and self.training not in ("lora", "qlora"):
            raise ValueError(f"quant: {self.quant!r} quantizes frozen base weights, which only lora/qlora have")
        if self.training == "qlora" and self.quant in (None, "none"):
            object.__setattr__(self, "quant", "nf4")
        return self

    @property
    def base_quant(self) -> str:
        return self.quant or "none"

    @property
    def trains_adapters(self) -> bool:
        return self.training in ("lora", "qlora")
