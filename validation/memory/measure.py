#!/usr/bin/env python
"""Measure per-GPU training memory with the ground-truth tools; one JSON per configuration.

Runs the scripts of validation/memory/tools/ (PyTorch's MemTracker on a Hugging Face train step,
FSDP2's FSDPMemTracker on a fake process group of 8 ranks, DeepSpeed's ZeRO estimators, Megatron's
theoretical memory, each wrapping that code as it ships) and this directory's `lora_memtracker.py` (hand-built LoRA adapters, or partial
fine-tuning of chosen layers/parts, under the same MemTracker) as subprocesses with this
interpreter, and writes one JSON per configuration: measurements to validation/memory/data/NAME.json,
other estimators' figures (DeepSpeed, Megatron) to validation/memory/references/NAME.json, holding:
  command   the argv that produced it (tool paths relative to tools/, or to this directory)
  versions  python, torch, transformers, deepspeed (megatron-bridge: in the Megatron output's `source`)
  planner   the configuration as planner inputs: model (Hugging Face config fields), seq_len,
            mbs, precision, optimizer, zero, dp (tp, pp, sp, gas), recompute, training, lora or
            partial, offload, framework
  output    the tool's JSON, as printed (DeepSpeed: the header and the one row compared)
  seconds   wall time of the run
`compare.py` reads these files; nothing here imports the planner.

Usage (needs torch 2.13 CPU, transformers 5.24, deepspeed 0.19.8; about 12 minutes on 2 cores):
  .venv/bin/python validation/memory/measure.py                 # all configurations
  .venv/bin/python validation/memory/measure.py --only llama-small --jobs 2
megatron_theoretical_memory.py needs the megatron-bridge 0.3.1 wheel: install it with
`pip install --no-deps --target DIR megatron-bridge==0.3.1` and set MEGATRON_BRIDGE_PATH=DIR.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
"""Measurements (MemTracker, FSDPMemTracker): compare.py holds the planner to +-5% on these."""
REFERENCES = HERE / "references"
"""Other estimators' figures (DeepSpeed, Megatron): compared and the differences explained."""
TOOLS = HERE / "tools"

# The tools' default small Llama (memtracker_step.SMALL_LLAMA): h=512, 4 layers, V=32000.
SMALL_LLAMA = dict(model_type="llama", hidden_size=512, intermediate_size=1376, num_hidden_layers=4,
                   num_attention_heads=8, num_key_value_heads=8, vocab_size=32000, tie_word_embeddings=False)
SMALL_LLAMA_GQA = {**SMALL_LLAMA, "num_key_value_heads": 2}
SMALL_MIXTRAL = dict(model_type="mixtral", hidden_size=512, intermediate_size=1024, num_hidden_layers=4,
                     num_attention_heads=8, num_key_value_heads=2, num_local_experts=8, num_experts_per_tok=2,
                     vocab_size=32000, tie_word_embeddings=False)
SMALL_QWEN3_MOE = dict(model_type="qwen3_moe", hidden_size=512, intermediate_size=1024, moe_intermediate_size=256,
                       num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2, head_dim=64,
                       num_experts=16, num_experts_per_tok=4, decoder_sparse_step=1, mlp_only_layers=[],
                       vocab_size=32000, tie_word_embeddings=False)
# Public config.json shapes (the tools' presets).
LLAMA3_8B = dict(model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False)
LLAMA3_70B = dict(model_type="llama", hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                  num_attention_heads=64, num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False)
MIXTRAL_8X7B = dict(model_type="mixtral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                    num_attention_heads=32, num_key_value_heads=8, num_local_experts=8, num_experts_per_tok=2,
                    vocab_size=32000, tie_word_embeddings=False)

TOOL_PRECISION = {"fp32": "fp32", "bf16-autocast": "bf16-autocast", "bf16": "bf16-pure"}
"""memtracker_step.py --precision -> planner precision (bf16 there is pure bf16 weights and states)."""


def _model_args(cfg: dict) -> list[str]:
    args = ["--model-type", cfg["model_type"]]
    for key, value in cfg.items():
        if key != "model_type":
            args += ["--set", f"{key}={json.dumps(value, separators=(',', ':'))}"]
    return args


