"""export --format html: one self-contained page whose JavaScript writes what charrnn writes, in a real browser."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import headless_chromium
from charrnn import checkpoint
from charrnn.config import ModelConfig, SamplingSettings, TrainConfig
from charrnn.export import render_html, script_safe, write_html
from charrnn.model import CharRNN, model_from_checkpoint
from charrnn.schema import Checkpoint
from charrnn.sample import generate
from charrnn.viz import trace_text
from charrnn.vocab import Vocab
from conftest import ENGLISH

PRIME = "First Citizen:"


def test_page_loads_nothing_from_elsewhere(tiny_run):
    page = render_html(checkpoint.load_checkpoint(checkpoint.resolve_checkpoint(str(tiny_run))))
    assert "default-src 'none'" in page  # the browser itself refuses any request the page would make
    assert not any(marker in page for marker in ("http://", "https://", " src=", "<link"))


def test_model_json_cannot_close_its_script_element():
    value = {"vocab": "</script><!-- \u2028 é"}
    text = script_safe(value)
    assert "<" not in text and text.isascii()
    assert json.loads(text) == value


@pytest.fixture(scope="module")
def browser():
    why = headless_chromium.missing()
    if why:
        pytest.skip(why)
    with headless_chromium.Page() as page:
        yield page


def test_greedy_text_equals_charrnn_sample_and_nothing_is_requested(browser, tiny_run, cli):
    path = cli.cwd / "model.html"
    write_html(checkpoint.load_checkpoint(checkpoint.resolve_checkpoint(str(tiny_run))), path)
    # fp32: charrnn's default on x86 stores the weights in fp16, the page keeps them exact.
    expected = cli("sample", "-c", tiny_run, "--temp", "0", "--prime", PRIME, "--length", "300",
                   "--precision", "fp32").stdout
    browser.open(path)
    shown = browser.generate(PRIME, 0, 300)
    assert shown["state"] == "done"
    assert shown["text"] == expected.removesuffix("\n")
    assert browser.requests() == [browser.url]
    assert browser.console_errors() == []


def random_payload(folder, kind: str, layers: int) -> dict:
    """An untrained model of this shape, written and read back as a checkpoint."""
    vocab = "".join(sorted(set(ENGLISH)))
    config = ModelConfig(vocab_size=len(vocab), model=kind, layers=layers, hidden=24, embed=8)
    with torch.random.fork_rng():  # the same weights every time, and the other tests' random numbers untouched
        torch.manual_seed(5)
        weights = CharRNN(config).state_dict()
    path = folder / f"{kind}.pt"
    checkpoint.save_checkpoint(Checkpoint(config, TrainConfig(), vocab, weights), path)
    return checkpoint.load_checkpoint(path)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_every_cell_and_a_stack_of_layers_step_as_torch(browser, tmp_path, kind):
    payload = random_payload(tmp_path, kind, layers=2)
    write_html(payload, tmp_path / "model.html")
    browser.open(tmp_path / "model.html")
    model, vocab = model_from_checkpoint(payload), Vocab(payload.vocab)
    greedy = "".join(char for (char,) in generate(model, vocab, prime="All:",
                                                     settings=SamplingSettings(length=100, temperature=0, precision="fp32")))
    assert browser.generate("All:", 0, 100)["text"] == "All:" + greedy
    text = ENGLISH[:120]
    bpc = float(np.mean(trace_text(payload, text).surprise))
    assert math.isclose(float(browser.surprise(text)["bpc"]), bpc, rel_tol=1e-5)


def test_a_prime_the_model_cannot_read_is_refused_on_the_page(browser, tmp_path):
    write_html(random_payload(tmp_path, "rnn", layers=1), tmp_path / "model.html")
    browser.open(tmp_path / "model.html")
    assert browser.generate("All: \u20ac", 0, 10) == {"state": "error", "length": 0, "text": ""}
    assert "never saw" in browser.driver.find_element("id", "error").text


def test_text_streams_while_it_is_written_and_stop_ends_it(browser, tmp_path):
    write_html(random_payload(tmp_path, "rnn", layers=1), tmp_path / "model.html")
    browser.open(tmp_path / "model.html")
    browser.press("generate", {"prime": "All:", "temperature": "1", "length": str(10**9)})
    browser.wait("output", lambda shown: shown["state"] == "running" and shown["length"] > 100)
    # Clicked by script: a WebDriver click first waits for the page to lay out all the text so far,
    # which takes seconds at this tiny model's hundreds of thousands of characters a second.
    browser.driver.execute_script("document.getElementById('stop').click()")
    assert browser.wait("output", lambda shown: shown["state"] != "running")["state"] == "stopped"
