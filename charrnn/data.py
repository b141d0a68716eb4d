"""Corpus sources (files, directories, stdin, the built-in default), encoding, cache, TBPTT windows."""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import math
import os
import sys
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Optional

import numpy as np
import torch

from charrnn import corpora, streams, writes
from charrnn.errors import CharRNNError
from charrnn.vocab import UNKNOWN, Vocab, code_points, id_dtype

CHUNK_BYTES = 1 << 20  # read, decoded and looked up at a time: bigger only costs memory (benchmarks/RESULTS.md)
BUILTIN_NAME = "python-stdlib"
BUILTIN_CAP_BYTES = 4 << 20  # a few MB of Python source: enough to learn from, quick to encode
SNIFF_BYTES = 8192
READING = 2  # how text is read (byte-order marks, Unicode forms): a new one re-encodes what the cache holds


@dataclass
class Source:
    """One stream of corpus bytes with a name for messages."""

    name: str
    open: Callable[[], BinaryIO]
    path: Optional[Path] = None  # set for regular files: the key for the encoding cache


Log = Callable[[str], None]


@dataclass
class Corpus:
    ids: np.ndarray  # one id per character; a read-only memory map when it came from the cache
    vocab: Vocab
    name: str
    oov: int = 0  # characters dropped because the vocabulary lacks them
    # Characters per file, for the built-in corpus only: its validation split is whole files spread over
    # it, since its last tenth (alphabetically: xml, zipfile, ...) is not like the rest.
    file_lengths: Optional[list[int]] = None

    def split(self, val_fraction: float, at_a_line: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Training and validation ids: every k-th file of the built-in corpus, else the last fraction (`at_a_line`:
        from the start of a line, for a run that learns lines as items)."""
        if self.file_lengths is None:
            return split(self.ids, val_fraction, self.vocab.id_of("\n") if at_a_line else None)
        return split_by_files(self.ids, self.file_lengths, val_fraction)


def file_source(path: Path) -> Source:
    return Source(str(path), lambda: open(path, "rb"), path)


def stream_source(path: Path) -> Source:
    """A FIFO or character device: read once, as it comes; not keyed for the cache (it has no contents to stat)."""
    return Source(str(path), lambda: open(path, "rb"))


def stdin_source() -> Source:
    data = sys.stdin.buffer.read()  # read once: stdin cannot be read twice
    return Source("<stdin>", lambda: io.BytesIO(data))


def looks_binary(path: Path) -> bool:
    with open(path, "rb") as f:
        return b"\x00" in f.read(SNIFF_BYTES)


def directory_sources(directory: Path) -> list[Source]:
    """Every text file below `directory`, in sorted order; hidden entries and binary files skipped."""
    files = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = Path(root) / name
            if not name.startswith(".") and path.is_file() and not looks_binary(path):
                files.append(path)
    files.sort()
    if not files:
        raise CharRNNError(
            f"{directory}: no text files found in this directory; point to a text file or a directory holding some"
        )
    return [file_source(p) for p in files]


def builtin_sources() -> list[Source]:
    """The running Python's standard-library source: present on every machine, so training works offline."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources, total = [], 0
    for path in sorted(stdlib.rglob("*.py")):
        if "site-packages" in path.parts or "test" in path.parts or "tests" in path.parts:
            continue
        size = path.stat().st_size
        if total + size > BUILTIN_CAP_BYTES:
            break
        sources.append(file_source(path))
        total += size
    if not sources:
        raise CharRNNError(f"no Python source found under {stdlib}; name a corpus: charrnn train FILE")
    return sources


def resolve_sources(args: list[str]) -> list[Source]:
    """Turn command-line corpus arguments into sources; none means the built-in corpus."""
    if not args:
        return builtin_sources()
    sources: list[Source] = []
    for arg in args:
        if arg == "-":
            sources.append(stdin_source())
            continue
        path = Path(arg)
        if path.is_dir():
            sources.extend(directory_sources(path))
        elif path.is_file():
            sources.append(file_source(path))
        elif path.exists():  # a FIFO or a character device reads like stdin; what cannot be read is refused by its kind
            streams.refuse_unreadable(arg)
            sources.append(stream_source(path))
        elif corpora.is_named_corpus(arg):
            sources.append(file_source(corpora.fetch(arg)))
        else:
            raise CharRNNError(
                f"{arg}: no such file or directory; give a text file, a directory, - for stdin, "
                "or a corpus name from `charrnn corpus list`"
            )
    return sources


def corpus_name(args: list[str]) -> str:
    """A short name for the corpus, used for the default run directory."""
    if not args:
        return BUILTIN_NAME
    first = args[0]
    if first == "-":
        return "stdin"
    return Path(first).resolve().stem or "corpus"


def text_chunks(source: Source, encoding: str, errors: str) -> Iterator[str]:
    """Decode a source piece by piece, so a big corpus is never one Python string."""
    codec = streams.reading_codec(encoding)
    decoder = codecs.getincrementaldecoder(codec)(errors)
    wide = codecs.lookup(codec).name.startswith(("utf-16", "utf-32"))  # where NUL bytes are ordinary text
    offset = 0
    with source.open() as stream:
        while chunk := stream.read(CHUNK_BYTES):
            nul = -1 if wide else chunk.find(b"\x00")
            if nul >= 0 and errors == "strict":
                raise streams.binary_input(source.name, f"at byte {offset + nul}")
            pending = len(decoder.getstate()[0])
            # UTF8_WITHOUT_MARK counts its error positions after the byte-order mark it skipped
            skipped = (
                3 if offset == 0 and codec == streams.UTF8_WITHOUT_MARK and chunk.startswith(codecs.BOM_UTF8) else 0
            )
            try:
                yield decoder.decode(chunk)
            except UnicodeDecodeError as error:
                where = f"at byte {offset - pending + skipped + error.start}"
                raise streams.undecodable(source.name, encoding, where) from None
            except UnicodeError as error:  # e.g. utf-16 with no byte-order mark: the encoding needs a variant
                raise CharRNNError(
                    f"{source.name}: cannot be read as {encoding} ({error}); name the exact "
                    "encoding with --encoding, e.g. utf-16-le or utf-16-be"
                ) from None
            offset += len(chunk)
        try:
            yield decoder.decode(b"", final=True)
        except UnicodeError:
            raise CharRNNError(
                f"{source.name}: ends inside a {encoding} character; pass --errors replace to read it anyway"
            ) from None


def point_chunks(sources: list[Source], encoding: str, errors: str) -> Iterator[tuple[int, np.ndarray]]:
    """(index of the source, its next code points), source after source."""
    for index, source in enumerate(sources):
        for text in text_chunks(source, encoding, errors):
            if text:
                yield index, code_points(text)


def line_chunks(sources: list[Source], encoding: str, errors: str) -> Iterator[tuple[int, str]]:
    """(index of the source, its next text), each piece ending at a line's end where it can: no character
    sequence that Unicode normalisation joins is cut in two (`Vocab.reading`)."""
    for index, source in enumerate(sources):
        held = ""
        for text in text_chunks(source, encoding, errors):
            text = held + text
            # a line as long as a chunk is cut where it stands: what is held stays bounded
            cut = text.rfind("\n") + 1 or (len(text) if len(text) >= CHUNK_BYTES else 0)
            if cut:
                yield index, text[:cut]
            held = text[cut:]
        if held:
            yield index, held


def size_hint(sources: list[Source]) -> int:
    """Bytes in the files: at most that many characters in any byte-per-character-or-more encoding."""
    return sum(s.path.stat().st_size for s in sources if s.path is not None)


def grown(ids: np.ndarray, needed: int) -> np.ndarray:
    """A copy of `ids` with room for `needed` ids, at least doubled; it owns its memory, so it can shrink in place."""
    bigger = np.empty(max(2 * len(ids), needed), dtype=ids.dtype)
    bigger[: len(ids)] = ids
    return bigger


def encode_with_new_vocab(chunks: Iterator[np.ndarray], capacity: int) -> tuple[np.ndarray, Vocab]:
    """One pass: each character gets an id in order of first appearance, renumbered to the sorted vocabulary at the end.

    The ids go straight into one array of the smallest integer type that holds them (1 byte a
    character below 257 distinct characters), sized from `capacity` and grown if it runs out.
    """
    first_seen = np.full(0x110000, UNKNOWN, dtype=np.int32)  # code point -> provisional id
    seen: list[int] = []  # code points, by provisional id
    ids = np.empty(max(capacity, 1 << 16), dtype=np.uint8)
    count = 0
    for points in chunks:
        provisional = first_seen[points]
        unseen = provisional == UNKNOWN
        if unseen.any():
            new = np.unique(points[unseen])
            first_seen[new] = np.arange(len(seen), len(seen) + len(new), dtype=np.int32)
            seen.extend(new.tolist())
            provisional = first_seen[points]
            if id_dtype(len(seen)) != ids.dtype:
                ids = ids.astype(id_dtype(len(seen)))
        if count + len(points) > len(ids):  # only when the files' size was unknown (stdin) or a wide encoding
            ids = grown(ids, count + len(points))
        ids[count : count + len(points)] = provisional
        count += len(points)
    if count == 0:
        raise CharRNNError("the corpus is empty; give a file with some text in it")
    ids.resize(count, refcheck=False)  # in place: give back what the size hint over-estimated
    vocab = Vocab.from_code_points(np.array(seen, dtype=np.uint32))
    renumber = vocab.lookup(np.array(seen, dtype=np.uint32)).astype(ids.dtype)  # provisional id -> sorted id
    block = CHUNK_BYTES
    for start in range(0, count, block):  # in blocks, so the renumbering needs no second full-size array
        ids[start : start + block] = renumber[ids[start : start + block]]
    return ids, vocab


Encoded = tuple[np.ndarray, Vocab, int, list[int]]  # ids, vocabulary, characters dropped, characters per source


def encode_sources(sources: list[Source], encoding: str, errors: str, vocab: Optional[Vocab]) -> Encoded:
    """Ids for the sources' characters, in one streaming pass; with `vocab`, unknown characters are dropped."""
    lengths = [0] * len(sources)
    try:
        if vocab is None:

            def tallied(chunks):
                for index, points in chunks:
                    lengths[index] += len(points)
                    yield points

            ids, vocab = encode_with_new_vocab(tallied(point_chunks(sources, encoding, errors)), size_hint(sources))
            return ids, vocab, 0, lengths
        ids, count, oov = np.empty(size_hint(sources), dtype=vocab.dtype), 0, 0
        for index, text in line_chunks(sources, encoding, errors):
            _, known, mask = vocab.reading(text)
            if count + len(known) > len(ids):  # only when the files' size was unknown (stdin) or a wide encoding
                ids = grown(ids, count + len(known))
            ids[count : count + len(known)] = known
            count, oov, lengths[index] = count + len(known), oov + len(mask) - len(known), lengths[index] + len(known)
        ids.resize(count, refcheck=False)  # in place, as encode_with_new_vocab does: held once, never twice
        return ids, vocab, oov, lengths
    except OSError as error:
        raise CharRNNError(f"cannot read the corpus: {error.strerror or error}") from None


def encoded_dir() -> Path:
    return writes.user_cache_dir() / "encoded"


def cache_key(sources: list[Source], encoding: str, errors: str, vocab: Optional[Vocab]) -> Optional[str]:
    """A key that changes whenever a file changes; None when a source (stdin, a FIFO) cannot be keyed."""
    paths = [source.path for source in sources if source.path is not None]
    if len(paths) < len(sources):
        return None
    files = []
    for path in paths:
        status = path.stat()
        # ctime and inode too: a file replaced by rename (rsync -t, cp -p) may keep its size and mtime.
        files.append([str(path.resolve()), status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino])
    material = json.dumps([READING, files, encoding, errors, vocab.chars if vocab else None])
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def read_cached(key: str, log: Optional[Log]) -> Optional[Encoded]:
    """The cached encoding, or None if there is none; a damaged one is named, removed, and so rebuilt."""
    folder = encoded_dir()
    ids_path, meta_path = folder / f"{key}.npy", folder / f"{key}.json"
    if not ids_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text("utf-8"))
        ids = np.load(ids_path, mmap_mode="r")
        vocab, lengths = Vocab(meta["chars"]), [int(n) for n in meta["lengths"]]
        if (
            ids.ndim != 1
            or ids.dtype != vocab.dtype
            or sum(lengths) != len(ids)
            or (len(ids) and int(ids.max()) >= len(vocab))
        ):
            raise ValueError("its ids do not match its vocabulary")
        return ids, vocab, int(meta["oov"]), lengths
    except (OSError, ValueError, KeyError, TypeError, CharRNNError) as error:
        if log:
            log(f"the cached encoding {ids_path} is damaged ({error}); encoding the corpus again")
        for damaged in (ids_path, meta_path):
            damaged.unlink(missing_ok=True)
        return None


