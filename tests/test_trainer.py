"""The training loop's rules, as a specification: the schedule, and what a resumed run keeps."""

import os
import shutil
import signal
from pathlib import Path

import pytest
import torch

from charrnn import api, checkpoint
from charrnn.config import ModelConfig, TrainConfig
from charrnn.data import Corpus, evaluation_windows, training_windows
from charrnn.errors import CharRNNError, SettingError
from charrnn.schema import Checkpoint
from charrnn.trainer import (
    FRESH_START_EVERY,
    RunPlan,
    Trainer,
    checked_settings,
    fresh_starts,
    inherited_chars,
    learning_rate,
    resume_warnings,
    resumed_settings,
)
from charrnn.vocab import Vocab
from conftest import ENGLISH, TINY_OPTIONS
from test_checkpoint import edited


def test_schedule_warms_up_then_decays_to_the_floor():
    config = TrainConfig(lr=1e-2, warmup_steps=10, min_lr_ratio=0.1)
    assert learning_rate(config, 0, 0.0) == pytest.approx(1e-3)
    assert learning_rate(config, 50, 0.0) == pytest.approx(1e-2)
    assert learning_rate(config, 50, 1.0) == pytest.approx(1e-3)


def test_a_resumed_run_keeps_its_shape_settings_and_corpus_and_takes_a_new_budget_schedule_cadence_and_hardware():
    saved = Checkpoint(ModelConfig(hidden=48, layers=2), TrainConfig(lr=3e-3, seq_len=32, steps=100, seed=7,
                       eval_every=50, device="cpu"), "ab", {}, corpus_args=["/data/corpus.txt"])
    asked = TrainConfig(lr=1.0, seq_len=999, steps=200, seed=1, eval_every=5, device="cuda", impl="cells",
                        precision="bf16")
    given = ["lr", "seq_len", "steps", "seed", "eval_every", "hidden", "device", "impl", "precision", "init_from"]
    model, train, corpus, ignored = resumed_settings(saved, asked, [], given)
    assert (model.hidden, model.layers) == (48, 2) and corpus == ["/data/corpus.txt"]
    assert (train.seq_len, train.seed) == (32, 7)  # the run's own
    assert (train.steps, train.lr, train.eval_every) == (200, 1.0, 5)  # budget, schedule and cadence: the new ones
    assert (train.device, train.impl, train.precision) == ("cuda", "cells", "bf16")  # this machine's
    assert ignored == ["hidden", "init_from", "seed", "seq_len"]  # named in the warning
    *kept, ignored = resumed_settings(saved, TrainConfig(), ["other.txt"])
    assert (kept[1].steps, kept[1].lr, kept[1].eval_every) == (100, 3e-3, 50)  # not given: the run's own
    assert ignored == []
    assert resumed_settings(saved, TrainConfig(steps=300), [])[1].steps == 300  # set, though not named as given
    assert kept[2] == ["other.txt"]  # a corpus given wins, and is checked against the run's text


def test_the_plans_steps_budget_and_check_the_settings_and_say_what_a_resumed_or_fine_tuned_run_keeps(tmp_path):
    config, (note,) = checked_settings(ModelConfig(), TrainConfig())
    assert config.time_budget and "no --steps or --time given" in note
    assert checked_settings(ModelConfig(), TrainConfig(steps=5)) == (TrainConfig(steps=5), ())
    with pytest.raises(SettingError, match="--hidden"):
        checked_settings(ModelConfig(hidden=0), TrainConfig(steps=5))
    base = Checkpoint(ModelConfig(), TrainConfig(), "abc", {})
    grown = Checkpoint(ModelConfig(), TrainConfig(), "abcxy", {})  # a fine-tuned run's last.pt: "xy" its own
    assert inherited_chars(None, None, None) is None  # from scratch
    assert inherited_chars(None, base, {"vocab_size": 3}) == "abc"  # --init-from
    assert inherited_chars(grown, None, {"vocab_size": 3}) == "abc"  # its --resume
    assert resume_warnings(None, [], tmp_path) == ()
    ignored, undigested = resume_warnings(grown, ["seed"], tmp_path)  # a last.pt with no resume state, no digest
    assert "--seed" in ignored and "ignored" in ignored and "no digest" in undigested


def test_a_trainer_runs_a_plan_made_by_hand_with_no_corpus_file_and_no_lock(tmp_path):
    vocab = Vocab("".join(sorted(set(ENGLISH))))
    ids = vocab.encode(ENGLISH * 4)
    corpus = Corpus(ids, vocab, "in memory")
    train_ids, val_ids = corpus.split(0.1)
    plan = RunPlan(tmp_path / "run", ModelConfig(vocab_size=len(vocab), hidden=16, embed=8),
                   TrainConfig(steps=4, eval_every=2, seq_len=16, batch_size=2, device="cpu"), corpus,
                   training_windows(train_ids, 2, 16), evaluation_windows(val_ids, 16))
    (tmp_path / "run").mkdir()
    summary = Trainer(plan).run()
    saved = checkpoint.load_checkpoint(tmp_path / "run" / checkpoint.LAST)
    assert summary["steps"] == 4 and [row["step"] for row in saved.history] == [2, 4]
    assert saved.resume.progress.position == 4 and saved.corpus == "in memory"


