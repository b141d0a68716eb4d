"""Lists learned as lists: a corpus of one item per line is told from prose, trained item by item from the zero
state, and evaluated the way `score` reads its lines."""

from __future__ import annotations

import random

import charrnn
import numpy as np
import pytest
import torch

from charrnn import schema
from charrnn.config import TrainConfig
from charrnn.data import IGNORE, Corpus, split
from charrnn.errors import CharRNNError
from charrnn.evaluate import report_lines
from charrnn.lists import PIECE_WINDOWS, decided, training_batches
from charrnn.trainer import resumed_settings
from charrnn.vocab import Vocab
from conftest import ENGLISH, TINY_MODEL, TINY_OPTIONS
from test_durability import assert_same_weights


def names(count: int, seed: int = 0) -> list[str]:
    """Made-up names, a few syllables each: a list as makemore's names.txt is one."""
    rng = random.Random(seed)
    syllables = ["ka", "ri", "mo", "el", "an", "tha", "so", "lu", "ve", "na", "jo", "di"]
    return ["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(count)]


def corpus_of(text: str) -> Corpus:
    vocab = Vocab("".join(sorted(set(text))))
    return Corpus(vocab.encode(text).astype(vocab.dtype), vocab, "in memory")


@pytest.mark.parametrize("text, items", [
    ("\n".join(names(150)) + "\n", "lines"),
    ("\n".join(names(149)) + "\n\n", "lines"),  # one empty line in 150
    ("\n".join(names(148)) + "\n\n\n", "text"),  # two: 1.3%
    ("\n".join(names(99)) + "\n", "text"),  # too few lines to tell
    ("\n".join(["x" * 70] * 2 + names(148)) + "\n", "text"),  # more than 1% longer than 64 characters
    (ENGLISH * 20, "text"),  # prose has paragraphs
])
def test_a_list_is_told_from_prose_by_its_lines(text, items):
    config, notes = decided(TrainConfig(), corpus_of(text))
    assert config.items == items
    assert bool(notes) == (items == "lines") and all("--items text" in note for note in notes)


def test_items_given_are_taken_and_lines_need_line_breaks():
    listed, prose = corpus_of("\n".join(names(150))), corpus_of(ENGLISH * 20)
    assert decided(TrainConfig(items="text"), listed) == (TrainConfig(items="text"), ())
    assert decided(TrainConfig(items="lines"), prose) == (TrainConfig(items="lines"), ())
    with pytest.raises(CharRNNError, match="--items lines: the corpus .* has no line breaks"):
        decided(TrainConfig(items="lines"), corpus_of("no line breaks at all " * 20))


def test_a_run_of_lines_validates_on_whole_lines():
    ids = np.frombuffer(b"ab\ncd\nef\ngh\n", dtype=np.uint8)
    assert [part.tobytes() for part in split(ids, 0.4, newline=ord("\n"))] == [b"ab\ncd\nef\n", b"gh\n"]
    assert [part.tobytes() for part in split(ids, 0.4)] == [b"ab\ncd\nef", b"\ngh\n"]  # running text: anywhere


def test_items_train_side_by_side_each_from_the_zero_state():
    text = "\n".join(names(40) + ["", "z" * 37]) + "\n"  # an empty line, and an item longer than 4 windows of 8
    corpus = corpus_of(text)
    newline, ids = corpus.vocab.chars.index("\n"), corpus.ids
    batches = training_batches(ids, newline, batch_size=4, seq_len=8, seed=5)
    assert not batches.carries_state and len(batches) > 1
    rows = []
    for index in range(len(batches)):
        inputs, targets = batches[index]
        real = targets != IGNORE
        assert (real.sum(dim=1) <= PIECE_WINDOWS * 8).all() and real[:, 0].all()  # padding only after a row's end
        rows += [(inputs[r][real[r]], targets[r][real[r]]) for r in range(len(inputs))]
    pieces = [corpus.vocab.decode(t) for _, t in rows]
    # Every item once, its end predicted; the long one in pieces, the later ones read from its character before.
    assert sorted(p for p in pieces if p.endswith("\n") and "z" not in p) == sorted(f"{n}\n" for n in names(40))
    assert "".join(sorted((p for p in pieces if "z" in p), key=len, reverse=True)) == "z" * 37 + "\n" and "" not in pieces
    assert all(torch.equal(i[1:], t[:-1]) for i, t in rows)
    assert all(i[0] == newline or corpus.vocab.decode(i[:1]) == "z" for i, _ in rows)
    again, other = (training_batches(ids, newline, 4, 8, seed) for seed in (5, 6))
    assert torch.equal(again[0][1], batches[0][1]) and not np.array_equal(other.order, batches.order)
    shares = [batches.rows(slice(0, 2)), batches.rows(slice(2, None))]  # two processes' rows stack into the batch
    assert torch.equal(torch.cat([share[0][1][:, :3] for share in shares]), batches[0][1][:, :3])


def test_a_list_trains_item_by_item_and_eval_reads_it_as_score_does(train_here, tmp_path):
    lines = names(200)
    (tmp_path / "names.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = train_here("names.txt", out="run", steps=4, **TINY_OPTIONS)
    last = charrnn.load(tmp_path / "run" / "last.pt")
    assert last.train_config.items == "lines"
    # The run's validation is eval's: each held-out name from the zero state, its end included.
    validated = last.evaluate_validation()
    assert validated["loss"] == pytest.approx(summary["val_loss"], abs=1e-5) and 10 < validated["items"] < 30
    evaluated = last.evaluate_files(["names.txt"])
    scores = list(last.score(lines))
    assert evaluated["items"] == len(lines) and evaluated["chars"] == sum(score.chars for score in scores)
    assert evaluated["loss"] == pytest.approx(sum(score.nats for score in scores) / evaluated["chars"], abs=1e-5)
    assert report_lines(evaluated)[0].endswith("| per item: 200 items")


def test_a_run_of_lines_resumes_exactly_and_keeps_its_mode(train_here, tmp_path):
    (tmp_path / "names.txt").write_text("\n".join(names(120)) + "\n", encoding="utf-8")
    options = dict(TINY_OPTIONS, dropout=0.2, steps=14, schedule_steps=14, eval_every=1000)  # past a whole pass
    train_here("names.txt", out="whole", **options)
    train_here("names.txt", out="parts", **{**options, "steps": 7})
    train_here(out="parts", resume=True, steps=14, items="text")
    assert_same_weights(tmp_path / "whole" / "last.pt", tmp_path / "parts" / "last.pt")
    saved = charrnn.load(tmp_path / "parts" / "last.pt").checkpoint
    assert saved.train_config.items == "lines"
    _, config, _, ignored = resumed_settings(saved, TrainConfig(items="text"), [], ["items"])
    assert config.items == "lines" and ignored == ["items"]  # named in --resume's warning
    older = schema.encode(saved)
    del older["train_config"]["items"]  # a run from before --items read its text as running text
    assert schema.from_payload(older).train_config.items == "text"


def test_train_says_when_it_reads_a_list_as_one(cli):
    (cli.cwd / "names.txt").write_text("\n".join(names(150)) + "\n", encoding="utf-8")
    said = cli("train", "names.txt", "--steps", "1", *TINY_MODEL).stderr
    assert "reads as a list, one item per line (150 lines" in said and "--items text" in said
