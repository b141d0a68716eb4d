"""The budget: sizes chosen from timed steps (on a fake clock), the evaluation cadence, what is left alone."""

import pytest

from charrnn import budget
from charrnn.budget import STEP_CHARS, TIERS
from charrnn.config import ModelConfig, TrainConfig
from charrnn.trainer import prepare

# Seconds per timed step of the defaults (32 windows of 64) on the CPU the tiers were measured on; the sizes
# it never ran get what their arithmetic predicts from 640's.
REFERENCE_STEP_S = {tier.name: STEP_CHARS / tier.probed for tier in TIERS if tier.probed}
REFERENCE_STEP_S.update({"1x1024": 0.42, "2x1024": 1.20})
# What `charrnn train --time T` trained by the table (docs/defaults.md), and at its boundaries, where on the CPU
# it was made on the two sizes tie (there a timing a hair either way decides; a slower device keeps the table).
TABLE = {60: 256, 119: 256, 121: 384, 180: 384, 299: 384, 301: 640, 450: 640, 599: 640}
BOUNDARIES = {120: 256, 300: 384, 600: 640}
SHAKESPEARE_CHARS = 1_003_854  # the first 90% of tiny-shakespeare, which those runs trained on


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake_device(slowdown: float):
    """measure(shape, enough) on a device `slowdown` times the reference CPU's step time, timed on a fake clock
    (a shape's first step, its warm-up, takes three steps' time). A shape without layers has one."""
    clock = FakeClock()

    def measure(shape: dict, enough: float) -> tuple[float, float]:
        started, steps = clock.now, []

        def step():
            clock.now += REFERENCE_STEP_S[f"{shape.get('layers', 1)}x{shape['hidden']}"] * slowdown * (3 if not steps else 1)
            steps.append(1)

        step_s = budget.seconds_per_step(step, enough, clock=clock)
        return step_s, clock.now - started

    return measure


@pytest.mark.parametrize("seconds, hidden, slowdown", [(seconds, hidden, slowdown) for seconds, hidden in TABLE.items()
                                                       for slowdown in (1.0, 3.5)] +  # that CPU, one 3.5 times slower
                         [(seconds, hidden, 1.01) for seconds, hidden in BOUNDARIES.items()])
def test_on_the_cpu_the_rule_chooses_what_the_table_chose(seconds, hidden, slowdown):
    chosen, timed = budget.choose_tier(seconds, fake_device(slowdown), STEP_CHARS, pass_chars=SHAKESPEARE_CHARS)
    assert (chosen.tier.layers, chosen.tier.hidden) == (1, hidden)
    assert budget.dropout_for(chosen.tier, chosen.passes) == (0.2 if hidden == 640 else 0.0)
    assert chosen.passes < budget.PASSES_THAT_PAY  # tiny-shakespeare is read fewer times than rereading pays


def shape_for(seconds: float, text_chars: int, slowdown: float = 1.0) -> dict:
    steps = text_chars // STEP_CHARS
    return budget.plan(TrainConfig(time_budget=seconds), budget.SIZED_FIELDS, fake_device(slowdown), STEP_CHARS, steps)


