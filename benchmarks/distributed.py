"""Training chars/s with torchrun: 1 process against 2 (gloo on the CPU), and optionally one GPU, as JSON.

Each configuration is a real `torchrun --nproc-per-node N -m charrnn train` on the same corpus
(a slice of Python's standard-library source) and model. The figure is the global rate between the
first and the last evaluation in metrics.jsonl (characters of the whole batch over the ranks'
agreed training time), so start-up and the first steps do not count. Rendezvous on 127.0.0.1 only.

Threads: with C cores, one process gets C threads and each of 2 processes C/2, so both use the
whole machine; `one_process_half_threads` (1 process, C/2 threads) is the per-process baseline
that the 2-process figure should ideally double.

    python benchmarks/distributed.py --seconds 20               # short run
    python benchmarks/distributed.py --seconds 120 --hidden 512  # the lead's quiet-machine run
    python benchmarks/distributed.py --gpu                       # adds 1 process on one CUDA GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import torch


def corpus_text(chars: int) -> str:
    """The first `chars` characters of the standard library's source, sorted by path: present everywhere."""
    pieces, total = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        pieces.append(text)
        total += len(text)
        if total >= chars:
            break
    return "".join(pieces)[:chars]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_rate(folder: Path, corpus: Path, processes: int, threads: int, device: str, args) -> dict:
    """Run one torchrun job; chars/s of the whole batch between its first and last evaluation."""
    run_dir = folder / f"run-{device}-{processes}x{threads}"
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(processes),
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}",
               "-m", "charrnn", "train", str(corpus), "-o", str(run_dir), "--force", "-q",
               "--model", args.model, "--layers", str(args.layers), "--hidden", str(args.hidden),
               "--embed", str(args.embed), "--seq-len", str(args.seq_len), "--batch-size", str(args.batch_size),
               "--time", f"{args.seconds}s", "--eval-every", str(args.eval_every), "--val-fraction", "0.01",
               "--device", device]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), CHARRNN_CACHE_DIR=str(folder / "cache"))
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"torchrun failed ({done.returncode}):\n{done.stderr[-2000:]}")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    if len(rows) < 2:
        raise SystemExit(f"{run_dir}: fewer than 2 evaluations in {args.seconds}s; lower --eval-every or raise --seconds")
    first, last = rows[0], rows[-1]
    chars = (last["step"] - first["step"]) * args.batch_size * args.seq_len * processes
    return {"processes": processes, "threads_per_process": threads, "device": device,
            "global_batch": args.batch_size * processes, "steps_timed": last["step"] - first["step"],
            "chars_per_s": round(chars / (last["elapsed"] - first["elapsed"]), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="training time per configuration")
    parser.add_argument("--model", default="lstm")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--embed", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32, help="per process (the global batch grows with N)")
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--corpus-chars", type=int, default=2_000_000)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2, help="CPU cores to use in all")
    parser.add_argument("--gpu", action="store_true", help="also 1 process on one CUDA GPU")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="charrnn-ddp-bench-") as name:
        folder = Path(name)
        corpus = folder / "corpus.txt"
        corpus.write_text(corpus_text(args.corpus_chars), encoding="utf-8")
        half = max(1, args.cores // 2)
        one = train_rate(folder, corpus, 1, args.cores, "cpu", args)
        one_half = train_rate(folder, corpus, 1, half, "cpu", args)
        two = train_rate(folder, corpus, 2, half, "cpu", args)
        result = {
            "benchmark": "torchrun training chars/s, 1 vs 2 processes (gloo, CPU)",
            "machine": {"platform": platform.platform(), "cpu_cores": os.cpu_count(), "cores_used": args.cores,
                        "torch": torch.__version__},
            "model": {"model": args.model, "layers": args.layers, "hidden": args.hidden, "embed": args.embed,
                      "seq_len": args.seq_len, "batch_size_per_process": args.batch_size},
            "seconds_per_run": args.seconds,
            "one_process": one,
            "one_process_half_threads": one_half,
            "two_processes": two,
            "speedup_2_vs_1_same_cores": round(two["chars_per_s"] / one["chars_per_s"], 3),
            "scaling_efficiency_vs_half_threads": round(two["chars_per_s"] / (2 * one_half["chars_per_s"]), 3),
        }
        if args.gpu:
            if not torch.cuda.is_available():
                raise SystemExit("--gpu: no CUDA GPU here")
            result["one_gpu"] = train_rate(folder, corpus, 1, args.cores, "cuda", args)
            result["one_gpu"]["name"] = torch.cuda.get_device_name(0)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
