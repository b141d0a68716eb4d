"""The panel: texts x time budgets x settings, charrnn's defaults against a grid of shapes, on held-out text.

For each text (split by panel_texts.split: the first 90% trains, the last 10% is the test text), budget and
setting, runs `charrnn train TRAIN --time {minutes}m -o RUN --force [flags]` as a user would (a subprocess,
nothing else), then `charrnn eval -c RUN/best.pt TEST --json` (what a user gets) and the same on last.pt (the
final weights; skipped when they are best.pt's, the same step). Settings: "defaults" (no flags) and each
hidden:dropout pair of --grid (`--hidden H --dropout D`). Each cell appends one JSON line to --results (text,
chars, budget, setting, the shape the run chose and its "sized for" line, steps, wall seconds, test loss in
nats/char of best.pt and of last.pt, eval's item count when it scored per item), so a panel runs piecemeal and
resumes: cells already there are skipped. A cell that fails prints the tail of its stderr (or why its run
cannot be read) and the panel goes on. Each train text is encoded once beforehand, into charrnn's cache in a
scratch folder, so that no cell's budget pays for it.

    python benchmarks/panel_texts.py /work/texts                                  # the texts, once
    python benchmarks/panel.py --results panel.jsonl                              # the whole panel: 5 x 3 x 4 cells
    python benchmarks/panel.py /work/texts/words.txt --budgets 3 10 --results panel.jsonl   # part of it
    python benchmarks/panel.py /work/texts/verse.txt --budgets 0.1 --grid 256:0 --results smoke.jsonl  # smoke run
    python benchmarks/panel.py --table --results panel.jsonl                      # the table, then the checks as JSON

The table: per text and budget, the defaults' test loss (nats/char), the best of the grid and which it was,
and regret = defaults - best; a defaults cell marked * ended worse than a shorter budget of the same text.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import panel_texts  # noqa: E402  (beside this file)

from charrnn.checkpoint import load_checkpoint  # noqa: E402
from charrnn.data import load_corpus  # noqa: E402
from charrnn.errors import CharRNNError  # noqa: E402

TEXTS = [Path("/work/texts") / name for name in ("verse.txt", "words.txt")]
TEXTS += [panel_texts.SHAKESPEARE] + [Path("/work/texts") / name for name in ("pydocs.txt", "docs50.txt")]
GRID = "256:0,384:0.2,640:0.2"
DEFAULTS = "defaults"
STDERR_TAIL = 2000  # characters of a failed command's stderr shown


@dataclass(frozen=True)
class Setting:
    name: str  # "defaults", or "H:D" for --hidden H --dropout D
    flags: tuple[str, ...]


@dataclass(frozen=True)
class Split:
    name: str  # the text's file name without its suffix
    chars: int
    train: Path
    test: Path


class CellFailed(Exception):
    """A charrnn command of a cell exited with an error."""


def grid_settings(grid: str) -> list[Setting]:
    """The settings of `--grid 256:0,384:0.2`: one per hidden:dropout pair."""
    settings = []
    for pair in filter(None, grid.split(",")):
        hidden, _, dropout = pair.partition(":")
        try:
            shape = int(hidden), float(dropout)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"cannot read {pair!r}; write hidden:dropout pairs such as 384:0.2"
            ) from None
        settings.append(Setting(f"{shape[0]}:{shape[1]:g}", ("--hidden", str(shape[0]), "--dropout", f"{shape[1]:g}")))
    return settings


def charrnn(*args: str) -> subprocess.CompletedProcess:
    """Run a charrnn command of this checkout; CellFailed with its stderr's tail if it fails."""
    command = [sys.executable, "-m", "charrnn", *args]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise CellFailed(f"charrnn {args[0]} exited {completed.returncode}:\n{completed.stderr[-STDERR_TAIL:]}")
    return completed


