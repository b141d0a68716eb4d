"""Named corpora: catalogue, fetch once from a local file:// mirror, verify, reuse; never the network."""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import pytest

from charrnn import corpora
from charrnn.errors import CharRNNError
from conftest import ENGLISH, TINY_MODEL

TEXT = ENGLISH * 20


def mirror(tmp_path: Path, entries: dict) -> Path:
    """Write a catalogue whose URLs point at local files."""
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps(entries), encoding="utf-8")
    return path


def plain_entry(source: Path, **changes) -> dict:
    data = source.read_bytes()
    entry = {"url": source.as_uri(), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
             "license": "public domain", "description": "a tiny test corpus"}
    return {**entry, **changes}


@pytest.fixture
def catalogue(tmp_path, monkeypatch):
    source = tmp_path / "mirror" / "tiny.txt"
    source.parent.mkdir()
    source.write_text(TEXT, encoding="utf-8")
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))

    def make(**changes) -> Path:
        path = mirror(tmp_path, {"tiny": plain_entry(source, **changes)})
        monkeypatch.setenv("CHARRNN_CATALOGUE", str(path))
        return source

    return make


def test_shipped_catalogue_is_complete_and_invents_no_hash(monkeypatch):
    monkeypatch.delenv("CHARRNN_CATALOGUE", raising=False)
    entries = corpora.load_catalogue()
    assert {"tinyshakespeare", "enwik8", "text8"} <= set(entries)
    shakespeare = entries["tinyshakespeare"]
    assert shakespeare.sha256 == "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    assert shakespeare.bytes == 1115394
    for entry in entries.values():
        assert entry.url.startswith("http") and entry.license and entry.description
        assert entry.sha256 is None and entry.unverified or re.fullmatch(r"[0-9a-f]{64}", entry.sha256)


def test_the_catalogue_is_package_data_so_a_wheel_carries_it():
    # A file beside the package (not in it) works from a checkout but is missing after `pip install .`.
    package = Path(corpora.__file__).parent
    assert corpora.CATALOGUE.parent == package and corpora.CATALOGUE.is_file()
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((package.parent / "pyproject.toml").read_text("utf-8"))
    declared = pyproject["tool"]["setuptools"]["package-data"]["charrnn"]
    assert any(fnmatch.fnmatch(corpora.CATALOGUE.name, pattern) for pattern in declared)


def test_fetch_downloads_once_then_reuses(catalogue):
    source = catalogue()
    seen = []
    path = corpora.fetch("tiny", progress=lambda done, total: seen.append((done, total)))
    assert path.read_text("utf-8") == TEXT and path.is_relative_to(corpora.user_cache_dir())
    assert seen and seen[-1][0] == len(TEXT.encode())
    source.unlink()  # the mirror is gone: a second fetch must not need it
    assert corpora.fetch("tiny") == path


def test_a_download_with_the_wrong_hash_is_refused_and_removed(catalogue):
    catalogue(sha256="0" * 64)
    with pytest.raises(CharRNNError, match="sha256"):
        corpora.fetch("tiny")
    assert not any(corpora.corpus_dir("tiny").iterdir())


def test_offline_error_says_where_to_put_the_file(catalogue, tmp_path):
    source = catalogue()
    missing = tmp_path / "nowhere.txt"
    catalogue(url=missing.as_uri())
    with pytest.raises(CharRNNError) as raised:
        corpora.fetch("tiny")
    target = corpora.corpus_dir("tiny") / "tiny.txt"
    assert str(target) in str(raised.value)
    target.write_bytes(source.read_bytes())  # put there by hand: verified, then used
    assert corpora.fetch("tiny") == target
    target.write_text("tampered", encoding="utf-8")
    with pytest.raises(CharRNNError, match="delete it"):
        corpora.fetch("tiny")


def test_zip_archive_without_hash_warns_and_extracts(tmp_path, monkeypatch):
    archive = tmp_path / "tiny.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("tiny", TEXT)
    archive.write_bytes(buffer.getvalue())
    entry = plain_entry(archive, sha256=None, unverified="none published", archive="zip", member="tiny")
    monkeypatch.setenv("CHARRNN_CATALOGUE", str(mirror(tmp_path, {"tiny": entry})))
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    messages = []
    path = corpora.fetch("tiny", log=messages.append)
    assert path.read_text("utf-8") == TEXT
    assert any("cannot be verified" in m for m in messages)
    assert corpora.fetch("tiny", log=messages.append) == path


def test_unknown_name_lists_the_known_ones(catalogue):
    catalogue()
    with pytest.raises(CharRNNError, match="known: tiny"):
        corpora.fetch("nope")


def test_train_by_name_then_list_shows_it_cached(cli, tmp_path):
    source = tmp_path / "mirror.txt"
    source.write_text(TEXT, encoding="utf-8")
    cli.env["CHARRNN_CATALOGUE"] = str(mirror(tmp_path, {"tiny": plain_entry(source)}))
    trained = cli("train", "tiny", "--steps", "2", "-o", "run", *TINY_MODEL)
    assert "downloading corpus 'tiny'" in trained.stderr
    listed = cli("corpus", "list", "--json")
    (record,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert record["name"] == "tiny" and record["cached"] is True
    unknown = cli("train", "absent", "--steps", "1", check_rc=1)
    assert unknown.stderr.startswith("charrnn: error: absent") and "corpus list" in unknown.stderr
