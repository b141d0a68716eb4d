"""`charrnn runs`: every run under a directory, summarized, to compare them.

A summary reads the run's best.pt through the checkpoint loader (checked as every command checks it)
and the metrics.jsonl beside it (where the run got to). best.pt, not last.pt: it has no optimizer
state, a third of the bytes. A 3x1024 LSTM loads in 0.1 s from best.pt, 0.6 s from last.pt.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Optional

from charrnn import checkpoint, layout
from charrnn.config import ModelConfig, from_dict
from charrnn import names
from charrnn.errors import CharRNNError, SettingError
from charrnn.plot import best_bpc, read_history, series


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
assert tuple(SORT_KEYS) == names.RUN_SORTS, "charrnn.names.RUN_SORTS lists the CLI's choices"


def list_runs(runs_dir: Path = layout.RUNS_DIR, sort: str = "name") -> list[RunSummary]:
    """A summary of every run directly under `runs_dir`, in `sort` order (see SORT_KEYS)."""
    if sort not in SORT_KEYS:
        raise SettingError(f"unknown --sort {sort!r}; choose one of {', '.join(SORT_KEYS)}")
    if not runs_dir.is_dir():
        raise CharRNNError(f"{runs_dir}: no such directory; train a run with `charrnn train`, or name the directory that holds runs")
    key, newest_first = SORT_KEYS[sort]
    runs = [summarize(folder) for folder in layout.run_directories(runs_dir)]
    known = sorted((run for run in runs if key(run) is not None), key=key, reverse=newest_first)
    return known + [run for run in runs if key(run) is None]


def summarize(folder: Path) -> RunSummary:
    """One run's figures, or what is wrong with it: a broken run is listed, not a traceback."""
    written = max((f.stat().st_mtime for f in (folder / layout.BEST, folder / layout.LAST) if f.is_file()), default=None)
    summary = RunSummary(name=folder.name, path=str(folder), written=written)
    try:
        path = checkpoint.resolve_checkpoint(str(folder))
        payload = checkpoint.load_checkpoint(path)
    except (CharRNNError, OSError) as error:
        summary.problem = str(error)
        return summary
    config = from_dict(ModelConfig, payload["model_config"])
    history = read_history(path, payload)
    # The last row of metrics.jsonl is where the run got to; best.pt's own step is where it did best.
    reached = series(history, "elapsed")
    steps, summary.elapsed_s = reached[-1] if reached else (payload.get("step"), payload.get("elapsed"))
    summary.steps = None if steps is None else int(steps)
    summary.model, summary.layers, summary.hidden = config.model, config.layers, config.hidden
    summary.parameters = sum(tensor.numel() for tensor in payload["model"].values())
    summary.corpus = payload.get("corpus")
    summary.best_val_bpc = best_bpc(history, payload.get("val_loss"))
    return summary
