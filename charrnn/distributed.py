"""Training across processes and machines: torchrun's environment, DDP, and the few collectives the loop needs.

Outside torchrun (or with one process) every helper here is a no-op, so the training loop reads the
same either way. Under `torchrun --nproc-per-node N -m charrnn train ...` each process is one rank:
it trains on its own streams of the corpus, DistributedDataParallel averages the gradients, and
only rank 0 writes files and progress.

What the processes send each other are tensors (numbers, bytes), never pickled Python objects: an
unpickled object from a peer, or from anyone who reaches its port, could run code. The one structured
message, rank 0's last.pt on --resume, is read back with the loader checkpoints use (weights_only).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, Optional, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from charrnn.data import Windows
from charrnn.device import pick_device
from charrnn.errors import CharRNNError, EchoedError, launched_world_size
from charrnn.model import State, map_state

T = TypeVar("T")

# Phrases in the errors gloo and NCCL raise when another process of the job is gone.
PEER_LOST = (
    "connection closed by peer",
    "connection reset by peer",
    "broken pipe",
    "nccl",
    "gloo",
    "socket",
    "timed out",
    "remote worker",
)


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

    def gather_tensors(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's `tensor` (one shape and dtype on all ranks), in rank order, on the CPU."""
        if not self.active:
            return [tensor]
        local = tensor.to(self.device).contiguous()  # NCCL moves only tensors on the rank's own GPU
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(parts, local)
        return [part.cpu() for part in parts]

    def gather_bytes(self, data: bytes) -> list[bytes]:
        """Every rank's `data`, in rank order: the lengths first, then the bytes padded to the longest."""
        if not self.active:
            return [data]
        lengths = [int(n) for n in self.gather_tensors(torch.tensor([len(data)], dtype=torch.int64))]
        if max(lengths) == 0:
            return [b""] * self.world_size
        padded = torch.zeros(max(lengths), dtype=torch.uint8)
        padded[: len(data)] = byte_tensor(data)
        return [part[:n].numpy().tobytes() for part, n in zip(self.gather_tensors(padded), lengths)]

    def broadcast_bytes(self, data: Optional[bytes]) -> bytes:
        """Rank 0's `data` on every rank (the others pass None): its length first, then the bytes."""
        if self.is_main:
            assert data is not None  # rank 0 sends what the others receive
            if self.active:
                dist.broadcast(torch.tensor([len(data)], dtype=torch.int64, device=self.device), src=0)
                dist.broadcast(byte_tensor(data).to(self.device), src=0)
            return data
        length = torch.zeros(1, dtype=torch.int64, device=self.device)
        dist.broadcast(length, src=0)
        buffer = torch.empty(int(length), dtype=torch.uint8, device=self.device)
        dist.broadcast(buffer, src=0)
        return buffer.cpu().numpy().tobytes()

    def stop_all(self, message: str) -> NoReturn:
        """Stop every rank with `message`, which all of them reached: rank 0 reports it, the others echo it."""
        outlive_torchrun_stop()
        raise CharRNNError(message) if self.is_main else EchoedError(message)

    def on_every_rank(self, work: Callable[[], T]) -> T:
        """Run `work` on every rank; if it fails on any, every rank stops and rank 0 alone reports it.

        So a bad corpus gives the job one error line, not one per process. A failure on another rank only
        (a file missing on one machine) is reported as that process's.
        """
        if not self.active:
            return work()
        try:
            value = work()
        except CharRNNError as error:
            self.stop_on_failures(str(error) or type(error).__name__)
            raise  # not reached: this rank's failure stops every rank
        self.stop_on_failures("")
        return value

    def stop_on_failures(self, failure: str) -> None:
        """Stop every rank if `failure` (this rank's, "" for none) or another rank's is not empty."""
        failures = [
            data.decode("utf-8", "replace") for data in self.gather_bytes(failure.encode("utf-8", "backslashreplace"))
        ]
        failed = next((rank for rank, said in enumerate(failures) if said), None)
        if failed is not None:
            self.stop_all(failures[failed] if failed == 0 else f"process {failed}: {failures[failed]}")

    def from_main(self, work: Callable[[], T]) -> T:
        """Run `work` on rank 0 only and hand every rank its result, or the same CharRNNError.

        Only rank 0 touches the run directory; on several machines the others may not even see it.
        The result travels as torch.save bytes and is read with the safe loader, like a checkpoint.
        """
        if not self.active:
            return work()
        if self.is_main:
            value = self.on_every_rank(work)
            self.broadcast_bytes(packed(value))
            return value
        self.on_every_rank(lambda: None)
        return unpacked(self.broadcast_bytes(None))

    def check_same(self, digest: Callable[[], bytes], message: str) -> None:
        """Stop every rank with `message` unless `digest()` (e.g. of the corpus each read) is the same on all.

        Alone, a process has nothing to compare, so it does not compute the digest.
        """
        if not self.active:
            return
        digests = self.gather_bytes(digest())
        differing = [rank for rank, d in enumerate(digests) if d != digests[0]]
        if differing:
            self.stop_all(f"{message} (process(es) {', '.join(map(str, differing))} differ from process 0)")

    def resume_state(self, hidden: State, rng: dict) -> Optional[tuple[State, list[dict]]]:
        """What last.pt needs from every rank: the whole batch's carried state and each rank's RNG states.

        A collective: every rank calls it; rank 0 gets them, the others None (they write nothing).
        Every rank carries as many streams, so the shares gather as tensors of one shape.
        """
        whole = map_state(lambda part: torch.cat(self.gather_tensors(part), dim=1), hidden)
        gathered_rng = {name: self.gather_tensors(state) for name, state in rng.items()}
        if not self.is_main:
            return None
        return whole, [{name: states[rank] for name, states in gathered_rng.items()} for rank in range(self.world_size)]

    def resumed_share(self, hidden: State, rank_rng: list[dict]) -> tuple[State, dict]:
        """This rank's rows of the whole batch's carried state in last.pt, and its RNG states."""
        trained_by = len(rank_rng)
        if trained_by != self.world_size:
            raise CharRNNError(
                f"this run was trained by {trained_by} process(es) and is being resumed by {self.world_size}: "
                f"its streams of the corpus are laid out for {trained_by}; resume with {trained_by} in all "
                f"({'torchrun --nproc-per-node ...' if trained_by > 1 else 'plain charrnn train'} --resume)"
            )
        share = map_state(lambda part: part[:, self.rows(part.shape[1])].contiguous(), hidden)
        return share, rank_rng[self.rank]

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
        return windows.rows(rows)


