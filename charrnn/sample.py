"""Generation, one step of work per new character: the hidden state is carried, the prefix never re-run.

The step (`Stepper`) runs one character at a time through a trained CharRNN, with the state carried. At batch
size 1 a step is memory-bound: every weight is read once per character. So a step does that and little else:
a table lookup for the first layer's input, one matrix-vector product per layer, the head. On x86 CPUs the
weights can be stored in fp16 and multiplied by fbgemm in fp32 arithmetic: half the bytes to read, so nearly
twice the characters a second.

Several samples in one batch turn the products compute-bound: each weight read is now used once per
sample. There fbgemm's int8 products pay (twice fp32's arithmetic per instruction on AVX2), and so
can a second core (`on_fastest_threads`), where at batch 1 both only add fixed costs per call.

How many threads generation runs on: one for a few samples, and for a batch whichever is faster now.

A step splits its products over the threads and waits for the slowest. One sample's step is too
small to split: more threads only add synchronization (2x512 on 2 idle cores: 3,030 chars/s on one
thread, 2,840 on two) and, when another job holds a core, stall on it (3,140 against 1,250). A
batch's step is large enough to gain from every core on an idle machine, and loses the same way on
a busy one (2x512, -n 16, 2 cores: 19,000 chars/s on two threads when idle, 11,000 on one; 4,200
on two and 11,000 on one while another process holds a core). So a batch times its steps on each
thread count and keeps the faster, and checks again now and then, since other jobs come and go.
"""

from __future__ import annotations

import functools
import itertools
import secrets
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Optional, TypeVar, Union

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from charrnn.config import SamplingSettings
from charrnn.errors import CharRNNError
from charrnn.model import (
    CharRNN,
    Internals,
    State,
    gru_update,
    hidden_of,
    join_layers,
    lstm_update,
    map_state,
    rnn_update,
    split_layers,
    zero_state,
)
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
            "leave them out of --prime (or stdin), or train on text that has them"
        )
    return ids.astype(np.int64)


Prime = Union[str, Iterable[str]]  # a string, or its pieces as they arrive (a stream read lazily)


def encoded(vocab: Vocab, prime: Prime) -> Iterable[np.ndarray]:
    """The prime's ids, piece by piece: a string's now, so that it is refused at once; a stream's as each piece is
    read, so that a piece is refused before anything after it (or its own echo: see items.passed_on) is written."""
    if isinstance(prime, str):
        return [prime_ids(vocab, prime)]
    return (prime_ids(vocab, piece) for piece in prime)


def read_prime(
    model: CharRNN, pieces: Iterable[np.ndarray], device: torch.device
) -> tuple[Optional[torch.Tensor], Optional[State]]:
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


def generate(
    model: CharRNN,
    vocab: Vocab,
    prime: Prime = "",
    settings: Optional[SamplingSettings] = None,
    device: Optional[torch.device] = None,
) -> Iterator[list[str]]:
    """Yield, for each new position, the next character of every sample (`settings.n` of them).

    The prime is refused now if the model cannot read some of it (a stream: as each piece is read, see
    `encoded`); it is always read by the model itself, in fp32. `settings` default to SamplingSettings();
    their precision is how the steps store the weights; stop strings and lines are the caller's (`items`).
    """
    return steps(
        model, vocab, encoded(vocab, prime), settings or SamplingSettings(), device or next(model.parameters()).device
    )


@torch.inference_mode()
def steps(
    model: CharRNN, vocab: Vocab, prime: Iterable[np.ndarray], settings: SamplingSettings, device: torch.device
) -> Iterator[list[str]]:
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


# Each takes its own kind's state: the RNN's a tensor, the LSTM's a pair.
UPDATES: dict[str, Callable[..., tuple[State, Internals]]] = {"rnn": rnn_update, "lstm": lstm_update}
PACKED_PRECISIONS = ("fp16", "int8")  # multiplied by fbgemm, from its own packed layouts
BATCHED_SAMPLES = 4  # from this many samples, int8 on every core beats fp16 on one (benchmarks/RESULTS.md)
# torch marks its fbgemm fp16 functions and quantized tensors deprecated, yet they are its fastest products
# on x86 CPUs (benchmarks/RESULTS.md): keep them, and fall back to fp32 the day they are gone.


