"""The run directory: where runs live, what one holds, and its one owner, the training process that holds its lock.

Names and finding runs need no torch (the llm plugin lists runs on every `llm` command, and importing torch
takes a second or two). The lock is an OS lock (flock) on a file inside the directory, so the kernel releases it
when the process ends, however it ends: a run killed with SIGKILL leaves no stale lock behind. Readers
(`sample`, `eval`) take no lock: checkpoints are replaced by rename, so they always read a whole one.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

from charrnn import writes
from charrnn.errors import CharRNNError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not protected against a second writer
    fcntl = None  # type: ignore[assignment]

RUNS_DIR = Path("runs")
BEST, LAST = "best.pt", "last.pt"
METRICS = "metrics.jsonl"  # one JSON object per evaluation
LOCK = ".lock"

_held: dict[Path, int] = {}  # run directory -> descriptor of its lock file, for the life of this process
# What this process created for the run it holds (the directory, its lock file, a new run's metrics.jsonl):
# a run that fails before its first checkpoint removes them again, and nothing else.
_made: set[Path] = set()


def checkpoints(folder: Path) -> list[Path]:
    """The checkpoints `folder` holds: best.pt and last.pt, those that are files."""
    return [folder / name for name in (BEST, LAST) if (folder / name).is_file()]


def is_run(folder: Path) -> bool:
    """Whether `folder` is a charrnn run: the one rule. It holds a checkpoint; a metrics.jsonl or .lock alone
    may be anyone's."""
    return folder.is_dir() and bool(checkpoints(folder))


def last_written(folder: Path) -> float:
    """When the run's newest checkpoint was written (0 for a folder that is no run)."""
    return max((path.stat().st_mtime for path in checkpoints(folder)), default=0.0)


def run_directories(runs_dir: Path = RUNS_DIR) -> list[Path]:
    """The runs directly under `runs_dir`, by name."""
    if not runs_dir.is_dir():
        return []
    return sorted(folder for folder in runs_dir.iterdir() if is_run(folder))


def unwritable(folder: Path, error: OSError) -> CharRNNError:
    return CharRNNError(
        f"cannot write to the run directory {folder} ({error.strerror or error}); "
        "free some space or make it writable, or choose another with --out"
    )


def require_writable(folder: Path) -> None:
    """Create and remove a file: a directory whose files are writable may still refuse new ones (chattr +i)."""
    probe = writes.temporary_name(folder / "write-test")
    try:
        os.close(writes.create_new(probe))
        probe.unlink()
    except OSError as error:
        raise unwritable(folder, error) from None


class Busy(CharRNNError):
    """Another process trains in this run directory."""


def holder(lock_file: Path) -> str:
    try:
        return lock_file.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


# A process that opened the lock file this one just made, and took its lock first, finds the file a stranger's
# and lets go at once: its maker waits this long for it (two runs started together both missed the first name).
CLAIM_WAIT_S = 2.0


def flocked(descriptor: int, wait_s: float) -> bool:
    """Whether this process took the lock on `descriptor`, trying for up to `wait_s` seconds."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if fcntl is not None:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)


def hold(folder: Path) -> bool:
    """Take `folder`'s lock without writing to it (raise Busy, naming the holder's pid, if another has it):
    until the folder is known to be a run or empty, its .lock may be the user's. Whether it was not held yet."""
    key = folder.resolve()
    if key in _held:
        return False
    lock_file = folder / LOCK
    made = False
    try:
        try:
            descriptor = writes.open_in_place(lock_file, os.O_RDWR | os.O_CREAT | os.O_EXCL)
            _made.add(key / LOCK)
            made = True
        except FileExistsError:
            descriptor = writes.open_in_place(lock_file, os.O_RDWR)
    except OSError as error:
        raise unwritable(folder, error) from None
    if not flocked(descriptor, CLAIM_WAIT_S if made else 0.0):
        os.close(descriptor)
        _made.discard(key / LOCK)
        raise Busy(
            f"{folder} is in use: another charrnn train (pid {holder(lock_file)}) is writing to it; "
            "wait for it to finish, or pass --out NEW_DIR"
        )
    _held[key] = descriptor
    return True


def stamp(folder: Path) -> None:
    """Write this process's id into the lock it holds (for Busy's message), and, sole writer now, sweep what
    a killed run left half-written."""
    descriptor = _held[folder.resolve()]
    try:
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
    except OSError as error:
        raise unwritable(folder, error) from None
    writes.remove_orphans(folder)


