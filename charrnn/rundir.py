"""A run directory has one owner: the training process that holds its lock.

The lock is an OS lock (flock) on a file inside the directory, so the kernel releases it when the
process ends, however it ends: a run killed with SIGKILL leaves no stale lock behind. Readers
(`sample`, `eval`) take no lock: checkpoints are replaced by rename, so they always read a whole one.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path
from typing import Iterator

from charrnn import cache, checkpoint
from charrnn.errors import CharRNNError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not protected against a second writer
    fcntl = None

LOCK = ".lock"

_held: dict[Path, int] = {}  # run directory -> descriptor of its lock file, for the life of this process
_created: set[Path] = set()  # run directories this process made (a run that never starts removes them)


def unwritable(folder: Path, error: OSError) -> CharRNNError:
    return CharRNNError(f"cannot write to the run directory {folder} ({error.strerror or error}); choose another with --out")


def require_writable(folder: Path) -> None:
    """Create and remove a file: a directory whose files are writable may still refuse new ones (chattr +i)."""
    probe = cache.temporary_name(folder / "write-test")
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise unwritable(folder, error) from None


class Busy(CharRNNError):
    """Another process trains in this run directory."""


def has_run(folder: Path) -> bool:
    return (folder / checkpoint.LAST).exists() or (folder / checkpoint.BEST).exists()


def holder(lock_file: Path) -> str:
    try:
        return lock_file.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def lock(folder: Path) -> None:
    """Hold `folder`'s lock until this process ends; raise Busy, naming the holder's pid, if another has it."""
    key = folder.resolve()
    if key in _held:
        return
    lock_file = folder / LOCK
    try:
        descriptor = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        raise unwritable(folder, error) from None
    try:
        if fcntl is not None:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        raise Busy(f"{folder} is in use: another charrnn train (pid {holder(lock_file)}) is writing to it; "
                   "wait for it to finish, or pass --out NEW_DIR") from None
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"{os.getpid()}\n".encode())
    _held[key] = descriptor
    cache.remove_orphans(folder)  # sole writer now: what a killed run left half-written goes


def release(folder: Path) -> None:
    """Give the lock back before this process ends (for callers that train several runs in one process)."""
    descriptor = _held.pop(folder.resolve(), None)
    if descriptor is not None:
        os.close(descriptor)


def make(folder: Path) -> None:
    """Create `folder` (and its parents) if missing, remembering that this process made it."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir()
        _created.add(folder.resolve())
    except FileExistsError:
        pass
    except OSError as error:
        raise unwritable(folder, error) from None


def default_directory(base: Path, processes: int = 1) -> Path:
    """The run directory when --out is not given: claimed at once by a lone process.

    Under torchrun every rank must arrive at the same name, so there it is the first that holds no
    run, which rank 0 then locks like a directory given with --out.
    """
    if processes > 1:
        return next(candidate for candidate in numbered(base) if not has_run(candidate))
    return claim_default(base)


def numbered(base: Path) -> Iterator[Path]:
    """base, base-2, base-3, ..."""
    yield base
    for number in itertools.count(2):
        yield base.with_name(f"{base.name}-{number}")


def claim_default(base: Path) -> Path:
    """`base`, or `base-2`, `base-3`, ...: the first that holds no run, created and locked at once.

    mkdir and the lock are both atomic, so two runs started together never pick the same directory.
    """
    for candidate in numbered(base):
        make(candidate)
        try:
            lock(candidate)
        except Busy:
            continue
        if not has_run(candidate):
            return candidate
        release(candidate)


def prepare(out_dir: Path, resume: bool, force: bool) -> None:
    """Create and lock the run directory, and check that it holds what --resume or --force expect."""
    if out_dir.exists() and not out_dir.is_dir():
        raise CharRNNError(f"--out {out_dir} is an existing file; name a directory for the run")
    make(out_dir)
    lock(out_dir)
    require_writable(out_dir)
    if resume and not (out_dir / checkpoint.LAST).is_file():
        raise CharRNNError(f"{out_dir}: no {checkpoint.LAST} to resume from; train without --resume first")
    if has_run(out_dir) and not resume and not force:
        raise CharRNNError(f"{out_dir} already holds a run; continue it with --resume, "
                           "or pass --out NEW_DIR, or --force to overwrite")


@contextlib.contextmanager
def removed_if_unused(out_dir: Path) -> Iterator[None]:
    """Around a run's set-up: if it fails (bad corpus, Ctrl-C), leave no empty run directory behind."""
    try:
        yield
    except BaseException:
        abandon(out_dir)
        raise


def abandon(out_dir: Path) -> None:
    """Undo `prepare` for a run that never started: a directory it made that holds nothing but the lock goes."""
    if out_dir.resolve() not in _held:
        return
    release(out_dir)
    if out_dir.resolve() in _created and [p.name for p in out_dir.iterdir()] == [LOCK]:
        (out_dir / LOCK).unlink(missing_ok=True)
        try:
            out_dir.rmdir()
        except OSError:
            pass
