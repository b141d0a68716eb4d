"""Dynamic evaluation against static: loss and seconds for a grid of settings, one JSON object per line.

Reads the first `--chars` characters of a run's validation split (or FILE), scores them statically once
(as `charrnn eval` does), then dynamically (`charrnn.evaluate`) for every segment x lr x decay given.

    python benchmarks/dynamic_eval.py RUN --chars 100000 --segment 50 100 200 --lr 1e-4 3e-4 1e-3 3e-3 --decay 0
    python benchmarks/dynamic_eval.py RUN --file other.txt --segment 100 --lr 1e-3 --decay 0
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

from charrnn import api
from charrnn.config import DynamicSettings
from charrnn.data import load_corpus
from charrnn.evaluate import dynamic_loss, summarize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--file", help="score this file instead of the run's validation split")
    parser.add_argument("--chars", type=int, default=None, help="only the first N characters")
    parser.add_argument("--segment", type=int, nargs="+", default=[DynamicSettings.segment])
    parser.add_argument("--lr", type=float, nargs="+", default=[DynamicSettings.lr])
    parser.add_argument("--decay", type=float, nargs="+", default=[DynamicSettings.decay])
    args = parser.parse_args()

    lm = api.load(args.run)
    if args.file:
        corpus = load_corpus([args.file], vocab=lm.vocab)
        ids, oov = corpus.ids, corpus.oov
    else:
        ids, oov = lm.validation_ids()
    ids = ids[: args.chars] if args.chars else ids
    started = time.perf_counter()
    static = lm.evaluate_ids(ids, oov)
    print(json.dumps({"kind": "static", "loss": round(static["loss"], 4), "chars": static["chars"],
                      "seconds": round(time.perf_counter() - started, 2)}), flush=True)
    for segment, lr, decay in itertools.product(args.segment, args.lr, args.decay):
        started = time.perf_counter()
        nats, count = dynamic_loss(lm.network, ids, lm.device, DynamicSettings(segment, lr, decay))
        loss = summarize(nats, count)["loss"]
        print(json.dumps({"kind": "dynamic", "segment": segment, "lr": lr, "decay": decay, "loss": round(loss, 4),
                          "gain": round(static["loss"] - loss, 4), "chars": count,
                          "seconds": round(time.perf_counter() - started, 2)}), flush=True)


if __name__ == "__main__":
    main()
