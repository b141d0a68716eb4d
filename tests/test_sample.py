"""Sampling: carried state, reproducible seeds, temperature and filters; primes of any length, streamed."""

import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch

from charrnn.config import ModelConfig, SamplingSettings
from charrnn.errors import CharRNNError
from charrnn.items import passed_on
from charrnn.model import CharRNN
from charrnn.sample import choose, filter_logits, generate
from charrnn.vocab import Vocab
from conftest import DEVICES, charrnn_command

VOCAB = Vocab("\n abcdefgh")


@pytest.fixture
def model():
    torch.manual_seed(0)
    return CharRNN(ModelConfig(vocab_size=len(VOCAB), model="lstm", layers=2, hidden=16, embed=8)).eval()


def texts(model, prime="", **settings) -> list[str]:
    """Each sample's text, from `generate`'s steps of one character per sample."""
    return ["".join(sample) for sample in zip(*generate(model, VOCAB, prime, SamplingSettings(**settings)))]


def text(model, prime="", **settings) -> str:
    return texts(model, prime, **settings)[0]


def test_same_seed_same_text_and_a_batch_of_independent_samples(model):
    batch = texts(model, "ab", length=40, seed=7, n=4, top_k=5, temperature=0.8)
    assert len(batch) == 4 and all(len(sample) == 40 for sample in batch)
    assert batch == texts(model, "ab", length=40, seed=7, n=4, top_k=5, temperature=0.8)
    assert batch != texts(model, "ab", length=40, seed=8, n=4, top_k=5, temperature=0.8)
    assert len(set(batch)) == 4  # one batch, yet independent samples


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_each_character_is_drawn_as_often_as_the_model_says(device, temperature):
    """A head that ignores the state gives every step the same probabilities: over 64 samples of 200
    characters, each character's share is its probability (sharpened by the temperature), rare ones too."""
    probabilities = torch.tensor([0.40, 0.25, 0.15, 0.08, 0.05, 0.03, 0.02, 0.01, 0.005, 0.005])
    model = CharRNN(ModelConfig(vocab_size=len(VOCAB), model="lstm", layers=2, hidden=16, embed=8)).eval()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(probabilities.log())
    model.to(device)
    settings = SamplingSettings(length=200, n=64, seed=0, temperature=temperature)
    drawn = [VOCAB.chars.index(char) for chars in generate(model, VOCAB, "", settings, torch.device(device)) for char in chars]
    shares = torch.bincount(torch.tensor(drawn), minlength=len(VOCAB)) / len(drawn)
    expected = probabilities ** (1 / temperature) / (probabilities ** (1 / temperature)).sum()
    tolerance = 4 * (expected * (1 - expected) / len(drawn)).sqrt() + 1e-3  # four standard deviations
    assert ((shares - expected).abs() <= tolerance).all(), (shares, expected)


def test_greedy_follows_the_likeliest_character_of_the_whole_sequence(model):
    generated = text(model, "ab", length=20, temperature=0.0)
    # re-running the whole prefix each time must agree with the carried state
    context = "ab"
    for char in generated:
        logits, _ = model(torch.from_numpy(VOCAB.encode(context)).unsqueeze(0))
        assert VOCAB.chars[logits[0, -1].argmax().item()] == char
        context += char


def test_top_k_and_top_p_keep_the_likeliest():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, 2, None)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, None, 0.7)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, None, 0.5)).tolist() == [[False, True, True, True]]
    assert torch.isinf(filter_logits(logits, None, 1.0)).tolist() == [[False] * 4]


@pytest.mark.parametrize("top_k, top_p", [(None, None), (3, None), (None, 0.6)])
def test_choose_draws_exactly_what_multinomial_draws(top_k, top_p):
    logits = torch.randn(16, 10, generator=torch.Generator().manual_seed(0)) * 2
    settings = SamplingSettings(temperature=0.7, top_k=top_k, top_p=top_p)
    for seed in range(50):
        chosen = choose(logits, settings, torch.Generator().manual_seed(seed))
        probabilities = torch.softmax(filter_logits(logits / 0.7, top_k, top_p), dim=-1)
        expected = torch.multinomial(probabilities, 1, generator=torch.Generator().manual_seed(seed)).squeeze(-1)
        assert torch.equal(chosen, expected)


