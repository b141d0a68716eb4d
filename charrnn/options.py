"""The command's vocabulary: every command's help, and every option's and argument's flag, type and help text.

charrnn.cli's commands are declared with them. Help texts that name a default read it from charrnn.config,
where it lives; `charrnn --help` imports this, so it stays free of torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from charrnn import __version__, install_command
from charrnn.config import VIZ_FEATURES, DynamicSettings, ExportFormat, FineTuneDefaults, RunSort, TrainConfig


def show_version(value: bool) -> None:
    if value:
        print(f"charrnn {__version__}")
        raise typer.Exit()


# Each command's help: its first line is its summary in `charrnn --help`.
TRAIN_HELP = """Train a model on a corpus.

Checkpoints and metrics go to the run directory (default runs/<corpus name>)."""
SAMPLE_HELP = "Generate text from a trained model, streamed to stdout."
EVAL_HELP = """Bits per character of a model on text.

No FILE: the run's own validation split."""
INFO_HELP = """What a checkpoint holds: model, size, vocabulary, training.

Then the training curve, drawn in the terminal (--plot: as an image)."""
SCORE_HELP = """Bits per character of every input line, streamed.

One line out per line in, in input order: `bpc<TAB>line`."""
RUNS_HELP = """The runs under ./runs (or DIRECTORY), one line each.

To compare them: model, corpus, steps, time, best bpc."""
EXPORT_HELP = "Write a model for use outside charrnn."
CORPUS_LIST_HELP = """The corpora `charrnn train NAME` knows.

Each with its size, and whether it is already downloaded."""
CORPUS_FETCH_HELP = """Download corpora now, and print where each one lives.

Each is checked against the catalogue's size and sha256."""
VIZ_HELP = """Color a text by one unit's activation, or by surprise.

--find ranks the units that track a feature and shows the best."""

