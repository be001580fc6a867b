"""cluster.yaml / job.yaml loading: valid files load, bad ones name file, field and what is valid."""
import pytest
from conftest import EXAMPLES

from planner.cost.cluster import build_cluster
from planner.spec import load_cluster, load_job
from planner.spec.errors import InputError

GiB = 2**30


@pytest.mark.parametrize("path", sorted((EXAMPLES / "clusters").glob("*.yaml")), ids=lambda p: p.name)
def test_example_clusters_load(path):
    spec = load_cluster(path)
    cluster = build_cluster(spec, str(path))
    assert cluster.world == spec.nodes * spec.gpus_per_node
    assert 0 < cluster.capacity <= cluster.gpu.usable_bytes


@pytest.mark.parametrize("path", sorted((EXAMPLES / "jobs").glob("*.yaml")), ids=lambda p: p.name)
def test_example_jobs_load(path):
    job = load_job(path)
    assert job.seq_len > 0 and job.global_batch > 0


def test_units_are_parsed_once(write_yaml):
    path = write_yaml("c.yaml", {"gpu": {"base": "h100_sxm_80gb", "memory": "94GiB", "hbm_bandwidth": "3.9TB/s"},
                                 "gpus_per_node": 8, "nodes": 2,
                                 "inter_node": {"nic_gbps": "400Gbps", "nics_per_node": 8}})
    cluster = build_cluster(load_cluster(path), str(path))
    assert cluster.gpu.memory_bytes == 94 * GiB
    assert cluster.gpu.hbm_bandwidth == pytest.approx(3.9e12)
    assert cluster.nic_bandwidth_per_node == pytest.approx(8 * 50e9)


def test_job_tokens_accept_suffixes(write_yaml):
    job = load_job(write_yaml("j.yaml", {"model": "llama3-8b", "seq_len": 4096, "global_batch": 8, "tokens": "15T"}))
    assert job.tokens == pytest.approx(15e12)


def test_qlora_defaults_to_nf4_and_a_lora_block(write_yaml):
    job = load_job(write_yaml("j.yaml", {"model": "llama3-8b", "training": "qlora", "seq_len": 2048, "global_batch": 8}))
    assert job.base_quant == "nf4"
    assert job.lora is not None and job.lora.ranks == (16,)


def _error(call, *args) -> str:
    with pytest.raises(InputError) as info:
        call(*args)
    return str(info.value)


def test_missing_file_is_named(tmp_path):
    message = _error(load_cluster, tmp_path / "nope.yaml")
    assert "nope.yaml" in message and "not found" in message


def test_yaml_syntax_error_gives_the_line(write_yaml):
    path = write_yaml("c.yaml", "gpu: h100\nnodes: [1, 2\n")
    message = _error(load_cluster, path)
    assert "c.yaml" in message and "YAML syntax error at line" in message


def test_unknown_field_suggests_the_valid_one(write_yaml):
    path = write_yaml("c.yaml", {"gpu": "h100_sxm_80gb", "gpu_per_node": 8})
    message = _error(load_cluster, path)
    assert "gpu_per_node: unknown field (did you mean gpus_per_node" in message


def test_unknown_gpu_suggests_close_ids(write_yaml):
    path = write_yaml("c.yaml", {"gpu": "h100_sxm_80", "gpus_per_node": 8, "nodes": 1})
    message = _error(lambda p: build_cluster(load_cluster(p), str(p)), path)
    assert "c.yaml: gpu: unknown GPU 'h100_sxm_80' (did you mean h100_sxm_80gb" in message


@pytest.mark.parametrize("fields, expected", [
    ({"nodes": 0}, "nodes: Input should be greater than 0"),
    ({"nodes": 2}, "inter_node: required when nodes > 1"),
    ({"memory_reserve_gib": -1}, "memory_reserve_gib: Input should be greater than or equal to 0"),
])
def test_impossible_cluster_values(write_yaml, fields, expected):
    path = write_yaml("c.yaml", {"gpu": "h100_sxm_80gb", "gpus_per_node": 8, **fields})
    assert expected in _error(load_cluster, path)


def test_reserve_larger_than_the_gpu(write_yaml):
    path = write_yaml("c.yaml", {"gpu": "rtx4090", "gpus_per_node": 8, "memory_reserve_gib": 30})
    message = _error(lambda p: build_cluster(load_cluster(p), str(p)), path)
    assert "memory_reserve_gib: 30 GiB leaves nothing" in message


@pytest.mark.parametrize("fields, expected", [
    ({"training": "sft"}, "training: must be one of 'pretrain', 'full', 'lora' or 'qlora'"),
    ({"seq_len": 0}, "seq_len: Input should be greater than 0"),
    ({"constraints": {"tpp": [1, 2]}}, "constraints.tpp: not a plan key (did you mean tp"),
    ({"constraints": {"zero": [5]}}, "constraints.zero: 5 is not valid; valid: 0, 1, 2, 3"),
    ({"constraints": {"recompute": ["some"]}}, "constraints.recompute: 'some' is not valid"),
    ({"constraints": {"pp": {"min": 8, "max": 4}}}, "min (8) > max (4)"),
    ({"constraints": {"tp": [0]}}, "constraints.tp: 0 is not a positive integer"),
    ({"lora": {"rank": 8}}, "lora: given, but training is 'pretrain'"),
    ({"quant": "nf4"}, "quant: 'nf4' quantizes frozen base weights"),
])
def test_impossible_or_contradictory_job_values(write_yaml, fields, expected):
    path = write_yaml("j.yaml", {"model": "llama3-8b", "seq_len": 4096, "global_batch": 8, **fields})
    message = _error(load_job, path)
    assert message.startswith(str(path))
    assert expected in message


def test_missing_required_job_fields_are_all_listed(write_yaml):
    message = _error(load_job, write_yaml("j.yaml", {"model": "llama3-8b"}))
    assert "seq_len: required field is missing" in message
    assert "global_batch: required field is missing" in message


def test_top_level_must_be_a_mapping(write_yaml):
    assert "expected a mapping of fields, found a list" in _error(load_job, write_yaml("j.yaml", "- 1\n- 2\n"))
    assert "found empty" in _error(load_job, write_yaml("e.yaml", ""))


def test_yaml_is_loaded_safely(write_yaml):
    path = write_yaml("j.yaml", "model: !!python/object/apply:os.system ['echo hacked']\nseq_len: 1\nglobal_batch: 1\n")
    assert "YAML syntax error" in _error(load_job, path)
