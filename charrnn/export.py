"""A model outside charrnn: `charrnn export RUN --format F -o PATH`.

Every format is one function from a checked checkpoint payload to files at PATH, listed in FORMATS;
the command's choices are its keys, so a new format is one function and one line here.

onnx: one step of a CharRNN as an ONNX graph, a character id and the state in, logits and the state out. With it
any ONNX runtime generates as `charrnn sample` does: feed the prime one id at a time, then
pick from the logits and feed the pick back. The graph is built here, node by node, from ONNX's own
RNN, GRU and LSTM operators, rather than traced by torch.onnx.export: torch 2.13's default (dynamo)
exporter needs onnxscript, takes seconds per model and prints to stdout, and the TorchScript exporter
it replaces is deprecated and due to be removed. ONNX's operators compute torch's equations; only the
order of the gates' rows differs (GATE_ORDER).

html: a model as one web page, its weights and a sampler in JavaScript, in a single file that runs offline. The
page (`export_page.html`, beside this module) carries no library: its inference loop is ours,
about a hundred lines of plain JavaScript (embedding, the cell's step for every layer, the head,
softmax with temperature), so it opens from disk in any browser, with no network, no CDN and no server.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import replace
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from charrnn import checkpoint, hf, install_command, schema, writes
from charrnn.card import license_id, model_card
from charrnn.model import GATES, parameter_shapes
from charrnn.config import EXPORT_FORMATS
from charrnn.errors import CharRNNError, SettingError
from charrnn.runs import read_history
from charrnn.schema import Checkpoint

# Paths of the machine that trained: meaningless elsewhere, and nobody else's business.
LOCAL_FIELDS = ("corpus_args",)
TEMPLATE = "export_page.html"  # html's page, beside this module
OPSET = 17  # 2022: what onnxruntime 1.14 on, onnxruntime-web and most other runtimes read
IR_VERSION = 8  # the file format that goes with opset 17; a newer one would shut out older runtimes
GRAPH_FORMAT = "1"  # the inputs, outputs and metadata below: a program that runs the graph relies on them
# Torch stacks the gates' rows i, f, g, o (LSTM) and r, z, n (GRU); ONNX reads i, o, f, c and z, r, h.
GATE_ORDER = {"rnn": [0], "gru": [1, 0, 2], "lstm": [0, 3, 1, 2]}
OPERATORS = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}


def export(source: Optional[str], format: str, out: Path, spdx: Optional[str] = None, force: bool = False) -> None:
    """Write the checkpoint `source` (as -c takes it: a .pt file, a run directory, an exported folder) as `format`;
    `spdx`, the license its owner states, goes into the model card (hf). Files already at `out` are replaced
    only with `force`."""
    if format not in FORMATS:
        raise SettingError(f"unknown --format {format!r}; choose one of {', '.join(FORMATS)}")
    writer = FORMATS[format]
    if spdx is not None:
        if format != "hf":
            raise SettingError("--license goes into the model card, so it needs --format hf")
        writer = partial(write_hf, spdx=license_id(spdx))
    path = checkpoint.resolve_checkpoint(source)
    saved = checkpoint.load_checkpoint(path)
    writer(replace(saved, history=read_history(path, saved)), Path(out), force)  # the whole run, not up to best.pt


def write_hf(saved: Checkpoint, folder: Path, force: bool = False, spdx: Optional[str] = None) -> None:
    """The shareable folder (see `charrnn.hf`): config.json, model.safetensors and the model card."""
    writes.refuse_link(folder)
    if folder.exists() and not folder.is_dir():
        raise CharRNNError(f"-o {folder} is a file; name a folder for config.json, model.safetensors and README.md")
    writes.check_targets([folder / name for name in (hf.CONFIG, hf.WEIGHTS, hf.CARD)], force)
    config = {key: value for key, value in schema.encode(replace(saved, resume=None)).items()
              if key != "model" and key not in LOCAL_FIELDS}
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in hf.folder_files(config, saved.weights, model_card(saved, folder.resolve().name, spdx)).items():
        writes.write_atomically(folder / name, data)


def write_onnx(saved: Checkpoint, path: Path, force: bool = False) -> None:
    """The one-step graph (see `one_step_model`) as one .onnx file."""
    if path.is_dir():
        raise CharRNNError(f"-o {path} is a folder; name the file to write, e.g. {path / 'model.onnx'}")
    writes.check_targets([path], force)
    path.parent.mkdir(parents=True, exist_ok=True)
    writes.write_atomically(path, one_step_model(saved).SerializeToString())


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
        # torch's GRU: reset gate after W_hn h
        extra: dict[str, Any] = {"linear_before_reset": 1} if config.model == "gru" else {}
        nodes.append(helper.make_node(OPERATORS[config.model], inputs, outputs, hidden_size=config.hidden, **extra))
    nodes += [helper.make_node("Concat", [f"layer_{n + 1}_in" for n in range(config.layers)], ["hidden_out"], axis=0),
              helper.make_node("Squeeze", [f"layer_{config.layers}_in", "axis_0"], ["top"]),
              helper.make_node("Gemm", ["top", "head_weight", "head_bias"], ["logits"], transB=1)]
    if config.model == "lstm":
        nodes.append(helper.make_node("Concat", [f"cell_out_{n}" for n in range(config.layers)], ["cell_out"], axis=0))
    state_shape: list[str | int] = [config.layers, "batch", config.hidden]
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


def write_html(saved: Checkpoint, path: Path, force: bool = False) -> None:
    """Write a checkpoint's model as a self-contained page."""
    path = Path(path)
    if path.is_dir():
        raise CharRNNError(f"-o {path} is a folder; name the page to write, e.g. {path / 'model.html'}")
    writes.check_targets([path], force)
    path.parent.mkdir(parents=True, exist_ok=True)
    writes.write_atomically(path, render_html(saved).encode("utf-8"))


