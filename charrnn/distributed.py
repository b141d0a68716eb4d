"""Training across processes and machines: torchrun's environment, DDP, and the few collectives the loop needs.

Outside torchrun (or with one process) every helper here is a no-op, so the training loop reads the
same either way. Under `torchrun --nproc-per-node N -m charrnn train ...` each process is one rank:
it trains on its own streams of the corpus, DistributedDataParallel averages the gradients, and
only rank 0 writes files and progress.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from charrnn.data import Windows
from charrnn.device import pick_device
from charrnn.errors import CharRNNError

T = TypeVar("T")

# Phrases in the errors gloo and NCCL raise when another process of the job is gone.
PEER_LOST = ("connection closed by peer", "connection reset by peer", "broken pipe", "nccl", "gloo",
             "socket", "timed out", "remote worker")


class EchoedError(CharRNNError):
    """An error every rank stops with but rank 0 alone reports (one line for the job, not one per process)."""


def launched_world_size() -> int:
    """How many processes torchrun started (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """True in the process that writes files and prints progress: rank 0, or the only process."""
    return int(os.environ.get("RANK", "0")) == 0


@dataclass
class Group:
    """This process's place in the job, and the collectives the training loop uses."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """DDP around the model (it averages gradients during backward); the model itself alone."""
        if not self.active:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def _reduce(self, values: list[float], op) -> list[float]:
        if not self.active:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=op)
        return tensor.tolist()

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any (a stop request must stop all ranks at the same step)."""
        return self._reduce([float(flag)], dist.ReduceOp.MAX)[0] > 0

    def max(self, value: float) -> float:
        """The largest value over the ranks, identical on all of them (e.g. elapsed time for the budget)."""
        return self._reduce([value], dist.ReduceOp.MAX)[0]

    def sum(self, *values: float) -> list[float]:
        return self._reduce(list(values), dist.ReduceOp.SUM)

    def mean(self, value: float) -> float:
        return self.sum(value)[0] / self.world_size

    def gather(self, value: T) -> list[T]:
        """Every rank's `value` (any picklable object), in rank order, on every rank."""
        if not self.active:
            return [value]
        values: list = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def from_main(self, work: Callable[[], T]) -> T:
        """Run `work` on rank 0 only and hand every rank its result, or the same CharRNNError.

        Only rank 0 touches the run directory; on several machines the others may not even see it.
        """
        if not self.active:
            return work()
        outcome: list = [None]
        if self.is_main:
            try:
                outcome[0] = ("ok", work())
            except CharRNNError as error:
                outcome[0] = ("error", str(error))
                dist.broadcast_object_list(outcome, src=0)
                raise
        dist.broadcast_object_list(outcome, src=0)
        status, value = outcome[0]
        if status == "error":
            raise EchoedError(value)
        return value

    def check_same(self, value, message: str) -> None:
        """Raise `message` on every rank unless all ranks hold the same `value` (e.g. the corpus they read)."""
        values = self.gather(value)
        if any(v != values[0] for v in values):
            differing = [rank for rank, v in enumerate(values) if v != values[0]]
            error = CharRNNError if self.is_main else EchoedError
            raise error(f"{message} (process(es) {', '.join(map(str, differing))} differ from process 0)")

    def resume_state(self, hidden, rng: dict) -> Optional[dict]:
        """What last.pt needs from every rank: the whole batch's carried state and each rank's RNG.

        A collective: every rank calls it; rank 0 gets the entries, the others None (they write nothing).
        """
        shares = self.gather((hidden, rng))
        if not self.is_main:
            return None
        states = [state for state, _ in shares]
        whole = (tuple(torch.cat(parts, dim=1) for parts in zip(*states)) if isinstance(hidden, tuple)
                 else torch.cat(states, dim=1))
        return {"hidden_state": whole, "rng": shares[0][1], "rank_rng": [r for _, r in shares],
                "world_size": self.world_size}

    def resumed_share(self, saved: dict):
        """This rank's rows of the carried state in last.pt, and its RNG states."""
        trained_by = saved.get("world_size", 1)
        if trained_by != self.world_size:
            raise CharRNNError(
                f"this run was trained by {trained_by} process(es) and is being resumed by {self.world_size}: "
                f"its streams of the corpus are laid out for {trained_by}; resume with {trained_by} in all "
                f"({'torchrun --nproc-per-node ...' if trained_by > 1 else 'plain charrnn train'} --resume)")
        hidden = saved["hidden_state"]
        if isinstance(hidden, (tuple, list)):
            rows = self.rows(hidden[0].shape[1])
            share = tuple(s[:, rows].contiguous() for s in hidden)
        else:
            share = hidden[:, self.rows(hidden.shape[1])].contiguous()
        return share, saved.get("rank_rng", [saved["rng"]])[self.rank]

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def rows(self, total: int) -> slice:
        """This rank's contiguous share of `total` rows (streams); shares differ by at most one row."""
        return slice(self.rank * total // self.world_size, (self.rank + 1) * total // self.world_size)

    def shard(self, windows: Windows) -> Windows:
        """This rank's streams of `windows`: the ranks' shares, stacked in rank order, are the whole batch."""
        if not self.active:
            return windows
        rows = self.rows(windows.batch_size)
        return Windows(windows.inputs[rows], windows.targets[rows], windows.seq_len)


def start(device_name: str) -> Group:
    """Join torchrun's job (gloo on CPU, NCCL on CUDA) if there is one; else a group of one."""
    device = pick_device(device_name)
    world_size = launched_world_size()
    if world_size <= 1:
        return Group(device=device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise CharRNNError(f"process {rank} has local rank {local_rank} but this machine has "
                               f"{torch.cuda.device_count()} GPU(s); pass --nproc-per-node at most that many")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise CharRNNError(f"--device {device.type} cannot train across processes (torch has no backend for it); "
                           "use --device cuda or cpu under torchrun")
    if dist.is_initialized():  # the caller set the job up already (a notebook, a test): train in it
        return Group(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, device=device)
    try:
        dist.init_process_group(backend, rank=rank, world_size=world_size,
                                **({"device_id": device} if backend == "nccl" else {}))
    except (RuntimeError, ValueError) as error:
        raise CharRNNError(f"process {rank} could not join the job ({first_line(error)}); "
                           "check torchrun's --rdzv-endpoint / --master-addr and that every machine can reach it") from None
    return Group(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def reports(error: BaseException) -> bool:
    """Whether this process should print `error`: the other ranks leave rank 0's errors to rank 0."""
    return is_main() or not isinstance(error, EchoedError)


def finish() -> None:
    """Leave the job cleanly (after success or a clean error every rank agreed on).

    Every rank first waits for the others: one that tore its connections down while rank 0 was
    still writing the last checkpoints aborted now and then in gloo ("terminate called without an
    active exception"; 1 job in 20 with the machine under load).
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def first_line(error: BaseException) -> str:
    """The gist of a torch error: its first sentence, without gloo's `[path/file.cc:123]` prefix."""
    lines = str(error).strip().splitlines()
    text = re.sub(r"^\[[^\]]*\]\s*", "", lines[0]) if lines else type(error).__name__
    return text.split(". ")[0][:200]


def lost_peer(error: BaseException) -> bool:
    """Whether an error from torch says another process of the job failed or vanished."""
    if isinstance(error, getattr(dist, "DistError", ())):
        return True
    return isinstance(error, RuntimeError) and any(p in str(error).lower() for p in PEER_LOST)


@contextlib.contextmanager
def stopped_peers(run_dir: Optional[Path]) -> Iterator[None]:
    """Turn 'another rank died' (killed, out of memory, crashed) into one clear line instead of a traceback.

    The checkpoints are written atomically and only at agreed steps, so the last ones are intact.
    """
    try:
        yield
    except RuntimeError as error:
        if launched_world_size() <= 1 or not lost_peer(error):
            raise
        if threading.current_thread() is threading.main_thread():
            # torchrun is about to send SIGTERM to end the job: let this process first say why it stops.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        rank = os.environ.get("RANK", "?")
        last = Path(run_dir) / "last.pt" if run_dir else None
        then = (f"the last checkpoint, {last}, is intact: continue with --resume" if last and last.is_file()
                else "no checkpoint had been written yet")
        raise CharRNNError(f"process {rank} stopped: another process of this torchrun job failed or was killed "
                           f"({first_line(error)}); {then}") from None
