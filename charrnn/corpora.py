"""Named corpora: a catalogue of the classic char-rnn texts, fetched once into the user cache and checked.

A catalogue may come from a stranger ($CHARRNN_CATALOGUE), so what it says is data, never a path or a
promise: names are checked before they name files, a download stops at the size it declares, an https
source stays https, and a zip member inflates no further than its entry says.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import os
import re
import stat
import sys
import typing
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Optional

from charrnn import writes
from charrnn.errors import CharRNNError

CATALOGUE = Path(__file__).resolve().parent / "catalogue.json"  # package data: installed with the code
READ_BYTES = 1 << 20
TIMEOUT_S = 60
UNDECLARED_LIMIT = 1 << 28  # 256 MiB: where a download of no declared size stops (a Gutenberg book is a few MB)
MAX_INFLATION = 100  # deflate shrinks text 3 to 10 times; a zip member claiming 100 times its packed size is a bomb
NAME = re.compile(r"[A-Za-z0-9._-]+")  # a corpus name becomes a folder name in the cache
SCHEMES = ("https", "http", "file")
TYPE_NAMES = {str: "a string", int: "a whole number", type(None): "null"}  # what an Entry field may hold
JSON_KINDS = {dict: "an object", list: "a list", str: "a string", bool: "true or false", type(None): "null"}

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
    # For the model card (charrnn.export's model_card): the license as the Hub spells it (none: the Hub lists no id for
    # it, e.g. public domain, and the card says `other` and quotes `license`), the Hub's dataset, the language
    license_id: Optional[str] = None
    dataset: Optional[str] = None
    language: Optional[str] = None

    @property
    def download_name(self) -> str:
        """The local file name: named after the corpus, so a mirror's URL leads to the same place."""
        suffix = Path(urllib.parse.urlparse(self.url).path).suffix
        return self.name + (suffix if re.fullmatch(r"\.[A-Za-z0-9]+", suffix) else ".txt")


def catalogue_path() -> Path:
    """$CHARRNN_CATALOGUE (another catalogue, e.g. a local mirror), else the one shipped inside the package."""
    return Path(os.environ.get("CHARRNN_CATALOGUE") or CATALOGUE)


def load_catalogue() -> dict[str, Entry]:
    """Every entry of the catalogue, each checked: a malformed or hostile catalogue is refused in one line."""
    path = catalogue_path()
    try:
        raw = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise bad_catalogue(path, "no such file") from None
    except (OSError, ValueError) as error:
        raise bad_catalogue(path, f"not a readable corpus catalogue ({error})") from None
    if not isinstance(raw, dict):
        raise bad_catalogue(path, f"the catalogue is {json_kind(raw)}, not an object of corpus entries")
    return {name: parse_entry(path, name, fields) for name, fields in raw.items()}


def bad_catalogue(path: Path, problem: str) -> CharRNNError:
    return CharRNNError(f"{path}: {problem}; fix the catalogue or unset CHARRNN_CATALOGUE")


def json_kind(value: object) -> str:
    return JSON_KINDS.get(type(value), "a number")


def shown(value: object) -> str:
    """`value` as the catalogue writes it (JSON), cut to fit one line of an error message."""
    text = json.dumps(value)
    return text if len(text) <= 120 else text[:117] + "..."


def parse_entry(path: Path, name: str, fields: object) -> Entry:
    problem = entry_problem(name, fields)
    if problem:
        raise bad_catalogue(path, f"corpus {shown(name)}: {problem}")
    return Entry(name=name, **typing.cast(dict, fields))  # entry_problem checked it is one


def entry_problem(name: str, fields: object) -> Optional[str]:
    """What makes one entry unusable, or None: its name, then its fields' types, then their values."""
    if not (is_plain_name(name) and NAME.fullmatch(name)):
        return "a corpus name is letters, digits, '.', '_' and '-' only, since it names a folder in the cache"
    if not isinstance(fields, dict):
        return f"the entry is {json_kind(fields)}, not an object"
    return field_problem(fields) or value_problem(fields)


def is_plain_name(name: str) -> bool:
    """A file name and nothing more: no folder part, no drive, not `.` or `..`, so it cannot climb out of its folder."""
    return name not in ("", ".", "..") and not any(character in name for character in "/\\:\0")


