"""Training across processes: two gloo ranks on the CPU, over loopback only."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import charrnn
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from charrnn import distributed
from charrnn.checkpoint import load_checkpoint
from charrnn.config import ModelConfig, TrainConfig
from charrnn.data import training_windows
from charrnn.errors import CharRNNError, reports
from charrnn.trainer import Trainer, prepare

from conftest import ENGLISH, TINY_MODEL

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="this torch has no gloo backend")

SHAPE = ModelConfig(model="lstm", layers=1, hidden=16, embed=8)
WITH_DROPOUT = ModelConfig(model="lstm", layers=1, hidden=16, embed=8, dropout=0.1)  # each rank draws its own masks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(batch_size: int, steps: int, **options) -> TrainConfig:
    # grad_clip out of reach: clipping to norm 1 would hide a sum-versus-mean mistake. A constant
    # learning rate, so that a run of 3 steps resumed to 6 follows the same schedule as a run of 6.
    return TrainConfig(seq_len=16, batch_size=batch_size, steps=steps, eval_every=3, device="cpu",
                       grad_clip=1e9, warmup_steps=0, min_lr_ratio=1.0, **options)


def run_files(run_dir: Path) -> list[str]:
    """What a run wrote; hidden entries (the run directory's .lock) are not its output."""
    return sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("."))


def gradients(trainer: Trainer) -> dict:
    return {name: p.grad.clone() for name, p in trainer.model.named_parameters()}


def refuse_pickled_exchanges() -> None:
    """Make torch's object collectives fail: charrnn's exchanges must be tensors (unpickling a peer's data runs code)."""
    def refused(*args, **kwargs):
        raise AssertionError("charrnn sent a pickled object between processes")
    for name in ("all_gather_object", "gather_object", "broadcast_object_list", "scatter_object_list",
                 "send_object_list", "recv_object_list"):
        setattr(dist, name, refused)


def rank_worker(rank: int, port: int, folder: str) -> None:
    """One rank: a first step's gradient, then a run stopped and resumed beside an uninterrupted one,
    then set-ups that fail on rank 0, on rank 1 alone, or because the ranks read different text."""
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    # A collective left waiting by a rank that went its own way fails in a minute, not gloo's default 30.
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=60))
    refuse_pickled_exchanges()
    folder = Path(folder)
    corpus = [str(folder / "corpus.txt")]
    trainer = prepare(corpus, SHAPE, config(2, 1), folder / "grad", force=True)
    trainer.train_step(1e-3)
    torch.save(gradients(trainer), folder / f"grad{rank}.pt")

    prepare(corpus, WITH_DROPOUT, config(2, 6), folder / "whole").run()
    prepare(corpus, WITH_DROPOUT, config(2, 3), folder / "parts").run()
    prepare(corpus, WITH_DROPOUT, config(2, 6), folder / "parts", resume=True).run()
    failing = {
        "missing": ([corpus[0]], True),  # rank 0 alone reads the run directory, and finds no last.pt
        "absent": ([corpus[0] if rank == 0 else str(folder / "nosuch.txt")], False),  # one machine lacks the file
        "differ": ([str(folder / ("corpus.txt" if rank == 0 else "reversed.txt"))], False),  # as long, same vocabulary
    }
    for case, (corpus_args, resume) in failing.items():
        try:
            prepare(corpus_args, SHAPE, config(2, 6), folder / case, resume=resume)
        except CharRNNError as error:
            (folder / f"{case}{rank}.txt").write_text(f"{reports(error)} {error}")
    distributed.finish()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ranks")
    (folder / "corpus.txt").write_text(ENGLISH * 20, encoding="utf-8")
    (folder / "reversed.txt").write_text((ENGLISH * 20)[::-1], encoding="utf-8")
    previous = os.environ.get("CHARRNN_CACHE_DIR")
    os.environ["CHARRNN_CACHE_DIR"] = str(folder / "cache")  # the ranks inherit it
    try:
        mp.start_processes(rank_worker, args=(free_port(), str(folder)), nprocs=2, join=True, start_method="spawn")
    finally:
        os.environ.pop("CHARRNN_CACHE_DIR") if previous is None else os.environ.update(CHARRNN_CACHE_DIR=previous)
    return folder


