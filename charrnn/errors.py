"""The one error type the library raises; the CLI turns it into a one-line message."""


class CharRNNError(Exception):
    """A problem the user can act on: the message says what is wrong and what to do."""
