"""What the commands share: their options, declared once as Annotated types (typer reads each default from the
command), the error guard (one line on stderr, never a traceback) and the gates' exit code."""

from __future__ import annotations

import functools
import os
import sys
from typing import Annotated, Optional

import typer

def gates_failed(result: dict, then: str | None = None) -> None:
    """One stderr line per failed gate, and `then` (e.g. what was not pushed), then exit 3 (the results are
    printed already)."""
    failed = result.get("gates_failed") or []
    for line in failed + ([then] if failed and then else []):
        print(line, file=sys.stderr)
    if failed:
        from taskcli.gates import EXIT_FAILED

        raise typer.Exit(EXIT_FAILED)


def _reader_gone():
    """stdout's reader left early (`taskcli ... | head -1`): end quietly with 141, as cat or grep do when SIGPIPE
    stops them, so `set -o pipefail` still sees the output was cut short. Python's flush at exit then writes to
    /dev/null instead of failing again ("Exception ignored ... BrokenPipeError")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return typer.Exit(141)


def guarded(fn):
    """One line on stderr and exit 1 for any error; the traceback only with TASKCLI_DEBUG=1. A closed stdout
    ends quietly (see _reader_gone)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:
            raise _reader_gone() from None
        except Exception as err:  # noqa: BLE001 - the CLI's last line of defence
            if os.environ.get("TASKCLI_DEBUG") == "1":
                raise
            from taskcli.errors import TaskcliError, disk_full

            if getattr(err, "exit_code", None) == 130:  # Ctrl-C in training: where it stopped, how to go on
                print(str(err), file=sys.stderr)
                raise typer.Exit(130) from None
            if "Original Traceback" in str(err):  # raised in a DataLoader worker: the cause is the last line
                last = [line for line in str(err).strip().splitlines() if line.strip()][-1]
                message = last.split(": ", 1)[1] if last.startswith(("taskcli.errors.", "TaskcliError")) else last
            elif isinstance(err, TaskcliError):
                message = str(err)
            elif disk_full(err):  # a write no step of the run named (finetune and --output name theirs)
                where = getattr(err, "filename", None)
                message = f"no space left on device writing {where}" if where else \
                    "no space left on device (run with TASKCLI_DEBUG=1 to see which write)"
            else:
                first = (str(err).strip().splitlines() or [""])[0][:300]
                message = f"{type(err).__name__}: {first} (run with TASKCLI_DEBUG=1 for the traceback)"
            print(f"error: {message}", file=sys.stderr)
            raise typer.Exit(1) from None

    return wrapper


SET_HELP = "Override one recipe field, e.g. `--set train.epochs=1` (repeatable; values are typed as YAML)."
# Options the commands share (finetune, eval, check, infer, serve), declared once
TaskArg = Annotated[str, typer.Argument(help="Task name or alias (see `taskcli tasks`).")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", rich_help_panel="Model",
                                                 help="Model dir or hub id (default: the recipe's); finetune and "
                                                      "check start from it.")]
RecipeOpt = Annotated[Optional[str], typer.Option("--recipe", "-r", rich_help_panel="Model",
                                                  help="Recipe name or YAML path (default: the task's).")]
SetOpt = Annotated[list[str], typer.Option("--set", "-s", rich_help_panel="Model", help=SET_HELP)]
TinyOpt = Annotated[bool, typer.Option("--smoke", rich_help_panel="Model",
                                       help="Offline: an untrained tiny model when no --model is given; finetune, "
                                            "eval, check: the bundled sample (or a few rows of --data).")]
DataOpt = Annotated[Optional[str], typer.Option("--data", "-d", rich_help_panel="Model",
                                                help="Dataset: hub id, file or folder (default: the recipe's).")]
GateOpt = Annotated[list[str], typer.Option("--gate", help="Gate, e.g. `--gate 'f1>=0.9'` (repeatable): exit 3 when "
                                            "one fails. finetune, eval: on a final metric (adds to eval.gates); "
                                            "check: on a figure of the report.")]