def prepared(text: Path, folder: Path) -> Split:
    """The text's train and test parts written into `folder`, the train part encoded into charrnn's cache."""
    whole = text.read_bytes().decode("utf-8")
    parts = dict(zip(("train", "test"), panel_texts.split(whole)))
    paths = {part: folder / f"{text.stem}.{part}.txt" for part in parts}
    for part, path in paths.items():
        path.write_bytes(parts[part].encode("utf-8"))
    load_corpus([str(paths["train"])])  # the cache is keyed by the file: train then finds it encoded
    return Split(text.stem, len(whole), paths["train"], paths["test"])


def tested(checkpoint: Path, test: Path) -> dict:
    """`charrnn eval --json` of a checkpoint on the test text."""
    return json.loads(charrnn("eval", "-c", str(checkpoint), str(test), "--json").stdout)


def run_cell(split: Split, budget: float, setting: Setting, run: Path) -> dict:
    """Train one cell as a user would, score it on the test text; its results line."""
    started = time.perf_counter()
    trained = charrnn("train", str(split.train), "--time", f"{budget:g}m", "-o", str(run), "--force", *setting.flags)
    wall = time.perf_counter() - started
    best, last = load_checkpoint(run / "best.pt"), load_checkpoint(run / "last.pt")
    on_best = tested(run / "best.pt", split.test)
    on_last = on_best if last.step == best.step else tested(run / "last.pt", split.test)
    model, train = best.model_config, best.train_config
    return {
        "text": split.name,
        "chars": split.chars,
        "budget": budget,
        "setting": setting.name,
        "shape": {
            "model": model.model,
            "layers": model.layers,
            "hidden": model.hidden,
            "embed": model.embed,
            "dropout": model.dropout,
            "seq_len": train.seq_len,
            "batch_size": train.batch_size,
            "items": getattr(train, "items", None),  # lists learned as lists, where this charrnn has them
        },
        "sized": next((line for line in trained.stderr.splitlines() if "sized for" in line), None),
        "steps": last.step,
        "best_step": best.step,
        "wall_seconds": round(wall, 1),
        "val_loss": best.val_loss,
        "test_loss": on_best["loss"],
        "test_chars": on_best["chars"],
        "test_oov": on_best["oov"],
        "test_items": on_best.get("items"),  # eval's item count, when it scores the text per item
        "last_test_loss": on_last["loss"],
        "device": best.device,
    }


def recorded(results: Path) -> list[dict]:
    """The lines of a results file so far (none if it is not there yet)."""
    if not results.exists():
        return []
    return [json.loads(line) for line in results.read_text("utf-8").splitlines() if line.strip()]


def cell_key(record: dict) -> tuple:
    return record["text"], float(record["budget"]), record["setting"]


def run_panel(texts: list[Path], budgets: list[float], settings: list[Setting], results: Path, keep: Path | None):
    """Every cell not yet in `results`, text by text; each cell's line appended as soon as it is made."""
    done = {cell_key(record) for record in recorded(results)}
    with tempfile.TemporaryDirectory(prefix="charrnn-panel-") as scratch:
        os.environ.update(CHARRNN_CACHE_DIR=str(Path(scratch) / "cache"), NO_COLOR="1", PYTHONPATH=str(ROOT))
        for text in texts:
            cells = [(b, s) for b in budgets for s in settings if (text.stem, b, s.name) not in done]
            if not cells:
                continue
            split = prepared(text, Path(scratch))
            for budget, setting in cells:
                print(f"panel: {split.name} {budget:g}m {setting.name}", file=sys.stderr, flush=True)
                run = (keep or Path(scratch)) / f"{split.name}-{budget:g}m-{setting.name.replace(':', '-')}"
                try:
                    record = run_cell(split, budget, setting, run)
                except (CellFailed, CharRNNError) as failure:  # CharRNNError: a run left unreadable
                    print(
                        f"panel: {split.name} {budget:g}m {setting.name} failed; going on. {failure}", file=sys.stderr
                    )
                    continue
                finally:
                    if keep is None:
                        shutil.rmtree(run, ignore_errors=True)
                with results.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")
                print(json.dumps(record), flush=True)


