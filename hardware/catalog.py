"""The accelerator catalog: accelerators.yaml (package data) read once into `Accelerator`s.

The YAML keeps datasheet units (GiB, TFLOPS, GB/s) so each figure can be checked against its
source by eye; this module converts them to bytes, FLOP/s and bytes/s, and checks every entry
at load so that a typo fails naming the entry and the field, not deep inside a model.
"""
from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from typing import Any, get_args

import yaml

from hardware.accelerator import GB, GiB, Accelerator, ScaleUpKind, Topology

TFLOPS = 1e12
DTYPES = ("bf16", "fp16", "fp8", "tf32", "fp32", "int8", "mxfp8", "mxfp4", "nvfp4")
FIGURES = ("memory", "usable", "peak_tflops", "hbm", "scale_up", "host_link", "nic", "tdp")
"""Figures an entry's `sources` may cite one by one."""
CONFIDENCE = ("high", "medium", "low")

DERIVED_USABLE_FRACTION = 0.99
"""Driver-reported / labelled memory where no report was found: about 1% goes to the driver's
reservation and ECC bookkeeping. Measured (accelerators.yaml `usable_gib`): H100 79.65/80 = 0.996,
H200 139.8/141 = 0.991, A100-80GB 79.15/80 = 0.989."""

_FIELDS = {
    "id", "name", "vendor", "aliases", "memory_gib", "usable_gib", "usable_derived", "peak_tflops",
    "hbm_GBps", "scale_up", "host_link_GBps", "nic_gbps_per_gpu", "typical_gpus_per_node",
    "source", "confidence", "notes", "tdp_w", "sources",
}
_OPTIONAL = {"aliases", "usable_gib", "usable_derived", "nic_gbps_per_gpu", "notes", "tdp_w", "sources"}
_SCALE_UP_FIELDS = {"kind", "topology", "domain", "unidir_GBps", "per_peer_GBps"}


class UnknownAccelerator(LookupError):
    """A name that is neither a catalog id nor an alias; `.valid` lists the ids."""

    def __init__(self, name: str, valid: list[str]):
        self.name = name
        self.valid = valid
        super().__init__(f"unknown accelerator {name!r}; valid: {', '.join(valid)}")


class CatalogError(ValueError):
    """A malformed entry of accelerators.yaml (the message names the entry and the field)."""


def catalog() -> dict[str, Accelerator]:
    """Every accelerator by id, in file order."""
    return dict(_load()[0])


def get_accelerator(name: str) -> Accelerator:
    """The accelerator for an id or alias, ignoring case and separators (`H100 SXM5 80GB`)."""
    by_id, by_key = _load()
    found = by_key.get(_key(name)) if isinstance(name, str) else None
    if found is None:
        raise UnknownAccelerator(str(name), list(by_id))
    return by_id[found]


