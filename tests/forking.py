"""`charrnn` forked from one interpreter that imported it once, for tests that run many commands.

Each command is still its own process, with its own arguments, working directory, environment, stdin, stdout,
stderr and exit status, and runs the console script's own entry point (charrnn.__main__.main); only the second
or more of CPU that importing torch costs is paid once. What that start-up does is tested through `cli`.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# A child per request waits for a grandchild that runs the command, so that commands may overlap (a pipeline).
SERVER = """
import importlib, json, os, pkgutil, signal, socket, sys
import charrnn
from charrnn.__main__ import main

# Whatever a command imports, where its extra is installed; and torch._dynamo, which torch.optim's first optimizer
# imports: over a second of CPU in every `charrnn train`.
for name in ["torch._dynamo", *("charrnn." + module.name for module in pkgutil.iter_modules(charrnn.__path__))]:
    try:
        importlib.import_module(name)
    except ImportError:
        pass

def run(request, fds):
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    sys.argv = ["charrnn", *request["args"]]
    code = 0
    try:
        main()
    except SystemExit as exit:
        code = 0 if exit.code is None else exit.code if isinstance(exit.code, int) else 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)

listener = socket.socket(socket.AF_UNIX)
listener.bind(sys.argv[1])
listener.listen(16)
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the waiters are reaped as they end
print("ready", flush=True)
while True:
    connection, _ = listener.accept()
    if os.fork() == 0:
        listener.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _, fds, _, _ = socket.recv_fds(connection, 1, 3)
        request = json.loads(connection.makefile("rb").readline())
        command = os.fork()
        if command == 0:
            connection.close()
            run(request, fds)
        for fd in fds:
            os.close(fd)
        _, status = os.waitpid(command, 0)
        connection.sendall(str(os.waitstatus_to_exitcode(status)).encode())
        os._exit(0)
    connection.close()
"""


SOCKET = "charrnn.sock"  # where in its folder the server listens


def forked(server: Path, args: list[str], cwd: Path, env: dict, fds: tuple[int, int, int]) -> int:
    """Run `charrnn ARGS` on the `server`'s socket with these stdin, stdout and stderr; its exit status."""
    with socket.socket(socket.AF_UNIX) as connection:
        connection.connect(str(server))
        socket.send_fds(connection, [b"."], list(fds))
        connection.sendall(json.dumps({"args": args, "cwd": str(cwd), "env": env}).encode() + b"\n")
        code = int(connection.makefile("rb").read())
    return code if code >= 0 else 128 - code  # killed by a signal: as a shell reports it


# The `charrnn` a shell finds on PATH: a Python without site (a few milliseconds) that hands its own three
# descriptors to the server.
CLIENT = """#!{python} -S
import os, sys
sys.path.insert(0, {here!r})
from forking import forked
sys.exit(forked({server!r}, sys.argv[1:], os.getcwd(), dict(os.environ), (0, 1, 2)))
"""


@contextmanager
def forking_charrnn(folder: Path, env: dict) -> Iterator[Path]:
    """A folder holding a `charrnn` that forks from one server (started with `env`), for PATH; the server stops
    after."""
    folder.mkdir(parents=True, exist_ok=True)
    server = folder / SOCKET
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(server)], env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "ready\n", "the charrnn server did not start"
        client = folder / "charrnn"
        client.write_text(CLIENT.format(python=sys.executable, here=str(Path(__file__).parent), server=str(server)))
        client.chmod(0o755)
        yield folder
    finally:
        process.kill()
        process.wait(timeout=60)
