"""The Python API (charrnn.load, charrnn.train), called in this process; and start-up without torch."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest
import torch

import charrnn
from charrnn.cli import evaluate as eval_command
from charrnn.errors import CharRNNError
from conftest import ENGLISH


def test_import_charrnn_and_the_cli_load_no_torch():
    code = "import sys, charrnn, charrnn.cli; print(json.dumps(sorted(m for m in sys.modules if m.startswith('torch'))))"
    loaded = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(loaded.stdout) == []


@pytest.fixture
def lm(tiny_run):
    return charrnn.load(tiny_run, device="cpu")


def test_generate_is_what_stream_yields_and_n_gives_a_list(lm):
    text = lm.generate("All:\n", length=40, seed=5)
    assert isinstance(text, str) and len(text) == 40
    assert "".join(lm.stream("All:\n", length=40, seed=5)) == text
    samples = lm.generate("All:\n", length=30, seed=5, n=2, stop=["\n"])
    assert isinstance(samples, list) and len(samples) == 2 and all("\n" not in s for s in samples)


def test_settings_are_refused_before_anything_is_generated(lm):
    with pytest.raises(CharRNNError, match="--top-p"):
        lm.stream(top_p=2.0)  # at the call, not at the first piece
    with pytest.raises(CharRNNError, match="never saw"):
        lm.generate("\u263a")


def test_generation_gives_back_the_callers_thread_count(lm, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # the policy applies only when the user set none
    torch.set_num_threads(3)  # none of the counts generation tries
    try:
        pieces = lm.stream(length=50, n=4, seed=1)
        next(pieces)
        pieces.close()
        assert torch.get_num_threads() == 3
        lm.generate(length=5, n=4, seed=1)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(1)


def test_evaluate_reports_what_charrnn_eval_does(lm, tiny_run, tmp_path, capsys):
    text = ENGLISH + "\u263a"  # one character the model never saw
    path = tmp_path / "held-out.txt"
    path.write_text(text, encoding="utf-8")
    eval_command(files=[str(path)], checkpoint_arg=str(tiny_run), as_json=True, device="cpu", impl="fused",
                 encoding="utf-8", errors="strict")
    assert lm.evaluate(text) == json.loads(capsys.readouterr().out)
    assert lm.evaluate(text)["oov"] == 1


def test_score_is_lazy_and_in_order(lm):
    endless = (f"All: {number}" for number in itertools.count())
    assert [score.line for score in itertools.islice(lm.score(endless), 3)] == ["All: 0", "All: 1", "All: 2"]


def test_train_takes_the_commands_options_as_typed_keywords_and_refuses_an_unknown_one(tmp_path):
    import typer.main

    from charrnn.cli import app
    from charrnn.config import TrainOptions

    command = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    arguments = {"corpus", "out", "time", "steps", "quiet"}  # charrnn.train's own parameters
    assert set(TrainOptions.__annotations__) | arguments == {parameter.name for parameter in command.params}
    (tmp_path / "corpus.txt").write_text(ENGLISH, encoding="utf-8")
    with pytest.raises(TypeError, match="unexpected keyword argument 'hiden'"):
        charrnn.train(tmp_path / "corpus.txt", out=tmp_path / "run", steps=1, hiden=16)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["corpus.txt"]  # refused before anything was written
