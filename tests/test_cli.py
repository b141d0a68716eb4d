"""The CLI end to end, run as a user types it: train, sample, eval, info."""

import hashlib
import json
import subprocess

import charrnn

from conftest import TINY_MODEL, TINY_OPTIONS, charrnn_command

HANGUL_EMOJI = ("안녕하세요, 세계! 🙂 좋은 아침입니다. 🌞\n" "오늘도 좋은 하루 되세요 👍🏽\n") * 30


def test_train_sample_eval_info(cli, corpus_file):
    trained = cli("train", corpus_file, "--steps", "20", *TINY_MODEL)
    assert trained.stdout == ""  # stdout is for the product only
    assert "best val loss" in trained.stderr
    run = cli.cwd / "runs" / "corpus"
    assert {p.name for p in run.iterdir()} >= {"best.pt", "last.pt", "metrics.jsonl"}
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [10, 20]

    # Seeds (test_sample) and their reproduction in another process (the --json test below) are tested elsewhere.
    sampled = cli("sample", "--length", "80", "--seed", "3")  # default discovery: the newest run
    assert len(sampled.stdout) == 81 and sampled.stderr == ""

    primed = cli("sample", "--length", "10", "--temp", "0", "--precision", "fp32", input="All:\n")  # fp32, not fp16
    assert primed.stdout.startswith("All:\n") and len(primed.stdout) == len("All:\n") + 11 and primed.stderr == ""

    four = cli("sample", "-n", "4", "--length", "30", "--seed", "1", "--separator", "\n---\n")  # int8 on x86
    assert four.stdout.count("\n---\n") == 3 and four.stderr == ""

    evaluated = json.loads(cli("eval", "--json").stdout)
    assert set(evaluated) >= {"loss", "bpc", "perplexity", "chars", "oov"}
    assert evaluated["chars"] > 0 and evaluated["oov"] == 0
    assert abs(evaluated["bpc"] - evaluated["loss"] / 0.6931471805599453) < 1e-9

    details = json.loads(cli("info", "--json").stdout)
    assert details["model"] == "lstm" and details["steps"] == 20 and details["parameters"] > 0


def test_second_default_run_does_not_overwrite_the_first(train_here, corpus_file):
    train_here(corpus_file, steps=2, **TINY_OPTIONS)  # the CLI's default --out is the library's (test_rundir runs it)
    train_here(corpus_file, steps=2, **TINY_OPTIONS)
    assert (corpus_file.parent / "runs" / "corpus" / "best.pt").is_file()
    assert (corpus_file.parent / "runs" / "corpus-2" / "best.pt").is_file()


def test_hangul_and_emoji_round_trip_through_train_sample_and_eval(cli, train_here):
    (cli.cwd / "korean.txt").write_text(HANGUL_EMOJI, encoding="utf-8")
    train_here("korean.txt", steps=30, out="ko", **TINY_OPTIONS)
    sampled = cli("sample", "-c", "ko", "--prime", "안녕", "--length", "200", "--seed", "0").stdout  # through a pipe
    assert sampled.startswith("안녕")
    assert set(sampled) <= set(HANGUL_EMOJI) | {"\n"}
    assert any(ch in sampled for ch in "🙂🌞👍")  or any("\uac00" <= ch <= "\ud7a3" for ch in sampled[2:])
    evaluated = charrnn.load("ko").evaluate_files(["korean.txt"])
    assert evaluated["oov"] == 0 and evaluated["chars"] == len(HANGUL_EMOJI) - 1


