"""Loss in nats per character, bits per character, perplexity: static, and dynamic, while the model learns as it reads.

Dynamic evaluation (Krause et al., 2018): each segment is scored first, then the weights take one gradient step
on it, then the next segment is scored by the adapted weights with the state carried over. A segment's score never
sees its own update, so the figure is a fair loss over the text. With `decay` the weights are also pulled back
toward the trained ones, theta <- theta - lr * grad + decay * (theta_trained - theta), so that what the model
learns from one passage fades instead of piling up. `adapted` keeps the weights after such a pass (`sample --adapt`).

Per-line scores (`charrnn score`): bits per character of each line, many lines per batch, streamed in input
order. Input may never end and a line may be 50 MB: lines are read as pieces of at most LINE_CHUNK
characters, and a line longer than that is scored piece by piece with the state carried, its text
spooled (to disk when long) so that it can be printed after its score.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from charrnn.config import ADAPTING, DynamicSettings, TrainConfig
from charrnn.data import IGNORE, Windows, as_long, evaluation_windows
from charrnn.errors import CharRNNError
from charrnn.lists import ItemBatches, item_rows, item_spans
from charrnn.model import CellStack, CharRNN, State, detach_state
from charrnn.streams import TextSpool, refuse_binary, text_input
from charrnn.vocab import Vocab

BATCH_LINES = 64  # lines per forward pass: enough to fill the matmuls, few enough to stream promptly
BATCH_CHARS = 32_768  # cap on padded characters per batch, so one long line does not get 63 long companions
TIME_CHUNK = 256  # columns per forward call: bounds the [batch, time, vocab] logits a long line would need
LINE_CHUNK = 65_536  # characters of a line read, held and turned into ids at a time

Piece = tuple[str, bool]  # some text of a line (its newline left out), and whether the line ends with it


@torch.inference_mode()
def total_loss(
    model: CharRNN,
    windows: Windows,
    device: torch.device,
    max_windows: Optional[int] = None,
    progress: Optional[Callable[[float], None]] = None,
) -> tuple[float, int]:
    """Sum of -ln p over every predicted character, and how many there were; the state runs across windows that
    carry it (batches of items start each from zero). `progress` hears the fraction done after each window."""
    was_training = model.training
    model.eval()
    state = model.initial_state(windows.batch_size, device) if windows.carries_state else None
    nats, count = 0.0, 0
    limit = len(windows) if max_windows is None else min(len(windows), max_windows)
    for index in range(limit):
        inputs, targets = (tensor.to(device) for tensor in windows[index])
        if inputs.numel():  # a process's share of a batch of items may hold no row
            mask = targets != IGNORE
            row_nats, carried = summed_nats(model, inputs, targets, mask, state)
            state = carried if windows.carries_state else None
            nats += row_nats.sum().item()
            count += int(mask.sum())
        if progress is not None:
            progress((index + 1) / limit)
    model.train(was_training)
    return nats, count


def summarize(nats: float, count: int, oov: int = 0, items: Optional[int] = None) -> dict:
    """The figures `charrnn eval` reports; with `items`, how many items (lines) they were read as, one by one."""
    loss = nats / count if count else float("nan")
    figures = {
        "loss": loss,
        "bpc": loss / math.log(2),
        "perplexity": math.exp(loss) if count else float("nan"),
        "chars": count,
        "oov": oov,
    }
    return figures if items is None else {**figures, "items": items}


def report_lines(result: dict) -> list[str]:
    """`summarize`'s figures as `charrnn eval` prints them; after dynamic evaluation, static and dynamic side by
    side, then its settings."""
    if "static" not in result:
        per_item = f" | per item: {result['items']:,} items" if "items" in result else ""
        return [
            f"bpc {result['bpc']:.4f} | loss {result['loss']:.4f} nats/char | perplexity "
            f"{result['perplexity']:.3f} | {result['chars']:,} chars | {result['oov']:,} out of vocabulary{per_item}"
        ]
    return [
        f"{name} bpc {figures['bpc']:.4f} | loss {figures['loss']:.4f} nats/char | perplexity "
        f"{figures['perplexity']:.3f} | {figures['chars']:,} chars | {figures['seconds']:.1f}s"
        for name, figures in (("static ", result["static"]), ("dynamic", result))
    ] + [
        f"dynamic: segment {result['segment']}, lr {result['lr']:g}, decay {result['decay']:g} | "
        f"{result['oov']:,} out of vocabulary"
    ]


def dynamic_loss(
    model: CharRNN, ids: np.ndarray, device: torch.device, settings: DynamicSettings = DynamicSettings()
) -> tuple[float, int]:
    """Sum of -ln p over every character after the first (as `total_loss` counts them), read as one
    stream in order while a copy of `model` adapts to it; `model` itself is left as it was."""
    predicted = len(ids) - 1
    if predicted < 1:
        raise CharRNNError("nothing to evaluate: the text needs at least 2 characters the model knows")
    return read_adapting(adaptable_copy(model), ids, device, settings), predicted


def adapted(model: CharRNN, ids: np.ndarray, device: torch.device, settings: DynamicSettings = ADAPTING) -> CharRNN:
    """A copy of `model` that has read `ids` once, learning as it read: it then writes in their style."""
    if len(ids) < 2:
        raise CharRNNError(
            "nothing to adapt to: the text needs at least 2 characters the model knows; "
            "give a longer text in its alphabet"
        )
    learner = adaptable_copy(model)
    read_adapting(learner, ids, device, settings)
    return learner.requires_grad_(False).eval()


def read_adapting(learner: CharRNN, ids: np.ndarray, device: torch.device, settings: DynamicSettings) -> float:
    """Read `ids` as one stream, a segment at a time: score it, then take one SGD step on it. Returns the nats."""
    trainable = [p for p in learner.parameters() if p.requires_grad]
    trained = [p.detach().clone() for p in trainable] if settings.decay else []
    stream = as_long(ids).unsqueeze(0).to(device)
    state = learner.initial_state(1, device)
    losses = []  # kept on the device and summed at the end: no wait for it after each segment
    for start in range(0, len(ids) - 1, settings.segment):
        end = min(start + settings.segment, len(ids) - 1)
        inputs, targets = stream[:, start:end], stream[:, start + 1 : end + 1]
        logits, state = learner(inputs, state)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="sum")
        losses.append(loss.detach())
        # The state carries the values into the next segment but not the graph: each step sees one segment.
        state = detach_state(state)
        learner.zero_grad(set_to_none=True)
        # The mean, not the sum: the same lr then suits any segment length.
        (loss / (end - start)).backward()
        with torch.no_grad():
            for index, parameter in enumerate(trainable):
                if parameter.grad is not None:
                    parameter.sub_(parameter.grad, alpha=settings.lr)
                if settings.decay:
                    parameter.add_(trained[index] - parameter, alpha=settings.decay)
    return torch.stack(losses).cpu().double().sum().item()


def adaptable_copy(model: CharRNN) -> CharRNN:
    """A copy of the network in fp32 that takes gradients, with dropout off.

    Training mode, because cuDNN's recurrent backward runs only there; dropout set to 0, because the
    scores must be the deterministic ones that static evaluation gives."""
    learner = copy.deepcopy(model).float()
    for module in learner.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        elif isinstance(module, (nn.RNNBase, CellStack)):  # dropout between their layers
            module.dropout = 0.0
    for parameter in learner.parameters():
        parameter.requires_grad_(True)
    return learner.train()


@dataclass
class LineScore:
    line: Union[str, TextSpool]  # a line longer than LINE_CHUNK stays in its spool
    nats: float  # -ln p summed over the line's known characters and its newline
    chars: int  # how many characters were predicted (the newline included)
    oov: int  # characters the model never saw: skipped, as `charrnn eval` does

    @property
    def bpc(self) -> float:
        return self.nats / self.chars / math.log(2) if self.chars else float("nan")

    def line_pieces(self) -> Iterator[str]:
        yield from [self.line] if isinstance(self.line, str) else self.line.pieces(LINE_CHUNK)

    def as_dict(self) -> dict:
        line = self.line if isinstance(self.line, str) else self.line.text()
        return {"bpc": self.bpc, "nats": self.nats, "chars": self.chars, "oov": self.oov, "line": line}

    def row(self, as_json: bool = False) -> Iterator[str]:
        """The output row, `bpc<TAB>line` or one JSON object, in pieces: a long line is never one string."""
        if not as_json:
            yield f"{self.bpc:.4f}\t"
            yield from self.line_pieces()
            yield "\n"
            return
        fields = {"bpc": self.bpc, "nats": self.nats, "chars": self.chars, "oov": self.oov}
        yield json.dumps(fields)[:-1] + ', "line": "'
        for piece in self.line_pieces():  # escaping a string piece by piece equals escaping it whole
            yield json.dumps(piece, ensure_ascii=False)[1:-1]
        yield '"}\n'


def newline_id(vocab: Vocab) -> int:
    newline = vocab.id_of("\n")
    if newline is None:
        raise CharRNNError(
            "this model's vocabulary has no newline, so it cannot score lines; train it on text with line breaks"
        )
    return newline


def known_ids(text: str, vocab: Vocab) -> tuple[np.ndarray, int]:
    """The ids of the text's known characters (in the form the vocabulary knows), and how many unknown were dropped."""
    _, ids, known = vocab.reading(text)
    return ids.astype(np.int64), len(known) - len(ids)


