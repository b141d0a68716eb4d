"""One character at a time through a trained CharRNN, with the state carried: what generation runs on.

A step at batch size B costs one table lookup, one recurrent matmul per layer (plus the input
matmul of the layers above the first) and the head: the least work a new character needs.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.nn import functional as F

from charrnn.cells import CELLS
from charrnn.model import CharRNN, State


class Stepper:
    """Feed one id per sample, get the next logits; the hidden state stays inside.

    Inference only (no dropout, no gradients). Serves every cell type and both implementations,
    since they share one parameter layout; equal to `model(ids, state)` to float tolerance.
    """

    def __init__(self, model: CharRNN, state: Optional[State] = None):
        config = model.config
        self.kind, self.layers = config.model, config.layers
        self.cell = CELLS[self.kind]
        rnn = model.rnn
        weights = [[getattr(rnn, f"{name}_l{layer}").detach() for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                   for layer in range(self.layers)]
        # The first layer's input projection depends only on the input character: fold the
        # embedding into it once, a [vocab, gates * hidden] table, so a step starts with a lookup.
        weight_ih, _, bias_ih, _ = weights[0]
        self.input_table = F.linear(model.embedding.weight.detach(), weight_ih, bias_ih)
        self.weights = weights
        self.head_weight, self.head_bias = model.head.weight.detach(), model.head.bias.detach()
        self.states: list[State] = self._split(state) if state is not None else []

    def reset(self, batch_size: int) -> None:
        """Start every sample from the zero state."""
        zeros = self.input_table.new_zeros(batch_size, self.head_weight.size(1))
        self.states = [(zeros, zeros) if self.kind == "lstm" else zeros for _ in range(self.layers)]

    def repeat(self, copies: int) -> None:
        """Continue `copies` samples from the one carried state (a prime is read once for all of them)."""
        self.states = [tuple(s.expand(copies, -1) for s in state) if self.kind == "lstm" else state.expand(copies, -1)
                       for state in self.states]

    @torch.inference_mode()
    def step(self, ids: Tensor) -> Tensor:
        """ids [batch] -> logits [batch, vocab] for the character after them."""
        if not self.states:
            self.reset(ids.size(0))
        projection = self.input_table[ids]
        for layer, (weight_ih, weight_hh, bias_ih, bias_hh) in enumerate(self.weights):
            if layer > 0:
                projection = F.linear(hidden, weight_ih, bias_ih)
            self.states[layer], internals = self.cell(projection, self.states[layer], weight_hh, bias_hh)
            hidden = internals["hidden"]
        return F.linear(hidden, self.head_weight, self.head_bias)

    @property
    def state(self) -> State:
        """The carried state in the model's layout: [layers, batch, hidden] (a pair for the LSTM)."""
        if self.kind == "lstm":
            return torch.stack([h for h, _ in self.states]), torch.stack([c for _, c in self.states])
        return torch.stack(self.states)

    def _split(self, state: State) -> list[State]:
        if self.kind == "lstm":
            hidden, cell_state = state
            return list(zip(hidden.unbind(0), cell_state.unbind(0)))
        return list(state.unbind(0))
