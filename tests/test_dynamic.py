"""Dynamic evaluation: it learns from what it has read, counts as static evaluation does, and changes no file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import charrnn
from charrnn.data import evaluation_windows
from charrnn.config import DynamicSettings
from charrnn.errors import CharRNNError
from charrnn.evaluate import total_loss
from charrnn.vocab import code_points

# A word the tiny model never saw, over and over: after its first few readings, a model that adapts predicts it.
RARE = "First Citizen:\nYzvopheck, yzvopheck, speak yzvopheck.\n\n" * 12  # every letter one the model knows


def digests(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir()) if path.is_file()}


def test_a_repeated_rare_word_scores_lower_and_the_checkpoint_is_unchanged(tiny_run):
    before = digests(tiny_run)
    lm = charrnn.load(tiny_run)
    static = lm.evaluate(RARE)
    result = lm.evaluate(RARE, dynamic=DynamicSettings(segment=32, lr=0.3, decay=0.0))
    assert result["static"] == {**static, "seconds": result["static"]["seconds"]}
    assert (result["chars"], result["oov"]) == (static["chars"], 0) == (len(RARE) - 1, 0)
    assert result["loss"] < static["loss"] - 0.3, (result["loss"], static["loss"])
    # The model in memory and the files on disk are as they were: the same text scores the same again.
    assert lm.evaluate(RARE) == static
    assert digests(tiny_run) == before


def test_decay_toward_the_trained_weights_and_zero_lr(tiny_run):
    lm = charrnn.load(tiny_run)
    plain = lm.evaluate(RARE, dynamic=DynamicSettings(segment=32, lr=0.3, decay=0.0))
    pulled = lm.evaluate(RARE, dynamic=DynamicSettings(segment=32, lr=0.3, decay=0.5))
    # Pulled halfway back after every step, the model keeps less of what it learned.
    assert plain["loss"] < pulled["loss"] < plain["static"]["loss"]


def test_without_a_step_it_is_static_evaluation_read_as_one_stream(tiny_run):
    lm = charrnn.load(tiny_run)
    ids = lm.vocab.lookup(code_points(RARE)).astype(lm.vocab.dtype)
    nats, count = total_loss(lm.network, evaluation_windows(ids, 32, max_streams=1), lm.device)
    # Whatever the segment length, every character is scored once, by the state of all the text before it.
    for segment in (7, 32, 1000):
        still = lm.evaluate(RARE, dynamic=DynamicSettings(segment=segment, lr=0.0))
        assert (still["chars"], still["loss"]) == (count, pytest.approx(nats / count, abs=1e-5))


@pytest.mark.parametrize("settings", [dict(segment=0), dict(lr=-1.0), dict(decay=1.5)])
def test_settings_out_of_range_are_refused(settings):
    with pytest.raises(CharRNNError):
        DynamicSettings(**settings)


def test_eval_dynamic_prints_both_figures(cli, tiny_run):
    text = cli.cwd / "rare.txt"
    text.write_text(RARE, encoding="utf-8")
    completed = cli("eval", "-c", tiny_run, str(text), "--dynamic", "--segment", "32", "--dynamic-lr", "0.3")
    static, dynamic, settings = completed.stdout.splitlines()
    loss = {line.split()[0]: float(line.split("| loss ")[1].split()[0]) for line in (static, dynamic)}
    assert loss["dynamic"] < loss["static"]
    assert settings.startswith(f"dynamic: segment 32, lr 0.3, decay {DynamicSettings.decay:g}")


def test_an_adapted_model_writes_what_it_read_and_leaves_the_model_as_it_was(tiny_run):
    lm = charrnn.load(tiny_run)
    static = lm.evaluate(RARE)
    adapted = lm.adapted(RARE * 3)
    # Frozen after one pass, it predicts the text far better, and writes the word it learned.
    assert adapted.evaluate(RARE)["loss"] < static["loss"] - 0.3
    assert "zvopheck" in adapted.generate("First Citizen:\n", length=40, temperature=0)
    assert "zvopheck" not in lm.generate("First Citizen:\n", length=40, temperature=0)
    assert lm.evaluate(RARE) == static
    assert adapted.trace(RARE).surprise.mean() < lm.trace(RARE).surprise.mean() - 0.3  # trace reads the adapted weights
    with pytest.raises(CharRNNError, match="nothing to adapt to"):
        lm.adapted("\u2603")  # no character the model knows


def test_sample_adapt_reads_the_file_first_and_records_it(cli, tiny_run):
    before = digests(tiny_run)
    text = cli.cwd / "rare.txt"
    text.write_text(RARE * 3, encoding="utf-8")
    completed = cli("sample", "-c", tiny_run, "--adapt", "rare.txt", "--prime", "First Citizen:\n", "--temp", "0",
                    "--length", "40", "--json")
    record = json.loads(completed.stdout)
    assert "zvopheck" in record["text"] and record["adapt"] == "rare.txt"
    assert digests(tiny_run) == before  # a missing --adapt file: test_errors' sample_adapt_missing_file