FoldsOpt = Annotated[Optional[int], typer.Option("--folds", metavar="K", help="K-fold cross-validation: K runs, each "
                                                 "scored on its own fold of the training rows; prints each fold and "
                                                 "the mean ± std (--gate: on the mean).")]
# eval's --folds: hidden, so that asking for it gets taskcli's one line (folds.not_in_eval), not click's usage error
EvalFoldsOpt = Annotated[Optional[int], typer.Option("--folds", hidden=True)]

# finetune --push-to-hub and push
PushToHubOpt = Annotated[Optional[str], typer.Option("--push-to-hub", metavar="ORG/NAME", rich_help_panel="Hub",
                                                     help="Push the finished run to this Hub model repo (made if "
                                                          "new): not when a --gate fails. Needs `hf auth login` or "
                                                          "HF_TOKEN.")]
PrivateOpt = Annotated[bool, typer.Option("--private", rich_help_panel="Hub",
                                          help="Make the Hub repo private (when it is made; an existing repo keeps "
                                               "its visibility).")]

# export and benchmark
SavedModelOpt = Annotated[str, typer.Option(..., "--model", "-m", help="The fine-tuned model folder (a `taskcli "
                                                                      "finetune` output).")]
ToleranceOpt = Annotated[float, typer.Option("--tolerance", help="Most a metric may move against the PyTorch fp32 "
                                             "model before the command exits 3: absolute for 0..1 scores, relative "
                                             "for larger ones (perplexity).")]

# infer (adding a flag: a field in the task's options model, its type here, its parameter in cli.infer)
InputsArg = Annotated[Optional[list[str]], typer.Argument(help="Texts, text files (one input per line), tables "
                                                               "(.csv/.tsv/.jsonl/.json/.parquet: the input "
                                                               "columns), or - for stdin.")]
BatchSizeOpt = Annotated[Optional[int], typer.Option("--batch-size", "-b", rich_help_panel='Model', min=1,
                                                     help="Inputs per forward pass.")]
TopKOpt = Annotated[Optional[int], typer.Option("--top-k", rich_help_panel='Classification, fill-mask', min=1,
                                                help="Labels/fills per input; generative tasks: the top-k of "
                                                     "sampling (with --do-sample).")]
QuestionOpt = Annotated[Optional[str], typer.Option("--question", rich_help_panel='Question answering',
                                                    help="question-answering: the question.")]
ContextOpt = Annotated[Optional[str], typer.Option("--context", rich_help_panel='Question answering',
                                                   help="question-answering: the context (text or file).")]
MaxNewTokensOpt = Annotated[Optional[int], typer.Option("--max-new-tokens", rich_help_panel='Generation', min=1,
                                                        help="Generative tasks: tokens to generate.")]
TemperatureOpt = Annotated[Optional[float], typer.Option("--temperature", rich_help_panel='Generation', min=0.0,
                                                         help="Generative tasks: sampling temperature.")]
TopPOpt = Annotated[Optional[float], typer.Option("--top-p", rich_help_panel='Generation', min=0.0, max=1.0,
                                                  help="Generative tasks: nucleus sampling.")]
NumBeamsOpt = Annotated[Optional[int], typer.Option("--num-beams", rich_help_panel='Generation', min=1,
                                                    help="Generative tasks: beam search width.")]
DoSampleOpt = Annotated[Optional[bool], typer.Option("--do-sample/--greedy", rich_help_panel='Generation',
                                                     help="Generative tasks: sample or decode greedily.")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", rich_help_panel='Generation',
                                                help="Random seed for sampling.")]
LanguageOpt = Annotated[Optional[str], typer.Option("--language", rich_help_panel='Speech recognition',
                                                    help="ASR (Whisper): spoken language, e.g. en.")]
