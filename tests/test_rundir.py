"""A run directory has one owner: concurrent runs, readers while a run writes, Ctrl-C at any moment."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch

import charrnn
from charrnn import checkpoint, rundir, writes
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


def test_one_writer_many_readers_and_no_stale_lock_after_a_kill(cli, corpus_file, train_here):
    run = cli.cwd / "run"
    writer = start(cli, "train", corpus_file, "-o", run, "--steps", "100000", *TINY_MODEL, "--eval-every", "1", "-q")
    try:
        wait_for(run / "last.pt", writer)
        refused = cli("train", corpus_file, "-o", run, "--steps", "3", "--resume", check_rc=1)
        assert refused.stderr.count("\n") == 1 and f"in use: another charrnn train (pid {writer.pid})" in refused.stderr
        with pytest.raises(rundir.Busy, match=f"pid {writer.pid}"):  # --force too: no flag takes a run from its owner
            rundir.prepare(run, resume=False, force=True)
        # Readers take no lock: checkpoints are replaced by rename, so each read sees a whole one. (Read here,
        # in this process, as `sample` and `eval` read.)
        assert len(charrnn.load(run).generate(length=30, seed=1)) == 30
        assert "bpc" in charrnn.load(run).evaluate_validation()
    finally:
        writer.kill()
        writer.wait(timeout=60)
    reached = checkpoint.load_checkpoint(run / "last.pt").step
    train_here(out=run, resume=True, steps=reached + 2)  # the kernel dropped the dead writer's lock


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


SECRET = b"the user's own file\n"


def test_a_lock_that_is_a_link_is_neither_truncated_nor_written(cli, tiny_run):
    run, secret = cli.cwd / "run", cli.cwd / "secret.txt"
    shutil.copytree(tiny_run, run)
    secret.write_bytes(SECRET)
    (run / rundir.LOCK).unlink(missing_ok=True)
    (run / rundir.LOCK).symlink_to(secret)
    refused = cli("train", "-o", run, "--resume", "--steps", "151", "-q", check_rc=1)
    assert refused.stderr.count("\n") == 1 and "is a symbolic link" in refused.stderr, refused.stderr
    for resume in (True, False):  # --resume, and a new run with --force
        with pytest.raises(CharRNNError, match="is a symbolic link"), rundir.removed_if_unused(run):
            rundir.prepare(run, resume=resume, force=not resume)
    assert secret.read_bytes() == SECRET and (run / rundir.LOCK).is_symlink()


def test_a_lock_that_is_a_hard_link_to_a_users_file_is_refused(tmp_path):
    secret, run = tmp_path / "secret.txt", tmp_path / "run"
    secret.write_bytes(SECRET)
    run.mkdir()
    os.link(secret, run / rundir.LOCK)
    with pytest.raises(CharRNNError, match="not a plain file of charrnn's own"), rundir.removed_if_unused(run):
        rundir.prepare(run, resume=False, force=True)
    assert secret.read_bytes() == SECRET


def test_a_run_directory_that_is_a_link_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "run").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CharRNNError, match="is a symbolic link"):
        rundir.prepare(tmp_path / "run", resume=False, force=True)
    assert not list((tmp_path / "elsewhere").iterdir())


@pytest.mark.parametrize("name", ["metrics.jsonl", rundir.LOCK])
def test_a_folder_of_the_users_is_no_run_and_written_only_with_force(tmp_path, name):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / name).write_bytes(SECRET)
    refusal = rf"not empty \({re.escape(name)}\) and holds no charrnn run.*--force"
    with pytest.raises(CharRNNError, match=refusal), rundir.removed_if_unused(folder):
        rundir.prepare(folder, resume=False, force=False)
    assert [p.name for p in folder.iterdir()] == [name] and (folder / name).read_bytes() == SECRET
    claimed = rundir.default_directory(folder)  # nor is it a default run directory
    assert claimed == tmp_path / "mine-2" and (folder / name).read_bytes() == SECRET
    rundir.release(claimed)
    rundir.prepare(folder, resume=False, force=True)
    rundir.abandon(folder)


def full_disk_for_locks(monkeypatch) -> None:
    """os.write to a held lock fails as on a full disk: the empty file is made, the pid cannot go in."""
    real = os.write

    def write(descriptor, data):
        if descriptor in rundir._held.values():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(descriptor, data)

    monkeypatch.setattr(os, "write", write)


@pytest.mark.parametrize("given", [True, False])
def test_a_full_disk_at_the_lock_names_the_folder_and_leaves_nothing(tmp_path, monkeypatch, given):
    full_disk_for_locks(monkeypatch)
    refusal = r"cannot write to the run directory .*/runs/corpus \(No space left on device\)"
    with pytest.raises(CharRNNError, match=refusal):
        if given:
            with rundir.removed_if_unused(tmp_path / "runs" / "corpus"):
                rundir.prepare(tmp_path / "runs" / "corpus", resume=False, force=False)
        else:
            rundir.default_directory(tmp_path / "runs" / "corpus")
    assert not list((tmp_path / "runs").iterdir())


def test_a_new_run_that_cannot_write_its_first_checkpoint_leaves_nothing_and_says_train_again(corpus_file, tmp_path,
                                                                                              monkeypatch):
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    real = torch.save

    def full(payload, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    options = dict(steps=2, hidden=16, embed=8, seq_len=16, batch_size=2, eval_every=1, device="cpu")
    with pytest.raises(CharRNNError) as refused:
        charrnn.train(corpus_file, out=tmp_path / "run", **options)
    message = str(refused.value)
    assert f"cannot write {tmp_path / 'run' / 'best.pt'} (No space left on device)" in message, message
    assert "--resume" not in message and "train again" in message
    assert not (tmp_path / "run").exists()
    monkeypatch.setattr(torch, "save", real)
    charrnn.train(corpus_file, out=tmp_path / "run", **options)  # the advice works: no --force, no --resume


def test_the_maker_of_a_lock_file_waits_for_a_process_that_took_it_first_and_lets_go(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    folder.mkdir()
    open_in_place = writes.open_in_place

    def raced(path, flags):  # another process opens the new lock file and locks it first, then lets go
        descriptor = open_in_place(path, flags)
        if flags & os.O_EXCL:
            other = os.open(path, os.O_RDWR)
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            threading.Timer(0.2, os.close, [other]).start()
        return descriptor

    monkeypatch.setattr(writes, "open_in_place", raced)
    try:
        assert rundir.hold(folder)  # was Busy: both runs started together then missed the first name
    finally:
        rundir.release(folder)
