"""The `taskcli` command line: parse, resolve, call one engine function, print.

Keep this module light: `taskcli --help` must not import torch, transformers or datasets.
Results go to stdout (`--json` for machines); progress and logs go to stderr.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from taskcli import __version__
from taskcli.serve import Limits as ServeLimits  # (light: FastAPI loads when serve runs)

app = typer.Typer(
    name="taskcli",
    help="Fine-tune, evaluate and run Hugging Face models for common tasks, from YAML recipes.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)
recipes_app = typer.Typer(help="List, show and validate recipes.", no_args_is_help=True)
app.add_typer(recipes_app, name="recipes")

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


def _gates_failed(result: dict) -> None:
    """One stderr line per failed gate, then exit 3 (the results are printed already)."""
    failed = result.get("gates_failed") or []
    for line in failed:
        print(line, file=sys.stderr)
    if failed:
        from taskcli.gates import EXIT_FAILED

        raise typer.Exit(EXIT_FAILED)


def _stdout():
    from rich.console import Console

    return Console()


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


def _version(value: bool):
    if value:
        print(f"taskcli {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
):
    """Fine-tune, evaluate and run Hugging Face models for common tasks, from YAML recipes.

    Every task has three verbs: `finetune`, `eval` and `infer`. `--smoke` runs any recipe offline on a tiny
    model and a bundled sample.
    """


def _relaunch(num_processes: int) -> None:
    """Re-run this very command under Accelerate's launcher with N processes (DDP; gloo without GPUs)."""
    import subprocess

    argv = sys.argv[1:]
    cleaned, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--num-processes":
            skip = True
            continue
        if arg.startswith("--num-processes="):
            continue
        cleaned.append(arg)
    # `--cpu --num_processes N` silently runs one process (platform-facts.md); --multi_gpu really forks N,
    # and falls back to gloo on machines without GPUs.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "taskcli", *cleaned]
    env = dict(os.environ, TASKCLI_LAUNCHED="1")
    raise typer.Exit(subprocess.call(cmd, env=env))


@app.command(epilog="Examples: `taskcli finetune ner --smoke` · `taskcli finetune text-classification --recipe bert "
             "--set train.epochs=1` · `taskcli finetune qa --num-processes 2`")
@guarded
def finetune(
    task: TaskArg,
    recipe: RecipeOpt = None,
    model: ModelOpt = None,
    data: DataOpt = None,
    output_dir: Optional[str] = typer.Option(None, "--output-dir", "-o", help="Where the model goes."),
    set_: SetOpt = [],  # noqa: B006 - typer reads the default, never mutates it
    smoke: TinyOpt = False,
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest complete checkpoint "
                                                       "(a finished run: only if more steps are asked for)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output dir of an earlier taskcli run "
                                                              "(any other non-empty folder is refused)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved recipe as YAML (with --json: JSON), "
                                                          "train nothing."),
    num_processes: int = typer.Option(1, "--num-processes", min=1, help="Data-parallel processes (Accelerate)."),
    lora: bool = typer.Option(False, "--lora", help="Train LoRA adapters (peft) instead of every weight: train.lora "
                                                    "with its defaults unless the recipe sets it."),
    early_stopping: Optional[int] = typer.Option(None, "--early-stopping", min=1, metavar="N",
                                                 help="Stop after N evaluations without a better best metric."),
    class_weights: Optional[str] = typer.Option(None, "--class-weights", metavar="auto|{label: w}",
                                                help="Weight the loss per label (classification tasks)."),
    report_to: Optional[str] = typer.Option(None, "--report-to", metavar="tensorboard|wandb|mlflow|none",
                                            help="Experiment tracker(s), comma-separated."),
    gate: GateOpt = [],  # noqa: B006
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
):
    """Fine-tune a model for TASK from a recipe."""
    if num_processes > 1 and "WORLD_SIZE" not in os.environ and not dry_run:
        _relaunch(num_processes)
    from taskcli import finetune as finetune_mod

    import shlex

    # the command as typed (recorded in recipe.yaml, and the base of the resume command after Ctrl-C)
    command = "taskcli " + shlex.join(sys.argv[1:]) if sys.argv and Path(sys.argv[0]).name in ("taskcli", "__main__.py") else ""
    from taskcli.recipe import command_flags

    # the flags that are recipe fields are merged into the recipe (so recipe.yaml and --dry-run show them) and
    # checked with it: a bad value is a recipe error naming the flag
    flags = command_flags(model=model, data=data, output_dir=output_dir, lora=lora, gates=gate,
                          early_stopping=early_stopping, class_weights=class_weights, report_to=report_to)
    result = finetune_mod.finetune(task, recipe=recipe, sets=set_, smoke=smoke, flags=flags, resume=resume,
                                   overwrite=overwrite, dry_run=dry_run, command=command)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if result.get("finished"):  # --resume of a run that already did the steps asked for: nothing changed
        print(f"the run in {result['output_dir']} is finished (step {result['step']} of {result['planned']}): "
              "nothing to resume; ask for more steps (train.epochs or train.max_steps) to continue it",
              file=sys.stderr)
        if as_json:
            print(json.dumps(result))
        return
    if dry_run and not as_json:  # for people: the recipe as recipe.yaml will hold it (usable as a --recipe file)
        import yaml

        there = "already exists" if result["output_dir_exists"] else "new"
        print(f"# Dry run, nothing trained. The recipe as {Path(result['output_dir']) / 'recipe.yaml'} would record "
              f"it (output folder: {there}):\n" + yaml.safe_dump(result["resolved"], sort_keys=False,
                                                                 allow_unicode=True), end="")
        return
    if as_json or dry_run:
        print(json.dumps(result, indent=None if as_json else 2, default=float))
        return _gates_failed(result)
    out = _stdout()
    out.print(f"[bold green]saved[/] {result['output_dir']}  (train loss {result['train_loss']:.4f}, "
              f"{result['train_runtime_s']:.1f}s)")
    scored = result["scored"]
    best = f" by {scored['metric']}" if scored["checkpoint"] == "best" else ""
    stopped = f"; stopped early at step {scored['stopped_early_at']} of {scored['planned_steps']}" \
        if "stopped_early_at" in scored else ""
    _print_metrics(out, result["metrics"],
                   title=f"eval metrics ({scored['checkpoint']}{best}, step {scored['step']}{stopped})")
    _gates_failed(result)


