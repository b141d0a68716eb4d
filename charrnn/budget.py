"""The budget: how long a run trains and how big a network that time buys (charrnn.pacing spends it).

A --time budget sizes the network from the speed of the device it runs on: a few timed steps of each
candidate size, then the largest size that reads, within the budget, the characters it needs to beat
the size below it. Those sizes and needs come from runs on a 2-core CPU, and the largest from an H200
(benchmarks/RESULTS.md); a device slower than that CPU keeps the sizes chosen there, which still won
on a CPU 3.5 times slower, and times only the sizes never run there, which it may still read enough of.

It also knows its corpus: how many times the budget would read it. Past PASSES_THAT_PAY readings a network
memorises the text instead of learning it, so a budget that would read a short text more often than that
stops there, with the largest network (up to REREAD_LARGEST) that reads it that often in time, and dropout
REREAD_DROPOUT; a budget that reads its text less than once drops no inputs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Optional

from charrnn.config import TrainConfig, format_duration

# With neither --steps nor --time, a run lasts this long: long enough to learn something visible on a
# laptop CPU, short enough for a first try.
DEFAULT_TIME_BUDGET_S = 180.0
EVAL_EVERY_STEPS = 500  # a budget in steps evaluates this often
PROBE_STEPS = 3  # timed steps per candidate size, after one untimed warm-up
PROBE_SHARE = 0.03  # timing larger sizes stops once it has cost this share of the budget
STEP_CHARS = 32 * 64  # characters in a step of the runs the tiers come from (32 windows of 64)
SUSTAINED_SHARE = 0.8  # a whole run's speed over the probe's, for sizes never run on the tiers' CPU (768: 0.81)
# On 53 KB of verse, each size's loss was lowest near 15 readings with dropout 0.5 and rose past it; there 1x640
# beat 1x384 and 1x768 (benchmarks/RESULTS.md, "A budget that knows its corpus").
PASSES_THAT_PAY = 15
REREAD_DROPOUT = 0.5
REREAD_LARGEST = 640


@dataclass(frozen=True)
class Tier:
    """A network size the budget may choose, and what the CPU runs said about it."""

    hidden: int
    dropout: float
    needs: float  # characters it must read within the budget to beat the tier below
    reference: float = 0.0  # its chars/s over whole runs on the CPU the tiers were measured on (0: not measured there)
    probed: float = 0.0  # its chars/s as `choose_tier` times it on that CPU (fastest steps, no evaluation)
    layers: int = 1

    @property
    def name(self) -> str:
        return f"{self.layers}x{self.hidden}"

    def rereads(self, passes: float) -> bool:
        """Whether this size may train on a text it would read `passes` times (nan: unknown): past PASSES_THAT_PAY
        only the sizes up to REREAD_LARGEST, which then stop there."""
        return not passes >= PASSES_THAT_PAY or self.hidden <= REREAD_LARGEST

    def sustained(self, probed_chars_per_s: float) -> float:
        """What a whole run of this size reads a second on a device where its timed steps made `probed_chars_per_s`:
        the probe runs ahead of a run (fastest steps, no evaluation) by as much as it did on the tiers' CPU."""
        return probed_chars_per_s * (self.reference / self.probed if self.probed else SUSTAINED_SHARE)


# A tier needs what it read on that CPU at the budget where it overtook the tier below: 1x384 at 2 minutes,
# 1x640 at its 5-minute tie with 1x384. 1x768 only tied 1x640 at 10 minutes, so it needs what it would read
# in 15. Tiers past 768 are for faster devices. 1x1024's needs and dropout are a guess (768's needs, grown as
# width ** 0.75). On an H200 at 3 minutes, 2x1024 with dropout 0.5 beat 1x1536 (1.355 against 1.397 with dropout
# 0.4, 1.384 with 0.6), which memorised the corpus after its best; its needs stay the guess the 1536 tier had.
TIERS = (
    Tier(256, 0.0, needs=0, reference=1_500 * STEP_CHARS / 60, probed=76_600),
    Tier(384, 0.0, needs=1_400 * STEP_CHARS, reference=3_500 * STEP_CHARS / 300, probed=33_000),
    # Past 5 minutes a 640-wide network rereads a small corpus often enough to memorise it.
    Tier(640, 0.2, needs=1_730 * STEP_CHARS, reference=1_730 * STEP_CHARS / 300, probed=14_500),
    Tier(768, 0.2, needs=3_750 * STEP_CHARS, reference=2_500 * STEP_CHARS / 600, probed=10_600),
    Tier(1024, 0.3, needs=4_650 * STEP_CHARS),
    Tier(1024, 0.5, needs=6_300 * STEP_CHARS, layers=2),
)
SIZED_FIELDS = ("layers", "hidden", "dropout")

