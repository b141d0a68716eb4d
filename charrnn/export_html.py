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
from charrnn.errors import CharRNNError
from charrnn.model import parameter_shapes
from charrnn.schema import Checkpoint

TEMPLATE = "export_page.html"


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
