"""The model card (export --format hf's README.md): names it did not choose stay text, and its metadata."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from charrnn import checkpoint, hf
from charrnn.export import code_span, model_card
from charrnn.export import export
from charrnn.schema import Checkpoint

markdown = pytest.importorskip("markdown")  # Python-Markdown, which mkdocs brings: it passes raw HTML through

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def payload(tiny_run) -> Checkpoint:
    return checkpoint.load_checkpoint(tiny_run / checkpoint.BEST)


def rendered(card: str) -> str:
    """The card's body as HTML, as a renderer that allows HTML shows it."""
    body = card.split("\n---\n", 1)[1]
    return markdown.markdown(body, extensions=["fenced_code"])


def header(card: str) -> dict:
    """The YAML header's fields (charrnn writes each value as JSON, which YAML reads alike)."""
    lines = card.split("\n---\n", 1)[0].removeprefix("---\n").splitlines()
    return {key: json.loads(value) for key, value in (line.split(": ", 1) for line in lines)}


@pytest.mark.parametrize("field", ["folder", "corpus"])
def test_html_in_a_name_stays_text(payload, field):
    named = replace(payload, corpus=HOSTILE) if field == "corpus" else payload
    card = model_card(named, HOSTILE if field == "folder" else "tiny")
    html = rendered(card)
    assert "<img" not in html and "onerror=alert(1)&gt;" in html


@pytest.mark.parametrize("name", ["a`b", "tick``s", "`start", "*bold* [link](x)"])
def test_backticks_and_markdown_in_a_folder_name_keep_the_commands_whole(payload, name):
    html = rendered(model_card(payload, name))
    quoted = "'" + name + "'"  # as shlex quotes it, inside the code span and the block alike
    assert f"<code>charrnn sample -c {quoted} --temp 0.8 --seed 1337" in html
    assert f"charrnn eval -c {quoted} held-out.txt" in html
    assert "<em>" not in html and "<a " not in html


def test_a_code_span_holds_any_run_of_backticks():
    for text in ["plain", "a`b", "``", "x ``` y"]:
        assert markdown.markdown(code_span(text)) == f"<p><code>{text.replace('&', '&amp;')}</code></p>"


def test_a_named_corpus_gives_its_license_dataset_and_language(payload, tmp_path):
    # charrnn train tinyshakespeare records the name, resolved in the folder it ran in, where no such file is
    trained = replace(payload, corpus="tinyshakespeare", corpus_args=[str(tmp_path / "tinyshakespeare")])
    card = model_card(trained, "shakespeare")
    assert header(card)["license"] == "other" and header(card)["datasets"] == ["karpathy/tiny_shakespeare"]
    assert header(card)["language"] == ["en"] and "Its license: public domain" in card
    wikipedia = replace(payload, corpus="enwik8", corpus_args=[str(tmp_path / "enwik8")])
    assert header(model_card(wikipedia, "wiki"))["license"] == "cc-by-sa-3.0"


def test_the_users_own_text_asks_its_owner_for_a_license(payload, tmp_path):
    (tmp_path / "tinyshakespeare").write_text("a file that shares a catalogue name is the user's own")
    for own in [payload, replace(payload, corpus="tinyshakespeare", corpus_args=[str(tmp_path / "tinyshakespeare")])]:
        card = model_card(own, "mine")
        assert header(card)["license"] == "other" and "datasets" not in header(card) and "language" not in header(card)
        assert "Its license is not stated" in card and "--license SPDX-ID" in card
    stated = model_card(payload, "mine", "mit")
    assert header(stated)["license"] == "mit" and "not stated" not in stated


def test_the_card_says_what_its_checksum_covers(payload):
    assert "SHA-256 of the weights themselves" in model_card(payload, "tiny")


def test_export_license_reaches_the_card(tiny_run, tmp_path):
    export(str(tiny_run), "hf", tmp_path / "out", "Apache-2.0")
    assert header((tmp_path / "out" / hf.CARD).read_text("utf-8"))["license"] == "apache-2.0"


# A bad --license is a usage error that writes nothing: test_errors' export_license_* cases.
