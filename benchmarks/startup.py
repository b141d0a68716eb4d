"""Start-up: how long the command takes before it can say anything, as JSON.

The wall time of `python -c pass`, `charrnn --help` and `charrnn --version` (median of --repeats
runs each, interleaved so that a busy machine slows them alike), and the time from starting
`charrnn sample -c RUN --length 1` to its first character on stdout (torch's import, loading the
checkpoint, the first step). RUN is a tiny run trained here unless --run names one.

    python benchmarks/startup.py                 # ~15 s on 2 cores
    python benchmarks/startup.py --run runs/tinyshakespeare --repeats 9
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n" * 40


def command() -> list[str]:
    script = Path(sys.executable).with_name("charrnn")
    return [str(script)] if script.exists() else [shutil.which("charrnn") or "charrnn"]


def wall(argv: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def first_character(argv: list[str], env: dict) -> float:
    """Seconds from starting `argv` to the first byte it writes to stdout."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    process.stdout.read(1)
    seconds = time.perf_counter() - started
    process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({process.returncode})")
    return seconds


def tiny_run(folder: Path, env: dict) -> Path:
    corpus = folder / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    subprocess.run(command() + ["train", str(corpus), "-o", str(folder / "run"), "--steps", "20", "--layers", "1",
                                "--hidden", "32", "--embed", "16", "--seq-len", "32", "--batch-size", "4", "-q"],
                   env=env, check=True)
    return folder / "run"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="A run directory to sample from (default: a tiny run trained here).")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        env = dict(os.environ, CHARRNN_CACHE_DIR=str(Path(folder) / "cache"))
        run = Path(args.run) if args.run else tiny_run(Path(folder), env)
        timings = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "charrnn --help": command() + ["--help"],
            "charrnn --version": command() + ["--version"],
        }
        seconds = {name: [] for name in timings}
        first = []
        for _ in range(args.repeats):
            for name, argv in timings.items():
                seconds[name].append(wall(argv, env))
            first.append(first_character(command() + ["sample", "-c", str(run), "--length", "1", "--seed", "1"], env))
    medians = {name: round(statistics.median(values), 3) for name, values in seconds.items()}
    print(json.dumps({
        "wall_s": medians,
        "help_over_python_s": round(medians["charrnn --help"] - medians["python -c pass"], 3),
        "first_sampled_char_s": round(statistics.median(first), 3),
        "repeats": args.repeats,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_1m": os.getloadavg()[0]},
    }, indent=2))


if __name__ == "__main__":
    main()
