"""CharRNN: embedding -> recurrent stack (fused or cells) -> dropout -> linear head."""

from __future__ import annotations

import math

from typing import Optional

import torch
from torch import nn

from charrnn.cells import GATES, recurrent_stack
from charrnn.config import ModelConfig
from charrnn.state import State, map_state, zero_state



class CharRNN(nn.Module):
    def __init__(self, config: ModelConfig, impl: str = "fused"):
        super().__init__()
        self.config = config
        self.impl = impl
        self.embedding = nn.Embedding(config.vocab_size, config.embed)
        self.rnn = recurrent_stack(config.model, impl, config.embed, config.hidden, config.layers, config.dropout)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden, config.vocab_size)
        if config.model == "lstm":
            self._open_forget_gates()

    def _open_forget_gates(self) -> None:
        # A forget-gate bias of 1 makes a fresh LSTM remember by default, so
        # gradients flow across many steps from the start (Jozefowicz et al., 2015).
        hidden = self.config.hidden
        with torch.no_grad():
            for layer in range(self.config.layers):
                getattr(self.rnn, f"bias_ih_l{layer}")[hidden : 2 * hidden].fill_(1.0)
                getattr(self.rnn, f"bias_hh_l{layer}")[hidden : 2 * hidden].fill_(0.0)

    def forward(self, ids: torch.Tensor, state: Optional[State] = None) -> tuple[torch.Tensor, State]:
        """ids [batch, time] -> logits [batch, time, vocab], and the state after the last step."""
        outputs, state = self.rnn(self.embedding(ids), state)
        if torch.is_autocast_enabled(outputs.device.type):
            # Under autocast the recurrence runs in bf16, but the head is cheap (hidden x vocab) and its
            # logits feed the loss directly, where bf16's 8-bit mantissa would show: keep it in fp32.
            with torch.autocast(outputs.device.type, enabled=False):
                return self.head(self.dropout(outputs.float())), state
        return self.head(self.dropout(outputs)), state

    def initial_state(self, batch_size: int, device: torch.device) -> State:
        return zero_state(self.config.model, self.config.layers, batch_size, self.config.hidden, device)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def detach_state(state: State) -> State:
    """Cut the graph between windows: the values carry over, the gradients stop (truncated BPTT)."""
    return map_state(torch.Tensor.detach, state)


def parameter_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The name and shape of every weight a network of this config has, in torch's layout, without building it.

    (Building one on the meta device would do, but its first use imports torch._dynamo: a second or more.)
    """
    rows = GATES[config.model] * config.hidden  # the gates' weights stacked, as torch lays them out
    shapes: dict[str, tuple[int, ...]] = {"embedding.weight": (config.vocab_size, config.embed)}
    for layer in range(config.layers):
        shapes.update({f"rnn.weight_ih_l{layer}": (rows, config.embed if layer == 0 else config.hidden),
                       f"rnn.weight_hh_l{layer}": (rows, config.hidden),
                       f"rnn.bias_ih_l{layer}": (rows,), f"rnn.bias_hh_l{layer}": (rows,)})
    shapes.update({"head.weight": (config.vocab_size, config.hidden), "head.bias": (config.vocab_size,)})
    return shapes


def training_bytes(config: ModelConfig) -> int:
    """Memory the parameters take while training in fp32: weights, gradients and AdamW's two moments."""
    return 16 * sum(math.prod(shape) for shape in parameter_shapes(config).values())


def model_from_checkpoint(checkpoint, impl: str = "fused", device: Optional[torch.device] = None) -> CharRNN:
    """Rebuild the trained network from a checkpoint (a schema.Checkpoint), in either implementation, on any device.

    The checkpoint comes from checkpoint.load_checkpoint, which has held its config to its weights: the
    network built here is the size of the file, whatever a stranger's config claimed."""
    model = CharRNN(checkpoint.model_config, impl=impl)
    model.load_state_dict(checkpoint.weights)
    model.eval()
    return model.to(device) if device is not None else model
