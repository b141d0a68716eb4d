"""Nothing lost: signals save and exit 130, a SIGKILL never leaves a broken checkpoint, resume is
exact, a full or read-only disk keeps the old checkpoints, a NaN stops training, and a checkpoint
that would run code when unpickled is refused before any of it runs."""

from __future__ import annotations

import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from charrnn import checkpoint, trainer
from charrnn.errors import CharRNNError

from conftest import TINY_MODEL, TINY_OPTIONS, charrnn_command, flags

# Dropout draws from the RNG every step, so exact resume also proves the RNG state travels in last.pt.
EXACT_OPTIONS = dict(layers=1, hidden=32, embed=16, seq_len=32, batch_size=4, dropout=0.2, seed=7)
EXACT = flags(EXACT_OPTIONS)
LOGGED = ["--eval-every", "2"]  # a progress line (and a checkpoint) every 2 steps, to time the signals by
RARE_EVALS = 1000  # evaluation draws no random numbers: how often it runs changes no weight
STEP_LINE = re.compile(r"\bstep (\d+)\b")


def start(cli, *args: str, **options) -> subprocess.Popen:
    """`charrnn ARGS...` in the background, as the `cli` fixture would run it."""
    options.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(charrnn_command() + [str(a) for a in args], cwd=cli.cwd, env=cli.env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, **options)


def signal_at_step(process: subprocess.Popen, step: int, number: int) -> tuple[int, str]:
    """Send `number` once the progress log reaches `step`; the exit code and everything said on stderr."""
    said = []
    for line in process.stderr:
        said.append(line)
        found = STEP_LINE.search(line)
        if found and int(found.group(1)) >= step:
            process.send_signal(number)
            break
    rest = process.communicate(timeout=300)[1]
    return process.returncode, "".join(said) + rest


def weights(path: Path) -> dict:
    return checkpoint.load_checkpoint(path).weights


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), f"{name} differs between {a} and {b}"


def test_interrupted_and_resumed_run_matches_the_uninterrupted_one(cli, corpus_file, train_here):
    """SIGTERM, then SIGINT on the resumed run, then a resume to the end: bitwise the same weights.
    The runs without signals train in this process (charrnn.train: the same loop as the command's)."""
    total = 120  # room enough that the signals, sent near the start, land before the end
    train_here(corpus_file, out="whole", steps=total, eval_every=RARE_EVALS, **EXACT_OPTIONS)
    moments = random.Random(4).sample(range(2, 20), 2)

    code, said = signal_at_step(start(cli, "train", corpus_file, "-o", "parts", "--steps", total, *EXACT, *LOGGED),
                                moments[0], signal.SIGTERM)
    assert code == 130, said
    stopped = checkpoint.load_checkpoint(cli.cwd / "parts" / "last.pt").step
    assert moments[0] <= stopped < total and f"interrupted at step {stopped}" in said and "--resume" in said

    code, said = signal_at_step(start(cli, "train", "--resume", "-o", "parts"), stopped + moments[1], signal.SIGINT)
    assert code == 130, said
    assert checkpoint.load_checkpoint(cli.cwd / "parts" / "last.pt").step > stopped

    train_here(out="parts", resume=True)  # steps default to the run's own total
    assert checkpoint.load_checkpoint(cli.cwd / "parts" / "last.pt").step == total
    assert_same_weights(cli.cwd / "whole" / "last.pt", cli.cwd / "parts" / "last.pt")

    # Extending a finished run: with --schedule-steps fixed at the final total, 60 then 120 is 120.
    train_here(corpus_file, out="halves", steps=total // 2, schedule_steps=total, eval_every=RARE_EVALS,
               **EXACT_OPTIONS)
    train_here(out="halves", resume=True, steps=total)
    assert_same_weights(cli.cwd / "whole" / "last.pt", cli.cwd / "halves" / "last.pt")


def test_sigkill_at_random_moments_never_breaks_a_checkpoint(cli, corpus_file, train_here):
    """Checkpoints are written every step; kill the process wherever it is, several times, and resume."""
    run = cli.cwd / "killed"
    moments = random.Random(11).sample([i / 100 for i in range(0, 40)], 3)
    for attempt, delay in enumerate(moments):
        last = run / "last.pt"
        before = last.stat().st_mtime_ns if last.exists() else None
        resume = ["--resume"] if attempt else []
        process = start(cli, "train", corpus_file, *resume, "-o", run, "--steps", "100000", *TINY_MODEL,
                        "--eval-every", "1", "-q", stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while not last.exists() or last.stat().st_mtime_ns == before:  # wait until it is writing checkpoints
            assert process.poll() is None and time.monotonic() < deadline, "training stopped on its own"
            time.sleep(0.01)
        time.sleep(delay)
        process.kill()
        process.wait(timeout=60)
        for name in (checkpoint.BEST, checkpoint.LAST):
            loaded = checkpoint.load_checkpoint(run / name)  # weights_only, CRC-checked
            assert all(torch.isfinite(t).all() for t in loaded.weights.values())
    reached = checkpoint.load_checkpoint(run / checkpoint.LAST).step
    train_here(out=run, resume=True, steps=reached + 3)
    assert checkpoint.load_checkpoint(run / checkpoint.LAST).step == reached + 3
    # Steps a kill cut off after their metrics line are trained again, and logged once.
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, reached + 4))
    assert not list(run.glob(".*.tmp")), "a temporary file from a killed write was left behind"


