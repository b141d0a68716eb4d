"""llm_plugin: runs are llm models that stream what `charrnn sample` writes, and llm logs them; all offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from charrnn import checkpoint
from charrnn.model import model_from_checkpoint
from charrnn.sample import generate
from charrnn.vocab import Vocab
from conftest import charrnn_command

llm = pytest.importorskip("llm")

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
    steps = generate(model_from_checkpoint(payload), Vocab(payload["vocab"]), prime=PRIME + first + "\nAll:", **OPTIONS)
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
