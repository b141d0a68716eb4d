"""Lists learned as lists: a corpus of one item per line (names, words, titles) trained on whole items.

`sample --lines` writes an item from the state after a newline, and `score` reads each line from the zero state
with a newline as its first input, predicting every character and then the line's end. Training on a list as
running text would carry the state from one item into the next instead. Here: whether a corpus is a list
(`--items auto`), and its items laid side by side in batches, each row read from the zero state.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from charrnn.config import TrainConfig
from charrnn.data import IGNORE, Corpus, Windows, training_windows
from charrnn.errors import CharRNNError
from charrnn.vocab import Vocab

# A corpus is a list when it has lines enough to tell, hardly an empty one (prose has paragraphs: tinyshakespeare
# 18% of its lines, a fortune file of verse 4.9%), and nearly all of them short (a dictionary's words).
LIST_LINES = 100
LIST_EMPTY_SHARE = 0.01
LIST_LINE_CHARS = 64
LIST_SHORT_SHARE = 0.99
# An item longer than this many windows trains in pieces, each read from the zero state (after a newline, or after
# the item's character before it): carrying the state from piece to piece would tie batches to an order, which the
# shuffle is there to free.
PIECE_WINDOWS = 4


def line_spans(ids: np.ndarray, newline: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each line of the text starts and how many characters it has, its newline not counted (a text that ends
    with a newline has no empty line after it)."""
    ends = np.flatnonzero(ids == newline)
    if len(ends) == 0 or ends[-1] != len(ids) - 1:
        ends = np.append(ends, len(ids))  # the last line, which has no newline
    starts = np.concatenate(([0], ends[:-1] + 1))
    return starts, ends - starts


def is_a_list(lengths: np.ndarray) -> bool:
    """Whether lines of these lengths are a list, one item per line, rather than running text."""
    lines = len(lengths)
    return bool(
        lines >= LIST_LINES
        and np.count_nonzero(lengths == 0) <= LIST_EMPTY_SHARE * lines
        and np.count_nonzero(lengths <= LIST_LINE_CHARS) >= LIST_SHORT_SHARE * lines
    )


def decided(config: TrainConfig, corpus: Corpus) -> tuple[TrainConfig, tuple[str, ...]]:
    """`config` with its --items settled for this corpus, "lines" or "text", and the line that says so when auto
    chose lines."""
    newline = corpus.vocab.id_of("\n")
    if config.items == "lines" and newline is None:
        raise CharRNNError(
            f"--items lines: the corpus ({corpus.name}) has no line breaks, so no lines to learn one by one; "
            "leave --items out, or give a list with one item per line"
        )
    if config.items != "auto":
        return config, ()
    lengths = line_spans(corpus.ids, newline)[1] if newline is not None else None
    if lengths is None or not is_a_list(lengths):
        return replace(config, items="text"), ()
    note = (
        f"the corpus reads as a list, one item per line ({len(lengths):,} lines, nearly all short, hardly any "
        "empty): training on whole items, each from the zero state, as sample --lines and score read them; "
        "--items text trains on it as running text"
    )
    return replace(config, items="lines"), (note,)


def item_spans(ids: np.ndarray, newline: int) -> tuple[np.ndarray, np.ndarray]:
    """Each item's first character and how many characters it predicts, its end included: the text's lines, empty
    ones left out (they hold no item)."""
    starts, lengths = line_spans(ids, newline)
    kept = lengths > 0
    return starts[kept], lengths[kept] + 1


def pieces(starts: np.ndarray, lengths: np.ndarray, longest: int) -> tuple[np.ndarray, np.ndarray]:
    """The spans cut into pieces of at most `longest` characters, in order."""
    counts = -(-lengths // longest)
    within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)  # a piece's place in its span
    piece_starts = np.repeat(starts, counts) + within * longest
    return piece_starts, np.minimum(longest, np.repeat(starts + lengths, counts) - piece_starts)


