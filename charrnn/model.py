"""CharRNN: embedding -> recurrent stack (fused or cells) -> dropout -> linear head; its cells, and the state it
carries.

The state a network carries from one character to the next is made, cut per layer, joined and mapped here.
A layer's state is its hidden vector [batch, hidden], or for the LSTM the pair (hidden, cell_state). A stack's
is the same with the layers first, [layers, batch, hidden], as torch's nn.RNN / nn.GRU / nn.LSTM take it.

The textbook RNN / GRU / LSTM cells are written out step by step here.
`CellStack` is a drop-in for torch's `nn.RNN` / `nn.GRU` / `nn.LSTM` (batch_first=True,
bias=True, unidirectional): same parameter names, shapes and gate order, so a state_dict
moves between the two with `load_state_dict(strict=True)`. It is the reference the fused
kernels are tested against, and the place for variants cuDNN does not have.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Optional, Union, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from typing_extensions import TypeIs

from charrnn.config import ModelConfig, check_impl, check_kind

State = Union[Tensor, tuple[Tensor, Tensor]]


def is_pair(state: State) -> TypeIs[tuple[Tensor, Tensor]]:
    """Whether `state` is the LSTM's (hidden, cell_state): the one place that tells the two shapes apart."""
    return isinstance(state, (tuple, list))


def map_state(function: Callable[[Tensor], Tensor], state: State) -> State:
    """`function` applied to the state's tensor, or to each of the LSTM's pair."""
    return (function(state[0]), function(state[1])) if is_pair(state) else function(state)


def hidden_of(state: State) -> Tensor:
    """The hidden vector(s) alone: what the layer above (or the head) reads."""
    return state[0] if is_pair(state) else state


def zero_state(
    kind: str,
    layers: int,
    batch_size: int,
    hidden: int,
    device: Optional[torch.device] = None,
    dtype: Optional[torch.dtype] = None,
) -> State:
    """A stack's state at the start of a text: zeros, [layers, batch, hidden] (a pair of them for the LSTM)."""
    zeros = torch.zeros(layers, batch_size, hidden, device=device, dtype=dtype)
    return (zeros, zeros.clone()) if kind == "lstm" else zeros


def split_layers(state: State) -> list[State]:
    """A stack's state, [layers, batch, hidden] (or a pair of them) -> one state per layer."""
    if is_pair(state):
        hidden, cell_state = state
        return list(zip(hidden.unbind(0), cell_state.unbind(0)))
    return list(state.unbind(0))


def join_layers(states: list[State]) -> State:
    """One state per layer -> the stack's, layers first: `split_layers` undone."""
    if is_pair(states[0]):
        hiddens, cell_states = zip(*cast(list[tuple[Tensor, Tensor]], states))
        return torch.stack(hiddens), torch.stack(cell_states)
    return torch.stack(cast(list[Tensor], states))


# What one step returns besides the state, by name: "hidden", and the gates when the cell has them.
Internals = dict[str, Tensor]


def rnn_cell(input_projection: Tensor, hidden: Tensor, weight_hh: Tensor, bias_hh: Tensor) -> tuple[Tensor, Internals]:
    """One Elman RNN step: h' = tanh(W_ih x + b_ih + W_hh h + b_hh)."""
    return rnn_update(input_projection + F.linear(hidden, weight_hh, bias_hh), hidden)


def rnn_update(summed: Tensor, hidden: Tensor) -> tuple[Tensor, Internals]:
    """The RNN step once input and recurrent projections are summed (W_ih x + b_ih + W_hh h + b_hh)."""
    hidden = torch.tanh(summed)
    return hidden, {"hidden": hidden}


def gru_cell(input_projection: Tensor, hidden: Tensor, weight_hh: Tensor, bias_hh: Tensor) -> tuple[Tensor, Internals]:
    """One GRU step (torch's / cuDNN's variant: the reset gate scales W_hn h + b_hn)."""
    return gru_update(input_projection, F.linear(hidden, weight_hh, bias_hh), hidden)


