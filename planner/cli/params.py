"""`planner params MODEL`: exact parameter counts by component and by layer kind, and FLOPs per
token for training and inference (docs/cli.md)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from planner.cli.options import JsonOption, emit_json, handles_input_errors
from planner.model import count_params, flops_per_token, load_architecture
from planner.model.architecture import Architecture
from planner.report import json as report_json
from planner.report import tables
from planner.spec.errors import InputError
from planner.spec.limits import MAX_SEQ_LEN

DEFAULT_SEQ_LEN = 4096


def flops_seq_len(arch: Architecture, seq_len: int | None) -> int:
    """The sequence length for FLOPs: as given, else 4096 or a learned-position model's maximum
    if that is smaller; never beyond learned positions."""
    limit = arch.max_positions if arch.position == "learned" else None
    if seq_len is None:
        return min(DEFAULT_SEQ_LEN, limit) if limit else DEFAULT_SEQ_LEN
    if limit and seq_len > limit:
        raise InputError(f"{arch.name} has {limit:,} learned positions; give at most {limit}",
                         field="--seq-len")
    return seq_len


@handles_input_errors
def params(
    model: str = typer.Argument(..., help="A preset (`planner models`) or a path to a Hugging Face config.json.",
                                show_default=False),
    seq_len: Optional[int] = typer.Option(
        None, "--seq-len", min=1, max=MAX_SEQ_LEN, show_default=False,
        help="Sequence length for FLOPs per token (default 4096, or the model's learned positions if fewer)."),
    as_json: bool = JsonOption,
) -> None:
    """Exact parameter counts of an architecture by component and layer kind, and FLOPs per token."""
    arch = load_architecture(model, base_dir=Path.cwd())
    counts = count_params(arch)
    flops = flops_per_token(arch, flops_seq_len(arch, seq_len))
    if as_json:
        emit_json(report_json.params_document(counts, flops))
    else:
        tables.console().print(tables.params_view(arch, counts, flops))