# measure(shape, enough) -> (seconds per step, seconds the timing cost): the caller times real steps of its network
# with the fields in `shape` changed (none: as configured).
Measure = Callable[[dict, float], tuple[float, float]]


@dataclass(frozen=True)
class Timed:
    """One candidate size, timed on this device."""

    tier: Tier
    step_s: float
    chars_per_s: float
    passes: float  # how many times it would read the text in the budget


@dataclass(frozen=True)
class Plan:
    """What the budget decided: the network fields it set, the evaluation cadence (None: paced in time by
    charrnn.pacing), the step the run stops at once rereading stops paying (None: at the budget's end), and
    the line that says so."""

    shape: dict
    eval_every: Optional[int]
    note: Optional[str] = None
    steps: Optional[int] = None


def with_default_budget(config: TrainConfig) -> tuple[TrainConfig, bool]:
    """The config with a budget: DEFAULT_TIME_BUDGET_S when it has neither steps nor time (and whether it had none)."""
    if config.steps is None and config.time_budget is None:
        return replace(config, time_budget=DEFAULT_TIME_BUDGET_S), True
    return config, False


def sized_fields(given_shape: dict, resume: bool, fine_tune: bool) -> tuple[str, ...]:
    """The network fields a --time budget picks: hidden, and layers and dropout unless given. None when --hidden
    is set, on --resume (the run keeps its shape) or with --init-from (the checkpoint's shape)."""
    if "hidden" in given_shape or resume or fine_tune:
        return ()
    return tuple(name for name in SIZED_FIELDS if name not in given_shape)


