"""The training loop: schedule, clipping, evaluation, checkpoints, progress, signals."""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from charrnn import budget, checkpoint, distributed, finetune, lists, pacing, rundir, schema, writes
from charrnn.config import ModelConfig, TrainConfig, format_duration
from charrnn.data import Corpus, Windows, load_corpus
from charrnn.device import autocast, backend_name, denormals_flushed, memory_bytes, resolve_precision, synchronize
from charrnn.errors import CharRNNError, TrainingInterrupted
from charrnn.evaluate import evaluation_reading, total_loss
from charrnn.model import CharRNN, State, map_state, training_bytes
from charrnn.progress import Reporter
from charrnn.schema import Checkpoint, ResumeState, RunProgress


@contextlib.contextmanager
def interrupted_before_training() -> Iterator[None]:
    """Around a run's set-up: Ctrl-C or SIGTERM there ends the run with one line, nothing saved."""
    try:
        yield
    except KeyboardInterrupt:
        raise TrainingInterrupted("interrupted before training started; nothing was saved", signal.SIGINT) from None


class StopSignals:
    """Turn the first Ctrl-C or SIGTERM into a request to stop after the current step; a second Ctrl-C stops at once,
    saying what the run in `out_dir` can do next."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.received: Optional[int] = None
        self.previous: dict[int, Callable | int | None] = {}  # signal.signal's previous handlers, restored on exit

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self.previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number, frame):
        if self.received is not None and number == signal.SIGINT:  # a second Ctrl-C means now
            if (self.out_dir / checkpoint.LAST).is_file():
                then = "the run's last checkpoint is intact, continue with --resume"
            else:  # the run wrote no checkpoint yet, so its folder goes (rundir.abandon)
                then = "nothing was saved yet; train again to start over"
            raise TrainingInterrupted(f"interrupted again: stopped at once; {then}", number)
        self.received = number

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)


def learning_rate(config: TrainConfig, step: int, budget_fraction: float) -> float:
    """Linear warmup, then cosine decay to lr * min_lr_ratio at the end of the budget (steps or time).

    With --schedule-steps the cosine spans that many steps instead, whatever the budget: a run that
    will be extended with --resume then follows one schedule, as if it had run in one go.
    """
    if config.schedule_steps is not None:
        budget_fraction = step / config.schedule_steps
    warmup = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps > 0 else 1.0
    floor = config.lr * config.min_lr_ratio
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(budget_fraction, 1.0)))
    return warmup * (floor + (config.lr - floor) * cosine)


def make_optimizer(model: CharRNN, config: TrainConfig) -> torch.optim.Optimizer:
    # Decay only matrices: shrinking biases and gains toward zero does not regularize, it just hurts.
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": matrices, "weight_decay": config.weight_decay}, {"params": vectors, "weight_decay": 0.0}]
    # The fused kernel updates every tensor in one pass (~4x faster than the per-tensor loop on CPU):
    # a few % of a whole step at 2x512. CPU and CUDA have it; elsewhere the default loop runs.
    fused = next(model.parameters()).device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.99), fused=fused or None)


def open_run_directory(out_dir: Path, resume: bool, force: bool) -> Optional[Checkpoint]:
    """Check (and create) the run directory; on --resume, the last.pt to continue from."""
    rundir.prepare(out_dir, resume, force)
    if not resume:
        return None
    saved = checkpoint.load_checkpoint(out_dir / checkpoint.LAST)
    if saved.resume is None:
        raise CharRNNError(
            f"{out_dir / checkpoint.LAST} holds no resume state (a copy of a {checkpoint.BEST}?); "
            "continue a run from its own last.pt, or start it over with --force"
        )
    return saved


def write_metrics(out_dir: Path, history: list) -> None:
    """Start metrics.jsonl from the run's own record: empty for a new run (--force starts afresh), and
    on --resume without the lines a killed run wrote after its last checkpoint (those steps run again)."""
    path = out_dir / rundir.METRICS
    try:
        writes.write_atomically(path, "".join(json.dumps(entry) + "\n" for entry in history).encode("utf-8"))
    except OSError as error:
        raise checkpoint.unwritable(path, error) from None


def require_memory(config: ModelConfig, device: torch.device) -> None:
    """Refuse a network whose parameters alone would not fit, before torch tries to allocate it."""
    needed, available = training_bytes(config), memory_bytes(device)
    if available is not None and needed > available:
        raise CharRNNError(
            f"a {config.layers}x{config.hidden} {config.model} needs about {needed / 1e9:,.0f} GB "
            f"to train (weights, gradients, optimizer state) and this {device.type} has "
            f"{available / 1e9:,.0f} GB; choose a smaller --hidden, --layers or --embed"
        )


# Each stream starts one window in this many from the zero state (staggered by data position; 0: never), so that
# the model learns to read from there, as `sample --prime`, `score` and `eval` do: a run that only carries its state
# sees it once, and a young one then falls into noise (benchmarks/RESULTS.md, "Reading from the zero state").
FRESH_START_EVERY = 16


def fresh_starts(state: State, position: int) -> State:
    """The carried state with the streams due a fresh start at this data position set to zero."""
    if not FRESH_START_EVERY:
        return state

    def restart(part: torch.Tensor) -> torch.Tensor:
        due = (torch.arange(part.size(1), device=part.device) + position) % FRESH_START_EVERY == 0
        return part.masked_fill(due.view(1, -1, 1), 0.0)

    return map_state(restart, state)


def rng_states(device: torch.device) -> dict:
    states = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def restore_rng_states(states: dict, device: torch.device) -> None:
    torch.set_rng_state(states["torch"])
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


def gradients(
    network: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    state: Optional[State],
    precision: str,
    grad_clip: float,
) -> tuple[torch.Tensor, State]:
    """Forward, loss and clipped gradients of one window: the loss, and the state to carry to the next window."""
    with autocast(inputs.device, precision):
        logits, state = network(inputs, state)
    # Autocast hands back bf16 states; carry fp32 so every window (and last.pt) sees one dtype.
    state = map_state(lambda part: part.detach().float(), state)
    loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(network.parameters(), grad_clip)
    return loss, state


def throwaway_step(
    model_config: ModelConfig, config: TrainConfig, window, device: torch.device, precision: str
) -> Callable[[], None]:
    """A training step of a fresh network of this shape on one window, to call again and again: for timing sizes."""
    require_memory(model_config, device)  # a size given with --hidden is timed before the run's own check
    model = CharRNN(model_config, impl=config.impl).to(device)
    optimizer = make_optimizer(model, config)
    inputs, targets = (tensor.to(device) for tensor in window)
    state = model.initial_state(inputs.size(0), device)  # a batch of items has rows of its own number

    def step() -> None:
        gradients(model, optimizer, inputs, targets, state, precision, config.grad_clip)
        optimizer.step()
        synchronize(device)  # a GPU queues its work: the clock must wait for it to finish

    return step


# What a resumed run takes when given: its budget, schedule and cadence. The rest (shape, windows, seed, the
# validation split) made last.pt's weights, carried state and data position, so the run keeps its own.
RESUMABLE = ("steps", "time_budget", "schedule_steps", "lr", "weight_decay", "eval_every")
HARDWARE = ("device", "impl", "precision")  # this machine's: always the ones asked for now


def resumed_settings(
    saved: Checkpoint, asked: TrainConfig, corpus_args: list[str], given: Collection[str] = ()
) -> tuple[ModelConfig, TrainConfig, list[str], list[str]]:
    """What a resumed run trains with: its own shape, settings and corpus, with the RESUMABLE settings that are
    `given` (field names) or asked for other than their default, and the hardware asked for; and the given
    settings it leaves aside, sorted."""
    default = TrainConfig()
    changes = {
        name: getattr(asked, name)
        for name in (*RESUMABLE, *HARDWARE)
        if name in given or name in HARDWARE or getattr(asked, name) != getattr(default, name)
    }
    ignored = sorted(set(given) - set(RESUMABLE) - set(HARDWARE))
    model_config, train_config = replace(saved.model_config), replace(saved.train_config, **changes)
    return model_config, train_config, corpus_args or saved.corpus_args or [], ignored


def flag(name: str) -> str:
    """The command-line flag for a setting's field name."""
    return "--time" if name == "time_budget" else "--" + name.replace("_", "-")


