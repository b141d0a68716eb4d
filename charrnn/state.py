"""The recurrent state a network carries from one character to the next: made, cut per layer, joined, mapped.

A layer's state is its hidden vector [batch, hidden], or for the LSTM the pair (hidden, cell_state). A stack's
is the same with the layers first, [layers, batch, hidden], as torch's nn.RNN / nn.GRU / nn.LSTM take it.
"""

from __future__ import annotations

from typing import Callable, Optional, Union, cast

import torch
from torch import Tensor
from typing_extensions import TypeIs

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


def zero_state(kind: str, layers: int, batch_size: int, hidden: int, device: Optional[torch.device] = None,
               dtype: Optional[torch.dtype] = None) -> State:
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