def test_every_stream_starts_afresh_once_in_so_many_windows_and_the_rest_carry_on():
    batch = 2 * FRESH_START_EVERY + 3
    carried = (torch.ones(2, batch, 4), torch.full((2, batch, 4), 2.0))  # an LSTM's pair, two layers
    zeroed = torch.zeros(batch, dtype=torch.long)
    for position in range(5, 5 + FRESH_START_EVERY):
        hidden, cell = fresh_starts(carried, position)
        fresh = (hidden == 0).all(dim=(0, 2))
        assert torch.equal(fresh, (cell == 0).all(dim=(0, 2)))  # the pair together
        assert torch.equal(hidden[:, ~fresh], carried[0][:, ~fresh]) and torch.equal(cell[:, ~fresh], carried[1][:, ~fresh])
        zeroed += fresh
    assert zeroed.tolist() == [1] * batch


def test_an_interrupted_run_in_a_notebook_is_a_keyboard_interrupt_raised_after_saving(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(ENGLISH * 20, encoding="utf-8")

    def press_ctrl_c(figures: dict) -> None:
        if figures["step"] == 3:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt, match="interrupted at step 3"):  # what `except KeyboardInterrupt` catches
        api.train(corpus, tmp_path / "run", steps=1000, on_progress=press_ctrl_c, layers=1, hidden=32, embed=16,
                  seq_len=32, batch_size=4, eval_every=10)
    assert checkpoint.load_checkpoint(tmp_path / "run" / checkpoint.LAST).step == 3


@pytest.fixture
def resumable(tmp_path, tiny_run) -> Path:
    """A copy of the tiny run, to resume."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns(".lock"))
    return run


@pytest.mark.parametrize("text, said", [
    (ENGLISH * 20 + "All:\nSpeak.\n", "is 12 characters longer than when the run began"),  # appended
    (ENGLISH * 60, f"is {len(ENGLISH) * 40:,} characters longer"),  # the file tripled
    (ENGLISH * 19, f"is {len(ENGLISH):,} characters shorter"),
    ("".join(reversed((ENGLISH * 20).splitlines(keepends=True))), "has the same length as when the run began, but"),
    ((ENGLISH * 20).replace("!", "").replace("?", "!"), "holds other characters"),
])
def test_resume_refuses_a_corpus_changed_since_the_run_began(train_here, resumable, text, said):
    corpus = resumable.parent / "corpus.txt"
    corpus.write_text(text, encoding="utf-8")
    before = (resumable / checkpoint.LAST).read_bytes()
    with pytest.raises(CharRNNError) as refused:
        train_here(corpus, resume=True, out=resumable, steps=160)
    message = str(refused.value)
    assert message.startswith("the corpus (corpus) ") and said in message, message
    assert "another --out" in message and "--force" in message
    assert (resumable / checkpoint.LAST).read_bytes() == before
    train_here(corpus, force=True, out=resumable, steps=2, **TINY_OPTIONS)  # the advice works


def test_a_refused_resume_is_one_line_and_exit_1(cli, resumable):
    (cli.cwd / "corpus.txt").write_text(ENGLISH * 19, encoding="utf-8")
    refused = cli("train", "corpus.txt", "--resume", "-o", resumable, "--steps", "160", check_rc=1)
    (line,) = refused.stderr.splitlines()
    assert line.startswith("charrnn: error: the corpus (corpus) is ") and "shorter" in line, line


def test_resume_of_the_same_text_goes_on_and_an_older_last_pt_without_a_digest_is_said_once(cli, resumable, tiny_run,
                                                                                           train_here, capsys):
    same = cli.cwd / "same.txt"
    same.write_text((tiny_run.parent / "corpus.txt").read_text("utf-8"), encoding="utf-8")  # a copy: the text counts
    train_here(same, resume=True, out=resumable, steps=152)
    assert capsys.readouterr().err == ""  # no warning
    last = resumable / checkpoint.LAST
    edited(last, last, lambda payload: [payload.pop(key) for key in ("corpus_digest", "corpus_chars")])
    resumed = cli("train", same, "--resume", "-o", resumable, "--steps", "154", "-q")
    (line,) = resumed.stderr.splitlines()
    assert line.startswith("charrnn: warning: ") and "no digest" in line and "going on" in line
    assert checkpoint.load_checkpoint(last).step == 154 and checkpoint.load_checkpoint(last).resume.corpus_digest


def test_resume_takes_the_flags_a_run_may_change_and_names_the_rest_in_one_warning(cli, resumable):
    resumed = cli("train", "--resume", "-o", resumable, "--steps", "156", "--lr", "0.5", "--hidden", "999",
                  "--batch-size", "7", "--eval-every", "2", "--seed", "9", "-q")
    (line,) = resumed.stderr.splitlines()
    assert line.startswith("charrnn: warning: ") and "--batch-size, --hidden, --seed" in line and "ignored" in line
    assert "--lr" not in line.split("ignored")[0] and "--eval-every" not in line.split("ignored")[0]
    payload = checkpoint.load_checkpoint(resumable / checkpoint.LAST)
    assert (payload.model_config.hidden, payload.train_config.batch_size) == (32, 4)  # the run's own
    assert (payload.train_config.lr, payload.train_config.eval_every) == (0.5, 2)  # honoured
    assert [entry["step"] for entry in payload.history if entry["step"] > 150] == [152, 154, 156]


@pytest.mark.parametrize("has_last", [False, True])
def test_a_second_ctrl_c_advises_what_the_run_folder_allows(tmp_path, has_last):
    from charrnn.errors import TrainingInterrupted
    from charrnn.trainer import StopSignals

    if has_last:
        (tmp_path / checkpoint.LAST).write_bytes(b"")
    stop = StopSignals(tmp_path)
    stop._handle(signal.SIGINT, None)  # the first asks to stop after the step
    with pytest.raises(TrainingInterrupted) as raised:
        stop._handle(signal.SIGINT, None)
    assert ("continue with --resume" in str(raised.value)) == has_last
    assert ("nothing was saved" in str(raised.value)) != has_last
