"""Checkpoints: written atomically, read safely (weights_only), with a format version."""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Optional

import torch

from charrnn.errors import CharRNNError

FORMAT_VERSION = 1
BEST, LAST = "best.pt", "last.pt"
RUNS_DIR = Path("runs")
REQUIRED_KEYS = ("model", "model_config", "train_config", "vocab")  # what every command reads


def save_checkpoint(payload: dict, path: Path) -> None:
    """Write to a temporary file, fsync, then rename: a crash leaves the old file or the new one, never half of one."""
    path = Path(path)
    payload = {"format_version": FORMAT_VERSION, **payload}
    remove_stale_temporaries(path)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise unwritable(path, error) from None
    try:
        os.fchmod(handle, 0o666 & ~current_umask())  # mkstemp's 0600 would hide checkpoints from the user's group
        with os.fdopen(handle, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except (OSError, RuntimeError) as error:  # torch reports a failed write (disk full) as RuntimeError
        Path(temporary).unlink(missing_ok=True)
        raise unwritable(path, error) from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    sync_directory(path.parent)


def unwritable(path: Path, error: Exception) -> CharRNNError:
    reason = error.strerror if isinstance(error, OSError) and error.strerror else "the write failed; is the disk full?"
    return CharRNNError(f"cannot write {path} ({reason}); the checkpoints already in {path.parent} are intact; "
                        "free some space or make the directory writable, then continue with --resume")


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_stale_temporaries(path: Path) -> None:
    """A process killed mid-write (SIGKILL, power loss) leaves its temporary file behind; sweep it up."""
    try:
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
    except OSError:
        pass  # the write that follows will say what is wrong with the directory


def sync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint on the CPU; weights_only means a stranger's file cannot run code."""
    path = Path(path)
    if not path.is_file():
        raise CharRNNError(f"{path}: no such checkpoint; train one with `charrnn train` or pass -c PATH")
    damaged = damaged_member(path)
    if damaged is not None:
        raise CharRNNError(f"{path}: corrupted ({damaged} does not match its checksum); "
                           "use another checkpoint, e.g. the run's best.pt or last.pt")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        what = f"it would call {found.group(1)} when unpickled" if found else "it holds more than tensors and plain data"
        raise CharRNNError(
            f"{path}: refused to load: {what}, which could run code; "
            "charrnn loads only the checkpoints it writes: use one from a source you trust"
        ) from None
    except Exception:
        raise CharRNNError(f"{path}: not a readable checkpoint (truncated or corrupted); use another, e.g. the run's best.pt or last.pt") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("format_version"), int) \
            or any(key not in payload for key in REQUIRED_KEYS):
        raise CharRNNError(f"{path}: not a charrnn checkpoint; pass one that `charrnn train` wrote")
    if payload["format_version"] > FORMAT_VERSION:
        raise CharRNNError(
            f"{path}: checkpoint format {payload['format_version']} is newer than this charrnn understands "
            f"({FORMAT_VERSION}); upgrade charrnn"
        )
    return payload


def damaged_member(path: Path) -> Optional[str]:
    """The first part of the checkpoint archive whose bytes changed since it was written (CRC-32), if any.

    torch.load does not check, so a flipped bit in the weights would load silently as a different model.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError):
        return None  # not a zip archive, or unreadable: torch.load says which


def newest_run(runs_dir: Path = RUNS_DIR) -> Optional[Path]:
    """The run directory whose checkpoints were written most recently."""
    candidates = [p for p in runs_dir.glob("*/*.pt") if p.name in (BEST, LAST)] if runs_dir.is_dir() else []
    if not candidates:
        return None
    return max(candidates, key=lambda p: p.stat().st_mtime).parent


def resolve_checkpoint(argument: Optional[str], prefer: str = BEST) -> Path:
    """A checkpoint path from -c (a .pt file or a run directory), $CHARRNN_CHECKPOINT, or the newest run."""
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
        raise CharRNNError(f"{path}: no {BEST} or {LAST} in this directory; pass a run directory or a .pt file")
    return path
