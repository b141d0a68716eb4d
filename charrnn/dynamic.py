"""Dynamic evaluation (Krause et al., 2018): the model keeps learning while it reads.

Each segment is scored first, then the weights take one gradient step on it, then the next segment is
scored by the adapted weights with the state carried over. A segment's score never sees its own update,
so the figure is a fair loss over the text. With `decay` the weights are also pulled back toward the
trained ones, theta <- theta - lr * grad + decay * (theta_trained - theta), so that what the model learns
from one passage fades instead of piling up. `adapted` keeps the weights after such a pass (`sample --adapt`).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from charrnn.config import ADAPTING, DynamicSettings
from charrnn.data import as_long
from charrnn.errors import CharRNNError
from charrnn.model import CharRNN, detach_state

__all__ = ["DynamicSettings", "dynamic_loss", "adapted", "adaptable_copy"]


def dynamic_loss(model: CharRNN, ids: np.ndarray, device: torch.device,
                 settings: DynamicSettings = DynamicSettings()) -> tuple[float, int]:
    """Sum of -ln p over every character after the first (as `evaluate.total_loss` counts them), read as one
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
        elif isinstance(getattr(module, "dropout", None), float):
            module.dropout = 0.0
    for parameter in learner.parameters():
        parameter.requires_grad_(True)
    return learner.train()
