"""A model outside charrnn: `charrnn export RUN --format F -o PATH`.

Every format is one function from a checked checkpoint payload to files at PATH, listed in FORMATS;
the command's choices are its keys, so a new format is one function and one line here.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Callable, Optional

from charrnn import checkpoint, hf, schema, writes
from charrnn.card import license_id, model_card
from charrnn.config import EXPORT_FORMATS
from charrnn.errors import CharRNNError, SettingError
from charrnn.export_html import write_html
from charrnn.onnx_graph import one_step_model
from charrnn.plot import read_history
from charrnn.schema import Checkpoint

# Paths of the machine that trained: meaningless elsewhere, and nobody else's business.
LOCAL_FIELDS = ("corpus_args",)


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
    """The one-step graph (see `charrnn.onnx_graph`) as one .onnx file."""
    if path.is_dir():
        raise CharRNNError(f"-o {path} is a folder; name the file to write, e.g. {path / 'model.onnx'}")
    writes.check_targets([path], force)
    path.parent.mkdir(parents=True, exist_ok=True)
    writes.write_atomically(path, one_step_model(saved).SerializeToString())


FORMATS: dict[str, Callable[[Checkpoint, Path, bool], None]] = {
    "hf": write_hf,
    "onnx": write_onnx,
    "html": write_html,  # one self-contained web page (see `charrnn.export_html`)
}
assert tuple(FORMATS) == EXPORT_FORMATS, "charrnn.config.EXPORT_FORMATS lists the CLI's choices"
