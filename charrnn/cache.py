"""The user cache: one place per install (platformdirs), readable by the user alone.

What it holds is a copy of the user's text (encoded corpora, downloads), so it is private
whatever the umask or the permissions of the text it came from.
"""

from __future__ import annotations

import os
from pathlib import Path

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