def defaults_violations(cells: dict, text: str, budgets: list[float]) -> list[dict]:
    """The text's budgets whose defaults ended worse than a shorter budget's defaults did."""
    violations, best_so_far = [], None
    for budget in budgets:
        record = cells.get((text, budget, DEFAULTS))
        if record is None:
            continue
        if best_so_far is not None and record["test_loss"] > best_so_far["test_loss"]:
            violations.append(
                {
                    "text": text,
                    "budget": budget,
                    "test_loss": record["test_loss"],
                    "shorter_budget": best_so_far["budget"],
                    "shorter_test_loss": best_so_far["test_loss"],
                }
            )
        if best_so_far is None or record["test_loss"] < best_so_far["test_loss"]:
            best_so_far = record
    return violations


def shape_name(record: dict) -> str:
    shape = record["shape"]
    return f"{shape['model']} {shape['layers']}x{shape['hidden']} d{shape['dropout']:g}"


def table(records: list[dict]) -> tuple[list[str], dict]:
    """The markdown table of a panel's results, and its two checks: the largest regret, the budgets that hurt."""
    cells = {cell_key(record): record for record in records}  # a cell run twice: its last line
    texts = list(dict.fromkeys(record["text"] for record in records))
    budgets = sorted({key[1] for key in cells})
    lines = [
        "| text | chars | budget | defaults | its shape | best of grid | which | regret |",
        "| --- | ---: | ---: | ---: | --- | ---: | --- | ---: |",
    ]
    regrets, violations = [], []
    for text in texts:
        hurt = defaults_violations(cells, text, budgets)
        violations += hurt
        for budget in budgets:
            defaults = cells.get((text, budget, DEFAULTS))
            grid = [r for key, r in cells.items() if key[:2] == (text, budget) and key[2] != DEFAULTS]
            best = min(grid, key=lambda r: r["test_loss"], default=None)
            if defaults is None and best is None:
                continue
            regret = defaults["test_loss"] - best["test_loss"] if defaults and best else None
            if regret is not None:
                regrets.append({"text": text, "budget": budget, "regret": regret, "best": best["setting"]})
            mark = " *" if any(v["budget"] == budget for v in hurt) else ""
            chars = (defaults or best)["chars"]
            lines.append(
                f"| {text} | {chars:,} | {budget:g}m | "
                + (f"{defaults['test_loss']:.4f}{mark} | {shape_name(defaults)}" if defaults else "— | —")
                + (f" | {best['test_loss']:.4f} | {best['setting']}" if best else " | — | —")
                + (f" | {regret:+.4f} |" if regret is not None else " | — |")
            )
    if violations:
        lines.append("\n\\* the defaults ended worse than at a shorter budget of the same text")
    worst = max(regrets, key=lambda r: r["regret"], default=None)
    return lines, {"max_regret": worst, "monotonicity_violations": violations}


def budget_minutes(text: str) -> float:
    minutes = float(text)
    if not minutes > 0:
        raise argparse.ArgumentTypeError(f"a budget is minutes above zero (got {text})")
    return minutes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("texts", nargs="*", type=Path, default=TEXTS, help="text files (default: the five)")
    parser.add_argument("--budgets", nargs="+", type=budget_minutes, default=[1.0, 3.0, 10.0], help="minutes")
    parser.add_argument("--grid", type=grid_settings, default=grid_settings(GRID), help=f"default: {GRID}")
    parser.add_argument("--results", type=Path, required=True, help="JSON lines, appended to; read by --table")
    parser.add_argument("--runs", type=Path, help="keep each cell's run directory here (default: removed)")
    parser.add_argument("--table", action="store_true", help="print the table of --results and stop")
    args = parser.parse_args()
    if args.table:
        lines, checks = table(recorded(args.results))
        print("\n".join(lines) + "\n\n" + json.dumps(checks, indent=1))
        return
    missing = [str(text) for text in args.texts if not text.is_file()]
    if missing:
        parser.error(f"no such text: {', '.join(missing)}; build them with benchmarks/panel_texts.py")
    keep = args.runs.resolve() if args.runs else None
    run_panel(args.texts, args.budgets, [Setting(DEFAULTS, ()), *args.grid], args.results, keep)


if __name__ == "__main__":
    main()
