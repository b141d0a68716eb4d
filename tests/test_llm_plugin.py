"""llm_plugin: runs are llm models that stream what `charrnn sample` writes, and llm logs them; all offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from charrnn import api, checkpoint
from charrnn.config import SamplingSettings
from charrnn.model import model_from_checkpoint
from charrnn.sample import generate
from charrnn.vocab import Vocab
from conftest import charrnn_command

llm = pytest.importorskip("llm")
from charrnn.llm_plugin import transcript  # noqa: E402 (needs llm)

PRIME = "First"
OPTIONS = {"temperature": 0.8, "seed": 7, "length": 60}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_run) -> Path:
    """A runs folder holding the tiny run as `tiny`."""
    folder = tmp_path_factory.mktemp("llm") / "runs"
    shutil.copytree(tiny_run, folder / "tiny", ignore=shutil.ignore_patterns(".lock"))
    return folder


@pytest.fixture(scope="module")
def sampled(runs) -> str:
    """What `charrnn sample` writes after the prime with OPTIONS."""
    written = subprocess.run(charrnn_command() + ["sample", "-c", str(runs / "tiny"), "--prime", PRIME,
                                                  "--temp", str(OPTIONS["temperature"]), "--seed", str(OPTIONS["seed"]),
                                                  "--length", str(OPTIONS["length"])],
                             env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, check=True).stdout
    return written[len(PRIME):-1]  # charrnn echoes the prime and ends with a newline


@pytest.fixture(autouse=True)
def offline_llm(tmp_path, monkeypatch):
    """llm's keys, logs and settings in a folder of the test's own; charrnn's defaults for the runs."""
    monkeypatch.setenv("LLM_USER_PATH", str(tmp_path / "llm"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("CHARRNN_RUNS", raising=False)


def test_runs_stream_what_charrnn_sample_writes(runs, sampled, monkeypatch):
    monkeypatch.setenv("CHARRNN_RUNS", str(runs))  # the folder need not be ./runs
    model = llm.get_model("charrnn/tiny")
    chunks = list(model.prompt(PRIME, **OPTIONS))
    assert len(chunks) == OPTIONS["length"]  # a character at a time, as they are generated
    assert "".join(chunks) == sampled


def test_a_conversation_continues_its_transcript(runs, monkeypatch):
    monkeypatch.setenv("CHARRNN_RUNS", str(runs))
    conversation = llm.get_model("charrnn/tiny").conversation()
    first = conversation.prompt(PRIME, **OPTIONS).text()
    second = conversation.prompt("\nAll:", **OPTIONS).text()
    payload = checkpoint.load_checkpoint(checkpoint.resolve_checkpoint(str(runs / "tiny")))
    steps = generate(model_from_checkpoint(payload), Vocab(payload.vocab), prime=PRIME + first + "\nAll:",
                     settings=SamplingSettings(**OPTIONS))
    assert second == "".join(char for (char,) in steps)


def test_the_llm_command_finds_runs_under_the_working_directory_and_logs_them(runs, sampled):
    def run_llm(*args: str) -> str:
        command = Path(charrnn_command()[0]).with_name("llm")  # the llm installed beside charrnn
        done = subprocess.run([str(command), *args], cwd=runs.parent, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    options = [word for name, value in OPTIONS.items() for word in ("-o", name, str(value))]
    assert run_llm("-m", "charrnn/tiny", PRIME, *options) == sampled + "\n"
    (logged,) = json.loads(run_llm("logs", "-n", "1", "--json"))
    assert (logged["model"], logged["prompt"], logged["response"], logged["options_json"]) == \
        ("charrnn/tiny", PRIME, sampled, OPTIONS)


def expected_after(runs: Path, prime: str) -> str:
    """What the tiny run writes after `prime` with OPTIONS, through charrnn's own API."""
    return "".join(api.load(runs / "tiny").stream(prime, **OPTIONS))


def turn(prompt: str, reply: str = "", system: str | None = None) -> SimpleNamespace:
    """What transcript reads of an llm response: its prompt (with any system prompt) and its text."""
    return SimpleNamespace(prompt=SimpleNamespace(prompt=prompt, system=system), text=lambda: reply)


def test_each_prompt_starts_a_line_of_its_own_after_the_models_reply_and_a_system_prompt_comes_first():
    earlier = [turn("First", " Citizen: speak", system="A play."), turn("\nAll:", " Speak.\n")]
    now = turn("Before").prompt
    assert transcript(now, SimpleNamespace(responses=earlier)) == "A play.\nFirst Citizen: speak\nAll: Speak.\nBefore"
    assert transcript(now, SimpleNamespace(responses=earlier[:1]), " ") == "A play. First Citizen: speak Before"
    assert transcript(turn("First").prompt, None) == "First"


def test_a_chat_reply_is_not_glued_to_the_next_prompt_and_a_system_prompt_primes(runs, monkeypatch):
    monkeypatch.setenv("CHARRNN_RUNS", str(runs))
    conversation = llm.get_model("charrnn/tiny").conversation()
    first = conversation.prompt("All", system="First Citizen:", **{**OPTIONS, "length": 7}).text()
    assert first == expected_after(runs, "First Citizen:\nAll")[:7] and not first.endswith("\n")
    second = conversation.prompt("All:", **OPTIONS).text()
    assert second == expected_after(runs, "First Citizen:\nAll" + first + "\nAll:")


@pytest.mark.parametrize("prompt, options, said", [
    (PRIME, {"top_p": 1.5}, "-o top_p must be in (0, 1] (got 1.5)"),
    (PRIME, {"temperature": -1.0}, "-o temperature must be"),
    (PRIME, {"seed": 2**70}, "-o seed must be"),
    ("All \u2603", {}, "never saw: '\u2603'; leave them out of the prompt or system prompt"),
])
def test_errors_name_what_an_llm_user_typed(runs, monkeypatch, prompt, options, said):
    monkeypatch.setenv("CHARRNN_RUNS", str(runs))
    with pytest.raises(llm.ModelError) as refused:
        llm.get_model("charrnn/tiny").prompt(prompt, **options).text()
    assert said in str(refused.value) and " --" not in str(refused.value), refused.value
