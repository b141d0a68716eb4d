"""What a checkpoint holds, in one place: best.pt's `Checkpoint`, and the `ResumeState` last.pt adds.

On disk a checkpoint is the plain dict torch.save writes and weights_only loading reads back (`encode`); the
same keys since format 1, so files of earlier releases still read. `decode` checks every field a command
reads before anything is built from it: a stranger's file fails with one line, not deep in a command.
charrnn.checkpoint writes and reads the file itself.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import torch

from charrnn.config import ModelConfig, TrainConfig, from_dict, to_dict
from charrnn.errors import CharRNNError
from charrnn.model import State, is_pair, parameter_shapes

FORMAT_VERSION = 1
REQUIRED_KEYS = ("model", "model_config", "train_config", "vocab")  # what every command reads
# The other fields commands read, and what each may hold: a stranger's file can put anything anywhere.
FIELDS = {
    "vocab": str,
    "corpus": Optional[str],
    "corpus_args": Optional[list[str]],
    "encoding": Optional[str],
    "errors": Optional[str],
    "step": Optional[int],
    "val_loss": Optional[float],
    "elapsed": Optional[float],
    "device": Optional[str],
    "backend": Optional[str],
    "precision": Optional[str],
    "history": Optional[list[dict]],
    "init_from": Optional[dict],
}
HISTORY_NUMBERS = ("step", "train_loss", "val_loss")  # what `info` plots and compares
RESUME_KEYS = ("optimizer", "progress", "hidden_state", "rng")  # what every last.pt holds


@dataclass
class RunProgress:
    """What changes as training goes; last.pt holds it so that a resumed run continues exactly."""

    step: int = 0
    position: int = 0  # index of the next training window
    elapsed: float = 0.0  # seconds of training before this process started
    best_val_loss: float = math.inf
    history: list = field(default_factory=list)  # one dict per evaluation
    val_chars: int = 0  # what every validation pass scores, as the run's first decided (0: none yet; charrnn.pacing)


@dataclass(frozen=True)
class ResumeState:
    """What last.pt adds for an exact resume: optimizer, progress and data position, the whole batch's carried
    state, each rank's RNG states, and the text the run began on (its digest and length)."""

    optimizer: dict
    progress: RunProgress
    hidden_state: State
    rank_rng: list  # one dict of RNG states per rank
    corpus_digest: Optional[str] = None  # absent from a last.pt of a charrnn that kept no digest
    corpus_chars: Optional[int] = None

    @property
    def world_size(self) -> int:
        return len(self.rank_rng)


@dataclass(frozen=True)
class Checkpoint:
    """best.pt: everything sampling and evaluation need (configs, vocabulary, weights), the corpus it read, its
    history and where it was made; `resume` only in last.pt."""

    model_config: ModelConfig
    train_config: TrainConfig
    vocab: str
    weights: dict  # parameter name -> tensor, on the CPU
    corpus: Optional[str] = None  # its name
    corpus_args: Optional[list[str]] = None  # what `charrnn train` was given (absolute paths); None in a shared folder
    encoding: str = "utf-8"
    errors: str = "strict"
    step: Optional[int] = None
    val_loss: Optional[float] = None
    elapsed: Optional[float] = None
    device: Optional[str] = None
    backend: Optional[str] = None
    precision: Optional[str] = None
    history: list = field(default_factory=list)  # one dict per evaluation, up to this checkpoint
    init_from: Optional[dict] = None  # a fine-tuned run's start (charrnn.finetune.init_record)
    resume: Optional[ResumeState] = None

    @property
    def parameters(self) -> int:
        return sum(tensor.numel() for tensor in self.weights.values())


PLAIN = tuple(name for name in FIELDS if name != "vocab")  # Checkpoint's fields stored as they are


