"""Bad input, as a user meets it: one line on stderr naming the problem and the fix, exit 1 (2 for
usage: an unknown flag, or a value no option takes), no traceback, nothing on disk harmed. And the shell
manners: pipes, stdin, quiet, plain logs.

Every bad-input case runs the `charrnn` entry point in its own process (forked from one interpreter
that imported charrnn once: tests/forking.py); the shell-manners tests run the installed command.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
from pathlib import Path

import charrnn
import pytest
import torch

from conftest import ENGLISH, TINY_MODEL, charrnn_command
from forking import SOCKET, forked, forking_charrnn
from test_checkpoint import compressed, edited

TRAIN = ["--steps", "3", *TINY_MODEL]

# name: (arguments, fragments stderr must hold, exit code). "RUN" stands for a trained run directory;
# the files named here are made by `workspace` below.
CASES = {
    "missing_file": (["train", "nosuch.txt", *TRAIN, "-o", "out"], ["nosuch.txt", "no such file"], 1),
    "missing_file_no_budget": (["train", "nosuch.txt", "-o", "out"], ["nosuch.txt", "no such file"], 1),
    "directory_without_text": (["train", "binaries", *TRAIN, "-o", "out"], ["binaries", "no text files"], 1),
    "empty_corpus": (["train", "empty.txt", *TRAIN, "-o", "out"], ["empty", "some text"], 1),
    "corpus_shorter_than_a_window": (["train", "short.txt", *TRAIN, "-o", "out"], ["too short", "3 characters", "--seq-len"], 1),
    "not_utf8": (["train", "latin1.txt", *TRAIN, "-o", "out"], ["latin1.txt", "utf-8 at byte 10", "--encoding", "--errors replace"], 1),
    # Under a --time budget too: the error alone, no sizing line before it.
    "not_utf8_timed": (["train", "latin1.txt", "--time", "1s", "-o", "out"], ["latin1.txt", "utf-8 at byte 10"], 1),
    "binary_file": (["train", "image.bin", *TRAIN, "-o", "out"], ["image.bin", "byte 4", "--encoding", "--errors replace"], 1),
    "utf16_without_byte_order_mark": (["train", "corpus.txt", "--encoding", "utf-16", *TRAIN, "-o", "out"], ["corpus.txt", "utf-16-le"], 1),
    "socket_as_corpus": (["train", "socket", *TRAIN, "-o", "out"], ["socket: is a socket", "FIFO"], 1),
    "init_from_with_a_conflicting_shape": (["train", "corpus.txt", "--init-from", "RUN", "--hidden", "64", "--steps", "2",
                                            "-o", "out"], ["--hidden 64 conflicts"], 1),
    "init_from_a_missing_checkpoint": (["train", "corpus.txt", "--init-from", "nowhere.pt", "--steps", "2", "-o", "out"],
                                       ["nowhere.pt"], 1),
    "prime_with_unseen_characters": (["sample", "-c", "RUN", "--prime", "Hello ☃ 世"], ["prime", "'☃'", "'世'", "never saw"], 1),
    "missing_checkpoint": (["sample", "-c", "nosuch.pt"], ["nosuch.pt", "no such checkpoint", "-c PATH"], 1),
    "truncated_checkpoint": (["sample", "-c", "truncated.pt"], ["truncated.pt", "truncated or corrupted"], 1),
    "corrupted_checkpoint": (["info", "-c", "corrupted.pt"], ["corrupted.pt", "corrupted (", "checksum"], 1),
    "not_a_charrnn_checkpoint": (["eval", "-c", "foreign.pt", "corpus.txt"], ["foreign.pt", "not a charrnn checkpoint"], 1),
    "newer_checkpoint_format": (["sample", "-c", "newer.pt"], ["newer.pt", "format 99", "upgrade charrnn"], 1),
    "checkpoint_config_larger_than_weights": (["sample", "-c", "huge.pt"], ["huge.pt", "not a valid charrnn checkpoint", "[34, 200000]"], 1),
    "checkpoint_zip_bomb": (["info", "-c", "bomb.pt"], ["bomb.pt", "refused to load", "compressed"], 1),
    "checkpoint_with_garbage_history": (["info", "-c", "history.pt"], ["history.pt", "its history", "charrnn train"], 1),
    "eval_of_a_corpus_a_checkpoint_would_download": (["eval", "-c", "catalogue.pt"], ["tinyshakespeare", "not a file or directory", "pass FILE"], 1),
    "dynamic_setting_without_dynamic": (["eval", "-c", "RUN", "corpus.txt", "--dynamic-lr", "1e-3"], ["--dynamic-lr", "need --dynamic"], 2),
    "dynamic_segment_of_zero": (["eval", "-c", "RUN", "corpus.txt", "--dynamic", "--segment", "0"], ["--segment", "at least 1"], 2),
    "no_run_to_discover": (["sample"], ["no trained run found", "charrnn train", "-c PATH"], 1),
    "negative_temperature": (["sample", "-c", "RUN", "--temp", "-0.5"], ["--temp", "-0.5"], 2),
    "top_p_zero": (["sample", "-c", "RUN", "--top-p", "0"], ["--top-p", "(0, 1]"], 2),
    "top_p_above_one": (["sample", "-c", "RUN", "--top-p", "1.5"], ["--top-p", "1.5"], 2),
    "top_k_zero": (["sample", "-c", "RUN", "--top-k", "0"], ["--top-k", "at least 1"], 2),
    "negative_length": (["sample", "-c", "RUN", "--length", "-1"], ["--length", "-1"], 2),
    "temperature_nan": (["sample", "-c", "RUN", "--temp", "nan"], ["--temp", "finite", "(got nan)"], 2),
    "temperature_infinite": (["sample", "-c", "RUN", "--temp", "inf"], ["--temp", "finite", "(got inf)"], 2),
    "top_p_nan": (["sample", "-c", "RUN", "--top-p", "nan"], ["--top-p", "(got nan)"], 2),
    "seed_beyond_64_bits": (["sample", "-c", "RUN", "--seed", "100000000000000000000000"], ["--seed", "18446744073709551615", "(got 100000000000000000000000)"], 2),
    "train_seed_beyond_64_bits": (["train", "corpus.txt", *TRAIN, "--seed", str(2**64), "-o", "out"], ["--seed", f"(got {2**64})"], 2),
    "train_items_unknown": (["train", "corpus.txt", *TRAIN, "--items", "words", "-o", "out"], ["--items 'words'", "auto, lines, text"], 2),
    "score_endless_zeros": (["score", "-c", "RUN", "/dev/zero"], ["/dev/zero: looks binary", "NUL byte on line 1", "--errors replace"], 1),
    "score_missing_file": (["score", "-c", "RUN", "nope.txt"], ["charrnn: error: nope.txt"], 1),
    "score_directory": (["score", "-c", "RUN", "binaries"], ["binaries: is a directory"], 1),
    "runs_of_a_missing_directory": (["runs", "nosuch"], ["nosuch", "no such directory", "charrnn train"], 1),
    "export_hf_onto_a_file": (["export", "RUN", "--format", "hf", "-o", "corpus.txt"], ["corpus.txt", "is a file", "name a folder"], 1),
    "export_onnx_onto_a_folder": (["export", "RUN", "--format", "onnx", "-o", "binaries"], ["binaries", "is a folder", "model.onnx"], 1),
    "export_license_not_spdx": (["export", "RUN", "-o", "out", "--format", "hf", "--license", "MIT OR <b>"],
                                ["not an SPDX license identifier"], 2),
    "export_license_without_hf": (["export", "RUN", "-o", "out", "--format", "html", "--license", "mit"],
                                  ["needs --format hf"], 2),
    "export_in_an_unknown_format": (["export", "RUN", "--format", "zip", "-o", "x"], ["charrnn export: error", "--format", "charrnn export --help"], 2),
    "score_socket": (["score", "-c", "RUN", "socket"], ["socket: is a socket"], 1),
    "viz_endless_zeros": (["viz", "-c", "RUN", "/dev/zero"], ["/dev/zero: looks binary", "NUL byte at character 1"], 1),
    "viz_max_chars_negative": (["viz", "-c", "RUN", "--text", "All:", "--max-chars", "-3"], ["--max-chars", "at least 1", "(got -3)"], 2),
    "viz_text_the_model_never_saw": (["viz", "-c", "RUN", "--text", "\u00e9\u00e9"], ["never saw any character", "'\u00e9'"], 1),
    "viz_unit_out_of_range": (["viz", "-c", "RUN", "--text", "All:", "--unit", "99"], ["charrnn: error: --unit"], 1),
    "sample_adapt_missing_file": (["sample", "-c", "RUN", "--adapt", "nowhere.txt"], ["nowhere.txt"], 1),
    "empty_stop_string": (["sample", "-c", "RUN", "--stop", ""], ["--stop", "empty string"], 2),
    "stop_string_the_model_never_writes": (["sample", "-c", "RUN", "--stop", "a☃"], ["--stop 'a☃'", "never writes ('☃')"], 1),
    "separator_with_json": (["sample", "-c", "RUN", "--json", "--separator", "|"], ["--separator", "--json", "one object per line"], 2),
    "unknown_sampling_precision": (["sample", "-c", "RUN", "--precision", "bf16"], ["--precision", "'bf16'", "auto, fp32, fp16"], 2),
    "zero_layers": (["train", "corpus.txt", *TRAIN, "--layers", "0", "-o", "out"], ["--layers", "at least 1"], 2),
    "zero_hidden": (["train", "corpus.txt", *TRAIN, "--hidden", "0", "-o", "out"], ["--hidden", "at least 1"], 2),
    "network_larger_than_memory": (["train", "corpus.txt", *TRAIN, "--hidden", "200000", "-o", "out"], ["1x200000", "GB", "--hidden"], 1),
    # Under a --time budget the size is timed before training: refused before a step is taken, too.
    "network_larger_than_memory_timed": (["train", "corpus.txt", "--time", "10s", "--hidden", "200000", "-o", "out"], ["1x200000", "GB", "--hidden"], 1),
    "dropout_one": (["train", "corpus.txt", *TRAIN, "--dropout", "1", "-o", "out"], ["--dropout", "[0, 1)"], 2),
    "malformed_time": (["train", "corpus.txt", "--time", "10 minutes", "-o", "out"], ["--time", "'10 minutes'", "10m"], 2),
    "zero_time": (["train", "corpus.txt", "--time", "0s", "-o", "out"], ["--time must be above zero", "'0s'"], 2),
    "zero_steps": (["train", "corpus.txt", "--steps", "0", "-o", "out"], ["--steps", "at least 1", "(got 0)"], 2),
    "zero_eval_every": (["train", "corpus.txt", *TRAIN, "--eval-every", "0", "-o", "out"], ["--eval-every", "(got 0)"], 2),
    "out_is_a_file": (["train", "corpus.txt", *TRAIN, "-o", "corpus.txt"], ["--out corpus.txt", "existing file", "directory"], 1),
    "out_under_a_file": (["train", "corpus.txt", *TRAIN, "-o", "corpus.txt/run"], ["cannot write", "corpus.txt/run", "--out"], 1),
    "unknown_option": (["train", "corpus.txt", "--stepz", "3"], ["charrnn train: error", "--stepz", "charrnn train --help"], 2),
    "option_of_wrong_type": (["sample", "--temp", "warm"], ["charrnn sample: error", "--temp", "charrnn sample --help"], 2),
}


def digest(folder: Path) -> dict:
    """Every file below `folder` and a hash of its bytes: to show that a failed command changed nothing."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "cache" not in p.parts}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_run) -> Path:
    """The files the cases name, next to each other in one folder."""
    folder = tmp_path_factory.mktemp("errors")
    (folder / "corpus.txt").write_text(ENGLISH * 20, encoding="utf-8")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "short.txt").write_text("abc", encoding="utf-8")
    (folder / "latin1.txt").write_bytes("Hello, caf\u00e9 au lait\n".encode("latin-1") * 20)  # 'é' is byte 10
    (folder / "image.bin").write_bytes(b"\x89PNG\x00\x00\x00\rIHDR" * 10)
    (folder / "binaries").mkdir()
    (folder / "binaries" / "a.bin").write_bytes(b"\x00\x01\x02")
    good = (tiny_run / "best.pt").read_bytes()
    (folder / "truncated.pt").write_bytes(good[: len(good) // 2])
    corrupted = bytearray(good)
    corrupted[len(good) // 3 : len(good) // 3 + 64] = bytes(64)  # a zeroed stretch inside the archive
    (folder / "corrupted.pt").write_bytes(bytes(corrupted))
    torch.save({"weights": torch.zeros(3)}, folder / "foreign.pt")
    newer = torch.load(tiny_run / "best.pt", weights_only=True)
    newer["format_version"] = 99
    torch.save(newer, folder / "newer.pt")
    edited(tiny_run / "best.pt", folder / "huge.pt", lambda p: p["model_config"].update(hidden=200_000))
    edited(tiny_run / "best.pt", folder / "history.pt", lambda p: p.update(history=[1, "x"]))
    edited(tiny_run / "best.pt", folder / "catalogue.pt", lambda p: p.update(corpus_args=["tinyshakespeare"]))
    compressed(tiny_run / "best.pt", folder / "bomb.pt")
    (folder / "nowhere").mkdir()  # an empty working directory: no ./runs to discover
    socket.socket(socket.AF_UNIX).bind(str(folder / "socket"))
    return folder


@pytest.fixture(scope="module")
def outcomes(workspace, tiny_run) -> dict:
    """Run every case, each in its own process; check afterwards that no file was touched."""
    env = dict(os.environ, CHARRNN_CACHE_DIR=str(workspace / "cache"), OMP_NUM_THREADS="1", NO_COLOR="1")
    env.pop("CHARRNN_CHECKPOINT", None)
    before = digest(workspace), digest(tiny_run)
    logs = workspace.parent / f"{workspace.name}-logs"
    logs.mkdir()
    results = {}
    with forking_charrnn(logs / "bin", env) as server:
        for name, (arguments, _, _) in CASES.items():
            args = [str(tiny_run) if a == "RUN" else a for a in arguments]
            cwd = workspace / "nowhere" if name == "no_run_to_discover" else workspace
            said = logs / f"{name}.out", logs / f"{name}.err"
            with open(os.devnull) as stdin, open(said[0], "w") as out, open(said[1], "w") as err:
                code = forked(server / SOCKET, args, cwd, env, (stdin.fileno(), out.fileno(), err.fileno()))
            results[name] = subprocess.CompletedProcess(args, code, *(path.read_text("utf-8") for path in said))
    assert (digest(workspace), digest(tiny_run)) == before, "a failed command changed files on disk"
    assert not (workspace / "out").exists(), "a run that failed to start left its directory behind"
    return results


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_one_clear_line(outcomes, name):
    _, fragments, code = CASES[name]
    result = outcomes[name]
    assert result.returncode == code, (result.returncode, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("charrnn") and "error: " in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_sample_into_head_exits_quietly(cli, tiny_run):
    shell = f"set -o pipefail; '{charrnn_command()[0]}' sample -c '{tiny_run}' --length 200000 --seed 1 | head -c 100"
    result = subprocess.run(["bash", "-c", shell], cwd=cli.cwd, env=cli.env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stderr == "", (result.returncode, result.stderr)
    assert len(result.stdout) == 100


def test_eval_of_stdin(cli, tiny_run):  # a prime from stdin: test_cli
    piped = cli("eval", "-c", tiny_run, "-", "--json", input=ENGLISH)
    from_file = charrnn.load(tiny_run).evaluate_files([str(tiny_run.parent / "corpus.txt")])
    assert '"chars": ' in piped.stdout and piped.stderr == ""
    # The piped text, not the run's corpus, was scored: its own count (each character after the first is predicted).
    assert json.loads(piped.stdout)["chars"] == len(ENGLISH) - 1 != from_file["chars"]


def test_logs_are_plain_on_a_pipe_and_quiet_is_silent(cli, corpus_file):
    cli.env.pop("NO_COLOR")  # plain because stderr is a pipe, not because of NO_COLOR
    logged = cli("train", corpus_file, "-o", "logged", "--steps", "10", *TINY_MODEL)
    assert logged.stdout == "" and "step 10" in logged.stderr
    assert "\x1b" not in logged.stderr  # no colours or cursor moves when stderr is not a terminal
    quiet = cli("train", corpus_file, "-o", "quiet", "--steps", "10", "--quiet", *TINY_MODEL)
    assert quiet.stdout == "" and quiet.stderr == ""


def test_no_color_gives_plain_logs_on_a_terminal(cli, corpus_file):
    pty = pytest.importorskip("pty")
    leader, follower = pty.openpty()
    process = subprocess.Popen(charrnn_command() + ["train", str(corpus_file), "-o", "tty", "--steps", "10", *TINY_MODEL],
                               cwd=cli.cwd, env=dict(cli.env, NO_COLOR="1"), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    stdout, _ = process.communicate(timeout=300)
    seen = b""
    while True:
        try:
            piece = os.read(leader, 65536)
        except OSError:  # the terminal closed: everything has been read
            break
        if not piece:
            break
        seen += piece
    os.close(leader)
    assert process.returncode == 0 and stdout == b""
    assert b"step 10" in seen and b"\x1b" not in seen, seen
