"""Fine-tuning vs a fresh start on a small text, at equal minutes. Prints JSON.

A base model trains on a big corpus (or --base names one already trained). Then, for each budget in
--tune-times, one model fine-tunes from the base (--init-from, with its defaults) and one trains from
scratch (the defaults, sized for the budget), each on the small text for that long. Reported, in
nats/char: both models on the small text's held-out last 10% (each run's own validation split), and
the base and each fine-tuned model on the big corpus's held-out last 10% (what fine-tuning forgets).

    python benchmarks/finetune.py --corpus ../shared/corpora/tinyshakespeare.txt \
        --text /usr/share/games/fortunes/literature                                  # 5m base, then 1m and 5m
    python benchmarks/finetune.py --corpus BIG.txt --text SMALL.txt --base-time 20s --tune-times 10s \
        --shape "--hidden 64"                                                       # a quick try
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path


def charrnn(*args) -> str:
    command = [sys.executable, "-m", "charrnn", *map(str, args)]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def loss(run: Path, *text) -> float:
    """nats/char of the run's best.pt on `text` (default: the run's own validation split)."""
    return round(json.loads(charrnn("eval", "--json", "-c", run, *text))["bpc"] * math.log(2), 4)


def steps(run: Path) -> int:
    return json.loads(charrnn("info", "--json", "-c", run / "last.pt"))["steps"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="the big corpus the base model trains on")
    parser.add_argument("--text", required=True, help="the small new text (10 to 100 KB)")
    parser.add_argument("--base", type=Path, help="a base run already trained on --corpus (skips --base-time)")
    parser.add_argument("--base-time", default="5m")
    parser.add_argument("--tune-times", default="1m,5m", help="budgets of the fine-tuned and the fresh model, each")
    parser.add_argument("--shape", default="", help="model flags for the base and the fresh models, e.g. '--hidden 64'")
    parser.add_argument("--out", type=Path, help="where the runs go (default: a temporary folder)")
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="charrnn-finetune-"))
    out.mkdir(parents=True, exist_ok=True)
    shape = shlex.split(args.shape)
    base = args.base
    if base is None:
        base = out / "base"
        charrnn("train", args.corpus, *shape, "--time", args.base_time, "-q", "--force", "-o", base)
    big = Path(args.corpus).read_text("utf-8")
    held_out = out / "corpus-last-10pct.txt"
    held_out.write_text(big[len(big) - len(big) // 10:], encoding="utf-8")

    budgets = {}
    for budget in args.tune_times.split(","):
        tuned, scratch = out / f"tuned-{budget}", out / f"scratch-{budget}"
        charrnn("train", args.text, "--init-from", base, "--time", budget, "-q", "--force", "-o", tuned)
        charrnn("train", args.text, *shape, "--time", budget, "-q", "--force", "-o", scratch)
        on_text = {"tuned": loss(tuned), "scratch": loss(scratch)}
        budgets[budget] = {
            "on_text": on_text, "gain": round(on_text["scratch"] - on_text["tuned"], 4),
            "tuned_on_corpus": loss(tuned, held_out), "steps": {"tuned": steps(tuned), "scratch": steps(scratch)},
            "scratch_shape": json.loads(charrnn("info", "--json", "-c", scratch))["hidden"],
        }
    print(json.dumps({
        "corpus": args.corpus, "text": args.text, "text_chars": len(Path(args.text).read_text("utf-8")),
        "base": str(base), "base_steps": steps(base), "base_on_corpus": loss(base, held_out),
        "shape": args.shape, "budgets": budgets,
    }, indent=1))


if __name__ == "__main__":
    main()
