"""Generation, one step of work per new character: the hidden state is carried, the prefix never re-run."""

from __future__ import annotations

import secrets
from typing import Iterable, Iterator, Optional, Union

import numpy as np
import torch

from charrnn.config import SamplingSettings
from charrnn.errors import CharRNNError
from charrnn.model import CharRNN, State
from charrnn.stepper import Stepper, resolve_weight_precision
from charrnn.vocab import UNKNOWN, Vocab, code_points

# Characters of the prime read per forward call, the state carried from one call to the next. A
# call's activations grow with its length (a 5 MB prime in one call asked for over 5 GB on a 1x32
# LSTM), so a prime of any length, even an endless one piped in, is read in the memory of this many.
PRIME_CHUNK = 4096


def chosen_seed(seed: Optional[int]) -> int:
    """`seed`, or a fresh random one when none is given: a seed that can be reported reproduces the text."""
    return seed if seed is not None else secrets.randbits(63)


def prime_ids(vocab: Vocab, prime: str) -> np.ndarray:
    """The prime's ids, in the Unicode form the model knows (`Vocab.reading`); refused, naming the characters,
    when the model cannot read some of them."""
    prime = vocab.in_form(prime)
    ids = vocab.lookup(code_points(prime))
    if (ids == UNKNOWN).any():  # one vectorized test; the slow naming only on the way out
        raise CharRNNError(
            f"the prime has characters the model never saw: {', '.join(map(repr, vocab.unknown_chars(prime)))}; "
            "leave them out of --prime (or stdin), or train on text that has them")
    return ids.astype(np.int64)


Prime = Union[str, Iterable[str]]  # a string, or its pieces as they arrive (a stream read lazily)


def encoded(vocab: Vocab, prime: Prime) -> Iterable[np.ndarray]:
    """The prime's ids, piece by piece: a string's now, so that it is refused at once; a stream's as each piece is
    read, so that a piece is refused before anything after it (or its own echo: see items.passed_on) is written."""
    if isinstance(prime, str):
        return [prime_ids(vocab, prime)]
    return (prime_ids(vocab, piece) for piece in prime)


def read_prime(model: CharRNN, pieces: Iterable[np.ndarray],
               device: torch.device) -> tuple[Optional[torch.Tensor], Optional[State]]:
    """The logits after the prime's last character, and the state: PRIME_CHUNK characters per call, so
    memory stays that of one chunk however long the prime. (None, None) for an empty prime."""
    logits, state = None, None
    for piece in pieces:
        for start in range(0, len(piece), PRIME_CHUNK):
            ids = torch.from_numpy(piece[start : start + PRIME_CHUNK]).to(device)
            chunk_logits, state = model(ids.unsqueeze(0), state)
            logits = chunk_logits[:, -1]
    return logits, state


def filter_logits(logits: torch.Tensor, top_k: Optional[int], top_p: Optional[float]) -> torch.Tensor:
    """Keep the k likeliest characters, then the smallest set whose probability reaches p."""
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        # Drop a character when the ones before it already reach p; the likeliest always stays.
        drop_sorted = cumulative - torch.softmax(sorted_logits, dim=-1) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def choose(logits: torch.Tensor, settings: SamplingSettings, generator: torch.Generator) -> torch.Tensor:
    """One character id per row of `logits` [batch, vocab]."""
    if settings.greedy:
        return logits.argmax(dim=-1)
    temperature = settings.temperature
    scaled = logits.float() if temperature == 1 else logits.float() / temperature  # at 1, a call per step saved
    probabilities = torch.softmax(filter_logits(scaled, settings.top_k, settings.top_p), dim=-1)
    # The exponential race: argmax(p / Exp(1)) picks id i with probability p_i. It is what
    # torch.multinomial does for one draw (same generator, same pick) without its input checks,
    # which cost three times the draw itself at batch 1.
    race = torch.empty_like(probabilities).exponential_(generator=generator)
    return probabilities.div_(race).argmax(dim=-1)


def generate(model: CharRNN, vocab: Vocab, prime: Prime = "", settings: Optional[SamplingSettings] = None,
             device: Optional[torch.device] = None) -> Iterator[list[str]]:
    """Yield, for each new position, the next character of every sample (`settings.n` of them).

    The prime is refused now if the model cannot read some of it (a stream: as each piece is read, see
    `encoded`); it is always read by the model itself, in fp32. `settings` default to SamplingSettings();
    their precision is how the steps store the weights; stop strings and lines are the caller's (`items`).
    """
    return steps(model, vocab, encoded(vocab, prime), settings or SamplingSettings(),
                 device or next(model.parameters()).device)


@torch.inference_mode()
def steps(model: CharRNN, vocab: Vocab, prime: Iterable[np.ndarray], settings: SamplingSettings,
          device: torch.device) -> Iterator[list[str]]:
    precision = resolve_weight_precision(settings.precision, device, settings.n)
    model.eval()
    # Drawn on the host whatever the device: a seed gives the same draws everywhere (a GPU's generator makes others),
    # and a draw is too little work to gain from a GPU.
    generator = torch.Generator()
    generator.manual_seed(chosen_seed(settings.seed))
    # The prime is read once, for all samples: every sample continues from its state.
    logits, state = read_prime(model, prime, device)
    if logits is None:  # no prime: start as at the beginning of a line, so the first character is a likely one
        logits, state = read_prime(model, encoded(vocab, "\n" if "\n" in vocab else vocab.chars[0]), device)
        assert logits is not None  # a prime of one known character
    logits = logits.expand(settings.n, -1)
    stepper = Stepper(model, state, precision)
    stepper.repeat(settings.n)
    for _ in range(settings.length):
        chosen = choose(logits.cpu(), settings, generator)
        yield [vocab.chars[i] for i in chosen.tolist()]
        logits = stepper.step(chosen.to(device))
