"""Where runs live and what a run directory holds: names only, so that finding runs needs no torch
(the llm plugin lists runs on every `llm` command, and importing torch takes a second or two)."""

from __future__ import annotations

from pathlib import Path

RUNS_DIR = Path("runs")
BEST, LAST = "best.pt", "last.pt"
METRICS = "metrics.jsonl"  # one JSON object per evaluation


def run_directories(runs_dir: Path = RUNS_DIR) -> list[Path]:
    """The folders directly under `runs_dir` that hold a checkpoint, by name."""
    if not runs_dir.is_dir():
        return []
    return sorted(folder for folder in runs_dir.iterdir()
                  if folder.is_dir() and ((folder / BEST).is_file() or (folder / LAST).is_file()))