def memtracker(name: str, model: dict, *, precision: str, batch: int = 2, seq: int = 512, recompute: bool = False,
               optimizer: str = "adamw", fake: bool = False, note: str = "") -> dict:
    argv = ["memtracker_step.py", *_model_args(model), "--batch", str(batch), "--seq", str(seq),
            "--precision", precision, "--optimizer", optimizer]
    argv += ["--recompute"] * recompute + ["--fake"] * fake
    return dict(name=name, tool="memtracker_step.py", argv=argv, note=note, planner=dict(
        model=model, training="full", seq_len=seq, mbs=batch, precision=TOOL_PRECISION[precision],
        optimizer={"adamw": "adamw", "sgd": "sgd-momentum"}[optimizer], zero=0, dp=1,
        recompute="full" if recompute else "none", offload="none", framework="hf"))


def lora(name: str, *, precision: str, rank: int, targets: list[str], recompute: bool = False, note: str = "") -> dict:
    argv = ["lora_memtracker.py", "--precision", precision, "--rank", str(rank), "--targets", *targets]
    argv += ["--recompute"] * recompute
    return dict(name=name, tool="lora_memtracker.py", argv=argv, note=note, planner=dict(
        model=SMALL_LLAMA, training="lora", lora=dict(rank=rank, targets=targets), seq_len=512, mbs=2,
        precision=TOOL_PRECISION[precision], optimizer="adamw", zero=0, dp=1,
        recompute="full" if recompute else "none", offload="none", framework="hf"))


def partial(name: str, model: dict, *, precision: str, train: list[str], layers: list[int] | None = None,
            recompute: bool = False, note: str = "") -> dict:
    """Partial fine-tuning: only `train` parts of `layers` (all when None) train (lora_memtracker.py --mode partial)."""
    argv = ["lora_memtracker.py", "--mode", "partial", *_model_args(model), "--precision", precision, "--train", *train]
    argv += ["--train-layers", *map(str, layers)] if layers else []
    argv += ["--recompute"] * recompute
    experts = model.get("num_local_experts") or model.get("num_experts") or 0
    spec = dict(layers=layers, attention="attention" in train, mlp="mlp" in train,
                experts=experts if "experts" in train else 0, router="router" in train, norms="norms" in train,
                embedding="embedding" in train, output="output" in train)
    return dict(name=name, tool="lora_memtracker.py", argv=argv, note=note, planner=dict(
        model=model, training="full", partial=spec, seq_len=512, mbs=2, precision=TOOL_PRECISION[precision],
        optimizer="adamw", zero=0, dp=1, recompute="full" if recompute else "none", offload="none", framework="hf"))


def fsdp2(name: str, model: dict, *, bf16: bool, batch: int = 2, seq: int = 512, recompute: bool = False,
          fake: bool = False, world: int = 8, note: str = "") -> dict:
    argv = ["fsdp2_memtracker.py", *_model_args(model), "--world-size", str(world), "--batch", str(batch),
            "--seq", str(seq)]
    argv += ["--bf16"] * bf16 + ["--recompute"] * recompute + ["--fake"] * fake
    return dict(name=name, tool="fsdp2_memtracker.py", argv=argv, note=note, planner=dict(
        model=model, training="full", seq_len=seq, mbs=batch, precision="bf16" if bf16 else "fp32",
        optimizer="adamw", zero=3, dp=world, recompute="full" if recompute else "none", offload="none",
        framework="hf", foreach=False))


def megatron(name: str, preset: str, model: dict, *, tp: int, pp: int, dp: int, seq: int = 4096, mbs: int = 1,
             microbatches: int = 1, note: str = "") -> dict:
    """Megatron's theoretical memory (distributed optimizer, SP + selective recompute, as it assumes)."""
    argv = ["megatron_theoretical_memory.py", "--preset", preset, "--seq", str(seq), "--mbs", str(mbs), "--tp", str(tp),
            "--pp", str(pp), "--dp", str(dp), "--distributed-optimizer", "--num-microbatches", str(microbatches)]
    return dict(name=name, tool="megatron_theoretical_memory.py", argv=argv, note=note, reference=True, planner=dict(
        model=model, training="pretrain", seq_len=seq, mbs=mbs, precision="bf16", optimizer="adamw", zero=1, dp=dp,
        tp=tp, pp=pp, sp=tp > 1, gas=microbatches, recompute="selective", offload="none", framework="megatron"))


