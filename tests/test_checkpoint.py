"""A stranger's checkpoint cannot run code or take the machine: the archive, the torch that reads it, the
payload's fields and the weights' shapes are checked before anything is inflated, allocated or printed."""

from __future__ import annotations

import copy
import hashlib
import io
import os
import re
import shutil
import struct
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charrnn import checkpoint, cli, corpora
from charrnn.config import MODEL_KINDS as KINDS
from charrnn.config import ModelConfig
from charrnn.errors import CharRNNError, escaped
from charrnn.model import CharRNN, model_from_checkpoint, parameter_shapes


def edited(good: Path, target: Path, change) -> Path:
    """A copy of the checkpoint `good` with `change` applied to its payload, saved as torch.save would."""
    payload = copy.deepcopy(torch.load(good, weights_only=True))
    change(payload)
    torch.save(payload, target)
    return target


def compressed(good: Path, target: Path) -> Path:
    """The same parts, deflated: what a zip bomb looks like (torch.save stores every part as it is)."""
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for part in source.infolist():
            archive.writestr(part.filename, source.read(part))
    return target


def overlapping(good: Path, target: Path, copies: int) -> Path:
    """The archive with its first part listed `copies` more times in the central directory: entries that all
    point at the same bytes, so that reading every entry reads them again and again."""
    data = good.read_bytes()
    with zipfile.ZipFile(good) as archive:
        start, count = archive.start_dir, len(archive.infolist())
    lengths = struct.unpack("<3H", data[start + 28 : start + 34])  # name, extra field, comment
    first = data[start : start + 46 + sum(lengths)]
    end = data.rindex(b"PK\x06\x06") if b"PK\x06\x06" in data else data.rindex(b"PK\x05\x06")
    directory = data[start:end] + first * copies  # the zip64 records are dropped: the classic end record will do
    end_record = struct.pack(zipfile.structEndArchive, zipfile.stringEndArchive, 0, 0,
                             count + copies, count + copies, len(directory), start, 0)
    target.write_bytes(data[:start] + directory + end_record)
    return target


# name: (change to a good payload, what the one-line refusal must say)
MALFORMED = {
    "config_larger_than_weights": (lambda p: p["model_config"].update(hidden=200_000), "head.weight is [34, 32] where the config needs [34, 200000]"),
    "a_billion_layers": (lambda p: p["model_config"].update(layers=10**9), "1000000000 layers"),
    "vocab_of_another_length": (lambda p: p.update(vocab=p["vocab"][:-1]), "vocab_size 34 for 33 characters"),
    "weights_as_free_views": (lambda p: p.update(model={k: torch.zeros(1).expand(v.shape[0] * 1000, *v.shape[1:])
                                                         for k, v in p["model"].items()}), "claim more elements than the file"),
    "integer_weights": (lambda p: p["model"].update({"head.bias": p["model"]["head.bias"].long()}), "floating-point tensors"),
    "an_extra_tensor": (lambda p: p["model"].update(extra=torch.zeros(3)), "'extra' is not part of the network"),
    "a_missing_tensor": (lambda p: p["model"].pop("head.bias"), "head.bias is missing"),
    "model_not_a_dict": (lambda p: p.update(model=[1, 2]), "its model is not a table"),
    "vocab_not_a_string": (lambda p: p.update(vocab=7), "its vocab has the wrong type (int)"),
    "model_config_not_a_dict": (lambda p: p.update(model_config=[1]), "its model_config is a list"),
    "layers_a_string": (lambda p: p["model_config"].update(layers="x"), "layers of the wrong type (str)"),
    "dropout_out_of_range": (lambda p: p["model_config"].update(dropout=2.0), "model_config is out of range"),
    "train_config_garbage": (lambda p: p.update(train_config="garbage"), "its train_config is a str"),
    "seq_len_a_bool": (lambda p: p["train_config"].update(seq_len=True), "seq_len of the wrong type (bool)"),
    "val_loss_a_string": (lambda p: p.update(val_loss="low"), "its val_loss has the wrong type (str)"),
    "history_garbage": (lambda p: p.update(history=[1, "x"]), "its history has the wrong type"),
    "history_loss_a_string": (lambda p: p.update(history=[{"step": 1, "val_loss": "low"}]), "not a number"),
    "history_holding_a_tensor": (lambda p: p.update(history=[{"step": 1, "note": torch.zeros(1)}]), "more than plain data"),
    "init_from_without_a_path": (lambda p: p.update(init_from={"corpus": 3}), "its init_from names no checkpoint"),
    "corpus_args_not_strings": (lambda p: p.update(corpus_args=[3]), "its corpus_args has the wrong type"),
}


