"""The shareable folder, in the Hugging Face Hub's layout: config.json, model.safetensors, README.md.

config.json holds what a checkpoint holds besides the weights (shape, vocabulary, training summary,
format version); model.safetensors holds the weights as plain tensors behind a JSON header, with no
pickle, so reading a stranger's folder runs no code. This module reads and writes the files;
`checkpoint.load_checkpoint` checks what they hold exactly as it checks a .pt file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from charrnn.errors import CharRNNError

CONFIG, WEIGHTS, CARD = "config.json", "model.safetensors", "README.md"
MODEL_TYPE = "charrnn"  # the Hub's name for the architecture, read by whoever browses the folder
# The weights' SHA-256, in config.json: as a .pt file's CRCs do, it turns a flipped bit into an error
# rather than another model. It hashes the tensors, not the file (see weights_sha256), so a re-save by
# safetensors (other metadata, other order) still verifies. A folder made by other tools may leave it out.
CHECKSUM = "weights_sha256"
# A vocabulary of every Unicode character and a history of a long run are each a few MB as JSON; a
# config.json past this is not one charrnn wrote, and reading it would only cost memory.
MAX_CONFIG_BYTES = 64 << 20


def is_folder(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG).is_file() and (path / WEIGHTS).is_file()


def read_folder(folder: Path) -> dict:
    """The checkpoint payload a folder holds: config.json's fields and the weights, not yet checked."""
    config = read_config(folder / CONFIG)
    data = (folder / WEIGHTS).read_bytes()
    try:
        weights = load(data)
    except (SafetensorError, OSError, ValueError, RuntimeError):  # safetensors checks the header and offsets
        raise CharRNNError(
            f"{folder / WEIGHTS}: not a readable safetensors file (truncated or corrupted); export the folder again"
        ) from None
    expected = config.get(CHECKSUM) if isinstance(config, dict) else None
    # Folders exported before 0.2 hashed the file's bytes: they still verify, by the hash they were given.
    if expected is not None and expected not in (weights_sha256(weights), hashlib.sha256(data).hexdigest()):
        raise CharRNNError(
            f"{folder / WEIGHTS}: corrupted (its tensors do not match the {CHECKSUM} in {CONFIG}); "
            "export the folder again"
        )
    return {**config, "model": weights} if isinstance(config, dict) else config


def weights_sha256(weights: dict[str, torch.Tensor]) -> str:
    """The SHA-256 of what the weights are: each tensor's name (in sorted order), dtype, shape and raw bytes,
    each part length-prefixed so that no two different tables hash alike. The file's layout does not count."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        tensor = weights[name].detach().cpu().contiguous()
        header = json.dumps([name, str(tensor.dtype).removeprefix("torch."), list(tensor.shape)]).encode("utf-8")
        data = tensor.reshape(-1).view(torch.uint8).numpy().data  # raw bytes, little-endian as safetensors stores them
        for part in (header, data):
            digest.update(len(part).to_bytes(8, "little"))
            digest.update(part)
    return digest.hexdigest()


def read_config(path: Path):
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise CharRNNError(
            f"{path}: {path.stat().st_size:,} bytes, more than a charrnn config.json holds; "
            "pass a folder that `charrnn export --format hf` wrote"
        )
    try:
        return json.loads(path.read_text("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: brackets nested too deep
        raise CharRNNError(f"{path}: not valid JSON; pass a folder that `charrnn export --format hf` wrote") from None


def weights_bytes(folder: Path) -> int:
    """What the weights' file weighs: their tensors may claim no more (see checkpoint.check_weights)."""
    return (folder / WEIGHTS).stat().st_size


def folder_files(config: dict, weights: dict[str, torch.Tensor], card: str) -> dict[str, bytes]:
    """The folder's files, by name, as bytes."""
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in weights.items()}
    data = save(tensors, metadata={"format": "pt"})  # "pt": the Hub's tag for tensors in torch's layout
    config = {"model_type": MODEL_TYPE, CHECKSUM: weights_sha256(tensors), **config}
    return {
        CONFIG: (json.dumps(config, indent=2) + "\n").encode("ascii"),
        WEIGHTS: data,
        CARD: card.encode("utf-8", "replace"),  # a vocabulary may hold lone surrogates, which UTF-8 cannot
    }
