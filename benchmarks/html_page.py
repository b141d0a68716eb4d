"""The exported web page: its size, and its speed in Chromium next to `charrnn sample`'s, as JSON.

Untrained LSTMs (default 1x384 and 1x640, vocabulary 65, embedding 64: the 3-minute and the
longer budgets' shapes), as size and speed do not depend on what the weights say. For each shape:
the page's bytes; then, interleaved over --repeats rounds so that a shared machine's noise hits
both alike, characters a second of

- page: the page in headless Chromium (Debian's), as the page itself times it, from its first
  generated character to its last;
- generate: `charrnn.sample.generate` at batch 1 on one thread, as `charrnn sample` runs it (fp16
  weights on x86 CPUs), from its first character to its last;
- generate_fp32: the same with fp32 weights (`--precision fp32`), the arithmetic the page does.

With --checkpoint and --text, also how often the likeliest next character moves, teacher-forced
over the text, when the weights are rounded to fp16 (what an fp16 page would hold), and when the
sums run in float64 (as the page's JavaScript runs them): why the page keeps fp32 weights.

    python benchmarks/html_page.py                                 # about a minute
    python benchmarks/html_page.py --hidden 384 --length 5000 --repeats 5
    python benchmarks/html_page.py --checkpoint runs/tinyshakespeare --text tinyshakespeare.txt
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the browser as the page's test drives it

from charrnn import checkpoint  # noqa: E402
from charrnn.config import ModelConfig, SamplingSettings, TrainConfig, to_dict  # noqa: E402
from charrnn.export import write_html  # noqa: E402
from charrnn.model import CharRNN, model_from_checkpoint  # noqa: E402
from charrnn.sample import generate  # noqa: E402
from charrnn.schema import Checkpoint  # noqa: E402
from charrnn.vocab import Vocab  # noqa: E402
import headless_chromium  # noqa: E402

VOCAB = "".join(chr(c) for c in range(32, 32 + 64)) + "\n"  # 65 characters, like tiny-shakespeare's


def untrained_checkpoint(folder: Path, hidden: int, embed: int) -> Checkpoint:
    """A 1xHIDDEN LSTM with random weights, written and read back as a checkpoint."""
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=len(VOCAB), model="lstm", layers=1, hidden=hidden, embed=embed)
    path = folder / f"lstm-1x{hidden}.pt"
    checkpoint.save_checkpoint(Checkpoint(config, TrainConfig(), VOCAB, CharRNN(config).state_dict()), path)
    return checkpoint.load_checkpoint(path)


def generate_chars_per_s(saved: Checkpoint, length: int, temperature: float, precision: str) -> float:
    """`charrnn sample`'s generation on one thread, timed from its first character to its last."""
    torch.set_num_threads(1)
    steps = generate(model_from_checkpoint(saved), Vocab(saved.vocab),
                     settings=SamplingSettings(length=length + 1, temperature=temperature, seed=1, precision=precision))
    next(steps)  # the first holds the set-up (the prime, packing the weights), as the page's clock leaves out its own
    start = time.perf_counter()
    for _ in steps:
        pass
    return length / (time.perf_counter() - start)


def speeds(saved: Checkpoint, page_path: Path, browser: headless_chromium.Page, length: int, temperature: float,
           repeats: int) -> dict:
    browser.open(page_path)
    loops = {
        "page": lambda: float(browser.generate("", temperature, length)["charsPerSecond"]),
        "generate": lambda: generate_chars_per_s(saved, length, temperature, "auto"),
        "generate_fp32": lambda: generate_chars_per_s(saved, length, temperature, "fp32"),
    }
    for run in loops.values():  # warm-up: the browser's compiler, torch's allocator and packed weights
        run()
    rounds = [{name: run() for name, run in loops.items()} for _ in range(repeats)]
    result = {name: {"best": round(max(r[name] for r in rounds)), "median": round(statistics.median(r[name] for r in rounds))}
              for name in loops}
    result["page_vs_generate_fp32"] = round(statistics.median(r["page"] / r["generate_fp32"] for r in rounds), 2)
    return result


@torch.inference_mode()
def argmax_moves(saved: Checkpoint, text: str) -> dict:
    """Positions of `text` where the likeliest next character differs from fp32's (teacher-forced)."""
    vocab = Vocab(saved.vocab)
    ids = torch.from_numpy(vocab.encode(text)).unsqueeze(0)
    rounded = replace(saved, weights={name: weight.half().float() for name, weight in saved.weights.items()})
    fp32 = model_from_checkpoint(saved)(ids)[0][0]
    fp16_weights = model_from_checkpoint(rounded)(ids)[0][0]
    float64 = model_from_checkpoint(saved).double()(ids)[0][0]
    top2 = float64.topk(2, dim=-1).values
    return {
        "positions": len(text),
        "fp16_weights": {"moved": int((fp16_weights.argmax(-1) != fp32.argmax(-1)).sum()),
                         "max_logit_change": float((fp16_weights - fp32).abs().max())},
        "float64_sums": {"moved": int((float64.argmax(-1) != fp32.argmax(-1)).sum()),
                         "max_logit_change": float((float64 - fp32.double()).abs().max())},
        "top_two_closer_than_1e-4": int((top2[:, 0] - top2[:, 1] < 1e-4).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[384, 640])
    parser.add_argument("--embed", type=int, default=64)
    parser.add_argument("--length", type=int, default=3000, help="characters per timed loop")
    parser.add_argument("--temp", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--checkpoint", help="a trained run, for how often fp16 weights or float64 sums move the argmax")
    parser.add_argument("--text", type=Path, help="text to read with --checkpoint (its last --text-chars characters)")
    parser.add_argument("--text-chars", type=int, default=100_000)
    args = parser.parse_args()
    why = headless_chromium.missing()
    if why:
        sys.exit(f"html_page.py: {why}")

    result = {"torch": torch.__version__, "machine": platform.processor() or platform.machine(),
              "length": args.length, "temperature": args.temp, "repeats": args.repeats, "models": {}}
    with tempfile.TemporaryDirectory() as folder, headless_chromium.Page() as browser:
        result["chromium"] = browser.driver.capabilities.get("browserVersion")
        for hidden in args.hidden:
            saved = untrained_checkpoint(Path(folder), hidden, args.embed)
            page = Path(folder) / f"lstm-1x{hidden}.html"
            write_html(saved, page)
            result["models"][f"lstm 1x{hidden}, embed {args.embed}, vocab {len(VOCAB)}"] = {
                "parameters": saved.parameters,
                "page_bytes": page.stat().st_size,
                "chars_per_s": speeds(saved, page, browser, args.length, args.temp, args.repeats),
            }
    if args.checkpoint and args.text:
        saved = checkpoint.load_checkpoint(checkpoint.resolve_checkpoint(args.checkpoint))
        text = args.text.read_text(encoding="utf-8")[-args.text_chars:]
        result["argmax_moves"] = {"checkpoint": args.checkpoint, "model_config": to_dict(saved.model_config),
                                  **argmax_moves(saved, text)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
