"""A layer's compute terms are worked out once per kind of layer (compute._LayerTerms.kind):
read through its kind, every layer's terms equal its own, on stacks whose layers differ —
dense leading layers (DeepSeek-V3), interleaved MoE (Llama 4), alternating attention windows
(gpt-oss), MoE with dense layers listed (Qwen), partial fine-tuning of some layers."""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.cost.cluster import build_cluster
from planner.cost.partial import PartialTraining
from planner.cost.plan import ParallelDims, Plan
from planner.cost.timing.compute import _LayerTerms
from planner.cost.workload import Workload
from planner.engines.profiles import PROFILES, engine_workload
from planner.model import load_architecture
from planner.spec.cluster import ClusterSpec

MODELS = ["deepseek-v3", "llama4-maverick", "gpt-oss-20b", "qwen3-30b-a3b", "llama3-8b"]


@st.composite
def jobs(draw):
    arch = load_architecture(draw(st.sampled_from(MODELS)))
    n = arch.num_layers
    windows = draw(st.sampled_from([None, tuple(128 if i % 2 == 0 else None for i in range(n)),
                                    tuple(4096 if i % 4 < 3 else None for i in range(n))]))
    partial = draw(st.sampled_from([None, PartialTraining(layers=(n - 3, n - 1), attention=True),
                                    PartialTraining(mlp=True, experts=1, router=True)]))
    engine = draw(st.sampled_from(sorted(PROFILES)))
    wl = engine_workload(Workload(arch=arch, training="full" if partial else "pretrain", seq_len=4096,
                                  global_batch=64, layer_windows=windows, partial=partial), engine)
    moe = arch.moe is not None
    tp, ep = draw(st.sampled_from([1, 2, 8])), draw(st.sampled_from([1, 8] if moe else [1]))
    nodes = draw(st.sampled_from([1, 8]))
    plan = Plan(parallel=ParallelDims(tp=tp, dp=8 * nodes // tp, ep=ep, sp=tp > 1 and draw(st.booleans())),
                mbs=draw(st.integers(1, 2)), gas=1, framework=engine,
                precision=draw(st.sampled_from(["bf16", "fp8"])),
                recompute=draw(st.sampled_from(["none", "selective", "full"])))
    cluster = build_cluster(ClusterSpec(gpu="h100_sxm_80gb", gpus_per_node=8, nodes=nodes,
                                        inter_node={"nic_gbps": 400, "nics_per_node": 8, "kind": "infiniband"}))
    return plan, wl, cluster


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(jobs(), st.randoms(use_true_random=False))
def test_every_layer_read_through_its_kind_has_its_own_terms(job, rng):
    plan, wl, cluster = job
    shared = _LayerTerms(plan, wl, cluster)
    order = list(range(wl.arch.num_layers))
    rng.shuffle(order)  # whichever layer of a kind comes first computes the kind's terms
    for i in order:
        assert shared.layer(i) == _LayerTerms(plan, wl, cluster)._layer(i), i


def test_a_deepseek_stack_has_two_kinds_of_layer():
    wl = Workload(arch=load_architecture("deepseek-v3"), training="pretrain", seq_len=4096, global_batch=64)
    terms = _LayerTerms(Plan(parallel=ParallelDims(dp=8, ep=8)), wl, build_cluster(ClusterSpec(gpu="h100_sxm_80gb")))
    assert len({terms.kind(i) for i in range(61)}) == 2