def gru_update(input_projection: Tensor, recurrent_projection: Tensor, hidden: Tensor) -> tuple[Tensor, Internals]:
    """The GRU step given W_ih x + b_ih and W_hh h + b_hh, each [batch, 3H] in the order r, z, n."""
    input_r, input_z, input_n = input_projection.chunk(3, dim=-1)
    # The two projections are kept apart, not summed: the reset gate acts on the recurrent part
    # of the candidate only.
    recurrent_r, recurrent_z, recurrent_n = recurrent_projection.chunk(3, dim=-1)
    reset_gate = torch.sigmoid(input_r + recurrent_r)
    update_gate = torch.sigmoid(input_z + recurrent_z)
    candidate = torch.tanh(input_n + reset_gate * recurrent_n)
    hidden = (1 - update_gate) * candidate + update_gate * hidden
    return hidden, {"hidden": hidden, "reset_gate": reset_gate, "update_gate": update_gate, "candidate": candidate}


def lstm_cell(
    input_projection: Tensor, state: tuple[Tensor, Tensor], weight_hh: Tensor, bias_hh: Tensor
) -> tuple[tuple[Tensor, Tensor], Internals]:
    """One LSTM step; the rows of the weights are the gates in torch's order i, f, g, o."""
    hidden, _ = state
    # Every gate sees the same sum of input and recurrent projections, so add them once.
    return lstm_update(input_projection + F.linear(hidden, weight_hh, bias_hh), state)


def lstm_update(gate_inputs: Tensor, state: tuple[Tensor, Tensor]) -> tuple[tuple[Tensor, Tensor], Internals]:
    """The LSTM step once input and recurrent projections are summed: [batch, 4H], gates i, f, g, o."""
    _, cell_state = state
    # One sigmoid over all four blocks and one tanh over g's: fewer calls matter when a step is a
    # few microseconds each (generation at batch 1). The sigmoid of g's block is computed, unused.
    input_gate, forget_gate, _, output_gate = torch.sigmoid(gate_inputs).chunk(4, dim=-1)
    hidden_size = cell_state.size(-1)
    candidate = torch.tanh(gate_inputs.narrow(-1, 2 * hidden_size, hidden_size))
    cell_state = torch.addcmul(forget_gate * cell_state, input_gate, candidate)
    hidden = output_gate * torch.tanh(cell_state)
    internals = {
        "hidden": hidden,
        "cell": cell_state,
        "input_gate": input_gate,
        "forget_gate": forget_gate,
        "output_gate": output_gate,
        "candidate": candidate,
    }
    return (hidden, cell_state), internals


CELLS: dict[str, Callable] = {"rnn": rnn_cell, "gru": gru_cell, "lstm": lstm_cell}
# How many H-row blocks each weight matrix stacks: one per gate (or candidate).
GATES = {"rnn": 1, "gru": 3, "lstm": 4}


