"""info: the checkpoint's facts, vocabulary preview, history, and the training curve."""

from __future__ import annotations

import json

import pytest

from charrnn.errors import CharRNNError
from charrnn.runs import save_plot, terminal_curve

HISTORY = [{"step": s, "train_loss": 4.0 / s, "val_loss": 4.2 / s} for s in (1, 2, 4, 8)]


def test_terminal_curve_draws_both_series():
    curve = terminal_curve(HISTORY, width=20, height=6)
    lines = curve.splitlines()
    assert lines[0].strip().startswith("4.200") and "o" in curve and "." in curve
    assert "step 1" in curve and lines[-2].rstrip().endswith("8")
    assert terminal_curve([]) == "(no training history to plot)"


def test_save_plot_writes_an_image_or_says_what_is_missing(tmp_path):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(CharRNNError, match="pip install 'charrnn-lm\\[plot\\]'"):
            save_plot(HISTORY, tmp_path / "curve.png")
        return
    save_plot(HISTORY, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_info_text_and_json(cli, tiny_run):
    text = cli("info", "-c", tiny_run).stdout
    assert "vocab_preview" in text and "best_val_loss" in text and "loss in nats/char" in text
    details = json.loads(cli("info", "-c", tiny_run, "--json").stdout)
    assert details["parameters"] > 0 and details["vocab_size"] == len(set(open(tiny_run.parent / "corpus.txt").read()))
    assert details["history"] and details["best_val_loss"] == min(row["val_loss"] for row in details["history"])
