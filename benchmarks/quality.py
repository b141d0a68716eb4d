"""Quality per minute: train with the defaults for a time budget, print the validation curve as JSON.

Runs `charrnn train CORPUS --time T` exactly as a user would (a subprocess, no other flag unless
given after `--`), then reads the run's metrics.jsonl and checkpoint, and scores best.pt on the
whole validation split with `charrnn eval` (periodic evals may be capped to a sample of it).

    python benchmarks/quality.py /work/shared/corpora/tinyshakespeare.txt --time 1m
    python benchmarks/quality.py corpus.txt --time 5m -- --hidden 512      # overrides, for comparison only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from charrnn.checkpoint import load_checkpoint  # noqa: E402
from charrnn.config import to_dict  # noqa: E402


def charrnn(*args: str, env: dict, capture: bool = True) -> subprocess.CompletedProcess:
    completed = subprocess.run([sys.executable, "-m", "charrnn", *args], env=env, text=True,
                               stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE)
    if completed.returncode != 0:
        raise SystemExit(f"charrnn {' '.join(args)} failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    return completed


def measure(argv: Optional[List[str]] = None) -> dict:
    """Train with the defaults for the budget given on the command line (`argv`); the result as a dict."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", nargs="+", help="corpus files or directories (as for charrnn train)")
    parser.add_argument("--time", required=True, help="training budget: 60s, 5m, 10m ...")
    parser.add_argument("--out", type=Path, default=None, help="keep the run here (default: a temporary directory)")
    parser.add_argument("--no-full-eval", action="store_true", help="skip scoring best.pt on the whole validation split")
    parser.epilog = "Anything after -- goes to charrnn train as extra flags (then it is no longer the defaults)."
    argv = sys.argv[1:] if argv is None else argv
    split_at = argv.index("--") if "--" in argv else len(argv)
    args, overrides = parser.parse_args(argv[:split_at]), argv[split_at + 1 :]

    with tempfile.TemporaryDirectory(prefix="charrnn-quality-") as scratch:
        out = args.out or Path(scratch) / "run"
        env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1", CHARRNN_CACHE_DIR=os.environ.get(
            "CHARRNN_CACHE_DIR", str(Path(scratch) / "cache")))
        started = time.perf_counter()
        train = charrnn("train", *args.corpus, "--time", args.time, "-o", str(out), "--force", *overrides, env=env)
        wall = time.perf_counter() - started
        history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
        saved = load_checkpoint(out / "best.pt")
        full = None
        if not args.no_full_eval:
            full = json.loads(charrnn("eval", "-c", str(out / "best.pt"), "--json", env=env).stdout)
    evals = [h for h in history if h.get("val_loss") is not None]
    last = history[-1] if history else {}
    result = {
        "corpus": [str(c) for c in args.corpus],
        "time_budget": args.time,
        "overrides": overrides,
        "evals": [{"step": h["step"], "elapsed_s": h["elapsed"], "train_loss": round(h["train_loss"], 4),
                   "val_loss": round(h["val_loss"], 4), "chars_per_s": h.get("chars_per_s")} for h in evals],
        "final_val_loss": round(evals[-1]["val_loss"], 4) if evals else None,
        "best_val_loss": round(min(h["val_loss"] for h in evals), 4) if evals else None,
        # best.pt scored on every character of the validation split (the periodic evals may sample it)
        "best_val_loss_full_split": round(full["loss"], 4) if full else None,
        "steps": last.get("step"),
        "train_elapsed_s": last.get("elapsed"),
        # training speed between evals (median over eval windows), and over the whole budget, evals included
        "chars_per_s": round(statistics.median(h["chars_per_s"] for h in history), 1) if history else None,
        "chars_per_s_with_evals": round(last["step"] * saved.train_config.batch_size * saved.train_config.seq_len
                                        / last["elapsed"], 1) if last.get("elapsed") else None,
        "wall_s": round(wall, 1),  # the whole command: start-up, encoding, training, evals, checkpoints
        "model_config": to_dict(saved.model_config),
        "train_config": to_dict(saved.train_config),
        "backend": saved.backend,
        "precision": saved.precision,
        "torch_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "log_tail": train.stderr.strip().splitlines()[-1:] if train.stderr else [],
        # what the budget chose (size, evaluation cadence) and the speeds it timed to choose it
        "budget_note": next((line for line in train.stderr.splitlines() if line.startswith(("sized for", "evaluating every"))), None),
    }
    return result


def main() -> None:
    print(json.dumps(measure(), indent=2))


if __name__ == "__main__":
    main()