def deepspeed(name: str, preset: str, model: dict, gpus: int = 8) -> list[dict]:
    """One tool run, one configuration per ZeRO/offload row of DeepSpeed's table (zero_init rows)."""
    argv = ["deepspeed_estimate.py", "--preset", preset, "--gpus-per-node", str(gpus), "--nodes", "1"]
    rows = [(2, False, False), (2, True, False), (3, False, False), (3, True, False), (3, True, True)]
    cases = []
    for stage, offload_opt, offload_param in rows:
        offload = "optimizer+params" if offload_param else "optimizer" if offload_opt else "none"
        cases.append(dict(
            name=f"{name}-zero{stage}-offload-{offload.replace('+', '-')}", tool="deepspeed_estimate.py", argv=argv,
            reference=True,
            row=dict(stage=stage, offload_optimizer=offload_opt, offload_param=offload_param),
            note="model states only (DeepSpeed's estimator): weights, gradients, optimizer states, master"
                 " weights and, for ZeRO-3, the gathered parameters",
            planner=dict(model=model, training="full", seq_len=4096, mbs=1, precision="bf16", optimizer="adamw",
                         zero=stage, dp=gpus, recompute="none", offload=offload, framework="deepspeed")))
    return cases


CASES: list[dict] = [
    memtracker("llama-small-fp32", SMALL_LLAMA, precision="fp32"),
    memtracker("llama-small-bf16-autocast", SMALL_LLAMA, precision="bf16-autocast"),
    memtracker("llama-small-bf16-pure", SMALL_LLAMA, precision="bf16"),
    memtracker("llama-small-fp32-recompute", SMALL_LLAMA, precision="fp32", recompute=True),
    memtracker("llama-small-bf16-autocast-recompute", SMALL_LLAMA, precision="bf16-autocast", recompute=True),
    memtracker("llama-small-bf16-pure-recompute", SMALL_LLAMA, precision="bf16", recompute=True),
    memtracker("llama-small-gqa-bf16-pure-sgd", SMALL_LLAMA_GQA, precision="bf16", optimizer="sgd", batch=4, seq=256,
               note="GQA (2 KV heads), SGD with momentum 0.9"),
    memtracker("llama3-8b-bf16-autocast", LLAMA3_8B, precision="bf16-autocast", batch=1, seq=4096, fake=True),
    memtracker("llama3-8b-bf16-autocast-recompute", LLAMA3_8B, precision="bf16-autocast", batch=1, seq=4096,
               recompute=True, fake=True),
    memtracker("llama3-8b-bf16-pure-recompute", LLAMA3_8B, precision="bf16", batch=1, seq=4096, recompute=True,
               fake=True),
    memtracker("mixtral-small-bf16-pure", SMALL_MIXTRAL, precision="bf16", note="MoE, 8 experts top-2, grouped_mm"),
    memtracker("mixtral-small-bf16-pure-recompute", SMALL_MIXTRAL, precision="bf16", recompute=True),
    memtracker("qwen3-moe-small-bf16-pure", SMALL_QWEN3_MOE, precision="bf16",
               note="MoE, 16 experts top-4, q/k RMSNorm per head"),
    memtracker("qwen3-moe-small-bf16-pure-recompute", SMALL_QWEN3_MOE, precision="bf16", recompute=True),
    memtracker("mixtral-8x7b-bf16-pure", MIXTRAL_8X7B, precision="bf16", batch=1, seq=2048, fake=True),
    lora("lora-llama-small-bf16-attn-r16", precision="bf16", rank=16, targets=["q_proj", "k_proj", "v_proj", "o_proj"]),
    lora("lora-llama-small-bf16-all-linear-r16-recompute", precision="bf16", rank=16, targets=["all-linear"],
         recompute=True),
    lora("lora-llama-small-fp32-all-linear-r8", precision="fp32", rank=8, targets=["all-linear"]),
    partial("partial-llama-small-bf16-last2-layers", SMALL_LLAMA, precision="bf16", train=["attention", "mlp", "norms"],
            layers=[2, 3], note="layers 2 and 3 train, 0 and 1 frozen"),
    partial("partial-llama-small-bf16-autocast-attention", SMALL_LLAMA, precision="bf16-autocast", train=["attention"],
            note="attention projections of every layer train"),
    partial("partial-llama-small-fp32-last2-layers-recompute", SMALL_LLAMA, precision="fp32",
            train=["attention", "mlp", "norms"], layers=[2, 3], recompute=True),
    partial("partial-mixtral-small-bf16-router", SMALL_MIXTRAL, precision="bf16", train=["router"],
            note="seed case A at small scale: routers only"),
    partial("partial-mixtral-small-bf16-layers-2-3-experts", SMALL_MIXTRAL, precision="bf16",
            train=["experts", "router"], layers=[2, 3],
            note="seed case B at small scale: the experts (all 8: fused tensors) and routers of 2 layers"),
    fsdp2("fsdp2-llama-small-fp32-8ranks", SMALL_LLAMA, bf16=False),
    fsdp2("fsdp2-llama-small-bf16-8ranks", SMALL_LLAMA, bf16=True),
    fsdp2("fsdp2-mixtral-small-bf16-8ranks", SMALL_MIXTRAL, bf16=True, note="MoE (8 experts top-2) under ZeRO-3"),
    fsdp2("fsdp2-llama3-8b-bf16-8ranks", LLAMA3_8B, bf16=True, batch=1, seq=4096, fake=True),
    fsdp2("fsdp2-llama3-8b-bf16-8ranks-recompute", LLAMA3_8B, bf16=True, batch=1, seq=4096, recompute=True, fake=True),
    *deepspeed("deepspeed-llama3-8b", "llama3-8b", LLAMA3_8B),
    megatron("megatron-llama3-8b-dp8", "llama3-8b", LLAMA3_8B, tp=1, pp=1, dp=8),
    megatron("megatron-llama3-70b-tp8-pp4-dp2", "llama3-70b", LLAMA3_70B, tp=8, pp=4, dp=2, microbatches=64,
             note="the tools README's 70B configuration"),
    megatron("megatron-mixtral-8x7b-tp8", "mixtral-8x7b", MIXTRAL_8X7B, tp=8, pp=1, dp=4, microbatches=8),
    *deepspeed("deepspeed-mixtral-8x7b", "mixtral-8x7b", MIXTRAL_8X7B),
]


