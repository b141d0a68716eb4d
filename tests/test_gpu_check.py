"""benchmarks/gpu_check.py on the CPU with tiny shapes, every step: the GPU's one command cannot rot unseen."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or not dist.is_available() or not dist.is_gloo_available(),
                                reason="gpu_check forks its steps, and its torchrun step needs gloo on a CPU")
GPU_CHECK = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
STEPS = ["gpu_tests", "training_throughput", "quality", "sampling", "torchrun", "gpu_checkpoint_on_cpu"]


def test_every_step_of_the_gpu_check_runs_on_the_cpu(tmp_path, corpus_file):
    out = tmp_path / "out"
    command = [sys.executable, str(GPU_CHECK), str(out), "--device", "cpu", "--quick", "--corpus", str(corpus_file)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=180,
                               env=dict(os.environ, OMP_NUM_THREADS="1"))
    log = (out / "gpu_check.log").read_text() if (out / "gpu_check.log").exists() else ""
    assert completed.returncode == 0, completed.stderr + log[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert json.loads(completed.stdout) == report
    assert list(report["steps"]) == STEPS and all(step["ok"] for step in report["steps"].values())
    steps = report["steps"]
    assert steps["gpu_tests"]["gpu_skipped"] >= 1 and "failed" not in steps["gpu_tests"]  # no CUDA here: they skip
    assert set(steps["training_throughput"]["by_impl"]) == {"fused", "cells"}
    assert steps["quality"]["picked"]["hidden"] == 256
    assert steps["quality"]["budget_note"].startswith("sized for a 1s budget")
    assert steps["sampling"]["chars_per_s_n64"] > 0
    assert (steps["torchrun"]["backend"], steps["torchrun"]["trained_steps"]) == ("gloo", 4)
    assert steps["gpu_checkpoint_on_cpu"]["first_difference"] is None
    assert "=== quality (limit 230 s) ===" in log
