"""The one-step ONNX graph: onnxruntime computes what torch computes, step after step, for every cell."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from charrnn import export
from charrnn.checkpoint import load_checkpoint, resolve_checkpoint
from charrnn.config import ModelConfig, SamplingSettings, TrainConfig
from charrnn.export import one_step_model
from charrnn.model import CharRNN, model_from_checkpoint
from charrnn.sample import generate
from charrnn.schema import Checkpoint
from charrnn.vocab import Vocab

ort = pytest.importorskip("onnxruntime")


def session(model_bytes: bytes):
    return ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])


def zero_state(session, batch: int = 1) -> dict:
    """The graph's state inputs (hidden, and cell for the LSTM), zero, as their declared shapes say."""
    return {i.name: np.zeros((i.shape[0], batch, i.shape[2]), np.float32) for i in session.get_inputs() if i.name != "id"}


def step(session, ids: np.ndarray, state: dict) -> tuple[np.ndarray, dict]:
    """One step in onnxruntime: logits, and the state to feed back."""
    logits, *new_state = session.run(None, {"id": ids, **state})
    return logits, dict(zip(state, new_state))


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_onnxruntime_steps_equal_torchs_over_200_greedy_steps(kind, layers):
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=23, model=kind, layers=layers, hidden=16, embed=8)
    model = CharRNN(config).eval()
    with torch.no_grad():  # an untrained network's biases are small: make the gates and the head matter
        for parameter in model.parameters():
            parameter.mul_(3)
    graph = session(one_step_model(Checkpoint(config, TrainConfig(), "x" * 23, model.state_dict()))
                    .SerializeToString())
    ids, torch_state, onnx_state, worst = torch.tensor([[5]]), None, zero_state(graph), 0.0
    with torch.no_grad():
        for _ in range(200):
            torch_logits, torch_state = model(ids, torch_state)
            onnx_logits, onnx_state = step(graph, ids[0].numpy(), onnx_state)
            worst = max(worst, float(np.abs(onnx_logits - torch_logits[0].numpy()).max()))
            ids = torch_logits[:, -1].argmax(-1, keepdim=True)
    assert worst < 1e-4


def test_a_trained_run_generates_the_same_greedy_text_in_onnxruntime(tiny_run, tmp_path):
    export.export(str(tiny_run), "onnx", tmp_path / "tiny.onnx")
    graph = session(str(tmp_path / "tiny.onnx"))
    vocab = json.loads(graph.get_modelmeta().custom_metadata_map["vocab"])
    prime, state = "All:", zero_state(graph)
    for char in prime:  # read the prime one character at a time, carrying the state
        logits, state = step(graph, np.array([vocab.index(char)]), state)
    text = []
    for _ in range(200):
        text.append(vocab[int(logits.argmax())])
        logits, state = step(graph, np.array([vocab.index(text[-1])]), state)
    payload = load_checkpoint(resolve_checkpoint(str(tiny_run)))
    expected = generate(model_from_checkpoint(payload), Vocab(payload.vocab), prime=prime,
                        settings=SamplingSettings(length=200, temperature=0, precision="fp32"))
    assert "".join(text) == "".join(char for (char,) in expected)