def versions() -> dict:
    out = {"python": platform.python_version()}
    for module in ("torch", "transformers", "deepspeed"):
        try:
            out[module] = __import__(module).__version__
        except Exception as exc:  # noqa: BLE001 - record why a version is missing
            out[module] = f"unavailable: {exc}"
    return out


def run_tool(argv: list[str]) -> tuple[dict, float]:
    script = HERE / argv[0] if (HERE / argv[0]).exists() else TOOLS / argv[0]
    env = dict(os.environ)
    if os.environ.get("MEGATRON_BRIDGE_PATH"):  # a `pip install --no-deps --target DIR megatron-bridge==0.3.1`
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.environ["MEGATRON_BRIDGE_PATH"], env.get("PYTHONPATH")]))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script), *argv[1:]], capture_output=True, text=True, env=env,
                          timeout=600)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout), seconds


def _trim(tool: str, output: dict, case: dict) -> dict:
    if tool == "deepspeed_estimate.py":
        row = next(r for r in output["rows"] if all(r[k] == v for k, v in case["row"].items())
                   and r["zero_init"] in (None, True))
        return {k: v for k, v in output.items() if k != "rows"} | {"row": row}
    return output


def measure(cases: list[dict], jobs: int) -> None:
    DATA.mkdir(exist_ok=True)
    meta = versions()
    by_argv: dict[tuple, list[dict]] = {}
    for case in cases:  # DeepSpeed rows share one tool run
        by_argv.setdefault(tuple(case["argv"]), []).append(case)

    def one(argv: tuple) -> None:
        output, seconds = run_tool(list(argv))
        for case in by_argv[argv]:
            doc = {"name": case["name"], "tool": case["tool"], "command": ["python", *case["argv"]],
                   "note": case.get("note", ""), "versions": meta, "planner": case["planner"],
                   "seconds": round(seconds, 1), "output": _trim(case["tool"], output, case)}
            out = REFERENCES if case.get("reference") else DATA
            out.mkdir(exist_ok=True)
            (out / f"{case['name']}.json").write_text(json.dumps(doc, indent=1) + "\n")
            print(f"{case['name']:<52} {seconds:6.1f} s", flush=True)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, by_argv))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=[], help="run configurations whose name contains any of these")
    ap.add_argument("--jobs", type=int, default=1, help="tool runs in parallel (each uses up to all cores)")
    ap.add_argument("--list", action="store_true", help="list the configurations and exit")
    args = ap.parse_args()
    cases = [c for c in CASES if not args.only or any(s in c["name"] for s in args.only)]
    if args.list:
        for c in cases:
            print(c["name"], " ".join(c["argv"]))
        return
    t0 = time.perf_counter()
    measure(cases, args.jobs)
    print(f"{len(cases)} configurations in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