def text_change(saved: Checkpoint, chars: str, length: int, digest: str) -> Optional[str]:
    """How the corpus read now differs from the text the run began on (last.pt holds its vocabulary, length
    and digest), or None. A last.pt from before the digest was kept can only be checked for its vocabulary."""
    if chars != saved.vocab:
        return "holds other characters than when the run began"
    resume = saved.resume
    if resume is None or resume.corpus_digest in (None, digest) or resume.corpus_chars is None:
        return None
    before = resume.corpus_chars
    if length != before:
        longer = "longer" if length > before else "shorter"
        return f"is {abs(length - before):,} characters {longer} than when the run began"
    return "has the same length as when the run began, but other content"


@dataclass(frozen=True)
class RunPlan:
    """What a run decided before its first step (`plan_run`): the settings it trains with, its text cut into
    windows, what it continues or starts from, and the lines to say. `Trainer(plan)` builds and runs it."""

    out_dir: Path
    model_config: ModelConfig  # sized by the budget, with the corpus's vocabulary
    train_config: TrainConfig  # with its budget and cadence
    corpus: Corpus
    windows: Windows  # this rank's training streams
    val_windows: Optional[Windows]
    corpus_args: list[str] = field(default_factory=list)  # as checkpoints store them: paths made absolute
    encoding: str = "utf-8"
    errors: str = "strict"
    text_digest: str = ""  # what --resume checks the corpus against (text_change)
    group: distributed.Group = field(default_factory=distributed.Group)  # this process's place in a torchrun job
    precision: str = "fp32"
    saved: Optional[Checkpoint] = None  # last.pt, on --resume
    init: Optional[Checkpoint] = None  # the --init-from checkpoint a new fine-tuned run starts from
    init_from: Optional[dict] = None  # what a fine-tuned run remembers of its start (finetune.init_record)
    notes: tuple[str, ...] = ()  # lines to log
    warnings: tuple[str, ...] = ()  # lines to warn on rank 0
    started: float = field(default_factory=time.monotonic)  # when the command began: its set-up spends --time too


