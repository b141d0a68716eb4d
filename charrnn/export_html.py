"""A model as one web page: its weights and a sampler in JavaScript, in a single file that runs offline.

The page (`export_page.html`, beside this module) carries no library: its inference loop is ours,
about a hundred lines of plain JavaScript (embedding, the cell's step for every layer, the head,
softmax with temperature), so it opens from disk in any browser, with no network, no CDN and no server.
"""

from __future__ import annotations

import base64
import html
import json
import re
from importlib import resources
from pathlib import Path

from charrnn import writes
from charrnn.config import ModelConfig, from_dict
from charrnn.errors import CharRNNError
from charrnn.model import parameter_shapes

TEMPLATE = "export_page.html"


def write_html(payload: dict, path: Path, force: bool = False) -> None:
    """Write a checkpoint's model (a payload from `checkpoint.load_checkpoint`) as a self-contained page."""
    path = Path(path)
    if path.is_dir():
        raise CharRNNError(f"-o {path} is a folder; name the page to write, e.g. {path / 'model.html'}")
    writes.check_targets([path], force)
    path.parent.mkdir(parents=True, exist_ok=True)
    writes.write_atomically(path, render_html(payload).encode("utf-8"))


def render_html(payload: dict) -> str:
    """The page's text: the template with the model's description and weights filled in."""
    config = from_dict(ModelConfig, payload["model_config"])
    title = f"charrnn: a {config.layers}x{config.hidden} {config.model.upper()}"
    trained_on = f" trained on {payload['corpus']}" if payload.get("corpus") else ""
    about = f"A character-level language model{trained_on} ({len(payload['vocab'])} characters, {payload.get('step') or 0:,} steps)."
    fields = {"TITLE": html.escape(title), "ABOUT": html.escape(about),
              "MODEL": script_safe(model_description(payload, config))}
    template = resources.files("charrnn").joinpath(TEMPLATE).read_text(encoding="utf-8")
    # One pass, so that a field's own text (a corpus named "{{MODEL}}") is never filled in again.
    return re.sub(r"\{\{(\w+)\}\}", lambda found: fields[found.group(1)], template)


def model_description(payload: dict, config: ModelConfig) -> dict:
    """Shape, vocabulary and every weight as base64 of little-endian float32, in torch's layout."""
    weights = payload["model"]
    # float32, so that greedy text is charrnn's: fp16 would halve the page, but moved a trained 1x256
    # LSTM's likeliest character at 14 of 100,000 positions of tiny-shakespeare, where computing in
    # float64 (as JavaScript does) moved none (benchmarks/html_page.py --checkpoint RUN --text FILE).
    tensors = {name: base64.b64encode(weights[name].float().contiguous().numpy().astype("<f4").tobytes()).decode("ascii")
               for name in parameter_shapes(config)}
    return {"model": config.model, "layers": config.layers, "hidden": config.hidden, "embed": config.embed,
            "vocab": payload["vocab"], "tensors": tensors}


def script_safe(value: dict) -> str:
    """JSON that cannot end the <script> element holding it: every non-ASCII character and every '<'
    escaped (a vocabulary may hold "</script>" or "<!--"), which JSON.parse reads back unchanged."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).replace("<", "\\u003c")
