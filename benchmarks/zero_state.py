"""Reading from the zero state: train with and without fresh starts, then score text read from zero, as JSON.

`sample --prime`, `score` and `eval` of a text begin at the zero state, which a run that only carries its
state across windows sees once. For each --every (0: never), trains `--time T` on the corpus with the
defaults, then reports the usual validation loss (state carried through the split) and the loss on
--snippets pieces of the validation split, each read from the zero state: over their first 16
characters, and over the rest. Runs one after the other, in this process.

    python benchmarks/zero_state.py /work/shared/corpora/tinyshakespeare.txt --time 1m --every 0 8
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import charrnn  # noqa: E402
from charrnn import trainer  # noqa: E402
from charrnn.data import load_corpus  # noqa: E402

HEAD = 16  # the first characters after a zero state, where a carried-only run is lost


def zero_state_losses(model, ids: torch.Tensor, snippets: int, length: int, seed: int = 0) -> dict:
    """Mean loss over `snippets` pieces of `ids`, each read from the zero state: its first HEAD predictions, the rest."""
    starts = torch.randint(0, len(ids) - length - 1, (snippets,), generator=torch.Generator().manual_seed(seed))
    pieces = torch.stack([ids[start : start + length + 1] for start in starts.tolist()])
    with torch.no_grad():
        logits, _ = model(pieces[:, :-1])
    losses = F.cross_entropy(logits.float().transpose(1, 2), pieces[:, 1:], reduction="none")
    return {"first_16": round(losses[:, :HEAD].mean().item(), 4), "rest": round(losses[:, HEAD:].mean().item(), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus")
    parser.add_argument("--time", default="1m")
    parser.add_argument("--every", type=int, nargs="+", default=[0, 8], help="fresh start every N windows (0: never)")
    parser.add_argument("--snippets", type=int, default=512)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--prime", default="ROMEO:\n", help="a sample from this prime goes in the JSON")
    args = parser.parse_args()
    results = []
    for every in args.every:
        trainer.FRESH_START_EVERY = every
        with tempfile.TemporaryDirectory() as scratch:
            started = time.perf_counter()
            summary = charrnn.train(args.corpus, out=Path(scratch) / "run", time=args.time, quiet=True)
            model = charrnn.load(Path(scratch) / "run")
            corpus = load_corpus([args.corpus])
            _, val_ids = corpus.split(0.1)
            results.append({
                "fresh_start_every": every, "best_val_loss": round(summary["best_val_loss"], 4),
                "steps": summary["steps"], "wall_s": round(time.perf_counter() - started, 1),
                "zero_state": zero_state_losses(model.network, torch.tensor(val_ids, dtype=torch.long), args.snippets, args.length),
                "sample": model.generate(args.prime, length=120, temperature=0.8, seed=1)})
    print(json.dumps({"corpus": args.corpus, "time": args.time, "results": results}, indent=2))


if __name__ == "__main__":
    main()
