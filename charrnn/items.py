"""Whole items rather than a stream: samples that end at a stop string or at a line's end, each
ready to write as soon as the samples before it are.

`generate` yields one character for every sample of a batch per step. Here each sample's text is
cut at the first stop string (`SampleText`), and `ordered_parts` puts the batch in output order:
the first unfinished sample's text goes out as it is generated, a later sample's when its turn
comes, and the steps stop once every sample has ended.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import NamedTuple, Optional, TextIO, Union

from charrnn.config import SamplingSettings
from charrnn.errors import CharRNNError, SettingError
from charrnn.sample import PRIME_CHUNK
from charrnn.streams import TextSpool, read_chunks, stdin_is_piped
from charrnn.vocab import Vocab

LINE_END = "\n"
CRLF = "\r\n"
# --json holds the prime in every object; a prime piped without end would fill memory instead.
JSON_PRIME_LIMIT = 1 << 20  # characters


def endings(vocab: Vocab, stops: Sequence[str], lines: bool) -> tuple[str, ...]:
    """The strings that end a sample (`stops`, and a newline with `lines`), refused when one could never
    be generated: a sample would then run on to --length and the user never learn why."""
    if lines and LINE_END not in vocab:
        raise CharRNNError("--lines: this model never saw a newline, so no line would end; use --stop STR instead")
    stops = [vocab.in_form(stop) for stop in stops]  # as the model writes them: in its corpus's Unicode form
    for stop in stops:
        if not stop:
            raise SettingError("--stop needs some text: an empty string would end every sample before it began")
        unseen = vocab.unknown_chars(stop)
        if unseen:
            raise CharRNNError(
                f"--stop {stop!r} holds characters the model never writes ({', '.join(map(repr, unseen))}), "
                "so it could never end a sample; give text made of characters the model knows"
            )
    line_ends = (LINE_END, CRLF) if "\r" in vocab else (LINE_END,)  # no \r ends a CRLF text's item
    return tuple(stops) + (line_ends if lines else ())


class SampleText:
    """One sample's generated text, cut before the first stop string. What no stop string can still be
    completing is ready to write; only a tail that begins a stop string is held back."""

    def __init__(self, stops: Sequence[str]):
        # Longest first: of stop strings completed by one character, the longest began earliest.
        self.stops = sorted(set(stops), key=len, reverse=True)
        self.beginnings = {stop[:size] for stop in self.stops for size in range(1, len(stop))}
        self.held, self.ended = "", False
        self.ready: list[str] = []

    def add(self, char: str) -> None:
        if self.ended:
            return  # an ended sample's characters are generated with the batch, and dropped
        text = self.held + char
        # A stop string cannot lie wholly inside the held text (it would have ended the sample), so
        # one can only end at this character.
        stop = next((stop for stop in self.stops if text.endswith(stop)), None)
        if stop is not None:
            self.ready.append(text[: len(text) - len(stop)])
            self.held, self.ended = "", True
            return
        keep = next((size for size in range(len(text), 0, -1) if text[-size:] in self.beginnings), 0)
        self.ready.append(text[: len(text) - keep])
        self.held = text[len(text) - keep :]

    def end(self) -> None:
        """The length cap: what was held back is text after all."""
        if not self.ended:
            self.ready.append(self.held)
            self.held, self.ended = "", True

    def take(self) -> str:
        """The text ready since the last take."""
        text = "".join(self.ready)
        self.ready.clear()
        return text


class Part(NamedTuple):
    sample: int  # which sample of the batch (not `index`: that would hide tuple.index)
    text: str  # its next stretch of text
    ended: bool  # whether the sample is complete with it


def ordered_parts(steps: Iterable[Sequence[str]], num_samples: int, stops: Sequence[str] = ()) -> Iterator[Part]:
    """The batch's text in output order, sample after sample, each ending at its first stop string or when
    `steps` run out. Nothing waits for the whole batch: a sample finished early waits only for those before
    it, and no further step is drawn once every sample has ended."""
    samples = [SampleText(stops) for _ in range(num_samples)]
    first = 0  # the first sample not yet written whole: the one whose text goes out as it comes
    for chars in steps:
        for sample, char in zip(samples, chars):
            sample.add(char)
        first = yield from released(samples, first)
        if first == num_samples:
            return
    for sample in samples:
        sample.end()
    yield from released(samples, first)


def released(samples: list[SampleText], first: int) -> Generator[Part, None, int]:
    """What can be written now: sample `first`'s new text, then each next sample's as long as the one before
    it has ended. Returns the new first unfinished sample."""
    for index in range(first, len(samples)):
        sample = samples[index]
        text = sample.take()
        if text or sample.ended:
            yield Part(index, text, sample.ended)
        if not sample.ended:
            return index
    return len(samples)


def whole_samples(parts: Iterable[Part]) -> Iterator[tuple[int, str]]:
    """Each sample's whole text, with its index, as soon as it is complete."""
    texts = []
    for part in parts:
        texts.append(part.text)
        if part.ended:
            yield part.sample, "".join(texts)
            texts.clear()


