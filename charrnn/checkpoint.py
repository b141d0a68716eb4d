"""Checkpoints: written atomically, read safely (weights_only), with a format version."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import types
import typing
import warnings
import zipfile
from pathlib import Path
from typing import Optional

import torch

from charrnn import hf, layout, writes
from charrnn.config import ModelConfig, TrainConfig, from_dict
from charrnn.errors import CharRNNError, escaped
from charrnn.layout import BEST, LAST, RUNS_DIR  # noqa: F401 (used as checkpoint.BEST, ... across the package)
from charrnn.model import parameter_shapes

FORMAT_VERSION = 1
REQUIRED_KEYS = ("model", "model_config", "train_config", "vocab")  # what every command reads
# weights_only loading lets a crafted file run code before torch 2.6 (GHSA-53q9-r3pm-6pq6) and
# corrupt memory before 2.10 (GHSA-63cw-57p8-fm3p).
MINIMUM_TORCH = (2, 10)
# The other fields commands read, and what each may hold: a stranger's file can put anything anywhere.
FIELDS = {
    "vocab": str, "corpus": Optional[str], "corpus_args": Optional[list[str]], "encoding": Optional[str],
    "errors": Optional[str], "step": Optional[int], "val_loss": Optional[float], "elapsed": Optional[float],
    "device": Optional[str], "backend": Optional[str], "precision": Optional[str],
    "history": Optional[list[dict]], "init_from": Optional[dict],
}
HISTORY_NUMBERS = ("step", "train_loss", "val_loss")  # what `info` plots and compares
# What zipfile raises on a damaged archive: names that are not UTF-8 (ValueError), an encrypted part
# (RuntimeError), an unknown method (NotImplementedError), as well as BadZipFile.
ARCHIVE_ERRORS = (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError, NotImplementedError)


def save_checkpoint(payload: dict, path: Path) -> None:
    """Write through a synced temporary, then rename: a crash leaves the old file or the new one, never half of one."""
    path = Path(path)
    payload = {"format_version": FORMAT_VERSION, **payload}
    try:
        with writes.written_atomically(path, durable=True) as f:
            torch.save(payload, f)
    except (OSError, RuntimeError) as error:  # torch reports a failed write (disk full) as RuntimeError
        raise unwritable(path, error) from None


def unwritable(path: Path, error: Exception) -> CharRNNError:
    """The line for a run's file that could not be written, with the advice that works for what the run holds."""
    reason = error.strerror if isinstance(error, OSError) and error.strerror else "the write failed; is the disk full?"
    if (path.parent / LAST).is_file():
        then = f"the checkpoints already in {path.parent} are intact; free some space or make the directory " \
               "writable, then continue with --resume"
    else:
        then = "free some space or make the directory writable, then train again (or choose another --out)"
    return CharRNNError(f"cannot write {path} ({reason}); {then}")


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint on the CPU, checked so that a stranger's file cannot run code (weights_only),
    take the machine (sizes are checked before anything is inflated or allocated), or hold garbage.
    `path` may also be a folder that `charrnn export --format hf` wrote: its payload gets the same checks."""
    path = Path(path)
    if hf.is_folder(path):
        return load_folder(path)
    require_safe_torch()
    if not path.is_file():
        raise CharRNNError(f"{path}: no such checkpoint; train one with `charrnn train` or pass -c PATH")
    check_archive(path)
    damaged = damaged_member(path)
    if damaged is not None:
        raise CharRNNError(f"{path}: corrupted ({escaped(damaged)} does not match its checksum); "
                           "use another checkpoint, e.g. the run's best.pt or last.pt")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a crafted pickle can make torch warn (an odd protocol): the error line is enough
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch names the global in two wordings: "Unsupported global: GLOBAL builtins.exec was not an allowed
        # global ..." and, for the modules it blocks outright (os, sys), "... unsupported GLOBAL posix.system whose
        # module posix is blocked" (torch 2.13).
        found = re.search(r"\bGLOBAL ([\w.]+)", str(error))
        what = f"it would call {found.group(1)} when unpickled" if found else "it holds more than tensors and plain data"
        raise refused(path, f"{what}, which could run code") from None
    except Exception:
        raise unreadable(path) from None
    check_payload(path, payload)
    return payload


def weights_sha256(path: Path) -> str:
    """The SHA-256 of the file that holds a checkpoint's weights: the .pt file, or an exported folder's
    model.safetensors."""
    path, digest = Path(path), hashlib.sha256()
    with open(path / hf.WEIGHTS if hf.is_folder(path) else path, "rb") as weights:
        while block := weights.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def load_with_sha256(path: Path, tries: int = 3) -> tuple[dict, str]:
    """The payload and the SHA-256 of the file it was read from. A training run replaces best.pt as it goes
    (a rename), so the file is hashed before and after reading: a change between means another read."""
    digest = weights_sha256(path)
    for _ in range(tries):
        payload = load_checkpoint(path)
        digest, before = weights_sha256(path), digest
        if digest == before:
            return payload, digest
    raise CharRNNError(f"{path}: replaced {tries} times while it was read (a run is training into it); try again")


def load_folder(folder: Path) -> dict:
    """A shareable folder's payload (config.json and model.safetensors: no pickle), checked as a .pt file's."""
    payload = hf.read_folder(folder)
    check_payload(folder, payload, size=hf.weights_bytes(folder))
    return payload


def require_safe_torch() -> None:
    """Refuse to unpickle anything with a torch whose weights_only loading a crafted file can get past."""
    found = re.match(r"(\d+)\.(\d+)", torch.__version__)
    if found is None or tuple(int(part) for part in found.groups()) < MINIMUM_TORCH:
        raise CharRNNError(f"torch {torch.__version__} cannot load checkpoints safely (a crafted one could run code); "
                           "upgrade it: pip install 'torch>=2.10'")


def refused(path: Path, reason: str) -> CharRNNError:
    return CharRNNError(f"{path}: refused to load: {reason}; "
                        "charrnn loads only the checkpoints it writes: use one from a source you trust")


def unreadable(path: Path) -> CharRNNError:
    return CharRNNError(f"{path}: not a readable checkpoint (truncated or corrupted); use another, e.g. the run's best.pt or last.pt")


def malformed(path: Path, problem: str) -> CharRNNError:
    return CharRNNError(f"{path}: not a valid charrnn checkpoint: {problem}; pass one that `charrnn train` wrote")


def check_archive(path: Path) -> None:
    """Refuse, from the zip's central directory alone, an archive that would cost more to read than it weighs.

    torch.save stores every part uncompressed, once. A compressed part (a few hundred KB can inflate to
    gigabytes), or parts whose sizes add up to more than the file (entries that overlap, read again and
    again), is a crafted file; torch.load and the checksum test would read all of it.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            parts = archive.infolist()
    except ARCHIVE_ERRORS:  # charrnn writes zip archives, nothing else
        raise unreadable(path) from None
    if any(part.compress_type != zipfile.ZIP_STORED or part.compress_size != part.file_size for part in parts):
        raise refused(path, "it holds compressed parts, which charrnn never writes and which could inflate to gigabytes")
    declared, size = sum(part.file_size for part in parts), path.stat().st_size
    if declared > size or any(part.header_offset + part.file_size > size for part in parts):
        raise refused(path, f"its parts declare {declared:,} bytes in a file of {size:,}")


