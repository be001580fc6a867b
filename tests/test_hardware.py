"""The accelerator catalog: completeness, unit conversion, and figures checked against
the figures the catalog was compiled from (vendor datasheets, ml-engineering)."""
from __future__ import annotations

import copy
from importlib import resources

import pytest
import yaml

from hardware import Accelerator, UnknownAccelerator, catalog, get_accelerator
from hardware.catalog import CatalogError, build_catalog

GiB = 2**30


@pytest.fixture(scope="module")
def accs() -> dict[str, Accelerator]:
    return catalog()


@pytest.fixture(scope="module")
def doc() -> dict:
    text = resources.files("hardware").joinpath("accelerators.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


# ---- completeness and sanity of every entry


def test_catalog_has_the_families_the_planner_needs(accs):
    assert len(accs) >= 25
    expected = {
        "v100_sxm2_32gb", "a10_24gb", "t4_16gb", "l4_24gb", "l40s_48gb", "rtx3090", "rtx4090",
        "rtx5090", "a100_sxm_40gb", "a100_sxm_80gb", "a100_pcie_80gb", "h100_sxm_80gb",
        "h100_pcie_80gb", "h800_sxm_80gb", "h20_96gb", "h200_sxm_141gb", "b200_hgx",
        "gb200_nvl72_per_gpu", "b300_hgx", "gb300_nvl72_per_gpu", "mi250x_gcd", "mi300x", "mi325x", "mi355x", "gaudi2",
        "gaudi3", "tpu_v5e", "tpu_v5p",
    }
    assert expected <= set(accs)


def test_catalog_keeps_file_order_and_unique_ids(accs, doc):
    ids = [entry["id"] for entry in doc["accelerators"]]
    assert len(ids) == len(set(ids))
    assert list(accs) == ids
    assert all(key == acc.id for key, acc in accs.items())


def test_every_entry_is_physically_plausible(accs):
    for acc in accs.values():
        assert acc.memory_bytes > 0, acc.id
        assert 0 < acc.usable_bytes <= acc.memory_bytes, acc.id
        assert acc.peak_flops.get("bf16", 0) > 0 or acc.peak_flops.get("fp16", 0) > 0, acc.id
        assert acc.hbm_bandwidth > 0, acc.id
        assert acc.scale_up_bandwidth > 0 and acc.scale_up_domain >= 1, acc.id
        assert acc.host_link_bandwidth > 0, acc.id
        assert acc.source.startswith("https://"), acc.id
        # Meshes carry the per-peer rate, and all peers together make the per-GPU total.
        if acc.scale_up_topology == "mesh":
            links = acc.scale_up_domain - 1
            assert acc.per_peer_bandwidth * links == pytest.approx(acc.scale_up_bandwidth), acc.id
        else:
            assert acc.per_peer_bandwidth is None, acc.id


def test_no_part_is_faster_at_fp8_than_twice_bf16(accs):
    # Dense fp8 is about 2x bf16 (L40S datasheet: 733 vs 362.05, 2.02x); a sparse figure slipping
    # into either column would make the ratio 1x or 4x.
    for acc in accs.values():
        if "fp8" in acc.peak_flops:
            assert 0.99 <= acc.peak_flops["fp8"] / acc.peak("bf16") <= 2.05, acc.id


def test_derived_usable_memory_is_marked(accs):
    h100_pcie = accs["h100_pcie_80gb"]
    assert h100_pcie.usable_bytes == int(round(0.99 * 80 * GiB))
    assert "derived" in h100_pcie.notes
    assert "derived" not in accs["h100_sxm_80gb"].notes


# ---- spot checks against the vendor figures (H100 SXM datasheet; usable memory as nvidia-smi reports it)


def test_h100_sxm_matches_the_data(accs):
    h100 = accs["h100_sxm_80gb"]
    assert h100.peak_flops["bf16"] == 989e12
    assert h100.peak_flops["fp8"] == 1979e12
    assert h100.memory_bytes == 80 * GiB
    assert h100.usable_bytes == int(round(79.65 * GiB))
    assert h100.hbm_bandwidth == 3350e9
    assert h100.scale_up_kind == "nvlink" and h100.scale_up_topology == "switch"
    assert h100.scale_up_bandwidth == 450e9
    assert h100.scale_up_domain == 8
    assert h100.host_link_bandwidth == 63e9
    assert h100.nic_gbps_per_gpu == 400


def test_a100_80gb_matches_the_data(accs):
    a100 = accs["a100_sxm_80gb"]
    assert a100.usable_bytes == int(round(79.15 * GiB))
    assert a100.peak("bf16") == 312e12
    assert a100.scale_up_bandwidth == 300e9
    assert "fp8" not in a100.peak_flops


def test_h200_b200_usable_are_the_driver_reports(accs):
    assert accs["h200_sxm_141gb"].usable_bytes == int(round(139.8 * GiB))
    assert accs["b200_hgx"].usable_bytes == int(round(179.1 * GiB))
    assert accs["b200_hgx"].memory_bytes == 180 * GiB


def test_gb200_is_a_72_gpu_nvlink_domain(accs):
    gb200 = accs["gb200_nvl72_per_gpu"]
    assert gb200.scale_up_domain == 72
    assert gb200.scale_up_bandwidth == 900e9
    assert gb200.typical_gpus_per_node == 4
    assert gb200.peak("bf16") == 2500e12


def test_mi300x_is_a_point_to_point_mesh(accs):
    mi300x = accs["mi300x"]
    assert mi300x.scale_up_kind == "xgmi"
    assert mi300x.scale_up_topology == "mesh"
    assert mi300x.per_peer_bandwidth == 64e9
    assert mi300x.scale_up_bandwidth == 448e9
    assert mi300x.peak("bf16") == pytest.approx(1307.4e12)


def test_mi250x_is_modelled_per_gcd(accs):
    gcd = accs["mi250x_gcd"]
    assert gcd.memory_bytes == 64 * GiB
    assert gcd.peak("bf16") == pytest.approx(191.5e12)  # torchtitan's per-GCD figure
    assert gcd.hbm_bandwidth == pytest.approx(3276.8e9 / 2)


def test_pcie_parts_use_pcie_bandwidth_not_bridges(accs):
    pcie_gen_GBps = {"rtx4090": 31, "a100_pcie_80gb": 31, "h100_pcie_80gb": 63, "t4_16gb": 15.75}
    for acc_id, gen_GBps in pcie_gen_GBps.items():
        acc = accs[acc_id]
        assert acc.scale_up_kind == "pcie" and acc.scale_up_domain == 8, acc_id
        assert acc.scale_up_bandwidth == acc.host_link_bandwidth == gen_GBps * 1e9, acc_id


def test_geforce_uses_fp32_accumulate_rates(accs):
    assert accs["rtx4090"].peak("bf16") == pytest.approx(165.2e12)
    assert accs["rtx4090"].peak("fp16") == pytest.approx(165.2e12)  # not 330.3 (fp16 accumulate)
    assert accs["rtx3090"].peak("bf16") == 71e12


def test_tpu_ici_domains(accs):
    assert accs["tpu_v5e"].scale_up_domain == 256
    assert accs["tpu_v5e"].scale_up_bandwidth == 200e9
    assert accs["tpu_v5p"].scale_up_domain == 8960


def test_parts_without_bf16_fall_back_to_fp16(accs):
    v100 = accs["v100_sxm2_32gb"]
    assert not v100.supports("bf16")
    assert v100.peak("bf16") == 125e12
    assert v100.peak("fp8") == 125e12
    assert accs["t4_16gb"].peak("bf16") == 65e12


# ---- today's parts: figures as their cited sources print them (dense, per GPU)

TODAY = ("h200_sxm_141gb", "b200_hgx", "gb200_nvl72_per_gpu", "b300_hgx", "gb300_nvl72_per_gpu",
         "mi300x", "mi325x", "mi355x")


@pytest.mark.parametrize("acc_id", TODAY)
def test_todays_parts_cite_each_figure(accs, acc_id):
    acc = accs[acc_id]
    assert {"memory", "peak_tflops", "hbm", "scale_up"} <= set(acc.figure_sources), acc_id
    assert all("https://" in citation for citation in acc.figure_sources.values()), acc_id
    assert (acc.tdp_watts is None) or "tdp" in acc.figure_sources, acc_id


@pytest.mark.parametrize(
    "acc_id, memory_gib, hbm_GBps, tflops, nvlink_GBps, domain, tdp_w",
    [
        # H200 page: 141 GB, 4.8 TB/s, FP8 3,958 / BF16 1,979 with sparsity, NVLink 900 GB/s, 700 W.
        ("h200_sxm_141gb", 141, 4800, {"bf16": 989, "fp8": 1979}, 450, 8, 700),
        # HGX B200 (1000 W): BF16 2.25 PF dense, FP8 4.5, FP4 9; DGX B200: 1,440 GB and
        # 64 TB/s per 8 GPUs, NVLink 14.4 TB/s per 8 GPUs.
        ("b200_hgx", 180, 8000, {"bf16": 2250, "fp16": 2250, "fp8": 4500, "mxfp8": 4500,
                                 "nvfp4": 9000, "mxfp4": 9000}, 900, 8, 1000),
        # GB200 NVL72: 13.4 TB per 72 GPUs, 720 PF FP8 sparse per rack; GB200 at 1200 W: BF16 2.5
        # PF dense, FP4 10 PF dense; 72-GPU NVLink domain at 1.8 TB/s per GPU.
        ("gb200_nvl72_per_gpu", 186, 8000, {"bf16": 2500, "fp8": 5000, "mxfp8": 5000,
                                            "nvfp4": 10000}, 900, 72, 1200),
        # DGX B300 (ml-engineering note 21): 288 GB, BF16 2250, FP8 4500; HGX B300: FP4 108 PF
        # dense per 8 GPUs. TDP left out (sources give 1100-1400 W).
        ("b300_hgx", 288, 8000, {"bf16": 2250, "fp8": 4500, "mxfp8": 4500, "nvfp4": 13500},
         900, 8, None),
        # GB300: 288 GB, 8 TB/s, BF16 2500, FP8 5000, FP4 15000 dense; 72-GPU NVLink domain.
        ("gb300_nvl72_per_gpu", 288, 8000, {"bf16": 2500, "fp8": 5000, "mxfp8": 5000,
                                            "nvfp4": 15000, "mxfp4": 15000}, 900, 72, None),
        # MI300X: 192 GB, 5.3 TB/s, BF16 1307.4 and FP8 2614.9 dense, XGMI 448, 750 W.
        ("mi300x", 192, 5300, {"bf16": 1307.4, "fp8": 2614.9}, 448, 8, 750),
        # MI325X: 256 GB, 6 TB/s, MI300X compute, 1000 W.
        ("mi325x", 256, 6000, {"bf16": 1307.4, "fp8": 2614.9}, 448, 8, 1000),
        # MI355X: 288 GB, 8 TB/s, BF16 2516.6, FP8 5033, MXFP4 10.1 PF (4 x 2516.6), 1400 W.
        ("mi355x", 288, 8000, {"bf16": 2516.6, "fp8": 5033, "mxfp8": 5033, "mxfp4": 10066.3},
         535.5, 8, 1400),
    ],
)
def test_todays_parts_match_their_sources(accs, acc_id, memory_gib, hbm_GBps, tflops, nvlink_GBps,
                                          domain, tdp_w):
    acc = accs[acc_id]
    assert acc.memory_bytes == memory_gib * GiB
    assert acc.hbm_bandwidth == hbm_GBps * 1e9
    for dtype, value in tflops.items():
        assert acc.peak_flops[dtype] == pytest.approx(value * 1e12), dtype
    assert acc.scale_up_bandwidth == pytest.approx(nvlink_GBps * 1e9)
    assert acc.scale_up_domain == domain
    assert acc.tdp_watts == tdp_w


def test_gb300_is_a_72_gpu_nvlink_domain_of_4_gpu_trays(accs):
    gb300 = accs["gb300_nvl72_per_gpu"]
    assert (gb300.scale_up_kind, gb300.scale_up_domain, gb300.typical_gpus_per_node) == ("nvlink", 72, 4)
    assert gb300.usable_bytes == 279 * GiB  # the rack's exposed memory per GPU, marked derived
    assert "derived" in gb300.notes
    assert "int8" not in gb300.peak_flops  # Blackwell Ultra cuts INT8; no datasheet figure
    assert get_accelerator("gb300").id == "gb300_nvl72_per_gpu"


@pytest.mark.parametrize(
    "acc_id, mxfp8",
    [
        ("h100_sxm_80gb", False), ("h200_sxm_141gb", False), ("h800_sxm_80gb", False),
        ("mi300x", False), ("mi325x", False), ("a100_sxm_80gb", False),
        ("b200_hgx", True), ("b300_hgx", True), ("gb200_nvl72_per_gpu", True),
        ("gb300_nvl72_per_gpu", True), ("mi355x", True),
    ],
)
def test_mxfp8_support_matrix(accs, acc_id, mxfp8):
    acc = accs[acc_id]
    assert acc.supports("mxfp8") is mxfp8
    assert acc.supports("fp8") is (acc_id != "a100_sxm_80gb")
    # MX block scaling runs at the fp8 rate where the tensor cores do it.
    assert acc.peak("mxfp8") == acc.peak("fp8")


def test_nvfp4_is_nvidia_blackwell_only(accs):
    with_nvfp4 = {acc.id for acc in accs.values() if acc.supports("nvfp4")}
    assert with_nvfp4 == {"b200_hgx", "gb200_nvl72_per_gpu", "b300_hgx", "gb300_nvl72_per_gpu"}
    assert accs["mi355x"].supports("mxfp4") and not accs["mi355x"].supports("nvfp4")


# ---- lookup


@pytest.mark.parametrize(
    "name, expected",
    [
        ("h100_sxm_80gb", "h100_sxm_80gb"),
        ("h100", "h100_sxm_80gb"),
        ("H100-SXM", "h100_sxm_80gb"),
        ("H100 SXM5 80GB", "h100_sxm_80gb"),
        ("NVIDIA H100 SXM5 80GB", "h100_sxm_80gb"),
        ("a100", "a100_sxm_80gb"),
        ("a100-80gb", "a100_sxm_80gb"),
        ("a100-40gb", "a100_sxm_40gb"),
        ("a10", "a10_24gb"),
        ("4090", "rtx4090"),
        ("rtx-4090", "rtx4090"),
        ("MI300X", "mi300x"),
        ("mi250x", "mi250x_gcd"),
        ("b200", "b200_hgx"),
        ("gb200", "gb200_nvl72_per_gpu"),
        ("GB300 NVL72", "gb300_nvl72_per_gpu"),
        ("tpu-v5p", "tpu_v5p"),
    ],
)
def test_aliases_resolve(name, expected):
    assert get_accelerator(name).id == expected


def test_unknown_name_lists_valid_ids(accs):
    with pytest.raises(UnknownAccelerator) as info:
        get_accelerator("h1000")
    assert isinstance(info.value, LookupError)
    assert info.value.name == "h1000"
    assert info.value.valid == list(accs)
    assert "h100_sxm_80gb" in str(info.value)


def test_catalog_returns_a_copy():
    first = catalog()
    first.pop("h100_sxm_80gb")
    assert "h100_sxm_80gb" in catalog()


# ---- validation of the YAML


def _broken(doc: dict, entry_id: str, **changes) -> dict:
    """A copy of the document with fields of one entry changed (None removes the field)."""
    doc = copy.deepcopy(doc)
    entry = next(e for e in doc["accelerators"] if e["id"] == entry_id)
    for field, value in changes.items():
        if value is None:
            entry.pop(field)
        else:
            entry[field] = value
    return doc


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"memory_gib": -80}, "h100_sxm_80gb: memory_gib: expected a positive number"),
        ({"usable_gib": 81}, "h100_sxm_80gb: usable_gib: 81 exceeds memory_gib 80"),
        ({"usable_gib": None}, "h100_sxm_80gb: usable_gib: missing"),
        ({"peak_tflops": {"bf17": 989}}, "h100_sxm_80gb: peak_tflops: 'bf17' is not one of"),
        ({"peak_tflops": {"fp8": 1979}}, "h100_sxm_80gb: peak_tflops: needs bf16 or fp16"),
        ({"hbm_GBps": "3.35TB/s"}, "h100_sxm_80gb: hbm_GBps: expected a positive number"),
        ({"source": None}, "h100_sxm_80gb: source: missing"),
        ({"hbm_gbps": 3350}, "h100_sxm_80gb: hbm_gbps: unknown field"),
        ({"confidence": "certain"}, "h100_sxm_80gb: confidence: 'certain' is not one of"),
        ({"scale_up": {"kind": "nvlink", "topology": "mesh", "domain": 8, "unidir_GBps": 450}},
         "h100_sxm_80gb: scale_up.per_peer_GBps: expected a positive number"),
        ({"scale_up": {"kind": "infinityband", "topology": "switch", "domain": 8, "unidir_GBps": 450}},
         "h100_sxm_80gb: scale_up.kind: 'infinityband' is not one of"),
        ({"aliases": ["A100"]}, "h100_sxm_80gb: aliases: 'A100' already names a100_sxm_80gb"),
        ({"peak_tflops": {"bf16": 989, "mxfp9": 1979}}, "h100_sxm_80gb: peak_tflops: 'mxfp9' is not one of"),
        ({"tdp_w": 0}, "h100_sxm_80gb: tdp_w: expected a positive number"),
        ({"sources": ["https://x"]}, "h100_sxm_80gb: sources: expected a mapping of figure to citation"),
        ({"sources": {"hbm_GBps": "https://x"}}, "h100_sxm_80gb: sources: 'hbm_GBps' is not one of"),
        ({"sources": {"hbm": "the datasheet"}}, "h100_sxm_80gb: sources.hbm: expected a citation with an https:// URL"),
    ],
)
def test_malformed_entries_name_the_entry_and_field(doc, changes, message):
    with pytest.raises(CatalogError) as info:
        build_catalog(_broken(doc, "h100_sxm_80gb", **changes))
    assert message in str(info.value)


def test_duplicate_ids_are_rejected(doc):
    broken = copy.deepcopy(doc)
    broken["accelerators"].append(copy.deepcopy(broken["accelerators"][0]))
    with pytest.raises(CatalogError, match="v100_sxm2_32gb: id: duplicate"):
        build_catalog(broken)