def seconds_per_step(
    step: Callable[[], None],
    enough: float = math.inf,
    steps: int = PROBE_STEPS,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """The fastest of up to `steps` timed calls of `step`, after one untimed call, stopping once the timed
    calls have taken `enough` seconds. The fastest: on a shared machine, the least disturbed is the truest."""
    step()  # a shape's first step sets up its kernels (oneDNN primitives, cuDNN plans)
    fastest, spent = math.inf, 0.0
    for _ in range(steps):
        started = clock()
        step()
        took = clock() - started
        fastest, spent = min(fastest, took), spent + took
        if spent >= enough:
            break
    return fastest


def tier_shape(tier: Tier, sized: tuple[str, ...]) -> dict:
    """The `sized` network fields as `tier` sets them."""
    return {name: getattr(tier, name) for name in sized}


def dropout_for(tier: Tier, passes: float) -> float:
    """The dropout of a tier that reads its text `passes` times (nan: unknown): none under one reading, where there
    is nothing to memorise; REREAD_DROPOUT for a text read as often as rereading pays; else the tier's own."""
    if passes >= PASSES_THAT_PAY:
        return REREAD_DROPOUT
    return 0.0 if passes < 1 else tier.dropout


def rereading_stop(config: TrainConfig, pass_steps: int) -> Optional[int]:
    """The step a --time budget stops at, having read its text (`pass_steps` steps a pass; 0: unknown) as often as
    rereading pays; None with --steps, whose count the user chose."""
    if config.time_budget is None or config.steps is not None or not pass_steps:
        return None
    return PASSES_THAT_PAY * pass_steps


def candidates(sized: tuple[str, ...]) -> tuple[Tier, ...]:
    """The tiers a budget chooses from: with the user's --layers, the one-layer tiers' widths and dropout."""
    return TIERS if "layers" in sized else tuple(tier for tier in TIERS if tier.layers == 1)


def choose_tier(
    seconds: float, measure: Measure, chars_per_step: int, sized: tuple[str, ...] = SIZED_FIELDS, pass_chars: int = 0
) -> tuple[Timed, list[Timed]]:
    """The largest tier that, in `seconds` at this device's speed, reads what it needs or reads the text (of
    `pass_chars` characters; 0: unknown) as often as rereading pays, and may reread it that often (at least the
    tier the CPU the tiers were measured on would choose); and the tiers timed to decide it."""
    tiers = candidates(sized)

    def passes(reads: float) -> float:
        return reads / pass_chars if pass_chars else math.nan

    def fits(tier: Tier, reads: float) -> bool:
        return tier.rereads(passes(reads)) and (reads > tier.needs or passes(reads) >= PASSES_THAT_PAY)

    floor = max(i for i, tier in enumerate(tiers) if fits(tier, seconds * tier.reference))
    chosen: Optional[Timed] = None
    spent = 0.0
    timed: list[Timed] = []
    for tier in tiers[floor:]:
        if chosen is not None and chosen.chars_per_s < chosen.tier.probed and tier.reference:
            break  # slower than the CPU the tiers were measured on, it reads less than that CPU did: its choice stands
        step_s, cost_s = measure(tier_shape(tier, sized), PROBE_SHARE * seconds)
        spent += cost_s if timed else 0.0  # the first timing also sets the device up (CUDA, cuDNN), as training would
        speed = tier.sustained(chars_per_step / step_s)
        reads = seconds * max(speed, tier.reference)
        timed.append(Timed(tier, step_s, chars_per_step / step_s, passes(reads)))
        if chosen is not None and not fits(tier, reads):
            break
        chosen = timed[-1]
        if spent >= PROBE_SHARE * seconds:
            break  # out of time to time a larger size
    assert chosen is not None  # the floor's timing always chooses it
    return chosen, timed


def plan(
    config: TrainConfig, sized: tuple[str, ...], measure: Measure, chars_per_step: int, pass_steps: int = 0
) -> Plan:
    """Under a --time budget, the `sized` network fields from steps timed on this device and the text's length
    (`pass_steps` steps a pass; 0: unknown), the step rereading stops paying at, and the cadence left to the
    run's own pace (unless --eval-every). A budget in steps keeps the defaults and times nothing."""
    seconds = config.time_budget
    eval_every = config.eval_every or (None if seconds is not None else EVAL_EVERY_STEPS)
    stop = rereading_stop(config, pass_steps)
    if seconds is None or not sized:
        return Plan({}, eval_every, steps=stop)
    chosen, timed = choose_tier(seconds, measure, chars_per_step, sized, pass_steps * chars_per_step)
    shape = tier_shape(chosen.tier, sized)
    if "dropout" in shape:
        shape["dropout"] = dropout_for(chosen.tier, chosen.passes)
    return Plan(shape, eval_every, sizing_note(seconds, shape, chosen, timed, stop), stop)


def sizing_note(seconds: float, shape: dict, chosen: Timed, timed: list[Timed], stop: Optional[int]) -> str:
    """What the budget chose and why: the speeds timed, what kept a larger size out, and when rereading the text
    stops the run."""
    flags = " ".join(f"--{name} {value}" for name, value in shape.items())

    def size(tier: Tier) -> str:  # as timed: with the user's --layers, the tier's own are not
        return tier.name if "layers" in shape else f"hidden {tier.hidden}"

    speeds = ", ".join(f"{t.chars_per_s / 1000:,.1f}k chars/s at {size(t.tier)}" for t in timed)
    last = timed[-1]
    if last is not chosen and not last.tier.rereads(last.passes):
        why = f"{size(last.tier)} would read the text {last.passes:,.0f} times and memorise it"
    elif last is not chosen:
        why = (
            f"{size(last.tier)} would read {seconds * last.tier.sustained(last.chars_per_s) / 1e6:,.1f}M of the "
            f"{last.tier.needs / 1e6:,.1f}M characters it needs"
        )
    elif last.tier.sustained(last.chars_per_s) < chosen.tier.reference:
        why = "slower than the CPU the sizes were measured on, whose choice stands"
    elif chosen.tier == candidates(tuple(shape))[-1]:
        why = "the largest size"
    else:
        why = "no time left to time a larger size"
    if stop is not None and chosen.passes >= PASSES_THAT_PAY:
        why += f"; it stops at step {stop:,}, its {PASSES_THAT_PAY}th reading of the text, where rereading stops paying"
    return f"sized for a {format_duration(seconds)} budget: {flags} (set them to choose); timed {speeds}: {why}"
