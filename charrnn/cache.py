"""The user cache: one place per install (platformdirs), readable by the user alone.

What it holds is a copy of the user's text (encoded corpora, downloads), so it is private
whatever the umask or the permissions of the text it came from.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO, Iterator, Optional

PRIVATE_DIRECTORY = 0o700
PRIVATE_FILE = 0o600


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


def temporary_name(target: Path) -> Path:
    """A hidden name beside `target` that carries this process's id (see `remove_orphans`)."""
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` through `written_atomically`: a reader sees the old file or the new one, never half."""
    with written_atomically(path) as f:
        f.write(data)


@contextlib.contextmanager
def written_atomically(target: Path, mode: Optional[int] = None) -> Iterator[BinaryIO]:
    """A file to write `target` through: a hidden temporary, renamed on success and removed on any failure, so
    the real name never holds half a file. With `mode`, the temporary is created with it whatever the umask."""
    temporary = temporary_name(target)
    try:
        with (open(temporary, "wb") if mode is None else open_private(temporary, mode)) as f:
            yield f
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def open_private(path: Path, mode: int = PRIVATE_FILE) -> BinaryIO:
    """Open `path` for writing, created with `mode` (at most 0600 by default) whatever the umask."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(descriptor, mode)
    return os.fdopen(descriptor, "wb")


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


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