VersionOption = Annotated[
    bool, typer.Option("--version", callback=show_version, is_eager=True, help="Print the version and exit.")
]
# Taken by several commands.
CheckpointOption = Annotated[
    Optional[str],
    typer.Option(
        "--checkpoint",
        "-c",
        help="A .pt file or a run directory. Default: $CHARRNN_CHECKPOINT, else the newest run under ./runs.",
    ),
]
DeviceOption = Annotated[str, typer.Option(help="auto|cpu|cuda|mps (auto picks cuda, then mps, then cpu).")]
ImplOption = Annotated[
    str, typer.Option(help="fused (torch's kernels: cuDNN, oneDNN) or cells (written out step by step).")
]
EncodingOption = Annotated[str, typer.Option(help="Text encoding of the input files.")]
ErrorsOption = Annotated[str, typer.Option(help="What to do with undecodable bytes: strict, replace or ignore.")]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")]
# One command's each, in the order of `charrnn --help`.
CorpusArgument = Annotated[
    Optional[list[str]],
    typer.Argument(
        help="Text files, directories, or - for stdin. None: the built-in corpus (Python's standard library source).",
        show_default=False,
    ),
]
RunDirOption = Annotated[
    Optional[Path], typer.Option("--out", "-o", help="Run directory. Default: runs/<corpus name>.")
]
ResumeOption = Annotated[bool, typer.Option(help="Continue the run in --out exactly where it stopped.")]
OverwriteRunOption = Annotated[
    bool, typer.Option(help="Overwrite a run already in --out, or write into a folder that is not empty.")
]
ModelOption = Annotated[Optional[str], typer.Option(help="rnn, gru or lstm.")]
LayersOption = Annotated[
    Optional[int], typer.Option(help="Recurrent layers. Default: sized with --hidden by the time budget.")
]
HiddenOption = Annotated[
    Optional[int],
    typer.Option(help="Hidden units per layer. Default: sized by the time budget (train says what it chose)."),
]
EmbedOption = Annotated[Optional[int], typer.Option(help="Embedding size.")]
DropoutOption = Annotated[
    Optional[float],
    typer.Option(
        help="Dropout between layers and before the head. Default: sized with --hidden by the time budget; with "
        f"--init-from, at least {FineTuneDefaults.min_dropout:g}."
    ),
]
SeqLenOption = Annotated[Optional[int], typer.Option(help="Characters per window (truncated BPTT length).")]
BatchSizeOption = Annotated[Optional[int], typer.Option(help="Windows per step (parallel streams of the corpus).")]
LrOption = Annotated[
    Optional[float],
    typer.Option(
        help=f"Peak learning rate (AdamW). Default: {TrainConfig.lr:g}; {FineTuneDefaults.lr:g} with --init-from."
    ),
]
WeightDecayOption = Annotated[Optional[float], typer.Option(help="AdamW weight decay on matrices.")]
TrainSeedOption = Annotated[Optional[int], typer.Option(help="Random seed.")]
StepsOption = Annotated[Optional[int], typer.Option(help="Budget in optimizer steps (the run's total).")]
TimeOption = Annotated[Optional[str], typer.Option("--time", help="Budget in wall time: 90s, 10m, 1h.")]
ScheduleStepsOption = Annotated[
    Optional[int],
    typer.Option(
        help="Steps the learning-rate schedule spans (default: the budget); set it to the final total to extend the "
        "run later with --resume --steps."
    ),
]
ValFractionOption = Annotated[
    Optional[float], typer.Option(help="Last fraction of the corpus held out for validation.")
]
EvalEveryOption = Annotated[
    Optional[int],
    typer.Option(
        help="Validate and checkpoint every N steps. Default: about ten times over a --time budget, else every 500 "
        "steps."
    ),
]
ItemsOption = Annotated[
    Optional[str],
    typer.Option(
        help="auto|lines|text: lines trains on each line as an item of its own, from the zero state, as sample "
        "--lines and score read them; text, as running text. Default: auto, lines for a list (many lines, nearly all "
        "short, hardly any empty).",
        show_default=False,
    ),
]
TrainPrecisionOption = Annotated[
    Optional[str], typer.Option(help="auto|fp32|bf16: auto is bf16 autocast on CUDA, fp32 elsewhere.")
]
TrainQuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or logs on stderr.")]
InitFromOption = Annotated[
    Optional[str],
    typer.Option(
        "--init-from",
        help="Fine-tune: start from this checkpoint or run directory (its shape; new characters are added).",
    ),
]
TempOption = Annotated[float, typer.Option("--temp", help="Temperature; 0 picks the likeliest character (greedy).")]
LengthOption = Annotated[int, typer.Option(help="Characters to generate per sample.")]
PrimeOption = Annotated[Optional[str], typer.Option(help="Text to start from (default: piped stdin, if any).")]
TopKOption = Annotated[Optional[int], typer.Option(help="Sample only from the k likeliest characters.")]
TopPOption = Annotated[Optional[float], typer.Option(help="Sample only from the smallest set reaching probability p.")]
SampleSeedOption = Annotated[Optional[int], typer.Option(help="Random seed: the same seed gives the same text.")]
NumSamplesOption = Annotated[
    int, typer.Option("--num-samples", "-n", help="Independent samples, generated as one batch.")
]
SeparatorOption = Annotated[
    Optional[str],
    typer.Option(
        help="Written between samples. Default: a blank line; with --lines, none (each line ends with its newline).",
        show_default=False,
    ),
]
StopOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--stop",
        help="End a sample where this text first appears in what is generated; it is not written. Repeatable.",
        metavar="STR",
        show_default=False,
    ),
]
LinesOption = Annotated[
    bool,
    typer.Option(
        "--lines",
        help="Each sample one line: begun after a newline (and after the prime, whose last line it completes), "
        "ended at the next.",
    ),
]
SampleJsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help="One JSON object per line per sample: its index, its text (as written without --json) and what "
        "reproduces it: prime, seed, settings, checkpoint and its sha256.",
    ),
]
SamplePrecisionOption = Annotated[
    str,
    typer.Option(
        help="auto|fp32|fp16|int8: how the steps store the weights; auto on x86 CPUs is fp16 (fp32 arithmetic, half "
        "the memory traffic), or int8 from -n 4 (twice the arithmetic per instruction); fp32 elsewhere."
    ),
]
AdaptOption = Annotated[
    Optional[str],
    typer.Option(
        "--adapt",
        help="First read this text file once, learning from it as `eval --dynamic` does, then write in its style "
        "(the checkpoint is not changed).",
        metavar="FILE",
        show_default=False,
    ),
]
SampleEncodingOption = Annotated[
    str, typer.Option(help="Text encoding of a prime piped to stdin, and of --adapt's file.")
]
EvalFilesArgument = Annotated[
    Optional[list[str]],
    typer.Argument(
        help="Text files, directories, or - for stdin. None: the run's validation split.", show_default=False
    ),
]
DynamicOption = Annotated[
    bool,
    typer.Option(
        "--dynamic",
        help="Also score it while the model adapts as it reads (dynamic evaluation, Krause et al. 2018), side by "
        "side with the static figures; the checkpoint is not changed.",
    ),
]
SegmentOption = Annotated[
    Optional[int],
    typer.Option(
        "--segment",
        help=f"--dynamic: characters scored between two updates. Default: {DynamicSettings.segment}.",
        show_default=False,
    ),
]
DynamicLrOption = Annotated[
    Optional[float],
    typer.Option(
        "--dynamic-lr",
        help=f"--dynamic: the SGD step size, on the mean loss of a segment. Default: {DynamicSettings.lr:g}.",
        show_default=False,
    ),
]
DynamicDecayOption = Annotated[
    Optional[float],
    typer.Option(
        "--dynamic-decay",
        help="--dynamic: how far each update pulls the weights back toward the trained ones, 0 to 1. Default: "
        f"{DynamicSettings.decay:g}.",
        show_default=False,
    ),
]
PlotOption = Annotated[
    Optional[Path],
    typer.Option("--plot", help=f"Write the training curve as an image (needs matplotlib: {install_command('plot')})."),
]
ScoreFilesArgument = Annotated[
    Optional[list[str]], typer.Argument(help="Text files, or - for stdin (the default).", show_default=False)
]
ScoreJsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per line: bpc, nats, chars, oov, line.")]
RunsDirArgument = Annotated[Path, typer.Argument(help="The directory that holds the runs.")]
RunsJsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per run.")]
SortOption = Annotated[
    RunSort, typer.Option(help="name; bpc (best first); written (newest first); steps, time, size (most first).")
]
ExportSourceArgument = Annotated[
    str, typer.Argument(help="A run directory, a .pt file or an exported folder.", show_default=False)
]
FormatOption = Annotated[
    ExportFormat,
    typer.Option(
        "--format",
        "-f",
        help="hf: a safetensors folder with config.json and a model card, which -c reads; onnx: a one-step graph "
        "for any ONNX runtime; html: one web page that generates offline.",
        show_default=False,
    ),
]
ExportOutOption = Annotated[
    Path, typer.Option("--out", "-o", help="Where to write: a folder (hf) or a file.", show_default=False)
]
LicenseOption = Annotated[
    Optional[str],
    typer.Option(
        "--license",
        help="hf: the license you give the model, an SPDX identifier (mit, cc-by-4.0) for its card; without it, a "
        "named corpus's, else other.",
        show_default=False,
    ),
]
ReplaceOption = Annotated[bool, typer.Option(help="Replace files already at --out.")]
ReplaceImageOption = Annotated[bool, typer.Option(help="Replace a file already at --plot.")]
ReplacePageOption = Annotated[bool, typer.Option(help="Replace a file already at --html.")]
CorpusJsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per corpus.")]
CorpusNamesArgument = Annotated[list[str], typer.Argument(help="Corpus names from `charrnn corpus list`.")]
FetchQuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")]
VizFileArgument = Annotated[
    Optional[str],
    typer.Argument(
        help="Text file to look at, or - for stdin (default: --text, else piped stdin).", show_default=False
    ),
]
TextOption = Annotated[Optional[str], typer.Option("--text", help="The text to look at.")]
LayerOption = Annotated[Optional[int], typer.Option(help="Layer, from 0 (default: the last).")]
KindOption = Annotated[
    Optional[str],
    typer.Option(
        help="hidden, cell, input_gate, forget_gate, output_gate, candidate (LSTM); reset_gate, update_gate (GRU). "
        "Default: cell, else hidden."
    ),
]
UnitOption = Annotated[Optional[int], typer.Option(help="Unit index (default: the one that varies most on this text).")]
SurpriseOption = Annotated[
    bool, typer.Option("--surprise", help="Color each character by the model's surprise, -log2 p, instead.")
]
FindOption = Annotated[
    Optional[str],
    typer.Option(help="Rank units by how well they track a feature: " + ", ".join(VIZ_FEATURES) + "; show the best."),
]
TopOption = Annotated[int, typer.Option(help="How many units --find lists.")]
HtmlOption = Annotated[Optional[Path], typer.Option("--html", help="Also write a self-contained HTML page here.")]
VizJsonOption = Annotated[
    bool, typer.Option("--json", help="One JSON object: the text, the values per character, the ranking.")
]
MaxCharsOption = Annotated[int, typer.Option(help="Look at no more than this many characters.")]
