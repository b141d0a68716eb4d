"""viz: activations from the written-out cells, feature finders, terminal / HTML / JSON output."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest

from charrnn import viz
from charrnn.checkpoint import load_checkpoint, resolve_checkpoint
from charrnn.errors import CharRNNError
from charrnn.model import model_from_checkpoint
from charrnn.evaluate import score_batch
from charrnn.vocab import Vocab
from conftest import ENGLISH

TEXT = ENGLISH[:200]


@pytest.fixture(scope="module")
def payload(tiny_run):
    return load_checkpoint(resolve_checkpoint(str(tiny_run)))


def test_trace_shapes_and_surprise_match_the_fused_model(payload):
    trace = viz.trace_text(payload, TEXT)
    assert set(trace.kinds) == {"hidden", "cell", "input_gate", "forget_gate", "output_gate", "candidate"}
    assert all(values.shape == (len(TEXT), 32) for values in trace.activations.values())
    # Surprise summed over a line and its newline is what `score` reports for that line, from the fused kernel.
    line = TEXT.split("\n")[0]
    fused = score_batch(model_from_checkpoint(payload), Vocab(payload.vocab), [line], device=__import__("torch").device("cpu"))[0]
    assert abs(trace.surprise[: len(line) + 1].sum() - fused.nats / np.log(2)) < 1e-3


def test_features():
    text = 'ab "c(d)" e\nfg'
    assert viz.line_position(text).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 1]
    assert viz.inside_quotes(text).tolist()[2:9] == [0, 1, 1, 1, 1, 1, 0]
    assert viz.bracket_depth(text).tolist()[4:8] == [0, 1, 1, 0]
    assert viz.word_position("ab cd").tolist() == [1, 2, 0, 1, 2]
    with pytest.raises(CharRNNError, match="constant"):
        viz.feature_values("quotes", "no quotes here")
    with pytest.raises(CharRNNError, match="choose one of"):
        viz.feature_values("sentiment", "x")


def test_rank_units_finds_a_planted_unit():
    rng = np.random.default_rng(0)
    feature = viz.line_position(TEXT)
    noise = rng.normal(size=(len(TEXT), 8))
    noise[:, 5] = -0.5 * feature + rng.normal(scale=0.1, size=len(TEXT))
    trace = viz.Trace(TEXT, {(0, "hidden"): noise}, np.zeros(len(TEXT)), layers=1, kinds=["hidden"])
    best = viz.rank_units(trace, feature, top=3)[0]
    assert (best.layer, best.kind, best.index) == (0, "hidden", 5) and best.correlation < -0.95


def test_cli_find_json_and_html(cli, tiny_run):
    result = cli("viz", "-c", tiny_run, "--find", "line-position", "--json", "--html", "page.html", input=TEXT)
    record = json.loads(result.stdout)
    assert record["text"] == TEXT and len(record["values"]) == len(TEXT)
    assert abs(record["ranking"][0]["correlation"]) >= abs(record["ranking"][-1]["correlation"])
    page = (cli.cwd / "page.html").read_text("utf-8")
    assert page.startswith("<!DOCTYPE html>") and "line-position" in page and "<script" not in page


def test_cli_terminal_surprise_and_a_unit(cli, tiny_run):
    shown = cli("viz", "-c", tiny_run, "--text", "All:\nSpeak.", "--surprise")
    assert "surprise" in shown.stdout and "Speak." in shown.stdout
    unit = cli("viz", "-c", tiny_run, "--text", "All:", "--kind", "forget_gate", "--unit", "3", "--layer", "0")
    assert unit.stdout.startswith("layer 0 forget_gate unit 3")  # its errors: test_errors' viz_* cases


def test_characters_the_model_never_saw_are_skipped_and_shown_uncoloured(payload):
    # One policy with eval and score: an unseen character is skipped, not a reason to refuse the text.
    text = "All: (speak)"
    trace = viz.trace_text(payload, text)
    assert trace.unseen == 2 and trace.known.tolist() == [c not in "()" for c in text]
    clean = viz.trace_text(payload, "All: speak")  # what the model reads is the text without them
    assert np.allclose(trace.surprise[trace.known], clean.surprise, atol=1e-5)
    values = viz.unit_values(trace, viz.pick_unit(trace, None, None, None))
    levels = viz.scaled(values, "cell")
    assert np.isnan(levels[~trace.known]).all() and not np.isnan(levels[trace.known]).any()
    assert "(" in viz.terminal_text(text, levels).plain
    page = viz.html_page(text, levels, values, "t" + viz.unseen_note(trace))
    assert '<span title="never seen by the model">(</span>' in page and "2 characters the model never saw" in page
    assert viz.rank_units(trace, viz.feature_values("word-position", text), top=1)[0].correlation != 0


def test_cli_json_gives_null_for_unseen_characters(cli, tiny_run):
    record = json.loads(cli("viz", "-c", tiny_run, "--text", "KING: 'Tis (so)", "--json").stdout)
    assert record["values"][11] is None and record["values"][12] is not None  # '(' then 's'
    assert "characters the model never saw, shown uncoloured" in record["title"]
    assert record["unit"]["correlation"] is None  # JSON has no NaN


def test_read_text_stops_at_max_chars(tmp_path):
    assert viz.read_text("/dev/zero", 5, errors="replace") == "\x00" * 5  # endless: only what is looked at is read
    with pytest.raises(CharRNNError, match="looks binary"):
        viz.read_text("/dev/zero", 5)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text("All:\r\nSpeak.", encoding="utf-8"))
    writer.start()
    assert viz.read_text(str(fifo), 100) == "All:\nSpeak."
    writer.join()


def test_look_shows_surprise_a_named_unit_or_the_best_ranked_one():
    hidden = np.array([[0.0, 1.0], [0.0, -1.0], [1.0, 0.5], [0.0, 0.2]])
    trace = viz.Trace("ab\ncd"[:4], {(0, "hidden"): hidden}, np.array([1.0, 2.0, 3.0, np.nan]), layers=1,
                      kinds=["hidden"], known=np.array([True, True, True, False]))
    surprise = viz.look(trace, surprise=True)
    assert surprise.unit is None and surprise.title.startswith("surprise, -log2 p: mean 2.00 bits per character; 1 ")
    named = viz.look(trace, layer=0, kind="hidden", unit=0)
    assert named.title == "layer 0 hidden unit 0; 1 character the model never saw, shown uncoloured"
    assert named.as_dict()["values"] == [0.0, 0.0, 1.0, 0.0] and named.as_dict()["ranking"] is None
    found = viz.look(trace, find="line-position", top=2)
    assert found.unit == found.ranking[0] and ", r = " in found.title and len(found.ranking) == 2
