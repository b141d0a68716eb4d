"""charrnn's runs as models of simonw/llm: `llm -m charrnn/NAME "ROMEO:"` streams a sample, and llm logs it.

Installed with `pip install 'charrnn-lm[llm]'`, found by llm through the `llm` entry point. The runs
are the folders under ./runs holding a checkpoint, as for `charrnn sample` ($CHARRNN_RUNS names
another folder), each the model `charrnn/<folder name>`. llm asks every plugin for its models on
every command, so listing them reads only folder names; torch is imported when a model generates.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Optional

import llm
from pydantic import Field

from charrnn.layout import RUNS_DIR, run_directories

RUNS_ENV = "CHARRNN_RUNS"


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
        # The thread and precision policy of `charrnn sample`, which the API holds.
        yield from api.load(self.run).stream(transcript(prompt, conversation), **settings)


def transcript(prompt, conversation) -> str:
    """The prime: a character model continues text, so a conversation's earlier turns come first."""
    turns = [piece for earlier in (conversation.responses if conversation else [])
             for piece in (earlier.prompt.prompt or "", earlier.text())]
    return "".join(turns) + (prompt.prompt or "")