def test_train_reads_stdin_past_its_first_buffer(cli, corpus_file):
    text = corpus_file.read_text()
    piped = text * (100_000 // len(text) + 1)  # 100 KB: past the first 64 KB buffer, short of its doubling
    cli("train", "-", "--steps", "2", "-o", "piped", *TINY_MODEL, input=piped)
    assert (cli.cwd / "piped" / "best.pt").is_file()


def test_python_dash_m_works(cli):
    import subprocess
    import sys

    completed = subprocess.run([sys.executable, "-m", "charrnn", "--help"], capture_output=True, text=True)
    assert completed.returncode == 0 and "train" in completed.stdout


def test_built_in_corpus_trains_and_evaluates_its_own_validation_split(cli):
    trained = cli("train", "--steps", "2", "--val-fraction", "0.01", *TINY_MODEL)
    assert (cli.cwd / "runs" / "python-stdlib" / "best.pt").is_file()
    assert "python-stdlib" in trained.stderr
    evaluated = charrnn.load(cli.cwd / "runs" / "python-stdlib").evaluate_validation()  # `eval` of a split: above
    assert evaluated["chars"] > 1000 and evaluated["oov"] == 0


def saved_config(cli, run: str) -> dict:
    """The model config a run's best.pt holds (read here: `info` is tested on its own)."""
    from charrnn.checkpoint import load_checkpoint
    from charrnn.config import to_dict

    return to_dict(load_checkpoint(cli.cwd / run / "best.pt").model_config)


def test_model_size_follows_a_time_budget(cli, corpus_file, train_here, capsys):
    small = ["--layers", "1", "--embed", "8", "--seq-len", "16", "--batch-size", "2", "--eval-every", "5"]
    sized = cli("train", corpus_file, "--time", "1s", "-o", "short", *small)
    # A second would read this short text many times over: dropout (charrnn.budget.dropout_for).
    assert "sized for a 1s budget: --hidden 256 --dropout 0.5" in sized.stderr
    assert saved_config(cli, "short")["hidden"] == 256
    # The rest in this process: charrnn.train sizes what `charrnn train` does, from the flags given
    # (a bad corpus under --time gets its error alone: test_errors' not_utf8_timed).

    def said(out: str, **options) -> str:
        train_here(corpus_file, out=out, quiet=False, layers=1, embed=8, seq_len=16, batch_size=2, eval_every=5,
                   **options)
        return capsys.readouterr().err

    # Long budgets train a wider network with dropout (steps=1 ends the run after one step).
    assert "sized for a 10m00s budget: --hidden 640 --dropout 0.5" in said("long", time="10m", steps=1)
    assert saved_config(cli, "long")["dropout"] == 0.5
    own_dropout = said("own", time="10m", steps=1, dropout=0.0)
    assert "sized for a 10m00s budget: --hidden 640 (set them to choose)" in own_dropout

    assert "sized for" not in said("chosen", time="10m", steps=1, hidden=24)
    assert saved_config(cli, "chosen")["hidden"] == 24
    assert "sized for" not in said("steps", steps=1)  # a budget in steps keeps the fixed defaults


def test_force_starts_the_metrics_afresh(cli, corpus_file, train_here):
    train_here(corpus_file, out="run", steps=4, **{**TINY_OPTIONS, "eval_every": 2})
    cli("train", corpus_file, "-o", "run", "--steps", "4", *TINY_MODEL, "--eval-every", "2", "--force")
    metrics = (cli.cwd / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in metrics] == [2, 4]


def flags_of(record: dict) -> list:
    """The `charrnn sample` flags a --json object names: what generates its text again."""
    flags = ["-c", record["checkpoint"], "--prime", record["prime"], "--seed", record["seed"], "--temp", record["temperature"],
             "--length", record["length"], "-n", record["num_samples"], "--precision", record["precision"],
             "--device", record["device"], "--impl", record["impl"]]
    flags += [f"--{name.replace('_', '-')}={record[name]}" for name in ("top_k", "top_p") if record[name] is not None]
    return flags + [flag for stop in record["stop"] for flag in ("--stop", stop)] + ["--lines"] * record["lines"]


def test_whole_lines_stop_strings_and_json_that_reproduces_them(cli, tiny_run):
    # No --seed: sample chooses one and reports it, and the record must generate the same text again.
    records = [json.loads(line) for line in cli("sample", "-c", tiny_run, "-n", "6", "--lines", "--json",
                                                "--prime", "Citizen:\nAl").stdout.splitlines()]
    assert [record["index"] for record in records] == list(range(6))
    assert records[0]["sha256"] == hashlib.sha256((tiny_run / "best.pt").read_bytes()).hexdigest()
    assert isinstance(records[0]["seed"], int) and records[0]["checkpoint"] == str(tiny_run / "best.pt")
    texts = [record["text"] for record in records]
    assert all(text.startswith("Al") and "\n" not in text for text in texts)  # the prime's last line, completed

    # Fed back as flags, with a stop string that occurs in the longest line: the same lines, each cut
    # where a stop string first begins in its generated part, the stop string left out.
    generated = [text[len("Al"):] for text in texts]
    longest = max(generated, key=len)
    stops = [longest[len(longest) // 2 : len(longest) // 2 + 2], "zz"]
    again = cli("sample", *flags_of({**records[0], "stop": stops})).stdout
    assert again.endswith("\n") and len(again.splitlines()) == 6  # six whole lines, no blank ones
    firsts = [min((part.find(stop) for stop in stops if stop in part), default=len(part)) for part in generated]
    assert again.splitlines() == ["Al" + part[:first] for part, first in zip(generated, firsts)]
    assert any(first < len(part) for part, first in zip(generated, firsts))


def test_shell_completion_completes_commands_and_options(cli):
    def completed(words: str) -> list[str]:
        env = dict(cli.env, COMP_WORDS=words, COMP_CWORD=str(len(words.split()) - 1), _CHARRNN_COMPLETE="complete_bash")
        return subprocess.run(charrnn_command(), env=env, capture_output=True, text=True, timeout=60).stdout.split()

    assert completed("charrnn sam") == ["sample"]
    assert "--temp" in completed("charrnn sample --te")
