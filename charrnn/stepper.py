"""One character at a time through a trained CharRNN, with the state carried: what generation runs on.

At batch size 1 a step is memory-bound: every weight is read once per character. So a step does
that and little else: a table lookup for the first layer's input, one matrix-vector product per
layer, the head.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.nn import functional as F

from charrnn.cells import gru_cell, lstm_update, rnn_update
from charrnn.model import CharRNN, State

UPDATES = {"rnn": rnn_update, "lstm": lstm_update}


class Stepper:
    """Feed one id per sample, get the next logits; the hidden state stays inside.

    Inference only (no dropout, no gradients). Serves every cell type and both implementations,
    since they share one parameter layout; equal to `model(ids, state)` to float tolerance.
    """

    def __init__(self, model: CharRNN, state: Optional[State] = None):
        self.kind, self.layers = model.config.model, model.config.layers
        rnn = model.rnn
        w_ih, w_hh, b_ih, b_hh = ([getattr(rnn, f"{name}_l{layer}").detach() for layer in range(self.layers)]
                                  for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        embedding = model.embedding.weight.detach()
        if self.kind == "gru":
            # The reset gate scales only the recurrent part of the candidate: the two projections stay apart.
            self.input_table = F.linear(embedding, w_ih[0], b_ih[0])
            self.input_weights = list(zip(w_ih, b_ih))
            self.recurrent_weights = list(zip(w_hh, b_hh))
        else:
            # The gates see one sum, W_ih x + b_ih + W_hh h + b_hh. The first layer's input part depends
            # only on the character: a [vocab, gates * hidden] table, biases folded in. Above it, one
            # matmul of [x, h] by [W_ih | W_hh]: one long matrix-vector product beats two short ones.
            self.input_table = F.linear(embedding, w_ih[0], b_ih[0] + b_hh[0])
            self.summed_weights = [(w_hh[0], None)] + [
                (torch.cat([w_ih[layer], w_hh[layer]], dim=1), b_ih[layer] + b_hh[layer]) for layer in range(1, self.layers)]
        self.head_weight, self.head_bias = model.head.weight.detach(), model.head.bias.detach()
        self.states: list[State] = self._split(state) if state is not None else []

    def reset(self, batch_size: int) -> None:
        """Start every sample from the zero state."""
        zeros = self.input_table.new_zeros(batch_size, self.head_weight.size(1))
        self.states = [(zeros, zeros) if self.kind == "lstm" else zeros for _ in range(self.layers)]

    def repeat(self, copies: int) -> None:
        """Continue `copies` samples from a carried state of batch size 1 (a prime is read once for all)."""
        self.states = [tuple(s.expand(copies, -1) for s in state) if self.kind == "lstm" else state.expand(copies, -1)
                       for state in self.states]

    @torch.inference_mode()
    def step(self, ids: Tensor) -> Tensor:
        """ids [batch] -> logits [batch, vocab] for the character after them."""
        if not self.states:
            self.reset(ids.size(0))
        below = None  # the layer below's new hidden state
        for layer, state in enumerate(self.states):
            if self.kind == "gru":
                projection = self.input_table[ids] if below is None else F.linear(below, *self.input_weights[layer])
                state, internals = gru_cell(projection, state, *self.recurrent_weights[layer])
            else:
                hidden = state[0] if self.kind == "lstm" else state
                weight, bias = self.summed_weights[layer]
                if below is None:
                    summed = torch.addmm(self.input_table[ids], hidden, weight.t())
                else:
                    summed = torch.addmm(bias, torch.cat([below, hidden], dim=1), weight.t())
                state, internals = UPDATES[self.kind](summed, state)
            self.states[layer] = state
            below = internals["hidden"]
        return F.linear(below, self.head_weight, self.head_bias)

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