def field_problem(fields: dict) -> Optional[str]:
    """Unknown, missing or mistyped fields, judged against the Entry dataclass: one schema, not two."""
    declared = {field.name: field for field in dataclasses.fields(Entry) if field.name != "name"}
    unknown = [key for key in fields if key not in declared]
    if unknown:
        return f"unknown field {', '.join(map(shown, unknown))} (known: {', '.join(declared)})"
    missing = [key for key, field in declared.items() if field.default is dataclasses.MISSING and key not in fields]
    if missing:
        return f"missing field {', '.join(map(shown, missing))}"
    hints = typing.get_type_hints(Entry)
    for key, value in fields.items():
        allowed = typing.get_args(hints[key]) or (hints[key],)  # Optional[int] -> (int, NoneType)
        if isinstance(value, bool) or not isinstance(value, allowed):  # JSON true is no byte count
            return f"{shown(key)} is {shown(value)}, not {' or '.join(TYPE_NAMES[kind] for kind in allowed)}"
    return None


def value_problem(fields: dict) -> Optional[str]:
    """Values of the right type that still cannot be used."""
    url, size, sha256 = fields["url"], fields["bytes"], fields["sha256"]
    archive, member = fields.get("archive"), fields.get("member")
    if urllib.parse.urlparse(url).scheme not in SCHEMES:
        return f"url {shown(url)} is not https, http or file"
    if size is not None and size < 0:
        return f'"bytes" is {size}, not a size'
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        return f'"sha256" is {shown(sha256)}, not 64 hex digits'
    if archive not in (None, "zip"):
        return f'archive kind {shown(archive)} is unknown; only "zip" is understood'
    if archive and not (member and is_plain_name(member)):
        return f'"member" is {shown(member)}, not the plain name of a file at the top of the zip'
    return None


def is_named_corpus(argument: str) -> bool:
    """A catalogue name that is not also a file or directory here (a path always wins)."""
    return not Path(argument).exists() and argument in load_catalogue()


def corpora_root() -> Path:
    return writes.user_cache_dir() / "corpora"


def corpus_dir(name: str) -> Path:
    return corpora_root() / name


def inside_cache(entry: Entry, path: Path) -> Path:
    """`path`, once checked to resolve inside the corpus cache: neither a name nor a link planted there leads out."""
    root, resolved = corpora_root().resolve(), path.resolve()
    if root not in resolved.parents:
        raise CharRNNError(
            f"{catalogue_path()}: corpus {entry.name!r} would be stored at {resolved}, outside the "
            f"corpus cache {root}; fix the catalogue, or remove the link in the cache that leads there"
        )
    return path


def member_name(entry: Entry) -> str:
    """The text's name inside an archive: value_problem refuses an archive entry without one."""
    return typing.cast(str, entry.member)


def text_path(entry: Entry) -> Path:
    """Where the corpus text lives once fetched."""
    return inside_cache(entry, corpus_dir(entry.name) / (member_name(entry) if entry.archive else entry.download_name))


def archive_path(entry: Entry) -> Path:
    """Where what the URL serves is downloaded to (a zip is removed once its text is out)."""
    return inside_cache(entry, corpus_dir(entry.name) / entry.download_name)


def file_mode(path: Path) -> int:
    """`path`'s permissions cut to at most 0600: a copy is never readable by more people than its original."""
    return stat.S_IMODE(path.stat().st_mode) & writes.PRIVATE_FILE


def source_mode(url: str) -> int:
    """The mode for a download: 0600, or less where a local file:// source is less."""
    parsed = urllib.parse.urlparse(url)
    return file_mode(Path(urllib.request.url2pathname(parsed.path))) if parsed.scheme == "file" else writes.PRIVATE_FILE


def is_cached(entry: Entry) -> bool:
    return text_path(entry).is_file()


def cached_damage(entry: Entry) -> Optional[str]:
    """How the cached copy differs from what the catalogue declares, or None. An archive's extracted text is
    not what the catalogue's size and sha256 describe, so it has nothing to be checked against."""
    return mismatch(entry, text_path(entry)) if is_cached(entry) and not entry.archive else None


def mismatch(entry: Entry, path: Path) -> Optional[str]:
    """How `path` differs from the size and sha256 the catalogue declares, or None."""
    size = path.stat().st_size
    if entry.bytes is not None and size != entry.bytes:
        return f"is {size:,} bytes, the catalogue says {entry.bytes:,}"
    if entry.sha256 is not None and (actual := sha256_of(path)) != entry.sha256.lower():
        return f"has sha256 {actual}, the catalogue says {entry.sha256}"
    return None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(READ_BYTES):
            digest.update(block)
    return digest.hexdigest()


