"""Where runs live and what a run directory holds: names only, so that finding runs needs no torch
(the llm plugin lists runs on every `llm` command, and importing torch takes a second or two)."""

from __future__ import annotations

from pathlib import Path

RUNS_DIR = Path("runs")
BEST, LAST = "best.pt", "last.pt"
METRICS = "metrics.jsonl"  # one JSON object per evaluation


def checkpoints(folder: Path) -> list[Path]:
    """The checkpoints `folder` holds: best.pt and last.pt, those that are files."""
    return [folder / name for name in (BEST, LAST) if (folder / name).is_file()]


def is_run(folder: Path) -> bool:
    """Whether `folder` is a charrnn run: the one rule. It holds a checkpoint; a metrics.jsonl or .lock alone
    may be anyone's."""
    return folder.is_dir() and bool(checkpoints(folder))


def last_written(folder: Path) -> float:
    """When the run's newest checkpoint was written (0 for a folder that is no run)."""
    return max((path.stat().st_mtime for path in checkpoints(folder)), default=0.0)


def run_directories(runs_dir: Path = RUNS_DIR) -> list[Path]:
    """The runs directly under `runs_dir`, by name."""
    if not runs_dir.is_dir():
        return []
    return sorted(folder for folder in runs_dir.iterdir() if is_run(folder))
