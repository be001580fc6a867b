"""NeMo AutoModel's DeepEP experts save what planner/cost/memory/activations.py `_deepep_routed_bytes`
charges: counted with saved-tensor hooks on the package's own functions
(validation/memory/automodel_experts.py). Runs where nemo-automodel 0.7.0 is installed without
its dependencies (its transformers pin differs from the `validate` extra's), as .ci/run installs it."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("nemo_automodel.components.moe.experts")

from planner.cost.memory.activations import _deepep_routed_bytes  # noqa: E402
from planner.model.architecture import Architecture, Attention, MoE  # noqa: E402

pytestmark = pytest.mark.validate

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("automodel_experts", ROOT / "validation" / "memory" / "automodel_experts.py")
tool = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = tool
spec.loader.exec_module(tool)


def _arch(activation: str, hidden: int, inter: int) -> Architecture:
    return Architecture(name="probe", family="probe", hidden=hidden, num_layers=1, ffn=inter, vocab=1024,
                        attention=Attention(num_heads=2, num_kv_heads=2, head_dim=hidden // 2),
                        mlp_activation=activation, gated_mlp=True,
                        moe=MoE(num_experts=4, top_k=1, expert_ffn=inter, expert_bias=True))


@pytest.mark.parametrize("activation, planner_activation", [("quick_geglu", "sigmoid_glu_clamped"),
                                                            ("swiglu", "silu")])
def test_deepep_experts_save_the_gemm_inputs_and_the_activation_input(activation, planner_activation):
    hidden, inter = 96, 64
    measured = tool.saved_bytes_per_row(activation, eager=False, hidden=hidden, inter=inter)
    charged = _deepep_routed_bytes(_arch(planner_activation, hidden, inter), 2, chunked=False)
    # The int64 token counts the bias adds keep are the only bytes not per row.
    assert measured["bytes_per_row"] == pytest.approx(charged, abs=0.01)


def test_without_torch_compile_the_clamped_geglu_would_save_five_more_copies():
    measured = tool.saved_bytes_per_row("quick_geglu", eager=True, hidden=96, inter=64)
    assert round(measured["e_i_beyond_e_h"]) == 8
