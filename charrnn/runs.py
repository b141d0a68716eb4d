"""What runs hold, as people read it: one checkpoint described (`charrnn info`), and every run under a
directory summarized, to compare them (`charrnn runs`).

A summary reads the run's best.pt through the checkpoint loader (checked as every command checks it)
and the metrics.jsonl beside it (where the run got to). best.pt, not last.pt: it has no optimizer
state, a third of the bytes. A 3x1024 LSTM loads in 0.1 s from best.pt, 0.6 s from last.pt.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Optional

from charrnn import checkpoint, finetune, rundir
from charrnn.config import RUN_SORTS
from charrnn.errors import CharRNNError, SettingError, escaped
from charrnn.plot import best_bpc, read_history, save_plot, series, terminal_curve
from charrnn.progress import format_duration


@dataclass
class RunSummary:
    name: str
    path: str
    written: Optional[float]  # when its newest checkpoint was written (seconds since the epoch)
    model: Optional[str] = None
    layers: Optional[int] = None
    hidden: Optional[int] = None
    parameters: Optional[int] = None
    corpus: Optional[str] = None
    steps: Optional[int] = None
    elapsed_s: Optional[float] = None
    best_val_bpc: Optional[float] = None
    problem: Optional[str] = None  # why the run could not be read, instead of the figures

    def as_dict(self) -> dict:
        written = datetime.fromtimestamp(self.written).astimezone().isoformat(timespec="seconds") if self.written else None
        return {**asdict(self), "written": written}


# How --sort orders runs: best first (lowest bpc), newest first, biggest and longest first. Runs that
# lack the figure (unreadable, never validated) come last.
SORT_KEYS = {
    "name": (lambda run: run.name, False),
    "bpc": (lambda run: run.best_val_bpc, False),
    "written": (lambda run: run.written, True),
    "steps": (lambda run: run.steps, True),
    "time": (lambda run: run.elapsed_s, True),
    "size": (lambda run: run.parameters, True),
}
assert tuple(SORT_KEYS) == RUN_SORTS, "charrnn.config.RUN_SORTS lists the CLI's choices"


def list_runs(runs_dir: Path = rundir.RUNS_DIR, sort: str = "name") -> list[RunSummary]:
    """A summary of every run directly under `runs_dir`, in `sort` order (see SORT_KEYS)."""
    if sort not in SORT_KEYS:
        raise SettingError(f"unknown --sort {sort!r}; choose one of {', '.join(SORT_KEYS)}")
    if not runs_dir.is_dir():
        raise CharRNNError(f"{runs_dir}: no such directory; train a run with `charrnn train`, or name the directory that holds runs")
    key, newest_first = SORT_KEYS[sort]
    runs = [summarize(folder) for folder in rundir.run_directories(runs_dir)]
    known = sorted((run for run in runs if key(run) is not None), key=key, reverse=newest_first)
    return known + [run for run in runs if key(run) is None]


def summarize(folder: Path) -> RunSummary:
    """One run's figures, or what is wrong with it: a broken run is listed, not a traceback."""
    written = max((f.stat().st_mtime for f in (folder / rundir.BEST, folder / rundir.LAST) if f.is_file()), default=None)
    summary = RunSummary(name=folder.name, path=str(folder), written=written)
    try:
        path = checkpoint.resolve_checkpoint(str(folder))
        saved = checkpoint.load_checkpoint(path)
    except (CharRNNError, OSError) as error:
        summary.problem = str(error)
        return summary
    config = saved.model_config
    history = read_history(path, saved)
    # The last row of metrics.jsonl is where the run got to; best.pt's own step is where it did best.
    reached = series(history, "elapsed")
    steps, summary.elapsed_s = reached[-1] if reached else (saved.step, saved.elapsed)
    summary.steps = None if steps is None else int(steps)
    summary.model, summary.layers, summary.hidden = config.model, config.layers, config.hidden
    summary.parameters = saved.parameters
    summary.corpus = saved.corpus
    summary.best_val_bpc = best_bpc(history, saved.val_loss)
    return summary


COLUMNS = ("name", "model", "params", "corpus", "steps", "time", "best bpc", "written")


def table(summaries: list[RunSummary]) -> list[str]:
    """`charrnn runs`' lines: a header, then a row per run."""
    return aligned([COLUMNS] + [run_cells(run) for run in summaries])


def run_cells(run: RunSummary) -> tuple[str, ...]:
    """A run's row of the table; an unreadable run shows its problem in place of the figures."""
    if run.problem is not None:
        return escaped(run.name), f"unreadable: {escaped(run.problem)}"
    size = run.parameters
    parameters = "-" if size is None else f"{size / 1e6:.2f}M" if size >= 1e6 else f"{size / 1e3:.1f}K"
    return (escaped(run.name), f"{run.model} {run.layers}x{run.hidden}", parameters, escaped(run.corpus or "-"),
            "-" if run.steps is None else f"{run.steps:,}",
            "-" if run.elapsed_s is None else format_duration(run.elapsed_s),
            "-" if run.best_val_bpc is None else f"{run.best_val_bpc:.3f}",
            "-" if run.written is None else datetime.fromtimestamp(run.written).strftime("%Y-%m-%d %H:%M"))


def aligned(rows: list[tuple[str, ...]]) -> list[str]:
    """Rows as lines of left-aligned columns, two spaces apart; a shorter row's last cell (a message) runs on."""
    columns = max(map(len, rows))
    widths = [max(len(row[column]) for row in rows if len(row) == columns) for column in range(columns)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def describe(argument: Optional[str] = None, plot: Optional[Path] = None) -> tuple[dict, list[dict]]:
    """`charrnn info`: a checkpoint's figures (model, size, vocabulary, training) and its training history;
    with `plot`, the curve also saved there as an image."""
    path = checkpoint.resolve_checkpoint(argument)
    saved = checkpoint.load_checkpoint(path)
    history = read_history(path, saved)
    if plot is not None:
        save_plot(history, plot, title=f"{saved.corpus}: {path}")
    model_config, vocab = saved.model_config, saved.vocab
    details = {
        "checkpoint": str(path),
        "model": model_config.model,
        "layers": model_config.layers,
        "hidden": model_config.hidden,
        "embed": model_config.embed,
        "dropout": model_config.dropout,
        "parameters": saved.parameters,
        "vocab_size": len(vocab),
        "vocab_preview": repr(vocab[:48]) + (" ..." if len(vocab) > 48 else ""),
        "corpus": saved.corpus,
        "steps": saved.step,
        "elapsed_s": saved.elapsed,
        "device": saved.device,
        "backend": saved.backend,
        "precision": saved.precision,
        "val_loss": saved.val_loss,
        "best_val_loss": min((loss for _, loss in series(history, "val_loss")), default=None),
        "init_from": saved.init_from,
    }
    return details, history


def described_lines(details: dict, history: list[dict]) -> list[str]:
    """`describe`'s figures as `charrnn info` prints them, one per line, then the curve drawn in text."""
    shown = {**details, "init_from": finetune.describe(details["init_from"])}
    return [f"{key.removesuffix('_s'):14} {escaped(readable(key, value))}" for key, value in shown.items()] + [
        "", terminal_curve(history)]


def readable(key: str, value) -> str:
    """A value of `info` as a person reads it: a duration as 3m01s, a loss to 4 decimals, a count with separators."""
    if value is None:
        return "-"
    if key.endswith("_s"):
        return format_duration(value)
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