class CellStack(nn.Module):
    """A stack of `num_layers` written-out cells with torch's parameter layout, batch first."""

    def __init__(self, kind: str, input_size: int, hidden_size: int, num_layers: int, dropout: float = 0.0):
        super().__init__()
        check_kind(kind)
        self.kind = kind
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = float(dropout)
        self.batch_first = True
        self.cell = CELLS[kind]
        rows = GATES[kind] * hidden_size
        # Registered one by one in torch's order, so state_dict keys line up and the
        # initialisation below draws the same random numbers as nn.LSTM & co. would.
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size
            setattr(self, f"weight_ih_l{layer}", nn.Parameter(torch.empty(rows, layer_input)))
            setattr(self, f"weight_hh_l{layer}", nn.Parameter(torch.empty(rows, hidden_size)))
            setattr(self, f"bias_ih_l{layer}", nn.Parameter(torch.empty(rows)))
            setattr(self, f"bias_hh_l{layer}", nn.Parameter(torch.empty(rows)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(-1/sqrt(H), 1/sqrt(H)) for every weight and bias, as torch does."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)

    def extra_repr(self) -> str:
        return (
            f"{self.kind}, {self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, dropout={self.dropout}"
        )

    def forward(self, inputs: Tensor, state: Optional[State] = None) -> tuple[Tensor, State]:
        """inputs [batch, time, input_size] -> (outputs [batch, time, hidden], final state), as torch."""
        outputs, state, _ = self._run(inputs, state, collect_internals=False)
        return outputs, state

    def trace(self, inputs: Tensor, state: Optional[State] = None) -> tuple[Tensor, State, list[Internals]]:
        """Like forward, plus per layer a dict of every step's internals, each [batch, time, hidden].

        Keys: "hidden"; LSTM also "cell", "input_gate", "forget_gate", "output_gate", "candidate";
        GRU also "reset_gate", "update_gate", "candidate". Call under eval() and no_grad() to look.
        """
        outputs, state, internals = self._run(inputs, state, collect_internals=True)
        assert internals is not None  # _run collects them when asked
        return outputs, state, internals

    def _run(
        self, inputs: Tensor, state: Optional[State], collect_internals: bool
    ) -> tuple[Tensor, State, Optional[list[Internals]]]:
        if inputs.dim() != 3:
            raise ValueError(f"expected inputs [batch, time, features], got shape {tuple(inputs.shape)}")
        if state is None:
            state = zero_state(
                self.kind, self.num_layers, inputs.shape[0], self.hidden_size, inputs.device, inputs.dtype
            )
        layer_states = split_layers(state)
        final_states: list[State] = []
        internals: list[Internals] = []
        layer_input = inputs
        for layer in range(self.num_layers):
            layer_output, final_state, layer_internals = self._run_layer(
                layer, layer_input, layer_states[layer], collect_internals
            )
            final_states.append(final_state)
            if layer_internals is not None:
                internals.append(layer_internals)
            is_last = layer == self.num_layers - 1
            # Dropout goes between layers only, as in torch: never on the stack's own output.
            layer_input = layer_output if is_last else F.dropout(layer_output, self.dropout, self.training)
        return layer_input, join_layers(final_states), internals if collect_internals else None

    def _run_layer(
        self, layer: int, inputs: Tensor, state: State, collect_internals: bool
    ) -> tuple[Tensor, State, Optional[Internals]]:
        weight_ih = getattr(self, f"weight_ih_l{layer}")
        weight_hh = getattr(self, f"weight_hh_l{layer}")
        bias_ih = getattr(self, f"bias_ih_l{layer}")
        bias_hh = getattr(self, f"bias_hh_l{layer}")
        # The input side does not depend on the previous step: one big matmul over
        # batch * time here, so only the recurrent matmul is left inside the loop.
        input_projections = F.linear(inputs, weight_ih, bias_ih)
        hiddens, steps = [], []
        for input_projection in input_projections.unbind(dim=1):
            state, step_internals = self.cell(input_projection, state, weight_hh, bias_hh)
            hiddens.append(step_internals["hidden"])
            if collect_internals:
                steps.append(step_internals)
        internals = None
        if collect_internals:
            internals = {name: torch.stack([step[name] for step in steps], dim=1) for name in steps[0]}
        return torch.stack(hiddens, dim=1), state, internals


def recurrent_stack(
    kind: str, impl: str, input_size: int, hidden_size: int, num_layers: int, dropout: float = 0.0
) -> nn.Module:
    """The recurrent layers for `kind` (rnn|gru|lstm): torch's fused module or our written-out cells."""
    check_kind(kind)
    check_impl(impl)
    if impl == "cells":
        return CellStack(kind, input_size, hidden_size, num_layers, dropout)
    # Dropout only acts between layers; with one layer torch would warn about a no-op.
    between_layers = dropout if num_layers > 1 else 0.0
    if kind == "rnn":
        return nn.RNN(
            input_size, hidden_size, num_layers, nonlinearity="tanh", batch_first=True, dropout=between_layers
        )
    if kind == "gru":
        return nn.GRU(input_size, hidden_size, num_layers, batch_first=True, dropout=between_layers)
    return nn.LSTM(input_size, hidden_size, num_layers, batch_first=True, dropout=between_layers)


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
        shapes.update(
            {
                f"rnn.weight_ih_l{layer}": (rows, config.embed if layer == 0 else config.hidden),
                f"rnn.weight_hh_l{layer}": (rows, config.hidden),
                f"rnn.bias_ih_l{layer}": (rows,),
                f"rnn.bias_hh_l{layer}": (rows,),
            }
        )
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
