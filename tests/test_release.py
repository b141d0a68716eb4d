"""The package as a stranger installs it: its name on the index, its version, what the messages tell them to type."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import charrnn

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the suite's Python has it
ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))


def test_the_messages_install_the_distribution_pyproject_names():
    assert PROJECT["project"]["name"] == charrnn.DISTRIBUTION == "charrnn-lm"
    assert charrnn.install_command() == "pip install charrnn-lm"
    assert charrnn.install_command("onnx") == "pip install 'charrnn-lm[onnx]'"
    assert set(PROJECT["project"]["optional-dependencies"]) >= {"onnx", "llm", "plot"}


def test_no_source_tells_a_user_to_install_the_unrelated_charrnn():
    # `charrnn` on the package index is another author's 2017 project: `pip install charrnn` installs that.
    wrong = re.compile(r"pip install\s+['\"]?charrnn(?![-\w])")
    found = [f"{path.name}: {line.strip()}" for path in sorted((ROOT / "charrnn").glob("*.*"))
             for line in path.read_text("utf-8", "replace").splitlines() if wrong.search(line)]
    assert found == []


def test_the_version_has_one_source():
    assert "version" not in PROJECT["project"] and "version" in PROJECT["project"]["dynamic"]
    assert PROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "charrnn.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", charrnn.__version__)


def test_the_package_data_ships():
    shipped = PROJECT["tool"]["setuptools"]["package-data"]["charrnn"]
    assert {"catalogue.json", "export_page.html", "py.typed"} <= set(shipped)
    assert all((ROOT / "charrnn" / name).is_file() for name in shipped)
