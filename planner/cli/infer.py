"""`planner infer MODEL`: inference memory per GPU, GPUs needed, and the largest batch or context.

Parse, load, compute (planner/cost/inference.py), render. MODEL is a preset, a config.json (or a
folder holding one), or a bare parameter count such as `7B` for the seed's weights-only arithmetic.
What the config.json says is honoured: its quantization_config sets the stored weight format
unless --precision is given, and the largest context stops at the length it states
(planner/model/context.py), the output naming which limit binds.
"""
from __future__ import annotations

import re
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from hardware import Accelerator, UnknownAccelerator, catalog, get_accelerator
from planner.cli.options import JsonOption, choice, emit_json, handles_input_errors
from planner.cost import inference as inf
from planner.model import count_params, list_presets, load_architecture
from planner.model.architecture import MAX_PARAMS
from planner.model.context import ContextLimit, context_limit, layer_windows
from planner.model.presets import preset_config
from planner.model.quantization import weight_format_from_config
from planner.report import tables
from planner.spec.errors import InputError, shown, unknown_name
from planner.spec.limits import MAX_SEQ_LEN
from planner.spec.reading import path_kind, read_json_file
from planner.spec.units import parse_count

GB, GiB = 10**9, 2**30
DEFAULT_GPU = "h100_sxm_80gb"
_COUNT = re.compile(r"^\s*[0-9][0-9_,]*(\.[0-9]+)?\s*([kKmMbBtT]|[eE][0-9]+)?\s*$")


@handles_input_errors
def infer(
    model: str = typer.Argument(..., show_default=False,
                                help="A preset (`planner models`), a path to a Hugging Face config.json, "
                                     "or a parameter count (7B, 14e9: weights only)."),
    gpu: str = typer.Option(DEFAULT_GPU, "--gpu", help="The GPU type (`planner gpus`)."),
    precision: str | None = typer.Option(
        None, "--precision", show_default=False,
        help="Weights: " + " | ".join(inf.PRECISIONS) + " (default: the config.json's quantization_config, "
             "else bf16)."),
    batch: int = typer.Option(1, "--batch", help="Sequences decoded together."),
    context: int = typer.Option(4096, "--context", help="Tokens per sequence (prompt + generated)."),
    kv_dtype: str = typer.Option("auto", "--kv-dtype",
                                 help="KV cache: " + " | ".join(inf.KV_DTYPES) + " (auto: the compute dtype)."),
    tp: int = typer.Option(1, "--tp", help="Tensor-parallel GPUs sharing the weights and KV heads."),
    allowance: str = typer.Option("none", "--allowance",
                                  help="none (add the CUDA context) or a factor such as 1.2 over all live "
                                       "bytes (rule of thumb)."),
    as_json: bool = JsonOption,
) -> None:
    """Inference memory per GPU: weights, KV cache, activations, runtime; GPUs needed; what fits."""
    if precision is not None:
        choice(precision, inf.PRECISIONS, "--precision")
    choice(kv_dtype, inf.KV_DTYPES, "--kv-dtype")
    for value, option in ((batch, "--batch"), (context, "--context"), (tp, "--tp")):
        if value < 1:
            raise InputError(f"must be an integer >= 1, got {value}", field=option)
        if value > MAX_SEQ_LEN:  # as job.yaml's seq_len and global_batch
            raise InputError(f"must be at most {MAX_SEQ_LEN:,}, got {value:,}", field=option)
    factor = _allowance(allowance)
    device = _gpu(gpu)
    params = _parameter_count(model)
    if params is not None:
        doc = _weights_only(model, params, precision or "bf16", factor, tp, device)
    else:
        arch = load_architecture(model, base_dir=Path.cwd())
        problem = inf.tensor_parallel_problem(arch, tp)
        if problem:
            raise InputError(problem, field="--tp")
        source, cfg = _config_fields(model)
        try:
            stored = weight_format_from_config(cfg) if precision is None else None
            limit = context_limit(cfg)
            windows = layer_windows(arch, cfg)
        except InputError as error:
            raise error.located(file=source) from None
        weights = precision or stored or "bf16"
        serving = inf.Serving(arch, weights, inf.resolve_kv_dtype(kv_dtype, weights), batch, context,
                              windows, factor)
        origin = "--precision" if precision else "config.json quantization_config" if stored else "default"
        doc = _model_document(serving, tp, device, origin, limit)
    if as_json:
        emit_json(doc)
    else:
        tables.console().print(_view(doc))


