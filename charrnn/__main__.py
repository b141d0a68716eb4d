"""The `charrnn` command and `python -m charrnn`: stop signals first, then the CLI (its commands import torch, which
takes seconds); however it ends, one line on stderr and the documented exit code."""

import os
import signal
import sys
from typing import TYPE_CHECKING

from charrnn.errors import INTERRUPTED, USAGE, CharRNNError, SettingError, escaped, reports

if TYPE_CHECKING:  # a local annotation's names only: which of the two exists depends on typer's version
    from click import ClickException
    from typer import TyperException


def stop(number, frame):
    raise KeyboardInterrupt


def main() -> None:
    # Until training installs its own handlers (which save first), Ctrl-C or SIGTERM at any moment
    # means: stop now, with one line and exit 130. Without this, SIGTERM kills silently and a
    # Ctrl-C during the imports prints a traceback.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        from charrnn.cli import app
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("charrnn: interrupted before anything started; nothing was saved", file=sys.stderr)
        sys.exit(INTERRUPTED)
    run(app)


def show_usage_problem(error) -> None:
    """click's usage errors as one line, like ours: the problem, then where the help is."""
    if type(error).__name__ == "NoArgsIsHelpError":  # its message is the help itself
        error.show()
        return
    context = getattr(error, "ctx", None)
    command = context.command_path if context is not None else "charrnn"
    message = " ".join(error.format_message().split()).rstrip(".")
    message = message[:1].lower() + message[1:]
    print(f"{command}: error: {message}; see `{command} --help`", file=sys.stderr)


def interrupted() -> int:
    """Say so in one line, even if the key is pressed again, and give the exit code for it."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)
    print("charrnn: interrupted", file=sys.stderr)
    return INTERRUPTED


def run(app) -> None:
    """The typer `app` (charrnn.cli's) on sys.argv: its errors as one line on stderr, and the documented exit codes."""
    import typer

    UsageProblem: type[TyperException] | type[ClickException]
    try:  # recent typer vendors click: its usage errors derive from TyperException
        from typer import TyperException as UsageProblem
    except ImportError:  # older typer depends on click itself
        from click import ClickException as UsageProblem
    try:
        code = app(standalone_mode=False)
        if code == INTERRUPTED:  # typer turns a Ctrl-C inside a command into this code, without a word
            code = interrupted()
    except CharRNNError as error:
        if reports(error):  # under torchrun, rank 0 alone reports what every rank stops with
            print(f"charrnn: error: {escaped(str(error))}", file=sys.stderr)  # one line, whatever a file put in it
        code = USAGE if isinstance(error, SettingError) else 1
    except UsageProblem as error:
        show_usage_problem(error)
        code = error.exit_code
    except (KeyboardInterrupt, typer.Abort):
        code = interrupted()
    except OSError as error:  # the machine rather than the input (disk full, permissions): still one line
        where = f"{error.filename}: " if error.filename else ""
        print(f"charrnn: error: {where}{error.strerror or error}", file=sys.stderr)
        code = 1
    except Exception as error:  # a bug: one line for the user; CHARRNN_TRACEBACK=1 shows where, for a report
        if os.environ.get("CHARRNN_TRACEBACK"):
            raise
        print(
            f"charrnn: internal error: {type(error).__name__}: {error}; rerun with CHARRNN_TRACEBACK=1 and report it",
            file=sys.stderr,
        )
        code = 1
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
