"""The shareable folder (export --format hf): what -c reads back, checked as a .pt file is."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from charrnn import checkpoint, export, hf
from charrnn.cli import app, info
from charrnn.errors import CharRNNError


@pytest.fixture(scope="module")
def folder(tiny_run, tmp_path_factory) -> Path:
    exported = tmp_path_factory.mktemp("hf") / "tiny"
    export.export(str(tiny_run), "hf", exported)
    return exported


def sampled(source: Path) -> str:
    """`charrnn sample -c SOURCE --temp 0`, run in this process."""
    arguments = ["sample", "-c", str(source), "--temp", "0", "--length", "200", "--prime", "All:", "--device", "cpu"]
    return CliRunner().invoke(app, arguments, catch_exceptions=False).stdout


def test_the_folder_holds_the_runs_model_and_a_card(folder, tiny_run):
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    original = checkpoint.load_checkpoint(tiny_run / checkpoint.BEST)
    loaded = checkpoint.load_checkpoint(checkpoint.resolve_checkpoint(str(folder)))
    assert loaded.vocab == original.vocab and loaded.model_config == original.model_config
    assert all(torch.equal(loaded.weights[name], tensor) for name, tensor in original.weights.items())
    assert loaded.corpus_args is None  # paths on the machine that trained it stay there
    card = (folder / hf.CARD).read_text("utf-8")
    assert "bits per character" in card and "charrnn sample -c tiny --temp 0.8 --seed 1337" in card


def test_sample_from_the_folder_equals_sample_from_the_run(folder, tiny_run, cli):
    from_run = sampled(tiny_run)
    assert cli("sample", "-c", folder, "--temp", "0", "--length", "200", "--prime", "All:", "--device", "cpu").stdout == from_run
    assert len(from_run) == len("All:") + 200 + 1


def rewritten(folder: Path, target: Path, change) -> Path:
    """A copy of the exported folder with `change` applied to its config (a dict) and weights (a dict), as a
    stranger could write it (without the weights' checksum, which other tools leave out)."""
    config = json.loads((folder / hf.CONFIG).read_text())
    del config[hf.CHECKSUM]
    weights = checkpoint.load_checkpoint(folder).weights
    change(config, weights)
    target.mkdir()
    (target / hf.CONFIG).write_text(json.dumps(config))
    save_file(weights, target / hf.WEIGHTS)
    return target


def widened(config, weights):
    weights["head.bias"] = torch.zeros(99)


def integers(config, weights):
    weights["head.bias"] = weights["head.bias"].long()


@pytest.mark.parametrize("change, message", [
    (lambda c, w: c.update(format_version=99), "newer than this charrnn"),
    (lambda c, w: c["model_config"].update(vocab_size=3), "vocab_size 3"),
    (lambda c, w: c["model_config"].update(layers="2"), "layers of the wrong type"),
    (lambda c, w: c.update(history=[{"step": "x"}]), "history has a step"),
    (lambda c, w: c.pop("vocab"), "not a charrnn checkpoint"),
    (widened, "head.bias is \\[99\\]"),
    (integers, "not a table of floating-point tensors"),
])
def test_a_strangers_folder_gets_the_checks_a_pt_file_gets(folder, tmp_path, change, message):
    with pytest.raises(CharRNNError, match=message):
        checkpoint.load_checkpoint(rewritten(folder, tmp_path / "bad", change))


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / hf.CONFIG).write_text("{not json"), "not valid JSON"),
    (lambda f: (f / hf.WEIGHTS).write_bytes((f / hf.WEIGHTS).read_bytes()[:-7]), "not a readable safetensors file"),
    (lambda f: (f / hf.WEIGHTS).write_bytes(b"\x00" * 64), "not a readable safetensors file"),
])
def test_damaged_files_give_one_line(folder, tmp_path, damage, message):
    copy = rewritten(folder, tmp_path / "copy", lambda c, w: None)
    damage(copy)
    with pytest.raises(CharRNNError, match=message):
        checkpoint.load_checkpoint(checkpoint.resolve_checkpoint(str(copy)))


def test_a_flipped_bit_in_the_weights_is_refused(folder, tmp_path):
    copy = Path(shutil.copytree(folder, tmp_path / "copy"))
    data = bytearray((copy / hf.WEIGHTS).read_bytes())
    data[-5] ^= 0x10  # in the last tensor's bytes: the header, and so the shapes, still read well
    (copy / hf.WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(CharRNNError, match="corrupted"):
        checkpoint.load_checkpoint(copy)


def test_info_on_the_folder_shows_the_whole_runs_history(folder, tiny_run, capsys):
    info(checkpoint_arg=str(folder), as_json=True, plot=None)
    details = json.loads(capsys.readouterr().out)
    rows = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert details["checkpoint"] == str(folder) and details["history"] == rows


def test_charrnn_load_reads_the_folder(folder, tiny_run):
    import charrnn

    settings = dict(prime="All:\n", length=60, temperature=0, precision="fp32")
    assert charrnn.load(folder).generate(**settings) == charrnn.load(tiny_run).generate(**settings)


def resaved(folder: Path, target: Path, change=lambda weights: None, **save_options) -> Path:
    """A copy of the folder whose model.safetensors safetensors wrote again (config.json, checksum and all, kept)."""
    copy = Path(shutil.copytree(folder, target))
    weights = dict(reversed(checkpoint.load_checkpoint(folder).weights.items()))
    change(weights)
    save_file(weights, copy / hf.WEIGHTS, **save_options)
    return copy


def test_weights_saved_again_unchanged_still_verify(folder, tmp_path):
    copy = resaved(folder, tmp_path / "copy", metadata={"format": "pt", "saved_by": "another tool"})
    assert (copy / hf.WEIGHTS).read_bytes() != (folder / hf.WEIGHTS).read_bytes()  # other order, other metadata
    loaded = checkpoint.load_checkpoint(copy)
    assert all(torch.equal(loaded.weights[name], tensor) for name, tensor in checkpoint.load_checkpoint(folder).weights.items())


@pytest.mark.parametrize("change", [
    lambda weights: weights["head.bias"].add_(1e-6),
    lambda weights: weights.update({"head.bias": weights["head.bias"].to(torch.float64)}),
    lambda weights: weights.update({"head.bias": weights["head.bias"].reshape(1, -1)}),
])
def test_weights_changed_and_saved_again_are_refused(folder, tmp_path, change):
    with pytest.raises(CharRNNError, match="corrupted"):
        checkpoint.load_checkpoint(resaved(folder, tmp_path / "copy", change))


def test_a_folder_hashed_by_its_files_bytes_still_verifies(folder, tmp_path):
    # charrnn 0.1.0 wrote the SHA-256 of model.safetensors' bytes
    copy = Path(shutil.copytree(folder, tmp_path / "copy"))
    config = json.loads((copy / hf.CONFIG).read_text())
    config[hf.CHECKSUM] = hashlib.sha256((copy / hf.WEIGHTS).read_bytes()).hexdigest()
    (copy / hf.CONFIG).write_text(json.dumps(config))
    assert checkpoint.load_checkpoint(copy).vocab == config["vocab"]
