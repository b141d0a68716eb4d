"""The GPU path, checked in one command: GPU tests, training speed, quality in 3 minutes, sampling speed,
torchrun, and a checkpoint written on the GPU sampled on the CPU. JSON and a log go under DIR.

Each step runs in a child process (forked, so torch is imported once) with its own time limit; one that
overruns is killed with everything it started. DIR/gpu_check.json is rewritten after every step, so a
run cut short still tells what it found; DIR/gpu_check.log holds everything the steps said. The limits
add up to 7m50s; on one H200 the check took 4m16s (benchmarks/RESULTS.md).
Prints the JSON; exits 1 if a step failed.

    python benchmarks/gpu_check.py DIR --corpus tinyshakespeare.txt      # on one GPU
    python benchmarks/gpu_check.py DIR --only quality sampling          # again, after a fix
    python benchmarks/gpu_check.py DIR --device cpu --quick              # every step, tiny: seconds (a test)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.distributed.run import main as torchrun  # noqa: E402

import quality  # noqa: E402
import throughput  # noqa: E402
from distributed import free_port  # noqa: E402  (benchmarks/distributed.py)

from charrnn import checkpoint  # noqa: E402
from charrnn.config import ModelConfig, SamplingSettings, TrainConfig  # noqa: E402
from charrnn.device import pick_device, synchronize  # noqa: E402
from charrnn.model import model_from_checkpoint  # noqa: E402
from charrnn.sample import generate  # noqa: E402
from charrnn.trainer import run_training as train  # noqa: E402
from charrnn.vocab import Vocab  # noqa: E402

DEFAULT_CORPUS = Path("/work/shared/corpora/tinyshakespeare.txt")
# --quick: the smallest shapes every step still runs with (throughput.py's flags, then charrnn train's).
TINY_THROUGHPUT = ["--kinds", "lstm", "--layers", "1", "--hidden", "32", "--embed", "16", "--seq-len", "16",
                   "--batch-size", "4", "--steps", "1", "--warmup", "1", "--rounds", "1", "--sample-chars", "20",
                   "--gemm-size", "64", "--gemm-repeats", "1", "--no-bare"]
TINY_TRAIN = ["--embed", "8", "--seq-len", "16", "--batch-size", "2"]
# The targets on an H100 (the first is provisional: what cuDNN's LSTM reaches is the finding).
TARGET_FRACTION_OF_PEAK = 0.25
TARGET_VAL_LOSS_3M = 1.40


@dataclass(frozen=True)
class Context:
    """What every step is given: the device, the sizes (--quick), the corpus, the tests, a scratch folder."""

    device: str
    quick: bool
    corpus: Path
    tests: list
    scratch: Path


@dataclass(frozen=True)
class Step:
    """One check: its name in the JSON, its time limit, and what it runs (in a child process)."""

    name: str
    limit_s: float
    run: Callable[[Context], dict]


class OutcomeCounts:
    """A pytest plugin that keeps how many tests passed, failed, were skipped, and how many of the skipped were
    gpu tests: a module skipped whole for want of an optional package (llm on the GPU machines) holds none."""

    def __init__(self):
        self.counts = {}

    def pytest_terminal_summary(self, terminalreporter):
        stats = terminalreporter.stats
        self.counts = {outcome: len(reports) for outcome, reports in stats.items()
                       if outcome in ("passed", "failed", "skipped", "error")}
        self.counts["gpu_skipped"] = sum("gpu" in getattr(report, "keywords", {}) for report in stats.get("skipped", []))


def gpu_tests(context: Context) -> dict:
    """The tests marked gpu (`pytest -m gpu`): on a GPU every one must run and pass; on a CPU they skip. A test
    module the machine cannot import is an error, and the rest still run."""
    import pytest

    outcomes = OutcomeCounts()
    code = int(pytest.main(["-m", "gpu", "-q", "-p", "no:cacheprovider", "--continue-on-collection-errors",
                            *context.tests], plugins=[outcomes]))
    skipped_on_gpu = context.device == "cuda" and outcomes.counts.get("gpu_skipped", 0) > 0
    return {"ok": code == 0 and not skipped_on_gpu, "exit_code": code, **outcomes.counts}


def training_throughput(context: Context) -> dict:
    """LSTM 3x1024, batch 128, windows of 256, bf16 on CUDA, fused and cells: benchmarks/throughput.py --gpu."""
    print("bf16 dense peaks looked up by device name (TFLOP/s):", json.dumps(throughput.BF16_DENSE_PEAK_TFLOPS))
    args = throughput.parse(TINY_THROUGHPUT if context.quick else ["--gpu"])
    args.device, args.precision = context.device, "auto"  # auto: bf16 on CUDA, as --gpu sets; fp32 on a CPU
    report = throughput.run(args)
    peak = report.get("bf16_dense_peak_gflops")
    by_impl = {entry["impl"]: {"chars_per_s": entry["train_chars_per_s"], "tflops": round(entry["train_gflops"] / 1e3, 2),
                               "fraction_of_bf16_dense_peak": entry.get("train_fraction_of_bf16_dense_peak"),
                               "sample_chars_per_s": entry.get("sample_chars_per_s")}
               for entry in report["results"]}
    return {"device_name": report["device_name"], "precision": report["precision"], "size": report["size"],
            "bf16_dense_peak_tflops": peak / 1e3 if peak else None, "peak_source": report.get("bf16_dense_peak_source"),
            "gemm_ceiling_tflops": round(report["gemm_ceiling"]["best_gflops"] / 1e3, 2), "by_impl": by_impl,
            "report": report}


def quality_in_3_minutes(context: Context) -> dict:
    """`charrnn train CORPUS --time 3m --device cuda` (benchmarks/quality.py): the size the budget picked, the val loss."""
    argv = [str(context.corpus), "--time", "1s" if context.quick else "3m", "--out", str(context.scratch / "quality_run")]
    argv += ["--no-full-eval"] if context.quick else []
    result = quality.measure(argv + ["--", "--device", context.device] + (TINY_TRAIN if context.quick else []))
    model = result["model_config"]
    return {"final_val_loss": result["final_val_loss"], "best_val_loss_full_split": result["best_val_loss_full_split"],
            "picked": {"layers": model["layers"], "hidden": model["hidden"], "dropout": model["dropout"]},
            "eval_every": result["train_config"]["eval_every"], "steps": result["steps"],
            "val_curve": [[entry["step"], entry["val_loss"]] for entry in result["evals"]],  # where the best one came, and how far after it the run went on
            "chars_per_s": result["chars_per_s"], "budget_note": result["budget_note"], "wall_s": result["wall_s"]}


def timed_generation(model, vocab: Vocab, device: torch.device, samples: int, length: int) -> float:
    """Characters a second over `samples` samples of `length`, after a short untimed warm-up."""
    for _ in generate(model, vocab, settings=SamplingSettings(length=4, seed=0, n=samples), device=device):
        pass
    started = time.perf_counter()
    for _ in generate(model, vocab, settings=SamplingSettings(length=length, seed=0, n=samples), device=device):
        pass
    synchronize(device)
    return samples * length / (time.perf_counter() - started)


def sampling_speed(context: Context) -> dict:
    """Characters a second from the 3-minute model: one sample, and 64 at once (`charrnn sample -n 64`)."""
    saved = checkpoint.load_checkpoint(context.scratch / "quality_run" / checkpoint.BEST)
    device = pick_device(context.device)
    model, vocab = model_from_checkpoint(saved, device=device), Vocab(saved.vocab)
    length = 20 if context.quick else 2000
    return {"hidden": saved.model_config.hidden,
            "chars_per_s_n1": round(timed_generation(model, vocab, device, 1, length), 1),
            "chars_per_s_n64": round(timed_generation(model, vocab, device, 64, length // 4), 1)}


def one_collective(device: torch.device) -> dict:
    """A process group of one on this device (NCCL on a GPU, gloo on a CPU) and an all-reduce through it."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":  # NCCL binds a group to one numbered GPU
        device = torch.device("cuda", torch.cuda.current_device())
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1,
                            **({"device_id": device} if backend == "nccl" else {}))
    try:
        tensor = torch.full((4,), 2.0, device=device)
        dist.all_reduce(tensor)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    version = ".".join(map(str, torch.cuda.nccl.version())) if backend == "nccl" else None
    return {"backend": backend, "all_reduce_ok": tensor.tolist() == [2.0] * 4, "nccl_version": version}


