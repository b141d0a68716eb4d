"""The recurrent state: made at zero, cut per layer and joined back, mapped, in every cell type's shape."""

import pytest
import torch

from charrnn.config import ModelConfig
from charrnn.model import CharRNN, hidden_of, is_pair, join_layers, map_state, split_layers, zero_state


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_a_state_is_made_cut_and_joined_in_the_networks_own_shape(kind):
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=7, model=kind, layers=3, hidden=5, embed=4)).eval()
    _, carried = model(torch.randint(0, 7, (2, 6)))  # what torch's module hands back: the shape to keep
    zeros = zero_state(kind, 3, 2, 5, dtype=torch.float64)
    assert is_pair(carried) == is_pair(zeros) == (kind == "lstm")
    parts = zeros if is_pair(zeros) else (zeros,)
    assert all(part.shape == (3, 2, 5) and part.dtype == torch.float64 and not part.any() for part in parts)
    layers = split_layers(carried)
    assert len(layers) == 3 and all(is_pair(layer) == is_pair(carried) for layer in layers)
    torch.testing.assert_close(hidden_of(layers[1]), hidden_of(carried)[1], rtol=0, atol=0)
    torch.testing.assert_close(join_layers(layers), carried, rtol=0, atol=0)
    halved = map_state(lambda part: part / 2, carried)
    assert is_pair(halved) == is_pair(carried) and torch.equal(hidden_of(halved), hidden_of(carried) / 2)
    # The network starts from this zero state when given none.
    with torch.inference_mode():
        ids = torch.randint(0, 7, (2, 4))
        torch.testing.assert_close(model(ids)[0], model(ids, model.initial_state(2, torch.device("cpu")))[0])
