"""Which process of a torchrun job this is, read from torchrun's environment without torch: the CLI asks it
on every error, and --help or a usage error must not pay for importing torch."""

from __future__ import annotations

import os

from charrnn.errors import CharRNNError


class EchoedError(CharRNNError):
    """An error every rank stops with but rank 0 alone reports (one line for the job, not one per process)."""


def launched_world_size() -> int:
    """How many processes torchrun started (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """True in the process that writes files and prints progress: rank 0, or the only process."""
    return int(os.environ.get("RANK", "0")) == 0


def reports(error: BaseException) -> bool:
    """Whether this process should print `error`: the other ranks leave rank 0's errors to rank 0."""
    return is_main() or not isinstance(error, EchoedError)
