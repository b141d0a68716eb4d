"""Checkpoint files: written atomically, read safely (weights_only, archive sizes, CRCs), found from -c; what they
hold is charrnn.schema's."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Optional

import torch

from charrnn import hf, rundir, schema, writes
from charrnn.errors import CharRNNError, escaped
from charrnn.rundir import BEST, LAST, RUNS_DIR  # noqa: F401 (used as checkpoint.BEST, ... across the package)
from charrnn.schema import Checkpoint

# weights_only loading lets a crafted file run code before torch 2.6 (GHSA-53q9-r3pm-6pq6) and
# corrupt memory before 2.10 (GHSA-63cw-57p8-fm3p).
MINIMUM_TORCH = (2, 10)
# What zipfile raises on a damaged archive: names that are not UTF-8 (ValueError), an encrypted part
# (RuntimeError), an unknown method (NotImplementedError), as well as BadZipFile.
ARCHIVE_ERRORS = (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError, NotImplementedError)


def save_checkpoint(checkpoint: Checkpoint, path: Path) -> None:
    """Write through a synced temporary, then rename: a crash leaves the old file or the new one, never half of one."""
    path = Path(path)
    try:
        with writes.written_atomically(path, durable=True) as f:
            torch.save(schema.encode(checkpoint), f)
    except (OSError, RuntimeError) as error:  # torch reports a failed write (disk full) as RuntimeError
        raise unwritable(path, error) from None


def unwritable(path: Path, error: Exception) -> CharRNNError:
    """The line for a run's file that could not be written, with the advice that works for what the run holds."""
    reason = error.strerror if isinstance(error, OSError) and error.strerror else "the write failed; is the disk full?"
    if (path.parent / LAST).is_file():
        then = (
            f"the checkpoints already in {path.parent} are intact; free some space or make the directory "
            "writable, then continue with --resume"
        )
    else:
        then = "free some space or make the directory writable, then train again (or choose another --out)"
    return CharRNNError(f"cannot write {path} ({reason}); {then}")


def load_checkpoint(path: Path) -> Checkpoint:
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
        raise CharRNNError(
            f"{path}: corrupted ({escaped(damaged)} does not match its checksum); "
            "use another checkpoint, e.g. the run's best.pt or last.pt"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore"
            )  # a crafted pickle can make torch warn (an odd protocol): the error line is enough
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch names the global in two wordings: "Unsupported global: GLOBAL builtins.exec was not an allowed
        # global ..." and, for the modules it blocks outright (os, sys), "... unsupported GLOBAL posix.system whose
        # module posix is blocked" (torch 2.13).
        found = re.search(r"\bGLOBAL ([\w.]+)", str(error))
        what = (
            f"it would call {found.group(1)} when unpickled" if found else "it holds more than tensors and plain data"
        )
        raise refused(path, f"{what}, which could run code") from None
    except Exception:
        raise unreadable(path) from None
    return schema.decode(path, payload, path.stat().st_size)


def weights_sha256(path: Path) -> str:
    """The SHA-256 of the file that holds a checkpoint's weights: the .pt file, or an exported folder's
    model.safetensors."""
    path, digest = Path(path), hashlib.sha256()
    with open(path / hf.WEIGHTS if hf.is_folder(path) else path, "rb") as weights:
        while block := weights.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def load_with_sha256(path: Path, tries: int = 3) -> tuple[Checkpoint, str]:
    """The payload and the SHA-256 of the file it was read from. A training run replaces best.pt as it goes
    (a rename), so the file is hashed before and after reading: a change between means another read."""
    digest = weights_sha256(path)
    for _ in range(tries):
        payload = load_checkpoint(path)
        digest, before = weights_sha256(path), digest
        if digest == before:
            return payload, digest
    raise CharRNNError(f"{path}: replaced {tries} times while it was read (a run is training into it); try again")


def load_folder(folder: Path) -> Checkpoint:
    """A shareable folder's checkpoint (config.json and model.safetensors: no pickle), checked as a .pt file's."""
    return schema.decode(folder, hf.read_folder(folder), hf.weights_bytes(folder))


def require_safe_torch() -> None:
    """Refuse to unpickle anything with a torch whose weights_only loading a crafted file can get past."""
    found = re.match(r"(\d+)\.(\d+)", torch.__version__)
    if found is None or tuple(int(part) for part in found.groups()) < MINIMUM_TORCH:
        raise CharRNNError(
            f"torch {torch.__version__} cannot load checkpoints safely (a crafted one could run code); "
            "upgrade it: pip install 'torch>=2.10'"
        )


def refused(path: Path, reason: str) -> CharRNNError:
    return CharRNNError(
        f"{path}: refused to load: {reason}; "
        "charrnn loads only the checkpoints it writes: use one from a source you trust"
    )


def unreadable(path: Path) -> CharRNNError:
    return CharRNNError(
        f"{path}: not a readable checkpoint (truncated or corrupted); use another, e.g. the run's best.pt or last.pt"
    )


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
        raise refused(
            path, "it holds compressed parts, which charrnn never writes and which could inflate to gigabytes"
        )
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


def newest_run(runs_dir: Path = RUNS_DIR) -> Optional[Path]:
    """The run directory whose checkpoints were written most recently."""
    return max(rundir.run_directories(runs_dir), key=rundir.last_written, default=None)


def resolve_checkpoint(argument: Optional[str], prefer: str = BEST) -> Path:
    """A checkpoint path from -c (a .pt file, a run directory or an exported folder), $CHARRNN_CHECKPOINT, or the
    newest run."""
    if argument is None:
        argument = os.environ.get("CHARRNN_CHECKPOINT") or None
    if argument is None:
        run = newest_run()
        if run is None:
            raise CharRNNError(
                f"no trained run found under ./{RUNS_DIR}; train one with `charrnn train` or pass -c PATH"
            )
        argument = str(run)
    path = Path(argument)
    if path.is_dir():
        for name in (prefer, BEST, LAST):
            if (path / name).is_file():
                return path / name
        if hf.is_folder(path):
            return path
        raise CharRNNError(
            f"{path}: no {BEST} or {LAST} (nor {hf.CONFIG} and {hf.WEIGHTS}) in this directory; "
            "pass a run directory, an exported folder or a .pt file"
        )
    return path
