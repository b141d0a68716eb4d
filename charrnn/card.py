"""The model card: the README.md of an exported folder, what a person reads before using the model."""

from __future__ import annotations

import re
import shlex

from charrnn import install_command
from charrnn.config import ModelConfig, from_dict
from charrnn.errors import escaped
from charrnn.model import model_from_checkpoint
from charrnn.plot import best_bpc
from charrnn.progress import format_duration
from charrnn.sample import generate
from charrnn.vocab import Vocab

# The card's sample, and the command that writes it again: fp32 weights, since the default (fp16 on
# x86 CPUs) moves the logits by about 1e-3 and so, over a few hundred characters, the text.
SAMPLE_TEMPERATURE, SAMPLE_SEED, SAMPLE_LENGTH = 0.8, 1337, 400


def card_sample(payload: dict) -> str:
    """The text `charrnn sample --temp 0.8 --seed 1337 --length 400 --precision fp32 --device cpu` writes (without its
    newline): on the CPU, since a GPU's logits differ from the CPU's in the last bits, and so in time the text."""
    model = model_from_checkpoint(payload)
    steps = generate(model, Vocab(payload["vocab"]), length=SAMPLE_LENGTH, temperature=SAMPLE_TEMPERATURE,
                     seed=SAMPLE_SEED, precision="fp32")
    return "".join(char for (char,) in steps)


def fenced(text: str) -> str:
    """`text` as a Markdown code block whose fence no run of backticks inside it can close."""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return f"{fence}text\n{text}\n{fence}"


def model_card(payload: dict, name: str) -> str:
    """README.md for the folder `name`: what the model is, how well it did, a sample, how to use it."""
    config = from_dict(ModelConfig, payload["model_config"])
    parameters = sum(tensor.numel() for tensor in payload["model"].values())
    corpus = escaped(payload.get("corpus") or "an unnamed corpus")
    bpc = best_bpc(payload.get("history") or [], payload.get("val_loss"))
    trained = f"{payload.get('step') or 0:,} steps" + (f" ({format_duration(payload['elapsed'])})" if payload.get("elapsed") else "")
    folder = shlex.quote(escaped(name))
    command = f"charrnn sample -c {folder} --temp {SAMPLE_TEMPERATURE} --seed {SAMPLE_SEED} --length {SAMPLE_LENGTH} --precision fp32 --device cpu"
    return f"""---
library_name: charrnn
pipeline_tag: text-generation
tags: [charrnn, character-level, {config.model}]
---

# {escaped(name)}

A character-level {config.model.upper()} language model: {config.layers} layer(s) of {config.hidden} units,
embedding {config.embed}, {parameters:,} parameters, a vocabulary of {len(payload['vocab']):,} characters.
Trained with charrnn on {corpus} for {trained}.
Validation: {"not measured" if bpc is None else f"{bpc:.3f} bits per character"}.

## Sample

`{command}` (temperature {SAMPLE_TEMPERATURE}, seed {SAMPLE_SEED}, no prime):

{fenced(card_sample(payload))}

## How to use it

```
{install_command()}
charrnn sample -c {folder} --temp 0.8 --length 500
charrnn eval -c {folder} held-out.txt
```

`charrnn sample`, `eval`, `score`, `viz` and `info` read this folder wherever `-c` takes a checkpoint.

## Files

- `config.json`: the network's shape, the vocabulary (a character's id is its index), the training
  settings and history, and `format_version`, the charrnn checkpoint format these fields follow.
- `model.safetensors`: the weights as plain tensors, named and laid out as torch's `nn.{config.model.upper()}`
  (`rnn.*`), `nn.Embedding` (`embedding.weight`) and `nn.Linear` (`head.*`). safetensors holds no
  pickle, so loading this folder runs no code.
"""
