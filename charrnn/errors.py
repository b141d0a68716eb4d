"""The one error type the library raises, which the CLI turns into a one-line message; and which process of a
torchrun job reports it, read from torchrun's environment without torch (the CLI asks on every error, and
--help or a usage error must not pay for importing torch)."""

import os

INTERRUPTED = 130  # the exit code after Ctrl-C or SIGTERM, as shells report a SIGINT death
USAGE = 2  # the exit code for a usage error (a bad option or value), as click gives for an unknown flag


class CharRNNError(Exception):
    """A problem the user can act on: the message says what is wrong and what to do."""


class SettingError(CharRNNError):
    """A value given for an option is out of range or unreadable: a usage error (exit 2), not a data problem."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM arrived; last.pt was saved first. A KeyboardInterrupt, so that a notebook's
    `except KeyboardInterrupt` catches it as it would the interrupt itself."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.signal_number = signal_number


def escaped(text: str) -> str:
    """Text with what a terminal would act on (escape sequences, newlines, bidi controls) written out as
    \\x1b, \\n, \\u202e: strings from a file anyone may have written are shown, never obeyed."""
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)


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
