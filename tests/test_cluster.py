"""From cluster.yaml to the models' cluster: fabrics, domains, capacity."""
import pytest

from planner.cost.cluster import build_cluster
from planner.spec.cluster import ClusterSpec
from planner.spec.errors import InputError

GiB = 2**30


def test_capacity_is_usable_memory_less_the_reserve():
    c = build_cluster(ClusterSpec(gpu="h100_sxm_80gb", gpus_per_node=8, memory_reserve_gib=2))
    assert c.capacity == c.gpu.usable_bytes - 2 * GiB
    assert c.gpu.usable_bytes == round(79.65 * GiB)


def test_network_bandwidth_per_node_and_gpu():
    c = build_cluster(ClusterSpec(gpu="a100_sxm_80gb", gpus_per_node=8, nodes=4,
                                  inter_node={"nic_gbps": 200, "nics_per_node": 8, "kind": "infiniband"}))
    assert c.nic_bandwidth_per_node == pytest.approx(8 * 25e9)
    assert c.nic_bandwidth_per_gpu == pytest.approx(25e9)
    assert (c.scale_up_kind, c.scale_up_domain) == ("nvlink", 8)


def test_nvl72_domain_spans_trays_of_four():
    c = build_cluster(ClusterSpec(gpu="gb200_nvl72_per_gpu", gpus_per_node=4, nodes=36,
                                  inter_node={"nic_gbps": 800, "nics_per_node": 4}))
    assert c.scale_up_domain == 72


def test_pcie_override_uses_the_host_link():
    c = build_cluster(ClusterSpec(gpu="h100_sxm_80gb", gpus_per_node=8, intra_node={"kind": "pcie"}))
    assert c.scale_up_kind == "pcie" and c.scale_up_bandwidth == c.gpu.host_link_bandwidth


def test_growing_a_single_node_assumes_the_catalog_nic():
    one = build_cluster(ClusterSpec(gpu="h100_sxm_80gb", gpus_per_node=8))
    four = one.with_size(4)
    assert four.world == 32 and four.nic_bandwidth_per_gpu == pytest.approx(50e9)


def test_custom_gpu_needs_its_figures():
    with pytest.raises(InputError, match="a custom GPU needs memory, peak_tflops, hbm_bandwidth"):
        build_cluster(ClusterSpec(gpu={"id": "x"}, gpus_per_node=1))
    c = build_cluster(ClusterSpec(gpu={"id": "x", "memory": "48GiB", "peak_tflops": {"bf16": 200},
                                       "hbm_bandwidth": "1TB/s"}, gpus_per_node=2))
    assert c.gpu.peak("bf16") == 200e12 and c.gpu.usable_bytes == int(48 * GiB * 0.99)


def test_nic_kind_and_mesh_links_come_through():
    c = build_cluster(ClusterSpec(gpu="mi300x", gpus_per_node=8, nodes=2,
                                  inter_node={"nic_gbps": 400, "nics_per_node": 8, "kind": "roce"}))
    assert (c.nic_kind, c.nics_per_node) == ("roce", 8)
    assert (c.scale_up_kind, c.per_peer_bandwidth) == ("xgmi", pytest.approx(64e9))
    single = build_cluster(ClusterSpec(gpu="gaudi3", gpus_per_node=8))
    assert single.nic_kind == "none" and single.scale_up_kind == "roce-mesh"
    # A PCIe override drops the mesh's per-peer links: the switch (host) path is shared.
    pcie = build_cluster(ClusterSpec(gpu="mi300x", gpus_per_node=8, intra_node={"kind": "pcie"}))
    assert pcie.per_peer_bandwidth is None


def test_pcie_box_domain_is_the_node():
    c = build_cluster(ClusterSpec(gpu="rtx4090", gpus_per_node=4, nodes=2,
                                  inter_node={"nic_gbps": 100, "nics_per_node": 1, "kind": "ethernet"}))
    assert (c.scale_up_kind, c.scale_up_domain) == ("pcie", 4)
    assert c.nic_bandwidth_per_gpu == pytest.approx(100e9 / 8 / 4)


# ---- scale-up domains larger than a node (NVL72: 72 GPUs on NVLink, compute trays of 4)

def nvl72(**kw):
    fields = dict(gpu="gb200_nvl72_per_gpu", gpus_per_node=4, nodes=36,
                  inter_node={"nic_gbps": 400, "nics_per_node": 4})
    return ClusterSpec(**{**fields, **kw})


def test_stated_domain_spans_trays():
    assert build_cluster(nvl72(scale_up_domain=72)).scale_up_domain == 72
    assert build_cluster(nvl72(gpu="gb300_nvl72_per_gpu", scale_up_domain=72)).scale_up_domain == 72
    # Stated equal to the node: trays joined by NICs only.
    assert build_cluster(nvl72(scale_up_domain=4)).scale_up_domain == 4
    # A fabric the catalog keeps to a node may be stated larger (whole nodes).
    hgx = build_cluster(ClusterSpec(gpu="b200_hgx", gpus_per_node=8, nodes=4, scale_up_domain=16,
                                    inter_node={"nic_gbps": 400}))
    assert hgx.scale_up_domain == 16


def test_catalog_domain_is_the_default_up_to_the_world():
    assert build_cluster(nvl72()).scale_up_domain == 72
    assert build_cluster(nvl72(gpu="gb300_nvl72_per_gpu")).scale_up_domain == 72
    assert build_cluster(nvl72(nodes=2)).scale_up_domain == 8      # two trays of a rack
    assert build_cluster(nvl72(nodes=1, inter_node=None)).scale_up_domain == 4
    # Clusters without the key keep the node as the domain where the catalog's is the node.
    assert build_cluster(ClusterSpec(gpu="b200_hgx", gpus_per_node=8)).scale_up_domain == 8


@pytest.mark.parametrize("spec, field, fragment", [
    (nvl72(scale_up_domain=70), "scale_up_domain",
     "70 GPUs is not a whole number of 4-GPU nodes; valid: a multiple of gpus_per_node (4) from 4 to the"
     " 144 GPUs of the cluster"),
    (nvl72(scale_up_domain=2), "scale_up_domain", "2 GPUs is not a whole number of 4-GPU nodes"),
    (nvl72(nodes=2, scale_up_domain=72), "scale_up_domain",
     "72 GPUs exceeds the cluster's 2 × 4 = 8; valid: a multiple of gpus_per_node (4) from 4 to the 8 GPUs"),
    (ClusterSpec(gpu="rtx4090", gpus_per_node=4, nodes=2, scale_up_domain=8,
                 inter_node={"nic_gbps": 100, "nics_per_node": 1}),
     "scale_up_domain", "a PCIe fabric does not span nodes; valid: 4 (the node)"),
    (nvl72(gpus_per_node=16, nodes=8), "gpus_per_node",
     "gb200_nvl72_per_gpu's 72-GPU scale-up domain is not a whole number of 16-GPU nodes; set scale_up_domain"),
    (nvl72(intra_node={"domain": 72}), "intra_node.domain", "the scale-up domain of a cluster is `scale_up_domain`"),
])
def test_bad_domains_name_file_field_and_what_is_valid(spec, field, fragment):
    with pytest.raises(InputError) as info:
        build_cluster(spec, "cluster.yaml")
    assert (info.value.file, info.value.field) == ("cluster.yaml", field)
    assert fragment in str(info.value)
