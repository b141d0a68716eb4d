"""The `charrnn` command: parses, validates, prints; the work happens in the library (charrnn.api)."""

from __future__ import annotations

import contextlib
import json
import os
import sys

import typer

from charrnn import options
from charrnn.config import dynamic_settings
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


@app.callback()
def main(version: options.VersionOption = False) -> None:
    """A character-level recurrent language model you drive from the shell."""


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


@app.command(help=options.TRAIN_HELP)
def train(
    ctx: typer.Context,
    corpus: options.CorpusArgument = None,
    out: options.RunDirOption = None,
    resume: options.ResumeOption = False,
    force: options.OverwriteRunOption = False,
    model: options.ModelOption = None,
    layers: options.LayersOption = None,
    hidden: options.HiddenOption = None,
    embed: options.EmbedOption = None,
    dropout: options.DropoutOption = None,
    seq_len: options.SeqLenOption = None,
    batch_size: options.BatchSizeOption = None,
    lr: options.LrOption = None,
    weight_decay: options.WeightDecayOption = None,
    seed: options.TrainSeedOption = None,
    steps: options.StepsOption = None,
    time: options.TimeOption = None,
    schedule_steps: options.ScheduleStepsOption = None,
    val_fraction: options.ValFractionOption = None,
    eval_every: options.EvalEveryOption = None,
    items: options.ItemsOption = None,
    device: options.DeviceOption = "auto",
    impl: options.ImplOption = "fused",
    precision: options.TrainPrecisionOption = None,
    encoding: options.EncodingOption = "utf-8",
    errors: options.ErrorsOption = "strict",
    quiet: options.TrainQuietOption = False,
    init_from: options.InitFromOption = None,
):
    from charrnn.pacing import process_started

    started = process_started()  # --time is the whole command's: its imports and set-up spend it too
    from charrnn import api, corpora

    corpora.fetch_shown(corpus or [], quiet)
    try:
        api.train(**ctx.params, started=started)  # the command's parameters are api.train's keywords
    except TrainingInterrupted as stop:  # typer ends any KeyboardInterrupt in silence: say first what was saved
        if is_main():
            print(f"charrnn: {stop}", file=sys.stderr)
        raise SystemExit(INTERRUPTED) from None


@app.command(help=options.SAMPLE_HELP)
def sample(
    ctx: typer.Context,
    checkpoint_arg: options.CheckpointOption = None,
    temperature: options.TempOption = 1.0,
    length: options.LengthOption = 1000,
    prime: options.PrimeOption = None,
    top_k: options.TopKOption = None,
    top_p: options.TopPOption = None,
    seed: options.SampleSeedOption = None,
    n: options.NumSamplesOption = 1,
    separator: options.SeparatorOption = None,
    stop: options.StopOption = None,
    lines: options.LinesOption = False,
    as_json: options.SampleJsonOption = False,
    device: options.DeviceOption = "auto",
    impl: options.ImplOption = "fused",
    precision: options.SamplePrecisionOption = "auto",
    adapt: options.AdaptOption = None,
    encoding: options.SampleEncodingOption = "utf-8",
):
    from charrnn import api
    from charrnn.config import SamplingSettings
    from charrnn.items import prime_pieces, write_out

    settings = SamplingSettings.from_options(ctx.params)
    if as_json and separator is not None:
        raise SettingError(
            "--separator does not apply to --json, which writes one object per line; leave one of them out"
        )
    lm = api.load(checkpoint_arg, device, impl, sha256=as_json)
    settings = lm.settled(settings)  # the seed and precision made exact, to record; refused before any text is written
    pieces = prime_pieces(prime, encoding, whole=as_json)
    record = {**lm.provenance(), "adapt": adapt} if as_json else None
    if adapt is not None:  # the long part, once every cheap refusal has had its say
        lm = lm.adapted_to_files([adapt], encoding)
    with product_output():
        write_out(sys.stdout, lm.parts, pieces, settings, record, separator)


@app.command("eval", help=options.EVAL_HELP)
def evaluate(
    files: options.EvalFilesArgument = None,
    checkpoint_arg: options.CheckpointOption = None,
    as_json: options.JsonOption = False,
    device: options.DeviceOption = "auto",
    impl: options.ImplOption = "fused",
    encoding: options.EncodingOption = "utf-8",
    errors: options.ErrorsOption = "strict",
    dynamic: options.DynamicOption = False,
    segment: options.SegmentOption = None,
    dynamic_lr: options.DynamicLrOption = None,
    dynamic_decay: options.DynamicDecayOption = None,
):
    from charrnn import api
    from charrnn.evaluate import report_lines
    from charrnn.progress import Meter

    settings = dynamic_settings(dynamic, segment, dynamic_lr, dynamic_decay)
    lm = api.load(checkpoint_arg, device, impl)
    meter = Meter("evaluating")
    if files:
        result = lm.evaluate_files(files, encoding, errors, dynamic=settings, progress=meter)
    else:
        print(f"charrnn: scoring the validation split of {escaped(lm.training_corpus_name())}", file=sys.stderr)
        result = lm.evaluate_validation(dynamic=settings, progress=meter)
    meter.close()
    with product_output():
        print(json.dumps(result) if as_json else "\n".join(report_lines(result)))


