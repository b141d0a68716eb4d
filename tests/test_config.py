"""Configuration: every numeric option at its edges is taken as a number or refused in one line."""

import math

import pytest
from hypothesis import given, settings, strategies as st

from charrnn.config import ModelConfig, SamplingSettings, TrainConfig, parse_duration
from charrnn.errors import CharRNNError, SettingError

any_float = st.floats(allow_nan=True, allow_infinity=True)
any_int = st.integers(min_value=-(2**70), max_value=2**70)


@settings(max_examples=100, deadline=None)
@given(text=st.text(alphabet="0123456789.hmsHMS -+e", max_size=12) | st.text(max_size=8))
def test_a_duration_is_a_finite_positive_number_of_seconds_or_refused(text):
    try:
        seconds = parse_duration(text)
    except CharRNNError as error:
        assert "--time" in str(error)
        return
    assert 0 < seconds < math.inf


@pytest.mark.parametrize("cls, field, values", [
    (TrainConfig, "lr", any_float), (TrainConfig, "weight_decay", any_float), (TrainConfig, "val_fraction", any_float),
    (TrainConfig, "time_budget", any_float), (TrainConfig, "seq_len", any_int), (TrainConfig, "batch_size", any_int),
    (TrainConfig, "steps", any_int), (TrainConfig, "eval_every", any_int), (TrainConfig, "seed", any_int),
    (ModelConfig, "dropout", any_float), (ModelConfig, "layers", any_int), (ModelConfig, "hidden", any_int),
])
def test_numeric_options_are_taken_in_range_or_refused_in_one_line(cls, field, values):
    @settings(max_examples=25, deadline=None)
    @given(value=values)
    def check(value):
        config = cls(**{field: value})
        try:
            config.validate()
        except CharRNNError as error:
            assert "\n" not in str(error) and f"--{field.replace('_', '-')}" in str(error).replace("--time", "--time-budget")
            return
        assert not isinstance(value, float) or math.isfinite(value)

    check()


@pytest.mark.parametrize("field, flag, values", [
    ("temperature", "--temp", any_float), ("top_p", "--top-p", any_float), ("top_k", "--top-k", any_int),
    ("length", "--length", any_int), ("n", "--num-samples", any_int), ("seed", "--seed", any_int),
])
def test_sampling_settings_are_taken_in_range_or_refused_as_a_usage_error(field, flag, values):
    @settings(max_examples=25, deadline=None)
    @given(value=values)
    def check(value):
        try:
            SamplingSettings(**{field: value})
        except SettingError as error:  # made once, checked once: the CLI and the API say the same
            assert "\n" not in str(error) and flag in str(error)
            return
        assert not isinstance(value, float) or math.isfinite(value)

    check()


def test_sampling_settings_refuse_what_no_model_could_use_and_record_what_they_hold():
    with pytest.raises(SettingError, match="--precision 'bf16' for sampling; choose one of auto, fp32, fp16, int8"):
        SamplingSettings(precision="bf16")
    with pytest.raises(SettingError, match="--stop needs some text"):
        SamplingSettings(stop=["ab", ""])
    made = SamplingSettings(temperature=0.5, n=3, stop=["ab"], lines=True)
    assert made.stop == ("ab",) and hash(made)  # a list is kept as a tuple: frozen all through
    assert made.record() == {"length": 1000, "temperature": 0.5, "top_k": None, "top_p": None, "seed": None,
                             "num_samples": 3, "precision": "auto", "stop": ["ab"], "lines": True}


def test_sampling_settings_from_a_commands_options_take_their_fields_and_leave_the_rest():
    options = {"temperature": 0.0, "n": 2, "stop": None, "seed": None, "lines": False, "prime": "x", "as_json": True}
    assert SamplingSettings.from_options(options) == SamplingSettings(temperature=0.0, n=2)
    with pytest.raises(SettingError):
        SamplingSettings.from_options({"temperature": -1.0})


def test_one_impl_check_serves_the_run_settings_and_the_network():
    from charrnn.model import recurrent_stack

    for refuse in (lambda: TrainConfig(impl="fast").validate(), lambda: recurrent_stack("lstm", "fast", 4, 4, 1)):
        with pytest.raises(SettingError, match=r"^unknown --impl 'fast'; choose one of fused, cells$"):
            refuse()


def test_dynamic_settings_are_false_without_dynamic_and_its_flags_need_it():
    from charrnn.config import DynamicSettings, dynamic_settings

    assert dynamic_settings(False) is False
    assert dynamic_settings(True, segment=20) == DynamicSettings(segment=20)
    with pytest.raises(SettingError, match="need --dynamic"):
        dynamic_settings(False, decay=0.1)
