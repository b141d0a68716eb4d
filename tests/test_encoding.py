"""The one-pass corpus encoder: the same ids as encoding with the sorted vocabulary, at any size and alphabet."""

import io
import os

import numpy as np
import pytest

from charrnn import data
from charrnn.data import Source, encode_with_new_vocab, load_corpus
from charrnn.vocab import Vocab, code_points


def reference(text: str) -> tuple[np.ndarray, Vocab]:
    vocab = Vocab("".join(sorted(set(text))))
    return vocab.lookup(code_points(text)), vocab


@pytest.mark.parametrize("alphabet", ["ascii", "wide"])
@pytest.mark.parametrize("capacity", [0, 10, 10**6])
def test_one_pass_matches_the_sorted_vocabulary(alphabet, capacity):
    rng = np.random.default_rng(0)
    # "wide": 600 distinct characters, first seen late, so the id type must grow from 1 to 2 bytes mid-stream
    letters = [chr(c) for c in range(32, 127)] if alphabet == "ascii" else [chr(0xAC00 + c) for c in range(600)] + ["🙂"]
    text = "".join(rng.choice(letters, 5000))
    chunks = [code_points(text[i : i + 700]) for i in range(0, len(text), 700)]
    ids, vocab = encode_with_new_vocab(iter(chunks), capacity)
    expected_ids, expected_vocab = reference(text)
    assert vocab.chars == expected_vocab.chars
    assert ids.dtype == vocab.dtype and np.array_equal(ids, expected_ids)


def test_stdin_of_unknown_size_and_small_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CHUNK_BYTES", 7)
    text = "naïve café, 한국어 🙂\n" * 50
    source = Source("<stdin>", lambda: io.BytesIO(text.encode("utf-8")))
    ids, vocab, oov, _ = data.encode_sources([source], "utf-8", "strict", None)
    assert vocab.decode(ids) == text and oov == 0


def test_cached_corpus_is_memory_mapped_and_a_rewrite_of_the_same_size_invalidates(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "t.txt"
    path.write_text("abcabc\n" * 100, encoding="utf-8")
    load_corpus([str(path)])
    calls = []
    original = data.encode_sources
    monkeypatch.setattr(data, "encode_sources", lambda *a: calls.append(1) or original(*a))
    cached = load_corpus([str(path)])
    assert calls == [] and isinstance(cached.ids, np.memmap)
    replacement = tmp_path / "new.txt"
    replacement.write_text("cbacba\n" * 100, encoding="utf-8")  # same size; a rename keeps its mtime
    stat = path.stat()
    replacement.replace(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as `rsync -t` or `cp -p` leave it
    changed = load_corpus([str(path)])
    assert calls == [1] and changed.vocab.decode(changed.ids) == "cbacba\n" * 100


# Property-based: any text, any bytes, any chunking.
from hypothesis import given, settings, strategies as st  # noqa: E402

CHUNK_BYTES = data.CHUNK_BYTES
unicode_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=300)  # no lone surrogates


def encode_in_chunks(blob: bytes, chunk_bytes: int, errors: str = "strict"):
    data.CHUNK_BYTES = chunk_bytes
    try:
        return data.encode_sources([Source("<test>", lambda: io.BytesIO(blob))], "utf-8", errors, None)
    finally:
        data.CHUNK_BYTES = CHUNK_BYTES


@settings(max_examples=60, deadline=None)
@given(text=unicode_text.filter(lambda t: "\x00" not in t), chunk_bytes=st.integers(1, 9))
def test_any_text_round_trips_in_sorted_vocabulary_whatever_the_chunk_boundaries(text, chunk_bytes):
    ids, vocab, oov, lengths = encode_in_chunks(text.encode("utf-8"), chunk_bytes)
    assert vocab.decode(ids) == text and oov == 0 and lengths == [len(text)]
    assert list(vocab.chars) == sorted(set(text))


@settings(max_examples=60, deadline=None)
@given(blob=st.binary(min_size=1, max_size=200), chunk_bytes=st.integers(1, 9))
def test_any_bytes_decode_exactly_or_give_one_clear_error(blob, chunk_bytes):
    try:
        ids, vocab, _, _ = encode_in_chunks(blob, chunk_bytes)
        assert vocab.decode(ids) == blob.decode("utf-8")
    except data.CharRNNError as error:
        assert str(error).startswith("<test>: ") and "\n" not in str(error)
    text = blob.replace(b"\x00", b"")
    if text:  # with --errors replace, anything without NUL bytes reads, as Python itself would decode it
        ids, vocab, _, _ = encode_in_chunks(text, chunk_bytes, "replace")
        assert vocab.decode(ids) == text.decode("utf-8", "replace")