@app.command(help=options.INFO_HELP)
def info(
    checkpoint_arg: options.CheckpointOption = None,
    as_json: options.JsonOption = False,
    plot: options.PlotOption = None,
    force: options.ReplaceImageOption = False,
):
    from charrnn import runs as runs_lib

    details, history = runs_lib.describe(checkpoint_arg, plot, force)
    with product_output():
        if as_json:
            print(json.dumps({**details, "history": history}))
        else:
            print("\n".join(runs_lib.described_lines(details, history)))


@app.command(help=options.SCORE_HELP)
def score(
    files: options.ScoreFilesArgument = None,
    checkpoint_arg: options.CheckpointOption = None,
    as_json: options.ScoreJsonOption = False,
    device: options.DeviceOption = "auto",
    impl: options.ImplOption = "fused",
    encoding: options.EncodingOption = "utf-8",
    errors: options.ErrorsOption = "strict",
):
    from charrnn import api

    lm = api.load(checkpoint_arg, device, impl)
    out = sys.stdout
    with product_output():
        for batch in lm.score_files(files or [], encoding, errors):
            for result in batch:
                out.writelines(result.row(as_json))
            out.flush()


@app.command(help=options.RUNS_HELP)
def runs(
    directory: options.RunsDirArgument = RUNS_DIR,
    as_json: options.RunsJsonOption = False,
    sort: options.SortOption = "name",
):
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


@app.command(help=options.EXPORT_HELP)
def export(
    run: options.ExportSourceArgument,
    format_name: options.FormatOption,
    out: options.ExportOutOption,
    spdx: options.LicenseOption = None,
    force: options.ReplaceOption = False,
):
    from charrnn import export as export_lib

    export_lib.export(run, format_name, out, spdx, force)
    print(f"charrnn: wrote {escaped(str(out))}", file=sys.stderr)


corpus_app = typer.Typer(
    help="Named corpora: the classic char-rnn texts.\n\nFetched once into the user cache.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(corpus_app, name="corpus")


@corpus_app.command("list", help=options.CORPUS_LIST_HELP)
def corpus_list(as_json: options.CorpusJsonOption = False):
    from charrnn import corpora

    with product_output():
        for line in corpora.catalogue_lines(
            as_json, warn=lambda message: print(f"charrnn: {message}", file=sys.stderr)
        ):
            print(line)


@corpus_app.command("fetch", help=options.CORPUS_FETCH_HELP)
def corpus_fetch(names: options.CorpusNamesArgument, quiet: options.FetchQuietOption = False):
    from charrnn import corpora

    paths = corpora.fetch_named(names, quiet)
    with product_output():
        print("\n".join(map(str, paths)))


@app.command(help=options.VIZ_HELP)
def viz(
    file: options.VizFileArgument = None,
    checkpoint_arg: options.CheckpointOption = None,
    text: options.TextOption = None,
    layer: options.LayerOption = None,
    kind: options.KindOption = None,
    unit: options.UnitOption = None,
    surprise: options.SurpriseOption = False,
    find: options.FindOption = None,
    top: options.TopOption = 5,
    html_out: options.HtmlOption = None,
    force: options.ReplacePageOption = False,
    as_json: options.VizJsonOption = False,
    max_chars: options.MaxCharsOption = 10_000,
    device: options.DeviceOption = "cpu",
    encoding: options.EncodingOption = "utf-8",
    errors: options.ErrorsOption = "strict",
):
    from charrnn import api
    from charrnn import viz as viz_lib

    text = viz_lib.input_text(file, text, max_chars, encoding, errors)
    view = viz_lib.look(api.load(checkpoint_arg, device).trace(text), surprise, find, top, layer, kind, unit)
    if html_out is not None:
        view.save_html(html_out, force)
    with product_output():
        if as_json:
            print(json.dumps(view.as_dict(), ensure_ascii=False))
            return
        from rich.console import Console

        console = Console(highlight=False, soft_wrap=True)
        for line in view.terminal_lines(html_out):
            console.print(line, markup=False)
