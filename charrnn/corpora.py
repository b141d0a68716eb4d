"""Named corpora: a catalogue of the classic char-rnn texts, fetched once into the user cache and checked."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from charrnn.errors import CharRNNError

CATALOGUE = Path(__file__).resolve().parent / "catalogue.json"  # package data: installed with the code
READ_BYTES = 1 << 20
TIMEOUT_S = 60

# progress(done_bytes, total_bytes or None), called as a download goes
Progress = Callable[[int, Optional[int]], None]
Log = Callable[[str], None]


@dataclass
class Entry:
    name: str
    url: str
    bytes: Optional[int]  # size of what the URL serves (the archive, for zipped corpora)
    sha256: Optional[str]  # None where no published hash could be verified: fetch warns
    license: str
    description: str
    archive: Optional[str] = None  # "zip": the text is `member` inside what the URL serves
    member: Optional[str] = None
    unverified: Optional[str] = None  # why there is no sha256

    @property
    def download_name(self) -> str:
        """The local file name: named after the corpus, so a mirror's URL leads to the same place."""
        return self.name + (Path(urllib.parse.urlparse(self.url).path).suffix or ".txt")


def catalogue_path() -> Path:
    """$CHARRNN_CATALOGUE (another catalogue, e.g. a local mirror), else the one shipped inside the package."""
    return Path(os.environ.get("CHARRNN_CATALOGUE") or CATALOGUE)


def load_catalogue() -> dict[str, Entry]:
    path = catalogue_path()
    try:
        raw = json.loads(path.read_text("utf-8"))
        return {name: Entry(name=name, **fields) for name, fields in raw.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError) as error:
        raise CharRNNError(f"{path}: not a readable corpus catalogue ({error}); fix it or unset CHARRNN_CATALOGUE") from None


def is_named_corpus(argument: str) -> bool:
    """A catalogue name that is not also a file or directory here (a path always wins)."""
    return not Path(argument).exists() and argument in load_catalogue()


def user_cache_dir() -> Path:
    """$CHARRNN_CACHE_DIR, else the platform's user cache: XDG on Linux, ~/Library/Caches, %LOCALAPPDATA%."""
    if os.environ.get("CHARRNN_CACHE_DIR"):
        return Path(os.environ["CHARRNN_CACHE_DIR"])
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "charrnn" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "charrnn"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "charrnn"


def corpus_dir(name: str) -> Path:
    return user_cache_dir() / "corpora" / name


def text_path(entry: Entry) -> Path:
    """Where the corpus text lives once fetched."""
    folder = corpus_dir(entry.name)
    return folder / entry.member if entry.archive else folder / entry.download_name


def is_cached(entry: Entry) -> bool:
    return text_path(entry).is_file()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(READ_BYTES):
            digest.update(block)
    return digest.hexdigest()


def download(entry: Entry, target: Path, progress: Optional[Progress]) -> None:
    """Stream the URL to a temporary file beside `target`, then rename: never a half file under the real name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.part{os.getpid()}")
    try:
        with urllib.request.urlopen(entry.url, timeout=TIMEOUT_S) as response, open(temporary, "wb") as f:
            length = response.headers.get("Content-Length") if hasattr(response, "headers") else None
            total = int(length) if length and length.isdigit() else entry.bytes
            done = 0
            while block := response.read(READ_BYTES):
                f.write(block)
                done += len(block)
                if progress:
                    progress(done, total)
        os.replace(temporary, target)
    except (urllib.error.URLError, OSError, ValueError) as error:
        temporary.unlink(missing_ok=True)
        reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or error
        raise CharRNNError(
            f"cannot download corpus {entry.name!r} from {entry.url} ({reason}); "
            f"if this machine is offline, fetch that URL elsewhere and put the file at {target}"
        ) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def verify(entry: Entry, path: Path, fresh: bool, log: Optional[Log]) -> None:
    """Check size and sha256 against the catalogue; a download that fails the check is removed."""
    problem = None
    size = path.stat().st_size
    if entry.bytes is not None and size != entry.bytes:
        problem = f"is {size:,} bytes, the catalogue says {entry.bytes:,}"
    elif entry.sha256 is not None:
        actual = sha256_of(path)
        if actual != entry.sha256.lower():
            problem = f"has sha256 {actual}, the catalogue says {entry.sha256}"
    elif fresh and log:
        log(f"warning: corpus {entry.name!r} has no published sha256 ({entry.unverified or 'none in the catalogue'}), "
            f"so it cannot be verified; what was fetched has sha256 {sha256_of(path)}")
    if problem is None:
        return
    if fresh:
        path.unlink(missing_ok=True)
        raise CharRNNError(f"the download of corpus {entry.name!r} {problem}; it was removed: try again, or check {entry.url}")
    raise CharRNNError(f"{path} {problem}; delete it and run again to download a fresh copy")


def extract(entry: Entry, archive: Path, target: Path) -> None:
    temporary = target.with_name(f".{target.name}.part{os.getpid()}")
    try:
        with zipfile.ZipFile(archive) as bundle, bundle.open(entry.member) as source, open(temporary, "wb") as f:
            while block := source.read(READ_BYTES):
                f.write(block)
        os.replace(temporary, target)
    except (zipfile.BadZipFile, KeyError, OSError) as error:
        temporary.unlink(missing_ok=True)
        raise CharRNNError(f"{archive}: cannot extract {entry.member!r} ({error}); delete the file and run again") from None


def fetch(name: str, progress: Optional[Progress] = None, log: Optional[Log] = None) -> Path:
    """The path of a named corpus's text: downloaded and verified the first time, reused after."""
    catalogue = load_catalogue()
    if name not in catalogue:
        known = ", ".join(sorted(catalogue)) or "none"
        raise CharRNNError(f"{name}: not a file, a directory, or a corpus in the catalogue (known: {known}); see `charrnn corpus list`")
    entry = catalogue[name]
    text = text_path(entry)
    if entry.archive and text.is_file():
        return text  # extracted only after its archive passed the check
    downloaded = corpus_dir(name) / entry.download_name
    fresh = not downloaded.is_file()
    if fresh:
        if log:
            log(f"downloading corpus {name!r} from {entry.url} into {downloaded.parent}")
        download(entry, downloaded, progress)
    verify(entry, downloaded, fresh, log)
    if entry.archive:
        if entry.archive != "zip":
            raise CharRNNError(f"corpus {name!r}: unknown archive kind {entry.archive!r} in the catalogue; only zip is understood")
        extract(entry, downloaded, text)
        downloaded.unlink(missing_ok=True)  # the text is what training reads; the archive only doubles the disk use
    return text