def plan_run(
    corpus_args: list[str],
    model_config: ModelConfig,
    train_config: TrainConfig,
    out_dir: Path,
    resume: bool = False,
    force: bool = False,
    encoding: str = "utf-8",
    errors: str = "strict",
    init: Optional[Checkpoint] = None,
    init_from: Optional[dict] = None,
    sized: Sequence[str] = (),
    given: Collection[str] = (),
    started: Optional[float] = None,
    log=None,
) -> RunPlan:
    """Decide a run: lock its directory and, on --resume, take last.pt's settings; give it a budget; read and check
    its text and cut it into windows; size the network (charrnn.budget). `log` hears the corpus being read."""
    started = time.monotonic() if started is None else started
    group = distributed.start(train_config.device)  # under torchrun, one process per rank
    saved = opened_run(group, Path(out_dir), resume, force)
    ignored: list[str] = []
    if saved is not None:
        model_config, train_config, corpus_args, ignored = resumed_settings(saved, train_config, corpus_args, given)
        init, init_from = None, saved.init_from
    train_config, notes = checked_settings(model_config, train_config)
    corpus = read_corpus(group, corpus_args, encoding, errors, inherited_chars(saved, init, init_from), log)
    digest = checked_text(group, saved, corpus)
    train_config, windows, val_windows, cut_notes = cut_windows(group, corpus, train_config)
    plan = RunPlan(
        Path(out_dir),
        replace(model_config, vocab_size=len(corpus.vocab)),
        train_config,
        corpus,
        windows,
        val_windows,
        [a if a == "-" else str(Path(a).resolve()) for a in corpus_args],
        encoding,
        errors,
        digest,
        group,
        resolve_precision(train_config.precision, group.device),
        saved,
        init,
        init_from,
        notes + cut_notes,
        resume_warnings(saved, ignored, Path(out_dir)),
        started,
    )
    return sized_plan(plan, sized)


def checked_settings(model_config: ModelConfig, train_config: TrainConfig) -> tuple[TrainConfig, tuple[str, ...]]:
    """`train_config` with a budget (the default when it has none), once both configs are checked; and the note
    that says so, which the run logs once the corpus has loaded, so that bad input gets its one error line alone."""
    train_config, budget_defaulted = budget.with_default_budget(train_config)
    model_config.validate()
    train_config.validate()
    default = f"no --steps or --time given: training for {format_duration(budget.DEFAULT_TIME_BUDGET_S)}"
    return train_config, (default,) if budget_defaulted else ()


