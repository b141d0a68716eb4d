"""Corpora of any size: encode time, cached load time and training's peak memory on a big corpus, as JSON.

The corpus is made here: tiny-shakespeare repeated up to `--size-mb`, each copy followed by a line
of non-ASCII text (accents, Greek, Hangul, emoji), so the encoder cannot take an ASCII shortcut.
Each measurement runs in a fresh process, so peak RSS (the kernel's ru_maxrss) is that step's own:

- encode (cold): `load_corpus` with an empty cache: decode, build the vocabulary, encode, write the cache;
- cached load: `load_corpus` again, the file unchanged (ids memory-mapped from the cache);
- train: `charrnn train FILE --steps N` (defaults otherwise), cold and again with the cache warm;
- baseline: the same training on a 1 MB corpus: the runtime and the model, which the budget excludes.

    python benchmarks/corpus_scale.py                    # 100 MB, ~2 minutes on 2 cores
    python benchmarks/corpus_scale.py --size-mb 10 --steps 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = Path("/work/shared/corpora/tinyshakespeare.txt")
NON_ASCII = "Café naïve — Ελληνικά — 한국어 문장입니다 — 日本語 — emoji 🙂🚀\n"

LOAD = """
import json, sys, time
from charrnn.data import load_corpus
started, cpu = time.perf_counter(), time.process_time()
corpus = load_corpus([sys.argv[1]])
print(json.dumps({"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu,
                  "chars": int(len(corpus.ids)), "vocab": len(corpus.vocab)}))
"""


def make_corpus(path: Path, size_bytes: int, source: Path) -> int:
    """Copies of `source`, each followed by a non-ASCII line, until `size_bytes`; returns the size."""
    piece = source.read_bytes() + NON_ASCII.encode("utf-8")
    with open(path, "wb") as f:
        for _ in range(max(1, -(-size_bytes // len(piece)))):
            f.write(piece)
    return path.stat().st_size


def measured(command: list[str], env: dict) -> dict:
    """Run a command in a fresh process: its stdout, wall seconds and peak RSS (its own ru_maxrss)."""
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, cwd=env["BENCH_CWD"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # wait4 reports this child's own resource usage; read the pipes after (outputs here are small).
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    stdout, stderr = child.stdout.read().decode(), child.stderr.read().decode()
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({child.returncode}):\n{stderr[-2000:]}")
    return {"stdout": stdout, "seconds": seconds, "peak_rss_bytes": usage.ru_maxrss * 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=float, default=100.0)
    parser.add_argument("--steps", type=int, default=20, help="training steps per measured run")
    parser.add_argument("--source", type=Path, default=SHAKESPEARE, help="text to repeat")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for the children")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="charrnn-scale-") as scratch:
        scratch = Path(scratch)
        corpus, small = scratch / "big.txt", scratch / "small.txt"
        size = make_corpus(corpus, int(args.size_mb * 1e6), args.source)
        make_corpus(small, 1_000_000, args.source)
        env = dict(os.environ, CHARRNN_CACHE_DIR=str(scratch / "cache"), OMP_NUM_THREADS=str(args.threads),
                   NO_COLOR="1", BENCH_CWD=str(scratch), PYTHONPATH=str(ROOT))
        load = [sys.executable, "-c", LOAD, str(corpus)]
        cold = measured(load, env)
        cached = measured(load, env)

        charrnn = [sys.executable, "-m", "charrnn", "train", "--steps", str(args.steps), "--eval-every", str(args.steps), "-q"]
        # Clear the cache so the first training run encodes in-process: the worst case for memory.
        for entry in (scratch / "cache" / "encoded").glob("*"):
            entry.unlink()
        train_cold = measured(charrnn + [str(corpus), "-o", str(scratch / "run-cold")], env)
        train_cached = measured(charrnn + [str(corpus), "-o", str(scratch / "run-cached")], env)
        baseline = measured(charrnn + [str(small), "-o", str(scratch / "run-small")], env)

    cold_info, cached_info = json.loads(cold["stdout"]), json.loads(cached["stdout"])
    peak = max(train_cold["peak_rss_bytes"], train_cached["peak_rss_bytes"])
    result = {
        "file_bytes": size,
        "chars": cold_info["chars"],
        "vocab": cold_info["vocab"],
        "encode_s_cold": round(cold_info["seconds"], 3),
        "encode_cpu_s_cold": round(cold_info["cpu_seconds"], 3),  # on a shared machine, closer to a quiet one's wall time
        "encode_peak_rss_mb": round(cold["peak_rss_bytes"] / 1e6, 1),
        "cached_load_s": round(cached_info["seconds"], 4),
        "cached_load_cpu_s": round(cached_info["cpu_seconds"], 4),
        "cached_load_peak_rss_mb": round(cached["peak_rss_bytes"] / 1e6, 1),
        "train_steps": args.steps,
        "train_peak_rss_mb_cold": round(train_cold["peak_rss_bytes"] / 1e6, 1),
        "train_peak_rss_mb_cached": round(train_cached["peak_rss_bytes"] / 1e6, 1),
        "train_seconds_cold": round(train_cold["seconds"], 1),
        "train_seconds_cached": round(train_cached["seconds"], 1),
        "baseline_train_peak_rss_mb_1mb_corpus": round(baseline["peak_rss_bytes"] / 1e6, 1),
        "peak_rss_over_file_size": round(peak / size, 2),
        # The budget is 3x the file plus the model: the 1 MB run's peak stands for runtime + model.
        "peak_rss_minus_baseline_over_file_size": round((peak - baseline["peak_rss_bytes"]) / size, 2),
        "threads": args.threads,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
