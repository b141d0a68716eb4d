"""Every file charrnn writes goes through one writer: never through a link, never half of one, never over a
user's file unasked (export), and what a killed writer left is swept by the next."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from charrnn import checkpoint, data, export, writes
from charrnn.errors import CharRNNError
from charrnn.trainer import write_metrics
from conftest import ENGLISH

SECRET = b"the user's own file\n"


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_bytes(SECRET)
    return path


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()  # its pid has certainly exited
    return process.pid


def test_a_link_at_the_target_is_refused_and_its_file_untouched(tmp_path, secret):
    target = tmp_path / "best.pt"
    target.symlink_to(secret)
    with pytest.raises(CharRNNError, match="is a symbolic link"):
        writes.write_atomically(target, b"new")
    assert secret.read_bytes() == SECRET and target.is_symlink()
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_link_planted_at_the_temporary_name_is_not_followed(tmp_path, secret):
    target = tmp_path / "last.pt"
    writes.temporary_name(target).symlink_to(secret)
    writes.write_atomically(target, b"new")
    assert target.read_bytes() == b"new" and not target.is_symlink()
    assert secret.read_bytes() == SECRET and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("kind", ["symlink", "hard link"])
def test_a_file_appended_to_in_place_must_be_charrnns_own(tmp_path, secret, kind):
    metrics = tmp_path / "metrics.jsonl"
    metrics.symlink_to(secret) if kind == "symlink" else os.link(secret, metrics)
    with pytest.raises(CharRNNError, match="symbolic link|not a plain file"), writes.appending(metrics) as f:
        f.write("{}\n")
    assert secret.read_bytes() == SECRET


@pytest.mark.parametrize("name", ["best.pt", "last.pt", "metrics.jsonl"])
def test_a_run_file_that_is_a_link_is_refused(tmp_path, secret, name):
    """best.pt and last.pt go through save_checkpoint, metrics.jsonl through write_metrics: neither follows a link."""
    (tmp_path / name).symlink_to(secret)
    with pytest.raises(CharRNNError, match="is a symbolic link"):
        if name == "metrics.jsonl":
            write_metrics(tmp_path, [{"step": 1}])
        else:
            checkpoint.save_checkpoint({"model": {}}, tmp_path / name)
    assert secret.read_bytes() == SECRET


def test_a_write_sweeps_what_a_killed_writer_of_that_name_left(tmp_path):
    orphan = tmp_path / f".model.html.{dead_pid()}.tmp"
    orphan.write_bytes(b"half a page")
    writes.write_atomically(tmp_path / "model.html", b"page")
    assert not orphan.exists()


@pytest.mark.parametrize("entry", [".npy", ".json"])
def test_a_cache_entry_that_is_a_link_is_never_written_through(tmp_path, secret, monkeypatch, entry):
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(ENGLISH, encoding="utf-8")
    key = data.cache_key(data.resolve_sources([str(corpus)]), "utf-8", "strict", None)
    folder = data.encoded_dir()
    folder.mkdir(parents=True)
    (folder / f"{key}{entry}").symlink_to(secret)
    for _ in range(2):  # the first read finds the link; the second finds what the first left
        loaded = data.load_corpus([str(corpus)])
        assert loaded.vocab.decode(loaded.ids[:20]) == ENGLISH[:20]
    assert secret.read_bytes() == SECRET


@pytest.fixture(scope="module")
def payload(tiny_run) -> dict:
    return checkpoint.load_checkpoint(checkpoint.resolve_checkpoint(str(tiny_run)))


@pytest.mark.parametrize("format_name", ["html", "onnx"])
def test_export_refuses_an_existing_file_unless_forced_and_a_link_always(tmp_path, secret, payload, format_name):
    write = export.FORMATS[format_name]
    existing = tmp_path / f"model.{format_name}"
    existing.write_bytes(SECRET)
    with pytest.raises(CharRNNError, match="already exists; pass --force"):
        write(payload, existing, False)
    assert existing.read_bytes() == SECRET
    link = tmp_path / f"link.{format_name}"
    link.symlink_to(secret)
    with pytest.raises(CharRNNError, match="is a symbolic link"):
        write(payload, link, True)
    assert secret.read_bytes() == SECRET


def test_export_hf_refuses_to_replace_a_folders_files_unless_forced(tmp_path, secret, payload):
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "README.md").write_bytes(SECRET)
    (folder / "config.json").write_bytes(SECRET)
    with pytest.raises(CharRNNError, match="README.md already exist|config.json.*README.md already exist"):
        export.write_hf(payload, folder, False)
    assert (folder / "README.md").read_bytes() == SECRET and not (folder / "model.safetensors").exists()
    orphan = folder / f".model.safetensors.{dead_pid()}.tmp"
    orphan.write_bytes(b"half the weights")  # what a killed export left
    export.write_hf(payload, folder, True)
    assert (folder / "README.md").read_bytes() != SECRET and not orphan.exists()
    linked = tmp_path / "linked"
    linked.symlink_to(folder)
    with pytest.raises(CharRNNError, match="is a symbolic link"):
        export.write_hf(payload, linked, True)


def test_a_killed_exports_temporary_is_swept_even_when_the_export_is_refused(tmp_path, payload):
    page = tmp_path / "model.html"
    page.write_bytes(b"an earlier page")
    orphan = tmp_path / f".model.html.{dead_pid()}.tmp"
    orphan.write_bytes(b"half a page")
    with pytest.raises(CharRNNError, match="already exists"):
        export.FORMATS["html"](payload, page, False)
    assert not orphan.exists()


def test_export_force_through_the_command(cli, tiny_run):
    page = cli.cwd / "page.html"
    page.write_bytes(SECRET)
    refused = cli("export", tiny_run, "--format", "html", "-o", page, check_rc=1)
    assert refused.stderr.count("\n") == 1 and "--force" in refused.stderr and page.read_bytes() == SECRET
    cli("export", tiny_run, "--format", "html", "-o", page, "--force")
    assert page.read_bytes() != SECRET


def test_info_plot_and_viz_html_replace_a_users_file_only_when_forced(cli, tiny_run):
    from charrnn import runs

    image, page = cli.cwd / "curve.png", cli.cwd / "page.html"
    for path in (image, page):
        path.write_bytes(SECRET)
    with pytest.raises(CharRNNError, match="already exists"):
        runs.describe(str(tiny_run), image)
    refused = cli("viz", "-c", tiny_run, "--text", "First", "--html", page, check_rc=1)
    assert refused.stderr.count("\n") == 1 and "--force" in refused.stderr
    assert image.read_bytes() == SECRET and page.read_bytes() == SECRET
    cli("viz", "-c", tiny_run, "--text", "First", "--html", page, "--force")
    assert b"<html" in page.read_bytes()