def test_shares_of_the_streams_stack_into_the_whole_batch():
    ids = np.arange(1000, dtype=np.int32)
    whole = training_windows(ids, 6, 10)
    shares = [distributed.Group(rank=r, world_size=4).shard(whole) for r in range(4)]
    assert [s.batch_size for s in shares] == [1, 2, 1, 2]
    for index in (0, len(whole) - 1):
        stacked = torch.cat([s[index][0] for s in shares])
        assert torch.equal(stacked, whole[index][0])


def test_a_group_of_one_changes_nothing():
    group = distributed.Group()
    windows = training_windows(np.arange(100, dtype=np.int32), 2, 5)
    assert group.shard(windows) is windows
    assert group.sum(1.5, 2) == [1.5, 2] and group.max(3.0) == 3.0 and not group.any(False)
    assert group.from_main(lambda: 42) == 42 and group.on_every_rank(lambda: 7) == 7
    assert group.gather_bytes(b"x") == [b"x"] and group.broadcast_bytes(b"y") == b"y"
    group.check_same(lambda: pytest.fail("alone, there is nothing to compare"), "unused")


def test_what_process_zero_sends_is_read_without_running_code(tmp_path: Path):
    ran = tmp_path / "ran"

    class Payload:  # unpickled, it would create the file
        def __reduce__(self):
            return Path.touch, (ran,)

    with pytest.raises(CharRNNError, match="refused what process 0 sent: it holds more than tensors"):
        distributed.unpacked(distributed.packed(Payload()))
    assert not ran.exists()
    state = {"step": 3, "vocab": "ab", "hidden_state": (torch.ones(1, 2, 3), torch.zeros(1, 2, 3))}
    again = distributed.unpacked(distributed.packed(state))
    assert again["step"] == 3 and again["vocab"] == "ab" and torch.equal(again["hidden_state"][0], torch.ones(1, 2, 3))


def test_two_ranks_average_the_gradient_of_the_global_batch(two_ranks: Path):
    single = prepare([str(two_ranks / "corpus.txt")], SHAPE, config(4, 1), two_ranks / "single")
    single.train_step(1e-3)
    expected = gradients(single)
    for rank in range(2):
        got = torch.load(two_ranks / f"grad{rank}.pt")
        for name, grad in expected.items():
            torch.testing.assert_close(got[name], grad, rtol=1e-5, atol=1e-7, msg=f"rank {rank}, {name}")