def write_cached(key: str, encoded: Encoded) -> None:
    """Best effort: a cache that cannot be written only costs a re-encode next time.

    Private (0700 and 0600): the ids are a verbatim copy of the user's text.
    """
    ids, vocab, oov, lengths = encoded
    meta = json.dumps({"chars": vocab.chars, "oov": oov, "lengths": lengths}).encode("utf-8", "surrogatepass")
    try:
        folder = writes.private_directory(encoded_dir())
        writes.remove_orphans(folder)
        # The .json first: a reader that finds the .npy then finds its .json too, and never calls it damaged.
        for suffix, write in ((".json", lambda f: f.write(meta)), (".npy", lambda f: np.save(f, ids))):
            with writes.written_atomically(folder / f"{key}{suffix}", writes.PRIVATE_FILE) as f:
                write(f)
    except (OSError, CharRNNError):  # CharRNNError: a link at an entry's name, which is never written through
        pass


def load_corpus(
    args: list[str],
    encoding: str = "utf-8",
    errors: str = "strict",
    vocab: Optional[Vocab] = None,
    use_cache: bool = True,
    log: Optional[Log] = None,
) -> Corpus:
    """Read and encode a corpus; with `vocab`, characters it lacks are dropped and counted."""
    sources = resolve_sources(args)
    key = cache_key(sources, encoding, errors, vocab) if use_cache else None
    encoded = read_cached(key, log) if key else None
    if encoded is None:
        encoded = encode_sources(sources, encoding, errors, vocab)
        if key:
            write_cached(key, encoded)
    ids, vocab, oov, lengths = encoded
    return Corpus(ids, vocab, corpus_name(args), oov, file_lengths=lengths if not args else None)