@app.command(name="eval", epilog="Examples: `taskcli eval ner --model runs/token-classification-distilbert-smoke "
             "--smoke` · `taskcli eval text-classification --model my-model --data dev.csv --json`")
@guarded
def eval_(
    task: TaskArg,
    model: ModelOpt = None,
    recipe: RecipeOpt = None,
    data: DataOpt = None,
    split: Optional[str] = typer.Option(None, "--split", help="Split to evaluate (default: the recipe's eval split)."),
    set_: SetOpt = [],  # noqa: B006 - typer reads the default, never mutates it
    smoke: TinyOpt = False,
    gate: GateOpt = [],  # noqa: B006
    report: Optional[str] = typer.Option(None, "--report", metavar="DIR", help="Write the report's plots (PNG) "
                                                                               "into DIR (a new or empty folder)."),
    as_json: bool = typer.Option(False, "--json", help='Print {"task", "model", "split", "samples", "metrics"}.'),
):
    """Evaluate a model on a dataset with the task's metrics."""
    from taskcli import evaluate as evaluate_mod
    from taskcli.recipe import command_flags

    result = evaluate_mod.evaluate(task, recipe=recipe, sets=set_, smoke=smoke, split=split, report=report,
                                   flags=command_flags(model=model, data=data, gates=gate))
    if as_json:
        print(json.dumps(result, default=float))
        return _gates_failed(result)
    out = _stdout()
    out.print(f"[bold]{result['task']}[/] · {result['model']} · split {result['split']} · {result['samples']} samples"
              f" ({result['split_made']})", highlight=False)
    _print_metrics(out, result["metrics"])
    if result.get("report"):
        print(f"report: {len(result['report'])} plots in {report}", file=sys.stderr)
    _gates_failed(result)


def _print_metrics(out, metrics: dict, title: str | None = None) -> None:
    from rich.table import Table
    from rich.text import Text

    from taskcli.metrics import nested_tables, scalar_metrics

    # at 80 columns the names fold onto more lines (never cut to look-alike "long_class_na…") and the numbers
    # are never split
    scalars = {k: v for k, v in scalar_metrics(metrics).items() if v is not None}
    if title:  # its own line: a table title wraps at the (narrow) table's width
        out.print(Text(title, style="bold"))
    table = Table(show_header=True, header_style="bold")
    table.add_column("metric", overflow="fold")
    table.add_column("value", justify="right", no_wrap=True)
    for key, value in scalars.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    out.print(table)
    for key, first, cols, rows in nested_tables(metrics):
        sub = Table(title=key.replace("_", " "), title_justify="left", header_style="bold")
        sub.add_column(first, overflow="fold")
        for c in cols:
            sub.add_column(c, justify="right", no_wrap=True)
        for name, row in rows.items():
            sub.add_row(Text(name), *(_number(row.get(c)) for c in cols))
        out.print(sub)


