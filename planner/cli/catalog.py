"""`planner gpus` and `planner models`: the accelerator catalog and the model presets."""
from __future__ import annotations

from hardware import catalog
from planner.cli.options import JsonOption, emit_json
from planner.model import count_params, list_presets, load_architecture
from planner.model.hf_config import MULTIMODAL, supported_model_types
from planner.report import tables


def gpus(as_json: bool = JsonOption) -> None:
    """List the accelerator catalog."""
    gpus = list(catalog().values())
    if as_json:
        emit_json({"gpus": [
            {"id": g.id, "name": g.name, "vendor": g.vendor, "memory": g.memory_bytes, "usable": g.usable_bytes,
             "peak_flops": g.peak_flops, "hbm_bandwidth": g.hbm_bandwidth,
             "scale_up": {"kind": g.scale_up_kind, "topology": g.scale_up_topology, "domain": g.scale_up_domain,
                          "bandwidth": g.scale_up_bandwidth, "per_peer_bandwidth": g.per_peer_bandwidth},
             "host_link_bandwidth": g.host_link_bandwidth, "nic_gbps_per_gpu": g.nic_gbps_per_gpu,
             "source": g.source, "confidence": g.confidence}
            for g in gpus]})
    else:
        tables.console().print(tables.gpus_view(gpus))


def models(as_json: bool = JsonOption) -> None:
    """List the model presets, and the config.json model types read besides them."""
    rows = []
    for name in list_presets():
        arch = load_architecture(name)
        rows.append((name, arch, count_params(arch)))
    model_types, multimodal = supported_model_types(), sorted(MULTIMODAL)
    if as_json:
        emit_json({"models": [
            {"name": name, "family": arch.family, "total": counts.total, "active": counts.active,
             "layers": arch.num_layers, "hidden": arch.hidden}
            for name, arch, counts in rows],
            "config_model_types": model_types, "multimodal_model_types": multimodal})
    else:
        tables.console().print(tables.models_view(rows, model_types, multimodal))