def lock(folder: Path) -> None:
    """Hold `folder`'s lock until this process ends (or `release`), for a folder known to be free for a run."""
    if hold(folder):
        stamp(folder)


def release(folder: Path) -> None:
    """Give the lock back before this process ends (for callers that train several runs in one process)."""
    key = folder.resolve()
    descriptor = _held.pop(key, None)
    if descriptor is not None:
        os.close(descriptor)
    _made.difference_update({key / LOCK, key / METRICS})


def make(folder: Path) -> None:
    """Create `folder` (and its parents) if missing, remembering that this process made it. The folder
    itself may not be a link: charrnn writes only into its own."""
    writes.refuse_link(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir()
        _made.add(folder.resolve())
    except FileExistsError:
        pass
    except OSError as error:
        raise unwritable(folder, error) from None


def strangers(folder: Path) -> list[str]:
    """The names in `folder` besides a lock file this process made there."""
    mine = {LOCK} if folder.resolve() / LOCK in _made else set()
    return sorted(path.name for path in folder.iterdir() if path.name not in mine)


def default_directory(base: Path, processes: int = 1) -> Path:
    """The run directory when --out is not given: claimed at once by a lone process.

    Under torchrun every rank must arrive at the same name, so there it is the first that holds no
    run, which rank 0 then locks like a directory given with --out.
    """
    if processes > 1:
        return next(candidate for candidate in numbered(base) if not is_run(candidate))
    return claim_default(base)


def numbered(base: Path) -> Iterator[Path]:
    """base, base-2, base-3, ..."""
    yield base
    for number in itertools.count(2):
        yield base.with_name(f"{base.name}-{number}")


def claim_default(base: Path) -> Path:
    """`base`, or `base-2`, `base-3`, ...: the first that is empty, created and locked at once.

    mkdir and the lock are both atomic, so two runs started together never pick the same directory.
    """
    for candidate in numbered(base):
        if candidate.is_symlink():
            continue
        make(candidate)
        try:
            if not hold(candidate):  # this process trains there already
                continue
        except Busy:
            continue
        if strangers(candidate):  # a run, or files of the user's: not ours to write into
            abandon(candidate)
            continue
        with removed_if_unused(candidate):
            stamp(candidate)
        return candidate
    raise AssertionError("numbered() never ends")  # for the type checker: the loop only ends by returning


def prepare(out_dir: Path, resume: bool, force: bool) -> None:
    """Create and lock the run directory, and check that it holds what --resume or --force expect: without
    either, only an empty folder is written to."""
    writes.refuse_link(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CharRNNError(f"--out {out_dir} is an existing file; name a directory for the run")
    make(out_dir)
    hold(out_dir)
    if resume and not (out_dir / LAST).is_file():
        raise CharRNNError(f"{out_dir}: no {LAST} to resume from; train without --resume first")
    if is_run(out_dir) and not resume and not force:
        raise CharRNNError(
            f"{out_dir} already holds a run; continue it with --resume, or pass --out NEW_DIR, or --force to overwrite"
        )
    found = strangers(out_dir)
    if found and not (resume or force):
        shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
        raise CharRNNError(
            f"{out_dir} is not empty ({shown}) and holds no charrnn run; charrnn writes only into an "
            "empty folder or a run of its own: pass --out NEW_DIR, or --force to write there"
        )
    require_writable(out_dir)
    if not resume and not (out_dir / METRICS).exists():
        _made.add(out_dir.resolve() / METRICS)
    stamp(out_dir)


@contextlib.contextmanager
def removed_if_unused(out_dir: Path) -> Iterator[None]:
    """Around a run's set-up: if it fails (bad corpus, Ctrl-C, a full disk), leave nothing behind."""
    try:
        yield
    except BaseException:
        abandon(out_dir)
        raise


def abandon(out_dir: Path) -> None:
    """Undo a run that never wrote a checkpoint: what this process made for it goes (the lock file, a new run's
    metrics.jsonl, the directory if it made it and it is empty then), and the lock is given back. A folder that
    holds a run keeps everything."""
    key = out_dir.resolve()
    if key not in _held:
        return
    if not is_run(out_dir):
        for path in (key / METRICS, key / LOCK):
            if path in _made and not path.is_symlink():
                path.unlink(missing_ok=True)
    release(out_dir)
    if key in _made and not is_run(out_dir):
        _made.discard(key)
        try:
            out_dir.rmdir()
        except OSError:
            pass
