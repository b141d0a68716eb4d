"""The fast one-step path agrees with the model's full forward, for every cell type (the implementations share
its parameters: test_cells), at every weight precision."""

import pytest
import torch

from charrnn.config import ModelConfig
from charrnn.model import CharRNN
from charrnn.errors import CharRNNError
from charrnn.sample import BATCHED_SAMPLES, Stepper, packed_weights_supported, resolve_weight_precision
from charrnn.vocab import Vocab

VOCAB = Vocab("\n abcdefgh")


def make_model(kind: str, layers: int = 2) -> CharRNN:
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=len(VOCAB), model=kind, layers=layers, hidden=24, embed=8, dropout=0.2))
    with torch.no_grad():  # non-zero biases everywhere, so a misplaced bias would show
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model.eval()


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 3])
def test_step_logits_equal_the_full_forward(kind, layers):
    model = make_model(kind, layers)
    ids = torch.randint(len(VOCAB), (3, 12), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected, expected_state = model(ids)
        prime_logits, state = model(ids[:, :4])
        stepper = Stepper(model, state)
        steps = [stepper.step(ids[:, t]) for t in range(4, 12)]
    torch.testing.assert_close(prime_logits, expected[:, :4], rtol=1e-5, atol=1e-5)
    # the logits after id t predict position t + 1: they match the forward's output at t
    torch.testing.assert_close(torch.stack(steps, dim=1), expected[:, 4:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(stepper.state, expected_state, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_a_fresh_stepper_starts_from_the_zero_state(kind):
    model = make_model(kind)
    ids = torch.tensor([[1, 5, 2, 7]])
    with torch.inference_mode():
        expected, _ = model(ids)
        stepper = Stepper(model)
        steps = [stepper.step(ids[:, t]) for t in range(4)]
    torch.testing.assert_close(torch.stack(steps, dim=1), expected, rtol=1e-5, atol=1e-5)


def test_repeated_state_gives_every_sample_the_prime():
    model = make_model("lstm")
    prime = torch.tensor([[3, 1, 4]])
    with torch.inference_mode():
        _, state = model(prime)
        stepper = Stepper(model, state)
        stepper.repeat(5)
        logits = stepper.step(torch.full((5,), 2))
        expected, _ = model(torch.tensor([[3, 1, 4, 2]]))
    torch.testing.assert_close(logits, expected[:, -1].expand(5, -1), rtol=1e-5, atol=1e-5)


# How far packed weights may move the logits and the loss: fp16 rounds W to 11 significant bits;
# int8 keeps 8 bits per weight and 7 per input (trained models' loss moves by 0.0002 to 0.001).
PACKED_TOLERANCE = {"fp16": (1e-2, 1e-3), "int8": (5e-2, 3e-3)}


@pytest.mark.parametrize("precision", ["fp16", "int8"])
@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_packed_weights_move_the_logits_by_rounding_only(kind, precision):
    if not packed_weights_supported(precision):
        pytest.skip(f"{precision} weights need fbgemm (an x86 CPU build of torch)")
    logits_tolerance, loss_tolerance = PACKED_TOLERANCE[precision]
    model = make_model(kind)
    ids = torch.randint(len(VOCAB), (1, 40), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected, _ = model(ids)
        prime_logits, state = model(ids[:, :4])
        stepper = Stepper(model, state, precision=precision)
        stepper.repeat(3)  # a carried state expanded to a batch, as -n gives it
        steps = torch.stack([stepper.step(ids[0, t].expand(3)) for t in range(4, 40)], dim=1)
    torch.testing.assert_close(steps, expected[:, 4:].expand(3, -1, -1), rtol=0, atol=logits_tolerance)
    assert not torch.equal(steps[0], expected[0, 4:])  # the packed path really ran
    targets = ids[0, 5:]
    loss = torch.nn.functional.cross_entropy
    assert abs(loss(steps[0, :-1], targets) - loss(expected[0, 4:-1], targets)) < loss_tolerance


def test_sampling_precision_is_checked():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_weight_precision("fp32", cpu) == "fp32"
    assert resolve_weight_precision("auto", cpu) == ("fp16" if packed_weights_supported("fp16") else "fp32")
    batched = "int8" if packed_weights_supported("int8") else resolve_weight_precision("auto", cpu)
    assert resolve_weight_precision("auto", cpu, num_samples=BATCHED_SAMPLES) == batched
    assert resolve_weight_precision("auto", cpu, num_samples=BATCHED_SAMPLES - 1) == resolve_weight_precision("auto", cpu)
    assert resolve_weight_precision("auto", cuda, num_samples=16) == "fp32"  # no device needed to decide
    for precision in ("fp16", "int8"):
        with pytest.raises(CharRNNError, match="fbgemm"):
            resolve_weight_precision(precision, cuda)

