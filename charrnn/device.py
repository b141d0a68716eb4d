"""Choosing the device, and naming the kernel that runs the recurrence on it."""

from __future__ import annotations

import contextlib
import os
from typing import Optional

import torch

from charrnn.config import PRECISIONS
from charrnn.errors import CharRNNError, SettingError


def pick_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple's MPS, then the CPU."""
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise CharRNNError("--device cuda: no CUDA GPU is available here; use --device auto or cpu")
    if name == "mps" and not mps:
        raise CharRNNError("--device mps: Apple's MPS is not available here; use --device auto or cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise SettingError(f"unknown --device {name!r}; choose auto, cpu, cuda or mps")
    return torch.device(name)


def memory_bytes(device: torch.device) -> Optional[int]:
    """The device's whole memory (a GPU's, or the machine's RAM for the CPU); None where it cannot be told."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    if device.type == "cpu" and hasattr(os, "sysconf"):
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            return None
    return None


def backend_name(device: torch.device, impl: str) -> str:
    """What actually computes the recurrence, for logs and `charrnn info`."""
    if impl == "cells":
        return "cells (step by step)"
    if device.type == "cuda":
        return "cudnn" if torch.backends.cudnn.is_available() else "cuda"
    if device.type == "cpu":
        return "onednn" if torch.backends.mkldnn.is_available() else "aten"
    return device.type


def resolve_precision(name: str, device: torch.device) -> str:
    """`auto` is bf16 autocast on CUDA (cuDNN's fast path, no loss scaling needed) and fp32 elsewhere."""
    if name not in PRECISIONS:
        raise SettingError(f"unknown --precision {name!r}; choose one of {', '.join(PRECISIONS)}")
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if name == "bf16" and device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        # oneDNN's RNN kernels have no bf16 path on CPUs without bf16 instructions: fail here, not mid-run.
        raise CharRNNError("--precision bf16: this CPU has no bf16 support in oneDNN; use --precision fp32 (or a GPU)")
    return name


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on a GPU (a CPU has none queued): what a clock around it needs."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, precision: str):
    """The context a training forward runs in: bf16 autocast, or nothing at all for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def denormals_flushed():
    """Treat subnormal floats as zero while training. A large vocabulary's rare characters get probabilities below
    float32's normal range within a few dozen steps, and on x86 CPUs arithmetic on them is many times slower: a run
    on 3,407 characters made 29 steps in 40 s instead of 153 (benchmarks/RESULTS.md). The mode is each thread's own:
    set before a run's first parallel work, torch's worker threads, started then, inherit it. Torch has no getter
    for it, so the calling thread is set back to torch's default, off."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
