"""The panel's texts, rebuilt byte for byte from Debian packages, and each text's train/test split.

Four texts come from installed packages; the fifth, tiny-shakespeare, is read where it lies (char-rnn's
data/tinyshakespeare/input.txt, or `charrnn corpus fetch tinyshakespeare`) and is never copied. Prints JSON:
each text's name, path, bytes, characters, lines, sha256, source, and the characters of its split.

    sudo apt-get install fortunes wamerican python3.11-doc linux-doc-6.1
    python benchmarks/panel_texts.py /work/texts
    python benchmarks/panel_texts.py /work/texts --shakespeare /work/shared/corpora/tinyshakespeare.txt

The split (`split`): the first 90% of a text, cut at a line boundary, is what charrnn trains on (it holds out
its own validation split from that); the last 10% is the test text, scored once at the end.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

FORTUNES = Path("/usr/share/games/fortunes/songs-poems")
WORDS = Path("/usr/share/dict/american-english")
PYTHON_DOCS = Path("/usr/share/doc/python3.11/html/_sources")
LINUX_DOCS = Path("/usr/share/doc/linux-doc-6.1/Documentation")
SHAKESPEARE = Path("/work/shared/corpora/tinyshakespeare.txt")
PACKAGES = {FORTUNES: "fortunes", WORDS: "wamerican", PYTHON_DOCS: "python3.11-doc", LINUX_DOCS: "linux-doc-6.1"}

TRAIN_FRACTION = 0.9
SHUFFLE_SEED = 42


def split(text: str, fraction: float = TRAIN_FRACTION) -> tuple[str, str]:
    """The text's first `fraction` up to the line boundary before it (it trains), and the rest (the test)."""
    point = round(len(text) * fraction)
    cut = text.rfind("\n", 0, point) + 1 or point  # a text with no line break there is cut where the fraction falls
    return text[:cut], text[cut:]


def verse(limit: int = 60_000) -> bytes:
    """The first whole fortunes of songs-poems (each ends in a `%` line), as many as fit in `limit` bytes."""
    data = FORTUNES.read_bytes()
    end = data.rfind(b"\n%\n", 0, limit) + 3  # the end of the last fortune that ends within the limit
    return data[:end]


def words() -> bytes:
    """The dictionary's lowercase ASCII words, one a line, shuffled (so the test tenth is no alphabetical tail)."""
    listed = [word for word in WORDS.read_text("utf-8").splitlines() if re.fullmatch(r"[a-z]+", word)]
    random.Random(SHUFFLE_SEED).shuffle(listed)
    return ("\n".join(listed) + "\n").encode("ascii")


def text_files(root: Path) -> Iterator[bytes]:
    """The contents of every file below `root` in sorted order, gunzipped, leaving out binary and non-UTF-8 ones."""
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if b"\0" not in data:
            yield data


def whole_files(roots: list[Path], limit: int) -> bytes:
    """The text files of `roots` one after another, whole, up to the first that would pass `limit` bytes."""
    kept, total = [], 0
    for root in roots:
        for data in text_files(root):
            if total + len(data) > limit:
                return b"".join(kept)
            kept.append(data)
            total += len(data)
    return b"".join(kept)


BUILT = {  # name: (how it is made, its source in words)
    "verse.txt": (verse, f"{FORTUNES}: whole fortunes while the total stays <= 60,000 bytes"),
    "words.txt": (words, f"{WORDS}: lines matching [a-z]+, shuffled with random.Random({SHUFFLE_SEED})"),
    "pydocs.txt": (
        lambda: whole_files([PYTHON_DOCS], 5_000_000),
        f"{PYTHON_DOCS}/**/*.txt in sorted order, whole files while the total stays <= 5,000,000 bytes",
    ),
    "docs50.txt": (
        lambda: whole_files([LINUX_DOCS, PYTHON_DOCS], 50_000_000),
        f"every UTF-8 file of {LINUX_DOCS} (gunzipped, sorted), then {PYTHON_DOCS}; whole files while the total "
        "stays <= 50,000,000 bytes",
    ),
}


def package_versions() -> dict:
    """The installed version of each package a text comes from (empty where dpkg-query is missing)."""
    if shutil.which("dpkg-query") is None:
        return {}
    names = sorted(set(PACKAGES.values()))
    listing = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Version}\n", *names], capture_output=True, text=True
    ).stdout
    return dict(line.split(" ", 1) for line in listing.splitlines() if " " in line)


def described(path: Path, source: str) -> dict:
    """What the JSON says of one text: its size in bytes, characters and lines, digest, and split."""
    data = path.read_bytes()
    text = data.decode("utf-8")
    train, test = split(text)
    return {
        "name": path.name,
        "path": str(path),
        "bytes": len(data),
        "chars": len(text),
        "lines": text.count("\n"),
        "sha256": hashlib.sha256(data).hexdigest(),
        "source": source,
        "train_chars": len(train),
        "test_chars": len(test),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where the texts are written (made if missing)")
    parser.add_argument("--shakespeare", type=Path, default=SHAKESPEARE, help="tiny-shakespeare, described, not copied")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    texts = []
    for name, (make, source) in BUILT.items():
        (args.folder / name).write_bytes(make())
        texts.append(described(args.folder / name, source))
    if args.shakespeare.is_file():
        texts.append(described(args.shakespeare, "karpathy/char-rnn data/tinyshakespeare/input.txt"))
    print(json.dumps({"texts": texts, "packages": package_versions()}, indent=1))


if __name__ == "__main__":
    main()
