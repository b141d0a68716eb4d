"""Sampling: carried state, reproducible seeds, temperature and filters; primes of any length, streamed."""

import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch

from charrnn.config import ModelConfig
from charrnn.errors import CharRNNError
from charrnn.model import CharRNN
from charrnn.sample import checked_pieces, filter_logits, generate
from charrnn.vocab import Vocab
from conftest import DEVICES, charrnn_command

VOCAB = Vocab("\n abcdefgh")


@pytest.fixture
def model():
    torch.manual_seed(0)
    return CharRNN(ModelConfig(vocab_size=len(VOCAB), model="lstm", layers=2, hidden=16, embed=8)).eval()


def text(model, **options):
    return "".join(chars[0] for chars in generate(model, VOCAB, **options))


def test_same_seed_same_text(model):
    assert text(model, length=50, seed=7) == text(model, length=50, seed=7)
    assert text(model, length=50, seed=7) != text(model, length=50, seed=8)


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
    drawn = [VOCAB.chars.index(char) for chars in generate(model, VOCAB, length=200, num_samples=64, seed=0,
                                                        temperature=temperature, device=torch.device(device)) for char in chars]
    shares = torch.bincount(torch.tensor(drawn), minlength=len(VOCAB)) / len(drawn)
    expected = probabilities ** (1 / temperature) / (probabilities ** (1 / temperature)).sum()
    tolerance = 4 * (expected * (1 - expected) / len(drawn)).sqrt() + 1e-3  # four standard deviations
    assert ((shares - expected).abs() <= tolerance).all(), (shares, expected)


def test_greedy_follows_the_likeliest_character_of_the_whole_sequence(model):
    generated = text(model, prime="ab", length=20, temperature=0.0)
    # re-running the whole prefix each time must agree with the carried state
    context = "ab"
    for char in generated:
        logits, _ = model(torch.from_numpy(VOCAB.encode(context)).unsqueeze(0))
        assert VOCAB.chars[logits[0, -1].argmax().item()] == char
        context += char


def test_batch_of_samples_yields_one_character_per_sample(model):
    steps = list(generate(model, VOCAB, length=5, num_samples=3, seed=1))
    assert len(steps) == 5 and all(len(chars) == 3 for chars in steps)


def test_top_k_and_top_p_keep_the_likeliest():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, 2, None)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, None, 0.7)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, None, 0.5)).tolist() == [[False, True, True, True]]
    assert torch.isinf(filter_logits(logits, None, 1.0)).tolist() == [[False] * 4]


def forward_widths(model, monkeypatch) -> list[int]:
    """Record how many characters each forward call of `model` reads."""
    widths, forward = [], model.forward
    monkeypatch.setattr(model, "forward", lambda ids, state=None: widths.append(ids.size(1)) or forward(ids, state))
    return widths


def test_long_prime_is_read_in_chunks_with_the_state_carried(model, monkeypatch):
    prime = "abc defgh\nhg fed cba"
    whole = text(model, prime=prime, length=20, temperature=0.0)
    monkeypatch.setattr("charrnn.sample.PRIME_CHUNK", 4)
    widths = forward_widths(model, monkeypatch)
    assert text(model, prime=prime, length=20, temperature=0.0) == whole
    assert max(widths) <= 4 and sum(widths) == len(prime)  # memory is one chunk's, however long the prime


def test_streamed_prime_is_read_a_piece_at_a_time(model, monkeypatch):
    # A piped prime may never end: each piece is read by the model before the next is asked for.
    events = []
    widths = forward_widths(model, monkeypatch)

    def pieces():
        for piece in ("ab", "cd", "ef"):
            events.append(("asked", len(widths)))
            yield piece

    assert len(list(generate(model, VOCAB, prime=pieces(), length=3, seed=0))) == 3
    assert events == [("asked", 0), ("asked", 1), ("asked", 2)]
    assert text(model, prime=iter(["ab", "cd", "ef"]), length=10, temperature=0.0) == text(
        model, prime="abcdef", length=10, temperature=0.0)


def test_a_streamed_prime_is_refused_at_its_first_unreadable_piece():
    passed = []
    with pytest.raises(CharRNNError, match=r"never saw: 'X'"):
        for piece in checked_pieces(VOCAB, ["ab", "cXd", "ef"]):
            passed.append(piece)
    assert passed == ["ab"]  # what came before was passed on (and echoed); nothing after


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
