"""Fine-tuning vs a fresh start: bpc on a small new text after the same short budget. Prints JSON.

A base model trains on the first 90% of a big corpus (tiny-shakespeare); then, on a small
different English text (default: the license texts in /usr/share/common-licenses), one model
fine-tunes from it (--init-from) and one trains from scratch, each for the same time. Reported:
bpc of both on the small text's held-out last 10%, and of the base and the fine-tuned model on
the big corpus's held-out last 10% (what fine-tuning forgets).

    python benchmarks/finetune.py --corpus ../shared/corpora/tinyshakespeare.txt            # 5m + 1m + 1m
    python benchmarks/finetune.py --corpus ... --base-time 20s --tune-time 10s --shape "--layers 1 --hidden 64"
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

LICENSES = Path("/usr/share/common-licenses")


def charrnn(*args: str) -> str:
    command = [sys.executable, "-m", "charrnn", *map(str, args)]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def bpc(*args: str) -> float:
    return json.loads(charrnn("eval", "--json", *args))["bpc"]


def steps(run: Path) -> int:
    return json.loads(charrnn("info", "--json", "-c", run / "last.pt"))["steps"]


def license_text(folder: Path) -> str:
    """The license texts, each once (the folder's symlinks are aliases), in sorted order."""
    files = sorted(p for p in LICENSES.iterdir() if p.is_file() and not p.is_symlink())
    if not files:
        sys.exit(f"no license texts under {LICENSES}; pass --text FILE")
    path = folder / "licenses.txt"
    path.write_text("".join(p.read_text("utf-8", errors="replace") for p in files), encoding="utf-8")
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="the big corpus for the base model (tiny-shakespeare)")
    parser.add_argument("--text", help="the small new text (default: the license texts in /usr/share/common-licenses)")
    parser.add_argument("--base-time", default="5m")
    parser.add_argument("--tune-time", default="1m", help="budget of the fine-tuned and of the fresh model, each")
    parser.add_argument("--shape", default="", help="model flags for the base and the fresh model, e.g. '--layers 1 --hidden 128'")
    parser.add_argument("--train-flags", default="", help="training flags for all three runs, e.g. '--batch-size 16 --seq-len 64'")
    parser.add_argument("--out", type=Path, help="where the runs go (default: a temporary folder)")
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="charrnn-finetune-"))
    out.mkdir(parents=True, exist_ok=True)
    text = args.text or license_text(out)
    shape, flags = shlex.split(args.shape), shlex.split(args.train_flags)
    base, tuned, scratch = out / "base", out / "tuned", out / "scratch"

    charrnn("train", args.corpus, *shape, *flags, "--time", args.base_time, "-q", "--force", "-o", base)
    charrnn("train", text, "--init-from", base, *flags, "--time", args.tune_time, "-q", "--force", "-o", tuned)
    charrnn("train", text, *shape, *flags, "--time", args.tune_time, "-q", "--force", "-o", scratch)

    big = Path(args.corpus).read_text("utf-8")
    held_out = out / "corpus-last-10pct.txt"
    held_out.write_text(big[len(big) - int(len(big) * 0.1):], encoding="utf-8")
    small = Path(text).read_text("utf-8")
    info = json.loads(charrnn("info", "--json", "-c", tuned))
    print(json.dumps({
        "corpus": args.corpus, "text": text, "text_chars": len(small),
        "new_characters": info["vocab_size"] - info["init_from"]["vocab_size"],
        "base_time": args.base_time, "tune_time": args.tune_time, "shape": args.shape, "train_flags": args.train_flags,
        "steps": {"base": steps(base), "tuned": steps(tuned), "scratch": steps(scratch)},
        "bpc_on_text": {"tuned": bpc("-c", tuned), "scratch": bpc("-c", scratch)},
        "bpc_on_corpus_held_out": {"base": bpc("-c", base, held_out), "tuned": bpc("-c", tuned, held_out)},
    }, indent=1))


if __name__ == "__main__":
    main()
