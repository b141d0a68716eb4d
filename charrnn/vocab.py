"""Characters (Unicode code points) <-> integer ids."""

from __future__ import annotations

import unicodedata
from typing import Literal, Optional

import numpy as np

from charrnn.errors import CharRNNError

UNKNOWN = -1
# The forms tried, in this order, on text holding characters the vocabulary lacks as written.
FORMS: tuple[Literal["NFC", "NFD"], ...] = ("NFC", "NFD")


def code_points(text: str) -> np.ndarray:
    """The code points of `text` as uint32, without a per-character Python loop."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def id_dtype(vocab_size: int) -> np.dtype:
    """The smallest integer type that holds every id: a big corpus costs 1 byte a character."""
    if vocab_size <= 256:
        return np.dtype(np.uint8)
    if vocab_size <= 32768:
        return np.dtype(np.int16)
    return np.dtype(np.int32)


class Vocab:
    """The characters a model knows; a character's id is its index.

    Built from a corpus they are sorted; a fine-tuned model's vocabulary appends new characters
    after the old ones so that old ids stay put, so nothing here may assume sorted order.
    """

    def __init__(self, chars: str):
        if not chars:
            raise CharRNNError("the vocabulary is empty: the corpus has no characters")
        self.chars = chars
        points = code_points(chars)
        # A dense table from code point to id makes encoding one vectorized lookup.
        self._table = np.full(int(points.max()) + 1, UNKNOWN, dtype=np.int32)
        self._table[points] = np.arange(len(points), dtype=np.int32)

    @classmethod
    def from_code_points(cls, points: np.ndarray) -> Vocab:
        unique = np.unique(points).astype("<u4")
        return cls(unique.tobytes().decode("utf-32-le", "surrogatepass"))

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, char: str) -> bool:
        return char in self.chars

    def id_of(self, char: str) -> Optional[int]:
        """The id of `char`, or None when the vocabulary lacks it."""
        return self.chars.index(char) if char in self.chars else None

    @property
    def dtype(self) -> np.dtype:
        return id_dtype(len(self))

    def lookup(self, points: np.ndarray) -> np.ndarray:
        """Ids for code points as int32; characters outside the vocabulary get UNKNOWN."""
        ids = np.full(points.shape, UNKNOWN, dtype=np.int32)
        inside = points < len(self._table)
        ids[inside] = self._table[points[inside]]
        return ids

    def reading(self, text: str) -> tuple[str, np.ndarray, np.ndarray]:
        """`text` as the model reads it: in the Unicode form it knows best, the ids (int32) of the characters it
        knows, and which characters those are. The form is the text's own when every character is known, else
        composed (NFC) or decomposed (NFD), whichever leaves fewest unknown: a corpus may be in either form."""
        best: tuple = ()
        for form in (None, *FORMS):
            if form is not None and unicodedata.is_normalized(form, text):
                continue  # the same text again
            candidate = text if form is None else unicodedata.normalize(form, text)
            looked_up = self.lookup(code_points(candidate))
            known = looked_up != UNKNOWN
            missing = len(known) - int(np.count_nonzero(known))
            if not best or missing < best[0]:
                best = (missing, candidate, looked_up[known], known)
            if missing == 0:
                break
        return best[1:]

    def in_form(self, text: str) -> str:
        """`text` in the Unicode form this vocabulary knows best (see `reading`): for primes and stop strings."""
        return self.reading(text)[0]

    def unknown_chars(self, text: str) -> str:
        """The distinct characters of `text` this vocabulary lacks, in order of first appearance."""
        return "".join(dict.fromkeys(c for c in text if c not in self.chars))

    def encode(self, text: str) -> np.ndarray:
        """Ids of `text`; raises if any character is unknown."""
        missing = self.unknown_chars(text)
        if missing:
            raise CharRNNError(f"the model never saw these characters: {missing!r}")
        return self.lookup(code_points(text)).astype(np.int64)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)
