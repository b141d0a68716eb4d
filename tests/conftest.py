"""Shared test helpers: tiny corpora made here, and the installed CLI run as a user types it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# Property tests draw the same examples on every run (CI included): a failure found once is found again, and a
# green run is not luck. Explicit @example cases pin the inputs that once failed.
settings.register_profile("deterministic", derandomize=True)
settings.load_profile("deterministic")

ENGLISH = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\n"
    "All:\nResolved. resolved.\n\n"
)


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    # Tiny models gain nothing from threads, and on a shared 2-core machine
    # a thread pool per process makes every test many times slower.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def corpus_file(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(ENGLISH * 20, encoding="utf-8")
    return path


def charrnn_command() -> list[str]:
    """The installed console script, as a user runs it."""
    script = Path(sys.executable).with_name("charrnn")
    if script.exists():
        return [str(script)]
    found = shutil.which("charrnn")
    if found is None:
        pytest.fail("the charrnn command is not installed; run pip install -e '.[dev]'")
    return [found]


@pytest.fixture
def cli(tmp_path: Path):
    """Run `charrnn ARGS...` in a subprocess inside tmp_path; returns the CompletedProcess."""
    env = dict(os.environ, CHARRNN_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1", NO_COLOR="1")
    env.pop("CHARRNN_CHECKPOINT", None)

    def run(*args: str, input: str | None = None, check_rc: int | None = 0, timeout: float = 120) -> subprocess.CompletedProcess:
        completed = subprocess.run(
            charrnn_command() + [str(a) for a in args], cwd=tmp_path, env=env, text=True, encoding="utf-8",
            input=input, stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True, timeout=timeout,
        )
        if check_rc is not None:
            assert completed.returncode == check_rc, (completed.returncode, completed.stdout, completed.stderr)
        return completed

    run.env = env
    run.cwd = tmp_path
    return run


# A test parametrized over DEVICES runs on the CPU always, and on CUDA where there is one (`pytest -m gpu` picks it).
CUDA_MARKS = (pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"))
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA_MARKS)]
TINY_OPTIONS = dict(layers=1, hidden=32, embed=16, seq_len=32, batch_size=4, eval_every=10)  # charrnn.train's keywords


def flags(options: dict) -> list[str]:
    """charrnn.train's keywords as `charrnn train`'s flags."""
    return [part for name, value in options.items() for part in (f"--{name.replace('_', '-')}", str(value))]


TINY_MODEL = flags(TINY_OPTIONS)


@pytest.fixture
def train_here(tmp_path: Path, monkeypatch):
    """charrnn.train in this process, in tmp_path as `cli` runs: a run a test needs made, without a second import of
    torch in a subprocess (what `charrnn train` adds over charrnn.train, parsing and printing, is tested with `cli`)."""
    import charrnn

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    return charrnn.train


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A tiny LSTM trained once per session on ENGLISH (a few seconds), for commands that read a model."""
    folder = tmp_path_factory.mktemp("tiny_run")
    corpus = folder / "corpus.txt"
    corpus.write_text(ENGLISH * 20, encoding="utf-8")
    env = dict(os.environ, CHARRNN_CACHE_DIR=str(folder / "cache"), OMP_NUM_THREADS="1", NO_COLOR="1")
    subprocess.run(charrnn_command() + ["train", str(corpus), "-o", str(folder / "run"), "--steps", "150", "--seed", "3",
                                        "--lr", "1e-2", "-q", *TINY_MODEL],
                   cwd=folder, env=env, check=True, capture_output=True, timeout=300)
    return folder / "run"
