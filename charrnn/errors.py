"""The one error type the library raises; the CLI turns it into a one-line message."""


INTERRUPTED = 130  # the exit code after Ctrl-C or SIGTERM, as shells report a SIGINT death


class CharRNNError(Exception):
    """A problem the user can act on: the message says what is wrong and what to do."""


class TrainingInterrupted(Exception):
    """Ctrl-C or SIGTERM arrived; last.pt was saved first."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.signal_number = signal_number


def escaped(text: str) -> str:
    """Text with what a terminal would act on (escape sequences, newlines, bidi controls) written out as
    \\x1b, \\n, \\u202e: strings from a file anyone may have written are shown, never obeyed."""
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)
