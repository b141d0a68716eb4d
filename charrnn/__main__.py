"""The `charrnn` command and `python -m charrnn`: stop signals first, then the CLI (its commands import torch, which takes seconds)."""

import signal
import sys

from charrnn.errors import INTERRUPTED


def stop(number, frame):
    raise KeyboardInterrupt


def main() -> None:
    # Until training installs its own handlers (which save first), Ctrl-C or SIGTERM at any moment
    # means: stop now, with one line and exit 130. Without this, SIGTERM kills silently and a
    # Ctrl-C during the imports prints a traceback.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        from charrnn.cli import main as run
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("charrnn: interrupted before anything started; nothing was saved", file=sys.stderr)
        sys.exit(INTERRUPTED)
    run()


if __name__ == "__main__":
    main()