def inherited_chars(
    saved: Optional[Checkpoint], init: Optional[Checkpoint], init_from: Optional[dict]
) -> Optional[str]:
    """The characters a fine-tuned run (--init-from) starts its vocabulary with: its base checkpoint's (on resume,
    last.pt says which); None for a run that starts from scratch."""
    if init_from is None:
        return None
    if init is not None:
        return init.vocab
    assert saved is not None  # init_from without init: the resumed run's own
    return saved.vocab[: init_from["vocab_size"]]


def resume_warnings(saved: Optional[Checkpoint], ignored: Sequence[str], out_dir: Path) -> tuple[str, ...]:
    """What --resume warns of: the `ignored` settings given (resumed_settings), and a last.pt too old to tell
    whether the corpus changed."""
    warnings = []
    if ignored:
        warnings.append(
            f"--resume goes on with the run's own {', '.join(map(flag, ignored))}, which made its "
            f"weights and its place in the data: ignored; only {', '.join(map(flag, RESUMABLE))} and "
            "the hardware may change"
        )
    if saved is not None and (saved.resume is None or saved.resume.corpus_digest is None):
        warnings.append(
            f"{out_dir / checkpoint.LAST} comes from a charrnn that kept no digest of its text, so "
            "a change to the corpus since the run began cannot be seen; going on"
        )
    return tuple(warnings)


def opened_run(group: distributed.Group, out_dir: Path, resume: bool, force: bool) -> Optional[Checkpoint]:
    """`open_run_directory` on rank 0 alone, its last.pt handed to every rank (as plain data: see from_main)."""

    def opened() -> Optional[dict]:
        saved = open_run_directory(out_dir, resume, force)
        return None if saved is None else schema.encode(saved)

    payload = group.from_main(opened)
    return None if payload is None else schema.from_payload(payload)


def read_corpus(
    group: distributed.Group, corpus_args: list[str], encoding: str, errors: str, base_chars: Optional[str], log
) -> Corpus:
    """The run's text, read on every rank (under torchrun a bad corpus is one error line, not one per rank);
    a fine-tuned run's with the `base_chars` of the checkpoint it started from first. `log` hears it on rank 0."""
    if base_chars is not None:
        read = partial(finetune.load_extended_corpus, corpus_args, base_chars, encoding, errors)
    else:
        read = partial(load_corpus, corpus_args, encoding, errors, log=log if group.is_main else None)
    return group.on_every_rank(read)


def checked_text(group: distributed.Group, saved: Optional[Checkpoint], corpus: Corpus) -> str:
    """The corpus's digest, once every rank read the same text and, on --resume, the text the run began on."""
    digest = distributed.corpus_digest(corpus.ids, corpus.vocab.chars).hex()
    group.check_same(
        lambda: bytes.fromhex(digest), "the processes read different corpora; every machine needs the same corpus files"
    )
    change = text_change(saved, corpus.vocab.chars, len(corpus.ids), digest) if saved is not None else None
    if change:  # the same verdict on every rank
        group.stop_all(
            f"the corpus ({corpus.name}) {change}: --resume goes on only with the text a run began on; "
            "train on this text in another --out, or start this run over with --force"
        )
    return digest


def cut_windows(
    group: distributed.Group, corpus: Corpus, config: TrainConfig
) -> tuple[TrainConfig, Windows, Optional[Windows], tuple[str, ...]]:
    """How the text is cut: the config with --items decided for it (lists.decided), this rank's training windows
    (the global batch is batch_size streams per process, or as many items' characters), the validation split's
    windows (None when it is too short to score), and the line that says a list is read as one."""
    config, notes = group.on_every_rank(partial(lists.decided, config, corpus))
    train_ids, val_ids = corpus.split(config.val_fraction, at_a_line=config.items == "lines")
    windows = group.on_every_rank(
        partial(lists.training_reading, train_ids, corpus.vocab, config, group.world_size)
    )  # too short a corpus: one line for the job
    return config, group.shard(windows), evaluation_reading(val_ids, config, corpus.vocab), notes


def sized_plan(plan: RunPlan, sized: Sequence[str]) -> RunPlan:
    """The plan with what the budget decides (charrnn.budget): the `sized` fields of the network, the step it stops
    at once rereading the text stops paying, and the cadence."""
    config = plan.train_config
    chars_per_step = config.batch_size * config.seq_len * plan.group.world_size
    decided = budget.plan(config, tuple(sized), partial(timed_steps, plan), chars_per_step, len(plan.windows))
    return replace(
        plan,
        model_config=replace(plan.model_config, **decided.shape),
        train_config=replace(config, eval_every=decided.eval_every, steps=decided.steps or config.steps),
        notes=plan.notes + ((decided.note,) if decided.note else ()),
    )


