"""What runs hold, as people read it: one checkpoint described with its training curve (`charrnn info`), and
every run under a directory summarized, to compare them (`charrnn runs`). The curve is train and val loss
against steps, from the run's metrics.jsonl, drawn in the terminal or saved as an image.

A summary reads the run's best.pt through the checkpoint loader (checked as every command checks it)
and the metrics.jsonl beside it (where the run got to). best.pt, not last.pt: it has no optimizer
state, a third of the bytes. A 3x1024 LSTM loads in 0.1 s from best.pt, 0.6 s from last.pt.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Optional

from charrnn import checkpoint, finetune, install_command, rundir, writes
from charrnn.config import RUN_SORTS, format_duration
from charrnn.errors import CharRNNError, SettingError, escaped


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
        written = (
            datetime.fromtimestamp(self.written).astimezone().isoformat(timespec="seconds") if self.written else None
        )
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
        raise CharRNNError(
            f"{runs_dir}: no such directory; train a run with `charrnn train`, or name the directory that holds runs"
        )
    key, newest_first = SORT_KEYS[sort]
    runs = [summarize(folder) for folder in rundir.run_directories(runs_dir)]
    known = sorted((run for run in runs if key(run) is not None), key=key, reverse=newest_first)
    return known + [run for run in runs if key(run) is None]


def summarize(folder: Path) -> RunSummary:
    """One run's figures, or what is wrong with it: a broken run is listed, not a traceback."""
    written = max(
        (f.stat().st_mtime for f in (folder / rundir.BEST, folder / rundir.LAST) if f.is_file()), default=None
    )
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
    return (
        escaped(run.name),
        f"{run.model} {run.layers}x{run.hidden}",
        parameters,
        escaped(run.corpus or "-"),
        "-" if run.steps is None else f"{run.steps:,}",
        "-" if run.elapsed_s is None else format_duration(run.elapsed_s),
        "-" if run.best_val_bpc is None else f"{run.best_val_bpc:.3f}",
        "-" if run.written is None else datetime.fromtimestamp(run.written).strftime("%Y-%m-%d %H:%M"),
    )


def aligned(rows: list[tuple[str, ...]]) -> list[str]:
    """Rows as lines of left-aligned columns, two spaces apart; a shorter row's last cell (a message) runs on."""
    columns = max(map(len, rows))
    widths = [max(len(row[column]) for row in rows if len(row) == columns) for column in range(columns)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def describe(
    argument: Optional[str] = None, plot: Optional[Path] = None, force: bool = False
) -> tuple[dict, list[dict]]:
    """`charrnn info`: a checkpoint's figures (model, size, vocabulary, training) and its training history;
    with `plot`, the curve also saved there as an image (replacing a file already there only with `force`)."""
    if plot is not None:
        writes.check_targets([Path(plot)], force)
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
        "",
        terminal_curve(history),
    ]


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


def read_history(checkpoint_path: Path, saved) -> list[dict]:
    """The run's metrics.jsonl beside the checkpoint (the whole run), else the history the checkpoint (`saved`, a
    schema.Checkpoint) holds."""
    metrics = Path(checkpoint_path).parent / rundir.METRICS
    history = saved.history
    if metrics.is_file() and not Path(checkpoint_path).is_dir():  # an exported folder holds its whole history itself
        try:
            rows = [json.loads(line) for line in metrics.read_text("utf-8").splitlines() if line.strip()]
            if len(rows) >= len(history) and all(isinstance(row, dict) for row in rows):
                return rows
        except (OSError, ValueError):
            pass
    return list(history)


def series(history: list[dict], key: str) -> list[tuple[float, float]]:
    return [
        (row["step"], row[key])
        for row in history
        if all(isinstance(row.get(name), (int, float)) and math.isfinite(row[name]) for name in (key, "step"))
    ]


def best_bpc(history: list[dict], val_loss: Optional[float] = None) -> Optional[float]:
    """The run's lowest validation loss in bits per character; else `val_loss`'s; None if never validated."""
    best = min((loss for _, loss in series(history, "val_loss")), default=val_loss)
    return None if best is None else best / math.log(2)


def terminal_curve(history: list[dict], width: int = 64, height: int = 12) -> str:
    """A plain-text plot: `.` train loss, `o` val loss (`*` where both fall), steps across, loss up."""
    train, val = series(history, "train_loss"), series(history, "val_loss")
    points = train + val
    if not points:
        return "(no training history to plot)"
    steps = [s for s, _ in points]
    losses = [v for _, v in points]
    low_step, high_step = min(steps), max(steps)
    low, high = min(losses), max(losses)
    if high == low:
        high = low + 1e-9
    grid = [[" "] * width for _ in range(height)]

    def place(step: float, loss: float, mark: str) -> None:
        column = 0 if high_step == low_step else round((step - low_step) / (high_step - low_step) * (width - 1))
        row = height - 1 - round((loss - low) / (high - low) * (height - 1))
        grid[row][column] = "*" if grid[row][column] not in (" ", mark) else mark

    for step, loss in train:
        place(step, loss, ".")
    for step, loss in val:
        place(step, loss, "o")
    label_width = 7
    lines = []
    for index, row in enumerate(grid):
        label = f"{high:.3f}" if index == 0 else f"{low:.3f}" if index == height - 1 else ""
        lines.append(f"{label:>{label_width}} |{''.join(row)}")
    lines.append(" " * label_width + " +" + "-" * width)
    left, right = f"step {low_step:g}", f"{high_step:g}"
    lines.append(" " * (label_width + 2) + left + right.rjust(width - len(left)))
    lines.append(" " * (label_width + 2) + "loss in nats/char: . train  o val  * both")
    return "\n".join(lines)


def save_plot(history: list[dict], path: Path, title: Optional[str] = None) -> None:
    """Write the curve as an image (any format matplotlib knows, from the file's extension)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CharRNNError(
            f"--plot needs matplotlib, an optional extra: {install_command('plot')} (or pip install matplotlib)"
        ) from None
    train, val = series(history, "train_loss"), series(history, "val_loss")
    if not train and not val:
        raise CharRNNError("this checkpoint has no training history to plot")
    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=120)
    for points, label in ((train, "train"), (val, "val")):
        if points:
            axes.plot(*zip(*points), marker="o" if label == "val" else None, markersize=3, label=label)
    axes.set_xlabel("step")
    axes.set_ylabel("loss (nats/char)")
    axes.set_title(title or "training curve")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    try:
        with writes.written_atomically(Path(path)) as f:  # never through a link at `path`
            figure.savefig(f, format=Path(path).suffix[1:] or None)
    except (OSError, ValueError) as error:
        raise CharRNNError(f"cannot write the plot to {path}: {error}") from None
    finally:
        plt.close(figure)
