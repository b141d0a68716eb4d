"""Loss in nats per character, bits per character, perplexity."""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from charrnn.data import IGNORE, Windows
from charrnn.model import CharRNN


@torch.inference_mode()
def total_loss(model: CharRNN, windows: Windows, device: torch.device, max_windows: Optional[int] = None,
               progress: Optional[Callable[[float], None]] = None) -> tuple[float, int]:
    """Sum of -ln p over every predicted character, and how many there were; the state runs across windows.
    `progress` hears the fraction done after each window."""
    was_training = model.training
    model.eval()
    state = model.initial_state(windows.batch_size, device)
    nats, count = 0.0, 0
    limit = len(windows) if max_windows is None else min(len(windows), max_windows)
    for index in range(limit):
        inputs, targets = windows[index]
        logits, state = model(inputs.to(device), state)
        targets = targets.to(device)
        nats += F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1),
                                reduction="sum", ignore_index=IGNORE).item()
        count += int((targets != IGNORE).sum())
        if progress is not None:
            progress((index + 1) / limit)
    model.train(was_training)
    return nats, count


def summarize(nats: float, count: int, oov: int = 0) -> dict:
    """The figures `charrnn eval` reports."""
    loss = nats / count if count else float("nan")
    return {
        "loss": loss,
        "bpc": loss / math.log(2),
        "perplexity": math.exp(loss) if count else float("nan"),
        "chars": count,
        "oov": oov,
    }


def report_lines(result: dict) -> list[str]:
    """`summarize`'s figures as `charrnn eval` prints them; after dynamic evaluation, static and dynamic side by
    side, then its settings."""
    if "static" not in result:
        return [f"bpc {result['bpc']:.4f} | loss {result['loss']:.4f} nats/char | perplexity "
                f"{result['perplexity']:.3f} | {result['chars']:,} chars | {result['oov']:,} out of vocabulary"]
    return [f"{name} bpc {figures['bpc']:.4f} | loss {figures['loss']:.4f} nats/char | perplexity "
            f"{figures['perplexity']:.3f} | {figures['chars']:,} chars | {figures['seconds']:.1f}s"
            for name, figures in (("static ", result["static"]), ("dynamic", result))] + [
        f"dynamic: segment {result['segment']}, lr {result['lr']:g}, decay {result['decay']:g} | "
        f"{result['oov']:,} out of vocabulary"]