@pytest.mark.parametrize("slowdown", [1.0, 3.5])
def test_a_short_text_stops_where_rereading_stops_paying_and_more_minutes_change_nothing(slowdown):
    verse = 53_000  # a 53 KB text: 1x256 would read it 58 times in a minute
    plans = {minutes: shape_for(60 * minutes, verse, slowdown) for minutes in (1, 3, 10, 60)}
    stop = budget.PASSES_THAT_PAY * (verse // STEP_CHARS)
    assert all(plan.steps == stop for plan in plans.values())
    assert all(plan.shape["dropout"] == budget.REREAD_DROPOUT for plan in plans.values())
    # The largest size that reads it that often in the time, up to REREAD_LARGEST (on a slower device, what the
    # reference CPU would choose): from 3 minutes on, one network.
    assert [plans[m].shape["hidden"] for m in (1, 3, 10, 60)] == [384, 640, 640, 640]
    assert "its 15th reading of the text, where rereading stops paying" in plans[3].note
    faster = shape_for(600, verse, 0.5)  # 768 is timed, and kept out although it reads the text often enough
    assert faster.shape["hidden"] == 640 and "1x768 would read the text 200 times and memorise it" in faster.note


def test_a_text_read_less_than_once_drops_nothing_and_a_long_one_keeps_its_tiers_dropout():
    assert shape_for(600, 50_000_000).shape == {"layers": 1, "hidden": 640, "dropout": 0.0}
    assert shape_for(600, 1_000_000).shape == {"layers": 1, "hidden": 640, "dropout": 0.2}
    assert shape_for(600, 50_000_000).steps == budget.PASSES_THAT_PAY * (50_000_000 // STEP_CHARS)  # never reached


@pytest.mark.parametrize("seconds", [60, 120, 121, 180, 300, 301, 600])
@pytest.mark.parametrize("slowdown", [1.0, 3.5, 0.01])
def test_timing_the_sizes_costs_under_three_percent_of_the_budget(seconds, slowdown):
    measure, costs = fake_device(slowdown), []

    def recorded(shape, enough):
        step_s, cost_s = measure(shape, enough)
        costs.append(cost_s)
        return step_s, cost_s

    budget.choose_tier(seconds, recorded, STEP_CHARS)
    assert sum(costs) < 0.03 * seconds


def test_a_faster_device_buys_a_bigger_network():
    assert budget.choose_tier(180, fake_device(0.01), STEP_CHARS)[0].tier == TIERS[-1]
    assert budget.choose_tier(180, fake_device(0.5), STEP_CHARS)[0].tier.hidden == 640  # twice the CPU: 640 from 2.5 min


def test_a_long_budget_on_a_slower_cpu_goes_past_the_sizes_the_reference_cpu_chose():
    # The sizes above 1x768 were never run on that CPU: a device 15% slower keeps its floor, then times them.
    assert budget.choose_tier(3600, fake_device(1.15), STEP_CHARS, pass_chars=100_000_000)[0].tier.name == "1x1024"
    assert budget.choose_tier(600, fake_device(1.15), STEP_CHARS, pass_chars=100_000_000)[0].tier.name == "1x640"


def test_a_step_is_timed_after_its_warm_up_for_no_longer_than_the_budget_allows():
    clock, durations = FakeClock(), iter([5.0, 1.0, 2.0, 3.0])

    def step():
        clock.now += next(durations)

    assert budget.seconds_per_step(step, clock=clock) == 1.0  # the fastest; the 5 s warm-up is not counted
    clock, durations = FakeClock(), iter([5.0, 4.0, 1.0])
    assert budget.seconds_per_step(step, enough=3.0, clock=clock) == 4.0  # a step past `enough` is the last


def untimed(shape, enough):
    raise AssertionError("nothing should be timed")


def test_what_the_budget_leaves_alone():
    assert budget.plan(TrainConfig(steps=10), ("hidden",), untimed, STEP_CHARS) == budget.Plan({}, 500)
    assert budget.plan(TrainConfig(time_budget=60, eval_every=7), (), untimed, STEP_CHARS) == budget.Plan({}, 7)
    # A --time budget's cadence is paced as the run goes (charrnn.pacing): nothing is timed for it beforehand.
    assert budget.plan(TrainConfig(time_budget=60), (), untimed, STEP_CHARS) == budget.Plan({}, None)
    assert budget.sized_fields({}, resume=False, fine_tune=False) == ("layers", "hidden", "dropout")
    assert budget.sized_fields({"dropout": 0.1, "layers": 3}, resume=False, fine_tune=False) == ("hidden",)
    assert budget.sized_fields({"hidden": 64}, resume=False, fine_tune=False) == ()
    assert budget.sized_fields({}, resume=True, fine_tune=False) == ()
    assert budget.sized_fields({}, resume=False, fine_tune=True) == ()


def test_plan_says_what_it_chose_and_why():
    plan = budget.plan(TrainConfig(time_budget=180), budget.SIZED_FIELDS, fake_device(0.9), STEP_CHARS)
    assert plan.shape == {"layers": 1, "hidden": 384, "dropout": 0.0}
    assert plan.eval_every is None  # paced as the run goes
    assert plan.note == ("sized for a 3m00s budget: --layers 1 --hidden 384 --dropout 0.0 (set them to choose); "
                         "timed 36.7k chars/s at 1x384, 16.1k chars/s at 1x640: "
                         "1x640 would read 2.4M of the 3.5M characters it needs")
    fast = budget.plan(TrainConfig(time_budget=180), budget.SIZED_FIELDS, fake_device(0.01), STEP_CHARS)
    assert fast.shape == {"layers": 2, "hidden": 1024, "dropout": 0.5} and "at 2x1024: the largest size" in fast.note
    sized = ("hidden", "dropout")  # --layers given: the sizes are timed, and named, by their width alone
    slow = budget.plan(TrainConfig(time_budget=180, eval_every=50), sized, fake_device(3.5), STEP_CHARS)
    assert (slow.shape["hidden"], slow.eval_every) == (384, 50)
    assert slow.note.endswith("at hidden 384: slower than the CPU the sizes were measured on, whose choice stands")
    # With the user's --layers, the one-layer tiers' widths: each timed once, the widest with its own dropout.
    own_layers = budget.plan(TrainConfig(time_budget=180), sized, fake_device(0.01), STEP_CHARS)
    assert own_layers.shape == {"hidden": 1024, "dropout": 0.3}
    assert own_layers.note.count("at hidden 1024") == 1 and "at hidden 1024: the largest size" in own_layers.note


def test_the_trainer_sizes_a_time_budget_from_steps_it_times(corpus_file, tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    trainer = prepare([str(corpus_file)], ModelConfig(embed=8), TrainConfig(time_budget=60, seq_len=16, batch_size=2),
                      tmp_path / "run", sized=("hidden", "dropout"))
    # A minute would reread this short text hundreds of times: the largest size that may reread it, stopping at its
    # PASSES_THAT_PAY-th reading, with the dropout that rereading needs.
    assert (trainer.model_config.hidden, trainer.model_config.dropout, trainer.model.rnn.hidden_size) == (640, 0.5, 640)
    assert trainer.train_config.steps == budget.PASSES_THAT_PAY * len(trainer.windows)
    assert trainer.train_config.eval_every is None  # paced as the run goes (charrnn.pacing), not from the probe
