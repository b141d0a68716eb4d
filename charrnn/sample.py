"""Generation, one step of work per new character: the hidden state is carried, the prefix never re-run."""

from __future__ import annotations

from typing import Iterator, Optional

import torch

from charrnn.errors import CharRNNError
from charrnn.model import CharRNN
from charrnn.stepper import Stepper, resolve_weight_precision
from charrnn.vocab import Vocab


def validate_sampling(temperature: float, top_k: Optional[int], top_p: Optional[float], length: int) -> None:
    if temperature < 0:
        raise CharRNNError(f"--temp must be 0 (greedy) or more (got {temperature})")
    if top_k is not None and top_k < 1:
        raise CharRNNError(f"--top-k must be at least 1 (got {top_k})")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise CharRNNError(f"--top-p must be in (0, 1] (got {top_p})")
    if length < 0:
        raise CharRNNError(f"--length must be 0 or more (got {length})")


def check_prime(vocab: Vocab, prime: str) -> None:
    """Refuse, before any text is written, a prime with characters the model cannot read."""
    unknown = vocab.unknown_chars(prime)
    if unknown:
        raise CharRNNError(
            f"the prime has characters the model never saw: {', '.join(map(repr, unknown))}; "
            "leave them out of --prime (or stdin), or train on text that has them")


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


def choose(logits: torch.Tensor, temperature: float, top_k: Optional[int], top_p: Optional[float],
           generator: torch.Generator) -> torch.Tensor:
    """One character id per row of `logits` [batch, vocab]."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    scaled = logits.float() if temperature == 1 else logits.float() / temperature  # at 1, a call per step saved
    probabilities = torch.softmax(filter_logits(scaled, top_k, top_p), dim=-1)
    # The exponential race: argmax(p / Exp(1)) picks id i with probability p_i. It is what
    # torch.multinomial does for one draw (same generator, same pick) without its input checks,
    # which cost three times the draw itself at batch 1.
    race = torch.empty_like(probabilities).exponential_(generator=generator)
    return probabilities.div_(race).argmax(dim=-1)


@torch.inference_mode()
def generate(model: CharRNN, vocab: Vocab, prime: str = "", length: int = 1000, temperature: float = 1.0,
             top_k: Optional[int] = None, top_p: Optional[float] = None, seed: Optional[int] = None,
             num_samples: int = 1, device: Optional[torch.device] = None, precision: str = "auto") -> Iterator[list[str]]:
    """Yield, for each new position, the next character of every sample.

    `precision` is how the steps store the weights (see `stepper.WEIGHT_PRECISIONS`); the prime is
    always read by the model itself, in fp32.
    """
    validate_sampling(temperature, top_k, top_p, length)
    device = device or next(model.parameters()).device
    precision = resolve_weight_precision(precision, device, num_samples)
    model.eval()
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else torch.seed())
    # With no prime, start as at the beginning of a line, so the first character is a likely one.
    context = prime or ("\n" if "\n" in vocab else vocab.chars[0])
    # The prime is read once, in one call over the whole sequence; every sample continues from it.
    logits, state = model(torch.from_numpy(vocab.encode(context)).to(device).unsqueeze(0))
    logits = logits[:, -1].expand(num_samples, -1)
    stepper = Stepper(model, state, precision)
    stepper.repeat(num_samples)
    for _ in range(length):
        chosen = choose(logits, temperature, top_k, top_p, generator)
        yield [vocab.chars[i] for i in chosen.tolist()]
        logits = stepper.step(chosen)
