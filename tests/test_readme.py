"""README.md works as written: every shell block, in order, in one empty folder, then every Python block there.

A block just after `<!-- network -->` (it downloads) or `<!-- install -->` (it installs) is skipped. Budgets
are made short by one rule: each `charrnn train` loses its `--time T` and gets SHORT's settings (a few steps, two
evaluations of a small validation split, TINY_MODEL's network); in Python, `time="T"` becomes the same as keywords.
Everything else runs as a user types it, the `charrnn` on PATH forked from one interpreter that imported it once
(tests/forking.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import TINY_OPTIONS, charrnn_command, flags
from forking import forking_charrnn

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"(?:^<!--\s*(?P<mark>[\w-]+)\s*-->\n)?^```(?P<language>\w*)\n(?P<code>.*?)^```", re.S | re.M)
SHELLS = {"sh", "bash", "console"}
SKIPPED = {"network", "install"}
SHORT = {**TINY_OPTIONS, "steps": 20, "val_fraction": 0.01}  # two evaluations (test_docs prints both), each quick
SHORT_FLAGS = " ".join(flags(SHORT))
SHORT_KEYWORDS = ", ".join(f"{name}={value!r}" for name, value in SHORT.items())


def blocks(language_set: set[str]) -> list[str]:
    """The code of README's fenced blocks in these languages, in order, less the marked ones."""
    found = BLOCK.finditer(README.read_text(encoding="utf-8"))
    return [block["code"] for block in found if block["language"] in language_set and block["mark"] not in SKIPPED]


def shell_commands(code: str) -> str:
    """A block as bash runs it: a console block's `$ ` lines alone; the budget rule applied."""
    if any(line.startswith("$ ") for line in code.splitlines()):
        code = "".join(line[2:] + "\n" for line in code.splitlines() if line.startswith("$ "))
    code = re.sub(r"[ \t]--time[ =]\S+", "", code)
    return re.sub(r"\bcharrnn train\b", f"charrnn train {SHORT_FLAGS}", code)


def python_code(code: str) -> str:
    return re.sub(r"""\btime=["'][^"']*["']""", SHORT_KEYWORDS, code)


def test_the_budget_rule_shortens_training_and_nothing_else():
    assert shell_commands("charrnn train a.txt --time 10m -o runs/a  # note\ncharrnn sample --length 300\n") == (
        f"charrnn train {SHORT_FLAGS} a.txt -o runs/a  # note\ncharrnn sample --length 300\n")
    assert shell_commands("$ charrnn train\nlstm 1x384 ...\n") == f"charrnn train {SHORT_FLAGS}\n"
    assert python_code('charrnn.train("a.txt", time="5m", quiet=False)') == (
        f'charrnn.train("a.txt", {SHORT_KEYWORDS}, quiet=False)')


def test_readme_runs_as_written_in_an_empty_folder(cli, tmp_path):
    tour = tmp_path / "tour"
    tour.mkdir()
    env = dict(cli.env)
    for name in ("CHARRNN_CATALOGUE", "CHARRNN_RUNS"):
        env.pop(name, None)

    def run(command: list[str], code: str) -> str:
        done = subprocess.run([*command, code], stdin=subprocess.DEVNULL, cwd=tour, env=env, text=True,
                              capture_output=True, timeout=300)
        assert done.returncode == 0, f"README block failed ({done.returncode}):\n{code}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    shell = blocks(SHELLS)
    assert len(shell) >= 2 and any("charrnn train" in code for code in shell)
    with forking_charrnn(tmp_path / "bin", env) as commands:
        env["PATH"] = f"{commands}:{Path(charrnn_command()[0]).parent}:{env.get('PATH', '')}"
        for code in shell:
            run(["bash", "-e", "-o", "pipefail", "-c"], shell_commands(code))
    python = blocks({"python"})
    assert python
    for code in python:
        printed = run([sys.executable, "-c"], python_code(code))
        # A streamed text ends with a newline before the next print begins its own line.
        assert re.search(r"^\{'loss'", printed, re.M), printed


def test_readme_is_a_short_page_that_names_the_test_command():
    text = README.read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= 10_000
    assert "python -m pytest -q" in text  # CI runs exactly the command README gives
    pyproject = (README.parent / "pyproject.toml").read_text(encoding="utf-8")
    oldest = re.search(r'^requires-python = ">=([\d.]+)"', pyproject, re.M).group(1)
    assert f"Python {oldest} or later" in " ".join(text.split())


def test_readme_links_point_at_files_of_the_repository():
    text = README.read_text(encoding="utf-8")
    targets = [target for target in re.findall(r"\]\(([^)#]+)\)", text) if "://" not in target]
    assert targets
    assert [target for target in targets if not (README.parent / target).exists()] == []


def test_the_code_map_names_modules_that_exist():
    code_map = README.read_text(encoding="utf-8").split("\n## The code\n", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"`(?:charrnn/)?([\w.]+\.(?:py|json))`", code_map)
    assert len(named) > 10
    assert [name for name in named if not (README.parent / "charrnn" / name).exists()] == []
