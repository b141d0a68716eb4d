"""Whole items: samples cut at stop strings, released in order as each completes, lines begun after a newline."""

import pytest
import torch

from charrnn.config import ModelConfig, SamplingSettings
from charrnn.errors import CharRNNError
from charrnn.items import Part, SampleText, ShownPrime, endings, ordered_parts, whole_samples
from charrnn.model import CharRNN
from charrnn.sample import generate
from charrnn.vocab import Vocab

VOCAB = Vocab("\n abcdefgh")


def cut(text: str, stops: tuple[str, ...]) -> tuple[list[str], bool]:
    """What a sample fed `text` writes, piece by piece as each character comes, and whether it ended."""
    sample, written = SampleText(stops), []
    for char in text:
        sample.add(char)
        written.append(sample.take())
    sample.end()
    return written + [sample.take()], sample.ended


def test_a_stop_string_ends_the_sample_unwritten_and_only_its_beginning_is_held_back():
    written, _ = cut("xabyabcz", ("abc",))
    assert written == ["x", "", "", "aby", "", "", "", "", ""]  # "ab" waits; "aby" cannot become "abc"
    assert "".join(written) == "xaby"


def test_the_earliest_stop_string_wins_and_the_length_cap_releases_what_was_held():
    assert "".join(cut("xxab", ("b", "xab"))[0]) == "x"  # both end at "b": "xab" began first
    assert "".join(cut("xxab", ("ab", "xy"))[0]) == "xx"
    assert cut("xxa", ("ab",)) == (["x", "x", "", "a"], True)  # "a" was held back, then written at the cap


def steps_of(texts: list[str], drawn: list[int]):
    """The batch's steps for these texts, one character per sample per step, counting the steps drawn."""
    for position in range(max(map(len, texts))):
        drawn.append(position)
        yield [text[position] if position < len(text) else "." for text in texts]


def test_each_sample_is_written_once_those_before_it_are_complete_and_no_step_after_the_last():
    drawn, seen = [], []
    texts = ["ab|" + "x" * 20, "abcdef|" + "x" * 20, "a|" + "x" * 20]
    for part in ordered_parts(steps_of(texts, drawn), 3, ("|",)):
        seen.append((part, len(drawn)))
    assert seen == [(Part(0, "a", False), 1), (Part(0, "b", False), 2), (Part(0, "", True), 3),  # the first streams
                    (Part(1, "abc", False), 3), (Part(1, "d", False), 4), (Part(1, "e", False), 5),
                    (Part(1, "f", False), 6), (Part(1, "", True), 7),
                    (Part(2, "a", True), 7)]  # finished early, it waited for sample 1 only
    assert len(drawn) == 7  # all had ended: the batch stopped there, not at the length cap


def test_without_stop_strings_the_first_sample_streams_and_the_rest_follow_whole():
    parts = list(ordered_parts(steps_of(["abc", "def"], []), 2))
    assert parts == [Part(0, "a", False), Part(0, "b", False), Part(0, "c", False), Part(0, "", True),
                     Part(1, "def", True)]
    assert list(whole_samples(parts)) == [(0, "abc"), (1, "def")]
    assert list(ordered_parts([], 2)) == [Part(0, "", True), Part(1, "", True)]  # --length 0


def test_a_part_is_a_whole_tuple_its_sample_named_and_tuple_methods_intact():
    part = Part(1, "ab", True)
    assert part.sample == 1 and part.index("ab") == 1  # a field named `index` hid tuple.index


def test_stops_cut_a_real_batch_where_they_begin():
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=len(VOCAB), model="lstm", layers=1, hidden=16, embed=8)).eval()
    settings = SamplingSettings(length=60, seed=4, n=5, precision="fp32")
    free = [text for _, text in whole_samples(ordered_parts(generate(model, VOCAB, settings=settings), 5))]
    stops = ("\n", "ab")
    ended = [text for _, text in whole_samples(ordered_parts(generate(model, VOCAB, settings=settings), 5, stops))]
    firsts = [min((text.find(stop) for stop in stops if stop in text), default=len(text)) for text in free]
    assert ended == [text[:first] for text, first in zip(free, firsts)]
    assert any(first < len(text) for text, first in zip(free, firsts))  # some sample was cut


def test_endings_refuse_what_could_never_end_a_sample():
    assert endings(VOCAB, ["ab"], lines=True) == ("ab", "\n")
    with pytest.raises(CharRNNError, match="empty string"):
        endings(VOCAB, [""], lines=False)
    with pytest.raises(CharRNNError, match=r"never writes \('z'\)"):
        endings(VOCAB, ["az"], lines=False)
    with pytest.raises(CharRNNError, match="never saw a newline"):
        endings(Vocab("abc"), [], lines=True)


def test_with_lines_a_sample_is_written_after_the_prime_s_last_line():
    for lines, shown in ((True, "Ma"), (False, "First\nSecond\nMa")):
        prime = ShownPrime(lines)
        for piece in ("First\nSec", "ond\n", "M", "a"):
            prime.write(piece)
        assert prime.text() == shown
        prime.close()


def test_a_line_of_crlf_text_ends_without_its_carriage_return():
    crlf = Vocab("\r\n abc")
    stops = endings(crlf, [], lines=True)
    assert "".join(cut("ab c\r\nabc", stops)[0]) == "ab c"
    assert "".join(cut("ab\rc\nabc", stops)[0]) == "ab\rc"  # a lone \r is text
    assert endings(VOCAB, [], lines=True) == ("\n",)


def test_stop_strings_are_read_in_the_corpus_form():
    decomposed = Vocab("\ncafe\u0301")
    assert endings(decomposed, ["caf\u00e9"], lines=False) == ("cafe\u0301",)