def trained_run(cli, tiny_run, name: str) -> Path:
    """A copy of the session's tiny run (150 steps, checkpoints every 10) to spoil."""
    shutil.copytree(tiny_run, cli.cwd / name)
    return cli.cwd / name


def contents(run: Path) -> dict:
    return {p.name: p.read_bytes() for p in run.iterdir() if p.suffix == ".pt" or p.name.endswith(".tmp")}


def test_full_disk_keeps_the_previous_checkpoints(cli, tiny_run):
    """A file-size limit makes every checkpoint write fail, as a full disk would; it works as root too."""
    run = trained_run(cli, tiny_run, "full")
    before = contents(run)
    limit = min(len(data) for data in before.values()) // 2

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run(charrnn_command() + ["train", "--resume", "-o", str(run), "--steps", "160", "-q"],
                            cwd=cli.cwd, env=cli.env, text=True, capture_output=True, timeout=300,
                            stdin=subprocess.DEVNULL, preexec_fn=small_files)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert "cannot write" in result.stderr and "intact" in result.stderr and "--resume" in result.stderr
    assert contents(run) == before  # the old checkpoints, byte for byte, and no temporary file left


def test_a_new_run_on_a_full_disk_names_the_file_and_leaves_nothing(cli, corpus_file):
    """The first checkpoint cannot be written: one line naming it, advice that works (not --resume), no folder."""
    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # the lock and metrics fit; a checkpoint does not

    result = subprocess.run(charrnn_command() + ["train", str(corpus_file), "-o", "new", "--steps", "3", *TINY_MODEL,
                                                 "--eval-every", "1", "-q"],
                            cwd=cli.cwd, env=cli.env, text=True, capture_output=True, timeout=300,
                            stdin=subprocess.DEVNULL, preexec_fn=small_files)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert f"cannot write {Path('new') / 'best.pt'}" in result.stderr and "train again" in result.stderr
    assert "--resume" not in result.stderr and not (cli.cwd / "new").exists()


def make_unwritable(folder: Path) -> None:
    """chmod for ordinary users; root ignores permissions, but not the immutable attribute."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root on a file system without the immutable attribute: no way to refuse writes")


def make_writable(folder: Path) -> None:
    if os.geteuid() != 0:
        folder.chmod(0o755)
    else:
        subprocess.run([shutil.which("chattr") or "chattr", "-i", str(folder)], capture_output=True)


def test_read_only_run_directory_is_reported_and_left_intact(cli, tiny_run):
    run = trained_run(cli, tiny_run, "readonly")
    before = contents(run)
    make_unwritable(run)
    try:
        result = cli("train", "--resume", "-o", run, "--steps", "160", check_rc=1)
    finally:
        make_writable(run)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert "cannot write to the run directory" in result.stderr and "--out" in result.stderr
    assert contents(run) == before


def test_nan_loss_stops_training_and_keeps_the_best_checkpoint(tmp_path, corpus_file, train_here, monkeypatch):
    real_step = trainer.Trainer.train_step

    def poisoned(self, lr):  # as if the weights had blown up: the next loss is NaN
        if self.progress.step == 12:
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))
        return real_step(self, lr)

    monkeypatch.setattr(trainer.Trainer, "train_step", poisoned)
    with pytest.raises(CharRNNError, match=r"loss became nan at step 13.*--lr"):  # the CLI's one line: test_errors
        train_here(corpus_file, out="nan", steps=50, **{**TINY_OPTIONS, "eval_every": 5})
    for name, steps in ((checkpoint.BEST, (5, 10)), (checkpoint.LAST, (10,))):
        saved = checkpoint.load_checkpoint(tmp_path / "nan" / name)
        assert saved.step in steps  # written at an evaluation before the NaN, and untouched since
        assert all(torch.isfinite(t).all() for t in saved.weights.values())


class Boobytrap:
    """Unpickling this runs code: exactly what a checkpoint from a stranger might hold."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


class ShellBoobytrap(Boobytrap):
    """The same through os.system: torch blocks its module outright, and words the refusal differently."""

    def __reduce__(self):
        return os.system, (f"echo pwned > {self.marker}",)


def test_checkpoint_that_would_run_code_is_refused(cli, tiny_run):
    marker = cli.cwd / "pwned"
    payload = torch.load(tiny_run / "best.pt", weights_only=True)
    payload["extra"] = Boobytrap(marker)
    torch.save(payload, cli.cwd / "evil.pt")

    result = cli("sample", "-c", "evil.pt", "--length", "10", check_rc=1)  # every command loads through one gate
    assert result.stdout == "" and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "refused to load" in result.stderr and "could run code" in result.stderr
    assert "it would call exec when unpickled" in result.stderr  # the global is named
    assert not marker.exists(), "the checkpoint's code ran"

    payload["extra"] = ShellBoobytrap(marker)
    torch.save(payload, cli.cwd / "shell.pt")
    with pytest.raises(CharRNNError, match=rf"it would call {os.system.__module__}\.system when unpickled"):  # posix.system
        checkpoint.load_checkpoint(cli.cwd / "shell.pt")
    assert not marker.exists(), "the checkpoint's code ran"

    torch.load(cli.cwd / "evil.pt", weights_only=False)  # the trap is real: a full unpickle springs it
    assert marker.read_text() == "pwned"