def ids_at(ids: np.ndarray, positions: np.ndarray, newline: int) -> np.ndarray:
    """The ids at `positions` (int64), a newline where a position is outside the text."""
    inside = (positions >= 0) & (positions < len(ids))
    return np.where(inside, ids[np.clip(positions, 0, len(ids) - 1)].astype(np.int64), newline)


def item_rows(
    ids: np.ndarray, newline: int, starts: np.ndarray, lengths: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets of spans side by side: row r predicts ids[starts[r] : starts[r] + lengths[r]], each from the
    character before it (before a text's first: a newline; position len(ids) is the newline its last line lacks).
    The rows are padded to the longest, with IGNORE targets: the network is causal, so padding never reaches them."""
    columns = np.arange(int(lengths.max(initial=0)))
    positions = starts[:, None] + columns
    real = columns < lengths[:, None]
    targets = np.where(real, ids_at(ids, positions, newline), IGNORE)
    inputs = np.where(real, ids_at(ids, positions - 1, newline), newline)
    return torch.from_numpy(inputs), torch.from_numpy(targets)


class ItemBatches(Windows):
    """Spans of a text (items, or pieces of them) in batches, batch i holding the spans order[bounds[i]:bounds[i+1]]:
    Windows' interface, but every row is read from the zero state. `batch_size` is the most rows a batch has and
    `seq_len` the characters a row predicts on the average, so that a batch predicts about their product."""

    carries_state = False

    def __init__(
        self,
        ids: np.ndarray,
        newline: int,
        spans: tuple[np.ndarray, np.ndarray],
        order: np.ndarray,
        bounds: np.ndarray,
        share: slice = slice(None),
    ):
        self.ids, self.newline, self.spans = ids, newline, spans
        self.order, self.bounds, self.share = order, bounds, share
        self.count = len(bounds) - 1
        self.batch_size = max((len(range(size)[share]) for size in set(np.diff(bounds).tolist())), default=0)
        self.seq_len = max(1, round(float(spans[1].mean()))) if len(order) else 1

    @property
    def items(self) -> int:
        """How many spans the batches hold in all."""
        return len(self.order)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = self.order[self.bounds[index] : self.bounds[index + 1]][self.share]
        starts, lengths = self.spans
        return item_rows(self.ids, self.newline, starts[chosen], lengths[chosen])

    def rows(self, rows: slice) -> Windows:
        """These rows of every batch: a rank's share."""
        return ItemBatches(self.ids, self.newline, self.spans, self.order, self.bounds, rows)


def training_batches(
    ids: np.ndarray, newline: int, batch_size: int, seq_len: int, seed: int, at_least: int = 1
) -> ItemBatches:
    """The text's items, in pieces of at most PIECE_WINDOWS windows, shuffled once by `seed` and cut into batches of
    about `batch_size` windows' characters, so that a step trains on as many as a step over running text; at least
    `at_least` items each (one per process)."""
    starts, lengths = pieces(*item_spans(ids, newline), PIECE_WINDOWS * seq_len)
    if len(starts) < max(at_least, 1):
        raise CharRNNError(
            f"the corpus has {len(starts)} item(s) to train on, one per line that is not empty, and a step needs "
            f"{max(at_least, 1)}; give a longer list, or --items text"
        )
    per_batch = max(at_least, round(batch_size * seq_len / float(lengths.mean())))
    count = max(1, len(starts) // per_batch)
    sizes = len(starts) // count + (np.arange(count) < len(starts) % count)  # as even as can be
    order = np.random.default_rng(seed % 2**64).permutation(len(starts))
    return ItemBatches(ids, newline, (starts, lengths), order, np.concatenate(([0], np.cumsum(sizes))))


def training_reading(ids: np.ndarray, vocab: Vocab, config: TrainConfig, processes: int = 1) -> Windows:
    """How a run trains on its text: batches of items for a run of lines, else `config.batch_size` streams, each
    of `processes` times as many (the global batch)."""
    if config.items == "lines":
        newline = vocab.chars.index("\n")  # a run of lines has one (`decided`)
        return training_batches(ids, newline, config.batch_size * processes, config.seq_len, config.seed, processes)
    return training_windows(ids, config.batch_size * processes, config.seq_len)
