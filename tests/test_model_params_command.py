"""`planner params`: counts by component and layer kind, FLOPs per token, through the CLI."""
import json

import pytest
from typer.testing import CliRunner

from planner.cli.app import app
from planner.model import count_params, flops_per_token, get_preset

runner = CliRunner()


def _json(*args):
    result = runner.invoke(app, ["params", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_deepseek_v3_shows_671b_37b_active_and_mtp_apart():
    result = runner.invoke(app, ["params", "deepseek-v3"])
    assert result.exit_code == 0
    out = result.stdout
    assert "total 671,026,404,352 (671.03 B)" in out
    assert "active per token 37,552,282,624 (37.55 B, 5.6%)" in out
    assert "MTP module (not in total)" in out and "11,610,067,968" in out
    for label in ("embedding", "attention", "MLP (dense)", "routed experts", "shared experts", "router",
                  "norms", "output (lm head)", "dense layer", "MoE layer"):
        assert label in out
    assert "FLOPs per token at sequence length 4,096 (without the MTP modules)" in out
    assert "causal (mask halves attention)" in out and "full attention" in out


def test_json_keeps_the_interface_fields_and_adds_layer_kinds_and_flops():
    doc = _json("deepseek-v3")
    assert (doc["total"], doc["active"], doc["embedding"]) == (671_026_404_352, 37_552_282_624, 926_679_040)
    assert sum(doc["by_component"].values()) == doc["total"]
    kinds = doc["by_layer_kind"]
    assert {k: v["layers"] for k, v in kinds.items()} == {"dense": 3, "moe": 58, "mtp": 1}
    assert kinds["mtp"]["params"] == doc["mtp"] == 11_610_067_968
    assert kinds["moe"]["per_expert"] == 44_040_192
    expected = flops_per_token(get_preset("deepseek-v3"), 4096)
    assert doc["flops_per_token"] == {
        "seq_len": 4096,
        "training": {"causal": expected.training, "full": expected.training_full_attention},
        "inference": {"causal": expected.inference, "full": expected.inference_full_attention},
    }


def test_mixtral_expert_is_the_seed_example():
    doc = _json("mixtral-8x7b")
    assert doc["by_layer_kind"] == {"moe": {"layers": 32, "params": 1_451_270_144, "active": 394_305_536,
                                            "per_expert": 176_160_768}}


def test_seq_len_option_and_learned_position_limit():
    assert _json("llama3-8b", "--seq-len", "8192")["flops_per_token"]["seq_len"] == 8192
    # GPT-2 has 1024 learned positions: the default stops there, and more is bad input.
    assert _json("gpt2-small")["flops_per_token"]["seq_len"] == 1024
    result = runner.invoke(app, ["params", "gpt2-small", "--seq-len", "2048"])
    assert result.exit_code == 2
    assert "--seq-len: gpt2-small has 1,024 learned positions; give at most 1024" in result.stderr


@pytest.mark.parametrize("name", ["llama3-8b", "gpt2-small", "qwen3-30b-a3b"])
def test_dense_and_moe_models_render(name):
    result = runner.invoke(app, ["params", name])
    assert result.exit_code == 0
    assert f"total {count_params(get_preset(name)).total:,}" in result.stdout


def test_unknown_model_type_exits_2_unless_read_as_names_a_reader(tmp_path):
    config = tmp_path / "config.json"
    fields = {"model_type": "my_llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "intermediate_size": 128, "vocab_size": 100}
    config.write_text(json.dumps(fields))
    result = runner.invoke(app, ["params", str(config), "--json"])
    assert result.exit_code == 2
    assert "model_type 'my_llama' and no architectures: no supported family" in json.loads(result.stdout)["error"]
    config.write_text(json.dumps({**fields, "read_as": "llama"}))
    result = runner.invoke(app, ["params", str(config), "--json"])
    assert result.exit_code == 0, result.output
    # 2 layers x (4·64² attention + 3·64·128 SwiGLU + 2·64 norms) + 2 · 100·64 (untied) + 64 final norm
    assert json.loads(result.stdout)["total"] == 2 * (4 * 64 * 64 + 3 * 64 * 128 + 2 * 64) + 2 * 100 * 64 + 64
