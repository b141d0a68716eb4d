"""The run's clock (charrnn.pacing), on a fake clock: the cadence follows the speed measured as the run goes, a
slowdown does not make it evaluate every step, and the loop stops leaving the reserve for the final evaluation
and save. Then the trainer: its set-up spends the budget, and a slow sizing probe no longer sets the cadence."""

import os
import subprocess
import sys
import time

import pytest
from charrnn import budget, pacing
from charrnn.config import ModelConfig, TrainConfig
from charrnn.pacing import EVALS_PER_BUDGET, EXIT_S, Pacer
from charrnn.trainer import prepare

STEP_CHARS = 2048


class FakeClock:
    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def simulate(seconds, step_s, eval_speed=300_000.0, save_s=0.02, started=0.0, steps=None, eval_every=None,
             trained_before=0.0):
    """Run a pacer as the trainer does, on a fake clock: `step_s(t)` seconds a step at time t, a validation pass
    at `eval_speed` chars/s, `save_s` for its checkpoints. The steps taken, those evaluated after, and when the
    final save ended."""
    clock = FakeClock(started)
    pacer = Pacer(clock, seconds, steps, 0, eval_every, STEP_CHARS, 262_144, trained_before)
    step, evaluated = 0, []
    while not pacer.finished:
        clock.now += step_s(clock.now)
        step += 1
        pacer.stepped(step)
        if pacer.due:
            chars = pacer.eval_chars()
            clock.now += chars / eval_speed
            pacer.validated(chars)
            clock.now += save_s
            pacer.evaluated(step)
            evaluated.append(step)
    return step, evaluated, clock.now, pacer


@pytest.mark.parametrize("step_s", [0.002, 0.02, 0.2])
def test_the_cadence_follows_the_speed_the_run_measures(step_s):
    steps, evaluated, ended, _ = simulate(30, lambda now: step_s, eval_speed=3 * STEP_CHARS / step_s)
    assert EVALS_PER_BUDGET - 2 <= len(evaluated) <= EVALS_PER_BUDGET and evaluated[-1] == steps
    gaps = [b - a for a, b in zip(evaluated, evaluated[1:])]
    # Evenly spread in time: as many steps between evaluations as the steps' speed buys.
    assert max(gaps) - min(gaps) <= max(2, 0.05 * steps)
    assert 0.8 * steps / len(evaluated) <= gaps[0] <= 1.25 * steps / len(evaluated)


def test_a_sudden_slowdown_does_not_make_it_evaluate_every_step():
    # 20 times slower from the sixth second, as a machine whose cores another job takes.
    steps, evaluated, ended, _ = simulate(30, lambda now: 0.01 if now < 6 else 0.2)
    assert len(evaluated) <= EVALS_PER_BUDGET
    gaps = [b - a for a, b in zip(evaluated, evaluated[1:])]
    assert min(gaps[:-1]) >= 5  # only the final evaluation may follow the one before it closely
    assert ended + EXIT_S <= 30


@pytest.mark.parametrize("seconds, step_s, eval_speed, save_s", [
    (5, 0.02, 300_000, 0.02), (30, 0.02, 300_000, 0.05), (30, 0.5, 7_500, 0.5), (180, 0.09, 150_000, 0.2),
    (30, 0.02, 10_000, 0.05),  # validation 10 times slower a character than the steps
])
def test_the_loop_stops_leaving_the_reserve_for_the_final_evaluation_and_save(seconds, step_s, eval_speed, save_s):
    steps, evaluated, ended, pacer = simulate(seconds, lambda now: step_s, eval_speed, save_s)
    assert evaluated[-1] == steps and pacer.fraction == 1.0
    assert ended + EXIT_S <= seconds  # the final save and the exit within the budget
    assert ended >= 0.85 * seconds  # and not much before it


def test_each_validation_pass_gets_its_share_of_the_budget():
    clock = FakeClock()
    pacer = Pacer(clock, 30, None, 0, None, STEP_CHARS, 10**9)
    clock.now += 0.01
    pacer.stepped(1)
    share = pacing.EVAL_SHARE * 30 / EVALS_PER_BUDGET
    # Before any pass: at a quarter of the steps' speed.
    assert pacer.eval_chars() == int(share * STEP_CHARS / 0.01 / pacing.FIRST_PASS_SLOWDOWN)
    clock.now += 2.0  # a pass of 20,000 characters took 2 s
    pacer.validated(20_000)
    pacer.evaluated(1)
    assert pacer.eval_chars() == 20_000  # the first pass decided the size of every pass
    assert Pacer(clock, 30, None, 0, None, STEP_CHARS, 1_000).eval_chars() == 1_000  # never more than there is
    assert Pacer(FakeClock(), None, 100, 0, 10, STEP_CHARS, 262_144).eval_chars() == 262_144  # no --time: all of it