MAX_ALLOWANCE = 10
"""The largest --allowance factor: rules of thumb add 20% (1.2); a factor beyond 10 is a typo."""


def _allowance(text: str) -> Fraction | None:
    if text.strip().lower() == "none":
        return None
    try:
        # float first: Fraction("1e999999999") would build a billion-digit integer
        value = Fraction(text.strip()) if 1 <= float(text) <= MAX_ALLOWANCE and len(text) <= 32 else None
    except ValueError:
        value = None
    if value is None or not 1 <= value <= MAX_ALLOWANCE:
        raise InputError(f"must be 'none' or a factor >= 1 and <= {MAX_ALLOWANCE} such as 1.2, got {shown(text)}",
                         field="--allowance")
    return value


def _gpu(name: str) -> Accelerator:
    try:
        return get_accelerator(name)
    except UnknownAccelerator as exc:
        raise InputError(unknown_name("GPU", exc.name, exc.valid), field="--gpu") from None


def _parameter_count(model: str) -> int | None:
    """A bare count (7B, 7000559616, 14e9) unless a preset or a file has that name."""
    if model in list_presets() or path_kind(model) is not None or not _COUNT.match(model):
        return None
    try:
        count = round(parse_count(model))
    except ValueError as error:
        raise InputError(str(error), field="model") from None
    if not 1 <= count <= MAX_PARAMS:
        raise InputError(f"a parameter count must be from 1 to {MAX_PARAMS:.0e}, got {shown(model)}", field="model")
    return count


def _config_fields(model: str) -> tuple[str | None, dict]:
    """The file (None for a preset) and config.json fields behind the architecture: window
    patterns, the stored format and the context length live only there."""
    if model in list_presets():
        return None, preset_config(model)
    path = Path(model)
    path = path / "config.json" if path_kind(path) == "directory" else path
    return str(path), read_json_file(path)  # load_architecture has read and checked it


def _common(precision: str, tp: int, device: Accelerator, memory: inf.InferenceMemory,
            factor: Fraction | None, layout: inf.Layout | None, one_card_total: int) -> dict:
    return {
        "memory": {**memory.as_dict(), "capacity": device.usable_bytes},
        "gpus_needed": layout.gpus if layout else 0,
        "layout": {"tp": layout.tp, "pp": layout.pp} if layout else None,
        "fits": memory.total <= device.usable_bytes,
        "gpu": device.id, "precision": precision, "tp": tp,
        "allowance": float(factor) if factor is not None else None,
        "fits_on": [g.id for g in catalog().values() if one_card_total <= g.usable_bytes],
    }


def _weights_only(model: str, params: int, precision: str, factor: Fraction | None, tp: int,
                  device: Accelerator) -> dict:
    memory = inf.weights_only_memory(params, precision, factor, tp)
    layout = inf.smallest_layout(
        lambda t, p: inf.weights_only_memory(params, precision, factor, t * p).total <= device.usable_bytes,
        inf.tensor_parallel_degrees_upto(device.scale_up_domain), max_pp=4096)
    one_card = inf.weights_only_memory(params, precision, factor).total
    return {"model": model.strip(), "params": params, "weights_only": True,
            **_common(precision, tp, device, memory, factor, layout, one_card),
            "kv_dtype": None, "batch": None, "context": None, "kv_cache_bytes_per_token": None,
            "window_layers": None, "max_batch": None, "max_context": None,
            "rule_of_thumb_weights": inf.rule_of_thumb_weight_bytes(params, precision)}


def _model_document(s: inf.Serving, tp: int, device: Accelerator, origin: str,
                    limit: ContextLimit | None) -> dict:
    arch, capacity = s.arch, device.usable_bytes
    memory = inf.serving_memory(s, tp)
    layout = inf.smallest_layout(lambda t, p: inf.serving_memory(s, t, p).total <= capacity,
                                 inf.tensor_parallel_degrees(arch, device.scale_up_domain), arch.num_layers)
    params = count_params(arch).total
    by_memory = inf.largest_fitting(lambda c: inf.serving_memory(replace(s, context=c), tp).total, capacity)
    capped = limit is not None and limit.tokens < by_memory
    return {
        "model": arch.name, "params": params, "weights_only": False,
        **_common(inf.precision_label(s.precision), tp, device, memory, s.allowance, layout,
                  inf.serving_memory(s).total),
        "precision_source": origin,
        "kv_dtype": s.kv_dtype, "batch": s.batch, "context": s.context,
        "kv_cache_bytes_per_token": inf.kv_cache_bytes_per_token(arch, s.kv_dtype, tp),
        "window_layers": sum(w is not None for w in s.windows),
        "max_batch": inf.largest_fitting(lambda b: inf.serving_memory(replace(s, batch=b), tp).total, capacity),
        "max_context": limit.tokens if capped else by_memory,
        "max_context_memory": by_memory,
        "max_context_bound": limit.source if capped else "memory",
        "context_limit": {"tokens": limit.tokens, "source": limit.source} if limit else None,
        "rule_of_thumb_weights": inf.rule_of_thumb_weight_bytes(params, s.precision),
    }