@pytest.fixture(scope="module")
def good(tiny_run) -> Path:
    return tiny_run / "best.pt"


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_payload_gets_one_clear_line(good, tmp_path, name):
    change, fragment = MALFORMED[name]
    with pytest.raises(CharRNNError) as refused:
        checkpoint.load_checkpoint(edited(good, tmp_path / "bad.pt", change))
    message = str(refused.value)
    assert fragment in message and "bad.pt" in message and "\n" not in message, message


def test_the_sha256_reported_is_of_the_file_the_payload_came_from(tiny_run, tmp_path, monkeypatch):
    # A run saving best.pt (a rename) while it is read: the payload is read again, from the new file.
    shutil.copy(tiny_run / checkpoint.BEST, tmp_path / "best.pt")
    load, loaded = checkpoint.load_checkpoint, []

    def saved_meanwhile(path):
        loaded.append(load(path))
        if len(loaded) == 1:
            shutil.copy(tiny_run / checkpoint.LAST, tmp_path / "next.pt")
            os.replace(tmp_path / "next.pt", path)
        return loaded[-1]

    monkeypatch.setattr(checkpoint, "load_checkpoint", saved_meanwhile)
    payload, digest = checkpoint.load_with_sha256(tmp_path / "best.pt")
    assert len(loaded) == 2 and payload is loaded[1]
    assert digest == hashlib.sha256((tiny_run / checkpoint.LAST).read_bytes()).hexdigest()


def test_good_checkpoints_still_load(tiny_run):
    for name in (checkpoint.BEST, checkpoint.LAST):
        model = model_from_checkpoint(checkpoint.load_checkpoint(tiny_run / name))
        assert model.num_parameters() > 0


@pytest.mark.parametrize("kind", KINDS)
def test_parameter_shapes_are_the_networks_own(kind):
    config = ModelConfig(vocab_size=7, model=kind, layers=2, hidden=5, embed=3)
    for impl in ("fused", "cells"):
        built = {name: tuple(t.shape) for name, t in CharRNN(config, impl=impl).state_dict().items()}
        assert parameter_shapes(config) == built


def test_old_torch_is_refused(good, monkeypatch):
    for version in ("2.9.1", "2.5.0+cu121", "1.13.1"):
        monkeypatch.setattr(torch, "__version__", version)
        with pytest.raises(CharRNNError, match=rf"torch {re.escape(version)} .*pip install 'torch>=2.10'"):
            checkpoint.load_checkpoint(good)
    monkeypatch.setattr(torch, "__version__", "2.10.0a0+git1234")
    assert checkpoint.load_checkpoint(good).vocab


def test_compressed_archive_is_refused_before_anything_inflates(good, tmp_path):
    with pytest.raises(CharRNNError, match="refused to load: it holds compressed parts"):
        checkpoint.load_checkpoint(compressed(good, tmp_path / "bomb.pt"))


def test_overlapping_entries_are_refused_before_anything_is_read(good, tmp_path):
    crafted = overlapping(good, tmp_path / "overlap.pt", copies=40)
    with zipfile.ZipFile(crafted) as archive:
        assert len(archive.infolist()) > 40  # a valid archive, as far as zipfile can tell
    with pytest.raises(CharRNNError, match=r"refused to load: its parts declare [\d,]+ bytes in a file of"):
        checkpoint.load_checkpoint(crafted)


def test_info_shows_a_checkpoints_strings_without_obeying_them(good, tmp_path, capsys):
    crafted = edited(good, tmp_path / "screen.pt", lambda p: p.update(
        corpus="\x1b[2Jwiped", device="cpu\r\n", init_from={"path": "/x\x1b]0;title\x07", "corpus": "\u202eevil"}))
    cli.info(checkpoint_arg=str(crafted), as_json=False, plot=None)
    shown = capsys.readouterr().out
    assert "\x1b" not in shown and "\r" not in shown and "\u202e" not in shown
    assert "\\x1b[2Jwiped" in shown and "cpu\\r\\n" in shown and "\\u202eevil" in shown
    assert escaped("Hangul 한글, emoji 🙂, tab\t") == "Hangul 한글, emoji 🙂, tab\\t"


@pytest.mark.parametrize("corpus_args", [["tinyshakespeare"], ["corpus.txt"], ["/no/such/dir"]])
def test_eval_never_reads_what_a_checkpoint_names_unless_it_is_a_local_path(good, tmp_path, monkeypatch, corpus_args):
    monkeypatch.setattr(corpora, "fetch", lambda *a, **k: pytest.fail("eval downloaded a corpus a checkpoint named"))
    monkeypatch.chdir(good.parent.parent)  # where the run's corpus.txt is: relative paths are refused all the same
    crafted = edited(good, tmp_path / "elsewhere.pt", lambda p: p.update(corpus_args=corpus_args))
    with pytest.raises(CharRNNError, match=r"is not a file or directory on this machine.*pass FILE"):
        evaluate(crafted)


