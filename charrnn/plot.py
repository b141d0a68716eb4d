"""The training curve: train and val loss against steps, drawn in the terminal or saved as an image."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

from charrnn import install_command, writes
from charrnn.errors import CharRNNError
from charrnn.rundir import METRICS



def read_history(checkpoint_path: Path, saved) -> list[dict]:
    """The run's metrics.jsonl beside the checkpoint (the whole run), else the history the checkpoint (`saved`, a
    schema.Checkpoint) holds."""
    metrics = Path(checkpoint_path).parent / METRICS
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
    return [(row["step"], row[key]) for row in history
            if all(isinstance(row.get(name), (int, float)) and math.isfinite(row[name]) for name in (key, "step"))]


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
        raise CharRNNError(f"--plot needs matplotlib, an optional extra: {install_command('plot')} "
                           "(or pip install matplotlib)") from None
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
