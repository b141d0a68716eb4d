"""Loss in nats per character, bits per character, perplexity: static, and dynamic, while the model learns as it reads.

Dynamic evaluation (Krause et al., 2018): each segment is scored first, then the weights take one gradient step
on it, then the next segment is scored by the adapted weights with the state carried over. A segment's score never
sees its own update, so the figure is a fair loss over the text. With `decay` the weights are also pulled back
toward the trained ones, theta <- theta - lr * grad + decay * (theta_trained - theta), so that what the model
learns from one passage fades instead of piling up. `adapted` keeps the weights after such a pass (`sample --adapt`).
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from charrnn.model import CellStack, CharRNN, detach_state
from charrnn.config import ADAPTING, DynamicSettings
from charrnn.data import IGNORE, Windows, as_long
from charrnn.errors import CharRNNError


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


def dynamic_loss(model: CharRNN, ids: np.ndarray, device: torch.device,
                 settings: DynamicSettings = DynamicSettings()) -> tuple[float, int]:
    """Sum of -ln p over every character after the first (as `total_loss` counts them), read as one
    stream in order while a copy of `model` adapts to it; `model` itself is left as it was."""
    predicted = len(ids) - 1
    if predicted < 1:
        raise CharRNNError("nothing to evaluate: the text needs at least 2 characters the model knows")
    return read_adapting(adaptable_copy(model), ids, device, settings), predicted


def adapted(model: CharRNN, ids: np.ndarray, device: torch.device, settings: DynamicSettings = ADAPTING) -> CharRNN:
    """A copy of `model` that has read `ids` once, learning as it read: it then writes in their style."""
    if len(ids) < 2:
        raise CharRNNError("nothing to adapt to: the text needs at least 2 characters the model knows; give a longer text in its alphabet")
    learner = adaptable_copy(model)
    read_adapting(learner, ids, device, settings)
    return learner.requires_grad_(False).eval()


def read_adapting(learner: CharRNN, ids: np.ndarray, device: torch.device, settings: DynamicSettings) -> float:
    """Read `ids` as one stream, a segment at a time: score it, then take one SGD step on it. Returns the nats."""
    trainable = [p for p in learner.parameters() if p.requires_grad]
    trained = [p.detach().clone() for p in trainable] if settings.decay else []
    stream = as_long(ids).unsqueeze(0).to(device)
    state = learner.initial_state(1, device)
    losses = []  # kept on the device and summed at the end: no wait for it after each segment
    for start in range(0, len(ids) - 1, settings.segment):
        end = min(start + settings.segment, len(ids) - 1)
        inputs, targets = stream[:, start:end], stream[:, start + 1 : end + 1]
        logits, state = learner(inputs, state)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="sum")
        losses.append(loss.detach())
        # The state carries the values into the next segment but not the graph: each step sees one segment.
        state = detach_state(state)
        learner.zero_grad(set_to_none=True)
        # The mean, not the sum: the same lr then suits any segment length.
        (loss / (end - start)).backward()
        with torch.no_grad():
            for index, parameter in enumerate(trainable):
                if parameter.grad is not None:
                    parameter.sub_(parameter.grad, alpha=settings.lr)
                if settings.decay:
                    parameter.add_(trained[index] - parameter, alpha=settings.decay)
    return torch.stack(losses).cpu().double().sum().item()


def adaptable_copy(model: CharRNN) -> CharRNN:
    """A copy of the network in fp32 that takes gradients, with dropout off.

    Training mode, because cuDNN's recurrent backward runs only there; dropout set to 0, because the
    scores must be the deterministic ones that static evaluation gives."""
    learner = copy.deepcopy(model).float()
    for module in learner.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        elif isinstance(module, (nn.RNNBase, CellStack)):  # dropout between their layers
            module.dropout = 0.0
    for parameter in learner.parameters():
        parameter.requires_grad_(True)
    return learner.train()
