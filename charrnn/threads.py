"""How many threads generation runs on: one for a few samples, and for a batch whichever is faster now.

A step splits its products over the threads and waits for the slowest. One sample's step is too
small to split: more threads only add synchronization (2x512 on 2 idle cores: 3,030 chars/s on one
thread, 2,840 on two) and, when another job holds a core, stall on it (3,140 against 1,250). A
batch's step is large enough to gain from every core on an idle machine, and loses the same way on
a busy one (2x512, -n 16, 2 cores: 19,000 chars/s on two threads when idle, 11,000 on one; 4,200
on two and 11,000 on one while another process holds a core). So a batch times its steps on each
thread count and keeps the faster, and checks again now and then, since other jobs come and go.
"""

from __future__ import annotations

import itertools
import time
from typing import Callable, Iterable, Iterator, TypeVar

import torch

from charrnn.stepper import BATCHED_SAMPLES

Step = TypeVar("Step")
# Torch's own thread count (the cores, or OMP_NUM_THREADS), taken before generation changes it.
DEFAULT_THREADS = torch.get_num_threads()


def thread_choices(num_samples: int) -> tuple[int, ...]:
    """The thread counts worth timing for a batch of `num_samples`: one, or one and every core."""
    return (1,) if num_samples < BATCHED_SAMPLES or DEFAULT_THREADS == 1 else (DEFAULT_THREADS, 1)


def on_fastest_threads(steps: Iterable[Step], choices: tuple[int, ...], probe: int = 32, every: int = 2000,
                       clock: Callable[[], float] = time.perf_counter) -> Iterator[Step]:
    """Yield `steps`, each computed on whichever of `choices` thread counts ran `probe` steps fastest.

    The first step is never timed: it holds the set-up (the prime, packing the weights). Every
    `every` steps the choices are timed again. A timing holds only the steps' own work: the
    `probe` steps are computed before any is yielded. The caller's thread count is restored once
    the steps run out or the generator is closed.
    """
    previous = torch.get_num_threads()
    try:
        yield from fastest_threads(iter(steps), choices, probe, every, clock)
    finally:
        torch.set_num_threads(previous)


def fastest_threads(steps: Iterator[Step], choices: tuple[int, ...], probe: int, every: int,
                    clock: Callable[[], float]) -> Iterator[Step]:
    torch.set_num_threads(choices[0])
    yield from itertools.islice(steps, 1)
    if len(choices) == 1:
        yield from steps
        return
    while True:
        seconds_per_step: dict[int, float] = {}
        for threads in choices:
            torch.set_num_threads(threads)
            start = clock()
            timed = list(itertools.islice(steps, probe))
            seconds_per_step[threads] = (clock() - start) / max(len(timed), 1)
            yield from timed
            if len(timed) < probe:
                return
        torch.set_num_threads(min(seconds_per_step, key=seconds_per_step.__getitem__))
        ran = 0
        for step in itertools.islice(steps, every):
            ran += 1
            yield step
        if ran < every:
            return