def damaged_member(path: Path) -> Optional[str]:
    """The first part of the checkpoint archive whose bytes changed since it was written (CRC-32), if any.

    torch.load does not check, so a flipped bit in the weights would load silently as a different model.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except ARCHIVE_ERRORS:  # a part's own header contradicts the directory (another name, encrypted, ...)
        raise unreadable(path) from None


def check_payload(path: Path, payload, size: Optional[int] = None) -> None:
    """Every field a command reads is there and of the type it expects, and the weights are the network the
    config describes: checked once, here, so a stranger's file fails with one line, not deep in a command.
    `size`: the bytes that hold the weights (default: the whole file at `path`)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("format_version"), int) \
            or any(key not in payload for key in REQUIRED_KEYS):
        raise CharRNNError(f"{path}: not a charrnn checkpoint; pass one that `charrnn train` wrote")
    if payload["format_version"] > FORMAT_VERSION:
        raise CharRNNError(
            f"{path}: checkpoint format {payload['format_version']} is newer than this charrnn understands "
            f"({FORMAT_VERSION}); upgrade charrnn"
        )
    check_fields(path, payload)
    config = stored_config(path, payload, "model_config", ModelConfig)
    stored_config(path, payload, "train_config", TrainConfig)
    if config.vocab_size != len(payload["vocab"]):
        raise malformed(path, f"its model_config has vocab_size {config.vocab_size} for {len(payload['vocab'])} characters")
    check_weights(path, payload["model"], config, path.stat().st_size if size is None else size)


def check_fields(path: Path, payload: dict) -> None:
    """The plain fields (FIELDS): vocabulary, corpus, history, where a fine-tuned run started."""
    for key, kind in FIELDS.items():
        if not fits(payload.get(key), kind):
            raise malformed(path, f"its {key} has the wrong type ({type(payload[key]).__name__})")
    if not payload["vocab"]:
        raise malformed(path, "its vocab is empty")
    for key in ("history", "init_from"):  # `info --json` prints them whole
        if not is_plain(payload.get(key)):
            raise malformed(path, f"its {key} holds more than plain data")
    if any(not fits(row.get(name), Optional[float]) for row in payload.get("history") or () for name in HISTORY_NUMBERS):
        raise malformed(path, "its history has a step or loss that is not a number")
    if payload.get("init_from") is not None and not isinstance(payload["init_from"].get("path"), str):
        raise malformed(path, "its init_from names no checkpoint")


