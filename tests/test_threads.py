"""Generation's thread count: one for a few samples; for a batch, whichever of one and every core is faster."""

import itertools

import pytest
import torch

from charrnn.sample import BATCHED_SAMPLES, DEFAULT_THREADS, on_fastest_threads, thread_choices


class Machine:
    """Steps whose cost depends on the thread count they run on, timed by a clock only they move."""

    def __init__(self, seconds_per_step: dict[int, float]):
        self.now, self.seconds_per_step, self.threads_per_step = 0.0, seconds_per_step, []

    def clock(self) -> float:
        return self.now

    def steps(self, count: int):
        for index in range(count):
            threads = torch.get_num_threads()  # what the step runs on, as a real step would
            self.threads_per_step.append(threads)
            self.now += self.seconds_per_step[threads]
            yield index


@pytest.fixture(autouse=True)
def restore_threads():
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("seconds_per_step, faster", [({2: 3.0, 1: 1.0}, 1), ({2: 0.5, 1: 1.0}, 2)])
def test_a_batch_keeps_the_faster_thread_count_and_checks_again(seconds_per_step, faster):
    machine = Machine(seconds_per_step)
    steps = list(on_fastest_threads(machine.steps(40), (2, 1), probe=4, every=10, clock=machine.clock))
    assert steps == list(range(40))  # every step, in order
    # The set-up step, 4 timed on two threads, 4 on one; 10 on the faster; timed again; 10 more.
    assert machine.threads_per_step == [2] + [2] * 4 + [1] * 4 + [faster] * 10 + [2] * 4 + [1] * 4 + [faster] * 10 + [2] * 3


@pytest.mark.parametrize("count", [0, 1, 3, 9, 12, 25])
def test_every_step_comes_out_however_short_the_run(count):
    machine = Machine({2: 1.0, 1: 2.0})
    assert list(on_fastest_threads(machine.steps(count), (2, 1), probe=4, every=10, clock=machine.clock)) == list(range(count))


def test_one_choice_is_simply_used():
    machine = Machine({1: 1.0})
    assert list(on_fastest_threads(machine.steps(30), (1,), probe=4, every=10, clock=machine.clock)) == list(range(30))
    assert machine.threads_per_step == [1] * 30


def test_only_a_batch_is_offered_every_core():
    assert thread_choices(1) == thread_choices(BATCHED_SAMPLES - 1) == (1,)
    assert thread_choices(BATCHED_SAMPLES) == ((DEFAULT_THREADS, 1) if DEFAULT_THREADS > 1 else (1,))


@pytest.mark.parametrize("stop_after", [0, 3, None], ids=["closed at once", "closed early", "run out"])
def test_the_callers_thread_count_comes_back(stop_after):
    torch.set_num_threads(3)
    steps = on_fastest_threads(Machine({2: 1.0, 1: 2.0}).steps(40), (2, 1), probe=4, every=10)
    taken = list(itertools.islice(steps, stop_after)) if stop_after is not None else list(steps)
    steps.close()
    assert torch.get_num_threads() == 3 and len(taken) == (40 if stop_after is None else stop_after)