class RefuseDowngrade(urllib.request.HTTPRedirectHandler):
    """Follows redirects, except from https to anything else: a download that starts encrypted stays encrypted."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlparse(req.full_url).scheme == "https" and urllib.parse.urlparse(newurl).scheme != "https":
            fp.close()
            raise CharRNNError(
                f"{req.full_url} redirects to {newurl}, which is not https: refused, since an https "
                "download never falls back to an unencrypted one; fix the catalogue's url"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def copy_at_most(
    source: IO[bytes], sink: IO[bytes], limit: int, progress: Optional[Callable[[int], None]] = None
) -> bool:
    """Copy `source` to `sink`; False as soon as it proves longer than `limit` (one byte past it read, none written)."""
    done = 0
    while block := source.read(min(READ_BYTES, limit + 1 - done)):
        if done + len(block) > limit:
            return False
        sink.write(block)
        done += len(block)
        if progress:
            progress(done)
    return True


def limit_kind(entry: Entry) -> str:
    return (
        "the size the catalogue declares" if entry.bytes is not None else "the limit for a corpus of no declared size"
    )


def download(entry: Entry, target: Path, progress: Optional[Progress]) -> None:
    """Stream the URL to `target`, stopping at the size the catalogue declares: a server cannot fill the disk."""
    limit = UNDECLARED_LIMIT if entry.bytes is None else entry.bytes
    try:
        with urllib.request.build_opener(RefuseDowngrade).open(entry.url, timeout=TIMEOUT_S) as response:
            length = response.headers.get("Content-Length") if hasattr(response, "headers") else None
            total = int(length) if length and length.isdigit() else entry.bytes
            with writes.written_atomically(target, source_mode(entry.url)) as f:
                if not copy_at_most(response, f, limit, progress and (lambda done: progress(done, total))):
                    raise CharRNNError(
                        f"{entry.url} sent more than {limit:,} bytes, {limit_kind(entry)}: corpus "
                        f"{entry.name!r} was refused and nothing kept; check that url, or the "
                        'catalogue\'s "bytes"'
                    )
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or error
        raise CharRNNError(
            f"cannot download corpus {entry.name!r} from {entry.url} ({reason}); "
            f"if this machine is offline, fetch that URL elsewhere and put the file at {target}"
        ) from None


def verify(entry: Entry, path: Path, fresh: bool, warn: Log) -> None:
    """Check size and sha256 against the catalogue; a download that fails the check is removed."""
    problem = mismatch(entry, path)
    if problem is None and entry.sha256 is None and fresh:
        warn(
            f"warning: corpus {entry.name!r} has no published sha256 ({entry.unverified or 'none in the catalogue'}), "
            f"so it cannot be verified; what was fetched has sha256 {sha256_of(path)}"
        )
    if problem is None:
        return
    if fresh:
        path.unlink(missing_ok=True)
        raise CharRNNError(
            f"the download of corpus {entry.name!r} {problem}; it was removed: try again, or check {entry.url}"
        )
    raise CharRNNError(f"{path} {problem}; delete it and run again to download a fresh copy")


def extract(entry: Entry, archive: Path, target: Path) -> None:
    """Unzip the member the catalogue names, writing no more than the size its zip entry declares."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            member = bundle.getinfo(member_name(entry))
            if member.file_size > MAX_INFLATION * member.compress_size:
                raise CharRNNError(
                    f"{archive}: {entry.member!r} would inflate {member.compress_size:,} bytes into "
                    f"{member.file_size:,}, a zip bomb rather than a text: refused; delete the file "
                    f"and check {entry.url}"
                )
            with bundle.open(member) as source, writes.written_atomically(target, file_mode(archive)) as f:
                if not copy_at_most(source, f, member.file_size):
                    raise CharRNNError(
                        f"{archive}: {entry.member!r} inflates beyond the {member.file_size:,} bytes "
                        f"its zip entry declares: refused; delete the file and check {entry.url}"
                    )
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, zlib.error, RuntimeError, NotImplementedError) as error:
        # RuntimeError: an encrypted member; NotImplementedError: a compression zipfile cannot read
        raise CharRNNError(
            f"{archive}: cannot extract {entry.member!r} ({error}); delete the file and run again"
        ) from None