def test_only_rank_zero_writes_and_resume_continues_exactly(two_ranks: Path):
    for run in ("whole", "parts"):
        assert run_files(two_ranks / run) == ["best.pt", "last.pt", "metrics.jsonl"]
    steps = [json.loads(line)["step"] for line in (two_ranks / "parts" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [3, 6]  # one line per evaluation, not one per rank
    whole = torch.load(two_ranks / "whole" / "last.pt", weights_only=True)
    parts = torch.load(two_ranks / "parts" / "last.pt", weights_only=True)
    assert whole["world_size"] == 2 and len(whole["rank_rng"]) == 2
    assert whole["hidden_state"][0].shape[1] == 4  # the whole batch's carried state: 2 streams per rank
    for name, weight in whole["model"].items():
        torch.testing.assert_close(parts["model"][name], weight, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("case, message", [
    ("missing", "no last.pt to resume from"),
    ("absent", "process 1: {folder}/nosuch.txt: no such file"),
    ("differ", "the processes read different corpora; every machine needs the same corpus files "
               "(process(es) 1 differ from process 0)"),
])
def test_rank_zero_alone_reports_an_error_all_ranks_stop_with(two_ranks: Path, case: str, message: str):
    said = [(two_ranks / f"{case}{rank}.txt").read_text() for rank in range(2)]
    assert said[0].startswith("True ") and message.format(folder=two_ranks) in said[0]
    assert said[1] == "False " + said[0][len("True "):]


def test_a_single_process_does_not_resume_a_two_process_run(two_ranks: Path):
    with pytest.raises(CharRNNError, match=r"trained by 2 process\(es\).*resume with 2"):
        prepare([], WITH_DROPOUT, config(2, 9), two_ranks / "parts", resume=True)


def torchrun(cli, *args: str, **options) -> subprocess.Popen:
    """`torchrun --nproc-per-node 2 -m charrnn ARGS` in the test's folder, on loopback, on a free port."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--nnodes", "1",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}",
               "-m", "charrnn", *args]
    return subprocess.Popen(command, cwd=cli.cwd, env=cli.env, text=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options)


def test_torchrun_trains_and_a_single_process_samples_the_checkpoint(cli, corpus_file):
    job = torchrun(cli, "train", str(corpus_file), "-o", "runs/ddp", *TINY_MODEL, "--steps", "6",
                   "--eval-every", "3", "--device", "cpu")
    out, err = job.communicate(timeout=180)
    assert job.returncode == 0, err
    assert out == ""
    assert err.count("2 processes") == 1 and err.count("done:") == 1  # only rank 0 speaks
    assert [p.name for p in (cli.cwd / "runs").iterdir()] == ["ddp"]
    assert run_files(cli.cwd / "runs" / "ddp") == ["best.pt", "last.pt", "metrics.jsonl"]
    assert len((cli.cwd / "runs" / "ddp" / "metrics.jsonl").read_text().splitlines()) == 2
    assert len(charrnn.load(cli.cwd / "runs" / "ddp").generate(length=20, seed=1)) == 20  # as `sample` loads it


def test_torchrun_reports_a_bad_corpus_once(cli):
    job = torchrun(cli, "train", "nosuch.txt", "-o", "runs/bad", *TINY_MODEL, "--steps", "2", "--device", "cpu")
    _, err = job.communicate(timeout=120)
    assert job.returncode == 1
    said = [line for line in err.splitlines() if "charrnn:" in line]  # not torchrun's own report after it
    assert len(said) == 1 and said[0].startswith("charrnn: error: nosuch.txt: no such file"), err
    assert said[0].count("charrnn:") == 1  # not two processes' lines run together


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def rank_of(pid: int) -> int:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return next((int(v[5:]) for v in environ if v.startswith(b"RANK=")), -1)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir() or not hasattr(signal, "SIGKILL"), reason="needs Linux /proc")
def test_killing_one_rank_stops_the_job_clearly_and_the_checkpoint_resumes(cli, corpus_file):
    job = torchrun(cli, "train", str(corpus_file), "-o", "runs/k", *TINY_MODEL, "--steps", "100000",
                   "--eval-every", "3", "--device", "cpu")
    last = cli.cwd / "runs" / "k" / "last.pt"
    deadline = time.monotonic() + 120
    while not last.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert last.exists(), job.communicate(timeout=5)
    victims = [pid for pid in children(job.pid) if rank_of(pid) == 1]
    assert len(victims) == 1
    os.kill(victims[0], signal.SIGKILL)
    _, err = job.communicate(timeout=120)
    assert job.returncode != 0
    assert "charrnn: error: process 0 stopped: another process of this torchrun job failed or was killed" in err
    assert "runs/k/last.pt, is intact: continue with --resume" in err

    step = load_checkpoint(last).step  # intact: it loads, and --resume continues from it
    assert step >= 3
    resumed = torchrun(cli, "train", "-o", "runs/k", "--resume", "--steps", str(step + 2), "--device", "cpu")
    _, err = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, err
    assert load_checkpoint(last).step == step + 2
