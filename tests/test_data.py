"""Corpus sources, the one-pass streaming encoder (the same ids as the sorted vocabulary, at any size and
alphabet), the cache, and the TBPTT windows."""

import codecs
import io
import os

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings, strategies as st

from charrnn import data, streams
from charrnn.data import IGNORE, Source, encode_with_new_vocab, evaluation_windows, load_corpus, split, training_windows
from charrnn.errors import CharRNNError
from charrnn.vocab import Vocab, code_points


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))


def test_directory_reads_text_files_in_sorted_order_and_skips_binary(tmp_path):
    folder = tmp_path / "texts"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("BBB", encoding="utf-8")
    (folder / "a.txt").write_text("AAA", encoding="utf-8")
    (folder / "sub" / "c.txt").write_text("CCC", encoding="utf-8")
    (folder / "image.bin").write_bytes(b"\x89PNG\x00\x00\x01")
    (folder / ".hidden").write_text("HHH", encoding="utf-8")
    corpus = load_corpus([str(folder)])
    assert corpus.vocab.decode(corpus.ids) == "AAABBBCCC"
    assert corpus.name == "texts"


def test_chunks_split_inside_a_multibyte_character(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CHUNK_BYTES", 5)
    path = tmp_path / "k.txt"
    text = "한국어 텍스트 🙂 끝\n" * 3
    path.write_text(text, encoding="utf-8")
    corpus = load_corpus([str(path)], use_cache=False)
    assert corpus.vocab.decode(corpus.ids) == text


def test_invalid_utf8_names_the_file_and_byte_offset(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"hello \xff world")
    with pytest.raises(CharRNNError, match=r"bad.txt: not valid utf-8 at byte 6.*--encoding.*--errors replace"):
        load_corpus([str(path)])
    assert "\ufffd" in load_corpus([str(path)], errors="replace").vocab.chars
    latin = load_corpus([str(path)], encoding="latin-1")
    assert latin.vocab.decode(latin.ids) == "hello \xff world"


def test_a_byte_order_mark_opening_each_file_is_no_character(tmp_path):
    first, second, bad = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "bad.txt"
    first.write_bytes(codecs.BOM_UTF8 + b"ab\n")
    second.write_bytes(codecs.BOM_UTF8 + "cd\ufeff\n".encode())
    corpus = load_corpus([str(first), str(second)], encoding="UTF8")
    assert corpus.vocab.decode(corpus.ids) == "ab\ncd\ufeff\n"  # inside a text, U+FEFF is a character
    assert load_corpus([str(first)], vocab=Vocab("ab\n")).oov == 0
    with streams.text_input(str(first)) as stream:  # score, viz, a piped prime
        assert stream.read() == "ab\n"
    bad.write_bytes(codecs.BOM_UTF8 + b"hello \xff")
    with pytest.raises(CharRNNError, match=r"bad.txt: not valid utf-8 at byte 9"):
        load_corpus([str(bad)])


def test_text_read_with_a_vocabulary_is_put_in_its_form_whole_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CHUNK_BYTES", 5)  # "cafe" | "\u0301...": the accent in the next chunk
    path = tmp_path / "nfd.txt"
    path.write_text("cafe\u0301\n" * 5, encoding="utf-8")
    corpus = load_corpus([str(path)], vocab=Vocab("\ncaf\u00e9"), use_cache=False)
    assert corpus.oov == 0 and corpus.vocab.decode(corpus.ids) == "caf\u00e9\n" * 5


def test_encoding_with_a_given_vocabulary_counts_unknown_characters(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("abcxyzabc", encoding="utf-8")
    corpus = load_corpus([str(path)], vocab=Vocab("abc"))
    assert corpus.oov == 3
    assert corpus.vocab.decode(corpus.ids) == "abcabc"


def test_cache_is_reused_while_the_file_is_unchanged(tmp_path, monkeypatch):
    path = tmp_path / "t.txt"
    path.write_text("hello world\n" * 10, encoding="utf-8")
    first = load_corpus([str(path)])
    calls = []
    original = data.encode_sources
    monkeypatch.setattr(data, "encode_sources", lambda *a: calls.append(1) or original(*a))
    again = load_corpus([str(path)])
    assert calls == [] and np.array_equal(again.ids, first.ids)
    path.write_text("changed text\n" * 10, encoding="utf-8")
    changed = load_corpus([str(path)])
    assert calls == [1] and changed.vocab.decode(changed.ids) == "changed text\n" * 10


def test_windows_continue_each_stream():
    ids = np.arange(1000) % 251
    windows = training_windows(ids.astype(np.uint8), batch_size=4, seq_len=10)
    first_inputs, first_targets = windows[0]
    second_inputs, _ = windows[1]
    assert first_inputs.shape == (4, 10)
    assert (first_targets[:, :-1] == first_inputs[:, 1:]).all()
    # row b of window 1 starts where row b of window 0 stopped
    assert (second_inputs[:, 0] == first_targets[:, -1]).all()


@pytest.mark.parametrize("dtype", [np.uint8, np.int16])
def test_evaluation_windows_predict_every_character_once(dtype):
    ids = (np.arange(1000) % 97).astype(dtype)
    for length in (2, 50, 999, 1000):
        windows = evaluation_windows(ids[:length], seq_len=32)
        targets = torch.cat([windows[i][1] for i in range(len(windows))], dim=1).flatten()
        assert torch.equal(targets[targets != IGNORE], torch.from_numpy(ids[1:length].astype(np.int64)))
    assert evaluation_windows(ids[:50], seq_len=32).batch_size == 1
    # Held once: the windows read the ids themselves, and a share of the streams reads the same rows.
    assert windows.ids.base is ids or windows.ids is ids
    share = windows.rows(slice(1, 3))
    assert all(torch.equal(share[i][j], windows[i][j][1:3]) for i in range(len(windows)) for j in (0, 1))


def test_corpus_shorter_than_a_window_is_a_clear_error():
    with pytest.raises(CharRNNError, match="too short"):
        training_windows(np.arange(20, dtype=np.uint8), batch_size=4, seq_len=10)


def test_split_holds_out_the_end():
    train, val = split(np.arange(100), 0.1)
    assert len(train) == 90 and val[0] == 90


def test_the_built_in_corpus_validates_on_every_tenth_file():
    lengths = [3] * 25
    ids = np.repeat(np.arange(25, dtype=np.uint8), 3)  # file i is three copies of i
    corpus = data.Corpus(ids, Vocab("".join(map(chr, range(65, 90)))), "python-stdlib", file_lengths=lengths)
    train, val = corpus.split(0.1)
    assert np.array_equal(np.unique(val), [9, 19]) and len(train) + len(val) == len(ids)
    assert np.array_equal(data.Corpus(ids, corpus.vocab, "x").split(0.1)[1], ids[-7:])  # other corpora: the end


def test_built_in_corpus_records_its_files(monkeypatch, tmp_path):
    files = [tmp_path / f"{name}.py" for name in "abc"]
    for index, path in enumerate(files):
        path.write_text("x = 1\n" * (index + 1), encoding="utf-8")
    monkeypatch.setattr(data, "builtin_sources", lambda: [data.file_source(p) for p in files])
    for _ in range(2):  # encoded, then from the cache
        assert load_corpus([]).file_lengths == [6, 12, 18]


@pytest.mark.parametrize("size", [2**20 + 1, 20_000_000])
def test_stdin_of_megabytes_grows_its_buffer(monkeypatch, size):
    """A stream of unknown size (stdin) outgrows the first buffer many times: 1 MB in 64 KB reads, and 20 MB."""
    if size < 2**21:
        monkeypatch.setattr(data, "CHUNK_BYTES", 1 << 16)
    text = "".join(chr(c) for c in range(32, 127)) + "\n"
    blob = (text * (size // len(text))).encode()
    ids, vocab, _, lengths = data.encode_sources([data.Source("<stdin>", lambda: io.BytesIO(blob))],
                                                 "utf-8", "strict", None)
    assert lengths == [len(blob)] and ids.flags.owndata and vocab.decode(ids[-len(text):]) == text


def test_a_fifo_is_read_like_stdin_and_a_socket_is_refused_by_its_kind(tmp_path):
    import os
    import socket
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text("through a pipe\n" * 10, encoding="utf-8"))
    writer.start()
    corpus = load_corpus([str(fifo)])
    writer.join()
    assert corpus.vocab.decode(corpus.ids) == "through a pipe\n" * 10
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(tmp_path / "sock"))
        with pytest.raises(CharRNNError, match="sock: is a socket"):
            load_corpus([str(tmp_path / "sock")])


def test_the_encoded_cache_is_private_and_a_damaged_entry_is_named_and_rebuilt(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("private words\n" * 10, encoding="utf-8")
    encoded = tmp_path / "cache" / "encoded"
    encoded.mkdir(parents=True, mode=0o755)  # as an earlier charrnn left it
    load_corpus([str(path)])
    assert encoded.stat().st_mode & 0o777 == 0o700
    assert {p.stat().st_mode & 0o777 for p in encoded.iterdir()} == {0o600}
    next(encoded.glob("*.npy")).write_bytes(b"\x93NUMPY garbage")
    said = []
    rebuilt = load_corpus([str(path)], log=said.append)
    assert rebuilt.vocab.decode(rebuilt.ids) == "private words\n" * 10
    assert len(said) == 1 and ".npy is damaged" in said[0]
    assert isinstance(load_corpus([str(path)], log=said.append).ids, np.memmap) and len(said) == 1


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
# What could begin a byte-order mark, cut short, is incomplete UTF-8 (CPython's incremental utf-8-sig drops it);
# a whole mark opening the input is no character.
@example(blob=b"\xef", chunk_bytes=1)
@example(blob=b"\xef\xbb", chunk_bytes=2)
@example(blob=b"\xef\xbb\xbfab\xef\xbb\xbf", chunk_bytes=1)
def test_any_bytes_decode_exactly_or_give_one_clear_error(blob, chunk_bytes):
    try:
        ids, vocab, _, _ = encode_in_chunks(blob, chunk_bytes)
        assert vocab.decode(ids) == blob.decode("utf-8-sig")  # whole, not incremental: it has no such flaw
    except data.CharRNNError as error:
        assert str(error).startswith("<test>: ") and "\n" not in str(error)
    text = blob.replace(b"\x00", b"")
    if text:  # with --errors replace, anything without NUL bytes reads, as Python itself would decode it
        ids, vocab, _, _ = encode_in_chunks(text, chunk_bytes, "replace")
        assert vocab.decode(ids) == text.decode("utf-8-sig", "replace")
