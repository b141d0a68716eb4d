"""The training loop's rules, as a specification: the schedule, and what a resumed run keeps."""

import os
import signal

import pytest
import torch

from charrnn import api, checkpoint
from charrnn.config import ModelConfig, TrainConfig, to_dict
from charrnn.trainer import FRESH_START_EVERY, fresh_starts, learning_rate, resumed_settings
from conftest import ENGLISH


def test_schedule_warms_up_then_decays_to_the_floor():
    config = TrainConfig(lr=1e-2, warmup_steps=10, min_lr_ratio=0.1)
    assert learning_rate(config, 0, 0.0) == pytest.approx(1e-3)
    assert learning_rate(config, 50, 0.0) == pytest.approx(1e-2)
    assert learning_rate(config, 50, 1.0) == pytest.approx(1e-3)


def test_a_resumed_run_keeps_its_shape_settings_and_corpus_and_takes_a_new_budget_and_hardware():
    saved = {"model_config": to_dict(ModelConfig(hidden=48, layers=2)), "corpus_args": ["/data/corpus.txt"],
             "train_config": to_dict(TrainConfig(lr=3e-3, seq_len=32, steps=100, seed=7, device="cpu"))}
    asked = TrainConfig(lr=1.0, seq_len=999, steps=200, seed=1, device="cuda", impl="cells", precision="bf16")
    model, train, corpus = resumed_settings(saved, asked, [])
    assert (model.hidden, model.layers) == (48, 2) and corpus == ["/data/corpus.txt"]
    assert (train.lr, train.seq_len, train.seed) == (3e-3, 32, 7)  # the run's own
    assert (train.steps, train.device, train.impl, train.precision) == (200, "cuda", "cells", "bf16")  # the new ones
    kept = resumed_settings(saved, TrainConfig(), ["other.txt"])[1:]
    assert kept[0].steps == 100 and kept[1] == ["other.txt"]  # no new budget: the run's own; a corpus given wins


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
    assert checkpoint.load_checkpoint(tmp_path / "run" / checkpoint.LAST)["step"] == 3