@pytest.mark.parametrize("temperature", [1e-13, 1e-38, 1e-45, 5e-324])
def test_a_temperature_too_small_to_divide_by_is_greedy(temperature):
    """Below GREEDY_BELOW the draw is greedy: logits / t overflowed to inf from 1e-38 and every draw was the first
    character. Large logits, so that even 1e-36 would overflow."""
    logits = torch.randn(8, 10, generator=torch.Generator().manual_seed(0)) * 400
    chosen = choose(logits, SamplingSettings(temperature=temperature), torch.Generator().manual_seed(0))
    assert torch.equal(chosen, logits.argmax(dim=-1)) and len(set(chosen.tolist())) > 1


def forward_widths(model, monkeypatch) -> list[int]:
    """Record how many characters each forward call of `model` reads."""
    widths, forward = [], model.forward
    monkeypatch.setattr(model, "forward", lambda ids, state=None: widths.append(ids.size(1)) or forward(ids, state))
    return widths


def test_long_prime_is_read_in_chunks_with_the_state_carried(model, monkeypatch):
    prime = "abc defgh\nhg fed cba"
    whole = text(model, prime, length=20, temperature=0.0)
    monkeypatch.setattr("charrnn.sample.PRIME_CHUNK", 4)
    widths = forward_widths(model, monkeypatch)
    assert text(model, prime, length=20, temperature=0.0) == whole
    assert max(widths) <= 4 and sum(widths) == len(prime)  # memory is one chunk's, however long the prime


def test_streamed_prime_is_read_a_piece_at_a_time(model, monkeypatch):
    # A piped prime may never end: each piece is read by the model before the next is asked for.
    events = []
    widths = forward_widths(model, monkeypatch)

    def pieces():
        for piece in ("ab", "cd", "ef"):
            events.append(("asked", len(widths)))
            yield piece

    assert len(list(generate(model, VOCAB, pieces(), SamplingSettings(length=3, seed=0)))) == 3
    assert events == [("asked", 0), ("asked", 1), ("asked", 2)]
    assert text(model, iter(["ab", "cd", "ef"]), length=10, temperature=0.0) == text(model, "abcdef", length=10,
                                                                                     temperature=0.0)


def test_a_prime_is_refused_once_and_a_refused_piece_never_echoed(model):
    with pytest.raises(CharRNNError, match=r"never saw: 'X'"):
        generate(model, VOCAB, "abcXd")  # a string: at the call, before any step
    echoed = []
    steps = generate(model, VOCAB, passed_on(["ab", "cXd", "ef"], echoed.append), SamplingSettings(length=3))
    with pytest.raises(CharRNNError, match=r"never saw: 'X'"):
        next(steps)
    assert echoed == ["ab"]  # what the model read was echoed (as `charrnn sample` does); not the refused piece


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


@pytest.mark.skipif(not Path("/proc/self/status").exists() or shutil.which("yes") is None, reason="needs /proc and yes")
def test_endless_piped_prime_streams_in_bounded_memory(cli, tiny_run):
    # `yes | charrnn sample`: the prime never ends, so it is echoed as it is read, in constant memory.
    # Before, stdin was read whole: no output ever, and memory grew until the watch below stopped it.
    want, limit = 300_000, 1 << 30
    yes = subprocess.Popen(["yes", "All: speak."], stdout=subprocess.PIPE)
    sample = subprocess.Popen([*charrnn_command(), "sample", "-c", str(tiny_run), "--length", "1", "--device", "cpu"],
                              stdin=yes.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli.env)
    yes.stdout.close()  # sample holds the only reader, so yes stops when sample does
    echoed, peak, deadline = b"", 0, time.monotonic() + 120
    try:
        while len(echoed) < want and peak < limit and time.monotonic() < deadline and sample.poll() is None:
            if select.select([sample.stdout], [], [], 0.2)[0]:
                echoed += os.read(sample.stdout.fileno(), 1 << 16)
            peak = max(peak, rss_bytes(sample.pid))
    finally:
        sample.kill()
        yes.kill()
        _, stderr = sample.communicate()
        yes.wait()
    assert len(echoed) >= want and peak < limit, (len(echoed), peak, stderr)
    assert echoed.startswith(b"All: speak.\n" * 100)


def test_a_tiny_temperature_writes_the_greedy_text_from_the_cli_and_the_api(cli, tiny_run):
    # Before, --temp 1e-38 wrote newlines (logits / t overflowed, softmax gave NaN, every draw the first character).
    import charrnn

    greedy = charrnn.load(tiny_run, device="cpu").generate("All:", length=40, temperature=0)
    assert charrnn.load(tiny_run, device="cpu").generate("All:", length=40, temperature=1e-38) == greedy
    assert greedy.count("\n") < 20
    shown = cli("sample", "-c", tiny_run, "--prime", "All:", "--length", "40", "--temp", "1e-38", "--device", "cpu")
    assert shown.stdout == "All:" + greedy + "\n"