def test_every_validation_pass_of_a_run_scores_the_same_characters():
    # The validation speed swings (a busy machine, then a quiet one): best.pt must still compare losses over one
    # stretch of the split, so the passes keep the first one's size and the cadence absorbs their cost.
    clock, step, scored = FakeClock(), 0, []
    pacer = Pacer(clock, 30, None, 0, None, STEP_CHARS, 10**9)
    for speed in (20_000, 5_000, 80_000, 20_000):
        while True:
            clock.now, step = clock.now + 0.01, step + 1
            pacer.stepped(step)
            if pacer.due:
                break
        scored.append((step, pacer.eval_chars()))
        clock.now += scored[-1][1] / speed
        pacer.validated(scored[-1][1])
        clock.now += 0.02
        pacer.evaluated(step)
    assert len({chars for _, chars in scored}) == 1
    # A resumed run is handed the size its passes had (last.pt keeps it).
    resumed = Pacer(FakeClock(), 30, None, 0, None, STEP_CHARS, 10**9, pass_chars=scored[0][1])
    assert resumed.eval_chars() == scored[0][1]


def test_set_up_spends_the_budget_but_a_run_takes_at_least_one_step():
    steps, evaluated, ended, _ = simulate(5, lambda now: 0.02, started=4.9)
    assert (steps, evaluated) == (1, [1])
    steps, evaluated, ended, _ = simulate(5, lambda now: 0.02, started=2.0)
    assert ended + EXIT_S <= 5 and steps > 50
    # A resumed run whose earlier commands spent the budget takes none.
    assert simulate(-1.0, lambda now: 0.02, trained_before=31.0)[0] == 0


def test_a_budget_in_steps_keeps_its_cadence():
    steps, evaluated, _, _ = simulate(None, lambda now: 0.01, steps=25, eval_every=10)
    assert (steps, evaluated) == (25, [10, 20, 25])
    # With --time too, and time to spare: the steps end it, and the paced evaluations spread over them.
    steps, evaluated, _, pacer = simulate(600, lambda now: 0.01, steps=5000)
    assert steps == 5000 and evaluated[-1] == 5000 and EVALS_PER_BUDGET - 2 <= len(evaluated) <= EVALS_PER_BUDGET


def test_the_schedule_spans_the_time_left_to_train():
    clock = FakeClock(10.0)  # set-up took 10 s of a minute
    pacer = Pacer(clock, 60, None, 0, None, STEP_CHARS, 262_144)
    halfway, step = 10.0 + (pacer.train_end() - 10.0) / 2, 0
    while clock.now < halfway:
        clock.now, step = clock.now + 0.01, step + 1
        pacer.stepped(step)
    assert pacer.fraction == pytest.approx(0.5, abs=0.01)


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="the process's start comes from /proc")
def test_a_process_started_before_its_imports():
    code = ("import time; time.sleep(0.3); from charrnn.pacing import process_started; "
            "print(time.monotonic() - process_started())")
    age = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 0.3 <= age < 60


def tiny_trainer(corpus_file, tmp_path, seconds, **options):
    config = TrainConfig(time_budget=seconds, seq_len=16, batch_size=2)
    return prepare([str(corpus_file)], ModelConfig(hidden=16, embed=8), config, tmp_path / "run", **options)


def test_the_trainer_counts_the_time_before_it_from_when_the_command_started(corpus_file, tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    summary = tiny_trainer(corpus_file, tmp_path, 5, started=time.monotonic() - 10).run()
    assert summary["steps"] == 1  # the set-up spent the budget: one step, then the final evaluation and save
    assert (tmp_path / "run" / "best.pt").exists()


def test_a_slow_sizing_probe_no_longer_sets_the_cadence(corpus_file, tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    # On a busy machine the probe timed steps 10 to 20 times slower than the run's; here 1,000 times.
    monkeypatch.setattr(budget, "seconds_per_step", lambda step, enough=None, **_: 10.0)
    trainer = tiny_trainer(corpus_file, tmp_path, 1.5, sized=("dropout",))
    summary = trainer.run()
    assert summary["steps"] > EVALS_PER_BUDGET and len(trainer.progress.history) <= EVALS_PER_BUDGET
