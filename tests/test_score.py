"""charrnn score: one line out per line in, streamed, pipe-safe; and the batching it relies on."""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading

import charrnn
import pytest
import torch

from charrnn import evaluate
from charrnn.checkpoint import load_checkpoint, resolve_checkpoint
from charrnn.errors import CharRNNError
from charrnn.evaluate import score_batch
from charrnn.model import model_from_checkpoint
from charrnn.vocab import Vocab
from conftest import ENGLISH, charrnn_command

LINES = [line for line in ENGLISH.splitlines() if len(line) > 8]


def test_one_line_out_per_line_in_in_order(cli, tiny_run):
    text = "First Citizen:\n\nSpeak, speak.\nAll:"  # an empty line, and a last line with no newline
    result = cli("score", "-c", tiny_run, input=text)
    rows = result.stdout.splitlines()
    assert len(rows) == 4
    assert [row.split("\t", 1)[1] for row in rows] == ["First Citizen:", "", "Speak, speak.", "All:"]
    assert all(float(row.split("\t", 1)[0]) > 0 for row in rows)


def test_files_and_json(cli, tiny_run):
    (cli.cwd / "a.txt").write_text("All:\nzz\u00e9zz\n", encoding="utf-8")
    result = cli("score", "-c", tiny_run, "--json", "a.txt", "-", input="Speak, speak.\n")
    records = [json.loads(row) for row in result.stdout.splitlines()]
    assert [r["line"] for r in records] == ["All:", "zz\u00e9zz", "Speak, speak."]
    assert records[1]["oov"] == 1 and records[1]["chars"] == 5  # 4 known characters and the newline
    assert records[0]["chars"] == 5 and records[0]["oov"] == 0


def test_real_lines_beat_shuffled_ones(tiny_run):  # scored in this process, as `charrnn score` scores them
    rng = random.Random(0)
    shuffled = []
    for line in LINES:
        chars = list(line)
        while "".join(chars) == line:
            rng.shuffle(chars)
        shuffled.append("".join(chars))
    scores = [score.bpc for score in charrnn.load(tiny_run).score(LINES + shuffled)]
    real, fake = scores[: len(LINES)], scores[len(LINES):]
    wins = sum(r < f for r, f in zip(real, fake))
    assert wins >= 0.9 * len(LINES), (real, fake)


def test_head_in_a_shell_pipeline(tiny_run, tmp_path):
    # 3,600 lines of output overflow the pipe's buffer, so the writer does meet the hang-up.
    (tmp_path / "big.txt").write_text(ENGLISH * 300, encoding="utf-8")
    command = f"{charrnn_command()[0]} score -c {tiny_run} big.txt | head -n 2"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2 and result.stderr == ""


# A missing file is one line: test_errors' score_missing_file.


def test_batched_scores_equal_one_at_a_time(tiny_run, monkeypatch):
    payload = load_checkpoint(resolve_checkpoint(str(tiny_run)))
    model, vocab = model_from_checkpoint(payload), Vocab(payload.vocab)
    lines = ["All:", "", "First Citizen:", "Before we proceed any further, hear me speak."]
    monkeypatch.setattr("charrnn.evaluate.TIME_CHUNK", 7)  # the state is carried across time chunks
    together = score_batch(model, vocab, lines, torch.device("cpu"))
    alone = [score_batch(model, vocab, [line], torch.device("cpu"))[0] for line in lines]
    for a, b in zip(together, alone):
        assert abs(a.nats - b.nats) < 1e-4 and a.chars == b.chars == len(a.line) + 1


def test_batches_keep_order_and_bound_padding(monkeypatch):
    monkeypatch.setattr("charrnn.evaluate.BATCH_CHARS", 100)
    monkeypatch.setattr("charrnn.evaluate.score_batch", lambda model, vocab, lines, device: lines)
    lines = ["x" * n for n in (3, 60, 5, 200, 1, 2)]
    grouped = list(evaluate.score_lines(torch.nn.Identity(), None, lines, None))
    assert [line for batch in grouped for line in batch] == lines
    assert all(len(batch) == 1 or max(map(len, batch)) + 1 <= 100 // len(batch) for batch in grouped)


def test_long_lines_are_read_and_scored_in_pieces(tiny_run, tmp_path, monkeypatch):
    # A line may be endless (`score < /dev/zero`) or 50 MB: it is read LINE_CHUNK characters at a time,
    # scored with the state carried, and printed from its spool; the scores equal the whole line's.
    payload = load_checkpoint(resolve_checkpoint(str(tiny_run)))
    model, vocab = model_from_checkpoint(payload), Vocab(payload.vocab)
    lines = ["All:", "Before we proceed any further, hear me speak.", "zz\u00e9zz \"x\" speak", "", "exactly 14 chr",
             "Speak, speak. "]  # pieces of 7: lines that end inside a piece and at its end
    (tmp_path / "in.txt").write_text("\n".join(lines), encoding="utf-8")  # the last line has no newline
    whole = iter(score_batch(model, vocab, lines, torch.device("cpu")))  # each line in one piece
    monkeypatch.setattr("charrnn.evaluate.LINE_CHUNK", 7)
    monkeypatch.setattr("charrnn.evaluate.TIME_CHUNK", 5)
    widths, summed = [], evaluate.summed_nats
    monkeypatch.setattr("charrnn.evaluate.summed_nats", lambda model, inputs, *rest: widths.append(inputs.size(1)) or summed(model, inputs, *rest))
    pieces = list(evaluate.read_pieces([str(tmp_path / "in.txt")]))
    assert max(len(text) for text, _ in pieces) <= 7 and sum(ends for _, ends in pieces) == len(lines)
    for batch in evaluate.score_pieces(model, vocab, pieces, torch.device("cpu")):
        for got, expected in zip(batch, whole):  # a long line's text is there until the next batch is asked for
            assert abs(got.nats - expected.nats) < 1e-4 and (got.chars, got.oov) == (expected.chars, expected.oov)
            assert "".join(got.row()) == f"{expected.bpc:.4f}\t{expected.line}\n"
            assert json.loads("".join(got.row(as_json=True))) == expected.as_dict() | {"nats": got.nats, "bpc": got.bpc}
    assert next(whole, None) is None
    assert max(widths) <= 7 + 1  # a piece's ids and the line's newline: never the whole line


def test_fifos_and_devices_are_read_and_binary_is_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text("All:\nSpeak.\n", encoding="utf-8"))
    writer.start()
    assert list(evaluate.read_pieces([str(fifo), "/dev/null"])) == [("All:", True), ("Speak.", True)]
    writer.join()
    with pytest.raises(CharRNNError, match=r"/dev/zero: looks binary \(NUL byte on line 1\).*--errors replace"):
        next(evaluate.read_pieces(["/dev/zero"]))
    endless = evaluate.read_pieces(["/dev/zero"], errors="replace")  # one line without end, read a piece at a time
    assert next(endless) == ("\x00" * evaluate.LINE_CHUNK, False)
    endless.close()
    with pytest.raises(CharRNNError, match=r"is a directory"):
        next(evaluate.read_pieces([str(tmp_path)]))