def stored_config(path: Path, payload: dict, key: str, cls):
    """A config dataclass from its stored dict: every field of its declared type, and in range."""
    values = payload[key]
    if not isinstance(values, dict):
        raise malformed(path, f"its {key} is a {type(values).__name__}, not a table of settings")
    for name, kind in typing.get_type_hints(cls).items():
        if name in values and not fits(values[name], kind):
            raise malformed(path, f"its {key} has {name} of the wrong type ({type(values[name]).__name__})")
    config = from_dict(cls, values)
    try:
        config.validate()
    except CharRNNError as error:
        raise malformed(path, f"its {key} is out of range ({error})") from None
    return config


def fits(value, kind) -> bool:
    """Whether a stored value has a declared type (Optional[...], list[...]); an int fits a float, a bool no number."""
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, getattr(types, "UnionType", typing.Union)):  # Optional[int]; int | None (3.10+)
        return any(fits(value, argument) for argument in arguments)
    if origin is list:
        return isinstance(value, list) and all(fits(item, arguments[0]) for item in value)
    if isinstance(value, bool) or kind is bool:
        return isinstance(value, bool) and kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def is_plain(value, depth: int = 4) -> bool:
    """JSON-like data (what `info --json` can print), nested no deeper than `depth`."""
    if value is None or isinstance(value, (str, int, float)):
        return True
    if depth == 0:
        return False
    if isinstance(value, list):
        return all(is_plain(item, depth - 1) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and is_plain(item, depth - 1) for key, item in value.items())
    return False


def check_weights(path: Path, weights, config: ModelConfig, file_size: int) -> None:
    """Floating-point tensors whose bytes are in the file, named and shaped as the config's network: then
    building that network allocates no more than the file holds."""
    if not isinstance(weights, dict) or not all(isinstance(name, str) and is_float_array(tensor)
                                                for name, tensor in weights.items()):
        raise malformed(path, "its model is not a table of floating-point tensors")
    # One stored number can stand for any number of elements (a view with stride 0): count what they claim.
    if sum(tensor.numel() * tensor.element_size() for tensor in weights.values()) > file_size:
        raise malformed(path, "its tensors claim more elements than the file holds")
    if config.layers > len(weights):  # every layer has weights: no need to list a billion of them to see it
        raise malformed(path, f"its model_config has {config.layers} layers, more than its weights have")
    expected, actual = parameter_shapes(config), {name: tuple(tensor.shape) for name, tensor in weights.items()}
    if actual != expected:
        raise malformed(path, f"its weights do not match its model_config ({difference(expected, actual)})")


def is_float_array(value) -> bool:
    """A dense floating-point tensor with its data on the CPU (not a meta tensor, which has none)."""
    return (isinstance(value, torch.Tensor) and value.device.type == "cpu" and value.layout == torch.strided
            and value.is_floating_point())


def difference(expected: dict, actual: dict) -> str:
    """The first weight, by name, that is missing, extra, or of another shape."""
    name = min(name for name in expected.keys() | actual.keys() if expected.get(name) != actual.get(name))
    if name not in actual:
        return f"{name} is missing"
    if name not in expected:
        return f"{name[:60]!r} is not part of the network"
    return f"{name} is {list(actual[name])} where the config needs {list(expected[name])}"


def newest_run(runs_dir: Path = RUNS_DIR) -> Optional[Path]:
    """The run directory whose checkpoints were written most recently."""
    return max(layout.run_directories(runs_dir), key=layout.last_written, default=None)


def resolve_checkpoint(argument: Optional[str], prefer: str = BEST) -> Path:
    """A checkpoint path from -c (a .pt file, a run directory or an exported folder), $CHARRNN_CHECKPOINT, or the
    newest run."""
    if argument is None:
        argument = os.environ.get("CHARRNN_CHECKPOINT") or None
    if argument is None:
        run = newest_run()
        if run is None:
            raise CharRNNError(f"no trained run found under ./{RUNS_DIR}; train one with `charrnn train` or pass -c PATH")
        argument = str(run)
    path = Path(argument)
    if path.is_dir():
        for name in (prefer, BEST, LAST):
            if (path / name).is_file():
                return path / name
        if hf.is_folder(path):
            return path
        raise CharRNNError(f"{path}: no {BEST} or {LAST} (nor {hf.CONFIG} and {hf.WEIGHTS}) in this directory; "
                           "pass a run directory, an exported folder or a .pt file")
    return path