def fits(rows: int, width: int, length: int) -> bool:
    """Whether a line that predicts `length` characters (its end included) may join a batch of `rows` lines padded to
    `width`: batches are bounded by count and by padded size."""
    return rows < BATCH_LINES and max(width, length) * (rows + 1) <= BATCH_CHARS


def summed_nats(
    model: CharRNN, inputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, state: Optional[State] = None
) -> tuple[torch.Tensor, Optional[State]]:
    """-ln p of the targets, summed per row where `mask` is set, TIME_CHUNK columns per call; and the state after
    (the one given, when there are no columns)."""
    nats = torch.zeros(inputs.size(0), dtype=torch.float64, device=inputs.device)
    for start in range(0, inputs.size(1), TIME_CHUNK):
        columns = slice(start, start + TIME_CHUNK)
        logits, state = model(inputs[:, columns], state)
        losses = F.cross_entropy(
            logits.float().transpose(1, 2), targets[:, columns], reduction="none", ignore_index=IGNORE
        )
        nats += (losses * mask[:, columns]).sum(dim=1).double()
    return nats, state


@torch.inference_mode()
def score_batch(model: CharRNN, vocab: Vocab, lines: list[str], device: torch.device) -> list[LineScore]:
    """Score lines side by side as items (lists.item_rows): each from the zero state after a newline, its end
    included."""
    newline = newline_id(vocab)
    encoded = [known_ids(line, vocab) for line in lines]
    lengths = np.array([len(ids) + 1 for ids, _ in encoded])
    text = np.concatenate([part for ids, _ in encoded for part in (ids, [newline])])  # each line and its newline
    inputs, targets = item_rows(text, newline, np.cumsum(lengths) - lengths, lengths)
    nats, _ = summed_nats(model, inputs.to(device), targets.to(device), (targets != IGNORE).to(device))
    return [
        LineScore(line, value, int(length), oov)
        for line, value, length, (_, oov) in zip(lines, nats.tolist(), lengths.tolist(), encoded)
    ]


