"""charrnn eval on long text: read in chunks with the same figures as in one piece, held once, with progress."""

from __future__ import annotations

import io

import pytest

import charrnn
from charrnn import data, progress
from conftest import ENGLISH


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))


def test_a_text_read_in_chunks_scores_as_in_one_piece(tiny_run, tmp_path, monkeypatch):
    text = ENGLISH * 3 + "zz\u20ac unseen\r\n" + ENGLISH  # characters the model never saw, and a CRLF line
    path = tmp_path / "held-out.txt"
    path.write_text(text, encoding="utf-8", newline="")
    lm = charrnn.load(tiny_run, device="cpu")
    whole = lm.evaluate(text)
    monkeypatch.setattr(data, "CHUNK_BYTES", 7)
    assert lm.evaluate_files([str(path)]) == whole
    assert whole["oov"] > 0 and whole["chars"] == len(text) - 1 - whole["oov"]


def test_a_long_evaluation_shows_its_progress_on_stderr(tiny_run, tmp_path, monkeypatch):
    path = tmp_path / "held-out.txt"
    path.write_text(ENGLISH * 10, encoding="utf-8")
    lm = charrnn.load(tiny_run, device="cpu")
    monkeypatch.setattr(progress, "PLAIN_LOG_INTERVAL_S", 0.0)
    stream = io.StringIO()  # not a terminal: plain lines
    lm.evaluate_files([str(path)], progress=progress.Meter("evaluating", stream, quiet_s=0.0))
    lines = stream.getvalue().splitlines()
    assert len(lines) > 1 and all(line.startswith("charrnn: evaluating ") for line in lines)
    assert "100%" in lines[-1] and "\x1b" not in stream.getvalue()
    quiet = io.StringIO()
    lm.evaluate_files([str(path)], progress=progress.Meter("evaluating", quiet))  # short work says nothing
    assert quiet.getvalue() == ""


def test_the_report_is_one_line_or_static_and_dynamic_side_by_side():
    from charrnn.evaluate import report_lines, summarize

    static = summarize(10.0, 8, oov=2)
    assert report_lines(static) == [f"bpc {static['bpc']:.4f} | loss 1.2500 nats/char | perplexity "
                                    f"{static['perplexity']:.3f} | 8 chars | 2 out of vocabulary"]
    dynamic = {**summarize(8.0, 8, oov=2), "seconds": 1.0, "segment": 50, "lr": 0.3, "decay": 0.003,
               "static": {**static, "seconds": 0.5}}
    lines = report_lines(dynamic)
    assert [line.split(" bpc")[0] for line in lines[:2]] == ["static ", "dynamic"] and lines[1].endswith("| 1.0s")
    assert lines[2] == "dynamic: segment 50, lr 0.3, decay 0.003 | 2 out of vocabulary"
