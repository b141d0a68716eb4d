"""Characters are Unicode code points, encoded without a per-character loop."""

import unicodedata

import numpy as np
import pytest

from charrnn.errors import CharRNNError
from charrnn.sample import prime_ids
from charrnn.evaluate import known_ids
from charrnn.vocab import UNKNOWN, Vocab, code_points, id_dtype


def test_round_trip_of_hangul_emoji_and_ascii():
    text = "안녕하세요 world 🙂👍🏽\n"
    vocab = Vocab.from_code_points(code_points(text))
    assert vocab.decode(vocab.encode(text)) == text
    assert len(vocab) == len(set(text))


def test_code_points_are_one_per_character():
    assert code_points("a🙂b").tolist() == [ord("a"), ord("🙂"), ord("b")]


def test_unknown_characters_are_named():
    vocab = Vocab("abc")
    assert vocab.unknown_chars("abxcyx") == "xy"
    with pytest.raises(CharRNNError, match="never saw"):
        vocab.encode("abz")
    assert vocab.lookup(code_points("a\U0010FFFFz")).tolist() == [0, UNKNOWN, UNKNOWN]


def test_ids_use_the_smallest_integer_type():
    assert id_dtype(65) == np.uint8
    assert id_dtype(300) == np.int16
    assert id_dtype(40000) == np.int32


def test_empty_vocabulary_is_an_error():
    with pytest.raises(CharRNNError):
        Vocab("")


@pytest.mark.parametrize("corpus, given", [
    ("cafe\u0301 ", "caf\u00e9"),  # a decomposed corpus, a precomposed prime
    ("caf\u00e9 ", "cafe\u0301"),  # and the other way round
    ("\u1100\u1161\u11a8 ", "\uac01"),  # Hangul kept as jamo, a syllable given
])
def test_text_is_read_in_the_form_the_vocabulary_knows(corpus, given):
    vocab = Vocab.from_code_points(code_points(corpus))
    text, ids, known = vocab.reading(given)
    assert known.all() and vocab.decode(ids) == text
    assert unicodedata.normalize("NFC", text) == unicodedata.normalize("NFC", given)
    assert vocab.in_form(given) == text
    # Where text enters: a prime, a scored or evaluated text (stop strings: test_items).
    assert prime_ids(vocab, given).tolist() == ids.tolist()
    assert known_ids(given, vocab)[0].tolist() == ids.tolist()


def test_text_the_vocabulary_knows_or_cannot_know_better_stays_as_written():
    vocab = Vocab.from_code_points(code_points("caf\u00e9e\u0301 z"))  # both forms: neither is preferred
    assert vocab.in_form("cafe\u0301") == "cafe\u0301" and vocab.in_form("caf\u00e9") == "caf\u00e9"
    ascii_only = Vocab("abce")
    assert ascii_only.in_form("x\u00e9") == "x\u00e9"  # as many unknown as decomposed: a tie keeps the text
    _, ids, known = ascii_only.reading("axb")
    assert ids.tolist() == [0, 1] and known.tolist() == [True, False, True]
