"""The model learns: every cell type's loss falls on a tiny corpus; its checkpoint reads the same in either implementation."""

import pytest
import torch

from charrnn import checkpoint
from charrnn.config import ModelConfig, SamplingSettings, TrainConfig
from charrnn.data import evaluation_windows
from charrnn.evaluate import total_loss
from charrnn.model import CharRNN, detach_state, model_from_checkpoint
from charrnn.sample import generate
from charrnn.trainer import prepare


def unigram_entropy(ids) -> float:
    counts = torch.bincount(torch.from_numpy(ids.astype("int64"))).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_loss_falls_for_every_cell_type(kind, corpus_file, tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    trainer = prepare([str(corpus_file)], ModelConfig(model=kind, layers=2, hidden=32, embed=16),
                      TrainConfig(seq_len=32, batch_size=8, lr=1e-2, steps=90, eval_every=30, val_fraction=0.1),
                      tmp_path / "run")
    trainer.run()
    history = trainer.progress.history
    assert [h["step"] for h in history] == [30, 60, 90]
    # beating the unigram entropy means the model uses context, not just letter frequencies
    assert history[-1]["val_loss"] < unigram_entropy(trainer.corpus.ids) - 0.5
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert (tmp_path / "run" / "best.pt").is_file() and (tmp_path / "run" / "last.pt").is_file()


def test_lstm_forget_gates_start_open():
    model = CharRNN(ModelConfig(vocab_size=10, model="lstm", layers=2, hidden=8, embed=4))
    for layer in range(2):
        bias = getattr(model.rnn, f"bias_ih_l{layer}") + getattr(model.rnn, f"bias_hh_l{layer}")
        assert torch.allclose(bias[8:16], torch.ones(8))


def test_state_carries_across_windows_like_one_long_sequence():
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=10, model="gru", layers=2, hidden=8, embed=4)).eval()
    ids = torch.randint(0, 10, (3, 12))
    whole, _ = model(ids)
    first, state = model(ids[:, :5])
    second, _ = model(ids[:, 5:], detach_state(state))
    assert torch.allclose(torch.cat([first, second], dim=1), whole, atol=1e-6)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_one_checkpoint_same_loss_and_text_in_both_implementations(kind, corpus_file, tmp_path, monkeypatch):
    """What torch's fused kernels trained, the cells written out step by step read the same (test_cells holds
    the modules to float64 precision; here a real checkpoint, in fp32)."""
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    trainer = prepare([str(corpus_file)], ModelConfig(model=kind, layers=2, hidden=16, embed=8),
                      TrainConfig(seq_len=16, batch_size=4, steps=10, eval_every=10), tmp_path / "run")
    trainer.run()
    payload = checkpoint.load_checkpoint(tmp_path / "run" / "best.pt")
    windows = evaluation_windows(trainer.corpus.ids, 16)
    (fused_nats, count), (cells_nats, cells_count) = (
        total_loss(model_from_checkpoint(payload, impl=impl), windows, torch.device("cpu")) for impl in ("fused", "cells"))
    assert count == cells_count > 0
    assert abs(fused_nats - cells_nats) / count < 1e-5
    # A seeded batch of samples too: the same draws from the same logits, whichever implementation computed them.
    settings = SamplingSettings(length=40, temperature=0.8, top_k=5, seed=3, n=4, precision="fp32")
    texts = {impl: list(generate(model_from_checkpoint(payload, impl=impl), trainer.corpus.vocab, "All:", settings))
             for impl in ("fused", "cells")}
    assert texts["fused"] == texts["cells"]