def test_eval_says_what_it_reads(good, capsys):
    evaluate(good)
    said = capsys.readouterr().err
    assert said == f"charrnn: scoring the validation split of {(good.parent.parent / 'corpus.txt').resolve()}\n"


def evaluate(path: Path) -> None:
    """`charrnn eval -c PATH --json`, called in this process."""
    cli.evaluate(files=None, checkpoint_arg=str(path), as_json=True, device="cpu", impl="fused",
                 encoding="utf-8", errors="strict")


# Damaged files: a correct load or one CharRNNError, never another exception (which the CLI would call a bug).
FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def loads_or_refuses(data: bytes, target: Path) -> None:
    target.write_bytes(data)
    try:
        model_from_checkpoint(checkpoint.load_checkpoint(target))
    except CharRNNError as error:
        assert "\n" not in str(error)


@FUZZ
@given(cut=st.floats(0, 1, exclude_max=True))
def test_truncated_checkpoint(good, tmp_path, cut):
    data = good.read_bytes()
    loads_or_refuses(data[: int(len(data) * cut)], tmp_path / "cut.pt")


@FUZZ
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)), min_size=1, max_size=8))
def test_bit_flipped_checkpoint(good, tmp_path, flips):
    data = bytearray(good.read_bytes())
    for where, bit in flips:
        data[int(len(data) * where)] ^= 1 << bit
    loads_or_refuses(bytes(data), tmp_path / "flipped.pt")


@FUZZ
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)), min_size=1, max_size=4))
def test_bit_flipped_pickle_with_valid_checksums(good, tmp_path, flips):
    """What a crafter would do: change the payload's pickle and write the archive again, checksums and all."""
    with zipfile.ZipFile(good) as source:
        parts = {part.filename: source.read(part) for part in source.infolist()}
    name = next(name for name in parts if name.endswith("data.pkl"))
    pickled = bytearray(parts[name])
    for where, bit in flips:
        pickled[int(len(pickled) * where)] ^= 1 << bit
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for part, data in parts.items():
            archive.writestr(part, bytes(pickled) if part == name else data)
    loads_or_refuses(buffer.getvalue(), tmp_path / "repickled.pt")


@FUZZ
@given(data=st.one_of(st.binary(max_size=2000), st.binary(max_size=200).map(lambda tail: b"PK\x03\x04" + tail)))
def test_random_bytes(tmp_path, data):
    loads_or_refuses(data, tmp_path / "random.pt")


def test_a_checkpoint_written_and_read_back_is_the_same(tiny_run, tmp_path):
    for name in (checkpoint.BEST, checkpoint.LAST):
        saved = checkpoint.load_checkpoint(tiny_run / name)
        checkpoint.save_checkpoint(saved, tmp_path / name)
        again = checkpoint.load_checkpoint(tmp_path / name)
        assert all(torch.equal(again.weights[key], tensor) for key, tensor in saved.weights.items())
        assert replace(again, weights={}, resume=None) == replace(saved, weights={}, resume=None)
        assert (again.resume is None) == (name == checkpoint.BEST)
    assert again.resume.progress == saved.resume.progress and again.resume.corpus_digest == saved.resume.corpus_digest


def test_a_last_pt_of_an_earlier_release_still_loads(tiny_run, tmp_path):
    def earlier(payload):  # before rank_rng, world_size and the text's digest, and before val_chars
        for key in ("rank_rng", "world_size", "corpus_digest", "corpus_chars"):
            payload.pop(key)
        payload["progress"].pop("val_chars")

    saved = checkpoint.load_checkpoint(edited(tiny_run / checkpoint.LAST, tmp_path / "old.pt", earlier))
    assert saved.resume.world_size == 1 and saved.resume.corpus_digest is None and saved.resume.progress.val_chars == 0
    assert saved.resume.progress.step == saved.step


@pytest.mark.parametrize("change, fragment", [
    (lambda p: p.pop("optimizer"), "its resume state lacks optimizer"),
    (lambda p: p.update(progress="x"), "not what charrnn saves"),
    (lambda p: p.update(rank_rng=[]), "its RNG states"),
])
def test_a_damaged_resume_state_gets_one_line(tiny_run, tmp_path, change, fragment):
    with pytest.raises(CharRNNError) as refused:
        checkpoint.load_checkpoint(edited(tiny_run / checkpoint.LAST, tmp_path / "bad.pt", change))
    assert fragment in str(refused.value) and "\n" not in str(refused.value)
