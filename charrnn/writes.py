"""Every file charrnn writes goes through here: never through a link, never half of one, never over a
user's file unasked.

A whole file is written to a hidden temporary beside its name, created new (O_CREAT | O_EXCL |
O_NOFOLLOW: nothing planted at that name is followed), then renamed over the name, which must not be a
link: rename would replace the link, not write through it, but the link is the user's, so it is
refused. A file kept open and written in place (a run's lock, the metrics appended to) is opened with
O_NOFOLLOW and must be a plain file with one name (a hard link shares the user's data). Only the last
component of a path is guarded: folders above it (/tmp on macOS, a runs folder on another disk) may be
links.

The user cache is one place per install (platformdirs), readable by the user alone: what it holds is a copy of
the user's text (encoded corpora, downloads), so it is private whatever the umask or the permissions of the text
it came from.
"""

from __future__ import annotations

import contextlib
import glob
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Optional, TextIO

from charrnn.errors import CharRNNError

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # Windows has none; its links need privileges to make
CLOEXEC = getattr(os, "O_CLOEXEC", 0)
PRIVATE_DIRECTORY = 0o700
PRIVATE_FILE = 0o600


def refuse_link(path: Path) -> None:
    """One line if `path` itself is a symbolic link: charrnn writes neither through one nor over one."""
    if Path(path).is_symlink():
        raise CharRNNError(
            f"{path} is a symbolic link; charrnn never writes through one: remove it, or choose another path"
        )


def check_targets(paths: list[Path], force: bool) -> None:
    """Before writing files at names a user chose: sweep what a killed writer left of them, refuse links,
    and refuse files already there unless `force`."""
    for path in paths:
        sweep(path)
        refuse_link(path)
    existing = [str(path) for path in paths if path.exists()]
    if existing and not force:
        raise CharRNNError(
            f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
            "pass --force to replace, or choose another path with -o"
        )


def temporary_name(target: Path) -> Path:
    """A hidden name beside `target` that carries this process's id (see `remove_orphans`)."""
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


def create_new(path: Path, mode: int = 0o666) -> int:
    """A descriptor of a file made at `path` now, never a link's target. Something there already bears this
    process's id in its name, so it is no one's data: a dead process's leftover (its pid reused) or a plant."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | CLOEXEC
    try:
        return os.open(path, flags, mode)
    except FileExistsError:
        os.unlink(path)  # unlinking a link removes the link, never its target
        return os.open(path, flags, mode)


@contextlib.contextmanager
def written_atomically(target: Path, mode: Optional[int] = None, durable: bool = False) -> Iterator[BinaryIO]:
    """A file to write `target` through: a hidden temporary, renamed on success and removed on any failure, so
    the real name never holds half a file. With `mode`, the file gets it whatever the umask (else the umask
    decides, as for any file); `durable` syncs file and rename to the disk before returning."""
    target = Path(target)
    sweep(target)
    refuse_link(target)
    temporary = temporary_name(target)
    try:
        descriptor = create_new(temporary, 0o666 if mode is None else mode)
        if mode is not None:
            os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "wb") as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        refuse_link(target)  # planted while we wrote
        os.replace(temporary, target)
    except OSError as error:
        named(error, target)
        raise
    finally:
        temporary.unlink(missing_ok=True)
    if durable:
        sync_directory(target.parent)


def write_atomically(path: Path, data: bytes, durable: bool = False) -> None:
    """Write `data` through `written_atomically`: a reader sees the old file or the new one, never half."""
    with written_atomically(path, durable=durable) as f:
        f.write(data)


def open_in_place(path: Path, flags: int, mode: int = 0o666) -> int:
    """A descriptor of `path` opened with `flags` (O_CREAT allowed), refused with one line unless it is a plain
    file of one name: a file charrnn rewrites in place must be its own."""
    try:
        descriptor = os.open(path, flags | NOFOLLOW | CLOEXEC, mode)
    except OSError as error:
        if Path(path).is_symlink():  # ELOOP on Linux and macOS, EMLINK on FreeBSD
            refuse_link(path)
        named(error, path)
        raise
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode) or status.st_nlink > 1:
        os.close(descriptor)
        raise CharRNNError(
            f"{path} is not a plain file of charrnn's own (a special file, or a hard link to "
            "another name); charrnn will not write to it: remove it, or choose another path"
        )
    return descriptor


@contextlib.contextmanager
def appending(path: Path) -> Iterator[TextIO]:
    """`path` opened to add UTF-8 text at its end (created if missing), as `open_in_place` allows."""
    descriptor = open_in_place(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        with os.fdopen(descriptor, "a", encoding="utf-8") as f:
            yield f
    except OSError as error:
        named(error, path)
        raise


def named(error: OSError, path: Path) -> None:
    """Make an error of a write name the file it was for (not its temporary), so the user's line says where."""
    if error.filename is None or str(error.filename).endswith(".tmp"):
        error.filename = str(path)


def sync_directory(directory: Path) -> None:
    """Make a rename itself durable (POSIX); a no-op where directories cannot be opened."""
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


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def sweep(target: Path) -> None:
    """Delete the temporaries of `target` that writers killed mid-write left behind."""
    remove_orphans(Path(target).parent, f".{glob.escape(Path(target).name)}.*.tmp")


def remove_orphans(folder: Path, pattern: str = ".*.*.tmp") -> None:
    """Delete temporary files left by processes that died mid-write; a live writer's file is kept."""
    try:
        candidates = list(folder.glob(pattern))
    except OSError:
        return
    for candidate in candidates:
        owner = candidate.name.rsplit(".", 2)[-2]
        if owner.isdigit() and not process_alive(int(owner)):
            candidate.unlink(missing_ok=True)


def user_cache_dir() -> Path:
    """$CHARRNN_CACHE_DIR, else the platform's user cache (XDG on Linux, ~/Library/Caches, %LOCALAPPDATA%)."""
    override = os.environ.get("CHARRNN_CACHE_DIR")
    if override:
        return Path(override)
    # Imported here: with the variable set, charrnn runs where platformdirs is missing (the GPU machines' image).
    from platformdirs import user_cache_path

    return user_cache_path("charrnn", appauthor=False)


def private_directory(path: Path) -> Path:
    """Create `path` and any missing parents as 0700, and make `path` itself 0700 if it already existed.

    Parents that already exist keep their permissions: $CHARRNN_CACHE_DIR may point into a shared folder.
    """
    missing = []
    for folder in [path, *path.parents]:
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        folder.mkdir(mode=PRIVATE_DIRECTORY, exist_ok=True)
    os.chmod(path, PRIVATE_DIRECTORY)  # mkdir's mode passes through the umask; an old cache was 0755
    for folder in missing:
        os.chmod(folder, PRIVATE_DIRECTORY)
    return path
