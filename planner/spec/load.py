"""Reading cluster.yaml and job.yaml: safe YAML, every error named by file and field."""
from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from planner.spec.cluster import ClusterSpec
from planner.spec.errors import InputError, did_you_mean, shown
from planner.spec.job import MAX_BOUND, JobSpec, Optimizer, Precision
from planner.spec.plan_keys import MOMENT_DTYPES, OFFLOAD_CHOICES, PLAN_KEYS, QUANT_CHOICES, RECOMPUTE_POLICIES
from planner.spec.reading import read_yaml_file


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from `path`, read through the input boundary (reading.py)."""
    data = read_yaml_file(path)
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise InputError(f"expected a mapping of fields, found {kind}", file=str(path))
    return data


_UNION_BRANCHES = {"str", "int", "float", "bool", "list", "dict", "CustomGPU", "Constraint", "LoraSpec"}


def _field_path(loc: tuple) -> str:
    """`a.b[2].c` from a pydantic error location, without the union-branch names it inserts
    (`gpu.str`, `constraints.tp.function-after[...]`)."""
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in _UNION_BRANCHES or any(ch in str(item) for ch in "[(-"):
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def validation_message(exc: ValidationError, model: type[BaseModel]) -> str:
    """All of pydantic's errors, one `field: message` each, with valid names for unknown fields."""
    lines = []
    seen = set()
    for err in exc.errors():
        field = _field_path(err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            parent = model
            name = str(err["loc"][-1])
            valid = _fields_at(parent, err["loc"][:-1])
            msg = f"unknown field{did_you_mean(name, valid)}; valid fields: {', '.join(valid)}"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "literal_error":
            msg = msg.replace("Input should be", "must be one of")
        key = (field, msg)
        if key not in seen:
            seen.add(key)
            lines.append(f"{field}: {msg}")
    return "; ".join(lines)


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    current: Any = model
    for item in loc:
        fields = getattr(current, "model_fields", None)
        if not fields or item not in fields:
            break
        annotation = fields[item].annotation
        for arg in (getattr(annotation, "__args__", None) or (annotation,)):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                current = arg
                break
    return list(getattr(current, "model_fields", {}))


def load_cluster(path: str | Path) -> ClusterSpec:
    data = read_yaml(path)
    try:
        spec = ClusterSpec.model_validate(data)
    except ValidationError as exc:
        raise InputError(validation_message(exc, ClusterSpec), file=str(path)) from None
    if spec.nodes > 1 and spec.inter_node is None:
        raise InputError(
            f"required when nodes > 1 (nodes: {spec.nodes}); e.g. {{nic_gbps: 400, nics_per_node: 8, kind: infiniband}}",
            file=str(path), field="inter_node")
    return spec


_INT_KEYS = ("tp", "pp", "dp", "cp", "ep", "vpp", "mbs", "gas", "lora_rank", "etp", "first_stage_layers",
             "last_stage_layers", "recompute_layers", "offload_activation_layers", "pipeline_runs")
"""Plan keys whose values are counts: at least 1 (0 for a LoRA rank, where 0 means no adapters,
for layers recomputed and for layers whose activations are offloaded), at most MAX_BOUND."""
_ZERO_ALLOWED = ("lora_rank", "recompute_layers", "offload_activation_layers")
_CHOICES = {
    "zero": (0, 1, 2, 3),
    "recompute": RECOMPUTE_POLICIES,
    "sp": (False, True),
    "offload": OFFLOAD_CHOICES,
    "quant": QUANT_CHOICES,
    "moment_dtype": MOMENT_DTYPES,
    "fp8_param_gather": (False, True),
    "precision": get_args(Precision),
    "optimizer": get_args(Optimizer),
}


def _is_choice(value: Any, valid: tuple) -> bool:
    # By type too: YAML's `true` equals 1 and `1.0` equals 1 in Python, but neither is zero stage 1.
    return any(value == choice and type(value) is type(choice) for choice in valid)


def _shown_choices(valid: tuple) -> str:
    return ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in valid)


def _check_constraints(spec: JobSpec, file: str) -> None:
    """Every field of every constraint against the values its plan key can take."""
    for key, constraint in spec.constraints.items():
        field = f"constraints.{key}"
        if key not in PLAN_KEYS:
            raise InputError(f"not a plan key{did_you_mean(key, PLAN_KEYS)}; valid keys: {', '.join(PLAN_KEYS)}",
                             file=file, field=field)
        values = constraint.values or ()
        if key == "recompute_modules":
            # A list per value, and not a key the search varies: selective recompute there is
            # Megatron's default, the attention core.
            raise InputError("not a constraint: the search recomputes the attention core under `recompute:"
                             " selective`; name the modules of one plan with `planner estimate --plan"
                             " recompute=selective,recompute_modules=layernorm/moe_act`", file=file, field=field)
        if key in _INT_KEYS:
            low = 0 if key in _ZERO_ALLOWED else 1
            bad = [v for v in values if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= MAX_BOUND]
            if bad:
                kind = "a positive integer" if low else "an integer >= 0"
                raise InputError(f"{shown(bad[0])} is not {kind} of at most {MAX_BOUND:,}", file=file, field=field)
        else:
            valid = _CHOICES[key]
            bad = [v for v in values if not _is_choice(v, valid)]
            if bad:
                raise InputError(f"{shown(bad[0])} is not valid; valid: {_shown_choices(valid)}", file=file,
                                 field=field)
            numeric = all(isinstance(v, int) and not isinstance(v, bool) for v in valid)
            if (constraint.min is not None or constraint.max is not None) and not numeric:
                raise InputError("min/max apply to numbers; give a list of allowed values", file=file, field=field)
        candidates = values or [constraint.min if constraint.min is not None else constraint.max]
        if not any(constraint.allows(v) for v in candidates):
            raise InputError(f"allows no value ({constraint.describe()})", file=file, field=field)


def load_job(path: str | Path) -> JobSpec:
    data = read_yaml(path)
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        raise InputError(validation_message(exc, JobSpec), file=str(path)) from None
    _check_constraints(spec, str(path))
    return spec
