"""Write docs/reference.md, the command reference, from the app's own --help: `python scripts/reference.py`.

tests/test_docs.py fails when the checked-in page differs from what this writes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import typer

from charrnn.cli import app

PAGE = Path(__file__).resolve().parent.parent / "docs" / "reference.md"
WIDTH = 80  # a terminal's default width, and click's widest help
HEADER = """# Command reference

Every command's `--help`, as the installed `charrnn` prints it. This page is generated from the app:
after changing a command, run `python scripts/reference.py` (tests/test_docs.py checks it is current).
"""


def context(command, name: str, parent=None):
    """The context `--help` formats in, at a fixed width (typer's own click, which it vendors)."""
    return command.context_class(command, parent=parent, info_name=name, terminal_width=WIDTH,
                                 max_content_width=WIDTH)


def helps(command, where) -> Iterator[tuple[str, str]]:
    """(command path, help text) for `command` and every command below it, in the order `--help` lists them."""
    yield where.command_path, command.get_help(where)
    for name in command.list_commands(where) if hasattr(command, "list_commands") else []:
        sub = command.get_command(where, name)
        if sub is not None and not sub.hidden:
            yield from helps(sub, context(sub, name, where))


def page() -> str:
    """The reference page's Markdown: one section per command, its help as a text block."""
    root = typer.main.get_command(app)
    sections = [f"## `{path}`\n\n```text\n{text.rstrip()}\n```\n"
                for path, text in helps(root, context(root, "charrnn"))]
    return "\n".join([HEADER, *sections])


if __name__ == "__main__":
    PAGE.write_text(page(), encoding="utf-8")
    print(f"wrote {PAGE}", file=sys.stderr)
