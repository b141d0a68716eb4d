"""`charrnn runs`: one summary per run, a broken run listed with its problem."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from charrnn import cli
from charrnn.errors import CharRNNError
from charrnn.runs import list_runs


@pytest.fixture
def runs_dir(tiny_run, tmp_path):
    shutil.copytree(tiny_run, tmp_path / "runs" / "tiny")
    (tmp_path / "runs" / "broken").mkdir()
    (tmp_path / "runs" / "broken" / "best.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "runs" / "notes").mkdir()  # no checkpoint: not a run
    return tmp_path / "runs"


def test_each_run_is_summarized_and_a_broken_one_says_why(runs_dir):
    broken, tiny = list_runs(runs_dir)
    rows = [json.loads(line) for line in (runs_dir / "tiny" / "metrics.jsonl").read_text().splitlines()]
    assert (tiny.model, tiny.layers, tiny.hidden, tiny.corpus) == ("lstm", 1, 32, "corpus")
    assert tiny.steps == 150 and tiny.elapsed_s == rows[-1]["elapsed"] and tiny.parameters > 0
    assert tiny.best_val_bpc == pytest.approx(min(row["val_loss"] for row in rows) / math.log(2))
    assert broken.name == "broken" and "not a readable checkpoint" in broken.problem and broken.steps is None
    assert [run.name for run in list_runs(runs_dir, sort="bpc")] == ["tiny", "broken"]  # the unmeasured last
    with pytest.raises(CharRNNError, match="no such directory"):
        list_runs(runs_dir / "missing")


def test_cli_prints_a_table_and_json(runs_dir, capsys):
    cli.runs(directory=runs_dir, as_json=False, sort="name")
    header, broken, tiny = capsys.readouterr().out.splitlines()
    assert header.split() == ["name", "model", "params", "corpus", "steps", "time", "best", "bpc", "written"]
    assert broken.startswith("broken  unreadable: ") and tiny.split()[:5] == ["tiny", "lstm", "1x32", "8.1K", "corpus"]
    cli.runs(directory=runs_dir, as_json=True, sort="name")
    assert [json.loads(line)["name"] for line in capsys.readouterr().out.splitlines()] == ["broken", "tiny"]


def test_the_table_aligns_its_columns_and_an_unreadable_run_says_why():
    from charrnn.runs import RunSummary, readable, table

    good = RunSummary("a", "runs/a", None, "lstm", 1, 32, 12_345, "corpus", 150, 61.0, 2.5)
    header, row, broken = table([good, RunSummary("long-name", "runs/long-name", None, problem="not\na checkpoint")])
    assert header.index("model") == row.index("lstm 1x32") == len("name  ")  # an unreadable row sets no width
    assert row.split() == ["a", "lstm", "1x32", "12.3K", "corpus", "150", "1m01s", "2.500", "-"]
    assert broken == "long-name  unreadable: not\\na checkpoint"
    assert [readable(*item) for item in (("elapsed_s", 181), ("val_loss", 1.5), ("steps", 12000), ("x", None))] == [
        "3m01s", "1.5", "12,000", "-"]
