"""Text input that may never end: files, FIFOs, devices and stdin, read in bounded pieces.

`yes | charrnn sample` and `charrnn score < /dev/zero` are streams without an end, and a single
line of a log can be 50 MB. So nothing here reads "everything": a reader asks for at most so many
characters at a time, and text that must be written out again later is spooled, in memory while
small, then to a temporary file.
"""

from __future__ import annotations

import codecs
import contextlib
import encodings.utf_8_sig
import io
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Optional, TextIO

from typing_extensions import Buffer

from charrnn.errors import CharRNNError, SettingError, escaped

DECODING_ERRORS = ("strict", "replace", "ignore")  # what --errors may say about undecodable bytes
SPOOL_IN_MEMORY = 1 << 20  # bytes a spool keeps in memory before it moves to a temporary file
DECODING_FIX = "pass --encoding to name its encoding, or --errors replace"


def display_name(name: str) -> str:
    """The input as an error message names it: a file name may hold anything, even a newline."""
    return "<stdin>" if name == "-" else escaped(name)


# UTF-8 as charrnn reads it: a byte-order mark opening the input is no character (utf-8-sig's rule).
UTF8_WITHOUT_MARK = "charrnn_utf_8_sig"


class MarkSkippingDecoder(encodings.utf_8_sig.IncrementalDecoder):
    """utf-8-sig's decoder, except that input ending inside what could have begun a byte-order mark is the
    incomplete UTF-8 it is: CPython's returns nothing for a lone b"\\xef" at the end, and a text would lose it."""

    first: int  # utf-8-sig's own: whether the opening bytes are still to be checked for a mark

    def _buffer_decode(self, input: Buffer, errors: Optional[str], final: bool) -> tuple[str, int]:
        if final and self.first and len(memoryview(input)) < len(codecs.BOM_UTF8):
            self.first = 0  # too short to be a mark: plain UTF-8, which refuses or replaces it
        return super()._buffer_decode(input, errors, final)


def find_codec(name: str) -> Optional[codecs.CodecInfo]:
    if name != UTF8_WITHOUT_MARK:
        return None
    sig = codecs.lookup("utf-8-sig")
    return codecs.CodecInfo(
        sig.encode,
        sig.decode,
        name=UTF8_WITHOUT_MARK,
        incrementalencoder=sig.incrementalencoder,
        incrementaldecoder=MarkSkippingDecoder,
        streamreader=sig.streamreader,
        streamwriter=sig.streamwriter,
    )


codecs.register(find_codec)


def reading_codec(encoding: str) -> str:
    """The codec that reads `encoding`: UTF-8 as UTF8_WITHOUT_MARK, so that a byte-order mark opening a file is no
    character."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise CharRNNError(f"unknown encoding {encoding!r}; name one Python knows, such as utf-8 or latin-1") from None
    return UTF8_WITHOUT_MARK if name == "utf-8" else encoding


def undecodable(name: str, encoding: str, where: str = "", fix: str = DECODING_FIX) -> CharRNNError:
    """The error for input that is not valid in its encoding; `where`: e.g. "at byte 6"."""
    return CharRNNError(f"{display_name(name)}: not valid {encoding}{' ' + where if where else ''}; {fix}")


def binary_input(name: str, where: str) -> CharRNNError:
    """The error for input holding a NUL byte (`where`: e.g. "on line 3"): text has none, binary files plenty."""
    return CharRNNError(
        f"{display_name(name)}: looks binary (NUL byte {where}); give a text file, name its "
        "encoding with --encoding (e.g. utf-16), or pass --errors replace"
    )


@contextlib.contextmanager
def text_input(
    name: str, encoding: str = "utf-8", errors: str = "strict", newline: Optional[str] = "\n", fix: str = DECODING_FIX
) -> Iterator[TextIO]:
    """A text stream over a file, FIFO or device (`-`: stdin, left open afterwards), read lazily.

    newline="\n" splits lines on line feeds only and keeps any carriage return, as a corpus has it.
    A decoding error met while the caller reads becomes one CharRNNError naming the input and `fix`.
    """
    if name != "-":
        refuse_unreadable(name)
    codec = reading_codec(encoding)
    if errors not in DECODING_ERRORS:
        raise SettingError(f"unknown --errors {errors!r}; choose one of {', '.join(DECODING_ERRORS)}")
    try:
        binary = sys.stdin.buffer if name == "-" else open(name, "rb")  # a FIFO or device opens like a file
    except OSError as error:
        raise CharRNNError(f"{display_name(name)}: cannot read: {error.strerror or error}") from None
    stream = io.TextIOWrapper(binary, encoding=codec, errors=errors, newline=newline)
    try:
        yield stream
    except UnicodeDecodeError:
        raise undecodable(name, encoding, fix=fix) from None
    finally:
        if name == "-":
            stream.detach()  # stdin stays usable (and open) for whoever reads it next
        else:
            stream.close()


def unstreamable_kind(path: Path) -> Optional[str]:
    """What `path` is when it cannot be read as a stream of text (a socket, a block device); None when it can."""
    mode = path.stat().st_mode
    return "a socket" if stat.S_ISSOCK(mode) else "a block device" if stat.S_ISBLK(mode) else None


def refuse_unreadable(name: str) -> None:
    """Refuse, by its kind, what is not text to read: a regular file, a FIFO or a character device
    (`/dev/stdin`, `/dev/zero`) all read as text, the last two as the stream they are."""
    path = Path(name)
    if not path.exists():
        raise CharRNNError(f"{display_name(name)}: no such file; give text files, or - for stdin")
    kind = "a directory" if path.is_dir() else unstreamable_kind(path)
    if kind:
        raise CharRNNError(f"{display_name(name)}: is {kind}, not text; give a text file, a FIFO, or - for stdin")


def stdin_is_piped() -> bool:
    """Whether text is piped in: stdin is open and not a terminal."""
    return sys.stdin is not None and not sys.stdin.closed and not sys.stdin.isatty()


def read_chunks(name: str, size: int, encoding: str = "utf-8", **options) -> Iterator[str]:
    """The text of a file (`-`: stdin) in pieces of at most `size` characters, read as they are asked for."""
    with text_input(name, encoding, **options) as stream:
        while piece := stream.read(size):
            yield piece


def refuse_binary(name: str, text: str, line: Optional[int] = None) -> None:
    """Refuse text holding a NUL character, as `charrnn train` does: text has none, binary files plenty.

    `line`: the text is that line (or part of it) of the input; else the text is the input's start.
    """
    nul = text.find("\x00")
    if nul >= 0:
        raise binary_input(name, f"on line {line}" if line is not None else f"at character {nul + 1}")


class TextSpool:
    """Text written piece by piece and read back piece by piece: in memory while small, then in a temporary file."""

    def __init__(self):
        # surrogatepass: whatever a decoder let through is written back unchanged
        self.file = tempfile.SpooledTemporaryFile(
            SPOOL_IN_MEMORY, mode="w+", encoding="utf-8", errors="surrogatepass", newline=""
        )

    def write(self, text: str) -> None:
        self.file.write(text)

    def pieces(self, size: int) -> Iterator[str]:
        self.file.seek(0)
        while piece := self.file.read(size):
            yield piece

    def text(self) -> str:
        """All of it as one string: for callers who know it is small enough."""
        return "".join(self.pieces(SPOOL_IN_MEMORY))

    def close(self) -> None:
        self.file.close()