def after_a_newline(prime: Union[str, Iterable[str]]) -> Iterator[str]:
    """The prime read from the state after a newline: with --lines, every sample begins a line."""
    yield LINE_END
    yield from [prime] if isinstance(prime, str) else prime


class ShownPrime:
    """What every sample is written after: the prime, or with `lines` the text after its last newline (the
    start of the line each sample completes; the lines before it are context the model reads, not part of
    any sample). Kept in a spool, which moves to disk when long, as a piped prime may be."""

    def __init__(self, lines: bool):
        self.lines = lines
        self.spool = TextSpool()

    def write(self, piece: str) -> None:
        if self.lines and LINE_END in piece:
            self.spool.close()
            self.spool = TextSpool()
            piece = piece[piece.rfind(LINE_END) + 1 :]
        self.spool.write(piece)

    def pieces(self) -> Iterator[str]:
        return self.spool.pieces(PRIME_CHUNK)

    def text(self) -> str:
        return self.spool.text()

    def close(self) -> None:
        self.spool.close()


def whole_prime(pieces: Iterable[str], limit: int = JSON_PRIME_LIMIT) -> str:
    """A streamed prime as one string, refused past `limit` characters."""
    parts, size = [], 0
    for piece in pieces:
        parts.append(piece)
        size += len(piece)
        if size > limit:
            raise CharRNNError(
                f"--json: the prime is longer than {limit:,} characters, and every object holds it "
                "whole; pass a shorter prime, or leave out --json"
            )
    return "".join(parts)


def prime_pieces(prime: Optional[str], encoding: str = "utf-8", whole: bool = False) -> list[str] | Iterator[str]:
    """The prime: `prime`, else piped stdin read a piece at a time as it is used (it may be endless: `yes |
    charrnn sample`), else none; `whole`: as one piece, as every --json object holds it."""
    if prime is not None:
        pieces: list[str] | Iterator[str] = [prime]
    elif stdin_is_piped():
        pieces = read_chunks("-", PRIME_CHUNK, encoding, fix="pass --encoding to name its encoding")
    else:
        pieces = []
    return [whole_prime(pieces)] if whole else pieces


def write_out(
    out: TextIO,
    parts_of: Callable[[Iterable[str], SamplingSettings], Iterable[Part]],
    pieces: Iterable[str],
    settings: SamplingSettings,
    record: Optional[dict] = None,
    separator: Optional[str] = None,
) -> None:
    """The samples `parts_of(prime, settings)` makes (`LanguageModel.parts`), each after the prime, as `charrnn
    sample` writes them: `separator` apart (default: a blank line; with --lines, none), or with `record` (what
    reproduces them) one JSON object per sample, the prime a whole piece (`prime_pieces(whole=True)`)."""
    # Each sample is written after the prime. One plain sample echoes it as it is read; otherwise it is
    # kept (with --lines, its last line only), in a spool that moves to disk when long.
    shown = None if settings.n == 1 and not settings.lines and record is None else ShownPrime(settings.lines)
    try:
        parts = parts_of(passed_on(pieces, (shown or out).write), settings)
        if record is not None:
            assert shown is not None  # kept whenever there is a record
            write_records(out, parts, shown, {"prime": "".join(pieces), **settings.record(), **record})
        else:
            write_samples(out, parts, shown, separator if separator is not None else "\n" if settings.lines else "\n\n")
    finally:
        if shown is not None:
            shown.close()


def write_samples(out: TextIO, parts: Iterable[Part], shown: Optional[ShownPrime], separator: str) -> None:
    """The samples `separator` apart, each after the shown prime, written as they come; flushed at each
    line's end and each sample's, so that a reader down the pipe gets them whole without waiting."""
    writing = None  # the sample being written
    for part in parts:
        if part.sample != writing:
            if writing is not None:
                out.write(separator)
            if shown is not None:
                out.writelines(shown.pieces())
            writing = part.sample
        out.write(part.text)
        if part.ended or "\n" in part.text:
            out.flush()
    out.write("\n")


def write_records(out: TextIO, parts: Iterable[Part], shown: ShownPrime, settings: dict) -> None:
    """One JSON object per line per sample, as each is complete: its index, its text as plain output
    writes it, and `settings`, what generates it again."""
    for index, text in whole_samples(parts):
        out.write(json.dumps({"index": index, "text": shown.text() + text, **settings}, ensure_ascii=False) + "\n")
        out.flush()


def passed_on(pieces: Iterable[str], write: Callable[[str], object]) -> Iterator[str]:
    """The pieces, unchanged, each written (echoed, or kept) once the model has read it: a piece it refuses never is."""
    for piece in pieces:
        yield piece
        write(piece)
