"""One step of a CharRNN as an ONNX graph: a character id and the state in, logits and the state out.

With it any ONNX runtime generates as `charrnn sample` does: feed the prime one id at a time, then
pick from the logits and feed the pick back. The graph is built here, node by node, from ONNX's own
RNN, GRU and LSTM operators, rather than traced by torch.onnx.export: torch 2.13's default (dynamo)
exporter needs onnxscript, takes seconds per model and prints to stdout, and the TorchScript exporter
it replaces is deprecated and due to be removed. ONNX's operators compute torch's equations; only the
order of the gates' rows differs (GATE_ORDER).
"""

from __future__ import annotations

import json

import numpy as np

from charrnn import install_command
from charrnn.cells import GATES
from charrnn.errors import CharRNNError
from charrnn.schema import Checkpoint

OPSET = 17  # 2022: what onnxruntime 1.14 on, onnxruntime-web and most other runtimes read
IR_VERSION = 8  # the file format that goes with opset 17; a newer one would shut out older runtimes
GRAPH_FORMAT = "1"  # the inputs, outputs and metadata below: a program that runs the graph relies on them
# Torch stacks the gates' rows i, f, g, o (LSTM) and r, z, n (GRU); ONNX reads i, o, f, c and z, r, h.
GATE_ORDER = {"rnn": [0], "gru": [1, 0, 2], "lstm": [0, 3, 1, 2]}
OPERATORS = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}


def require_onnx():
    try:
        import onnx
    except ImportError:
        raise CharRNNError(f"--format onnx needs the onnx package: {install_command('onnx')}") from None
    return onnx


def one_step_model(saved: Checkpoint):
    """The ONNX model of one step: inputs `id` [batch] (int64) and `hidden` [layers, batch, hidden] (and `cell` for
    the LSTM), outputs `logits` [batch, vocab], `hidden_out` (and `cell_out`). The vocabulary is in its metadata."""
    onnx = require_onnx()
    from onnx import TensorProto, helper, numpy_helper

    config = saved.model_config
    weights = {name: tensor.detach().float().numpy() for name, tensor in saved.weights.items()}
    states = ["hidden", "cell"] if config.model == "lstm" else ["hidden"]
    constants = {"embedding": weights["embedding.weight"], "head_weight": weights["head.weight"],
                 "head_bias": weights["head.bias"], "axis_0": np.array([0], np.int64),
                 "one_per_layer": np.ones(config.layers, np.int64)}
    nodes = [helper.make_node("Gather", ["embedding", "id"], ["embedded"]),
             # ONNX's recurrent operators take [steps, batch, features]: here one step.
             helper.make_node("Unsqueeze", ["embedded", "axis_0"], ["layer_0_in"])]
    for state in states:  # [layers, batch, hidden] -> per layer [1, batch, hidden], what the operators take
        nodes.append(helper.make_node("Split", [state, "one_per_layer"], [f"{state}_{n}" for n in range(config.layers)]))
    for layer in range(config.layers):
        constants.update(layer_weights(weights, config.model, layer))
        inputs = [f"layer_{layer}_in", f"W_{layer}", f"R_{layer}", f"B_{layer}", ""] + [f"{s}_{layer}" for s in states]
        # With one step, the new hidden state [1, batch, hidden] is also the next layer's input.
        outputs = ["", f"layer_{layer + 1}_in"] + (["cell_out_" + str(layer)] if config.model == "lstm" else [])
        extra = {"linear_before_reset": 1} if config.model == "gru" else {}  # torch's GRU: reset gate after W_hn h
        nodes.append(helper.make_node(OPERATORS[config.model], inputs, outputs, hidden_size=config.hidden, **extra))
    nodes += [helper.make_node("Concat", [f"layer_{n + 1}_in" for n in range(config.layers)], ["hidden_out"], axis=0),
              helper.make_node("Squeeze", [f"layer_{config.layers}_in", "axis_0"], ["top"]),
              helper.make_node("Gemm", ["top", "head_weight", "head_bias"], ["logits"], transB=1)]
    if config.model == "lstm":
        nodes.append(helper.make_node("Concat", [f"cell_out_{n}" for n in range(config.layers)], ["cell_out"], axis=0))
    state_shape = [config.layers, "batch", config.hidden]
    graph = helper.make_graph(
        nodes, f"charrnn_{config.model}_{config.layers}x{config.hidden}_step",
        [helper.make_tensor_value_info("id", TensorProto.INT64, ["batch"])]
        + [helper.make_tensor_value_info(s, TensorProto.FLOAT, state_shape) for s in states],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", config.vocab_size])]
        + [helper.make_tensor_value_info(f"{s}_out", TensorProto.FLOAT, state_shape) for s in states],
        [numpy_helper.from_array(np.ascontiguousarray(array), name) for name, array in constants.items()])
    model = helper.make_model(graph, producer_name="charrnn", opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR_VERSION)
    helper.set_model_props(model, {"format": "charrnn-step", "format_version": GRAPH_FORMAT, "model": config.model,
                                   "layers": str(config.layers), "hidden": str(config.hidden),
                                   "vocab": json.dumps(saved.vocab)})  # JSON: ASCII, so any character survives
    onnx.checker.check_model(model)
    return model


def layer_weights(weights: dict[str, np.ndarray], kind: str, layer: int) -> dict[str, np.ndarray]:
    """One layer's weights in the layout of ONNX's operators: W [1, gates*hidden, input], R [1, gates*hidden,
    hidden], B [1, 2*gates*hidden] (the input biases, then the recurrent ones), gates in ONNX's order."""
    def reordered(name: str) -> np.ndarray:
        blocks = np.split(weights[f"rnn.{name}_l{layer}"], GATES[kind], axis=0)
        return np.concatenate([blocks[i] for i in GATE_ORDER[kind]], axis=0)[np.newaxis]

    return {f"W_{layer}": reordered("weight_ih"), f"R_{layer}": reordered("weight_hh"),
            f"B_{layer}": np.concatenate([reordered("bias_ih"), reordered("bias_hh")], axis=1)}
