"""Fine-tuning: start a new run from a trained checkpoint, growing its vocabulary for the new corpus.

Old characters keep their ids (the merged vocabulary is the checkpoint's characters in their
order, then the new corpus's unseen ones appended), and their embedding and output rows are
copied unchanged, so everything the model knew still works.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import numpy as np
import torch

from charrnn import checkpoint
from charrnn.config import FineTuneDefaults, ModelConfig
from charrnn.data import Corpus, load_corpus
from charrnn.errors import CharRNNError
from charrnn.model import CharRNN
from charrnn.schema import Checkpoint
from charrnn.vocab import Vocab, code_points

SHAPE_FLAGS = ("model", "layers", "hidden", "embed")
CALIBRATION_CHARS = 4096  # contexts from the new text over which new characters' odds are set
COUNT_CHUNK = 1 << 24


def load_init(argument: str) -> tuple[Checkpoint, dict]:
    """The checkpoint to start from (a .pt file or a run directory, whose best.pt is preferred), and what the run
    remembers of it (`init_record`)."""
    path = checkpoint.resolve_checkpoint(argument)
    init = checkpoint.load_checkpoint(path)
    if init.weights["embedding.weight"].shape[0] != len(init.vocab):
        raise CharRNNError(f"{path}: its weights do not match its vocabulary; pass another checkpoint to --init-from")
    return init, init_record(init, str(path.resolve()))


def model_config(init: Checkpoint, requested: dict) -> ModelConfig:
    """The checkpoint's shape; a shape flag that disagrees with it is an error. Dropout is --dropout,
    else at least the fine-tuning default: a small text is overfit at once without it."""
    config = replace(init.model_config)
    for name in SHAPE_FLAGS:
        if name in requested and requested[name] != getattr(config, name):
            raise CharRNNError(
                f"--{name} {requested[name]} conflicts with the --init-from checkpoint "
                f"({name} {getattr(config, name)}); "
                f"the shape comes from the checkpoint: drop --{name}"
            )
    config.dropout = requested.get("dropout", max(config.dropout, FineTuneDefaults.min_dropout))
    return config


def train_options(requested: dict) -> dict:
    """The training options a fine-tuned run starts with: the user's, else the fine-tuning defaults."""
    return {"lr": FineTuneDefaults.lr, **requested}


def init_record(init: Checkpoint, path: str) -> dict:
    """What a fine-tuned run remembers about where it started (stored in its checkpoints)."""
    return {
        "path": path,
        "corpus": init.corpus,
        "corpus_args": init.corpus_args,
        "step": init.step,
        "val_loss": init.val_loss,
        "vocab_size": len(init.vocab),
    }


def describe(record: Optional[dict]) -> Optional[str]:
    """One line for `charrnn info`."""
    if not record:
        return None
    return f"{record['path']} (corpus {record.get('corpus')}, step {record.get('step')})"


def merged_vocab(base_chars: str, corpus_chars: str) -> Vocab:
    """The base characters in their order, then the corpus characters the base lacks: old ids stay put."""
    known = set(base_chars)
    return Vocab(base_chars + "".join(c for c in corpus_chars if c not in known))


def load_extended_corpus(corpus_args: list[str], base_chars: str, encoding: str, errors: str) -> Corpus:
    """The corpus encoded with the base vocabulary grown by the characters it adds."""
    corpus = load_corpus(corpus_args, encoding, errors)
    vocab = merged_vocab(base_chars, corpus.vocab.chars)
    if vocab.chars == corpus.vocab.chars:
        return corpus
    # Remap the ids rather than encode again: stdin cannot be read twice.
    new_ids = vocab.lookup(code_points(corpus.vocab.chars)).astype(vocab.dtype)
    ids = np.empty(len(corpus.ids), dtype=vocab.dtype)
    for start in range(0, len(ids), COUNT_CHUNK):
        ids[start : start + COUNT_CHUNK] = new_ids[np.asarray(corpus.ids[start : start + COUNT_CHUNK])]
    return replace(corpus, ids=ids, vocab=vocab)


def grown_weights(state: dict, vocab_size: int) -> dict:
    """The checkpoint's weights with rows added for new characters; the old rows are copied unchanged.

    A new character reads as the average known character, and its output row and bias are the
    mean of the old ones, so its logit is the mean of the old logits: calibrate_new_characters
    then lifts it to the character's frequency.
    """
    old_size = state["embedding.weight"].shape[0]
    added = vocab_size - old_size
    if added < 0:
        raise CharRNNError("the new vocabulary is smaller than the checkpoint's; this is a bug in charrnn")
    grown = dict(state)
    for key in ("embedding.weight", "head.weight", "head.bias"):
        rows = state[key].float()
        grown[key] = torch.cat([rows, rows.mean(0, keepdim=True).expand(added, *rows.shape[1:])]).to(state[key].dtype)
    return grown


def character_counts(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """How often each id occurs, in chunks so that a big corpus is never copied whole."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for start in range(0, len(ids), COUNT_CHUNK):
        counts += np.bincount(np.asarray(ids[start : start + COUNT_CHUNK]), minlength=vocab_size)
    return counts


@torch.no_grad()
def calibrate_new_characters(model: CharRNN, old_size: int, ids: np.ndarray, device: torch.device) -> None:
    """Set new characters' output biases so that each starts at its frequency in `ids`.

    Started far below it, a new character would cost many nats for hundreds of steps (Adam moves a
    bias by about lr a step); started at its frequency, the model begins where a fresh one gets to
    first, and the old characters keep their relative odds, so what the model knew is intact.
    """
    vocab_size = model.config.vocab_size
    if vocab_size == old_size or len(ids) < 2:
        return
    counts = character_counts(ids, vocab_size)[old_size:] + 1.0  # +1: a character seen only in validation
    share = counts / (len(ids) + vocab_size - old_size)
    was_training = model.training
    model.eval()
    sample = torch.from_numpy(np.asarray(ids[:CALIBRATION_CHARS], dtype=np.int64)).to(device)[None]
    logits, _ = model(sample)
    old = logits[0, :, :old_size].float()
    model.train(was_training)
    # A new logit is the mean old logit; probability share/(1 - total share) relative to the old mass needs
    # this offset, on average over contexts (in log space) seen in the new text.
    gap = (torch.logsumexp(old, -1) - old.mean(-1)).mean().item()
    offsets = np.log(share / max(1.0 - share.sum(), 1e-3)) + gap
    model.head.bias[old_size:] += torch.as_tensor(offsets, dtype=model.head.bias.dtype, device=model.head.bias.device)


def start_from(model: CharRNN, init: Checkpoint, train_ids: np.ndarray, device: torch.device) -> None:
    """Load the init checkpoint's weights into `model`, grown and calibrated for the new characters."""
    model.load_state_dict(grown_weights(init.weights, model.config.vocab_size))
    calibrate_new_characters(model, len(init.vocab), train_ids, device)


def starting_line(record: dict, vocab_size: int, lr: float, dropout: float) -> str:
    """The log line a fine-tuned run starts with, naming the settings the fine-tuning defaults touch."""
    added = vocab_size - record["vocab_size"]
    return (
        f"fine-tuning from {describe(record)}; {added} new character{'s' if added != 1 else ''} added to its "
        f"{record['vocab_size']}; --lr {lr:g} --dropout {dropout:g} (set them to choose)"
    )