def timed_steps(plan: RunPlan, shape: dict, enough: float) -> tuple[float, float]:
    """Seconds per step of a throwaway network of the plan's with the fields in `shape` changed, and what timing it
    cost, as the slowest rank saw them, so that every rank decides alike. Timed without DDP: ranks may time
    different numbers of steps."""
    started = time.perf_counter()
    step = throwaway_step(
        replace(plan.model_config, **shape), plan.train_config, plan.windows[0], plan.group.device, plan.precision
    )
    step_s = budget.seconds_per_step(step, enough)
    return plan.group.max(step_s), plan.group.max(time.perf_counter() - started)


class Trainer:
    """One planned run: builds its network and optimizer, restores or fine-tunes them, and trains to the budget."""

    def __init__(self, plan: RunPlan, reporter: Optional[Reporter] = None):
        self.plan, self.group, self.out_dir, self.started = plan, plan.group, plan.out_dir, plan.started
        self.model_config, self.train_config, self.corpus = plan.model_config, plan.train_config, plan.corpus
        self.windows, self.val_windows = plan.windows, plan.val_windows
        self.device, self.precision = plan.group.device, plan.precision
        # Under torchrun only rank 0 speaks and touches the run directory.
        self.reporter = reporter if reporter is not None and self.group.is_main else Reporter(quiet=True)
        for line in plan.warnings if self.group.is_main else ():
            self.reporter.warn(line)
        for line in plan.notes:
            self.reporter.log(line)
        config = self.train_config
        require_memory(self.model_config, self.device)
        torch.manual_seed(config.seed)
        self.model = CharRNN(self.model_config, impl=config.impl).to(self.device)
        self.optimizer = make_optimizer(self.model, config)
        if self.group.active:
            torch.manual_seed((config.seed + self.group.rank) % 2**64)  # same weights everywhere, own dropout masks
        self.progress = RunProgress()
        self.state = self.model.initial_state(config.batch_size, self.device)
        if plan.saved is not None:
            self.restore(plan.saved)
        elif plan.init is not None:
            self.fine_tune(plan.init)
        if self.group.is_main:
            write_metrics(self.out_dir, self.progress.history)
        self.backend = backend_name(self.device, config.impl)
        self.network = self.group.wrap(self.model)  # DDP under torchrun: gradients averaged over the ranks

    def restore(self, saved: Checkpoint) -> None:
        """Continue where last.pt stopped: weights, optimizer, progress, this rank's carried state and RNG."""
        resume = saved.resume
        assert resume is not None  # open_run_directory refuses a last.pt without one
        self.model.load_state_dict(saved.weights)
        self.optimizer.load_state_dict(resume.optimizer)
        self.optimizer.param_groups[0]["weight_decay"] = self.train_config.weight_decay  # matrices' (make_optimizer)
        self.progress = replace(resume.progress, history=list(resume.progress.history))
        hidden, rng = self.group.resumed_share(resume.hidden_state, resume.rank_rng)
        self.state = map_state(lambda part: part.to(self.device), hidden)
        restore_rng_states(rng, self.device)

    def fine_tune(self, init: Checkpoint) -> None:
        """Start from the --init-from checkpoint's weights, grown for the corpus's new characters."""
        train_ids, _ = self.corpus.split(self.train_config.val_fraction, at_a_line=self.train_config.items == "lines")
        finetune.start_from(self.model, init, train_ids, self.device)
        assert self.plan.init_from is not None  # made with init (finetune.load_init)
        self.reporter.log(
            finetune.starting_line(
                self.plan.init_from, len(self.corpus.vocab), self.train_config.lr, self.model_config.dropout
            )
        )

    def describe(self) -> str:
        m, c = self.model_config, self.corpus
        return (
            f"{m.model} {m.layers}x{m.hidden} ({self.model.num_parameters() / 1e6:.2f}M parameters) on "
            f"{c.name} ({len(c.ids):,} chars, vocab {len(c.vocab)}) | "
            f"{self.device.type} ({self.backend}, {self.precision}) | "
            f"run directory {self.out_dir}" + (f" | {self.group.world_size} processes" if self.group.active else "")
        )

    def snapshot(self, val_loss: Optional[float]) -> Checkpoint:
        """What best.pt holds: everything sampling and evaluation need, and nothing else."""
        plan = self.plan
        return Checkpoint(
            self.model_config,
            self.train_config,
            self.corpus.vocab.chars,
            {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            corpus=self.corpus.name,
            corpus_args=plan.corpus_args,
            encoding=plan.encoding,
            errors=plan.errors,
            step=self.progress.step,
            val_loss=val_loss,
            elapsed=self.progress.elapsed,
            device=self.device.type,
            backend=self.backend,
            precision=self.precision,
            history=list(self.progress.history),
            init_from=plan.init_from,
        )

    def save_last(self, val_loss: Optional[float]) -> None:
        """last.pt adds what an exact resume needs: optimizer, data position, carried state, RNG."""
        shared = self.group.resume_state(map_state(torch.Tensor.cpu, self.state), rng_states(self.device))
        if shared is None:  # not rank 0: nothing to write
            return
        resume = ResumeState(
            self.optimizer.state_dict(),
            self.progress,
            *shared,
            corpus_digest=self.plan.text_digest,
            corpus_chars=len(self.corpus.ids),
        )
        checkpoint.save_checkpoint(replace(self.snapshot(val_loss), resume=resume), self.out_dir / checkpoint.LAST)

    def evaluate(self, pacer: pacing.Pacer) -> Optional[float]:
        """The validation loss, over as many characters as the pacer's time allows (at most eval_chars)."""
        if self.val_windows is None:
            return None
        per_window = self.val_windows.batch_size * self.val_windows.seq_len
        share = self.group.shard(self.val_windows)  # each rank scores its own streams; the sums are the whole
        windows = max(1, -(-pacer.eval_chars() // per_window))  # rounded up: a padded last window scores fewer
        nats, count = self.group.sum(
            *(total_loss(self.model, share, self.device, max_windows=windows) if share.batch_size else (0.0, 0))
        )
        pacer.validated(int(count))
        self.progress.val_chars = pacer.pass_chars  # last.pt keeps it: a resumed run's passes score as many
        return nats / count

    def record(self, train_loss: float, val_loss: Optional[float], chars_per_s: float, lr: float) -> None:
        """Append to metrics.jsonl and the history, and keep best.pt at the lowest loss so far."""
        if val_loss is not None and not math.isfinite(val_loss):
            raise CharRNNError(
                f"the validation loss became {val_loss} at step {self.progress.step}; stopped without saving it "
                f"({checkpoint.BEST} and {checkpoint.LAST} are intact). Try a lower --lr"
            )
        train_loss = self.group.mean(train_loss)
        entry = {
            "step": self.progress.step,
            "elapsed": round(self.progress.elapsed, 3),
            "train_loss": train_loss,
            "val_loss": val_loss,
            "lr": lr,
            "chars_per_s": round(chars_per_s, 1),
        }
        self.progress.history.append(entry)
        if self.group.is_main:
            try:
                with writes.appending(self.out_dir / rundir.METRICS) as f:
                    f.write(json.dumps(entry) + "\n")
            except OSError as error:
                raise checkpoint.unwritable(self.out_dir / rundir.METRICS, error) from None
        criterion = val_loss if val_loss is not None else train_loss
        if criterion < self.progress.best_val_loss:
            self.progress.best_val_loss = criterion
            if self.group.is_main:
                checkpoint.save_checkpoint(self.snapshot(val_loss), self.out_dir / checkpoint.BEST)
        self.save_last(val_loss)

    def run(self) -> dict:
        """Train until the budget is spent; returns a summary of the run. However it ends, the run directory's
        lock is given back, so that a process that trains (a notebook) leaves the run free to resume elsewhere."""
        try:
            return self.train_to_budget()
        except BaseException:
            rundir.abandon(self.out_dir)  # a new run that fails before its first checkpoint leaves nothing behind
            raise
        finally:
            rundir.release(self.out_dir)

    def train_to_budget(self) -> dict:
        config, reporter = self.train_config, self.reporter
        reporter.log(self.describe())
        chars_per_step = config.batch_size * config.seq_len * self.group.world_size
        pacer = self.pacer(chars_per_step)
        window_started, window_steps, window_loss = time.monotonic(), 0, 0.0
        val_loss, lr, chars_per_s = None, config.lr, 0.0
        self.model.train()
        with StopSignals(self.out_dir) as stop:
            while not pacer.finished:
                if self.group.any(stop.received is not None):  # every rank stops at the same step
                    self.save_last(val_loss)
                    raise TrainingInterrupted(
                        f"interrupted at step {self.progress.step}; saved {self.out_dir / checkpoint.LAST}, "
                        "continue with --resume",
                        stop.received,
                    )
                loss = self.train_step(lr := learning_rate(config, self.progress.step, pacer.fraction))
                pacer.stepped(self.progress.step)
                self.progress.elapsed = pacer.elapsed
                window_steps += 1
                window_loss += loss
                chars_per_s = window_steps * chars_per_step / max(time.monotonic() - window_started, 1e-9)
                if pacer.due:
                    val_loss = self.evaluate(pacer)
                    self.record(window_loss / window_steps, val_loss, chars_per_s, lr)
                    pacer.evaluated(self.progress.step)
                figures = {
                    "step": self.progress.step,
                    "train_loss": window_loss / window_steps,
                    "val_loss": val_loss,
                    "chars_per_s": chars_per_s,
                    "eta_s": pacer.eta_s,
                }
                reporter.update(pacer.fraction, figures, evaluated=pacer.due)
                if pacer.due:
                    window_started, window_steps, window_loss = time.monotonic(), 0, 0.0
        reporter.close()
        return {
            "steps": self.progress.step,
            "val_loss": val_loss,
            "best_val_loss": self.progress.best_val_loss,
            "elapsed": self.progress.elapsed,
            "chars_per_s": chars_per_s,
            "out_dir": str(self.out_dir),
        }

    def train_step(self, lr: float) -> float:
        if self.progress.position >= len(self.windows):
            # A new pass over the data: the streams start over, so must the carried state.
            self.progress.position = 0
            self.state = self.model.initial_state(self.train_config.batch_size, self.device)
        inputs, targets = self.windows[self.progress.position]
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        carried = self.windows.carries_state  # a batch of items reads every row from the zero state
        state = fresh_starts(self.state, self.progress.position) if carried else None
        loss, state = gradients(
            self.network, self.optimizer, inputs, targets, state, self.precision, self.train_config.grad_clip
        )
        if carried:
            self.state = state
        value = loss.item()
        if not math.isfinite(value):
            raise CharRNNError(
                f"the training loss became {value} at step {self.progress.step + 1}; stopped without saving it "
                f"({checkpoint.BEST} is intact). Try a lower --lr"
            )
        self.optimizer.step()
        self.progress.step += 1
        self.progress.position += 1
        return value

    def pacer(self, chars_per_step: int) -> pacing.Pacer:
        """When this command evaluates and stops (charrnn.pacing), on the seconds since it started as the slowest
        rank saw them: the ranks' clocks differ a little; the budget, the cadence and the schedule must not."""
        config, progress = self.train_config, self.progress
        seconds = None if config.time_budget is None else config.time_budget - progress.elapsed
        val = self.val_windows
        val_chars = len(val) * val.batch_size * val.seq_len if val is not None else 0
        return pacing.Pacer(
            lambda: self.group.max(time.monotonic() - self.started),
            seconds,
            config.steps,
            progress.step,
            config.eval_every,
            chars_per_step,
            min(config.eval_chars, val_chars),
            progress.elapsed,
            progress.val_chars,
        )


def prepare(
    corpus_args: list[str],
    model_config: ModelConfig,
    train_config: TrainConfig,
    out_dir: Path,
    reporter: Optional[Reporter] = None,
    **options,
) -> Trainer:
    """A run planned (see plan_run for the options) and built, ready to run."""
    reporter = reporter or Reporter(quiet=True)
    return Trainer(plan_run(corpus_args, model_config, train_config, out_dir, log=reporter.log, **options), reporter)


def run_training(
    corpus_args: list[str], model_config: ModelConfig, train_config: TrainConfig, out_dir: Path, **options
) -> dict:
    """Train a run to the end of its budget; see plan_run for the options."""
    with denormals_flushed():
        with rundir.removed_if_unused(Path(out_dir)), interrupted_before_training():
            trainer = prepare(corpus_args, model_config, train_config, out_dir, **options)
        return trainer.run()