def item_batches(ids: np.ndarray, newline: int) -> ItemBatches:
    """The text's items (its lines that are not empty) in order, as many to a batch as `fits`: `total_loss` then
    scores each from the zero state, its end included, as `score` scores a line."""
    starts, lengths = item_spans(ids, newline)
    bounds, rows, width = [0], 0, 0
    for index, length in enumerate(lengths.tolist()):
        if rows and not fits(rows, width, length):
            bounds.append(index)
            rows, width = 0, 0
        rows, width = rows + 1, max(width, length)
    bounds.append(len(lengths))
    return ItemBatches(ids, newline, (starts, lengths), np.arange(len(starts)), np.array(bounds))


def evaluation_reading(ids: np.ndarray, config: TrainConfig, vocab: Vocab) -> Optional[Windows]:
    """How a run's evaluation reads a text, as the run was trained: item by item for a run of lines, else as
    running text. None when there is nothing to score: no item, or fewer than 2 characters."""
    if config.items == "lines":
        batches = item_batches(ids, newline_id(vocab))
        return batches if batches.items else None
    return evaluation_windows(ids, config.seq_len) if len(ids) >= 2 else None


@torch.inference_mode()
def score_long_line(model: CharRNN, vocab: Vocab, first: str, rest: Iterator[Piece], device: torch.device) -> LineScore:
    """Score a line that came in several pieces: `first`, then pieces of `rest` up to the one that ends it.

    Only one piece's ids are held at a time; the state and the last id carry over to the next.
    """
    newline = newline_id(vocab)
    spool, state, previous, nats, chars, oov = TextSpool(), None, newline, 0.0, 0, 0
    text, ends = first, False
    while True:
        spool.write(text)
        ids, dropped = known_ids(text, vocab)
        ids = np.append(ids, newline) if ends else ids
        oov += dropped
        if len(ids):
            targets = torch.from_numpy(ids).unsqueeze(0)
            inputs = torch.cat([torch.tensor([[previous]]), targets[:, :-1]], dim=1)
            piece_nats, state = summed_nats(
                model,
                inputs.to(device),
                targets.to(device),
                torch.ones_like(targets, dtype=torch.bool, device=device),
                state,
            )
            nats, chars, previous = nats + piece_nats.item(), chars + len(ids), int(ids[-1])
        if ends:
            return LineScore(spool, nats, chars, oov)
        text, ends = next(rest, ("", True))  # input that stops inside a line ends it there


