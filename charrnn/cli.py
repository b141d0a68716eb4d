"""The `charrnn` command: parses, validates, prints; the work happens in the library (charrnn.api)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from charrnn import __version__, install_command
from charrnn.config import (VIZ_FEATURES, DynamicSettings, ExportFormat, FineTuneDefaults, RunSort, TrainConfig,
                            dynamic_settings)
from charrnn.errors import INTERRUPTED, SettingError, TrainingInterrupted, escaped, is_main
from charrnn.rundir import RUNS_DIR

# The modules that do the work import torch (a second or two): each command imports what it needs, so
# that --help, --version and usage errors answer at once.
app = typer.Typer(
    add_completion=True,  # --install-completion and --show-completion for bash, zsh, fish and PowerShell
    no_args_is_help=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="A character-level recurrent language model you drive from the shell.",
)


def show_version(value: bool) -> None:
    if value:
        print(f"charrnn {__version__}")
        raise typer.Exit()


@app.callback()
def options(version: Annotated[bool, typer.Option("--version", callback=show_version, is_eager=True,
                                                  help="Print the version and exit.")] = False) -> None:
    """A character-level recurrent language model you drive from the shell."""

CheckpointOption = Annotated[Optional[str], typer.Option("--checkpoint", "-c", help="A .pt file or a run directory. Default: $CHARRNN_CHECKPOINT, else the newest run under ./runs.")]
DeviceOption = Annotated[str, typer.Option(help="auto|cpu|cuda|mps (auto picks cuda, then mps, then cpu).")]
ImplOption = Annotated[str, typer.Option(help="fused (torch's kernels: cuDNN, oneDNN) or cells (written out step by step).")]
EncodingOption = Annotated[str, typer.Option(help="Text encoding of the input files.")]
ErrorsOption = Annotated[str, typer.Option(help="What to do with undecodable bytes: strict, replace or ignore.")]


@contextlib.contextmanager
def product_output():
    """When stdout's reader hangs up early (`| head`), stop quietly with status 0."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(0) from None


