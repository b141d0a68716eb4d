"""The model card: the README.md of an exported folder, what a person reads before using the model."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Optional

from charrnn import corpora, install_command
from charrnn.config import SamplingSettings, format_duration
from charrnn.errors import SettingError, escaped
from charrnn.model import model_from_checkpoint
from charrnn.runs import best_bpc
from charrnn.sample import generate
from charrnn.schema import Checkpoint
from charrnn.vocab import Vocab

# The card's sample, and the command that writes it again: fp32 weights, since the default (fp16 on
# x86 CPUs) moves the logits by about 1e-3 and so, over a few hundred characters, the text.
SAMPLE_TEMPERATURE, SAMPLE_SEED, SAMPLE_LENGTH = 0.8, 1337, 400
LICENSE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]*")  # an SPDX identifier (mit, cc-by-4.0, Apache-2.0)
MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]~|#])")  # what makes inline Markdown act: code, emphasis, links, tables


def card_sample(saved: Checkpoint) -> str:
    """The text `charrnn sample --temp 0.8 --seed 1337 --length 400 --precision fp32 --device cpu` writes (without its
    newline): on the CPU, since a GPU's logits differ from the CPU's in the last bits, and so in time the text."""
    model = model_from_checkpoint(saved)
    settings = SamplingSettings(length=SAMPLE_LENGTH, temperature=SAMPLE_TEMPERATURE, seed=SAMPLE_SEED, precision="fp32")
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
        raise SettingError(f"--license {escaped(text)!r} is not an SPDX license identifier; give one such as mit, "
                           "apache-2.0 or cc-by-4.0")
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
    fields = {"library_name": "charrnn", "pipeline_tag": "text-generation",
              "license": spdx or (entry and entry.license_id) or "other",
              "datasets": [entry.dataset] if entry and entry.dataset else None,
              "language": [entry.language] if entry and entry.language else None,
              "tags": ["charrnn", "character-level", model]}
    return "\n".join(f"{key}: {json.dumps(value)}" for key, value in fields.items() if value is not None)


def data_section(saved: Checkpoint, entry: Optional[corpora.Entry], spdx: Optional[str]) -> str:
    """Where the text came from, and under what license: the catalogue's for a named corpus; for the user's own
    text, the owner's (`--license`), or a request to state it."""
    if entry is not None:
        stated = f" The model is shared under {code_span(spdx)}." if spdx else ""
        return (f"The named corpus {code_span(entry.name)} (`charrnn train {entry.name}`): "
                f"{markdown_text(entry.description)}. Its license: {markdown_text(entry.license)}.{stated}")
    corpus = markdown_text(saved.corpus or "an unnamed corpus")
    if spdx:
        return f"{corpus}, the owner's own text, under the license its owner states: {code_span(spdx)}."
    return (f"{corpus}, the owner's own text. **Its license is not stated.** If you own it, state it here and in "
            "`license:` above (`charrnn export RUN --format hf --license SPDX-ID` writes both), so that others "
            "know how they may use this model.")


def model_card(saved: Checkpoint, name: str, spdx: Optional[str] = None) -> str:
    """README.md for the folder `name`: what the model is, how well it did, a sample, how to use it, under what
    license. `spdx`: the license the owner states, an identifier `license_id` checked."""
    config, entry, parameters = saved.model_config, named_corpus(saved), saved.parameters
    corpus = markdown_text(saved.corpus or "an unnamed corpus")
    bpc = best_bpc(saved.history, saved.val_loss)
    trained = f"{saved.step or 0:,} steps" + (f" ({format_duration(saved.elapsed)})" if saved.elapsed else "")
    folder = shlex.quote(escaped(name))
    command = f"charrnn sample -c {folder} --temp {SAMPLE_TEMPERATURE} --seed {SAMPLE_SEED} --length {SAMPLE_LENGTH} --precision fp32 --device cpu"
    usage = f"{install_command()}\ncharrnn sample -c {folder} --temp 0.8 --length 500\ncharrnn eval -c {folder} held-out.txt"
    return f"""---
{metadata(entry, spdx, config.model)}
---

# {markdown_text(name)}

A character-level {config.model.upper()} language model: {config.layers} layer(s) of {config.hidden} units,
embedding {config.embed}, {parameters:,} parameters, a vocabulary of {len(saved.vocab):,} characters.
Trained with charrnn on {corpus} for {trained}.
Validation: {"not measured" if bpc is None else f"{bpc:.3f} bits per character"}.

## Sample

{code_span(command)} (temperature {SAMPLE_TEMPERATURE}, seed {SAMPLE_SEED}, no prime):

{fenced(card_sample(saved))}

## How to use it

{fenced(usage, "sh")}

`charrnn sample`, `eval`, `score`, `viz` and `info` read this folder wherever `-c` takes a checkpoint.

## Training data and license

{data_section(saved, entry, spdx)}

## Files

- `config.json`: the network's shape, the vocabulary (a character's id is its index), the training
  settings and history, and `format_version`, the charrnn checkpoint format these fields follow.
  Its `weights_sha256` is the SHA-256 of the weights themselves (each tensor's name, in sorted order,
  dtype, shape and raw data), not of the file's bytes: a re-save with other metadata or order still verifies.
- `model.safetensors`: the weights as plain tensors, named and laid out as torch's `nn.{config.model.upper()}`
  (`rnn.*`), `nn.Embedding` (`embedding.weight`) and `nn.Linear` (`head.*`). safetensors holds no
  pickle, so loading this folder runs no code.
"""