def python_warning(message: str) -> None:
    """Where warnings go when a library caller names no `warn`: Python's own warnings, on stderr."""
    warnings.warn(message, stacklevel=3)


def keep_private(path: Path) -> Path:
    """`path`, cut to at most 0600: a corpus cached by an older charrnn was 0644."""
    os.chmod(path, file_mode(path))
    return path


def fetch(
    name: str, progress: Optional[Progress] = None, log: Optional[Log] = None, warn: Log = python_warning
) -> Path:
    """The path of a named corpus's text: downloaded and verified the first time, reused after.

    `log` hears what is happening (None: nothing); `warn` hears what the user must see even when quiet,
    such as a corpus that cannot be verified.
    """
    catalogue = load_catalogue()
    if name not in catalogue:
        known = ", ".join(sorted(catalogue)) or "none"
        raise CharRNNError(
            f"{name}: not a file, a directory, or a corpus in the catalogue (known: {known}); see `charrnn corpus list`"
        )
    entry = catalogue[name]
    text, downloaded = text_path(entry), archive_path(entry)  # checked to stay in the cache before anything is made
    writes.private_directory(corpora_root())  # an older charrnn left it 0755
    writes.remove_orphans(writes.private_directory(downloaded.parent))
    if entry.archive and text.is_file():
        return keep_private(text)  # extracted only after its archive passed the check
    fresh = not downloaded.is_file()
    if fresh:
        if log:
            log(f"downloading corpus {name!r} from {entry.url} into {downloaded.parent}")
        download(entry, downloaded, progress)
    verify(entry, downloaded, fresh, warn)
    if entry.archive:
        extract(entry, downloaded, text)
        downloaded.unlink(missing_ok=True)  # the text is what training reads; the archive only doubles the disk use
    return keep_private(text)


def fetch_shown(arguments: list[str], quiet: bool = False) -> None:
    """Download the catalogue corpora among `arguments` (the rest are files), with a progress bar on a terminal's
    stderr and what happens as lines elsewhere; quiet silences progress, never a security warning."""
    from rich.console import Console

    console = Console(file=sys.stderr, highlight=False)

    def say(message: str) -> None:
        console.print(f"charrnn: {message}", markup=False, soft_wrap=True)

    for name in filter(is_named_corpus, arguments):
        log = None if quiet else say
        if quiet or not sys.stderr.isatty() or os.environ.get("NO_COLOR"):
            fetch(name, log=log, warn=say)
        else:
            fetch_with_bar(name, console, log=log, warn=say)


def fetch_named(names: list[str], quiet: bool = False) -> list[Path]:
    """`charrnn corpus fetch`: every name checked against the catalogue before anything is downloaded, then each
    fetched as `fetch_shown` shows it; where each one lives."""
    for name in names:
        if not is_named_corpus(name):
            fetch(name)  # raises the one-line error that lists the known names
    fetch_shown(names, quiet)
    return [fetch(name) for name in names]


def fetch_with_bar(name: str, console, **messages) -> None:
    """One named corpus's download, with a progress bar on `console`."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(
        TextColumn(name), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console, transient=True
    ) as bar:
        task = bar.add_task(name, total=None)
        fetch(name, progress=lambda done, total: bar.update(task, completed=done, total=total), **messages)


def catalogue_lines(as_json: bool, warn: Log) -> Iterator[str]:
    """`charrnn corpus list`: one line (or JSON object) per corpus, with its size and whether it is cached;
    `warn` hears of a damaged copy."""
    for entry in load_catalogue().values():
        damage = cached_damage(entry)
        cached = is_cached(entry) and damage is None
        if damage:
            warn(
                f"warning: corpus {entry.name!r} is damaged: {text_path(entry)} {damage}; "
                f"delete it, and `charrnn corpus fetch {entry.name}` downloads a fresh copy"
            )
        if as_json:
            yield json.dumps({**vars(entry), "cached": cached, "damaged": damage, "path": str(text_path(entry))})
            continue
        size = f"{entry.bytes / 1e6:.1f} MB" if entry.bytes else "? MB"
        flags = ("cached" if cached else "damaged" if damage else "") + ("" if entry.sha256 else " unverified")
        yield f"{entry.name:16} {size:>9}  {flags.strip():18} {entry.description}"
