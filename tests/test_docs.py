"""The docs: `--help` summaries whole, docs/reference.md as the app writes it, a strict build, the Python page run."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from charrnn.cli import app
from conftest import ENGLISH
from test_readme import python_code

ROOT = Path(__file__).resolve().parent.parent


def load_reference_script():
    spec = importlib.util.spec_from_file_location("reference", ROOT / "scripts" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_command_reference_is_what_the_app_generates():
    reference = load_reference_script()
    assert reference.PAGE.read_text(encoding="utf-8") == reference.page(), (
        "docs/reference.md differs from the app's --help; regenerate it: python scripts/reference.py")


def test_the_docs_build_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs comes with the dev extra")
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                           cwd=ROOT, env=dict(os.environ, NO_MKDOCS_2_WARNING="1"), capture_output=True, text=True,
                           timeout=120)
    assert built.returncode == 0, built.stdout + built.stderr


def short_helps(group) -> dict[str, str]:
    """Each subcommand's summary as the app defines it, uncut: the first sentence of its help."""
    context = group.context_class(group, info_name="charrnn")
    return {name: group.get_command(context, name).get_short_help_str(limit=10_000)
            for name in group.list_commands(context)}


def listed(help_text: str) -> dict[str, str]:
    """The `Commands:` section of a --help page: name -> the summary shown beside it."""
    section = help_text.split("\nCommands:\n", 1)[1]
    return dict(re.findall(r"^  (\S+) +(.+)$", section, re.M))


@pytest.mark.parametrize("columns", ["80", "120"])
@pytest.mark.parametrize("group", [[], ["corpus"]], ids=["charrnn", "corpus"])
def test_help_shows_every_command_summary_whole(cli, columns, group):
    cli.env["COLUMNS"] = columns
    shown = listed(cli(*group, "--help").stdout)
    root = typer.main.get_command(app)
    command = root.get_command(root.context_class(root, info_name="charrnn"), group[0]) if group else root
    expected = short_helps(command)
    assert shown == expected
    assert not any(summary.endswith("...") for summary in shown.values())


def test_the_python_page_runs_as_written(tiny_run, tmp_path, monkeypatch, capsys):
    page = (ROOT / "docs" / "python.md").read_text(encoding="utf-8")
    code = re.search(r"^```python\n(.*?)^```", page, re.S | re.M).group(1)
    (tmp_path / "runs").mkdir()
    shutil.copytree(tiny_run, tmp_path / "runs" / "tinyshakespeare")  # the page's placeholders, made
    (tmp_path / "input.txt").write_text(ENGLISH * 20, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    exec(compile(python_code(code), "docs/python.md", "exec"), {})  # README's budget rule, in this process
    printed = capsys.readouterr().out
    assert printed.startswith("First Citizen:") and "\n10 " in printed and "\n20 " in printed
    assert re.search(r"^\{'loss'", printed, re.M)  # the streamed text ends its line