def score_pieces(
    model: CharRNN, vocab: Vocab, pieces: Iterable[Piece], device: torch.device
) -> Iterator[list[LineScore]]:
    """Yield the scores batch by batch, in input order, so a pipeline sees results while input still flows.

    Whole lines are scored many to a batch; a line in several pieces alone, piece by piece. Such a
    line's text waits in a spool that is closed when the next batch is asked for: write it out first.
    """
    model.eval()
    pieces = iter(pieces)
    batch: list[str] = []
    for text, ends in pieces:
        if ends and (not batch or fits(len(batch), max(map(len, batch)) + 1, len(text) + 1)):
            batch.append(text)
            continue
        if batch:
            yield score_batch(model, vocab, batch, device)
            batch = []
        if ends:
            batch = [text]
            continue
        long_line = score_long_line(model, vocab, text, pieces, device)
        spool = long_line.line
        assert isinstance(spool, TextSpool)  # a line in several pieces is always spooled
        try:
            yield [long_line]
        finally:
            spool.close()  # once the caller has written it, or stopped
    if batch:
        yield score_batch(model, vocab, batch, device)


def pieces_of(lines: Iterable[str]) -> Iterator[Piece]:
    """Lines held as strings, as pieces of at most LINE_CHUNK characters."""
    for line in lines:
        for start in range(0, len(line), LINE_CHUNK):
            yield line[start : start + LINE_CHUNK], start + LINE_CHUNK >= len(line)
        if not line:
            yield "", True


def score_lines(model: CharRNN, vocab: Vocab, lines: Iterable[str], device: torch.device) -> Iterator[list[LineScore]]:
    """`score_pieces` for lines already held as strings."""
    return score_pieces(model, vocab, pieces_of(lines), device)


def read_pieces(files: list[str], encoding: str = "utf-8", errors: str = "strict") -> Iterator[Piece]:
    """The lines of the files in turn (`-` or none: stdin), read lazily as pieces of at most LINE_CHUNK
    characters: an endless line, or input that never ends, is never held whole."""
    for name in files or ["-"]:
        with text_input(name, encoding, errors) as stream:
            number, inside = 1, False  # line number; whether the last piece left its line open
            while piece := stream.readline(LINE_CHUNK):
                if errors == "strict":
                    refuse_binary(name, piece, line=number)
                # readline stops at a newline, at LINE_CHUNK characters, or at the end of the input
                ends = piece.endswith("\n") or len(piece) < LINE_CHUNK
                yield piece.removesuffix("\n"), ends
                number, inside = number + ends, not ends
            if inside:  # the input ended exactly at a piece's end
                yield "", True
