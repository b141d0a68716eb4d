"""Training progress on stderr: a live rich bar on a terminal, plain log lines elsewhere."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Optional

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from charrnn.config import format_duration

PLAIN_LOG_INTERVAL_S = 10.0
QUIET_WORK_S = 2.0  # work shorter than this shows no progress at all


def format_stats(
    step: int, train_loss: Optional[float], val_loss: Optional[float], chars_per_s: float, eta_s: float
) -> str:
    parts = [f"step {step}"]
    if train_loss is not None:
        parts.append(f"train {train_loss:.3f}")
    if val_loss is not None:
        parts.append(f"val {val_loss:.3f}")
    parts.append(f"{chars_per_s / 1000:.1f}k chars/s")
    parts.append(f"eta {format_duration(eta_s)}")
    return " | ".join(parts)


def live_on(stream) -> bool:
    """Whether `stream` takes a live bar: a terminal that allows colour and control codes."""
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


class Meter:
    """Progress through long work other than training (`charrnn eval`), on stderr: nothing for the first
    `quiet_s` seconds, then a bar on a terminal, else a plain line every PLAIN_LOG_INTERVAL_S."""

    def __init__(self, what: str, stream=None, quiet_s: float = QUIET_WORK_S):
        self.what, self.stream, self.quiet_s = what, stream or sys.stderr, quiet_s
        self.started, self.last_plain = time.monotonic(), -float("inf")
        self.bar: Optional[Progress] = None
        self.task = TaskID(0)  # the bar's one task, once there is a bar

    def __call__(self, fraction: float) -> None:
        now = time.monotonic()
        if now - self.started < self.quiet_s:
            return
        eta = (now - self.started) * (1 - fraction) / max(fraction, 1e-9)
        if live_on(self.stream):
            if self.bar is None:
                self.bar = Progress(
                    TextColumn(self.what),
                    BarColumn(),
                    TextColumn("{task.percentage:>3.0f}%"),
                    TextColumn("eta {task.fields[eta]}"),
                    console=Console(file=self.stream, highlight=False),
                    transient=True,
                )
                self.task = self.bar.add_task(self.what, total=1.0, eta="")
                self.bar.start()
            self.bar.update(self.task, completed=min(fraction, 1.0), eta=format_duration(eta))
        elif now - self.last_plain >= PLAIN_LOG_INTERVAL_S:
            self.last_plain = now
            print(
                f"charrnn: {self.what} {min(fraction, 1.0) * 100:3.0f}% | eta {format_duration(eta)}",
                file=self.stream,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


class Reporter:
    """Everything training says goes through here, to stderr only."""

    def __init__(self, quiet: bool = False, stream=None, on_progress: Optional[Callable[[dict], None]] = None):
        stream = stream or sys.stderr
        self.quiet, self.on_progress = quiet, on_progress
        live = live_on(stream)
        self.console = Console(file=stream, no_color=not live, highlight=False, force_terminal=live or None)
        self.bar: Optional[Progress] = None
        self.task = TaskID(0)  # the bar's one task, once there is a bar
        self.live = live and not quiet
        self.last_plain = 0.0

    def log(self, message: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.console.print(message, markup=False)
        else:
            self.console.print(message, markup=False, soft_wrap=True)

    def warn(self, message: str) -> None:
        """One line the user must see even when quiet: a setting left aside, a check that could not be made."""
        console = self.bar.console if self.bar is not None else self.console
        console.print(f"charrnn: warning: {message}", markup=False, soft_wrap=True)

    def update(self, fraction: float, figures: dict, evaluated: bool = False) -> None:
        """Progress through the budget (0..1) and the current figures (`format_stats`'s arguments), also
        handed to `on_progress`, however quiet."""
        if self.on_progress is not None:
            self.on_progress({**figures, "fraction": fraction, "evaluated": evaluated})
        if self.quiet:
            return
        stats = format_stats(**figures)
        if self.live:
            if self.bar is None:
                self.bar = Progress(
                    TextColumn("training"),
                    BarColumn(),
                    TextColumn("{task.percentage:>3.0f}%"),
                    TextColumn("{task.fields[stats]}"),
                    console=self.console,
                    transient=False,
                )
                self.task = self.bar.add_task("train", total=1.0, stats=stats)
                self.bar.start()
            self.bar.update(self.task, completed=min(fraction, 1.0), stats=stats)
            if evaluated:
                self.bar.console.print(stats, markup=False)
            return
        now = time.monotonic()
        if evaluated or now - self.last_plain >= PLAIN_LOG_INTERVAL_S:
            self.last_plain = now
            self.log(f"{min(fraction, 1.0) * 100:3.0f}% {stats}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
