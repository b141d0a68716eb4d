"""charrnn from Python: `load` a trained model to generate, stream, evaluate, score and trace; `train` a run.

The `charrnn` command is parsing and printing over these functions, so a setting means the same here
and there, and is checked the same way.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

import numpy as np

from charrnn import checkpoint, distributed, finetune, rundir
from charrnn.budget import sized_fields
from charrnn.config import (
    ADAPTING,
    DynamicSettings,
    ModelConfig,
    SamplingSettings,
    TrainConfig,
    TrainOptions,
    format_duration,
    given_fields,
    parse_duration,
)
from charrnn.data import corpus_name, load_corpus
from charrnn.device import pick_device
from charrnn.errors import CharRNNError, SettingError, escaped, is_main, launched_world_size
from charrnn.evaluate import (
    LineScore,
    adapted,
    dynamic_loss,
    evaluation_reading,
    known_ids,
    read_pieces,
    score_lines,
    score_pieces,
    summarize,
    total_loss,
)
from charrnn.items import Part, after_a_newline, endings, ordered_parts, whole_samples
from charrnn.lists import ItemBatches
from charrnn.model import model_from_checkpoint
from charrnn.progress import Reporter
from charrnn.sample import Prime, chosen_seed, generate, on_fastest_threads, resolve_weight_precision, thread_choices
from charrnn.schema import Checkpoint
from charrnn.trainer import run_training
from charrnn.viz import Trace, trace_text
from charrnn.vocab import Vocab

if TYPE_CHECKING:  # Unpack is in typing from Python 3.11
    from typing_extensions import Unpack

Dynamic = Union[bool, DynamicSettings]  # dynamic evaluation: off, on with the measured defaults, or these settings
Progress = Callable[[float], None]  # hears the fraction of the work done
# A corpus: a text file, directory, - or catalogue name, or several; None: the built-in corpus.
Sources = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]], None]


def load(
    path: Union[str, os.PathLike, None] = None, device: str = "auto", impl: str = "fused", sha256: bool = False
) -> LanguageModel:
    """A trained model from a run directory, a .pt file or an exported folder; None: $CHARRNN_CHECKPOINT,
    else the newest run under ./runs (as the CLI's -c). sha256: also hash the weights read (`.sha256`)."""
    resolved = checkpoint.resolve_checkpoint(None if path is None else os.fspath(path))
    saved, digest = checkpoint.load_with_sha256(resolved) if sha256 else (checkpoint.load_checkpoint(resolved), None)
    return LanguageModel(saved, resolved, device, impl, digest)


class LanguageModel:
    """A checkpoint's network on a device, with its vocabulary: what every reading command works on."""

    def __init__(
        self,
        saved: Checkpoint,
        path: Optional[Path] = None,
        device: str = "auto",
        impl: str = "fused",
        sha256: Optional[str] = None,
    ):
        self.checkpoint, self.path, self.impl, self.sha256 = saved, path, impl, sha256
        self.device = pick_device(device)
        self.network = model_from_checkpoint(saved, impl=impl, device=self.device)
        self.vocab = Vocab(saved.vocab)

    def __repr__(self) -> str:
        config = self.checkpoint.model_config
        return (
            f"<charrnn.LanguageModel {config.model} {config.layers}x{config.hidden} "
            f"vocab {len(self.vocab)} on {self.device.type}: {self.path}>"
        )

    # --- generation -----------------------------------------------------------------------------------------

    def settled(self, settings: Optional[SamplingSettings] = None, **overrides) -> SamplingSettings:
        """`settings` (default: SamplingSettings()) with the `overrides` (its fields by name), made exact for this
        model: the seed drawn if none is given, the weights' precision resolved for this device, so that they
        generate the same samples again (what `sample --json` records). Stop strings the model could never write
        (and --lines for a model that never saw a newline) are refused here; settled settings pass unchanged."""
        settings = replace(settings or SamplingSettings(), **overrides)
        endings(self.vocab, settings.stop, settings.lines)
        return replace(
            settings,
            seed=chosen_seed(settings.seed),
            precision=resolve_weight_precision(settings.precision, self.device, settings.n),
        )

    def parts(self, prime: Prime = "", settings: Optional[SamplingSettings] = None, **overrides) -> Iterator[Part]:
        """The samples' text in output order, as `Part(sample, text, ended)`, each sample's text after the prime.

        `settings` and `overrides` as `settled` takes them, checked now, as is a string prime; a streamed prime's
        pieces as they are read. On a CPU (unless OMP_NUM_THREADS is set) a batch runs on whichever of one thread
        and every core is faster; torch's thread count is restored once the iterator is exhausted or closed.
        """
        settings = self.settled(settings, **overrides)
        steps = generate(
            self.network, self.vocab, after_a_newline(prime) if settings.lines else prime, settings, self.device
        )
        if "OMP_NUM_THREADS" not in os.environ and self.device.type == "cpu":
            steps = on_fastest_threads(steps, thread_choices(settings.n))
        return ordered_parts(steps, settings.n, endings(self.vocab, settings.stop, settings.lines))

    def generate(
        self, prime: Prime = "", settings: Optional[SamplingSettings] = None, **overrides
    ) -> Union[str, list[str]]:
        """New characters after `prime` (the prime itself not included), as `charrnn sample` makes them: one string,
        or a list of `n`. The settings are a `SamplingSettings`, or its fields as keywords (which replace those of
        `settings` when both are given): `length` characters, `temperature` (0: greedy), `top_k`, `top_p`, `seed`,
        `n`, `precision`; a sample ends before its first `stop` string; with `lines` each sample is the rest of
        the prime's last line (or one whole line), its newline left out."""
        texts = [text for _, text in whole_samples(self.parts(prime, settings, **overrides))]
        return texts[0] if len(texts) == 1 else texts

    def stream(self, prime: Prime = "", settings: Optional[SamplingSettings] = None, **overrides) -> Iterator[str]:
        """`generate`'s text in pieces as it is generated (the prime not included). With n > 1, the samples
        one after another; use `parts` to tell them apart."""
        return (part.text for part in self.parts(prime, settings, **overrides) if part.text)

    def provenance(self) -> dict:
        """Besides the settings, what reproduces this model's samples (`sample --json` records it): the device, the
        implementation, the checkpoint's path and, when loaded with sha256=True, its digest."""
        return {
            "device": self.device.type,
            "impl": self.impl,
            "checkpoint": None if self.path is None else os.path.abspath(self.path),
            "sha256": self.sha256,
        }

    # --- reading text ---------------------------------------------------------------------------------------

    def evaluate(self, text: str, dynamic: Dynamic = False) -> dict:
        """loss (nats/char), bpc, perplexity, chars and oov of `text`: what `charrnn eval` reports for a file
        holding it. A run trained on a list (`--items lines`) reads each line that is not empty as an item, from the
        zero state, its end included (as `score` does), and adds how many under "items".

        dynamic: True (the measured defaults) or a `DynamicSettings`: the figures of dynamic evaluation, where the
        model adapts as it reads (the model itself is left unchanged), with the settings, the seconds it took, and
        the static figures under "static" for comparison."""
        return self.evaluate_ids(*known_ids(text, self.vocab), dynamic)

    def evaluate_files(
        self,
        files: Sequence[str],
        encoding: str = "utf-8",
        errors: str = "strict",
        dynamic: Dynamic = False,
        progress: Optional[Progress] = None,
    ) -> dict:
        """`evaluate` on text files, directories or - (stdin), read as a stream. `progress` hears the fraction
        of the static evaluation done (a `progress.Meter` shows it)."""
        corpus = load_corpus(list(files), encoding, errors, vocab=self.vocab)
        return self.evaluate_ids(corpus.ids, corpus.oov, dynamic, progress)

    def adapted(self, text: str, settings: DynamicSettings = ADAPTING) -> LanguageModel:
        """This model after reading `text` once, learning as it reads (dynamic evaluation's updates), so that it
        writes in that text's style: `charrnn sample --adapt`. Characters it does not know are skipped; this
        model and its checkpoint are left as they were."""
        return self.adapted_to_ids(known_ids(text, self.vocab)[0], settings)

    def adapted_to_files(
        self,
        files: Sequence[str],
        encoding: str = "utf-8",
        errors: str = "strict",
        settings: DynamicSettings = ADAPTING,
    ) -> LanguageModel:
        """`adapted` to text files, directories or - (stdin)."""
        return self.adapted_to_ids(load_corpus(list(files), encoding, errors, vocab=self.vocab).ids, settings)

    def adapted_to_ids(self, ids: np.ndarray, settings: DynamicSettings = ADAPTING) -> LanguageModel:
        """`adapted` to text already looked up in the vocabulary."""
        twin = copy.copy(self)
        twin.network = adapted(self.network, ids, self.device, settings)
        return twin

    def evaluate_validation(self, dynamic: Dynamic = False, progress: Optional[Progress] = None) -> dict:
        """`evaluate` on the run's own validation split, read again from the corpus it names."""
        ids, oov = self.validation_ids()
        return self.evaluate_ids(ids, oov, dynamic, progress)

    def validation_ids(self) -> tuple[np.ndarray, int]:
        """The run's validation split as ids, and how many characters of its corpus the vocabulary lacks."""
        sources = self.training_corpus()
        corpus = load_corpus(sources, self.checkpoint.encoding, self.checkpoint.errors, vocab=self.vocab)
        _, ids = corpus.split(self.train_config.val_fraction, at_a_line=self.train_config.items == "lines")
        return ids, corpus.oov

    def evaluate_ids(
        self, ids: np.ndarray, oov: int = 0, dynamic: Dynamic = False, progress: Optional[Progress] = None
    ) -> dict:
        started = time.perf_counter()
        windows = evaluation_reading(ids, self.train_config, self.vocab)
        if windows is None:
            what = "a line that is not empty" if self.train_config.items == "lines" else "at least 2 characters"
            raise CharRNNError(f"nothing to evaluate: the text needs {what} the model knows")
        items = windows.items if isinstance(windows, ItemBatches) else None  # a run of lines reads them one by one
        static = summarize(*total_loss(self.network, windows, self.device, progress=progress), oov, items)
        if not dynamic:
            return static
        static["seconds"] = time.perf_counter() - started
        settings = DynamicSettings() if dynamic is True else dynamic
        started = time.perf_counter()
        result = summarize(*dynamic_loss(self.network, ids, self.device, settings), oov)
        return {
            **result,
            "seconds": time.perf_counter() - started,
            "segment": settings.segment,
            "lr": settings.lr,
            "decay": settings.decay,
            "static": static,
        }

    @property
    def train_config(self) -> TrainConfig:
        return self.checkpoint.train_config

    def training_corpus(self) -> list[str]:
        """The corpus the run was trained on, to read again for its validation split. A checkpoint can come from
        anyone, and could name any directory here or a download: only local files and directories named by
        absolute path (as `charrnn train` stores them) are read, or [] for the built-in corpus."""
        sources = self.checkpoint.corpus_args
        if sources is None:  # an exported folder leaves out the paths of the machine that trained it
            raise CharRNNError(
                "this checkpoint does not name the files it was trained on, so its validation split "
                "cannot be re-read; pass FILE (or - for stdin) to score"
            )
        if "-" in sources:
            raise CharRNNError(
                "this run's corpus came from stdin, so its validation split cannot be re-read; pass FILE or -"
            )
        for source in sources:
            if not (os.path.isabs(source) and (os.path.isfile(source) or os.path.isdir(source))):
                raise CharRNNError(
                    f"this run's corpus {escaped(source)} is not a file or directory on this machine, so its "
                    "validation split cannot be re-read; pass FILE (or - for stdin) to score"
                )
        return sources

    def training_corpus_name(self) -> str:
        """`training_corpus` as a person reads it: its files, or the built-in corpus's name."""
        sources = self.training_corpus()
        return ", ".join(sources) or corpus_name(sources)

    def score(self, lines: Iterable[str]) -> Iterator[LineScore]:
        """Each line's score (`.bpc`, `.nats`, `.chars`, `.oov`, `.line`; `.as_dict()`), in order, lazily:
        `lines` is read a batch at a time, so it may be a file or an endless generator."""
        for batch in score_lines(self.network, self.vocab, lines, self.device):
            yield from batch

    def score_files(
        self, files: Sequence[str], encoding: str = "utf-8", errors: str = "strict"
    ) -> Iterator[list[LineScore]]:
        """`score` on the lines of text files or - (none: stdin), batch by batch, as `charrnn score` writes them; a
        line is read in pieces, so that neither an endless line nor endless input is held whole."""
        return score_pieces(self.network, self.vocab, read_pieces(list(files), encoding, errors), self.device)

    def trace(self, text: str) -> Trace:
        """`text` as the model reads it: every unit's activation per (layer, kind), and the surprise
        (-log2 p, bits) of each character, as `charrnn viz` draws them."""
        adapted = replace(self.checkpoint, weights=self.network.state_dict())  # adapted weights too
        return trace_text(adapted, text, self.device)


def train(
    corpus: Sources = None,
    out: Union[str, os.PathLike, None] = None,
    time: Union[str, float, None] = None,
    steps: Optional[int] = None,
    on_progress: Optional[Callable[[dict], None]] = None,
    quiet: bool = True,
    *,
    reporter: Optional[Reporter] = None,
    started: Optional[float] = None,
    **options: Unpack[TrainOptions],
) -> dict:
    """Train a run as `charrnn train` does, with its settings and defaults; returns the summary
    (steps, val_loss, best_val_loss, elapsed, chars_per_s, out_dir).

    corpus: files, directories, - or catalogue names (None: the built-in corpus). time: "90s", "10m", or
    seconds. on_progress gets a dict after every step: step, train_loss, val_loss, chars_per_s, eta_s,
    fraction (of the budget) and evaluated (whether this step validated and checkpointed). started: the
    time.monotonic() the --time budget counts from (default: now; the CLI gives its process's start).
    options: the rest of the command's options, by name (config.TrainOptions).
    """
    unknown = sorted(set(options) - set(TrainOptions.__annotations__))
    if unknown:  # what Python says of a keyword no signature takes
        raise TypeError(f"train() got an unexpected keyword argument {unknown[0]!r}")
    corpus_args = corpus_arguments(corpus)
    model_config, train_config, keywords = run_settings(steps, time, options)
    out = run_directory(out, corpus_args, options.get("resume", False))
    reporter = reporter or Reporter(quiet=quiet or not is_main(), on_progress=on_progress)
    try:
        with distributed.stopped_peers(out):
            summary = run_training(
                corpus_args, model_config, train_config, out, reporter=reporter, started=started, **keywords
            )
        distributed.finish()
    finally:
        reporter.close()
    best = summary["best_val_loss"]
    reporter.log(
        f"done: {summary['steps']} steps in {format_duration(summary['elapsed'])}; "
        f"best val loss {best:.4f} nats/char ({best / math.log(2):.3f} bpc); saved {out}/best.pt and {out}/last.pt"
    )
    return summary


def corpus_arguments(corpus: Sources) -> list[str]:
    """`train`'s corpus as the command's arguments: [] for the built-in corpus, else each path as a string."""
    if corpus is None:
        return []
    return [os.fspath(corpus)] if isinstance(corpus, (str, os.PathLike)) else [os.fspath(c) for c in corpus]


def run_settings(
    steps: Optional[int], time: Union[str, float, None], options: TrainOptions
) -> tuple[ModelConfig, TrainConfig, dict]:
    """The configs a run starts with (the options given over config.py's defaults, or over a fine-tuned run's) and
    the rest of run_training's keywords."""
    resume, init_from = options.get("resume", False), options.get("init_from")
    # On --resume the run's own last.pt holds the weights; --init-from only starts a run.
    init, record = finetune.load_init(init_from) if init_from is not None and not resume else (None, None)
    time_budget = parse_duration(time) if isinstance(time, str) else None if time is None else float(time)
    shape = given_fields(ModelConfig, options)
    settings = given_fields(TrainConfig, {**options, "steps": steps, "time_budget": time_budget})
    model_config = finetune.model_config(init, shape) if init is not None else ModelConfig(**shape)
    train_config = TrainConfig(**(finetune.train_options(settings) if init is not None else settings))
    keywords = dict(
        resume=resume,
        force=options.get("force", False),
        encoding=options.get("encoding", "utf-8"),
        errors=options.get("errors", "strict"),
        init=init,
        init_from=record,
        sized=sized_fields(shape, resume, init is not None),
        given=[*shape, *settings, *(["init_from"] if init_from is not None else [])],
    )
    return model_config, train_config, keywords


def run_directory(out: Union[str, os.PathLike, None], corpus_args: list[str], resume: bool) -> Path:
    """--out, or a new directory under ./runs named for the corpus; --resume needs the run named."""
    if out is None:
        if resume:
            raise SettingError("--resume needs --out RUN_DIR: the run to continue")
        out = rundir.default_directory(checkpoint.RUNS_DIR / corpus_name(corpus_args), launched_world_size())
    return Path(out)