def split(ids: np.ndarray, val_fraction: float, newline: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """The first part trains, the last `val_fraction` validates (the char-rnn convention); with `newline`, the cut
    moves on to the start of the next line, so that no line is split."""
    cut = len(ids) - int(len(ids) * val_fraction)
    if newline is not None and 0 < cut < len(ids) and ids[cut - 1] != newline:
        after = np.flatnonzero(ids[cut:] == newline)
        cut = cut + int(after[0]) + 1 if len(after) else len(ids)
    return ids[:cut], ids[cut:]


def split_by_files(ids: np.ndarray, file_lengths: list[int], val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Whole files spread evenly over the corpus validate (every tenth, at 0.1); the others train."""
    starts = np.cumsum([0, *file_lengths])
    train, val = [ids[:0]], [ids[:0]]
    for index in range(len(file_lengths)):
        held_out = math.floor((index + 1) * val_fraction) > math.floor(index * val_fraction)
        (val if held_out else train).append(ids[starts[index] : starts[index + 1]])
    return np.concatenate(train), np.concatenate(val)


IGNORE = -100  # a target the loss skips (cross_entropy's ignore_index): padding after the last character


class Windows:
    """Consecutive windows over parallel streams: inputs and targets are [streams, stream length].

    Row b of window i continues row b of window i-1, which is what lets training
    carry the hidden state from one window to the next (truncated BPTT).
    """

    carries_state = True  # whether a window's rows go on from the state the window before left (lists.ItemBatches: no)

    def __init__(self, inputs: np.ndarray, targets: np.ndarray, seq_len: int):
        self.inputs, self.targets, self.seq_len = inputs, targets, seq_len
        self.batch_size = inputs.shape[0]
        self.count = -(-inputs.shape[1] // seq_len)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        columns = slice(index * self.seq_len, (index + 1) * self.seq_len)
        return as_long(self.inputs[:, columns]), as_long(self.targets[:, columns])

    def rows(self, rows: slice) -> Windows:
        """These streams only: a rank's share."""
        return Windows(self.inputs[rows], self.targets[rows], self.seq_len)


class EvaluationWindows(Windows):
    """Windows read from the ids as they are asked for, stream b from position `starts[b]`, the end padded:
    the text is held once (or stays in its memory map), however long."""

    def __init__(self, ids: np.ndarray, seq_len: int, stream_len: int, starts: np.ndarray):
        self.ids, self.seq_len, self.stream_len, self.starts = ids, seq_len, stream_len, starts
        self.batch_size = len(starts)
        self.count = -(-stream_len // seq_len)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        columns = np.arange(index * self.seq_len, min((index + 1) * self.seq_len, self.stream_len))
        positions = self.starts[:, None] + columns
        predicted = len(self.ids) - 1
        real = positions < predicted
        at = np.minimum(positions, predicted - 1)
        inputs = np.where(real, self.ids[at].astype(np.int64), 0)
        targets = np.where(real, self.ids[at + 1].astype(np.int64), IGNORE)
        return torch.from_numpy(inputs), torch.from_numpy(targets)

    def rows(self, rows: slice) -> Windows:
        return EvaluationWindows(self.ids, self.seq_len, self.stream_len, self.starts[rows])


def as_long(ids: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64))


def training_windows(ids: np.ndarray, batch_size: int, seq_len: int) -> Windows:
    """`batch_size` equal contiguous streams cut into whole windows; views, so a memory-mapped corpus stays on disk."""
    stream_len = (len(ids) - 1) // batch_size
    if stream_len < seq_len:
        raise CharRNNError(
            f"the corpus is too short: {len(ids)} characters, but a batch of {batch_size} windows "
            f"of {seq_len} needs at least {batch_size * seq_len + 1}; "
            "use a longer corpus or smaller --batch-size/--seq-len"
        )
    span = batch_size * stream_len
    usable = stream_len - stream_len % seq_len
    inputs = ids[:span].reshape(batch_size, stream_len)[:, :usable]
    targets = ids[1 : span + 1].reshape(batch_size, stream_len)[:, :usable]
    return Windows(inputs, targets, seq_len)


def evaluation_windows(ids: np.ndarray, seq_len: int, max_streams: int = 16) -> Windows:
    """Windows in which every character after the first is a target exactly once (the end is padded).

    Each stream starts from the zero state, so its first characters score worse than the model can:
    16 streams keep that near 0.001 nats/char at the speed of 64 (benchmarks/RESULTS.md).
    """
    predicted = len(ids) - 1
    if predicted < 1:
        raise CharRNNError("nothing to evaluate: the text needs at least 2 characters the model knows")
    streams = max(1, min(max_streams, predicted // max(seq_len, 1)))
    stream_len = -(-predicted // streams)
    return EvaluationWindows(ids, seq_len, stream_len, np.arange(streams) * stream_len)
