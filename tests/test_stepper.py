"""The fast one-step path agrees with the model's full forward, for every cell and implementation."""

import pytest
import torch

from charrnn.config import ModelConfig
from charrnn.model import CharRNN
from charrnn.sample import choose, filter_logits, generate
from charrnn.errors import CharRNNError
from charrnn.stepper import Stepper, fp16_weights_supported, resolve_weight_precision
from charrnn.vocab import Vocab

VOCAB = Vocab("\n abcdefgh")


def make_model(kind: str, impl: str, layers: int = 2) -> CharRNN:
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=len(VOCAB), model=kind, layers=layers, hidden=24, embed=8, dropout=0.2), impl=impl)
    with torch.no_grad():  # non-zero biases everywhere, so a misplaced bias would show
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model.eval()


@pytest.mark.parametrize("impl", ["fused", "cells"])
@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 3])
def test_step_logits_equal_the_full_forward(kind, impl, layers):
    model = make_model(kind, impl, layers)
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
    model = make_model(kind, "fused")
    ids = torch.tensor([[1, 5, 2, 7]])
    with torch.inference_mode():
        expected, _ = model(ids)
        stepper = Stepper(model)
        steps = [stepper.step(ids[:, t]) for t in range(4)]
    torch.testing.assert_close(torch.stack(steps, dim=1), expected, rtol=1e-5, atol=1e-5)


def test_repeated_state_gives_every_sample_the_prime():
    model = make_model("lstm", "fused")
    prime = torch.tensor([[3, 1, 4]])
    with torch.inference_mode():
        _, state = model(prime)
        stepper = Stepper(model, state)
        stepper.repeat(5)
        logits = stepper.step(torch.full((5,), 2))
        expected, _ = model(torch.tensor([[3, 1, 4, 2]]))
    torch.testing.assert_close(logits, expected[:, -1].expand(5, -1), rtol=1e-5, atol=1e-5)


def sample_texts(model, **options):
    return ["".join(chars) for chars in zip(*generate(model, VOCAB, **options))]


@pytest.mark.parametrize("impl", ["fused", "cells"])
def test_same_seed_same_text_for_both_implementations(impl):
    model = make_model("gru", impl)
    first = sample_texts(model, prime="ab", length=40, seed=3, num_samples=4, top_k=5, temperature=0.8)
    assert first == sample_texts(model, prime="ab", length=40, seed=3, num_samples=4, top_k=5, temperature=0.8)
    assert first == sample_texts(make_model("gru", "cells" if impl == "fused" else "fused"),
                                 prime="ab", length=40, seed=3, num_samples=4, top_k=5, temperature=0.8)
    assert len(set(first)) > 1  # one batch, yet independent samples


def test_greedy_matches_rerunning_the_prefix():
    model = make_model("lstm", "fused")
    generated = sample_texts(model, prime="ab", length=15, temperature=0.0)[0]
    context = "ab"
    for char in generated:
        with torch.inference_mode():
            logits, _ = model(torch.from_numpy(VOCAB.encode(context)).unsqueeze(0))
        assert VOCAB.chars[int(logits[0, -1].argmax())] == char
        context += char


@pytest.mark.parametrize("top_k, top_p", [(None, None), (3, None), (None, 0.6)])
def test_choose_draws_exactly_what_multinomial_draws(top_k, top_p):
    logits = torch.randn(16, 10, generator=torch.Generator().manual_seed(0)) * 2
    for seed in range(50):
        chosen = choose(logits, 0.7, top_k, top_p, torch.Generator().manual_seed(seed))
        probabilities = torch.softmax(filter_logits(logits / 0.7, top_k, top_p), dim=-1)
        expected = torch.multinomial(probabilities, 1, generator=torch.Generator().manual_seed(seed)).squeeze(-1)
        assert torch.equal(chosen, expected)


needs_fp16 = pytest.mark.skipif(not fp16_weights_supported(),
                                reason="fp16 weights need fbgemm (an x86 CPU build of torch)")


@needs_fp16
@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_fp16_weights_move_the_logits_by_rounding_only(kind):
    model = make_model(kind, "fused")
    ids = torch.randint(len(VOCAB), (1, 40), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected, _ = model(ids)
        prime_logits, state = model(ids[:, :4])
        stepper = Stepper(model, state, precision="fp16")
        stepper.repeat(3)  # a carried state expanded to a batch, as -n gives it
        steps = torch.stack([stepper.step(ids[0, t].expand(3)) for t in range(4, 40)], dim=1)
    # W rounded to 11 significant bits: the logits move by about 1e-3, the loss by far less.
    torch.testing.assert_close(steps, expected[:, 4:].expand(3, -1, -1), rtol=0, atol=1e-2)
    assert not torch.equal(steps[0], expected[0, 4:])  # the fp16 path really ran
    targets = ids[0, 5:]
    loss = torch.nn.functional.cross_entropy
    assert abs(loss(steps[0, :-1], targets) - loss(expected[0, 4:-1], targets)) < 1e-3


def test_sampling_precision_is_checked():
    cpu = torch.device("cpu")
    assert resolve_weight_precision("fp32", cpu) == "fp32"
    assert resolve_weight_precision("auto", cpu) == ("fp16" if fp16_weights_supported() else "fp32")
    assert resolve_weight_precision("auto", torch.device("cuda")) == "fp32"  # no device needed to decide
    with pytest.raises(CharRNNError, match="fbgemm"):
        resolve_weight_precision("fp16", torch.device("cuda"))
    with pytest.raises(CharRNNError, match="choose one of auto, fp32, fp16"):
        resolve_weight_precision("bf16", cpu)