def _context_bound(doc: dict) -> str:
    limit = doc["context_limit"]
    if doc["max_context_bound"] != "memory":
        return (f"largest context bound by the model: {limit['source']} = {limit['tokens']:,} tokens "
                f"(memory alone would allow {doc['max_context_memory']:,})")
    stated = f"; the model states {limit['tokens']:,} ({limit['source']})" if limit else \
        "; the config states no length limit"
    over = (f"; --context {doc['context']:,} is beyond the model's {limit['tokens']:,}"
            if limit and doc["context"] > limit["tokens"] else "")
    return f"largest context bound by memory{stated}{over}"


def _sizes(n: int) -> tuple[str, str, str]:
    return f"{n:,} B", f"{n / GB:,.2f} GB", f"{n / GiB:,.2f} GiB"


def _view(doc: dict) -> Group:
    m = doc["memory"]
    name = f"{doc['params']:,} parameters" if doc["weights_only"] else doc["model"]
    header = Text(f"{name} · {doc['precision']} weights", style="bold")
    if doc.get("precision_source") == "config.json quantization_config":
        header.append(" (config.json quantization_config)", style="dim")
    if doc["weights_only"]:
        header.append("\nweights only: a parameter count has no shapes, so no KV cache, activations or "
                      "quantization scales", style="dim")
    else:
        header.append(f" · KV cache {doc['kv_dtype']} · batch {doc['batch']:,} × context {doc['context']:,} tokens",
                      style="bold")
    table = Table(title=f"Memory per GPU at tp {doc['tp']}", title_justify="left", header_style="bold")
    for col in ("term", "bytes", "GB (10^9 B)", "GiB (2^30 B)"):
        table.add_column(col, justify="left" if col == "term" else "right", no_wrap=True)
    runtime = (f"runtime (× {doc['allowance']:g} allowance)" if doc["allowance"] is not None
               else "runtime (CUDA context)")
    for key, label in (("weights", "weights"), ("kv_cache", "KV cache"), ("activations", "activations"),
                       ("runtime", runtime)):
        table.add_row(label, *_sizes(m[key]))
    table.add_row(Text("total", style="bold"), *(Text(x, style="bold") for x in _sizes(m["total"])))
    table.add_row(f"usable on {doc['gpu']}", *_sizes(m["capacity"]))
    lines = [header, table]
    verdict = "fits" if doc["fits"] else "does not fit"
    lines.append(Text(f"{verdict} on one {doc['gpu']} at tp {doc['tp']}",
                      style="green" if doc["fits"] else "red"))
    if doc["layout"]:
        lay = doc["layout"]
        lines.append(Text(f"GPUs needed: {doc['gpus_needed']} × {doc['gpu']} (tp {lay['tp']} × pp {lay['pp']})"))
    else:
        lines.append(Text(f"GPUs needed: no tp × pp layout of {doc['gpu']} holds it", style="red"))
    lines.append(Text("fits on one card: " + (", ".join(doc["fits_on"]) or "none of the catalog")))
    if not doc["weights_only"]:
        lines.append(Text(f"KV cache: {doc['kv_cache_bytes_per_token']:,} B per token per GPU "
                          f"({doc['window_layers']} layers capped at their window)"))
        lines.append(Text(f"largest batch at {doc['context']:,} tokens: {doc['max_batch']:,} sequences · "
                          f"largest context at batch {doc['batch']:,}: {doc['max_context']:,} tokens "
                          f"(tp {doc['tp']} on {doc['gpu']}; 0: not even one)"))
        lines.append(Text(_context_bound(doc)))
        rot = doc["rule_of_thumb_weights"]
        lines.append(Text(f"rule of thumb: {doc['params']:,} params × {doc['precision']} bytes = "
                          f"{rot / GB:,.2f} GB = {rot / GiB:,.2f} GiB (weights only: no scales, no split)",
                          style="dim"))
    return Group(*lines)