def _number(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "–" if value is None else str(value)


@app.command(epilog="Examples: `taskcli infer ner \"Alice works for Acme in Paris.\" --model runs/ner` · "
             "`taskcli infer qa --question \"Who?\" --context \"...\"` · `cat texts.txt | taskcli infer "
             "text-classification - --json` · `taskcli infer asr clip.flac recordings/` · "
             "`taskcli infer image-cls photos/ --top-k 3` · `taskcli infer seg street.jpg --save-maps masks/`")
@guarded
def infer(
    task: TaskArg,
    inputs: Optional[list[str]] = typer.Argument(None, help="Texts, text files (one input per line), tables "
                                                            "(.csv/.tsv/.jsonl/.json/.parquet: the input columns), "
                                                            "or - for stdin."),
    model: ModelOpt = None,
    recipe: RecipeOpt = None,
    set_: SetOpt = [],  # noqa: B006 - typer reads the default, never mutates it
    smoke: TinyOpt = False,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", rich_help_panel='Model', min=1, help="Inputs per forward pass."),
    top_k: Optional[int] = typer.Option(None, "--top-k", rich_help_panel='Classification, fill-mask', min=1, help="Labels/fills per input; generative tasks: the top-k of sampling (with --do-sample)."),
    question: Optional[str] = typer.Option(None, "--question", rich_help_panel='Question answering', help="question-answering: the question."),
    context: Optional[str] = typer.Option(None, "--context", rich_help_panel='Question answering', help="question-answering: the context (text or file)."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", rich_help_panel='Generation', min=1, help="Generative tasks: tokens to generate."),
    temperature: Optional[float] = typer.Option(None, "--temperature", rich_help_panel='Generation', min=0.0, help="Generative tasks: sampling temperature."),
    top_p: Optional[float] = typer.Option(None, "--top-p", rich_help_panel='Generation', min=0.0, max=1.0, help="Generative tasks: nucleus sampling."),
    num_beams: Optional[int] = typer.Option(None, "--num-beams", rich_help_panel='Generation', min=1, help="Generative tasks: beam search width."),
    do_sample: Optional[bool] = typer.Option(None, "--do-sample/--greedy", rich_help_panel='Generation', help="Generative tasks: sample or decode greedily."),
    seed: Optional[int] = typer.Option(None, "--seed", rich_help_panel='Generation', help="Random seed for sampling."),
    language: Optional[str] = typer.Option(None, "--language", rich_help_panel='Speech recognition', help="ASR (Whisper): spoken language, e.g. en."),
    asr_task: Optional[str] = typer.Option(None, "--task", rich_help_panel='Speech recognition', help="ASR (Whisper): transcribe or translate."),
    timestamps: bool = typer.Option(False, "--timestamps", rich_help_panel='Speech recognition', help="ASR: return segment times."),
    column: Optional[str] = typer.Option(None, "--column", rich_help_panel='Inputs and output', metavar="NAME",
                                         help="Tables: the column holding the input (default: the recipe's "
                                              "data.columns, else text / question+context / image / audio ...)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", rich_help_panel='Inputs and output', help="An input that cannot be used (empty line, unreadable "
                                                            "file) gets an error row; the others run."),
    save_maps: Optional[str] = typer.Option(None, "--save-maps", "--save-masks", rich_help_panel='Vision',
                                            help="image-segmentation: label maps as DIR/NAME.png (class ids); "
                                                 "depth-estimation: DIR/NAME.npy (metres) + a .png preview."),
    save_overlays: Optional[str] = typer.Option(None, "--save-overlays", rich_help_panel='Vision', metavar="DIR",
                                                help="object-detection, image-segmentation, depth-estimation: "
                                                     "DIR/NAME.png, the image with its boxes / class colours, "
                                                     "or the depth in colour (never overwrites)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", rich_help_panel='Vision', min=0.0, max=1.0,
                                              help="object-detection: keep boxes scoring at least this."),
    precision: Optional[str] = typer.Option(None, "--precision", rich_help_panel='Model', help="no (fp32), bf16, or fp16 (CUDA); "
                                                                      "same as --set infer.precision=..."),
    as_json: bool = typer.Option(False, "--json", rich_help_panel='Inputs and output', help="One JSON object per input per line."),
    output: Optional[str] = typer.Option(None, "--output", "-o", rich_help_panel='Inputs and output', metavar="FILE",
                                         help="Write the rows to FILE (.jsonl, .csv or .parquet) as they are made."),
    resume: bool = typer.Option(False, "--resume", rich_help_panel='Inputs and output', help="Continue an --output file a killed run left (.jsonl/.csv)."),
    overwrite: bool = typer.Option(False, "--overwrite", rich_help_panel='Inputs and output', help="Replace an existing --output file: it is replaced "
                                   "once the run's first rows are written; a run that fails before keeps it."),
    chunk_size: Optional[int] = typer.Option(None, "--chunk-size", rich_help_panel='Inputs and output', min=1, metavar="N",
                                             help="Most inputs per chunk: rows come out after each (default: 8 batches, at least 256; images/audio: 4 batches)."),
    show_progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", rich_help_panel='Inputs and output',
                                                 help="Progress bar on stderr (default: when stderr is a terminal "
                                                      "and rows go to a file or the screen)."),
):
    """Run a model on inputs; results come back in input order, a chunk at a time."""
    from taskcli import inference

    # the flags given, by their field in the task's options model (taskcli.task.InferOptions: checked there)
    options: dict[str, Any] = {k: v for k, v in dict(
        batch_size=batch_size, top_k=top_k, question=question, context=context, max_new_tokens=max_new_tokens,
        temperature=temperature, top_p=top_p, num_beams=num_beams, do_sample=do_sample,
        seed=seed, language=language, mode=asr_task, timestamps=timestamps or None, skip_bad=skip_bad or None,
        column=column, save_maps=save_maps, threshold=threshold, save_overlays=save_overlays,
    ).items() if v is not None}
    sets = [*set_, f"infer.precision={precision}"] if precision is not None else set_
    from taskcli import results as results_mod
    from taskcli.errors import TaskcliError

    writer = None
    if output:
        results_mod.check(Path(output), resume, overwrite)
        writer = results_mod.Writer(Path(output), resume)
    elif resume or overwrite:
        raise TaskcliError(f"{'--resume' if resume else '--overwrite'} applies to an --output file", "add --output FILE")
    # a person reading stdout in a terminal sees text-generation's one prompt as it is made (not with --json)
    on_text = _show_text if _interactive() and not as_json else None
    run = inference.infer_stream(task, list(inputs or []), model=model, recipe=recipe, sets=sets, smoke=smoke,
                                 options=options, start=writer.done if writer else 0, chunk_size=chunk_size,
                                 on_text=on_text)
    if writer:
        writer.check_continues(run.total, run.before_start)
    total, start = run.total, writer.done if writer else 0
    if show_progress is None:  # --json into a pipe is a machine's stream: quiet unless asked
        show_progress = sys.stderr.isatty() and (writer is not None or not as_json or sys.stdout.isatty())
    from taskcli.progress import counting

    table_rows, skipped, written = [], 0, 0
    done = 0
    with counting("infer", total, "inputs", start, show_progress) as advance:
        for chunk in run.chunks:
            skipped += sum(r.bad for r in chunk)
            if writer:
                writer.write([r.row() for r in chunk])
                written += len(chunk)
            elif as_json:  # line by line, so a reader that leaves early (`| head -1`) is noticed (ends quietly)
                for r in chunk:
                    sys.stdout.write(results_mod.json_line(r.row()))
                sys.stdout.flush()
            else:  # a result already shown as it was made (on_text) is not printed again
                table_rows.extend(r for r in chunk if not r.streamed)
            advance(len(chunk))
            done += len(chunk)
    if writer:
        writer.close()
        before = f" ({start} were there already)" if start else ""
        print(f"wrote {written} rows to {output}{before}", file=sys.stderr)
    elif table_rows:
        console = _stdout()
        with console.capture() as captured:
            console.print(_infer_table(run.task, table_rows))
        for line in captured.get().splitlines(keepends=True):  # line by line: see above
            sys.stdout.write(line)
        sys.stdout.flush()
    if skipped:
        print(f"skipped {skipped} of {done} inputs (--skip-bad): their rows say why", file=sys.stderr)


def _show_text(text: str, ended: bool) -> None:
    """on_text for the terminal: text as it is made (the current sys.stdout, not the one at import)."""
    sys.stdout.write(text + ("\n" if ended else ""))
    sys.stdout.flush()


def _interactive() -> bool:
    """Whether a person reads stdout in a terminal: then text-generation streams a single prompt's tokens there
    (instead of a table after the fact). Piped or redirected output gets the table (or --json) only."""
    return sys.stdout.isatty()


INPUT_SHOWN = 60  # characters of an input the infer table shows; --json rows carry the whole input


def _abbreviated(text: str) -> str:
    """A long input as its first characters, "…" and its length, so that its table row stays two lines
    instead of folding into dozens and pushing the results away. A long single word (a file path, a URL) keeps
    its end instead, where the file name is."""
    if len(text) <= INPUT_SHOWN:
        return text
    if not any(c.isspace() for c in text):
        return "…" + text[-(INPUT_SHOWN - 3):]
    head = " ".join(text.split())[:INPUT_SHOWN - 3].rstrip()
    return f"{head}…\n({len(text):,} chars)"


def _infer_table(task_obj, done: list):
    """The table for people of a run's Results."""
    from rich.table import Table
    from rich.text import Text  # inputs and predictions are plain text: "[/]" in a text is not rich markup

    rendered = [[{"error": r.fields["error"]}] if r.bad else task_obj.render(r.input, r.fields) for r in done]
    cols = list(dict.fromkeys(c for item_rows in rendered for row in item_rows for c in row))
    table = Table(show_header=True, header_style="bold", show_lines=True)
    table.add_column("input", overflow="fold", max_width=INPUT_SHOWN)
    for c in cols:
        table.add_column(c, overflow="fold")
    for r, item_rows in zip(done, rendered):
        shown = _abbreviated(r.input if isinstance(r.input, str) else json.dumps(r.input, ensure_ascii=False))
        for k, row in enumerate(item_rows or [{}]):  # an input with nothing to show (no boxes) still has its row
            table.add_row(Text(shown if k == 0 else ""), *(Text(str(row.get(c, ""))) for c in cols))
    return table


@app.command(epilog="Examples: `taskcli serve ner --model runs/ner` · `curl -s localhost:8000/predict -H "
             "'Content-Type: application/json' -d '{\"inputs\": [\"Alice works in Paris\"]}'` · "
             "`TASKCLI_API_KEY=... taskcli serve ner -m runs/ner --host 0.0.0.0` · `pip install 'taskcli[serve]'`")
@guarded
def serve(
    task: TaskArg,
    model: ModelOpt = None,
    recipe: RecipeOpt = None,
    set_: SetOpt = [],  # noqa: B006 - typer reads the default, never mutates it
    smoke: TinyOpt = False,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", min=1,
                                             help="Most inputs answered by one forward pass."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", min=0.0,
                                      help="How long a request waits for others to share its batch."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="TASKCLI_API_KEY", rich_help_panel="Access",
                                          show_default=False,
                                          help="Require `Authorization: Bearer KEY` on every request."),
    cors_origin: Optional[list[str]] = typer.Option(None, "--cors-origin", rich_help_panel="Access",
                                                    help="Let web pages from this origin call the server (CORS; "
                                                         "repeatable). Off by default."),
    docs: bool = typer.Option(False, "--docs", rich_help_panel="Access",
                              help="Serve /docs, /redoc and /openapi.json (off by default)."),
    max_body_mb: float = typer.Option(ServeLimits.max_body_mb, "--max-body-mb", min=0.001, rich_help_panel="Limits",
                                      help="Largest request body, in MB (413 over it)."),
    max_inputs: int = typer.Option(ServeLimits.max_inputs, "--max-inputs", min=1, rich_help_panel="Limits",
                                   help="Most inputs in one request."),
    max_image_pixels: int = typer.Option(ServeLimits.max_image_pixels, "--max-image-pixels", min=1,
                                         rich_help_panel="Limits",
                                         help="Largest image, as decoded width x height (checked before decoding)."),
    max_audio_seconds: float = typer.Option(ServeLimits.max_audio_seconds, "--max-audio-seconds", min=0.001,
                                            rich_help_panel="Limits",
                                            help="Longest recording (read from its header, before decoding)."),
    max_concurrency: int = typer.Option(ServeLimits.max_concurrency, "--max-concurrency", min=1,
                                        rich_help_panel="Limits",
                                        help="Most open connections and requests at once (503 over it)."),
    max_queue: int = typer.Option(ServeLimits.max_queue, "--max-queue", min=1, rich_help_panel="Limits",
                                  help="Most requests waiting for the model (503 with Retry-After over it)."),
    read_timeout: float = typer.Option(ServeLimits.read_timeout, "--read-timeout", min=0.1, rich_help_panel="Limits",
                                       help="Seconds a client has to send a request's headers, and then its body."),
    keep_alive: int = typer.Option(ServeLimits.keep_alive, "--keep-alive", min=1, rich_help_panel="Limits",
                                   help="Seconds an idle keep-alive connection stays open."),
    graceful_timeout: int = typer.Option(ServeLimits.graceful_timeout, "--graceful-timeout", min=0,
                                         rich_help_panel="Limits",
                                         help="On SIGTERM, seconds to finish the requests in progress before exiting."),
):
    """Serve TASK's model over HTTP: POST /predict {"inputs": [...]} gives infer --json's rows; GET /health."""
    from taskcli import serve as serve_mod
    from taskcli.errors import TaskcliError

    if api_key is not None and not api_key.strip():
        raise TaskcliError("the API key is empty (--api-key or TASKCLI_API_KEY)", "give a long random key, or none")
    limits = ServeLimits(max_body_mb, max_inputs, max_image_pixels, max_audio_seconds, max_concurrency, max_queue,
                         read_timeout, keep_alive, graceful_timeout)
    serve_mod.serve(task, model, recipe, set_, smoke, host, port, batch_size, max_wait_ms,
                    lambda text: print(text, file=sys.stderr, flush=True), limits, api_key, cors_origin, docs)


