"""Configuration dataclasses: every default lives here, once."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, Optional, TypedDict, Union, get_args

from charrnn.errors import SettingError

MODEL_KINDS = ("rnn", "gru", "lstm")
IMPLEMENTATIONS = ("fused", "cells")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")
# How training reads the corpus (charrnn.lists): each line an item of its own, or running text; auto decides.
ITEM_MODES = ("auto", "lines", "text")
# How generation stores the weights (charrnn.sample's Stepper).
# auto: fp16 on x86 CPUs, int8 there for a batch; fp32 elsewhere.
WEIGHT_PRECISIONS = ("auto", "fp32", "fp16", "int8")

# More of the CLI's choices, here without torch so that `charrnn --help` needs none: the modules that do the
# work key their tables by these, and check at import that they agree.
# (Literal types, which typer offers as choices and mypy checks.)
RunSort = Literal["name", "bpc", "written", "steps", "time", "size"]  # charrnn.runs.SORT_KEYS
ExportFormat = Literal["hf", "onnx", "html"]  # charrnn.export.FORMATS
RUN_SORTS: tuple[str, ...] = get_args(RunSort)
EXPORT_FORMATS: tuple[str, ...] = get_args(ExportFormat)
VIZ_FEATURES = (
    "line-position",
    "quotes",
    "brackets",
    "word-position",
    "space",
    "uppercase",
    "vowel",
    "punctuation",
)  # charrnn.viz.FEATURES

# What torch's generators take as a seed: a 64-bit integer, signed or not (-1 and 2**64 - 1 are one seed).
SEED_RANGE = (-(2**63), 2**64 - 1)


def check_kind(kind: str) -> None:
    """Refuse a --model charrnn does not have: one check, where a run is set up and where a network is built."""
    if kind not in MODEL_KINDS:
        raise SettingError(f"unknown model {kind!r}; choose one of {', '.join(MODEL_KINDS)}")


def check_impl(impl: str) -> None:
    """Refuse an --impl charrnn does not have: one check, where a run is set up and where a network is built."""
    if impl not in IMPLEMENTATIONS:
        raise SettingError(f"unknown --impl {impl!r}; choose one of {', '.join(IMPLEMENTATIONS)}")


def validate_seed(seed: Optional[int]) -> None:
    """Refuse a --seed torch cannot take (it would fail deep inside, as an overflow)."""
    low, high = SEED_RANGE
    if seed is not None and not low <= seed <= high:
        raise SettingError(f"--seed must be a whole number from {low} to {high}, the range torch takes (got {seed})")


@dataclass
class ModelConfig:
    """The shape of a network; stored in every checkpoint."""

    vocab_size: int = 0
    # On a CPU one wide layer beats two narrower ones at equal wall time; under --time, charrnn.budget sets
    # layers, hidden and dropout: 1x384 is what the default 3-minute budget picks on a laptop CPU.
    model: str = "lstm"
    layers: int = 1
    hidden: int = 384
    embed: int = 64
    dropout: float = 0.0

    def validate(self) -> None:
        check_kind(self.model)
        if self.layers < 1:
            raise SettingError(f"--layers must be at least 1 (got {self.layers})")
        if self.hidden < 1:
            raise SettingError(f"--hidden must be at least 1 (got {self.hidden})")
        if self.embed < 1:
            raise SettingError(f"--embed must be at least 1 (got {self.embed})")
        if not 0.0 <= self.dropout < 1.0:
            raise SettingError(f"--dropout must be in [0, 1) (got {self.dropout})")


@dataclass
class TrainConfig:
    """How to train: optimisation, budget, evaluation, hardware."""

    # Short windows in small batches: more updates per minute, and oneDNN runs them faster per
    # character too (1x256 after 1 min: 1.787 at 64x128 and lr 3e-3..1e-2, 1.577 at 32x64 and 1e-2).
    seq_len: int = 64
    batch_size: int = 32
    # With weight decay on, a higher peak pays at every budget. Val loss at the steps each budget buys
    # (1 thread each, side by side), lr 1e-2 -> 2e-2: tiny-shakespeare 1x256 1,500 steps 1.577 -> 1.550,
    # 1x384 3,500 steps 1.452 -> 1.429, 1x512 4,600 steps 1.430 (at decay 0.2) -> 1.416; Korean
    # 1x256 1,000 steps 2.719 -> 2.643; Python source 1x256 1,500 steps 1.336 -> 1.307. 3e-2 (decay
    # 0.067) was no better: 1.451 at 3,500 steps, 1.414 at 4,600.
    lr: float = 2e-2
    min_lr_ratio: float = 0.0  # the schedule decays to lr * min_lr_ratio at the end of the budget
    warmup_steps: int = 20
    # Decay on the matrices keeps a network that reads the corpus many times from memorizing it: 1x384
    # for the 3,500 steps of 5 minutes (1 thread each, side by side), val loss 1.499 with none,
    # 1.452 at 0.1, 1.482 at 0.3.
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    steps: Optional[int] = None
    time_budget: Optional[float] = None  # seconds
    schedule_steps: Optional[int] = None  # steps the LR schedule spans; None: the budget (--steps/--time)
    val_fraction: float = 0.1
    eval_every: Optional[int] = None  # None: charrnn.budget sets it (about ten evaluations over a --time budget)
    eval_chars: int = 262_144  # cap on validation characters per periodic eval
    seed: int = 1337
    device: str = "auto"
    impl: str = "fused"
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 elsewhere
    items: str = "auto"  # one of ITEM_MODES; a run stores the mode auto decided, "lines" or "text"

    def validate(self) -> None:
        if self.seq_len < 1:
            raise SettingError(f"--seq-len must be at least 1 (got {self.seq_len})")
        if self.batch_size < 1:
            raise SettingError(f"--batch-size must be at least 1 (got {self.batch_size})")
        if not 0 < self.lr < math.inf:
            raise SettingError(f"--lr must be a positive number (got {self.lr})")
        if not 0 <= self.weight_decay < math.inf:
            raise SettingError(f"--weight-decay must be 0 or a positive number (got {self.weight_decay})")
        if self.steps is not None and self.steps < 1:
            raise SettingError(f"--steps must be at least 1 (got {self.steps})")
        if self.schedule_steps is not None and self.schedule_steps < 1:
            raise SettingError(f"--schedule-steps must be at least 1 (got {self.schedule_steps})")
        if self.time_budget is not None and not 0 < self.time_budget < math.inf:
            raise SettingError("--time must be above zero, e.g. 90s, 10m or 1h")
        if not 0.0 <= self.val_fraction < 1.0:
            raise SettingError(f"--val-fraction must be in [0, 1) (got {self.val_fraction})")
        if self.eval_every is not None and self.eval_every < 1:
            raise SettingError(f"--eval-every must be at least 1 (got {self.eval_every})")
        validate_seed(self.seed)
        check_impl(self.impl)
        if self.device not in DEVICES:
            raise SettingError(f"unknown --device {self.device!r}; choose one of {', '.join(DEVICES)}")
        if self.precision not in PRECISIONS:
            raise SettingError(f"unknown --precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.items not in ITEM_MODES:
            raise SettingError(f"unknown --items {self.items!r}; choose one of {', '.join(ITEM_MODES)}")


class TrainOptions(TypedDict, total=False):
    """The options of `charrnn train` that `charrnn.train` takes as keywords (`--seq-len` is `seq_len`), besides
    its corpus, --out, --steps and --time. Left out or None: the defaults above (a fine-tuned run's: finetune.py)."""

    model: Optional[str]
    layers: Optional[int]
    hidden: Optional[int]
    embed: Optional[int]
    dropout: Optional[float]
    seq_len: Optional[int]
    batch_size: Optional[int]
    lr: Optional[float]
    weight_decay: Optional[float]
    seed: Optional[int]
    schedule_steps: Optional[int]
    val_fraction: Optional[float]
    eval_every: Optional[int]
    device: str
    impl: str
    precision: Optional[str]
    items: Optional[str]
    encoding: str
    errors: str
    init_from: Optional[str]  # a checkpoint or run to fine-tune
    resume: bool
    force: bool


def given_fields(cls, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options that name a field of the config class `cls` and are given (not None): the rest keep its defaults."""
    return {field.name: options[field.name] for field in fields(cls) if options.get(field.name) is not None}


def to_dict(config) -> dict:
    return asdict(config)


def from_dict(cls, values: dict):
    """Build a config from a stored dict, ignoring keys this version does not know."""
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in known})


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s)?", re.IGNORECASE)
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> float:
    """Parse '90s', '10m', '1h', '1h30m' or a bare number of seconds into seconds."""
    compact = text.strip().replace(" ", "")
    position, total = 0, 0.0
    while position < len(compact):
        match = _DURATION.match(compact, position)
        if not match or match.end() == position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "s").lower()]
        position = match.end()
    if not compact or position != len(compact) or total == math.inf:
        raise SettingError(f"cannot read --time {text!r}; write a duration such as 90s, 10m, 1h or 1h30m")
    if total <= 0:
        raise SettingError(f"--time must be above zero (got {text!r}); write a duration such as 90s, 10m or 1h")
    return total


def format_duration(seconds: float) -> str:
    """`parse_duration`'s inverse, as a person reads it: 45s, 10m05s, 1h30m."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


@dataclass(frozen=True)
class FineTuneDefaults:
    """What --init-from changes where the user sets nothing: at the fresh-start peak (lr 2e-2, no dropout)
    a small text wipes out what the base knew. A tenth of it, with dropout, for 1 minute on 50 KB:
    English 2.027 -> 1.822 nats/char, Russian 1.478 -> 1.300 (benchmarks/RESULTS.md, "Fine-tuning")."""

    lr: float = 2e-3
    min_dropout: float = 0.2  # a base trained with more keeps its own


@dataclass(frozen=True)
class DynamicSettings:
    """How dynamic evaluation (charrnn/evaluate.py) adapts: characters per update, SGD step, pull back toward the
    trained weights."""

    # Chosen on the first 100k characters of tiny-shakespeare's validation split, scored by the 5-minute
    # default model (1x384 LSTM): AdamW-trained weights want large SGD steps (the lr is per mean loss of a
    # segment), and a small decay keeps a large step from drifting. The sweep: benchmarks/RESULTS.md,
    # "Dynamic evaluation".
    segment: int = 50
    lr: float = 0.3
    decay: float = 0.003

    def __post_init__(self):
        if self.segment < 1:
            raise SettingError(f"--segment must be at least 1 (got {self.segment})")
        if not self.lr >= 0.0:
            raise SettingError(f"--dynamic-lr must be at least 0 (got {self.lr})")
        if not 0.0 <= self.decay <= 1.0:
            raise SettingError(f"--dynamic-decay must be in [0, 1] (got {self.decay})")


def dynamic_settings(
    dynamic: bool, segment: Optional[int] = None, lr: Optional[float] = None, decay: Optional[float] = None
) -> Union[bool, DynamicSettings]:
    """`eval --dynamic` and its settings as one value: False, or the settings, defaults where none is given."""
    given: dict[str, Any] = {
        name: value for name, value in (("segment", segment), ("lr", lr), ("decay", decay)) if value is not None
    }
    if not dynamic and given:
        raise SettingError("--segment, --dynamic-lr and --dynamic-decay need --dynamic")
    return DynamicSettings(**given) if dynamic else False


# `sample --adapt` reads a text once with dynamic evaluation's updates, then writes: there the pull back
# toward the trained weights works against the point. Held-out loss on a 53 KB text of another register
# after adapting to its first 90%: 2.151 unadapted, 1.845 with decay 0.003, 1.784 without (RESULTS.md).
ADAPTING = DynamicSettings(decay=0.0)


# Below this temperature a sample is drawn greedily. In float32, softmax(logits / t) is one-hot once the top two
# logits are more than 104 t apart (exp underflows), and distinct logits of magnitude 1e-3 or more are at least
# 1e-10 apart, so below 1e-12 the draw is the greedy one anyway. Far below, logits / t overflow to inf and softmax
# gives NaN: on the tiny test LSTM (|logits| up to 6.6; one-hot from t = 1e-6), from t = 1e-38 every draw was its
# first character, a newline (benchmarks/temperature.py on 4k characters of tiny-shakespeare).
GREEDY_BELOW = 1e-12


@dataclass(frozen=True)
class SamplingSettings:
    """How samples are drawn: what `charrnn sample` takes and its --json records, checked once, here, when made."""

    length: int = 1000  # characters per sample
    temperature: float = 1.0  # 0 (or below GREEDY_BELOW): the likeliest character
    top_k: Optional[int] = None
    top_p: Optional[float] = None
    seed: Optional[int] = None  # None: a fresh one (see LanguageModel.settled, which draws it to record)
    n: int = 1  # samples, drawn as one batch
    precision: str = "auto"  # one of WEIGHT_PRECISIONS
    stop: tuple[str, ...] = ()  # a sample ends before the first of these
    lines: bool = False  # each sample one line

    @classmethod
    def from_options(cls, options: dict) -> SamplingSettings:
        """The settings among a command's options, by field name; the other options, and those not given, left out."""
        return cls(**given_fields(cls, options))

    def __post_init__(self):
        object.__setattr__(self, "stop", tuple(self.stop))  # a list is kept as a tuple, so the settings stay frozen
        # Written so that NaN fails each test: it compares false with everything.
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise SettingError(f"--temp must be 0 (greedy) or a finite number above it (got {self.temperature})")
        if self.top_k is not None and self.top_k < 1:
            raise SettingError(f"--top-k must be at least 1 (got {self.top_k})")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise SettingError(f"--top-p must be in (0, 1] (got {self.top_p})")
        if self.length < 0:
            raise SettingError(f"--length must be 0 or more (got {self.length})")
        validate_seed(self.seed)
        if self.n < 1:
            raise SettingError(f"-n/--num-samples must be at least 1 (got {self.n})")
        if self.precision not in WEIGHT_PRECISIONS:
            raise SettingError(
                f"unknown --precision {self.precision!r} for sampling; choose one of {', '.join(WEIGHT_PRECISIONS)}"
            )
        if "" in self.stop:
            raise SettingError("--stop needs some text: an empty string would end every sample before it began")

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW

    def record(self) -> dict:
        """The settings as `sample --json` writes them, by the names of its flags."""
        values = asdict(self)
        values["num_samples"] = values.pop("n")
        values["stop"] = list(self.stop)
        return values
