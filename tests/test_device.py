"""Devices and precision: what auto picks, bf16 autocast's dtypes, what a checkpoint says it ran on, GPU
checkpoints on a CPU. Fused against cells: test_cells (modules), test_model (a trained checkpoint)."""

import io

import pytest
import torch
import torch.serialization

from charrnn import checkpoint
from charrnn.config import ModelConfig, SamplingSettings, TrainConfig
from charrnn.device import autocast, backend_name, denormals_flushed, pick_device, resolve_precision
from charrnn.errors import CharRNNError
from charrnn.model import CharRNN, is_pair, model_from_checkpoint
from charrnn.progress import Reporter
from charrnn.sample import generate
from charrnn.trainer import prepare
from charrnn.vocab import Vocab
from conftest import CUDA_MARKS

CUDA = torch.cuda.is_available()


def needs_cuda(test):
    """A GPU test: skipped without CUDA, and marked so that `pytest -m gpu` runs it alone."""
    for mark in CUDA_MARKS:
        test = mark(test)
    return test


TINY = ModelConfig(model="lstm", layers=2, hidden=16, embed=8)


def tiny_trainer(corpus_file, tmp_path, monkeypatch, reporter=None, **train):
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    settings = dict(seq_len=16, batch_size=4, steps=4, eval_every=2, val_fraction=0.1)
    settings.update(train)
    return prepare([str(corpus_file)], TINY, TrainConfig(**settings), tmp_path / "run", reporter=reporter)


def samples(payload: dict) -> str:
    """A checkpoint's seeded sample on the CPU, with fp32 weights."""
    model = model_from_checkpoint(payload, device=torch.device("cpu"))
    settings = SamplingSettings(length=40, seed=1, precision="fp32")
    return "".join(c for (c,) in generate(model, Vocab(payload.vocab), "All:", settings))


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
    trainer = prepare([str(corpus_file)], ModelConfig(model=kind, layers=2, hidden=16, embed=8),
                      TrainConfig(seq_len=16, batch_size=4, steps=4, impl="cells"), tmp_path / "run")
    trainer.precision = "bf16"
    for _ in range(3):
        loss = trainer.train_step(1e-3)
        assert loss == loss  # finite: train_step raises otherwise
        states = trainer.state if is_pair(trainer.state) else (trainer.state,)
        assert all(s.dtype == torch.float32 and not s.requires_grad for s in states)
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # master weights stay fp32


def test_checkpoint_records_device_backend_and_precision(corpus_file, tmp_path, monkeypatch):
    said = io.StringIO()
    trainer = tiny_trainer(corpus_file, tmp_path, monkeypatch, reporter=Reporter(stream=said), device="cpu")
    trainer.run()
    payload = checkpoint.load_checkpoint(tmp_path / "run" / "best.pt")
    assert (payload.device, payload.precision) == ("cpu", "fp32")
    assert payload.backend == backend_name(torch.device("cpu"), "fused")
    assert f"| cpu ({payload.backend}, fp32) |" in said.getvalue()  # and the run's first line says so


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
    assert all(t.device.type == "cpu" for t in loaded.weights.values())
    assert samples(loaded) == samples(payload)  # the very network it was, not just some text


@needs_cuda
def test_cuda_training_uses_cudnn_in_bf16_and_samples_on_cpu(corpus_file, tmp_path, monkeypatch):
    trainer = tiny_trainer(corpus_file, tmp_path, monkeypatch, device="cuda")
    assert (trainer.backend, trainer.precision) == ("cudnn", "bf16")
    trainer.run()
    payload = checkpoint.load_checkpoint(tmp_path / "run" / "best.pt")
    assert (payload.device, payload.precision) == ("cuda", "bf16")
    assert all(t.device.type == "cpu" for t in payload.weights.values())
    assert len(samples(payload)) == 40


@pytest.mark.skipif(not torch.set_flush_denormal(False), reason="this CPU cannot flush subnormal floats")
def test_training_treats_subnormal_floats_as_zero_and_gives_the_mode_back():
    tiny = torch.tensor([1e-39])  # below float32's normal range
    with denormals_flushed():
        assert (tiny * 1.0).item() == 0.0
    assert (tiny * 1.0).item() == pytest.approx(1e-39)
