"""See inside a model: every unit's activation on a text, the model's surprise, units that track a feature.

After Karpathy, Johnson and Fei-Fei (2015), "Visualizing and Understanding Recurrent Networks".
The activations come from the written-out cells (`CellStack.trace`), loaded with the same weights
as the fused model, so no cell math is duplicated here.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from charrnn import writes
from charrnn.config import VIZ_FEATURES
from charrnn.errors import CharRNNError, SettingError
from charrnn.model import CellStack, model_from_checkpoint
from charrnn.streams import refuse_binary, stdin_is_piped, text_input
from charrnn.vocab import Vocab

GATE_KINDS = ("input_gate", "forget_gate", "output_gate", "reset_gate", "update_gate")  # sigmoids: 0..1


@dataclass
class Trace:
    """A text as the model read it: per (layer, kind) an array [chars, units], and -log2 p per character.

    Characters the model never saw are skipped as `eval` and `score` skip them: the model reads the
    others, and the skipped ones' rows are NaN (`known` is False there).
    """

    text: str
    activations: dict[tuple[int, str], np.ndarray]
    surprise: np.ndarray  # bits: how unexpected each character was, given the ones before it
    layers: int = 0
    kinds: list[str] = field(default_factory=list)
    known: Optional[np.ndarray] = None  # per character: did the model read it? None: all of them

    def __post_init__(self):
        if self.known is None:
            self.known = np.ones(len(self.text), dtype=bool)

    @property
    def unseen(self) -> int:
        assert self.known is not None  # filled in by __post_init__
        return int((~self.known).sum())


@torch.inference_mode()
def trace_text(saved, text: str, device: Optional[torch.device] = None) -> Trace:
    """Run the checkpoint's network (`saved`, a schema.Checkpoint) over `text` (from the state after a newline) and
    keep every internal."""
    if not text:
        raise CharRNNError("nothing to look at: the text is empty; pass --text, a FILE, or pipe text in")
    vocab = Vocab(saved.vocab)
    text, known_ids, known = vocab.reading(text)
    if not known.any():
        raise CharRNNError(
            f"the model never saw any character of this text ({vocab.unknown_chars(text)[:20]!r}); "
            "give text like its training corpus"
        )
    model = model_from_checkpoint(saved, impl="cells", device=device)  # same weights, the cells can show their gates
    start = vocab.chars.index("\n") if "\n" in vocab else 0
    ids = torch.from_numpy(np.append(start, known_ids).astype(np.int64)).unsqueeze(0).to(device or "cpu")
    assert isinstance(model.rnn, CellStack)  # impl="cells"
    outputs, _, internals = model.rnn.trace(model.embedding(ids))
    # Position 0 reads the start character; position t+1 has just read the t-th known character.
    activations = {
        (layer, kind): spread(values[0, 1:].float().cpu().numpy(), known)
        for layer, per_kind in enumerate(internals)
        for kind, values in per_kind.items()
    }
    log_probs = torch.log_softmax(model.head(outputs).float(), dim=-1)[0, :-1]
    surprise = -log_probs.gather(-1, ids[0, 1:].unsqueeze(-1)).squeeze(-1) / math.log(2)
    return Trace(
        text,
        activations,
        spread(surprise.cpu().numpy(), known),
        layers=len(internals),
        kinds=list(internals[0]),
        known=known,
    )


def spread(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Rows for the known characters placed at their positions in the text; NaN for the others."""
    full = np.full((len(known), *values.shape[1:]), np.nan, dtype=values.dtype)
    full[known] = values
    return full


def unseen_note(trace: Trace) -> str:
    """What the title says about skipped characters: nothing when there were none."""
    count = trace.unseen
    if not count:
        return ""
    return f"; {count} character{'s' if count > 1 else ''} the model never saw, shown uncoloured"


