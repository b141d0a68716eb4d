"""The clock of a run: one deadline from the command's start, evaluations paced by what the run's own steps
and evaluations cost as they go, and time kept back for the final evaluation and save.

`--time` is a promise about the whole command: imports, corpus loading, the sizing probe, evaluations and
checkpoints all spend it. The probe (charrnn.budget) only chooses the network: on a busy 2-core machine it
timed steps 10 to 20 times slower than the run's own, and a cadence planned from it evaluated at every step.
"""

from __future__ import annotations

import collections
import math
import os
import statistics
import time
from collections.abc import Callable
from typing import Optional

EVALS_PER_BUDGET = 10  # a --time budget evaluates about this many times (the final one included)
EVAL_SHARE = 0.15  # evaluations and their checkpoints take at most this share of the time left to train
RECENT_STEPS = 15  # a step costs the median of this many recent ones: a stalled step or two moves it not at all
RESERVE_MARGIN = 1.5  # the final evaluation and save are kept this many times what they should cost
FIRST_PASS_SLOWDOWN = 4.0  # until a pass is timed, validation counts as this many times slower a char than training
EXIT_S = 0.5  # after the final save: unlocking, the last lines and the interpreter's exit (0.3 s on a quiet 2-core CPU)


def process_started(clock: Callable[[], float] = time.monotonic) -> float:
    """When this process started, on `clock`: so that a budget counts the interpreter and its imports. Where
    /proc does not say (not Linux), now."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat, open("/proc/uptime", encoding="ascii") as uptime:
            started_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime, after pid and (comm)
            age = float(uptime.read().split()[0]) - started_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return clock()
    return clock() - min(max(age, 0.0), 60.0)  # an implausible age (a clock that jumped) counts as none


class Pacer:
    """When a run evaluates and when it stops, from what its steps and evaluations cost as they run.

    `clock` gives the seconds spent since the command started (under torchrun the slowest rank's, so that every
    rank decides alike); `seconds` is what the command may spend (None: no --time), `steps` the step the run
    ends at (None: no --steps), `eval_every` the user's cadence in steps (None: paced in time), `eval_chars`
    the most characters a validation pass scores (0: no validation split). The trainer calls `stepped` after
    each step, `validated` after each validation pass and `evaluated` once its checkpoints are written; it
    reads `finished`, `due`, `fraction`, `eta_s` and `elapsed`.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        seconds: Optional[float],
        steps: Optional[int],
        step: int,
        eval_every: Optional[int],
        chars_per_step: int,
        eval_chars: int,
        trained_before: float = 0.0,
        pass_chars: int = 0,
    ):
        self.clock, self.steps, self.eval_every, self.chars_per_step = clock, steps, eval_every, chars_per_step
        self.seconds = math.inf if seconds is None else seconds
        self.most_eval_chars, self.trained_before = eval_chars, trained_before
        self.pass_chars = pass_chars  # what every validation pass of the run scores, as the first decided (0: none yet)
        self.started = self.mark = clock()
        self.step_times: collections.deque = collections.deque(maxlen=RECENT_STEPS)
        self.save_costs: collections.deque = collections.deque(maxlen=2)  # the last evaluations' checkpoint writes
        self.eval_speed = math.nan  # the last validation pass's chars/s (nan: none yet)
        self.pass_s = EVAL_SHARE * self.seconds / EVALS_PER_BUDGET  # what one validation pass may take
        self.evals_left = EVALS_PER_BUDGET
        # A run keeps its steps even when the set-up spent its time; one whose budget earlier commands spent has none.
        self.finished = self.seconds <= 0 or (steps is not None and step >= steps)
        self.due = False
        self.progressed(step, self.started)
        self.next_due = self.replanned(step, self.started)

    @property
    def step_s(self) -> float:
        return statistics.median(self.step_times) if self.step_times else 0.0

    def eval_chars(self) -> int:
        """Characters every validation pass scores, so that best.pt compares losses over one stretch of text: what
        the first pass scored, which was what fits a pass's share of the budget at a quarter of the steps' speed
        (beside two CPU hogs a pass ran 4 times slower a character). A slower pass spaces the evaluations instead."""
        if self.pass_chars:
            return self.pass_chars
        speed = self.chars_per_step / max(self.step_s, 1e-9) / FIRST_PASS_SLOWDOWN
        return int(min(self.most_eval_chars, max(1, self.pass_s * speed)))

    def evaluation_s(self) -> float:
        """What the next evaluation should cost: its pass, then its checkpoints (before any are timed, a pass's
        share each)."""
        pass_s = self.eval_chars() / self.eval_speed if math.isfinite(self.eval_speed) else self.pass_s
        return (pass_s if self.most_eval_chars else 0.0) + (max(self.save_costs) if self.save_costs else self.pass_s)

    def reserve(self) -> float:
        """Seconds kept for the final evaluation, its save and the exit."""
        return RESERVE_MARGIN * self.evaluation_s() + EXIT_S

    def train_end(self) -> float:
        """When the last step must end, on the clock."""
        return self.seconds - self.reserve() if math.isfinite(self.seconds) else math.inf

    def stepped(self, step: int) -> None:
        """After a step: whether the run is finished (no time for another step and the reserve, or --steps
        reached) and whether an evaluation is due (the final one always is)."""
        now = self.clock()
        self.step_times.append(now - self.mark)
        self.mark = now
        self.finished = (self.steps is not None and step >= self.steps) or now + self.step_s >= self.train_end()
        self.progressed(step, now)
        self.due = self.finished or (step % self.eval_every == 0 if self.eval_every else self.fraction >= self.next_due)

    def validated(self, chars: int) -> None:
        """After a validation pass that scored `chars` characters."""
        now = self.clock()
        if chars:
            self.eval_speed = chars / max(now - self.mark, 1e-9)
            self.pass_chars = self.pass_chars or chars
        self.mark = now

    def evaluated(self, step: int) -> None:
        """After an evaluation's checkpoints: what they cost is known, and the evaluations left are re-planned."""
        now = self.clock()
        self.save_costs.append(now - self.mark)
        self.mark = now  # the next step's time starts here
        self.evals_left = max(1, self.evals_left - 1)
        self.next_due = self.replanned(step, now)

    def replanned(self, step: int, now: float) -> float:
        """The share of the budget at which the next evaluation is due: the evaluations left, as many as their
        cost allows in the time left to train, spread evenly over the rest of the budget, the last at its end."""
        left = self.train_end() - now
        if self.steps is not None and self.step_times:
            left = min(left, (self.steps - step) * self.step_s)
        evals = self.evals_left
        if math.isfinite(left) and self.save_costs:  # once an evaluation has been timed
            evals = max(1, min(evals, math.floor(EVAL_SHARE * left / self.evaluation_s())))
        return self.fraction + (1.0 - self.fraction) / evals

    def progressed(self, step: int, now: float) -> None:
        """The share of the budget done (for the learning-rate schedule and the bar), the seconds left, and the
        seconds trained (this command's and earlier ones')."""
        self.elapsed = self.trained_before + now - self.started
        planned = self.trained_before + self.train_end() - self.started
        shares = [self.elapsed / planned if planned > 0 else 1.0] if math.isfinite(planned) else []
        if self.steps is not None:
            shares.append(step / self.steps)
        self.fraction = 1.0 if self.finished else min(1.0, max(shares, default=0.0))
        steps_left = (self.steps - step) * self.step_s if self.steps is not None else math.inf
        self.eta_s = max(0.0, min(self.seconds - now, steps_left))
