"""Does `charrnn score` rank real lines ahead of the same lines with their characters shuffled?

python benchmarks/score_shuffled.py -c RUN_DIR --corpus tinyshakespeare.txt [--lines 200]
Lines come from the corpus's last 10% (the validation split); prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch

from charrnn.checkpoint import load_checkpoint, resolve_checkpoint
from charrnn.model import model_from_checkpoint
from charrnn.evaluate import score_lines
from charrnn.vocab import Vocab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--checkpoint", required=True)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--min-chars", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = resolve_checkpoint(args.checkpoint)
    saved = load_checkpoint(path)
    model, vocab = model_from_checkpoint(saved), Vocab(saved.vocab)
    text = open(args.corpus, encoding="utf-8").read()
    held_out = text[int(len(text) * 0.9):].splitlines()[1:]  # the first may be cut mid-line
    candidates = sorted({line for line in held_out if len(line) >= args.min_chars and len(set(line)) > 1})
    rng = random.Random(args.seed)
    real = rng.sample(candidates, min(args.lines, len(candidates)))
    shuffled = []
    for line in real:
        chars = list(line)
        while "".join(chars) == line:
            rng.shuffle(chars)
        shuffled.append("".join(chars))
    started = time.perf_counter()
    scores = [s.bpc for batch in score_lines(model, vocab, real + shuffled, torch.device("cpu")) for s in batch]
    seconds = time.perf_counter() - started
    real_bpc, shuffled_bpc = scores[: len(real)], scores[len(real):]
    wins = sum(r < s for r, s in zip(real_bpc, shuffled_bpc))
    print(json.dumps({
        "checkpoint": str(path), "lines": len(real), "real_ahead": wins, "fraction": wins / len(real),
        "mean_bpc_real": sum(real_bpc) / len(real), "mean_bpc_shuffled": sum(shuffled_bpc) / len(real),
        "lines_per_s": 2 * len(real) / seconds, "val_loss": saved.val_loss,
    }))


if __name__ == "__main__":
    main()