def read_text(name: str, max_chars: int, encoding: str = "utf-8", errors: str = "strict") -> str:
    """The first `max_chars` characters of a file, FIFO, device or stdin (`-`): the rest is never read,
    so an endless input (`/dev/zero`, a pipe that stays open) is cut, not swallowed."""
    # newline=None: a CRLF file shows as lines, as a text editor would show it
    with text_input(name, encoding, errors, newline=None) as stream:
        text = stream.read(max_chars)
    if errors == "strict":
        refuse_binary(name, text)
    return text


# Features: one number per character of the text, for the units to be compared against.
def line_position(text: str) -> np.ndarray:
    """How many characters since the last newline (the column)."""
    values, column = np.empty(len(text)), 0
    for index, char in enumerate(text):
        values[index] = column
        column = 0 if char == "\n" else column + 1
    return values


def word_position(text: str) -> np.ndarray:
    """How many letters of the current word have been read."""
    values, count = np.empty(len(text)), 0
    for index, char in enumerate(text):
        count = count + 1 if char.isalpha() else 0
        values[index] = count
    return values


def inside_quotes(text: str) -> np.ndarray:
    """1 from an opening double quote to its closing one (straight quotes toggle; curly ones open and close)."""
    values, inside = np.empty(len(text)), False
    for index, char in enumerate(text):
        if char == '"':
            inside = not inside
        elif char in "\u201c\u00ab":
            inside = True
        elif char in "\u201d\u00bb":
            inside = False
        values[index] = inside
    return values


def bracket_depth(text: str) -> np.ndarray:
    """How deeply nested in (), [] and {} the text is at each character."""
    values, depth = np.empty(len(text)), 0
    for index, char in enumerate(text):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth = max(0, depth - 1)
        values[index] = depth
    return values


def char_class(predicate: Callable[[str], bool]) -> Callable[[str], np.ndarray]:
    return lambda text: np.fromiter((predicate(c) for c in text), dtype=float, count=len(text))


FEATURES: dict[str, Callable[[str], np.ndarray]] = {
    "line-position": line_position,
    "quotes": inside_quotes,
    "brackets": bracket_depth,
    "word-position": word_position,
    "space": char_class(str.isspace),
    "uppercase": char_class(str.isupper),
    "vowel": char_class(lambda c: c in "aeiouAEIOU"),
    "punctuation": char_class(lambda c: not c.isalnum() and not c.isspace()),
}
assert tuple(FEATURES) == VIZ_FEATURES, "charrnn.config.VIZ_FEATURES lists the CLI's choices"


@dataclass
class Unit:
    layer: int  # 0-based, as in the checkpoint's parameter names (weight_hh_l0 ...)
    kind: str  # hidden, cell, input_gate, ...
    index: int
    correlation: float = float("nan")

    def describe(self) -> str:
        return f"layer {self.layer} {self.kind} unit {self.index}"

    def as_dict(self) -> dict:
        correlation = None if math.isnan(self.correlation) else self.correlation  # JSON has no NaN
        return {"layer": self.layer, "kind": self.kind, "unit": self.index, "correlation": correlation}


def feature_values(name: str, text: str) -> np.ndarray:
    if name not in FEATURES:
        raise CharRNNError(f"unknown feature {name!r}; choose one of {', '.join(FEATURES)}")
    values = FEATURES[name](text)
    if np.ptp(values) == 0:
        raise CharRNNError(
            f"the feature {name!r} is constant on this text (e.g. no quotes in it); give a text where it varies"
        )
    return values


