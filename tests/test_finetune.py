"""Fine-tuning (--init-from): old ids and rows stay put, new characters are added, and it beats a fresh start."""

import io
import math
from dataclasses import replace

import charrnn
import pytest
import torch

from charrnn import finetune
from charrnn.checkpoint import load_checkpoint
from charrnn.config import FineTuneDefaults, ModelConfig, TrainConfig
from charrnn.errors import CharRNNError
from charrnn.model import CharRNN
from charrnn.schema import Checkpoint
from charrnn.trainer import run_training as train
from charrnn.vocab import Vocab, code_points
from conftest import ENGLISH

HANGUL = "시민 일: 더 나아가기 전에 내 말을 들으시오.\n모두: 말하라, 말하라.\n\n"


def test_merged_vocabulary_keeps_old_ids_and_appends_new_characters():
    old = Vocab("\n abc")
    merged = finetune.merged_vocab(old.chars, "ab가나")
    assert merged.chars == "\n abc가나"
    text = "a c\nb"
    assert merged.encode(text).tolist() == old.encode(text).tolist()
    assert merged.decode(merged.encode("가 a나")) == "가 a나"
    assert merged.lookup(code_points("나")).tolist() == [6]


def test_grown_weights_copy_old_rows_and_add_mean_rows():
    torch.manual_seed(0)
    state = CharRNN(ModelConfig(vocab_size=5, layers=1, hidden=8, embed=4)).state_dict()
    grown = finetune.grown_weights(state, 7)
    for key in ("embedding.weight", "head.weight", "head.bias"):
        assert grown[key].shape[0] == 7
        assert torch.equal(grown[key][:5], state[key])
        assert torch.allclose(grown[key][5], state[key].mean(0))
    assert torch.equal(grown["rnn.weight_ih_l0"], state["rnn.weight_ih_l0"])
    model = CharRNN(ModelConfig(vocab_size=7, layers=1, hidden=8, embed=4))
    model.load_state_dict(grown)


def test_calibration_starts_new_characters_at_their_frequency():
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=4, layers=1, hidden=8, embed=4))
    big = CharRNN(ModelConfig(vocab_size=6, layers=1, hidden=8, embed=4))
    big.load_state_dict(finetune.grown_weights(model.state_dict(), 6))
    ids = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 0] * 20).numpy()  # id 4 is 10%, id 5 never occurs
    finetune.calibrate_new_characters(big, 4, ids, torch.device("cpu"))
    with torch.no_grad():
        probabilities = torch.softmax(big(torch.from_numpy(ids).long()[None])[0][0], -1).mean(0)
    assert 0.05 < probabilities[4] < 0.2
    assert probabilities[5] < probabilities[4]


def test_shape_flags_must_agree_with_the_checkpoint():
    init = Checkpoint(ModelConfig(vocab_size=5, model="gru", layers=2, hidden=16, embed=8), TrainConfig(), "abcde", {})
    config = finetune.model_config(init, {"layers": 2, "dropout": 0.1})
    assert (config.model, config.layers, config.hidden, config.embed, config.dropout) == ("gru", 2, 16, 8, 0.1)
    with pytest.raises(CharRNNError, match="--hidden 32 conflicts"):
        finetune.model_config(init, {"hidden": 32})
    # Unless set: dropout at least the fine-tuning default (a base with more keeps its own), and its lr.
    assert finetune.model_config(init, {}).dropout == FineTuneDefaults.min_dropout
    assert finetune.model_config(replace(init, model_config=replace(init.model_config, dropout=0.5)), {}).dropout == 0.5
    assert finetune.train_options({"steps": 3}) == {"lr": FineTuneDefaults.lr, "steps": 3}
    assert finetune.train_options({"lr": 0.05})["lr"] == 0.05


def test_fine_tuning_adds_hangul_beats_a_fresh_start_and_keeps_the_old_text(cli, tmp_path, tiny_run, train_here):
    # tiny_run: an LSTM (fused) trained on ENGLISH; the new corpus adds Hangul, a third of its characters.
    (tmp_path / "b.txt").write_text((ENGLISH.replace("First", "Second") + HANGUL) * 10, encoding="utf-8")
    (tmp_path / "a.txt").write_text(ENGLISH * 20, encoding="utf-8")

    cli("train", "b.txt", "--init-from", tiny_run, "--hidden", "32", "--seq-len", "32", "--batch-size", "4",
        "--eval-every", "10", "--steps", "20", "--impl", "cells", "-q", "-o", "tuned")
    # The rest in this process (`info`, `eval` and `sample` read a fine-tuned run as any other: test_cli).
    scratch = train(["b.txt"], ModelConfig(layers=1, hidden=32, embed=16),
                    TrainConfig(seq_len=32, batch_size=4, eval_every=10, steps=20, device="cpu"), tmp_path / "scratch")
    tuned = load_checkpoint(tmp_path / "tuned" / "best.pt")
    assert tuned.val_loss < scratch["best_val_loss"]

    assert tuned.init_from["path"] == str((tiny_run / "best.pt").resolve())
    assert tuned.init_from["corpus"] == "corpus"
    assert len(tuned.vocab) == tuned.init_from["vocab_size"] + len(set(HANGUL) - set(ENGLISH))

    # The old text still evaluates, every character known and far better than chance, and samples.
    lm = charrnn.load(tmp_path / "tuned")
    on_a = lm.evaluate_files(["a.txt"])
    assert on_a["oov"] == 0 and on_a["bpc"] < 0.75 * math.log2(tuned.init_from["vocab_size"])
    assert len(lm.generate("All:", length=20, seed=1)) == 20  # the text after the prime

    # Resume reads the new run's last.pt, with its grown vocabulary, not the init checkpoint.
    train_here("b.txt", init_from=str(tiny_run), out="tuned", resume=True, steps=30)
    resumed = load_checkpoint(tmp_path / "tuned" / "last.pt")
    assert resumed.step == 30 and resumed.init_from == tuned.init_from


# A conflicting shape flag and a missing --init-from checkpoint: test_errors' init_from_* cases.


def test_fine_tuning_announces_and_keeps_its_defaults(corpus_file, tiny_run, train_here, capsys):
    train_here(corpus_file, init_from=str(tiny_run), steps=2, out="defaults", quiet=False)
    said = capsys.readouterr().err
    assert f"--lr {FineTuneDefaults.lr:g} --dropout {FineTuneDefaults.min_dropout:g} (set them to choose)" in said
    tuned = load_checkpoint(corpus_file.parent / "defaults" / "best.pt")
    assert tuned.train_config.lr == FineTuneDefaults.lr
    assert tuned.model_config.dropout == FineTuneDefaults.min_dropout


def test_extended_corpus_keeps_the_text_and_reads_stdin_once(monkeypatch, tmp_path):
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    text = "ab 가 ba\n나"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(text.encode("utf-8"))))
    corpus = finetune.load_extended_corpus(["-"], "\n abc", "utf-8", "strict")
    assert corpus.vocab.chars == "\n abc가나"
    assert corpus.vocab.decode(corpus.ids) == text
