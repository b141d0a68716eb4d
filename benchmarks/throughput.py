"""Training and sampling throughput per implementation (fused | cells) and cell type, as JSON.

Training chars/s is charrnn's own `Trainer.train_step` (embedding, recurrent stack, head, loss,
backward, clipping, optimizer) on a synthetic corpus; sampling chars/s is `sample.generate` with
batch 1 and the hidden state carried. Next to them: the machine's GEMM ceiling measured in the
same run, and the model's achieved GFLOP/s as a fraction of it. Absolute figures on a shared
machine are noisy; compare the ratios within one run.

    python benchmarks/throughput.py                 # short run (< 2 min on 2 cores)
    python benchmarks/throughput.py --full          # LSTM 2x512, seq 128, batch 64, fused and cells
    python benchmarks/throughput.py --gpu           # LSTM 3x1024, batch 128, seq 256, bf16 on CUDA, fused and cells
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from charrnn.model import GATES  # noqa: E402
from charrnn.config import ModelConfig, SamplingSettings, TrainConfig  # noqa: E402
from charrnn.device import pick_device, resolve_precision  # noqa: E402
from charrnn.sample import generate  # noqa: E402
from charrnn.trainer import Trainer, prepare  # noqa: E402

FLOPS_COUNTED = (
    "matmul FLOPs only, per character: forward = sum over layers of 2*gates*H*(in+H) "
    "(gates: rnn 1, gru 3, lstm 4; in = embed for layer 0, else H) + head 2*H*V; "
    "training = 3x forward (backward ~ 2x forward); sampling = 1x forward. "
    "Embedding lookups, gate nonlinearities, loss and optimizer are not counted."
)

# Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, in TFLOP/s.
BF16_DENSE_PEAK_TFLOPS = {
    "H200": 989.4,
    "H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 756.0,
    "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 70.0, "A10": 125.0,
}


def forward_flops_per_char(kind: str, layers: int, hidden: int, embed: int, vocab: int) -> int:
    total = 0
    for layer in range(layers):
        layer_input = embed if layer == 0 else hidden
        total += 2 * GATES[kind] * hidden * (layer_input + hidden)
    return total + 2 * hidden * vocab


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_rate(fn, flops: float, repeats: int, device: torch.device) -> float:
    """Best GFLOP/s over `repeats` timed calls, after one untimed warm-up."""
    fn()
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - started)
    return flops / best / 1e9


def cpu_gemm_ceiling(size: int, repeats: int) -> dict:
    """fp32 GEMM: torch.matmul (MKL or OpenBLAS) and oneDNN's linear; the better is the ceiling."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    flops = 2.0 * size ** 3
    result = {"matrix": size, "dtype": "fp32", "torch_matmul_gflops": best_rate(lambda: a @ b, flops, repeats, torch.device("cpu"))}
    if torch.backends.mkldnn.is_available():
        a_onednn, b_onednn = a.to_mkldnn(), b.to_mkldnn()
        result["onednn_linear_gflops"] = best_rate(lambda: torch._C._nn.mkldnn_linear(a_onednn, b_onednn), flops,
                                                   repeats, torch.device("cpu"))
    result["best_gflops"] = max(v for k, v in result.items() if k.endswith("_gflops"))
    return result


def cuda_gemm_ceiling(device: torch.device, size: int, repeats: int, dtype: torch.dtype) -> dict:
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    rate = best_rate(lambda: a @ b, 2.0 * size ** 3, repeats, device)
    return {"matrix": size, "dtype": str(dtype).replace("torch.", ""), "torch_matmul_gflops": rate, "best_gflops": rate}


def nominal_bf16_peak(device: torch.device) -> tuple[str, float | None]:
    name = torch.cuda.get_device_name(device)
    for key, tflops in BF16_DENSE_PEAK_TFLOPS.items():  # most specific names first
        if key in name:
            return name, tflops * 1e3
    return name, None


def write_corpus(path: Path, chars: int, vocab: int, seed: int) -> None:
    """Random text over `vocab` printable characters: throughput does not depend on what is learned."""
    alphabet = np.array([chr(c) for c in range(32, 32 + vocab - 1)] + ["\n"])
    rng = np.random.default_rng(seed)
    path.write_text("".join(alphabet[rng.integers(0, vocab, size=chars)]), encoding="utf-8")


