"""A model outside charrnn: `charrnn export RUN --format F -o PATH`.

Every format is one function from a checked checkpoint payload to files at PATH, listed in FORMATS;
the command's choices are its keys, so a new format is one function and one line here.

hf: the folder (charrnn.hf) with its model card, the README.md a person reads before using the model.

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
import shlex
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import numpy as np

from charrnn import checkpoint, corpora, hf, install_command, schema, writes
from charrnn.config import EXPORT_FORMATS, ModelConfig, SamplingSettings, format_duration
from charrnn.errors import CharRNNError, SettingError, escaped
from charrnn.model import GATES, model_from_checkpoint, parameter_shapes
from charrnn.runs import best_bpc, read_history
from charrnn.sample import generate
from charrnn.schema import Checkpoint
from charrnn.vocab import Vocab

# Paths of the machine that trained: meaningless elsewhere, and nobody else's business.
LOCAL_FIELDS = ("corpus_args",)
TEMPLATE = "export_page.html"  # html's page, beside this module
# The card's sample, and the command that writes it again: fp32 weights, since the default (fp16 on
# x86 CPUs) moves the logits by about 1e-3 and so, over a few hundred characters, the text.
SAMPLE_TEMPERATURE, SAMPLE_SEED, SAMPLE_LENGTH = 0.8, 1337, 400
LICENSE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]*")  # an SPDX identifier (mit, cc-by-4.0, Apache-2.0)
MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]~|#])")  # what makes inline Markdown act: code, emphasis, links, tables
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
    config = {
        key: value
        for key, value in schema.encode(replace(saved, resume=None)).items()
        if key != "model" and key not in LOCAL_FIELDS
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in hf.folder_files(config, saved.weights, model_card(saved, folder.resolve().name, spdx)).items():
        writes.write_atomically(folder / name, data)


def card_sample(saved: Checkpoint) -> str:
    """The text `charrnn sample --temp 0.8 --seed 1337 --length 400 --precision fp32 --device cpu` writes (without its
    newline): on the CPU, since a GPU's logits differ from the CPU's in the last bits, and so in time the text."""
    model = model_from_checkpoint(saved)
    settings = SamplingSettings(
        length=SAMPLE_LENGTH, temperature=SAMPLE_TEMPERATURE, seed=SAMPLE_SEED, precision="fp32"
    )
    steps = generate(model, Vocab(saved.vocab), settings=settings)
    return "".join(char for (char,) in steps)


def fenced(text: str, info: str = "text") -> str:
    """`text` as a Markdown code block whose fence no run of backticks inside it can close."""
    fence = "`" * max(3, 1 + longest_backticks(text))
    return f"{fence}{info}\n{text}\n{fence}"


def code_span(text: str) -> str:
    """`text` as inline code whose fence no run of backticks inside it can close (padded, as CommonMark strips)."""
    longest = longest_backticks(text)
    pad = " " if longest else ""
    return f"{'`' * (longest + 1)}{pad}{text}{pad}{'`' * (longest + 1)}"


def longest_backticks(text: str) -> int:
    return max((len(run) for run in re.findall(r"`+", text)), default=0)


def markdown_text(text: str) -> str:
    """A name charrnn did not choose, shown as itself in Markdown: controls written out, HTML as entities (a
    name like `<img onerror=...>` stays text where renderers allow HTML), Markdown's punctuation escaped."""
    text = escaped(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return MARKDOWN_PUNCTUATION.sub(r"\\\1", text)


def license_id(text: str) -> str:
    """`export --license`'s value, checked: an SPDX identifier, as the Hub's `license:` field takes it (lower case)."""
    if not LICENSE_ID.fullmatch(text):
        raise SettingError(
            f"--license {escaped(text)!r} is not an SPDX license identifier; give one such as mit, "
            "apache-2.0 or cc-by-4.0"
        )
    return text.lower()


def named_corpus(saved: Checkpoint) -> Optional[corpora.Entry]:
    """The catalogue entry the run trained on, or None for the user's own text. A named corpus is one argument
    that is a catalogue name and no file (a path always wins, as `charrnn train` decides)."""
    arguments = saved.corpus_args or []
    if len(arguments) != 1 or Path(arguments[0]).name != saved.corpus or Path(arguments[0]).exists():
        return None
    return corpora.load_catalogue().get(saved.corpus)


def metadata(entry: Optional[corpora.Entry], spdx: Optional[str], model: str) -> str:
    """The card's YAML header: every value JSON-quoted, since a catalogue may come from a stranger."""
    fields = {
        "library_name": "charrnn",
        "pipeline_tag": "text-generation",
        "license": spdx or (entry and entry.license_id) or "other",
        "datasets": [entry.dataset] if entry and entry.dataset else None,
        "language": [entry.language] if entry and entry.language else None,
        "tags": ["charrnn", "character-level", model],
    }
    return "\n".join(f"{key}: {json.dumps(value)}" for key, value in fields.items() if value is not None)


def data_section(saved: Checkpoint, entry: Optional[corpora.Entry], spdx: Optional[str]) -> str:
    """Where the text came from, and under what license: the catalogue's for a named corpus; for the user's own
    text, the owner's (`--license`), or a request to state it."""
    if entry is not None:
        stated = f" The model is shared under {code_span(spdx)}." if spdx else ""
        return (
            f"The named corpus {code_span(entry.name)} (`charrnn train {entry.name}`): "
            f"{markdown_text(entry.description)}. Its license: {markdown_text(entry.license)}.{stated}"
        )
    corpus = markdown_text(saved.corpus or "an unnamed corpus")
    if spdx:
        return f"{corpus}, the owner's own text, under the license its owner states: {code_span(spdx)}."
    return (
        f"{corpus}, the owner's own text. **Its license is not stated.** If you own it, state it here and in "
        "`license:` above (`charrnn export RUN --format hf --license SPDX-ID` writes both), so that others "
        "know how they may use this model."
    )


def model_card(saved: Checkpoint, name: str, spdx: Optional[str] = None) -> str:
    """README.md for the folder `name`: what the model is, how well it did, a sample, how to use it, under what
    license. `spdx`: the license the owner states, an identifier `license_id` checked."""
    entry, folder = named_corpus(saved), shlex.quote(escaped(name))
    return f"""---
{metadata(entry, spdx, saved.model_config.model)}
---

# {markdown_text(name)}

{summary_section(saved)}

## Sample

{sample_section(saved, folder)}

## How to use it

{usage_section(folder)}

## Training data and license

{data_section(saved, entry, spdx)}

## Files

{files_section(saved.model_config.model)}
"""


def summary_section(saved: Checkpoint) -> str:
    """The card's opening paragraph: the network's shape, what it trained on and for how long, how well it did."""
    config = saved.model_config
    corpus = markdown_text(saved.corpus or "an unnamed corpus")
    bpc = best_bpc(saved.history, saved.val_loss)
    trained = f"{saved.step or 0:,} steps" + (f" ({format_duration(saved.elapsed)})" if saved.elapsed else "")
    shape = f"{config.layers} layer(s) of {config.hidden} units"
    return f"""A character-level {config.model.upper()} language model: {shape},
embedding {config.embed}, {saved.parameters:,} parameters, a vocabulary of {len(saved.vocab):,} characters.
Trained with charrnn on {corpus} for {trained}.
Validation: {"not measured" if bpc is None else f"{bpc:.3f} bits per character"}."""


def sample_section(saved: Checkpoint, folder: str) -> str:
    """The card's sample (`card_sample`) under the command that writes it again from the folder (shell-quoted)."""
    command = (
        f"charrnn sample -c {folder} --temp {SAMPLE_TEMPERATURE} --seed {SAMPLE_SEED} --length {SAMPLE_LENGTH} "
        "--precision fp32 --device cpu"
    )
    return (
        f"{code_span(command)} (temperature {SAMPLE_TEMPERATURE}, seed {SAMPLE_SEED}, no prime):\n\n"
        f"{fenced(card_sample(saved))}"
    )


def usage_section(folder: str) -> str:
    """How to install charrnn and use the folder (shell-quoted) with it."""
    usage = (
        f"{install_command()}\ncharrnn sample -c {folder} --temp 0.8 --length 500\n"
        f"charrnn eval -c {folder} held-out.txt"
    )
    return (
        f"{fenced(usage, 'sh')}\n\n"
        "`charrnn sample`, `eval`, `score`, `viz` and `info` read this folder wherever `-c` takes a checkpoint."
    )


def files_section(model: str) -> str:
    """What each of the folder's files holds, for a network of kind `model` (rnn, gru, lstm)."""
    return f"""- `config.json`: the network's shape, the vocabulary (a character's id is its index), the training
  settings and history, and `format_version`, the charrnn checkpoint format these fields follow.
  Its `weights_sha256` is the SHA-256 of the weights themselves (each tensor's name, in sorted order,
  dtype, shape and raw data), not of the file's bytes: a re-save with other metadata or order still verifies.
- `model.safetensors`: the weights as plain tensors, named and laid out as torch's `nn.{model.upper()}`
  (`rnn.*`), `nn.Embedding` (`embedding.weight`) and `nn.Linear` (`head.*`). safetensors holds no
  pickle, so loading this folder runs no code."""


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
    from onnx import helper, numpy_helper

    config = saved.model_config
    inputs, outputs = graph_signature(config)
    initializers = [
        numpy_helper.from_array(np.ascontiguousarray(array), name) for name, array in graph_constants(saved).items()
    ]
    name = f"charrnn_{config.model}_{config.layers}x{config.hidden}_step"
    graph = helper.make_graph(graph_nodes(config), name, inputs, outputs, initializers)
    model = helper.make_model(
        graph, producer_name="charrnn", opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION
    )
    helper.set_model_props(
        model,
        {
            "format": "charrnn-step",
            "format_version": GRAPH_FORMAT,
            "model": config.model,
            "layers": str(config.layers),
            "hidden": str(config.hidden),
            "vocab": json.dumps(saved.vocab),
        },
    )  # JSON: ASCII, so any character survives
    onnx.checker.check_model(model)
    return model


def state_names(config: ModelConfig) -> list[str]:
    """The recurrent state's parts, each [layers, batch, hidden]: the LSTM's cell beside every kind's hidden."""
    return ["hidden", "cell"] if config.model == "lstm" else ["hidden"]


def graph_signature(config: ModelConfig) -> tuple[list, list]:
    """The graph's inputs (`id` and the state) and outputs (`logits` and the state after the step)."""
    from onnx import TensorProto, helper

    state_shape: list[str | int] = [config.layers, "batch", config.hidden]
    states = state_names(config)
    inputs = [helper.make_tensor_value_info("id", TensorProto.INT64, ["batch"])]
    inputs += [helper.make_tensor_value_info(s, TensorProto.FLOAT, state_shape) for s in states]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", config.vocab_size])]
    outputs += [helper.make_tensor_value_info(f"{s}_out", TensorProto.FLOAT, state_shape) for s in states]
    return inputs, outputs


def graph_constants(saved: Checkpoint) -> dict[str, np.ndarray]:
    """The graph's initializers by name: the embedding, the head, every layer's weights and two index constants."""
    config = saved.model_config
    weights = {name: tensor.detach().float().numpy() for name, tensor in saved.weights.items()}
    constants = {
        "embedding": weights["embedding.weight"],
        "head_weight": weights["head.weight"],
        "head_bias": weights["head.bias"],
        "axis_0": np.array([0], np.int64),
        "one_per_layer": np.ones(config.layers, np.int64),
    }
    for layer in range(config.layers):
        constants.update(layer_weights(weights, config.model, layer))
    return constants


def graph_nodes(config: ModelConfig) -> list:
    """The step's operators in order: embed the id, split the state by layer, run each layer, gather the state
    back and apply the head."""
    from onnx import helper

    layers, states = range(config.layers), state_names(config)
    nodes = [
        helper.make_node("Gather", ["embedding", "id"], ["embedded"]),
        # ONNX's recurrent operators take [steps, batch, features]: here one step.
        helper.make_node("Unsqueeze", ["embedded", "axis_0"], ["layer_0_in"]),
    ]
    # [layers, batch, hidden] -> per layer [1, batch, hidden], what the operators take
    nodes += [helper.make_node("Split", [s, "one_per_layer"], [f"{s}_{n}" for n in layers]) for s in states]
    nodes += [layer_node(config, layer) for layer in layers]
    nodes += [
        helper.make_node("Concat", [f"layer_{n + 1}_in" for n in layers], ["hidden_out"], axis=0),
        helper.make_node("Squeeze", [f"layer_{config.layers}_in", "axis_0"], ["top"]),
        helper.make_node("Gemm", ["top", "head_weight", "head_bias"], ["logits"], transB=1),
    ]
    if config.model == "lstm":
        nodes.append(helper.make_node("Concat", [f"cell_out_{n}" for n in layers], ["cell_out"], axis=0))
    return nodes


def layer_node(config: ModelConfig, layer: int):
    """One layer's RNN, GRU or LSTM operator, reading the weights `layer_weights` names."""
    from onnx import helper

    states = state_names(config)
    inputs = [f"layer_{layer}_in", f"W_{layer}", f"R_{layer}", f"B_{layer}", ""] + [f"{s}_{layer}" for s in states]
    # With one step, the new hidden state [1, batch, hidden] is also the next layer's input.
    outputs = ["", f"layer_{layer + 1}_in"] + (["cell_out_" + str(layer)] if config.model == "lstm" else [])
    # torch's GRU: reset gate after W_hn h
    extra: dict[str, Any] = {"linear_before_reset": 1} if config.model == "gru" else {}
    return helper.make_node(OPERATORS[config.model], inputs, outputs, hidden_size=config.hidden, **extra)


def layer_weights(weights: dict[str, np.ndarray], kind: str, layer: int) -> dict[str, np.ndarray]:
    """One layer's weights in the layout of ONNX's operators: W [1, gates*hidden, input], R [1, gates*hidden,
    hidden], B [1, 2*gates*hidden] (the input biases, then the recurrent ones), gates in ONNX's order."""

    def reordered(name: str) -> np.ndarray:
        blocks = np.split(weights[f"rnn.{name}_l{layer}"], GATES[kind], axis=0)
        return np.concatenate([blocks[i] for i in GATE_ORDER[kind]], axis=0)[np.newaxis]

    return {
        f"W_{layer}": reordered("weight_ih"),
        f"R_{layer}": reordered("weight_hh"),
        f"B_{layer}": np.concatenate([reordered("bias_ih"), reordered("bias_hh")], axis=1),
    }


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
    fields = {"TITLE": html.escape(title), "ABOUT": html.escape(about), "MODEL": script_safe(model_description(saved))}
    template = resources.files("charrnn").joinpath(TEMPLATE).read_text(encoding="utf-8")
    # One pass, so that a field's own text (a corpus named "{{MODEL}}") is never filled in again.
    return re.sub(r"\{\{(\w+)\}\}", lambda found: fields[found.group(1)], template)


def model_description(saved: Checkpoint) -> dict:
    """Shape, vocabulary and every weight as base64 of little-endian float32, in torch's layout."""
    config, weights = saved.model_config, saved.weights
    # float32, so that greedy text is charrnn's: fp16 would halve the page, but moved a trained 1x256
    # LSTM's likeliest character at 14 of 100,000 positions of tiny-shakespeare, where computing in
    # float64 (as JavaScript does) moved none (benchmarks/html_page.py --checkpoint RUN --text FILE).
    tensors = {
        name: base64.b64encode(weights[name].float().contiguous().numpy().astype("<f4").tobytes()).decode("ascii")
        for name in parameter_shapes(config)
    }
    return {
        "model": config.model,
        "layers": config.layers,
        "hidden": config.hidden,
        "embed": config.embed,
        "vocab": saved.vocab,
        "tensors": tensors,
    }


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
