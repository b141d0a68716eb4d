"""Characters are Unicode code points, encoded without a per-character loop."""

import numpy as np
import pytest

from charrnn.errors import CharRNNError
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