def bare_recurrent_gflops(trainer: Trainer, args, precision_context) -> float:
    """Only the recurrent stack, forward + backward on random inputs: what the full step is measured against."""
    model = trainer.model
    inputs = torch.randn(args.batch_size, args.seq_len, args.embed, device=trainer.device, requires_grad=False)
    state = model.initial_state(args.batch_size, trainer.device)

    def step():
        with precision_context():
            outputs, _ = model.rnn(inputs, state)
        outputs.float().sum().backward()

    flops = 3.0 * (forward_flops_per_char(args.kind, args.layers, args.hidden, args.embed, 0)) * args.batch_size * args.seq_len
    return best_rate(step, flops, args.steps, trainer.device)


def measure_training(trainer: Trainer, steps: int) -> float:
    """Seconds per step, the best of `steps` single steps (the machine is shared: the best is the least disturbed)."""
    best = float("inf")
    for _ in range(steps):
        synchronize(trainer.device)
        started = time.perf_counter()
        trainer.train_step(1e-4)  # a small lr: random text must not blow the weights up
        synchronize(trainer.device)
        best = min(best, time.perf_counter() - started)
    return best


def measure_sampling(trainer: Trainer, chars: int) -> float:
    model = trainer.model
    started = time.perf_counter()
    produced = sum(1 for _ in generate(model, trainer.corpus.vocab, settings=SamplingSettings(length=chars, seed=0),
                                       device=trainer.device))
    synchronize(trainer.device)
    seconds = time.perf_counter() - started
    model.train()
    return produced / seconds


