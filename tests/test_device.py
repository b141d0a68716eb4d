"""Devices and precision: what auto picks, bf16 autocast's dtypes, GPU checkpoints on a CPU."""

import pytest
import torch
import torch.serialization

from charrnn import checkpoint
from charrnn.config import ModelConfig, TrainConfig
from charrnn.device import autocast, backend_name, pick_device, resolve_precision
from charrnn.errors import CharRNNError
from charrnn.evaluate import total_loss
from charrnn.data import evaluation_windows
from charrnn.model import CharRNN, model_from_checkpoint
from charrnn.sample import generate
from charrnn.trainer import Trainer
from charrnn.vocab import Vocab
from conftest import CUDA_MARKS

CUDA = torch.cuda.is_available()


def needs_cuda(test):
    """A GPU test: skipped without CUDA, and marked so that `pytest -m gpu` runs it alone."""
    for mark in CUDA_MARKS:
        test = mark(test)
    return test


TINY = ModelConfig(model="lstm", layers=2, hidden=16, embed=8)


def tiny_trainer(corpus_file, tmp_path, monkeypatch, **train):
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    settings = dict(seq_len=16, batch_size=4, steps=4, eval_every=2, val_fraction=0.1)
    settings.update(train)
    return Trainer([str(corpus_file)], TINY, TrainConfig(**settings), tmp_path / "run")


def test_auto_picks_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("auto").type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("auto").type == "cpu"
    with pytest.raises(CharRNNError, match="no CUDA GPU"):
        pick_device("cuda")


def test_backend_names_the_kernel():
    assert backend_name(torch.device("cpu"), "cells").startswith("cells")
    assert backend_name(torch.device("cpu"), "fused") in ("onednn", "aten")
    assert backend_name(torch.device("cuda"), "fused") in ("cudnn", "cuda")


def test_precision_auto_is_bf16_on_cuda_only(monkeypatch):
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"
    with pytest.raises(CharRNNError, match="--precision"):
        resolve_precision("fp16", torch.device("cpu"))
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    with pytest.raises(CharRNNError, match="no bf16 support"):
        resolve_precision("bf16", torch.device("cpu"))


def test_logits_stay_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=11, model="gru", layers=2, hidden=16, embed=8), impl="cells")
    ids = torch.randint(0, 11, (2, 5))
    with autocast(torch.device("cpu"), "bf16"):
        logits, _ = model(ids)
    assert logits.dtype == torch.float32
    reference, _ = model(ids)
    assert torch.allclose(logits, reference, atol=0.1)  # bf16 recurrence, same answer to bf16's precision


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_bf16_training_carries_an_fp32_state_across_windows(kind, corpus_file, tmp_path, monkeypatch):
    # No bf16 oneDNN RNN on most CPUs, so the autocast path runs here on the written-out cells.
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    trainer = Trainer([str(corpus_file)], ModelConfig(model=kind, layers=2, hidden=16, embed=8),
                      TrainConfig(seq_len=16, batch_size=4, steps=4, impl="cells"), tmp_path / "run")
    trainer.precision = "bf16"
    for _ in range(3):
        loss = trainer.train_step(1e-3)
        assert loss == loss  # finite: train_step raises otherwise
        states = trainer.state if isinstance(trainer.state, tuple) else (trainer.state,)
        assert all(s.dtype == torch.float32 and not s.requires_grad for s in states)
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # master weights stay fp32


def test_checkpoint_records_device_backend_and_precision(corpus_file, tmp_path, monkeypatch):
    trainer = tiny_trainer(corpus_file, tmp_path, monkeypatch, device="cpu")
    trainer.run()
    payload = checkpoint.load_checkpoint(tmp_path / "run" / "best.pt")
    assert (payload["device"], payload["precision"]) == ("cpu", "fp32")
    assert payload["backend"] == backend_name(torch.device("cpu"), "fused")