AsrTaskOpt = Annotated[Optional[str], typer.Option("--task", rich_help_panel='Speech recognition',
                                                   help="ASR (Whisper): transcribe or translate.")]
TimestampsOpt = Annotated[bool, typer.Option("--timestamps", rich_help_panel='Speech recognition',
                                             help="ASR: return segment times.")]
ColumnOpt = Annotated[Optional[str], typer.Option("--column", rich_help_panel='Inputs and output', metavar="NAME",
                                                  help="Tables: the column holding the input (default: the recipe's "
                                                       "data.columns, else text / question+context / image / audio "
                                                       "...).")]
SkipBadOpt = Annotated[bool, typer.Option("--skip-bad", rich_help_panel='Inputs and output',
                                          help="An input that cannot be used (empty line, unreadable file) gets an "
                                               "error row; the others run.")]
SaveMapsOpt = Annotated[Optional[str], typer.Option("--save-maps", "--save-masks", rich_help_panel='Vision',
                                                    help="image-segmentation: label maps as DIR/NAME.png (class "
                                                         "ids); depth-estimation: DIR/NAME.npy (metres) + a .png "
                                                         "preview.")]
SaveOverlaysOpt = Annotated[Optional[str], typer.Option("--save-overlays", rich_help_panel='Vision', metavar="DIR",
                                                        help="object-detection, image-segmentation, depth-"
                                                             "estimation: DIR/NAME.png, the image with its boxes / "
                                                             "class colours, or the depth in colour (never "
                                                             "overwrites).")]
ThresholdOpt = Annotated[Optional[float], typer.Option("--threshold", rich_help_panel='Vision', min=0.0, max=1.0,
                                                       help="object-detection: keep boxes scoring at least this; "
                                                            "multi-label text/image-classification: list every label "
                                                            "scoring at least this (default: the model's, chosen on "
                                                            "its eval split).")]
PrecisionOpt = Annotated[Optional[str], typer.Option("--precision", rich_help_panel='Model',
                                                     help="no (fp32), bf16, or fp16 (CUDA); same as --set "
                                                          "infer.precision=...")]
AsJsonOpt = Annotated[bool, typer.Option("--json", rich_help_panel='Inputs and output',
                                         help="One JSON object per input per line.")]
OutputOpt = Annotated[Optional[str], typer.Option("--output", "-o", rich_help_panel='Inputs and output', metavar="FILE",
                                                  help="Write the rows to FILE (.jsonl, .csv or .parquet) as they "
                                                       "are made.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", rich_help_panel='Inputs and output',
                                         help="Continue an --output file a killed run left (.jsonl/.csv).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", rich_help_panel='Inputs and output',
                                            help="Replace an existing --output file: it is replaced once the run's "
                                                 "first rows are written; a run that fails before keeps it.")]
ChunkSizeOpt = Annotated[Optional[int], typer.Option("--chunk-size", rich_help_panel='Inputs and output', min=1,
                                                     metavar="N",
                                                     help="Most inputs per chunk: rows come out after each (default:"
                                                          " 8 batches, at least 256; images/audio: 4 batches).")]
ShowProgressOpt = Annotated[Optional[bool], typer.Option("--progress/--no-progress",
                                                         rich_help_panel='Inputs and output',
                                                         help="Progress bar on stderr (default: when stderr is a "
                                                              "terminal and rows go to a file or the screen).")]
BenchPrecisionOpt = Annotated[Optional[str], typer.Option(
    "--precision", help="Comma-separated torch precisions: fp32, bf16, fp16 (CUDA only); a torch row each, fp32 "
    "always (the reference). ONNX formats stay fp32 / int8. Default: fp32.")]
BenchPlotOpt = Annotated[Optional[str], typer.Option(
    "--plot", metavar="FILE", help="Also draw the table to this new .png/.svg/.pdf: ms per input and the metric "
    "per row, with the torch fp32 metric and its --tolerance band.")]