@functools.cache
def packed_weights_supported(precision: str) -> bool:
    """fbgemm's fp16-weight and int8 products: in x86 CPU builds of torch, on CPUs with AVX2.

    torch says once per process that these routes are deprecated: here, where that once is silenced,
    without changing the caller's warning filters.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            Projection(torch.ones(8, 8), None, precision)(torch.ones(1, 8))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return True


def resolve_weight_precision(name: str, device: torch.device, num_samples: int = 1) -> str:
    """One of config.WEIGHT_PRECISIONS made concrete for this device: auto is fp16 on x86 CPUs, int8 there for a
    batch of BATCHED_SAMPLES or more, fp32 elsewhere (CUDA, MPS, ARM); fp16 and int8 refused where fbgemm is not."""
    on_cpu = device.type == "cpu"
    if name in PACKED_PRECISIONS and not (on_cpu and packed_weights_supported(name)):
        raise CharRNNError(
            f"--precision {name}: {name} weights need fbgemm (x86 with AVX2, a CPU device); use --precision fp32"
        )
    if name == "auto":
        preferred = ("int8", "fp16") if num_samples >= BATCHED_SAMPLES else ("fp16",)
        return next((p for p in preferred if on_cpu and packed_weights_supported(p)), "fp32")
    return name


class Projection:
    """x -> x W^T + b, or x W^T + addend, for weights fixed once: a step's matrix-vector product.

    fp16 keeps W in fbgemm's packed half-precision layout; the products and sums stay fp32, so the
    only change is W rounded to 11 significant bits (logits move by about 1e-3). int8 keeps each row
    of W as int8 with its own scale, and each step's input is quantized on the fly to 7 bits (fbgemm's
    reduce_range, which keeps AVX2's 16-bit pair sums from saturating); the sums are int32. Trained
    LSTMs' validation loss moves by 0.0002 to 0.0010 nats/char (1x512 and 1x640 on tiny-shakespeare,
    2x384 on Korean with 1,105 characters).
    """

    def __init__(self, weight: Tensor, bias: Optional[Tensor], precision: str):
        self.precision = precision
        self.weight_t, self.bias = weight.t(), bias  # the transposed view made once, not every step
        if precision in PACKED_PRECISIONS and bias is None:
            self.bias = weight.new_zeros(weight.size(0))  # fbgemm's functions take a bias, always
        if precision == "fp16":
            self.packed = torch.fbgemm_pack_gemm_matrix_fp16(weight)
        elif precision == "int8":
            scales = weight.abs().amax(dim=1).clamp_min(1e-12).double() / 127
            rows = torch.quantize_per_channel(
                weight, scales, torch.zeros_like(scales, dtype=torch.long), 0, torch.qint8
            )
            self.packed = torch.ops.quantized.linear_prepack(rows, self.bias)

    def __call__(self, x: Tensor, addend: Optional[Tensor] = None) -> Tensor:
        if self.precision == "fp32":
            base = self.bias if addend is None else addend
            assert base is not None  # a projection made without a bias is always given an addend
            return torch.addmm(base, x, self.weight_t)
        if self.precision == "fp16":
            product = torch.fbgemm_linear_fp16_weight_fp32_activation(x, self.packed, self.bias)
        else:
            product = torch.ops.quantized.linear_dynamic(x, self.packed, True)  # True: reduce_range
        return product if addend is None else product.add_(addend)


class Stepper:
    """Feed one id per sample, get the next logits; the hidden state stays inside.

    Inference only (no dropout, no gradients). Serves every cell type and both implementations,
    since they share one parameter layout; with fp32 weights, equal to `model(ids, state)` to float
    tolerance.
    """

    def __init__(self, model: CharRNN, state: Optional[State] = None, precision: str = "fp32"):
        self.kind, self.layers = model.config.model, model.config.layers
        rnn = model.rnn
        w_ih, w_hh, b_ih, b_hh = (
            [getattr(rnn, f"{name}_l{layer}").detach() for layer in range(self.layers)]
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        )
        embedding = model.embedding.weight.detach()
        if self.kind == "gru":
            # The reset gate scales only the recurrent part of the candidate: the two projections stay apart.
            self.input_table = F.linear(embedding, w_ih[0], b_ih[0])
            # From the second layer up: the first reads input_table.
            self.input_projections = [
                Projection(w_ih[layer], b_ih[layer], precision) for layer in range(1, self.layers)
            ]
            self.recurrent_projections = [
                Projection(w_hh[layer], b_hh[layer], precision) for layer in range(self.layers)
            ]
        else:
            # The gates see one sum, W_ih x + b_ih + W_hh h + b_hh. The first layer's input part depends
            # only on the character: a [vocab, gates * hidden] table, biases folded in. Above it, one
            # matmul of [x, h] by [W_ih | W_hh]: one long matrix-vector product beats two short ones.
            self.input_table = F.linear(embedding, w_ih[0], b_ih[0] + b_hh[0])
            self.summed_projections = [Projection(w_hh[0], None, precision)] + [
                Projection(torch.cat([w_ih[layer], w_hh[layer]], dim=1), b_ih[layer] + b_hh[layer], precision)
                for layer in range(1, self.layers)
            ]
        self.head = Projection(model.head.weight.detach(), model.head.bias.detach(), precision)
        self.hidden_size = model.config.hidden
        self.states: list[State] = split_layers(state) if state is not None else []

    def reset(self, batch_size: int) -> None:
        """Start every sample from the zero state."""
        zeros = zero_state(
            self.kind, self.layers, batch_size, self.hidden_size, self.input_table.device, self.input_table.dtype
        )
        self.states = split_layers(zeros)

    def repeat(self, copies: int) -> None:
        """Continue `copies` samples from a carried state of batch size 1 (a prime is read once for all)."""
        self.states = [map_state(lambda part: part.expand(copies, -1), state) for state in self.states]

    @torch.inference_mode()
    def step(self, ids: Tensor) -> Tensor:
        """ids [batch] -> logits [batch, vocab] for the character after them."""
        if not self.states:
            self.reset(ids.size(0))
        below = None  # the layer below's new hidden state
        for layer, state in enumerate(self.states):
            hidden = hidden_of(state)
            if self.kind == "gru":
                projection = (
                    self.input_table.index_select(0, ids) if below is None else self.input_projections[layer - 1](below)
                )
                state, internals = gru_update(projection, self.recurrent_projections[layer](hidden), hidden)
            else:
                if below is None:
                    summed = self.summed_projections[0](hidden, addend=self.input_table.index_select(0, ids))
                else:
                    summed = self.summed_projections[layer](torch.cat([below, hidden], dim=1))
                state, internals = UPDATES[self.kind](summed, state)
            self.states[layer] = state
            below = internals["hidden"]
        assert below is not None  # a model has at least one layer
        return self.head(below)

    @property
    def state(self) -> State:
        """The carried state in the model's layout: [layers, batch, hidden] (a pair for the LSTM)."""
        return join_layers(self.states)