def test_checkpoint_saved_from_a_gpu_loads_and_samples_on_cpu(corpus_file, tmp_path, monkeypatch):
    trainer = tiny_trainer(corpus_file, tmp_path, monkeypatch, device="cpu")
    trainer.run()
    payload = checkpoint.load_checkpoint(tmp_path / "run" / "best.pt")
    # Write every tensor as if it lived on cuda:0, as torch.save does for a GPU run's tensors.
    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        checkpoint.save_checkpoint(payload, tmp_path / "gpu.pt")
    if not CUDA:  # the file really is a GPU one: a plain load on this machine fails
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "gpu.pt", weights_only=True)
    loaded = checkpoint.load_checkpoint(tmp_path / "gpu.pt")
    assert all(t.device.type == "cpu" for t in loaded["model"].values())
    model = model_from_checkpoint(loaded, impl="cells", device=torch.device("cpu"))
    text = "".join(c for (c,) in generate(model, Vocab(loaded["vocab"]), prime="All:", length=20, seed=1))
    assert len(text) == 20


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_one_checkpoint_same_loss_in_both_implementations(kind, corpus_file, tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    trainer = Trainer([str(corpus_file)], ModelConfig(model=kind, layers=2, hidden=16, embed=8),
                      TrainConfig(seq_len=16, batch_size=4, steps=10, eval_every=10), tmp_path / "run")
    trainer.run()
    payload = checkpoint.load_checkpoint(tmp_path / "run" / "best.pt")
    windows = evaluation_windows(trainer.corpus.ids, 16)
    losses = {impl: total_loss(model_from_checkpoint(payload, impl=impl), windows, torch.device("cpu"))
              for impl in ("fused", "cells")}
    (fused_nats, count), (cells_nats, cells_count) = losses["fused"], losses["cells"]
    assert count == cells_count
    assert abs(fused_nats - cells_nats) / count < 1e-5
    greedy = {impl: "".join(c for (c,) in generate(model_from_checkpoint(payload, impl=impl), trainer.corpus.vocab,
                                                   prime="All:", length=40, temperature=0))
              for impl in ("fused", "cells")}
    assert greedy["fused"] == greedy["cells"]


@needs_cuda
def test_cuda_training_uses_cudnn_in_bf16_and_samples_on_cpu(corpus_file, tmp_path, monkeypatch):
    trainer = tiny_trainer(corpus_file, tmp_path, monkeypatch, device="cuda")
    assert (trainer.backend, trainer.precision) == ("cudnn", "bf16")
    trainer.run()
    payload = checkpoint.load_checkpoint(tmp_path / "run" / "best.pt")
    assert (payload["device"], payload["precision"]) == ("cuda", "bf16")
    model = model_from_checkpoint(payload, device=torch.device("cpu"))
    assert len(list(generate(model, Vocab(payload["vocab"]), length=10, seed=0))) == 10


@needs_cuda
@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_cudnn_and_cells_agree_on_cuda(kind):
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=13, model=kind, layers=2, hidden=32, embed=8)
    fused = CharRNN(config, impl="fused").cuda().double()
    cells = CharRNN(config, impl="cells").cuda().double()
    cells.load_state_dict(fused.state_dict())
    ids = torch.randint(0, 13, (3, 9), device="cuda")
    (fused_logits, _), (cells_logits, _) = fused(ids), cells(ids)
    assert torch.allclose(fused_logits, cells_logits, atol=1e-8)


def test_a_checkpoint_trained_fused_evaluates_the_same_with_the_cells(cli, corpus_file, monkeypatch):
    """`--impl` end to end: what torch's fused kernels trained, the cells written out step by step run the same."""
    import charrnn
    from conftest import TINY_MODEL

    trained = cli("train", corpus_file, "-o", "run", "--steps", "20", "--layers", "2", "--device", "cpu", *TINY_MODEL[2:])
    assert "| cpu (onednn, fp32) |" in trained.stderr
    saved = checkpoint.load_checkpoint(cli.cwd / "run" / "best.pt")
    assert (saved["device"], saved["backend"], saved["precision"]) == ("cpu", "onednn", "fp32")
    monkeypatch.setenv("CHARRNN_CACHE_DIR", cli.env["CHARRNN_CACHE_DIR"])
    fused, cells = (charrnn.load(cli.cwd / "run", impl=impl).evaluate_validation() for impl in ("fused", "cells"))
    assert fused["chars"] == cells["chars"] > 0 and abs(fused["bpc"] - cells["bpc"]) < 1e-4