def byte_tensor(data: bytes) -> torch.Tensor:
    """`data` as a uint8 tensor (a copy: torch wants a writable buffer, and bytes are not)."""
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy())


def packed(value) -> bytes:
    """`value` (tensors and plain data, like a checkpoint) as torch.save bytes."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def unpacked(data: bytes):
    """What `packed` made, read with weights_only: bytes from another process cannot run code here."""
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # refused (pickle.UnpicklingError) or not torch.save bytes at all
        raise CharRNNError(
            f"refused what process 0 sent: it holds more than tensors and plain data "
            f"({first_line(error)}); is something other than this job on its port?"
        ) from None


def corpus_digest(ids: np.ndarray, chars: str) -> bytes:
    """A corpus in 32 bytes, its vocabulary and every id (sha256): what the ranks compare, not the corpus itself."""
    text = chars.encode("utf-8", "surrogatepass")
    hashed = hashlib.sha256(len(text).to_bytes(8, "little") + text)
    hashed.update(np.ascontiguousarray(ids).data)  # a memoryview: the ids' bytes, not copied
    return hashed.digest()


def outlive_torchrun_stop() -> None:
    """Ignore SIGTERM in a process that is about to stop with an error (and exit on its own).

    torchrun sends SIGTERM to the others as soon as one process exits: without this, rank 0 could be
    stopped before printing the job's one error line, and a stopped rank would say it was interrupted.
    """
    if launched_world_size() > 1 and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def start(device_name: str) -> Group:
    """Join torchrun's job (gloo on CPU, NCCL on CUDA) if there is one; else a group of one."""
    device = pick_device(device_name)
    world_size = launched_world_size()
    if world_size <= 1:
        return Group(device=device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise CharRNNError(
                f"process {rank} has local rank {local_rank} but this machine has "
                f"{torch.cuda.device_count()} GPU(s); pass --nproc-per-node at most that many"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise CharRNNError(
            f"--device {device.type} cannot train across processes (torch has no backend for it); "
            "use --device cuda or cpu under torchrun"
        )
    if dist.is_initialized():  # the caller set the job up already (a notebook, a test): train in it
        return Group(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, device=device)
    try:
        dist.init_process_group(
            backend, rank=rank, world_size=world_size, device_id=device if backend == "nccl" else None
        )
    except (RuntimeError, ValueError) as error:
        raise CharRNNError(
            f"process {rank} could not join the job ({first_line(error)}); "
            "check torchrun's --rdzv-endpoint / --master-addr and that every machine can reach it"
        ) from None
    return Group(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def finish() -> None:
    """Leave the job cleanly (after success or a clean error every rank agreed on).

    Every rank first waits for the others: one that tears its connections down while rank 0 still
    writes the last checkpoints can abort in gloo (benchmarks/RESULTS.md).
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
        outlive_torchrun_stop()  # torchrun is about to end the job: let this process first say why it stops
        rank = os.environ.get("RANK", "?")
        last = Path(run_dir) / "last.pt" if run_dir else None
        then = (
            f"the last checkpoint, {last}, is intact: continue with --resume"
            if last and last.is_file()
            else "no checkpoint had been written yet"
        )
        raise CharRNNError(
            f"process {rank} stopped: another process of this torchrun job failed or was killed "
            f"({first_line(error)}); {then}"
        ) from None
