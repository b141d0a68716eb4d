"""Per-line scores: bits per character of each line, many lines per batch, streamed in input order."""

from __future__ import annotations

import io
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.errors import CharRNNError
from charrnn.model import CharRNN
from charrnn.vocab import UNKNOWN, Vocab, code_points

BATCH_LINES = 64  # lines per forward pass: enough to fill the matmuls, few enough to stream promptly
BATCH_CHARS = 32_768  # cap on padded characters per batch, so one long line does not get 63 long companions
TIME_CHUNK = 256  # columns per forward call: bounds the [batch, time, vocab] logits a long line would need


@dataclass
class LineScore:
    line: str
    nats: float  # -ln p summed over the line's known characters and its newline
    chars: int  # how many characters were predicted (the newline included)
    oov: int  # characters the model never saw: skipped, as `charrnn eval` does

    @property
    def bpc(self) -> float:
        return self.nats / self.chars / math.log(2) if self.chars else float("nan")

    def as_dict(self) -> dict:
        return {"bpc": self.bpc, "nats": self.nats, "chars": self.chars, "oov": self.oov, "line": self.line}


def line_ids(line: str, vocab: Vocab, newline: int) -> tuple[np.ndarray, int]:
    """The line's known ids followed by its newline, and how many unknown characters were dropped."""
    looked_up = vocab.lookup(code_points(line)) if line else np.empty(0, dtype=np.int32)
    known = looked_up[looked_up != UNKNOWN]
    return np.append(known, newline).astype(np.int64), len(looked_up) - len(known)


def batches(lines: Iterable[str]) -> Iterator[list[str]]:
    """Group lines in input order, bounded by count and by padded size."""
    batch, longest = [], 0
    for line in lines:
        longest_with = max(longest, len(line) + 1)
        if batch and (len(batch) >= BATCH_LINES or longest_with * (len(batch) + 1) > BATCH_CHARS):
            yield batch
            batch, longest_with = [], len(line) + 1
        batch.append(line)
        longest = longest_with
    if batch:
        yield batch


@torch.inference_mode()
def score_batch(model: CharRNN, vocab: Vocab, lines: list[str], device: torch.device) -> list[LineScore]:
    """Score lines side by side: each starts from the state after a newline, padding is masked out."""
    if "\n" not in vocab:
        raise CharRNNError("this model's vocabulary has no newline, so it cannot score lines; train it on text with line breaks")
    newline = vocab.chars.index("\n")
    encoded = [line_ids(line, vocab, newline) for line in lines]
    lengths = torch.tensor([len(ids) for ids, _ in encoded])
    width = int(lengths.max())
    # Column 0 of the targets is the line's first character, predicted from a newline input;
    # padding repeats the newline and is masked, and since the network is causal it never
    # touches the real positions before it.
    targets = torch.full((len(lines), width), newline, dtype=torch.long)
    for row, (ids, _) in enumerate(encoded):
        targets[row, : len(ids)] = torch.from_numpy(ids)
    inputs = torch.cat([torch.full((len(lines), 1), newline, dtype=torch.long), targets[:, :-1]], dim=1)
    mask = torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)
    inputs, targets, mask = inputs.to(device), targets.to(device), mask.to(device)
    nats = torch.zeros(len(lines), dtype=torch.float64, device=device)
    state = None
    for start in range(0, width, TIME_CHUNK):
        columns = slice(start, start + TIME_CHUNK)
        logits, state = model(inputs[:, columns], state)
        losses = F.cross_entropy(logits.float().transpose(1, 2), targets[:, columns], reduction="none")
        nats += (losses * mask[:, columns]).sum(dim=1).double()
    return [LineScore(line, value, int(length), oov)
            for line, value, length, (_, oov) in zip(lines, nats.tolist(), lengths.tolist(), encoded)]


def score_lines(model: CharRNN, vocab: Vocab, lines: Iterable[str], device: torch.device) -> Iterator[list[LineScore]]:
    """Yield the scores batch by batch, in input order, so a pipeline sees results while input still flows."""
    model.eval()
    for batch in batches(lines):
        yield score_batch(model, vocab, batch, device)


def read_lines(files: list[str], encoding: str = "utf-8", errors: str = "strict") -> Iterator[str]:
    """The lines of the files in turn (`-` or none: stdin), without their newlines, read lazily."""
    for name in files or ["-"]:
        if name != "-" and not Path(name).is_file():
            raise CharRNNError(f"{name}: no such file; give text files, or - for stdin")
        try:
            binary = sys.stdin.buffer if name == "-" else open(name, "rb")
            # newline="\n": split on line feeds only and keep any carriage return, as the corpus had it.
            stream = io.TextIOWrapper(binary, encoding=encoding, errors=errors, newline="\n")
        except LookupError:
            raise CharRNNError(f"unknown encoding {encoding!r}; name one Python knows, such as utf-8 or latin-1") from None
        except OSError as error:
            raise CharRNNError(f"{name}: cannot read: {error.strerror or error}") from None
        try:
            for line in stream:
                yield line[:-1] if line.endswith("\n") else line
        except UnicodeDecodeError:
            raise CharRNNError(f"{name}: not valid {encoding}; pass --encoding to name its encoding, or --errors replace") from None
        finally:
            if name == "-":
                stream.detach()
            else:
                stream.close()