def encode(checkpoint: Checkpoint) -> dict:
    """The dict torch.save writes: plain data and tensors only, which weights_only loading reads back."""
    payload = {
        "format_version": FORMAT_VERSION,
        "model_config": to_dict(checkpoint.model_config),
        "train_config": to_dict(checkpoint.train_config),
        "vocab": checkpoint.vocab,
        "model": checkpoint.weights,
        **{name: getattr(checkpoint, name) for name in PLAIN},
    }
    resume = checkpoint.resume
    if resume is not None:
        payload.update(
            {
                "optimizer": resume.optimizer,
                "progress": asdict(resume.progress),
                "corpus_digest": resume.corpus_digest,
                "corpus_chars": resume.corpus_chars,
                # rng and world_size as well: what a release before rank_rng reads
                "hidden_state": resume.hidden_state,
                "rng": resume.rank_rng[0],
                "rank_rng": resume.rank_rng,
                "world_size": resume.world_size,
            }
        )
    return payload


def decode(path: Path, payload, size: int) -> Checkpoint:
    """The checkpoint a loaded payload holds, once every field is checked. `size`: the bytes that hold the
    weights (their tensors may claim no more)."""
    check_payload(path, payload, size)
    check_resume(path, payload)
    return from_payload(payload)


def from_payload(payload: dict) -> Checkpoint:
    """A checked payload (`decode`, or rank 0's sent to the others) as a Checkpoint."""
    plain: dict[str, Any] = {name: payload.get(name) for name in PLAIN}
    plain.update(
        encoding=plain["encoding"] or "utf-8", errors=plain["errors"] or "strict", history=plain["history"] or []
    )
    resume = None
    if all(key in payload for key in RESUME_KEYS):
        known = {f.name for f in fields(RunProgress)}  # a later release's fields are left aside
        progress = RunProgress(**{name: value for name, value in payload["progress"].items() if name in known})
        resume = ResumeState(
            payload["optimizer"],
            progress,
            payload["hidden_state"],
            payload.get("rank_rng", [payload["rng"]]),
            payload.get("corpus_digest"),
            payload.get("corpus_chars"),
        )
    return Checkpoint(
        from_dict(ModelConfig, payload["model_config"]),
        from_dict(TrainConfig, {"items": "text", **payload["train_config"]}),  # a run from before --items: text
        payload["vocab"],
        payload["model"],
        **plain,
        resume=resume,
    )


def malformed(path: Path, problem: str) -> CharRNNError:
    return CharRNNError(f"{path}: not a valid charrnn checkpoint: {problem}; pass one that `charrnn train` wrote")


def check_payload(path: Path, payload, size: int) -> None:
    """Every field a command reads is there and of the type it expects, and the weights are the network the
    config describes."""
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("format_version"), int)
        or any(key not in payload for key in REQUIRED_KEYS)
    ):
        raise CharRNNError(f"{path}: not a charrnn checkpoint; pass one that `charrnn train` wrote")
    if payload["format_version"] > FORMAT_VERSION:
        raise CharRNNError(
            f"{path}: checkpoint format {payload['format_version']} is newer than this charrnn understands "
            f"({FORMAT_VERSION}); upgrade charrnn"
        )
    check_fields(path, payload)
    config = stored_config(path, payload, "model_config", ModelConfig)
    stored_config(path, payload, "train_config", TrainConfig)
    if config.vocab_size != len(payload["vocab"]):
        raise malformed(
            path, f"its model_config has vocab_size {config.vocab_size} for {len(payload['vocab'])} characters"
        )
    check_weights(path, payload["model"], config, size)


def check_fields(path: Path, payload: dict) -> None:
    """The plain fields (FIELDS): vocabulary, corpus, history, where a fine-tuned run started."""
    for key, kind in FIELDS.items():
        if not fits(payload.get(key), kind):
            raise malformed(path, f"its {key} has the wrong type ({type(payload[key]).__name__})")
    if not payload["vocab"]:
        raise malformed(path, "its vocab is empty")
    for key in ("history", "init_from"):  # `info --json` prints them whole
        if not is_plain(payload.get(key)):
            raise malformed(path, f"its {key} holds more than plain data")
    if any(
        not fits(row.get(name), Optional[float]) for row in payload.get("history") or () for name in HISTORY_NUMBERS
    ):
        raise malformed(path, "its history has a step or loss that is not a number")
    if payload.get("init_from") is not None and not isinstance(payload["init_from"].get("path"), str):
        raise malformed(path, "its init_from names no checkpoint")