Step = TypeVar("Step")
# Torch's own thread count (the cores, or OMP_NUM_THREADS), taken before generation changes it.
DEFAULT_THREADS = torch.get_num_threads()


def thread_choices(num_samples: int) -> tuple[int, ...]:
    """The thread counts worth timing for a batch of `num_samples`: one, or one and every core."""
    return (1,) if num_samples < BATCHED_SAMPLES or DEFAULT_THREADS == 1 else (DEFAULT_THREADS, 1)


def on_fastest_threads(
    steps: Iterable[Step],
    choices: tuple[int, ...],
    probe: int = 32,
    every: int = 2000,
    clock: Callable[[], float] = time.perf_counter,
) -> Iterator[Step]:
    """Yield `steps`, each computed on whichever of `choices` thread counts ran `probe` steps fastest.

    The first step is never timed: it holds the set-up (the prime, packing the weights). Every
    `every` steps the choices are timed again. A timing holds only the steps' own work: the
    `probe` steps are computed before any is yielded. The caller's thread count is restored once
    the steps run out or the generator is closed.
    """
    previous = torch.get_num_threads()
    try:
        yield from fastest_threads(iter(steps), choices, probe, every, clock)
    finally:
        torch.set_num_threads(previous)


def fastest_threads(
    steps: Iterator[Step], choices: tuple[int, ...], probe: int, every: int, clock: Callable[[], float]
) -> Iterator[Step]:
    torch.set_num_threads(choices[0])
    yield from itertools.islice(steps, 1)
    if len(choices) == 1:
        yield from steps
        return
    while True:
        seconds_per_step: dict[int, float] = {}
        for threads in choices:
            torch.set_num_threads(threads)
            start = clock()
            timed = list(itertools.islice(steps, probe))
            seconds_per_step[threads] = (clock() - start) / max(len(timed), 1)
            yield from timed
            if len(timed) < probe:
                return
        torch.set_num_threads(min(seconds_per_step, key=seconds_per_step.__getitem__))
        ran = 0
        for step in itertools.islice(steps, every):
            ran += 1
            yield step
        if ran < every:
            return