def torchrun_train_and_sample(context: Context) -> dict:
    """NCCL on this GPU, then `torchrun --nproc-per-node 1 -m charrnn train` and a sample from what it wrote.
    (One process forms no process group in charrnn: NCCL is checked by a collective of its own.)"""
    device = pick_device(context.device)
    collective = one_collective(device)
    run_dir, steps = context.scratch / "torchrun_run", 4 if context.quick else 60
    shape = TINY_TRAIN + ["--hidden", "16"] if context.quick else ["--hidden", "256"]
    # torchrun's own entry point, called here rather than started: its worker is `python -m charrnn train`, as a user's.
    torchrun(["--nnodes", "1", "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}",
              "-m", "charrnn", "train", str(context.corpus), "-o", str(run_dir), "--force", "--steps", str(steps),
              "--eval-every", str(steps // 2), "--device", context.device, *shape])
    saved = checkpoint.load_checkpoint(run_dir / checkpoint.BEST)
    trained_steps = checkpoint.load_checkpoint(run_dir / checkpoint.LAST).step  # best.pt may be an earlier step's
    model, vocab = model_from_checkpoint(saved, device=device), Vocab(saved.vocab)
    text = "".join(c for (c,) in generate(model, vocab, settings=SamplingSettings(length=200, seed=0), device=device))
    return {"ok": collective["all_reduce_ok"] and trained_steps == steps, **collective,
            "trained_steps": trained_steps, "val_loss": saved.val_loss, "written_on": saved.device,
            "sample": text[:80], "sample_nats_per_char": nats_per_char(model_from_checkpoint(saved, device=torch.device("cpu")), vocab, text)}


def nats_per_char(model, vocab: Vocab, text: str) -> float:
    """The model's mean loss on `text`: its own samples score near its entropy, a sampler gone wrong far above."""
    ids = torch.from_numpy(vocab.encode(text)).long().unsqueeze(0)
    with torch.no_grad():
        logits, _ = model(ids[:, :-1])
    return round(torch.nn.functional.cross_entropy(logits[0].float(), ids[0, 1:]).item(), 3)


def gpu_checkpoint_on_cpu(context: Context) -> dict:
    """A checkpoint trained and written on the GPU gives the same greedy text on the CPU as on the GPU, and samples
    at temperature 1 that the model scores alike on both."""
    run_dir, steps = context.scratch / "gpu_run", 4 if context.quick else 100
    train([str(context.corpus)], ModelConfig(hidden=16 if context.quick else 256, embed=8 if context.quick else 64),
          TrainConfig(steps=steps, eval_every=steps, device=context.device, **({"seq_len": 16, "batch_size": 2} if context.quick else {})),
          run_dir)
    saved = checkpoint.load_checkpoint(run_dir / checkpoint.BEST)  # the tensors land on the CPU, as for any reader
    vocab, greedy, sampled = Vocab(saved.vocab), {}, {}
    for name in dict.fromkeys([context.device, "cpu"]):
        device = pick_device(name)
        model = model_from_checkpoint(saved, device=device)
        greedy[name], sampled[name] = (
            "".join(c for (c,) in generate(model, vocab, device=device, settings=SamplingSettings(
                length=300, temperature=temperature, seed=0, precision="fp32")))
            for temperature in (0, 1))
    on_device, on_cpu = greedy[context.device], greedy["cpu"]
    differs_at = next((i for i, (a, b) in enumerate(zip(on_device, on_cpu)) if a != b), None)
    scorer = model_from_checkpoint(saved, device=torch.device("cpu"))
    sample_nats = {name: nats_per_char(scorer, vocab, text) for name, text in sampled.items()}
    alike = abs(sample_nats[context.device] - sample_nats["cpu"]) < 0.5
    return {"ok": on_device == on_cpu and alike, "written_on": saved.device, "precision": saved.precision,
            "first_difference": differs_at, "greedy_text": on_cpu[:80], "sample_nats_per_char": sample_nats,
            # drawn on the host from one seed, the samples differ only where the devices' logits tip a draw
            "samples_identical": sampled[context.device] == sampled["cpu"], "sample_on_device": sampled[context.device][:80]}


# Each step's limit, with room over what it took on one H200 (11, 27, 197, 1, 14 and 6 s).
STEPS = (
    Step("gpu_tests", 60, gpu_tests),
    Step("training_throughput", 75, training_throughput),
    Step("quality", 230, quality_in_3_minutes),
    Step("sampling", 30, sampling_speed),
    Step("torchrun", 45, torchrun_train_and_sample),
    Step("gpu_checkpoint_on_cpu", 30, gpu_checkpoint_on_cpu),
)


def run_step(step: Step, context: Context, log_path: Path) -> dict:
    """Run `step` in a forked child and kill it, with whatever it started, once its limit passes."""
    result_path = context.scratch / f"{step.name}.json"
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n=== {step.name} (limit {step.limit_s:.0f} s) ===\n")
    sys.stdout.flush()
    sys.stderr.flush()
    child = multiprocessing.get_context("fork").Process(target=step_in_child, args=(step, context, log_path, result_path))
    started = time.monotonic()
    child.start()
    child.join(step.limit_s)
    timed_out = child.is_alive()
    if timed_out:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:  # killed before it made its own process group
            child.kill()
        child.join()
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    ok = not timed_out and child.exitcode == 0 and result.pop("ok", True)
    return {"ok": ok, "seconds": round(time.monotonic() - started, 1), "limit_s": step.limit_s,
            **({"error": f"ran past its {step.limit_s:.0f} s limit"} if timed_out else {}), **result}


def step_in_child(step: Step, context: Context, log_path: Path, result_path: Path) -> None:
    """The child's side: its own process group (to be killed whole), its output to the log, its result as JSON."""
    os.setpgrp()
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        result = step.run(context)
    except BaseException as error:  # the JSON says what failed; the log keeps the traceback
        traceback.print_exc()
        result = {"ok": False, "error": f"{type(error).__name__}: {error}"[-1000:]}
    result_path.write_text(json.dumps(result))


def targets(report: dict) -> dict:
    """The issue's targets on an H100, against what the steps measured."""
    fused = report["steps"]["training_throughput"].get("by_impl", {}).get("fused", {})
    fraction = fused.get("fraction_of_bf16_dense_peak")
    quality_step = report["steps"]["quality"]
    loss = quality_step.get("best_val_loss_full_split") or quality_step.get("final_val_loss")
    return {"fused_3x1024_fraction_of_bf16_dense_peak": {"value": fraction, "at_least": TARGET_FRACTION_OF_PEAK,
                                                         "met": fraction is not None and fraction >= TARGET_FRACTION_OF_PEAK},
            "tiny_shakespeare_val_loss_3m": {"value": loss, "at_most": TARGET_VAL_LOSS_3M,
                                             "met": loss is not None and loss <= TARGET_VAL_LOSS_3M}}


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="where gpu_check.json and gpu_check.log go")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--quick", action="store_true", help="tiny shapes and budgets: every step in seconds")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="tiny-shakespeare (default: %(default)s)")
    parser.add_argument("--only", nargs="+", choices=[step.name for step in STEPS], default=[step.name for step in STEPS],
                        help="run these steps alone, to check a fix (sampling reads the model quality trains)")
    parser.add_argument("--tests", nargs="+", default=None,
                        help="what pytest -m gpu collects (default: tests; with --quick, tests/test_device.py)")
    args = parser.parse_args(argv)
    if not args.corpus.is_file():
        parser.error(f"no corpus at {args.corpus}; pass --corpus PATH to tiny-shakespeare")
    args.tests = args.tests or (["tests/test_device.py"] if args.quick else ["tests"])
    return args


def main(argv=None) -> int:
    args = parse(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    json_path, log_path = args.dir / "gpu_check.json", args.dir / "gpu_check.log"
    log_path.write_text("", encoding="utf-8")
    os.chdir(ROOT)  # pytest's rootdir and the tests' paths
    with tempfile.TemporaryDirectory(prefix="charrnn-gpu-check-") as scratch:
        # The children and the commands they run import charrnn from here (it need not be installed) and
        # cache in the scratch folder.
        os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                          CHARRNN_CACHE_DIR=str(Path(scratch) / "cache"), NO_COLOR="1", PYTHONUNBUFFERED="1")
        context = Context(args.device, args.quick, args.corpus.resolve(), args.tests, Path(scratch))
        report = {"device": args.device, "quick": args.quick, "torch": torch.__version__, "corpus": str(context.corpus),
                  "bf16_dense_peak_tflops_by_name": throughput.BF16_DENSE_PEAK_TFLOPS, "steps": {}}
        started = time.monotonic()
        for step in (step for step in STEPS if step.name in args.only):
            result = run_step(step, context, log_path)
            report["steps"][step.name] = result
            report["total_s"] = round(time.monotonic() - started, 1)
            json_path.write_text(json.dumps(report, indent=2), encoding="utf-8")
            print(f"gpu_check: {step.name} {'ok' if result['ok'] else 'FAILED'} in {result['seconds']} s", file=sys.stderr)
        if args.device == "cuda" and not args.quick and {"training_throughput", "quality"} <= set(args.only):
            report["targets"] = targets(report)
        report["ok"] = all(step["ok"] for step in report["steps"].values())
        json_path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