@app.command(epilog="Examples: `taskcli check text-cls --data reviews.csv` · `taskcli check ner --smoke --json` · "
             "`taskcli check text-cls --model runs/tc --data more.csv` · "
             "`taskcli check image-cls --data photos/ --gate 'duplicates_across_splits==0' --report check/`")
@guarded
def check(
    task: TaskArg,
    model: ModelOpt = None,
    recipe: RecipeOpt = None,
    data: DataOpt = None,
    set_: SetOpt = [],  # noqa: B006 - typer reads the default, never mutates it
    smoke: TinyOpt = False,
    gate: GateOpt = [],  # noqa: B006 - e.g. duplicates_across_splits==0
    report: Optional[str] = typer.Option(None, "--report", metavar="DIR",
                                         help="Write label counts and the token length histogram (PNG) into DIR."),
    probe: bool = typer.Option(True, "--probe/--no-probe", help="Time a forward+backward pass of one batch."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
):
    """Check a dataset before training: rows, labels, duplicates, lengths, media, and the plan (exit 1 if a run would
    stop on it, 3 if a gate fails)."""
    from taskcli import check as check_mod
    from taskcli.recipe import command_flags

    # --gate is on the report's figures here, not a recipe field
    result = check_mod.check(task, recipe=recipe, sets=set_, smoke=smoke, gates=gate, report=report, probe=probe,
                             flags=command_flags(model=model, data=data))
    if as_json:
        print(json.dumps(result, default=float))
    else:
        _print_check(result)
    for note in result["notes"]:
        print(f"note: {note}", file=sys.stderr)
    for problem in result["problems"]:
        print(f"problem: {problem}", file=sys.stderr)
    if result["problems"]:
        raise typer.Exit(1)
    _gates_failed(result)


def _print_check(result: dict) -> None:
    """The check report for people: one line per split, lengths, the plan, and the figures --gate reads."""
    print(f"{result['task']} · recipe {result['recipe']} · {result['data']} · model {result['model']}")
    for name, split in result["splits"].items():
        line = f"{name}: {split['rows']} rows, {split['duplicates']} duplicate inputs"
        if split.get("labels"):
            shown = ", ".join(f"{k} {v}" for k, v in list(split["labels"].items())[:8])
            line += f"; labels {shown}{' ...' if len(split['labels']) > 8 else ''} (imbalance {split['imbalance']:g}x)"
        if split.get("image_sizes", {}).get("width"):
            sizes = split["image_sizes"]
            line += (f"; images {sizes['width']['min']}-{sizes['width']['max']} x {sizes['height']['min']}-"
                     f"{sizes['height']['max']} px ({sizes['distinct']} sizes)")
        if split.get("audio_seconds"):
            secs = split["audio_seconds"]
            line += f"; audio {secs['min']:.1f}-{secs['max']:.1f} s (total {secs['total']:.0f} s)"
        print(line)
    if result.get("duplicates_across_splits") is not None:
        print(f"eval rows whose input is in train: {result['duplicates_across_splits']}")
    lengths = result.get("lengths")
    if lengths:
        print(f"tokens per input: {lengths['min']}-{lengths['max']} (median {lengths['median']:g}); "
                  f"{lengths['cut']} over data.max_length {lengths['max_length']} would be cut")
    plan, probe = result["plan"], result["plan"].get("probe", {})
    steps = f"{plan.get('steps_per_epoch', '?')} steps per epoch, {plan.get('total_steps', '?')} in all"
    if probe.get("seconds_per_batch") is not None:
        steps += (f"; probe ({probe['device']}, batch {probe['batch_rows']}): {probe['seconds_per_batch']:.3f} s per "
                  f"batch, peak {probe['peak_memory_mb']:.0f} MB ({probe['peak_memory_of']})")
    if plan.get("estimated_epoch_seconds") is not None:
        steps += f"; about {plan['estimated_epoch_seconds']:g} s per epoch"
    print(f"plan: {steps}")
    if result.get("report"):
        print(f"report: {len(result['report'])} plots in {Path(result['report'][0]).parent}", file=sys.stderr)


@app.command()
@guarded
def tasks(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")):
    """List the tasks: aliases, default architecture, recipes and metrics."""
    from taskcli import recipe as recipe_mod
    from taskcli import registry

    rows = []
    for t in registry.all_tasks():
        names = sorted(recipe_mod.shipped_name(p).split("/", 1)[1] for p in recipe_mod.shipped()
                       if p.parent.name == t.name)
        names.sort(key=lambda n: n != t.default_recipe)
        default_type = ""
        default_path = recipe_mod.RECIPES_DIR / t.name / f"{t.default_recipe}.yaml"
        if default_path.is_file():
            data, _ = recipe_mod.read_yaml(default_path)
            default_type = str(data.get("model", {}).get("type", ""))
        rows.append({"task": t.name, "aliases": list(t.aliases), "modality": t.modality.name,
                     "default_recipe": t.default_recipe, "default_architecture": default_type, "recipes": names,
                     "metrics": list(t.metric_names)})
    if as_json:
        print(json.dumps(rows))
        return
    from rich.table import Table

    table = Table(header_style="bold")
    for col in ("task", "aliases", "recipes (default first)", "architecture", "metrics"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["task"], ", ".join(r["aliases"]), ", ".join(r["recipes"]), r["default_architecture"],
                      ", ".join(r["metrics"]))
    _stdout().print(table)


@recipes_app.command("list")
@guarded
def recipes_list(
    task: Optional[str] = typer.Argument(None, help="Only this task's recipes."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
):
    """List shipped recipes (name, task, checkpoint, dataset)."""
    from rich.table import Table

    from taskcli import recipe as recipe_mod
    from taskcli import registry

    only = registry.get(task).name if task else None
    rows = []
    for path in recipe_mod.shipped():
        data, _ = recipe_mod.read_yaml(path)
        if not only or data.get("task") == only:
            rows.append({"recipe": recipe_mod.shipped_name(path), "task": str(data.get("task")),
                         "checkpoint": str(data.get("model", {}).get("checkpoint")),
                         "dataset": str((data.get("data") or {}).get("dataset"))})
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(header_style="bold")
    for col in ("recipe", "task", "checkpoint", "dataset"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row.values())
    _stdout().print(table)


@recipes_app.command("show")
@guarded
def recipes_show(name: str = typer.Argument(..., help="Recipe name (task/name) or path.")):
    """Print a recipe's YAML."""
    from taskcli import recipe as recipe_mod
    from taskcli import registry

    path = recipe_mod.RECIPES_DIR / f"{name}.yaml"
    if not path.is_file():
        task_name, _, rest = name.partition("/")
        path = recipe_mod.find(registry.get(task_name), rest or None)
    print(path.read_text(encoding="utf-8"), end="")


@recipes_app.command("validate")
@guarded
def recipes_validate(paths: list[str] = typer.Argument(..., help="Recipe YAML files or shipped names (task/name).")):
    """Validate recipes (files, or shipped names such as `ner/bert`); every file is checked and every error is
    reported with its dotted path and line; the exit code is 1 when any recipe is invalid."""
    from pathlib import Path

    from taskcli import recipe as recipe_mod
    from taskcli.errors import TaskcliError

    failed = 0
    for p in paths:
        try:
            path = Path(p)
            if not path.exists() and "/" in p and not p.endswith((".yaml", ".yml")):  # a shipped name
                from taskcli import registry

                task, _, name = p.partition("/")
                path = recipe_mod.find(registry.get(task), name)
            task_name, _ = recipe_mod.validate_file(path)
            print(f"ok  {p}  ({task_name})")
        except TaskcliError as err:
            failed += 1
            print(f"error: {p}: {err}", file=sys.stderr)
    if failed:
        raise typer.Exit(1)


# export and benchmark
SavedModelOpt = Annotated[str, typer.Option(..., "--model", "-m", help="The fine-tuned model folder (a `taskcli "
                                                                      "finetune` output).")]
ToleranceOpt = Annotated[float, typer.Option("--tolerance", help="Most a metric may move against the PyTorch fp32 "
                                             "model before the command exits 3: absolute for 0..1 scores, relative "
                                             "for larger ones (perplexity).")]


@app.command(epilog="Examples: `taskcli export ner --model runs/ner` · `taskcli export ner --model runs/ner "
             "--quantize int8 -o runs/ner-int8 --tolerance 0.01`")
@guarded
def export(
    task: TaskArg,
    model: SavedModelOpt,
    fmt: str = typer.Option("onnx", "--format", help="Export format (onnx)."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="Also write an int8 model (dynamic "
                                                                    "quantization), the one infer then runs."),
    out: Optional[str] = typer.Option(None, "--output", "-o", help="Output folder (default MODEL-onnx; new or empty)."),
    tolerance: ToleranceOpt = 0.005,
    recipe: RecipeOpt = None,
    data: DataOpt = None,
    set_: SetOpt = [],  # noqa: B006
    smoke: TinyOpt = False,
    as_json: bool = typer.Option(False, "--json", help="Print the export report as JSON."),
):
    """Export a fine-tuned model to ONNX (and int8), scored against the PyTorch model on the same rows (exit 3 if a
    metric moved by more than --tolerance)."""
    from taskcli import export as export_mod

    if fmt != "onnx":
        from taskcli.errors import TaskcliError

        raise TaskcliError(f"unknown --format {fmt!r}", "use --format onnx")
    result = export_mod.export(task, model, out, quantize, tolerance, recipe, data, set_, smoke)
    if as_json:
        print(json.dumps(result, default=float))
    else:
        out_ = _stdout()
        out_.print(f"[bold]{result['task']}[/] · {result['model']} -> {result['output']} "
                   f"({', '.join(result['files'].values())}) · {result['samples']} rows of {result['data']}",
                   highlight=False)
        _print_parity(out_, result)
    _gates_failed({"gates_failed": result["parity_failed"]})



def _print_parity(out, result: dict) -> None:
    """export's scores: one row per metric, one column per format, and the largest output difference."""
    from rich.table import Table

    from taskcli.metrics import scalar_metrics

    formats = list(result["metrics"])
    table = Table(show_header=True, header_style="bold")
    table.add_column("metric", overflow="fold")
    for fmt in formats:
        table.add_column(fmt, justify="right", no_wrap=True)
    for key in scalar_metrics(result["metrics"]["torch"]):
        table.add_row(key, *(_number(result["metrics"][f].get(key)) for f in formats))
    table.add_row("largest output difference", "–", *(f"{result['max_abs_diff'][f]:.3g}" for f in formats[1:]))
    out.print(table)



@app.command(epilog="Examples: `taskcli benchmark ner --model runs/ner` · `taskcli benchmark ner --model runs/ner "
             "--formats torch,onnx-int8 --data dev.jsonl --json`")
@guarded
def benchmark(
    task: TaskArg,
    model: SavedModelOpt,
    formats: str = typer.Option("torch,onnx,onnx-int8", "--formats", help="Comma-separated: torch, onnx, onnx-int8."),
    tolerance: ToleranceOpt = 0.005,
    recipe: RecipeOpt = None,
    data: DataOpt = None,
    set_: SetOpt = [],  # noqa: B006
    smoke: TinyOpt = False,
    as_json: bool = typer.Option(False, "--json", help="Print the table as JSON."),
):
    """One table across formats: size on disk, the task's main metric, ms per input (p50/p95), inputs/s, and
    pass/fail against the PyTorch fp32 metric (exit 3 if a format fails)."""
    from taskcli import benchmark as benchmark_mod

    result = benchmark_mod.benchmark(task, model, formats, data, tolerance, recipe, set_, smoke)
    if as_json:
        print(json.dumps(result, default=float))
    else:
        from rich.table import Table

        out = _stdout()
        out.print(f"[bold]{result['task']}[/] · {result['model']} · {result['samples']} rows of {result['data']}",
                  highlight=False)
        table = Table(show_header=True, header_style="bold")
        # ms p50/p95: per input (a batch's forward over its rows); short headers keep the table in 80 columns
        for name in ("format", "MB", "load s", result["rows"][0]["metric"], "ms p50", "ms p95", "inputs/s", "parity"):
            table.add_column(name, justify="left" if name == "format" else "right", no_wrap=True)
        for row in result["rows"]:
            table.add_row(row["format"], f"{row['size_mb']:.1f}", f"{row['load_s']:.2f}", _number(row["value"]),
                          f"{row['ms_p50']:.2f}",
                          f"{row['ms_p95']:.2f}", f"{row['inputs_per_s']:.1f}", row["parity"])
        out.print(table)
    _gates_failed({"gates_failed": [line for row in result["rows"] for line in row["failed"]]})


def run() -> None:
    app()
