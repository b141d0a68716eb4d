"""The written-out cells against torch's fused modules (cuDNN's on a GPU): same layout, same numbers, same
gradients. The one home of fused == cells; test_model holds a trained checkpoint read both ways."""

import pytest
import torch
from torch import nn

from charrnn.config import ModelConfig
from charrnn.model import CellStack, map_state, recurrent_stack
from charrnn.errors import SettingError
from conftest import DEVICES

KINDS = ("rnn", "gru", "lstm")
BATCH, TIME, INPUT, HIDDEN = 3, 5, 4, 6


def make_pair(kind, num_layers, dropout=0.0, seed=0):
    """A fused module with random float64 weights and a CellStack holding a strict copy of them."""
    torch.manual_seed(seed)
    fused = recurrent_stack(kind, "fused", INPUT, HIDDEN, num_layers, dropout).double()
    with torch.no_grad():
        for parameter in fused.parameters():
            parameter.normal_(0.0, 0.5)  # larger than torch's init, so the gates leave their linear range
    cells = CellStack(kind, INPUT, HIDDEN, num_layers, dropout).double()
    cells.load_state_dict(fused.state_dict(), strict=True)
    return fused, cells


def random_state(kind, num_layers):
    hidden = torch.randn(num_layers, BATCH, HIDDEN, dtype=torch.float64)
    if kind == "lstm":
        return hidden, torch.randn(num_layers, BATCH, HIDDEN, dtype=torch.float64)
    return hidden


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def leaf_copy(state):
    if state is None:
        return None
    copies = tuple(s.clone().requires_grad_(True) for s in as_tuple(state))
    return copies if isinstance(state, tuple) else copies[0]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("with_state", [True, False], ids=["state", "no-state"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_cells_match_fused_outputs_states_and_gradients(kind, num_layers, with_state, device):
    fused, cells = (module.to(device) for module in make_pair(kind, num_layers))
    inputs = torch.randn(BATCH, TIME, INPUT, dtype=torch.float64).to(device)
    state = map_state(lambda part: part.to(device), random_state(kind, num_layers)) if with_state else None
    output_weights = torch.randn(BATCH, TIME, HIDDEN, dtype=torch.float64).to(device)
    state_weights = [torch.randn(num_layers, BATCH, HIDDEN, dtype=torch.float64).to(device) for _ in range(2)]

    results = []
    for module in (fused, cells):
        module_inputs = inputs.clone().requires_grad_(True)
        module_state = leaf_copy(state)
        outputs, final_state = module(module_inputs, module_state)
        # A random linear function of everything the module returns reaches every gradient path.
        loss = (outputs * output_weights).sum()
        loss = loss + sum((s * w).sum() for s, w in zip(as_tuple(final_state), state_weights))
        loss.backward()
        gradients = {name: p.grad for name, p in module.named_parameters()}
        gradients["inputs"] = module_inputs.grad
        for i, s in enumerate(as_tuple(module_state) if module_state is not None else ()):
            gradients[f"state{i}"] = s.grad
        results.append((outputs, as_tuple(final_state), gradients))

    (fused_outputs, fused_state, fused_grads), (cell_outputs, cell_state, cell_grads) = results
    torch.testing.assert_close(cell_outputs, fused_outputs, rtol=0, atol=1e-10)
    assert len(cell_state) == len(fused_state)
    for ours, theirs in zip(cell_state, fused_state):
        assert ours.shape == (num_layers, BATCH, HIDDEN)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-10)
    assert cell_grads.keys() == fused_grads.keys()
    for name in fused_grads:
        torch.testing.assert_close(cell_grads[name], fused_grads[name], rtol=0, atol=1e-10, msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_state_type_matches_torch(kind):
    fused, cells = make_pair(kind, 2)
    inputs = torch.randn(BATCH, TIME, INPUT, dtype=torch.float64)
    _, fused_state = fused(inputs)
    _, cell_state = cells(inputs)
    assert type(cell_state) is type(fused_state)


@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_layout_is_torchs(kind, num_layers):
    fused = recurrent_stack(kind, "fused", INPUT, HIDDEN, num_layers, 0.0)
    cells = recurrent_stack(kind, "cells", INPUT, HIDDEN, num_layers, 0.0)
    fused_shapes = [(k, v.shape) for k, v in fused.state_dict().items()]
    cell_shapes = [(k, v.shape) for k, v in cells.state_dict().items()]
    assert cell_shapes == fused_shapes
    # And back the other way: a cells checkpoint loads into the fused module.
    fused.load_state_dict(cells.state_dict(), strict=True)


@pytest.mark.parametrize("kind", KINDS)
def test_initialisation_draws_what_torch_draws(kind):
    torch.manual_seed(1)
    fused = recurrent_stack(kind, "fused", INPUT, HIDDEN, 2, 0.0)
    torch.manual_seed(1)
    cells = recurrent_stack(kind, "cells", INPUT, HIDDEN, 2, 0.0)
    bound = HIDDEN**-0.5
    for (name, theirs), ours in zip(fused.state_dict().items(), cells.state_dict().values()):
        assert ours.abs().max() <= bound
        assert torch.equal(ours, theirs), name


def test_factory_returns_torch_modules_for_fused():
    assert type(recurrent_stack("rnn", "fused", INPUT, HIDDEN, 2, 0.1)) is nn.RNN
    assert recurrent_stack("rnn", "fused", INPUT, HIDDEN, 2, 0.1).nonlinearity == "tanh"
    assert type(recurrent_stack("gru", "fused", INPUT, HIDDEN, 2, 0.1)) is nn.GRU
    lstm = recurrent_stack("lstm", "fused", INPUT, HIDDEN, 2, 0.1)
    assert type(lstm) is nn.LSTM and lstm.batch_first and lstm.dropout == 0.1
    assert isinstance(recurrent_stack("lstm", "cells", INPUT, HIDDEN, 2, 0.1), CellStack)


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_only_in_training_and_only_between_layers(kind):
    inputs = torch.randn(BATCH, TIME, INPUT, dtype=torch.float64)
    fused, cells = make_pair(kind, 2, dropout=0.5)
    cells.eval()
    fused.eval()
    with torch.no_grad():
        eval_outputs, _ = cells(inputs)
        torch.testing.assert_close(eval_outputs, fused(inputs)[0], rtol=0, atol=1e-10)
        cells.train()
        torch.manual_seed(2)
        train_outputs, _ = cells(inputs)
    assert not torch.allclose(train_outputs, eval_outputs)

    # One layer: nothing lies between layers, so training mode changes nothing.
    _, single = make_pair(kind, 1, dropout=0.5)
    with torch.no_grad():
        single.train()
        train_outputs, _ = single(inputs)
        single.eval()
        torch.testing.assert_close(train_outputs, single(inputs)[0], rtol=0, atol=0)


EXPECTED_INTERNALS = {
    "rnn": {"hidden"},
    "gru": {"hidden", "reset_gate", "update_gate", "candidate"},
    "lstm": {"hidden", "cell", "input_gate", "forget_gate", "output_gate", "candidate"},
}


@pytest.mark.parametrize("kind", KINDS)
def test_trace_exposes_every_step(kind):
    num_layers = 2
    _, cells = make_pair(kind, num_layers)
    cells.eval()
    inputs = torch.randn(BATCH, TIME, INPUT, dtype=torch.float64)
    state = random_state(kind, num_layers)
    with torch.no_grad():
        outputs, final_state = cells(inputs, state)
        traced_outputs, traced_state, internals = cells.trace(inputs, state)
    torch.testing.assert_close(traced_outputs, outputs, rtol=0, atol=0)
    assert len(internals) == num_layers
    for layer, layer_internals in enumerate(internals):
        assert set(layer_internals) == EXPECTED_INTERNALS[kind]
        for name, values in layer_internals.items():
            assert values.shape == (BATCH, TIME, HIDDEN), name
        # The last step's hidden (and cell) state is the layer's final state.
        torch.testing.assert_close(layer_internals["hidden"][:, -1], as_tuple(final_state)[0][layer], rtol=0, atol=0)
        if kind == "lstm":
            torch.testing.assert_close(layer_internals["cell"][:, -1], final_state[1][layer], rtol=0, atol=0)
    torch.testing.assert_close(internals[-1]["hidden"], outputs, rtol=0, atol=0)
    for name, values in internals[0].items():
        if name.endswith("_gate"):
            assert 0 <= values.min() and values.max() <= 1, name


def test_unknown_impl_or_kind_is_one_setting_error_wherever_it_is_met():
    # One check each (config.check_impl, config.check_kind), where a run is set up and where a network is built.
    with pytest.raises(SettingError, match="unknown --impl 'cudnn'; choose one of fused, cells"):
        recurrent_stack("lstm", "cudnn", INPUT, HIDDEN, 1, 0.0)
    for build in (lambda: CellStack("transformer", INPUT, HIDDEN, 1),
                  lambda: recurrent_stack("transformer", "fused", INPUT, HIDDEN, 1, 0.0),
                  lambda: ModelConfig(model="transformer").validate()):
        with pytest.raises(SettingError, match="unknown model 'transformer'; choose one of rnn, gru, lstm"):
            build()