def correlations(activations: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """Pearson's r between the feature and each unit (column); a unit that never moves gets 0."""
    a = activations - activations.mean(axis=0)
    f = feature - feature.mean()
    denominator = np.sqrt((a * a).sum(axis=0) * (f * f).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * f[:, None]).sum(axis=0) / denominator
    return np.nan_to_num(r)


def rank_units(trace: Trace, feature: np.ndarray, top: int = 5) -> list[Unit]:
    """The units, over every layer and kind, whose activation tracks the feature best (largest |r|)."""
    if top < 1:
        raise SettingError(f"--top must be at least 1 (got {top})")
    found, known = [], trace.known
    for (layer, kind), values in trace.activations.items():
        r = correlations(values[known].astype(np.float64), feature[known])
        for index in np.argsort(-np.abs(r))[:top]:
            found.append(Unit(layer, kind, int(index), float(r[index])))
    found.sort(key=lambda unit: -abs(unit.correlation))
    return found[:top]


def pick_unit(trace: Trace, layer: Optional[int], kind: Optional[str], index: Optional[int]) -> Unit:
    """The unit the user named; what was left out defaults to the last layer, its cell (LSTM) or hidden
    state, and the unit that varies most on this text."""
    layer = trace.layers - 1 if layer is None else layer
    if not 0 <= layer < trace.layers:
        raise CharRNNError(f"--layer must be 0..{trace.layers - 1} for this model (got {layer})")
    kind = kind or ("cell" if "cell" in trace.kinds else "hidden")
    if kind not in trace.kinds:
        raise CharRNNError(f"--kind {kind!r} is not part of this model; choose one of {', '.join(trace.kinds)}")
    values = trace.activations[(layer, kind)]
    if index is None:
        index = int(np.argmax(values[trace.known].std(axis=0)))
    if not 0 <= index < values.shape[1]:
        raise CharRNNError(f"--unit must be 0..{values.shape[1] - 1} for this model (got {index})")
    return Unit(layer, kind, index)


def unit_values(trace: Trace, unit: Unit) -> np.ndarray:
    return trace.activations[(unit.layer, unit.kind)][:, unit.index]


def scaled(values: np.ndarray, kind: str) -> np.ndarray:
    """Map to -1..1 for the colors: gates from 0..1, the rest symmetric around 0 by their largest magnitude.
    NaN (a character the model never saw) stays NaN."""
    if kind in GATE_KINDS:
        return np.clip(values * 2 - 1, -1, 1)
    if kind == "surprise":
        return np.clip(values / max(8.0, float(np.nanpercentile(values, 99))), 0, 1)
    peak = float(np.nanmax(np.abs(values))) or 1.0
    return np.clip(values / peak, -1, 1)


def color(level: float) -> tuple[int, int, int]:
    """Blue for negative, white at zero, red for positive (as in Karpathy et al.'s figures)."""
    strength = min(abs(level), 1.0)
    if level >= 0:
        return 255, int(255 * (1 - strength)), int(255 * (1 - strength))
    return int(255 * (1 - strength)), int(255 * (1 - 0.5 * strength)), 255


def terminal_text(text: str, levels: np.ndarray):
    """A rich Text with each character on its color; newlines stay newlines."""
    from rich.text import Text

    rendered = Text()
    for char, level in zip(text, levels):
        if char == "\n":
            rendered.append("\n")
            continue
        shown = char if char != "\t" else " "
        if math.isnan(level):  # a character the model never saw: no value, no color
            rendered.append(shown)
            continue
        red, green, blue = color(float(level))
        ink = "black" if red + green + blue > 380 else "white"
        rendered.append(shown, style=f"{ink} on rgb({red},{green},{blue})")
    return rendered


def html_page(
    text: str,
    levels: np.ndarray,
    values: np.ndarray,
    title: str,
    ranking: Optional[list[Unit]] = None,
    value_label: str = "activation",
) -> str:
    """A self-contained HTML page: the text on its colors, each value in the character's tooltip."""
    spans = []
    for char, level, value in zip(text, levels, values):
        shown = html.escape(char) if char != "\n" else "\u21b5</span><br><span>"
        if math.isnan(level):
            spans.append(f'<span title="never seen by the model">{shown}</span>')
            continue
        red, green, blue = color(float(level))
        spans.append(
            f'<span style="background:rgb({red},{green},{blue})" title="{value_label} {value:.3f}">{shown}</span>'
        )
    rows = ""
    if ranking:
        rows = (
            "<table><tr><th>r</th><th>unit</th></tr>"
            + "".join(f"<tr><td>{u.correlation:+.3f}</td><td>{html.escape(u.describe())}</td></tr>" for u in ranking)
            + "</table>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
.text {{ font-family: monospace; font-size: 14px; line-height: 1.5; white-space: pre-wrap; }}
.text span {{ padding: 1px 0; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }} td, th {{ padding: 2px 10px; text-align: left; }}
.legend span {{ padding: 2px 8px; font-family: monospace; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
{rows}
<p class="legend"><span style="background:rgb(0,127,255)">low</span><span style="background:#fff">0</span><span
style="background:rgb(255,0,0)">high</span> (hover a character for its value)</p>
<div class="text">{"".join(spans)}</div>
</body></html>
"""


def input_text(
    file: Optional[str], text: Optional[str], max_chars: int, encoding: str = "utf-8", errors: str = "strict"
) -> str:
    """What `charrnn viz` looks at: `text`, else the FILE or piped stdin, cut to `max_chars` characters."""
    if max_chars < 1:
        raise SettingError(f"--max-chars must be at least 1 (got {max_chars})")
    if text is None and (file is not None or stdin_is_piped()):
        text = read_text(file or "-", max_chars, encoding, errors)
    if not text:
        raise CharRNNError("nothing to look at: pass --text TEXT, a FILE, or pipe text in")
    return text[:max_chars]


@dataclass
class View:
    """One look at a trace, as `charrnn viz` shows it: each character's value and color level, a title, and the
    unit shown (None for surprise) with the ranking --find made."""

    text: str
    values: np.ndarray
    levels: np.ndarray
    title: str
    label: str
    unit: Optional[Unit] = None
    ranking: Optional[list[Unit]] = None

    def save_html(self, path: Path, force: bool = False) -> None:
        """A self-contained page of this view (see `html_page`), written atomically; a file already at `path`
        is replaced only with `force`."""
        writes.check_targets([Path(path)], force)
        page = html_page(self.text, self.levels, self.values, self.title, self.ranking, self.label)
        writes.write_atomically(path, page.encode("utf-8"))

    def terminal_lines(self, html_out: Optional[Path] = None) -> list:
        """What `charrnn viz` prints on a terminal: the ranking, the title, then the colored text (or, with --html,
        where the page went)."""
        ranking = [f"r {found.correlation:+.3f}  {found.describe()}" for found in self.ranking or []]
        return [
            *ranking,
            self.title,
            terminal_text(self.text, self.levels) if html_out is None else f"wrote {html_out}",
        ]

    def as_dict(self) -> dict:
        """The --json object: the title, the unit, the text, the values per character, the ranking."""
        return {
            "title": self.title,
            "unit": self.unit.as_dict() if self.unit else None,
            "text": self.text,
            "values": [None if math.isnan(v) else round(float(v), 5) for v in self.values],
            "ranking": [u.as_dict() for u in self.ranking] if self.ranking else None,
        }


def look(
    trace: Trace,
    surprise: bool = False,
    find: Optional[str] = None,
    top: int = 5,
    layer: Optional[int] = None,
    kind: Optional[str] = None,
    unit: Optional[int] = None,
) -> View:
    """The view `charrnn viz` draws: the surprise per character, else the best unit --find ranks for a feature,
    else the unit named by layer, kind and index (what is left out: see `pick_unit`)."""
    if surprise:
        values = trace.surprise
        title = f"surprise, -log2 p: mean {values[trace.known].mean():.2f} bits per character"
        return View(trace.text, values, scaled(values, "surprise"), title + unseen_note(trace), "surprise (bits)")
    ranking = rank_units(trace, feature_values(find, trace.text), top) if find is not None else None
    shown = ranking[0] if ranking else pick_unit(trace, layer, kind, unit)
    values = unit_values(trace, shown)
    title = shown.describe() + (f", r = {shown.correlation:+.3f} with {find}" if find else "")
    return View(
        trace.text, values, scaled(values, shown.kind), title + unseen_note(trace), "activation", shown, ranking
    )
