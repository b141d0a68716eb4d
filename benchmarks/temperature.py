"""Where a small temperature stops being a temperature in float32, as JSON: for t = 1, 1e-1, ..., 1e-46, whether
logits / t stay finite, whether softmax(logits / t) is already one-hot, and whether its argmax is the greedy pick,
over every position of a text read by a checkpoint. It sets config.GREEDY_BELOW.

    python benchmarks/temperature.py RUN [--text FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import charrnn  # noqa: E402
from charrnn.evaluate import known_ids  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run directory or .pt file")
    parser.add_argument("--text", default="/work/shared/corpora/tinyshakespeare.txt")
    parser.add_argument("--chars", type=int, default=4000)
    args = parser.parse_args()
    lm = charrnn.load(args.run, device="cpu")
    ids, _ = known_ids(Path(args.text).read_text(encoding="utf-8")[: args.chars], lm.vocab)
    with torch.inference_mode():
        logits = lm.network(torch.from_numpy(ids).long().unsqueeze(0))[0][0].float()
    top = logits.topk(2, dim=-1).values
    greedy = logits.argmax(dim=-1)
    rows = []
    for exponent in range(0, -47, -1):
        scaled = logits / 10.0**exponent
        probabilities = torch.softmax(scaled, dim=-1)
        rows.append({"t": f"1e{exponent}", "finite": bool(torch.isfinite(scaled).all()),
                     "one_hot": bool((probabilities == 1).sum(dim=-1).eq(1).all()),
                     "argmax_is_greedy": bool(probabilities.argmax(dim=-1).eq(greedy).all())})
    print(json.dumps({"positions": len(ids), "max_abs_logit": float(logits.abs().max()),
                      "closest_top_two": float((top[:, 0] - top[:, 1]).min()), "temperatures": rows}))


if __name__ == "__main__":
    main()