def render_html(saved: Checkpoint) -> str:
    """The page's text: the template with the model's description and weights filled in."""
    config = saved.model_config
    title = f"charrnn: a {config.layers}x{config.hidden} {config.model.upper()}"
    trained_on = f" trained on {saved.corpus}" if saved.corpus else ""
    about = f"A character-level language model{trained_on} ({len(saved.vocab)} characters, {saved.step or 0:,} steps)."
    fields = {"TITLE": html.escape(title), "ABOUT": html.escape(about),
              "MODEL": script_safe(model_description(saved))}
    template = resources.files("charrnn").joinpath(TEMPLATE).read_text(encoding="utf-8")
    # One pass, so that a field's own text (a corpus named "{{MODEL}}") is never filled in again.
    return re.sub(r"\{\{(\w+)\}\}", lambda found: fields[found.group(1)], template)


def model_description(saved: Checkpoint) -> dict:
    """Shape, vocabulary and every weight as base64 of little-endian float32, in torch's layout."""
    config, weights = saved.model_config, saved.weights
    # float32, so that greedy text is charrnn's: fp16 would halve the page, but moved a trained 1x256
    # LSTM's likeliest character at 14 of 100,000 positions of tiny-shakespeare, where computing in
    # float64 (as JavaScript does) moved none (benchmarks/html_page.py --checkpoint RUN --text FILE).
    tensors = {name: base64.b64encode(weights[name].float().contiguous().numpy().astype("<f4").tobytes()).decode("ascii")
               for name in parameter_shapes(config)}
    return {"model": config.model, "layers": config.layers, "hidden": config.hidden, "embed": config.embed,
            "vocab": saved.vocab, "tensors": tensors}


def script_safe(value: dict) -> str:
    """JSON that cannot end the <script> element holding it: every non-ASCII character and every '<'
    escaped (a vocabulary may hold "</script>" or "<!--"), which JSON.parse reads back unchanged."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).replace("<", "\\u003c")


FORMATS: dict[str, Callable[[Checkpoint, Path, bool], None]] = {
    "hf": write_hf,
    "onnx": write_onnx,
    "html": write_html,  # one self-contained web page (see `render_html`)
}
assert tuple(FORMATS) == EXPORT_FORMATS, "charrnn.config.EXPORT_FORMATS lists the CLI's choices"
