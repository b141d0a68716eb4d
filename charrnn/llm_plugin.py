"""charrnn's runs as models of simonw/llm: `llm -m charrnn/NAME "ROMEO:"` streams a sample, and llm logs it.

Installed with `pip install 'charrnn-lm[llm]'`, found by llm through the `llm` entry point. The runs
are the folders under ./runs holding a checkpoint, as for `charrnn sample` ($CHARRNN_RUNS names
another folder), each the model `charrnn/<folder name>`. llm asks every plugin for its models on
every command, so listing them reads only folder names; torch is imported when a model generates.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import llm
from pydantic import Field

from charrnn.errors import CharRNNError
from charrnn.rundir import RUNS_DIR, run_directories

RUNS_ENV = "CHARRNN_RUNS"
# What charrnn's messages call `charrnn sample`'s flags, as an llm user sets the same thing.
LLM_WORDS = {
    "--temp": "-o temperature",
    "--top-k": "-o top_k",
    "--top-p": "-o top_p",
    "--length": "-o length",
    "--seed": "-o seed",
    "--prime (or stdin)": "the prompt or system prompt",
    "the prime": "the prompt",
}
FLAGS = re.compile("|".join(re.escape(words) for words in sorted(LLM_WORDS, key=len, reverse=True)) + r"(?![\w-])")


@llm.hookimpl
def register_models(register) -> None:
    for run in run_directories(runs_dir()):
        register(CharRNNRun(run))


def runs_dir() -> Path:
    return Path(os.environ.get(RUNS_ENV) or RUNS_DIR)


class CharRNNRun(llm.Model):
    """One run directory; the prompt is the prime, the response what the model writes after it."""

    can_stream = True

    class Options(llm.Options):
        # None leaves charrnn's own default, as `charrnn sample` without the flag.
        temperature: Optional[float] = Field(None, description="0 picks the likeliest character (greedy); default 1")
        length: Optional[int] = Field(None, description="Characters to write; default 1000")
        top_k: Optional[int] = Field(None, description="Sample only from the k likeliest characters")
        top_p: Optional[float] = Field(None, description="Sample only from the smallest set reaching probability p")
        seed: Optional[int] = Field(None, description="The same seed gives the same text, as `charrnn sample --seed`")

    def __init__(self, run: Path):
        self.run = run
        self.model_id = f"charrnn/{run.name}"

    def execute(self, prompt, stream, response, conversation) -> Iterator[str]:
        from charrnn import api  # imported here, not at the top: see the module's docstring

        settings = {name: value for name, value in dict(prompt.options).items() if value is not None}
        try:
            model = api.load(self.run)
            # The thread and precision policy of `charrnn sample`, which the API holds.
            yield from model.stream(
                transcript(prompt, conversation, "\n" if "\n" in model.vocab.chars else " "), **settings
            )
        except CharRNNError as error:  # llm shows a ModelError as one line, in its own words
            raise llm.ModelError(in_llm_words(str(error))) from None


def in_llm_words(message: str) -> str:
    """A charrnn message with `charrnn sample`'s flags named as llm sets them: `-o temperature`, not `--temp`."""
    return FLAGS.sub(lambda found: LLM_WORDS[found.group(0)], message)


def transcript(prompt, conversation, turn_break: str = "\n") -> str:
    """The prime: a character model continues text, so the conversation's earlier turns come first. Each
    system prompt (-s) and prompt starts a line of its own (`turn_break` ends the line before, where needed),
    so that the user's words are not glued onto the model's; a reply continues its prompt."""
    turns = [(earlier.prompt, earlier.text()) for earlier in (conversation.responses if conversation else [])]
    text = ""
    for asked, reply in [*turns, (prompt, "")]:
        for piece in (asked.system, asked.prompt):
            text = joined(text, piece or "", turn_break)
        text += reply
    return text


def joined(before: str, after: str, turn_break: str) -> str:
    """`before` then `after`, on separate lines unless one of them already breaks there."""
    if not before or not after or before.endswith(turn_break) or after.startswith(turn_break):
        return before + after
    return before + turn_break + after
