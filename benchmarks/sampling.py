"""Sampling speed: charrnn's generation against a naive loop, as JSON.

The model is an LSTM (default 2x512, vocabulary 65) with random weights: speed does not depend on
what the weights say. Six loops, interleaved over `--repeats` rounds so that a shared machine's
noise hits them alike; the ratios within a round are the figures to compare:

- naive: `model(ids, state)` for every new character (torch's own nn.LSTM kernel at T=1), softmax, multinomial;
- naive_onednn: the same on torch's default CPU path, oneDNN, which is far slower one character at a time;
- generate: `charrnn.sample.generate`, batch 1 (what `charrnn sample` runs: fp16 weights on x86 CPUs);
- generate_fp32: the same with fp32 weights (`--precision fp32`), when the default is fp16;
- generate -n 16: the default, 16 samples in one batch (int8 weights on x86 CPUs); its cost
  relative to one sample;
- generate -n 16 fp16: the batch with the weights one sample uses, for comparison.

Each loop runs on the threads `charrnn sample` gives it (one for a single sample; for a batch, the
faster of one and every core, timed as it runs) unless --threads fixes them.

    python benchmarks/sampling.py                      # ~1 minute on 2 quiet cores
    python benchmarks/sampling.py --length 200 --repeats 3 --threads 2
    python benchmarks/sampling.py --busy 1             # while another process holds a core
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from charrnn.config import ModelConfig, SamplingSettings  # noqa: E402
from charrnn.model import CharRNN  # noqa: E402
from charrnn.sample import generate, on_fastest_threads, resolve_weight_precision, thread_choices  # noqa: E402
from charrnn.vocab import Vocab  # noqa: E402

VOCAB = Vocab("".join(chr(c) for c in range(32, 32 + 64)) + "\n")  # 65 characters, like tiny-shakespeare's


@torch.inference_mode()
def naive_loop(model: CharRNN, length: int, seed: int, onednn: bool = False, threads: Optional[int] = None) -> None:
    """The textbook loop: the whole model called once per character.

    On the CPU, torch's default for nn.LSTM is oneDNN, whose per-call set-up makes a one-character
    call about ten times slower than torch's own kernel: `onednn=False` is the fair baseline.
    """
    torch.set_num_threads(threads or 1)
    generator = torch.Generator().manual_seed(seed)
    ids, state = torch.zeros(1, 1, dtype=torch.long), None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mkldnn.flags() warns about TF32 on Intel GPUs
        with torch.backends.mkldnn.flags(enabled=onednn):
            for _ in range(length):
                logits, state = model(ids, state)
                ids = torch.multinomial(torch.softmax(logits[:, -1], dim=-1), 1, generator=generator)


def charrnn_loop(model: CharRNN, length: int, seed: int, num_samples: int, precision: str = "auto",
                 threads: Optional[int] = None) -> None:
    """What `charrnn sample` runs; its choice of threads unless `threads` fixes them."""
    steps = generate(model, VOCAB, settings=SamplingSettings(length=length, seed=seed, n=num_samples, precision=precision))
    for _ in on_fastest_threads(steps, (threads,) if threads else thread_choices(num_samples)):
        pass


def timed(run) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--embed", type=int, default=64)
    parser.add_argument("--model", default="lstm", choices=["rnn", "gru", "lstm"])
    parser.add_argument("--length", type=int, default=1000, help="characters per timed loop")
    parser.add_argument("--naive-length", type=int, default=None, help="characters for the naive loop (default: --length)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--batch", type=int, default=16, help="the -n to compare with one sample")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for every loop (default: what charrnn sample uses; the naive loops get 1)")
    parser.add_argument("--busy", type=int, default=0, help="processes that spin on a core each while the loops run")
    args = parser.parse_args()
    threads = args.threads
    naive_length = args.naive_length or args.length

    torch.manual_seed(0)
    config = ModelConfig(vocab_size=len(VOCAB), model=args.model, layers=args.layers, hidden=args.hidden, embed=args.embed)
    model = CharRNN(config).eval()
    cpu = torch.device("cpu")
    batch_name, batch_weights = f"generate_n{args.batch}", resolve_weight_precision("auto", cpu, args.batch)
    loops = {
        "naive": (naive_length, lambda: naive_loop(model, naive_length, 1, threads=threads)),
        "naive_onednn": (naive_length, lambda: naive_loop(model, naive_length, 1, onednn=True, threads=threads)),
        "generate": (args.length, lambda: charrnn_loop(model, args.length, 1, 1, threads=threads)),
        "generate_fp32": (args.length, lambda: charrnn_loop(model, args.length, 1, 1, "fp32", threads)),
        batch_name: (args.length, lambda: charrnn_loop(model, args.length, 1, args.batch, threads=threads)),
    }
    weights = resolve_weight_precision("auto", cpu)
    if batch_weights != weights:
        loops[f"{batch_name}_{weights}"] = (args.length, lambda: charrnn_loop(model, args.length, 1, args.batch, weights, threads))
    for _, run in loops.values():  # warm-up: allocator, oneDNN primitives, packed weights, caches
        run()
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        rounds = [{name: timed(run) for name, (_, run) in loops.items()} for _ in range(args.repeats)]
    finally:
        for spinner in spinners:
            spinner.kill()

    def steps_per_s(name: str, clock: str) -> list[float]:
        length = loops[name][0]
        return [length / r[name][clock] for r in rounds]

    def cost_vs_one_sample(name: str, clock: str = "wall_s") -> float:
        return round(statistics.median(r[name][clock] / r["generate"][clock] for r in rounds), 2)

    weight_bytes = sum(p.numel() * (2 if weights == "fp16" else 4) for name, p in model.named_parameters() if name != "embedding.weight")
    best_generate = max(steps_per_s("generate", "wall_s"))
    result = {
        "model": f"{args.model} {args.layers}x{args.hidden}, embed {args.embed}, vocab {len(VOCAB)}",
        "thread_choices": {"one_sample": [threads] if threads else thread_choices(1),
                           "batch": [threads] if threads else thread_choices(args.batch)},
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "length": args.length,
        "naive_length": naive_length,
        "repeats": args.repeats,
        "busy_processes": args.busy,
        # chars/s: the best round (least disturbed by other processes) and the median one.
        "batch1_chars_per_s": {"best": round(best_generate), "median": round(statistics.median(steps_per_s("generate", "wall_s")))},
        "batch1_fp32_weights_chars_per_s": {"best": round(max(steps_per_s("generate_fp32", "wall_s"))),
                                            "median": round(statistics.median(steps_per_s("generate_fp32", "wall_s")))},
        "weights": weights,
        "batch_weights": batch_weights,
        "speedup_over_fp32_weights": round(statistics.median(
            r["generate_fp32"]["wall_s"] / r["generate"]["wall_s"] for r in rounds), 2),
        "naive_chars_per_s": {"best": round(max(steps_per_s("naive", "wall_s"))),
                              "median": round(statistics.median(steps_per_s("naive", "wall_s")))},
        "naive_onednn_chars_per_s": round(max(steps_per_s("naive_onednn", "wall_s"))),
        "batch1_chars_per_cpu_s": round(max(steps_per_s("generate", "cpu_s"))),
        "naive_chars_per_cpu_s": round(max(steps_per_s("naive", "cpu_s"))),
        # Ratios within each round, then their median: robust to a machine whose load changes.
        "speedup_over_naive": round(statistics.median(
            (r["naive"]["wall_s"] / naive_length) / (r["generate"]["wall_s"] / args.length) for r in rounds), 2),
        f"n{args.batch}_cost_vs_one_sample": cost_vs_one_sample(batch_name),
        # The same ratios in CPU seconds: steadier than wall time when other processes share the cores.
        "speedup_over_naive_cpu": round(statistics.median(
            (r["naive"]["cpu_s"] / naive_length) / (r["generate"]["cpu_s"] / args.length) for r in rounds), 2),
        f"n{args.batch}_cpu_cost_vs_one_sample": cost_vs_one_sample(batch_name, "cpu_s"),
        f"n{args.batch}_chars_per_s": round(max(args.batch * s for s in steps_per_s(batch_name, "wall_s"))),
        # Every step reads every recurrent and head weight once: the floor on memory traffic at batch 1.
        "weight_mb_read_per_char": round(weight_bytes / 1e6, 2),
        "implied_weight_gb_per_s": round(best_generate * weight_bytes / 1e9, 1),
        "rounds": rounds,
    }
    if f"{batch_name}_{weights}" in loops:  # the batch with one sample's weights, for comparison
        result[f"n{args.batch}_{weights}_cost_vs_one_sample"] = cost_vs_one_sample(f"{batch_name}_{weights}")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
