"""A run directory has one owner: concurrent runs, readers while a run writes, Ctrl-C at any moment."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import charrnn
from charrnn import checkpoint, rundir
from charrnn.errors import CharRNNError
from conftest import TINY_MODEL, charrnn_command


def start(cli, *args) -> subprocess.Popen:
    return subprocess.Popen(charrnn_command() + [str(a) for a in args], cwd=cli.cwd, env=cli.env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(path: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not path.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.02)


def test_one_writer_many_readers_and_no_stale_lock_after_a_kill(cli, corpus_file):
    run = cli.cwd / "run"
    writer = start(cli, "train", corpus_file, "-o", run, "--steps", "100000", *TINY_MODEL, "--eval-every", "1", "-q")
    try:
        wait_for(run / "last.pt", writer)
        refused = cli("train", corpus_file, "-o", run, "--steps", "3", "--resume", check_rc=1)
        assert refused.stderr.count("\n") == 1 and f"in use: another charrnn train (pid {writer.pid})" in refused.stderr
        with pytest.raises(rundir.Busy, match=f"pid {writer.pid}"):  # --force too: no flag takes a run from its owner
            rundir.prepare(run, resume=False, force=True)
        # Readers take no lock: checkpoints are replaced by rename, so each read sees a whole one.
        assert len(cli("sample", "-c", run, "--length", "30", "--seed", "1").stdout) > 30
        assert '"bpc"' in cli("eval", "-c", run, "--json").stdout
    finally:
        writer.kill()
        writer.wait(timeout=60)
    reached = checkpoint.load_checkpoint(run / "last.pt")["step"]
    cli("train", "--resume", "-o", run, "--steps", reached + 2, "-q")  # the kernel dropped the dead writer's lock


def test_runs_started_together_get_their_own_directories(cli, corpus_file):
    runs = [start(cli, "train", corpus_file, "--steps", "3", *TINY_MODEL, "-q") for _ in range(2)]
    assert [p.wait(timeout=120) for p in runs] == [0, 0], [p.stderr.read() for p in runs]
    for name in ("corpus", "corpus-2"):
        assert (cli.cwd / "runs" / name / "best.pt").is_file()
    assert not (cli.cwd / "runs" / "corpus-3").exists()


@pytest.mark.parametrize("number, delay", [(signal.SIGINT, 0.2), (signal.SIGTERM, 0.6), (signal.SIGINT, 1.2)])
def test_a_stop_signal_at_any_moment_gives_one_line_and_130(cli, corpus_file, number, delay):
    process = start(cli, "train", corpus_file, "-o", "run", "--steps", "100000", *TINY_MODEL, "-q")
    time.sleep(delay)
    process.send_signal(number)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("charrnn: interrupted"), stderr
    if "nothing was saved" in lines[0]:
        assert not (cli.cwd / "run").exists()  # a run that never started leaves no directory


def test_a_default_directory_is_the_first_without_a_run(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "best.pt").write_bytes(b"")
    (tmp_path / "corpus-2").mkdir()  # empty: left by a run that never started, so it is free
    claimed = rundir.default_directory(tmp_path / "corpus")
    assert claimed == tmp_path / "corpus-2" and (claimed / rundir.LOCK).read_text().strip().isdigit()
    assert rundir.default_directory(tmp_path / "corpus", processes=2) == tmp_path / "corpus-2"
    rundir.release(claimed)


def test_abandoning_a_run_removes_only_a_directory_it_made(tmp_path):
    made, existing = tmp_path / "new", tmp_path / "old"
    existing.mkdir()
    for folder in (made, existing):
        rundir.prepare(folder, resume=False, force=False)
        rundir.abandon(folder)
    assert not made.exists() and existing.is_dir()
    with pytest.raises(CharRNNError, match="no last.pt to resume from"):
        rundir.prepare(made, resume=True, force=False)
    rundir.abandon(made)


def test_taking_the_lock_sweeps_what_dead_writers_left(tmp_path):
    """A kill mid-write leaves `.best.pt.PID.tmp`; the next owner removes it even if it never writes best.pt."""
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid has certainly exited
    orphan = tmp_path / f".best.pt.{dead.pid}.tmp"
    live = tmp_path / f".last.pt.{os.getpid()}.tmp"
    for path in (orphan, live):
        path.write_bytes(b"half a checkpoint")
    rundir.lock(tmp_path)
    try:
        assert not orphan.exists() and live.exists()  # a live process's file is its own business
    finally:
        rundir.release(tmp_path)


def test_a_run_trained_in_process_gives_its_lock_back(corpus_file, tmp_path, monkeypatch):
    """A notebook that trains a run leaves it free: another process may resume it at once."""
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    charrnn.train(corpus_file, out=tmp_path / "run", steps=2, hidden=16, embed=8, seq_len=16, batch_size=2, device="cpu")
    with open(tmp_path / "run" / rundir.LOCK) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises BlockingIOError while any descriptor holds it
