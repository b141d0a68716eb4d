"""Peak memory of `charrnn sample` with a long piped prime and of `charrnn score` on one long line, as JSON.

Both inputs could be endless (`yes | charrnn sample`, `charrnn score < /dev/zero`), so their memory
should not grow with them. Each command runs in its own process on a tiny 1x32 LSTM trained here
for a few steps; its peak resident memory is the kernel's ru_maxrss for that process. A baseline
(`sample` with a one-character prime) is what loading torch and the model costs by itself.

Any charrnn source tree can be measured, e.g. a worktree of an older commit:

    git worktree add /tmp/charrnn-before HEAD
    python benchmarks/streaming_memory.py --charrnn /tmp/charrnn-before --limit-gb 4
    python benchmarks/streaming_memory.py                       # this tree

--limit-gb caps each command's address space (as `ulimit -v` does): a command that would need more
fails at the limit, and is reported so ("exit" 1, "stopped_at_limit" true), rather than taking the
machine's memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\n"
    "All:\nResolved. resolved.\n\n"
)
TINY_MODEL = ["--layers", "1", "--hidden", "32", "--embed", "16", "--seq-len", "32", "--batch-size", "4",
              "--steps", "20", "--eval-every", "10", "--seed", "1", "-q"]


def run(tree: Path, args: list[str], stdin_path: Path, limit_bytes: int, timeout: float, cwd: Path) -> dict:
    """Run `python -m charrnn ARGS` from `tree` with stdin from a file; its peak RSS, time and exit status."""
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")

    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    start = time.perf_counter()
    with open(stdin_path, "rb") as stdin, tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen([sys.executable, "-m", "charrnn", *args], stdin=stdin, stdout=subprocess.DEVNULL,
                                   stderr=stderr, env=env, cwd=cwd, preexec_fn=limit_memory)
        deadline, status, usage = start + timeout, None, None
        while status is None:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid == 0:
                status = None
                if time.perf_counter() > deadline:
                    process.kill()
                time.sleep(0.05)
        process.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        message = stderr.read().decode("utf-8", "replace").strip().splitlines()
    seconds = time.perf_counter() - start
    return {
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux reports kilobytes
        "seconds": round(seconds, 1),
        "exit": process.returncode,
        "timed_out": seconds > timeout,
        "stopped_at_limit": any(word in " ".join(message) for word in ("MemoryError", "can't allocate", "out of memory")),
        "stderr": message[-1][:200] if message else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--charrnn", type=Path, default=Path(__file__).resolve().parents[1], help="source tree to measure")
    parser.add_argument("--prime-mb", type=float, default=5.0, help="characters (millions) of the piped prime")
    parser.add_argument("--line-mb", type=float, default=50.0, help="characters (millions) of the one line scored")
    parser.add_argument("--limit-gb", type=float, default=4.0, help="address-space limit of each command")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before a command is killed")
    options = parser.parse_args()
    tree = options.charrnn.resolve()
    limit = int(options.limit_gb * 2**30)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "corpus.txt").write_text(TEXT * 50, encoding="utf-8")
        subprocess.run([sys.executable, "-m", "charrnn", "train", "corpus.txt", "-o", "run", *TINY_MODEL], cwd=work,
                       env=dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1"), check=True)
        prime_chars, line_chars = int(options.prime_mb * 1e6), int(options.line_mb * 1e6)
        (work / "one.txt").write_text("A", encoding="utf-8")
        (work / "prime.txt").write_text((TEXT * (prime_chars // len(TEXT) + 1))[:prime_chars], encoding="utf-8")
        line = TEXT.replace("\n", " ")
        with open(work / "line.txt", "w", encoding="utf-8") as out:  # written in pieces: 50 MB is not built in memory
            for _ in range(line_chars // len(line)):
                out.write(line)
            out.write("\n")
        sample = ["sample", "-c", "run", "--length", "100", "--seed", "1", "--device", "cpu"]
        results = {
            "charrnn": str(tree),
            "model": "lstm 1x32",
            "limit_gb": options.limit_gb,
            "baseline_sample": run(tree, sample, work / "one.txt", limit, options.timeout, work),
            f"sample_prime_{options.prime_mb:g}M_chars": run(tree, sample, work / "prime.txt", limit, options.timeout, work),
            f"score_one_line_{options.line_mb:g}M_chars": run(tree, ["score", "-c", "run", "line.txt", "--device", "cpu"],
                                                              work / "one.txt", limit, options.timeout, work),
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