def check_resume(path: Path, payload: dict) -> None:
    """A last.pt's resume state, if it has one, is what a resume restores: a resume of a damaged one would stop
    deep in torch."""
    if not any(key in payload for key in RESUME_KEYS):
        return
    missing = [key for key in RESUME_KEYS if key not in payload]
    if missing:
        raise malformed(path, f"its resume state lacks {', '.join(missing)}")
    state, progress = payload["hidden_state"], payload["progress"]
    if (
        not isinstance(payload["optimizer"], dict)
        or not isinstance(progress, dict)
        or not all(isinstance(part, torch.Tensor) for part in (state if is_pair(state) else [state]))
    ):
        raise malformed(path, "its optimizer, progress or carried state is not what charrnn saves")
    rng = payload.get("rank_rng", [payload["rng"]])
    if not isinstance(rng, list) or not rng or not all(isinstance(states, dict) for states in rng):
        raise malformed(path, "its RNG states are not what charrnn saves")
    if not fits(progress.get("step"), int) or not fits(progress.get("position"), int):
        raise malformed(path, "its progress has no step or data position")


def stored_config(path: Path, payload: dict, key: str, cls):
    """A config dataclass from its stored dict: every field of its declared type, and in range."""
    values = payload[key]
    if not isinstance(values, dict):
        raise malformed(path, f"its {key} is a {type(values).__name__}, not a table of settings")
    for name, kind in typing.get_type_hints(cls).items():
        if name in values and not fits(values[name], kind):
            raise malformed(path, f"its {key} has {name} of the wrong type ({type(values[name]).__name__})")
    config = from_dict(cls, values)
    try:
        config.validate()
    except CharRNNError as error:
        raise malformed(path, f"its {key} is out of range ({error})") from None
    return config


def fits(value, kind) -> bool:
    """Whether a stored value has a declared type (Optional[...], list[...]); an int fits a float, a bool no number."""
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, getattr(types, "UnionType", typing.Union)):  # Optional[int]; int | None (3.10+)
        return any(fits(value, argument) for argument in arguments)
    if origin is list:
        return isinstance(value, list) and all(fits(item, arguments[0]) for item in value)
    if isinstance(value, bool) or kind is bool:
        return isinstance(value, bool) and kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def is_plain(value, depth: int = 4) -> bool:
    """JSON-like data (what `info --json` can print), nested no deeper than `depth`."""
    if value is None or isinstance(value, (str, int, float)):
        return True
    if depth == 0:
        return False
    if isinstance(value, list):
        return all(is_plain(item, depth - 1) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and is_plain(item, depth - 1) for key, item in value.items())
    return False


def check_weights(path: Path, weights, config: ModelConfig, file_size: int) -> None:
    """Floating-point tensors whose bytes are in the file, named and shaped as the config's network: then
    building that network allocates no more than the file holds."""
    if not isinstance(weights, dict) or not all(
        isinstance(name, str) and is_float_array(tensor) for name, tensor in weights.items()
    ):
        raise malformed(path, "its model is not a table of floating-point tensors")
    # One stored number can stand for any number of elements (a view with stride 0): count what they claim.
    if sum(tensor.numel() * tensor.element_size() for tensor in weights.values()) > file_size:
        raise malformed(path, "its tensors claim more elements than the file holds")
    if config.layers > len(weights):  # every layer has weights: no need to list a billion of them to see it
        raise malformed(path, f"its model_config has {config.layers} layers, more than its weights have")
    expected, actual = parameter_shapes(config), {name: tuple(tensor.shape) for name, tensor in weights.items()}
    if actual != expected:
        raise malformed(path, f"its weights do not match its model_config ({difference(expected, actual)})")


def is_float_array(value) -> bool:
    """A dense floating-point tensor with its data on the CPU (not a meta tensor, which has none)."""
    return (
        isinstance(value, torch.Tensor)
        and value.device.type == "cpu"
        and value.layout == torch.strided
        and value.is_floating_point()
    )


def difference(expected: dict, actual: dict) -> str:
    """The first weight, by name, that is missing, extra, or of another shape."""
    name = min(name for name in expected.keys() | actual.keys() if expected.get(name) != actual.get(name))
    if name not in actual:
        return f"{name} is missing"
    if name not in expected:
        return f"{name[:60]!r} is not part of the network"
    return f"{name} is {list(actual[name])} where the config needs {list(expected[name])}"