def _key(name: str) -> str:
    """Lookup key: lower case, separators dropped, so `h100-sxm`, `H100 SXM`, `h100_sxm` agree."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


@lru_cache(maxsize=1)
def _load() -> tuple[dict[str, Accelerator], dict[str, str]]:
    text = resources.files("hardware").joinpath("accelerators.yaml").read_text(encoding="utf-8")
    # libyaml's safe loader where PyYAML has it: the same documents, parsed ~10x faster.
    return build_catalog(yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))


def build_catalog(doc: Any) -> tuple[dict[str, Accelerator], dict[str, str]]:
    """(accelerators by id, id by lookup key) from the parsed YAML document; raises CatalogError."""
    entries = doc.get("accelerators") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise CatalogError("accelerators.yaml: expected a non-empty list under `accelerators`")
    by_id: dict[str, Accelerator] = {}
    by_key: dict[str, str] = {}
    for index, raw in enumerate(entries):
        acc, aliases = _entry(raw, index)
        if acc.id in by_id:
            raise CatalogError(f"accelerators.yaml: {acc.id}: id: duplicate")
        by_id[acc.id] = acc
        for alias in (acc.id, acc.name, *aliases):
            owner = by_key.setdefault(_key(alias), acc.id)
            if owner != acc.id:
                raise CatalogError(f"accelerators.yaml: {acc.id}: aliases: {alias!r} already names {owner}")
    return by_id, by_key


def _entry(raw: Any, index: int) -> tuple[Accelerator, list[str]]:
    """One YAML entry checked and converted to SI units."""
    if not isinstance(raw, dict):
        raise CatalogError(f"accelerators.yaml: entry {index}: expected a mapping")
    where = f"accelerators.yaml: {raw['id'] if isinstance(raw.get('id'), str) else f'entry {index}'}"

    def fail(field: str, problem: str) -> CatalogError:
        return CatalogError(f"{where}: {field}: {problem}")

    if unknown := sorted(set(raw) - _FIELDS):
        raise fail(unknown[0], f"unknown field (valid: {', '.join(sorted(_FIELDS))})")
    if missing := sorted(_FIELDS - _OPTIONAL - set(raw)):
        raise fail(missing[0], "missing")

    def text(field: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise fail(field, f"expected text, got {value!r}")
        return value

    def number(field: str, value: Any, integer: bool = False) -> float:
        kind = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
            raise fail(field, f"expected a positive {'integer' if integer else 'number'}, got {value!r}")
        return value

    def scaled(field: str, value: Any, unit: float) -> float:
        """A positive YAML figure in `unit`s (GB/s, TFLOPS) as SI float."""
        return float(number(field, value)) * unit

    def choice(field: str, value: Any, valid: tuple[str, ...]) -> str:
        if value not in valid:
            raise fail(field, f"{value!r} is not one of {', '.join(valid)}")
        return value

    acc_id = text("id", raw["id"])
    if not re.fullmatch(r"[a-z0-9_]+", acc_id):
        raise fail("id", f"{acc_id!r}: use lower case, digits and underscores")
    source = text("source", raw["source"])
    if not source.startswith("https://"):
        raise fail("source", f"expected an https:// URL, got {source!r}")
    aliases = raw.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) and _key(a) for a in aliases):
        raise fail("aliases", f"expected a list of names, got {aliases!r}")

    # Memory: usable is a driver report, or derived (and then marked so in the YAML).
    memory_gib = number("memory_gib", raw["memory_gib"])
    derived = raw.get("usable_derived", False)
    if not isinstance(derived, bool):
        raise fail("usable_derived", f"expected true or false, got {derived!r}")
    if raw.get("usable_gib") is None:
        if not derived:
            raise fail("usable_gib", "missing (set `usable_derived: true` to use 0.99 x memory_gib)")
        usable_gib = DERIVED_USABLE_FRACTION * memory_gib
    else:
        usable_gib = number("usable_gib", raw["usable_gib"])
        if usable_gib > memory_gib:
            raise fail("usable_gib", f"{usable_gib} exceeds memory_gib {memory_gib}")

    peaks = raw["peak_tflops"]
    if not isinstance(peaks, dict):
        raise fail("peak_tflops", f"expected a mapping of dtype to TFLOPS, got {peaks!r}")
    peak_flops = {
        choice("peak_tflops", dtype, DTYPES): scaled(f"peak_tflops.{dtype}", value, TFLOPS)
        for dtype, value in peaks.items()
    }
    if not ("bf16" in peaks or "fp16" in peaks):
        raise fail("peak_tflops", "needs bf16 or fp16")

    scale_up = raw["scale_up"]
    if not isinstance(scale_up, dict):
        raise fail("scale_up", f"expected a mapping, got {scale_up!r}")
    if unknown := sorted(set(scale_up) - _SCALE_UP_FIELDS):
        raise fail(f"scale_up.{unknown[0]}", "unknown field")
    if missing := sorted(_SCALE_UP_FIELDS - {"per_peer_GBps"} - set(scale_up)):
        raise fail(f"scale_up.{missing[0]}", "missing")
    kind = choice("scale_up.kind", scale_up["kind"], get_args(ScaleUpKind))
    topology = choice("scale_up.topology", scale_up["topology"], get_args(Topology))
    if (kind == "pcie") != (topology == "pcie"):
        raise fail("scale_up.topology", f"{topology!r} does not go with kind {kind!r}")
    # Point-to-point meshes need the per-peer rate: a group of n GPUs only gets n-1 links.
    per_peer = scale_up.get("per_peer_GBps")
    if topology == "mesh":
        per_peer = scaled("scale_up.per_peer_GBps", per_peer, GB)
    elif per_peer is not None:
        raise fail("scale_up.per_peer_GBps", f"only for mesh topologies, not {topology!r}")
    nic = raw.get("nic_gbps_per_gpu")
    tdp = raw.get("tdp_w")
    sources = raw.get("sources") or {}
    if not isinstance(sources, dict):
        raise fail("sources", f"expected a mapping of figure to citation, got {sources!r}")
    for figure, citation in sources.items():
        choice("sources", figure, FIGURES)
        if "https://" not in text(f"sources.{figure}", citation):
            raise fail(f"sources.{figure}", "expected a citation with an https:// URL")
    notes = raw.get("notes") or ""
    if not isinstance(notes, str):
        raise fail("notes", f"expected text, got {notes!r}")
    if derived:
        notes = f"{notes} Usable memory derived, not a driver report.".strip()

    acc = Accelerator(
        id=acc_id,
        name=text("name", raw["name"]),
        vendor=text("vendor", raw["vendor"]),
        memory_bytes=int(round(memory_gib * GiB)),
        usable_bytes=int(round(usable_gib * GiB)),
        peak_flops=peak_flops,
        hbm_bandwidth=scaled("hbm_GBps", raw["hbm_GBps"], GB),
        scale_up_kind=kind,
        scale_up_topology=topology,
        scale_up_domain=int(number("scale_up.domain", scale_up["domain"], True)),
        scale_up_bandwidth=scaled("scale_up.unidir_GBps", scale_up["unidir_GBps"], GB),
        per_peer_bandwidth=per_peer,
        host_link_bandwidth=scaled("host_link_GBps", raw["host_link_GBps"], GB),
        nic_gbps_per_gpu=scaled("nic_gbps_per_gpu", nic, 1) if nic is not None else None,
        typical_gpus_per_node=int(number("typical_gpus_per_node", raw["typical_gpus_per_node"], True)),
        source=source,
        confidence=choice("confidence", raw["confidence"], CONFIDENCE),
        notes=notes,
        tdp_watts=float(number("tdp_w", tdp)) if tdp is not None else None,
        figure_sources=dict(sources),
    )
    return acc, aliases