@app.command()
def train(
    corpus: Annotated[Optional[List[str]], typer.Argument(help="Text files, directories, or - for stdin. None: the built-in corpus (Python's standard library source).", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory. Default: runs/<corpus name>.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out exactly where it stopped.")] = False,
    force: Annotated[bool, typer.Option(help="Overwrite a run already in --out.")] = False,
    model: Annotated[Optional[str], typer.Option(help="rnn, gru or lstm.")] = None,
    layers: Annotated[Optional[int], typer.Option(help="Recurrent layers. Default: sized with --hidden by the time budget.")] = None,
    hidden: Annotated[Optional[int], typer.Option(help="Hidden units per layer. Default: sized by the time budget (train says what it chose).")] = None,
    embed: Annotated[Optional[int], typer.Option(help="Embedding size.")] = None,
    dropout: Annotated[Optional[float], typer.Option(help=f"Dropout between layers and before the head. Default: sized with --hidden by the time budget; with --init-from, at least {FineTuneDefaults.min_dropout:g}.")] = None,
    seq_len: Annotated[Optional[int], typer.Option(help="Characters per window (truncated BPTT length).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Windows per step (parallel streams of the corpus).")] = None,
    lr: Annotated[Optional[float], typer.Option(help=f"Peak learning rate (AdamW). Default: {TrainConfig.lr:g}; {FineTuneDefaults.lr:g} with --init-from.")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="AdamW weight decay on matrices.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed.")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Budget in optimizer steps (the run's total).")] = None,
    time: Annotated[Optional[str], typer.Option("--time", help="Budget in wall time: 90s, 10m, 1h.")] = None,
    schedule_steps: Annotated[Optional[int], typer.Option(help="Steps the learning-rate schedule spans (default: the budget); set it to the final total to extend the run later with --resume --steps.")] = None,
    val_fraction: Annotated[Optional[float], typer.Option(help="Last fraction of the corpus held out for validation.")] = None,
    eval_every: Annotated[Optional[int], typer.Option(help="Validate and checkpoint every N steps. Default: about ten times over a --time budget, else every 500 steps.")] = None,
    device: DeviceOption = "auto",
    impl: ImplOption = "fused",
    precision: Annotated[Optional[str], typer.Option(help="auto|fp32|bf16: auto is bf16 autocast on CUDA, fp32 elsewhere.")] = None,
    encoding: EncodingOption = "utf-8",
    errors: ErrorsOption = "strict",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or logs on stderr.")] = False,
    init_from: Annotated[Optional[str], typer.Option("--init-from", help="Fine-tune: start from this checkpoint or run directory (its shape; new characters are added).")] = None,
):
    """Train a model on a corpus.

    Checkpoints and metrics go to the run directory (default runs/<corpus name>).
    """
    from charrnn.pacing import process_started

    started = process_started()  # --time is the whole command's: its imports and set-up spend it too
    from charrnn import api, corpora

    corpus = corpus or []
    corpora.fetch_shown(corpus, quiet)
    try:
        api.train(corpus, out, time, steps, quiet=quiet, resume=resume, force=force, model=model, layers=layers,
                  hidden=hidden, embed=embed, dropout=dropout, seq_len=seq_len, batch_size=batch_size, lr=lr,
                  weight_decay=weight_decay, seed=seed, schedule_steps=schedule_steps, val_fraction=val_fraction,
                  eval_every=eval_every, device=device, impl=impl, precision=precision, encoding=encoding,
                  errors=errors, init_from=init_from, started=started)
    except TrainingInterrupted as stop:  # typer ends any KeyboardInterrupt in silence: say first what was saved
        if is_main():
            print(f"charrnn: {stop}", file=sys.stderr)
        raise SystemExit(INTERRUPTED) from None


@app.command()
def sample(
    checkpoint_arg: CheckpointOption = None,
    temp: Annotated[float, typer.Option("--temp", help="Temperature; 0 picks the likeliest character (greedy).")] = 1.0,
    length: Annotated[int, typer.Option(help="Characters to generate per sample.")] = 1000,
    prime: Annotated[Optional[str], typer.Option(help="Text to start from (default: piped stdin, if any).")] = None,
    top_k: Annotated[Optional[int], typer.Option(help="Sample only from the k likeliest characters.")] = None,
    top_p: Annotated[Optional[float], typer.Option(help="Sample only from the smallest set reaching probability p.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed: the same seed gives the same text.")] = None,
    num_samples: Annotated[int, typer.Option("--num-samples", "-n", help="Independent samples, generated as one batch.")] = 1,
    separator: Annotated[Optional[str], typer.Option(help="Written between samples. Default: a blank line; with --lines, none (each line ends with its newline).", show_default=False)] = None,
    stop: Annotated[Optional[List[str]], typer.Option("--stop", help="End a sample where this text first appears in what is generated; it is not written. Repeatable.", metavar="STR", show_default=False)] = None,
    lines: Annotated[bool, typer.Option("--lines", help="Each sample one line: begun after a newline (and after the prime, whose last line it completes), ended at the next.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line per sample: its index, its text (as written without --json) and what reproduces it: prime, seed, settings, checkpoint and its sha256.")] = False,
    device: DeviceOption = "auto",
    impl: ImplOption = "fused",
    precision: Annotated[str, typer.Option(help="auto|fp32|fp16|int8: how the steps store the weights; auto on x86 CPUs "
                                           "is fp16 (fp32 arithmetic, half the memory traffic), or int8 from -n 4 "
                                           "(twice the arithmetic per instruction); fp32 elsewhere.")] = "auto",
    adapt: Annotated[Optional[str], typer.Option("--adapt", help="First read this text file once, learning from it as `eval --dynamic` does, then write in its style (the checkpoint is not changed).", metavar="FILE", show_default=False)] = None,
    encoding: Annotated[str, typer.Option(help="Text encoding of a prime piped to stdin, and of --adapt's file.")] = "utf-8",
):
    """Generate text from a trained model, streamed to stdout."""
    from charrnn import api
    from charrnn.config import SamplingSettings
    from charrnn.items import prime_pieces, write_out

    settings = SamplingSettings(length=length, temperature=temp, top_k=top_k, top_p=top_p, seed=seed, n=num_samples,
                                precision=precision, stop=tuple(stop or ()), lines=lines)
    if as_json and separator is not None:
        raise SettingError("--separator does not apply to --json, which writes one object per line; leave one of them out")
    lm = api.load(checkpoint_arg, device, impl, sha256=as_json)
    assert lm.path is not None  # load() names the file it read
    settings = lm.settled(settings)  # the seed and precision made exact, to record; refused before any text is written
    pieces = prime_pieces(prime, encoding, whole=as_json)
    record = {"device": lm.device.type, "impl": impl, "checkpoint": os.path.abspath(lm.path), "sha256": lm.sha256,
              "adapt": adapt} if as_json else None
    if adapt is not None:  # the long part, once every cheap refusal has had its say
        lm = lm.adapted_to_files([adapt], encoding)
    with product_output():
        write_out(sys.stdout, lm.parts, pieces, settings, record, separator)


@app.command("eval")
def evaluate(
    files: Annotated[Optional[List[str]], typer.Argument(help="Text files, directories, or - for stdin. None: the run's validation split.", show_default=False)] = None,
    checkpoint_arg: CheckpointOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    device: DeviceOption = "auto",
    impl: ImplOption = "fused",
    encoding: EncodingOption = "utf-8",
    errors: ErrorsOption = "strict",
    dynamic: Annotated[bool, typer.Option("--dynamic", help="Also score it while the model adapts as it reads (dynamic evaluation, Krause et al. 2018), side by side with the static figures; the checkpoint is not changed.")] = False,
    segment: Annotated[Optional[int], typer.Option("--segment", help=f"--dynamic: characters scored between two updates. Default: {DynamicSettings.segment}.", show_default=False)] = None,
    dynamic_lr: Annotated[Optional[float], typer.Option("--dynamic-lr", help=f"--dynamic: the SGD step size, on the mean loss of a segment. Default: {DynamicSettings.lr:g}.", show_default=False)] = None,
    dynamic_decay: Annotated[Optional[float], typer.Option("--dynamic-decay", help=f"--dynamic: how far each update pulls the weights back toward the trained ones, 0 to 1. Default: {DynamicSettings.decay:g}.", show_default=False)] = None,
):
    """Bits per character of a model on text.

    No FILE: the run's own validation split.
    """
    from charrnn import api
    from charrnn.data import corpus_name
    from charrnn.evaluate import report_lines
    from charrnn.progress import Meter

    settings = dynamic_settings(dynamic, segment, dynamic_lr, dynamic_decay)
    lm = api.load(checkpoint_arg, device, impl)
    meter = Meter("evaluating")
    if files:
        result = lm.evaluate_files(files, encoding, errors, dynamic=settings, progress=meter)
    else:
        sources = lm.training_corpus()
        print(f"charrnn: scoring the validation split of {escaped(', '.join(sources) or corpus_name(sources))}", file=sys.stderr)
        result = lm.evaluate_validation(dynamic=settings, progress=meter)
    meter.close()
    with product_output():
        if as_json:
            print(json.dumps(result))
        else:
            print("\n".join(report_lines(result)))


@app.command()
def info(
    checkpoint_arg: CheckpointOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    plot: Annotated[Optional[Path], typer.Option("--plot", help=f"Write the training curve as an image (needs matplotlib: {install_command('plot')}).")] = None,
):
    """What a checkpoint holds: model, size, vocabulary, training.

    Then the training curve, drawn in the terminal (--plot: as an image).
    """
    from charrnn import runs as runs_lib

    details, history = runs_lib.describe(checkpoint_arg, plot)
    with product_output():
        if as_json:
            print(json.dumps({**details, "history": history}))
        else:
            print("\n".join(runs_lib.described_lines(details, history)))


@app.command()
def score(
    files: Annotated[Optional[List[str]], typer.Argument(help="Text files, or - for stdin (the default).", show_default=False)] = None,
    checkpoint_arg: CheckpointOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line: bpc, nats, chars, oov, line.")] = False,
    device: DeviceOption = "auto",
    impl: ImplOption = "fused",
    encoding: EncodingOption = "utf-8",
    errors: ErrorsOption = "strict",
):
    """Bits per character of every input line, streamed.

    One line out per line in, in input order: `bpc<TAB>line`.
    """
    from charrnn import api
    from charrnn.score import read_pieces

    lm = api.load(checkpoint_arg, device, impl)
    out = sys.stdout
    with product_output():
        for batch in lm.score_batches(read_pieces(files or [], encoding, errors)):
            for result in batch:
                out.writelines(result.row(as_json))
            out.flush()


@app.command()
def runs(
    directory: Annotated[Path, typer.Argument(help="The directory that holds the runs.")] = RUNS_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per run.")] = False,
    sort: Annotated[RunSort, typer.Option(help="name; bpc (best first); written (newest first); steps, time, size (most first).")] = "name",
):
    """The runs under ./runs (or DIRECTORY), one line each.

    To compare them: model, corpus, steps, time, best bpc.
    """
    from charrnn import runs as runs_lib

    summaries = runs_lib.list_runs(directory, sort)
    if not summaries:
        print(f"charrnn: no runs under {escaped(str(directory))}; train one with `charrnn train`", file=sys.stderr)
    with product_output():
        if as_json:
            for run in summaries:
                print(json.dumps(run.as_dict()))
        elif summaries:
            print("\n".join(runs_lib.table(summaries)))


@app.command()
def export(
    run: Annotated[str, typer.Argument(help="A run directory, a .pt file or an exported folder.", show_default=False)],
    format_name: Annotated[ExportFormat, typer.Option("--format", "-f", help="hf: a safetensors folder with config.json and a model card, which -c reads; onnx: a one-step graph for any ONNX runtime; html: one web page that generates offline.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write: a folder (hf) or a file.", show_default=False)],
    spdx: Annotated[Optional[str], typer.Option("--license", help="hf: the license you give the model, an SPDX identifier (mit, cc-by-4.0) for its card; without it, a named corpus's, else other.", show_default=False)] = None,
    force: Annotated[bool, typer.Option(help="Replace files already at --out.")] = False,
):
    """Write a model for use outside charrnn."""
    from charrnn import export as export_lib

    export_lib.export(run, format_name, out, spdx, force)
    print(f"charrnn: wrote {escaped(str(out))}", file=sys.stderr)


corpus_app = typer.Typer(help="Named corpora: the classic char-rnn texts.\n\nFetched once into the user cache.",
                         no_args_is_help=True, rich_markup_mode=None)
app.add_typer(corpus_app, name="corpus")


@corpus_app.command("list")
def corpus_list(as_json: Annotated[bool, typer.Option("--json", help="One JSON object per corpus.")] = False):
    """The corpora `charrnn train NAME` knows.

    Each with its size, and whether it is already downloaded.
    """
    from charrnn import corpora

    with product_output():
        for line in corpora.catalogue_lines(as_json, warn=lambda message: print(f"charrnn: {message}", file=sys.stderr)):
            print(line)


@corpus_app.command("fetch")
def corpus_fetch(names: Annotated[List[str], typer.Argument(help="Corpus names from `charrnn corpus list`.")],
                 quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False):
    """Download corpora now, and print where each one lives.

    Each is checked against the catalogue's size and sha256.
    """
    from charrnn import corpora

    for name in names:
        if not corpora.is_named_corpus(name):
            corpora.fetch(name)  # raises the one-line error that lists the known names
    corpora.fetch_shown(names, quiet)
    with product_output():
        for name in names:
            print(corpora.fetch(name))


@app.command()
def viz(
    file: Annotated[Optional[str], typer.Argument(help="Text file to look at, or - for stdin (default: --text, else piped stdin).", show_default=False)] = None,
    checkpoint_arg: CheckpointOption = None,
    text: Annotated[Optional[str], typer.Option("--text", help="The text to look at.")] = None,
    layer: Annotated[Optional[int], typer.Option(help="Layer, from 0 (default: the last).")] = None,
    kind: Annotated[Optional[str], typer.Option(help="hidden, cell, input_gate, forget_gate, output_gate, candidate (LSTM); reset_gate, update_gate (GRU). Default: cell, else hidden.")] = None,
    unit: Annotated[Optional[int], typer.Option(help="Unit index (default: the one that varies most on this text).")] = None,
    surprise: Annotated[bool, typer.Option("--surprise", help="Color each character by the model's surprise, -log2 p, instead.")] = False,
    find: Annotated[Optional[str], typer.Option(help="Rank units by how well they track a feature: " + ", ".join(VIZ_FEATURES) + "; show the best.")] = None,
    top: Annotated[int, typer.Option(help="How many units --find lists.")] = 5,
    html_out: Annotated[Optional[Path], typer.Option("--html", help="Also write a self-contained HTML page here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object: the text, the values per character, the ranking.")] = False,
    max_chars: Annotated[int, typer.Option(help="Look at no more than this many characters.")] = 10_000,
    device: DeviceOption = "cpu",
    encoding: EncodingOption = "utf-8",
    errors: ErrorsOption = "strict",
):
    """Color a text by one unit's activation, or by surprise.

    --find ranks the units that track a feature and shows the best.
    """
    from charrnn import api
    from charrnn import viz as viz_lib

    text = viz_lib.input_text(file, text, max_chars, encoding, errors)
    view = viz_lib.look(api.load(checkpoint_arg, device).trace(text), surprise, find, top, layer, kind, unit)
    if html_out is not None:
        view.save_html(html_out)
    with product_output():
        if as_json:
            print(json.dumps(view.as_dict(), ensure_ascii=False))
            return
        from rich.console import Console

        console = Console(highlight=False, soft_wrap=True)
        for found in view.ranking or []:
            console.print(f"r {found.correlation:+.3f}  {found.describe()}", markup=False)
        console.print(view.title, markup=False)
        console.print(viz_lib.terminal_text(view.text, view.levels) if html_out is None else f"wrote {html_out}",
                      markup=False)