def run(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    precision = resolve_precision(args.precision, device)
    chars_per_step = args.batch_size * args.seq_len
    report = {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "precision": precision,
        "size": {"layers": args.layers, "hidden": args.hidden, "embed": args.embed, "seq_len": args.seq_len,
                 "batch_size": args.batch_size, "vocab": args.vocab},
        "timing": f"training: best single step of {args.steps} after {args.warmup} warm-up, per round, best of "
                  f"{args.rounds} rounds; sampling: {args.sample_chars} chars, batch 1",
        "flops_counted": FLOPS_COUNTED,
    }
    if device.type == "cuda":
        ceiling_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        report["gemm_ceiling"] = cuda_gemm_ceiling(device, args.gemm_size, args.gemm_repeats, ceiling_dtype)
        name, peak = nominal_bf16_peak(device)
        report["bf16_dense_peak_gflops"] = peak
        report["bf16_dense_peak_source"] = f"vendor data sheet for {name}" if peak else f"unknown GPU {name}"
    else:
        report["gemm_ceiling"] = cpu_gemm_ceiling(args.gemm_size, args.gemm_repeats)

    results = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        os.environ.setdefault("CHARRNN_CACHE_DIR", str(scratch / "cache"))
        corpus = scratch / "corpus.txt"
        write_corpus(corpus, chars_per_step * (args.warmup + args.steps + 2) + 1, args.vocab, seed=0)
        trainers = {}
        for kind in args.kinds:
            for impl in args.impls:
                trainer = prepare([str(corpus)],
                                  ModelConfig(model=kind, layers=args.layers, hidden=args.hidden, embed=args.embed),
                                  TrainConfig(seq_len=args.seq_len, batch_size=args.batch_size, steps=10 ** 9,
                                              val_fraction=0.0, device=args.device, impl=impl,
                                              precision=args.precision),
                                  scratch / f"run-{kind}-{impl}")
                trainer.model.train()
                for _ in range(args.warmup):
                    trainer.train_step(1e-4)
                trainers[kind, impl] = trainer
        # Rounds interleave the configurations, so that a burst of load elsewhere hits them all alike.
        seconds = {key: float("inf") for key in trainers}
        for _ in range(args.rounds):
            for key, trainer in trainers.items():
                seconds[key] = min(seconds[key], measure_training(trainer, args.steps))
        ceiling = report["gemm_ceiling"]["best_gflops"]
        for (kind, impl), trainer in trainers.items():
            forward = forward_flops_per_char(kind, args.layers, args.hidden, args.embed, len(trainer.corpus.vocab))
            train_cps = chars_per_step / seconds[kind, impl]
            train_gflops = 3 * forward * train_cps / 1e9
            entry = {"kind": kind, "impl": impl, "backend": trainer.backend, "precision": trainer.precision,
                     "train_chars_per_s": round(train_cps, 1), "train_step_s": round(seconds[kind, impl], 4),
                     "train_gflops": round(train_gflops, 2),
                     "train_fraction_of_gemm_ceiling": round(train_gflops / ceiling, 4)}
            if "bf16_dense_peak_gflops" in report and report["bf16_dense_peak_gflops"]:
                entry["train_fraction_of_bf16_dense_peak"] = round(train_gflops / report["bf16_dense_peak_gflops"], 4)
            if args.bare and impl == "fused":
                context = (lambda: torch.autocast(trainer.device.type, dtype=torch.bfloat16)) if trainer.precision == "bf16" \
                    else contextlib.nullcontext
                bare = bare_recurrent_gflops(trainer, args_for(args, kind), context)
                entry["bare_recurrent_gflops"] = round(bare, 2)
                entry["bare_recurrent_fraction_of_gemm_ceiling"] = round(bare / ceiling, 4)
                entry["full_step_over_bare_recurrent"] = round(train_gflops / bare, 4)
            if args.sample_chars:
                sample_cps = measure_sampling(trainer, args.sample_chars)
                entry["sample_chars_per_s"] = round(sample_cps, 1)
                entry["sample_gflops"] = round(forward * sample_cps / 1e9, 3)
            results.append(entry)
    report["results"] = results
    report["ratios"] = ratios(results)
    if device.type == "cpu":  # a second look at the ceiling: load elsewhere may have hidden it the first time
        again = cpu_gemm_ceiling(args.gemm_size, args.gemm_repeats)
        if again["best_gflops"] > report["gemm_ceiling"]["best_gflops"]:
            report["gemm_ceiling_remeasured_higher"] = again
    return report


def args_for(args, kind):
    return argparse.Namespace(**{**vars(args), "kind": kind})


def ratios(results: list[dict]) -> dict:
    """fused / cells speed-ups per cell type, from figures taken in this one run."""
    by_key = {(r["kind"], r["impl"]): r for r in results}
    out = {}
    for kind in {r["kind"] for r in results}:
        fused, cells = by_key.get((kind, "fused")), by_key.get((kind, "cells"))
        if fused and cells:
            out[kind] = {"fused_over_cells_train": round(fused["train_chars_per_s"] / cells["train_chars_per_s"], 3)}
            if "sample_chars_per_s" in fused:
                out[kind]["fused_over_cells_sample"] = round(fused["sample_chars_per_s"] / cells["sample_chars_per_s"], 3)
    return out


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="rnn,gru,lstm", help="comma-separated cell types")
    parser.add_argument("--impls", default="fused,cells", help="comma-separated implementations")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--embed", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=96)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", help="auto|fp32|bf16 (auto: bf16 on CUDA)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per configuration and round")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sample-chars", type=int, default=300, help="0 skips sampling")
    parser.add_argument("--gemm-size", type=int, default=2048)
    parser.add_argument("--gemm-repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, all cores)")
    parser.add_argument("--no-bare", dest="bare", action="store_false", help="skip the bare recurrent-stack reference")
    parser.add_argument("--full", action="store_true", help="the issue's CPU target: LSTM 2x512, seq 128, batch 64")
    parser.add_argument("--gpu", action="store_true", help="the issue's GPU target: LSTM 3x1024, batch 128, seq 256, bf16")
    args = parser.parse_args(argv)
    if args.full:
        args.kinds, args.layers, args.hidden, args.seq_len, args.batch_size = "lstm", 2, 512, 128, 64
        args.steps, args.rounds, args.sample_chars = max(args.steps, 3), max(args.rounds, 2), max(args.sample_chars, 1000)
    if args.gpu:
        args.kinds, args.layers, args.hidden, args.seq_len, args.batch_size = "lstm", 3, 1024, 256, 128
        args.device, args.precision = "cuda", "bf16"
        args.steps, args.warmup, args.rounds, args.gemm_size = max(args.steps, 10), max(args.warmup, 3), 3, 8192
        args.sample_chars = max(args.sample_chars, 2000)
    args.kinds = [k for k in args.kinds.split(",") if k]
    args.impls = [i for i in args.impls.split(",") if i]
    return args


if __name__ == "__main__":
    print(json.dumps(run(parse()), indent=2))
