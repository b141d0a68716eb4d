"""Whether `--time` holds: the whole `charrnn train CORPUS --time T` command, process start to exit, quiet and
beside a CPU hog, as JSON.

For each budget T and each load, runs the installed command in a subprocess (a fresh run directory and corpus
cache each time, so every run pays what a first run pays) and reports its wall seconds, the overrun, the steps and
evaluations it made (metrics.jsonl), and whether it ended within the target: 5% of T (at least 5 s) on a quiet
machine, 15% (at least 10 s) with its cores busy. "busy" starts `--hogs` processes of `yes > /dev/null` before the
command and kills them after it. Run it alone on the machine: other work makes "quiet" busy.

    python benchmarks/busy_budget.py                       # 5s and 30s, quiet and busy: ~2 minutes
    python benchmarks/busy_budget.py --times 5s --loads busy --corpus my.txt
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from charrnn.config import parse_duration

TINY_SHAKESPEARE = "/work/shared/corpora/tinyshakespeare.txt"
TARGETS = {"quiet": (0.05, 5.0), "busy": (0.15, 10.0)}  # (share of T, least seconds) the command may miss T by


def command() -> list[str]:
    script = Path(sys.executable).with_name("charrnn")
    return [str(script)] if script.exists() else [shutil.which("charrnn") or "charrnn"]


def hogs_started(count: int) -> list[subprocess.Popen]:
    """`count` processes of `yes > /dev/null`, each wanting a whole core."""
    return [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(count)]


def timed_train(corpus: str, budget: str, folder: Path) -> dict:
    """Wall seconds of one `charrnn train` from its start to its exit, and what its run directory recorded."""
    env = dict(os.environ, CHARRNN_CACHE_DIR=str(folder / "cache"))
    run = folder / "run"
    started = time.perf_counter()
    done = subprocess.run(command() + ["train", corpus, "--time", budget, "-o", str(run), "--force"], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    metrics = run / "metrics.jsonl"
    entries = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.exists() else []
    sizing = next((line for line in done.stderr.splitlines() if line.startswith("sized for")), None)
    return {"rc": done.returncode, "wall_s": round(wall, 2), "evaluations": len(entries),
            "steps": entries[-1]["step"] if entries else 0, "sizing": sizing,
            "error": done.stderr.strip().splitlines()[-1] if done.returncode and done.stderr.strip() else None}


def measured(corpus: str, budget: str, load: str, hogs: int) -> dict:
    seconds = parse_duration(budget)
    share, least = TARGETS[load]
    tolerance = max(share * seconds, least)
    load_before = os.getloadavg()[0]
    running = hogs_started(hogs) if load == "busy" else []
    try:
        with tempfile.TemporaryDirectory(prefix="busy_budget_") as folder:
            result = timed_train(corpus, budget, Path(folder))
    finally:
        for hog in running:
            hog.kill()
            hog.wait()
    overrun = result["wall_s"] - seconds
    return {"time": budget, "load": load, "hogs": len(running), **result, "overrun_s": round(overrun, 2),
            "overrun_pct": round(100 * overrun / seconds, 1), "tolerance_s": round(tolerance, 2),
            "within_target": result["rc"] == 0 and abs(overrun) <= tolerance,
            "load_average_before": round(load_before, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=TINY_SHAKESPEARE, help="the text to train on (default: tiny-shakespeare)")
    parser.add_argument("--times", nargs="+", default=["5s", "30s"], help="the --time budgets")
    parser.add_argument("--loads", nargs="+", choices=sorted(TARGETS), default=["quiet", "busy"])
    parser.add_argument("--hogs", type=int, default=2, help="processes of `yes > /dev/null` beside a busy run")
    args = parser.parse_args()
    runs = [measured(args.corpus, budget, load, args.hogs) for budget in args.times for load in args.loads]
    print(json.dumps({"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                  "python": platform.python_version()},
                      "corpus": args.corpus, "targets": {load: {"share": share, "least_s": least}
                                                         for load, (share, least) in TARGETS.items()},
                      "runs": runs, "all_within_target": all(run["within_target"] for run in runs)}, indent=2))


if __name__ == "__main__":
    main()
