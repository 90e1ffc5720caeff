"""The `taskcli` command line: parse, resolve, call one engine function, print.

Keep this module light: `taskcli --help` must not import torch, transformers or datasets.
Results go to stdout (`--json` for machines); progress and logs go to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from taskcli import __version__, cli_catalog, cli_tune, collector, display
from taskcli import push as push_mod  # (light: huggingface_hub loads when a push runs)
from taskcli.cli_common import (AsJsonOpt, AsrTaskOpt, BatchSizeOpt, ChunkSizeOpt, ColumnOpt, ContextOpt, DataOpt, DoSampleOpt, GateOpt,
                               BenchPlotOpt, BenchPrecisionOpt, EvalFoldsOpt, FoldsOpt,
                               InputsArg, LanguageOpt, MaxNewTokensOpt, ModelOpt, NumBeamsOpt, OutputOpt, OverwriteOpt, PrecisionOpt,
                               PrivateOpt, PushToHubOpt, QuestionOpt, RecipeOpt, ResumeOpt, SaveMapsOpt, SaveOverlaysOpt, SavedModelOpt, SeedOpt, SetOpt,
                               ShowProgressOpt, SkipBadOpt, TaskArg, TemperatureOpt, ThresholdOpt, TimestampsOpt, TinyOpt, ToleranceOpt,
                               TopKOpt, TopPOpt, gates_failed, guarded)
from taskcli.folds import check_request as check_folds_request, not_in_eval as folds_not_in_eval  # (light)
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
app.add_typer(cli_catalog.recipes_app, name="recipes")
app.command()(cli_catalog.tasks)

def _version(value: bool):
    if value:
        print(f"taskcli {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version.")):
    """Fine-tune, evaluate and run Hugging Face models for common tasks, from YAML recipes.

    Every task has three verbs: `finetune`, `eval` and `infer`. `--smoke` runs any recipe offline on a tiny
    model and a bundled sample.
    """


def _relaunch(num_processes: int) -> None:
    """Re-run this very command under Accelerate's launcher with N processes (DDP; gloo without GPUs)."""
    import subprocess
    import tempfile

    cleaned, skip = [], False  # this command's arguments less --num-processes and its value
    for arg in sys.argv[1:]:
        if not skip and arg != "--num-processes" and not arg.startswith("--num-processes="):
            cleaned.append(arg)
        skip = arg == "--num-processes" and not skip
    env = dict(os.environ, TASKCLI_LAUNCHED="1")
    # `--cpu --num_processes N` silently runs one process (platform-facts.md); --multi_gpu really forks N,
    # and falls back to gloo on machines without GPUs. torchrun, under the launcher, makes a folder for its workers'
    # logs in the temp dir and never removes it: one left behind per run unless given one, removed here at the end.
    with tempfile.TemporaryDirectory(prefix="taskcli-launch-") as logs:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
               str(num_processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--log_dir", logs, "-m", "taskcli", *cleaned]
        code = subprocess.call(cmd, env=env)
    raise typer.Exit(code)


@app.command(epilog="Examples: `taskcli finetune ner --smoke` · `taskcli finetune text-classification --recipe bert "
             "--set train.epochs=1` · `taskcli finetune qa --num-processes 2` · "
             "`taskcli finetune ner --gate 'f1>=0.8' --push-to-hub my-name/ner-distilbert`")
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
    push_to_hub: PushToHubOpt = None,
    private: PrivateOpt = False,
    folds: FoldsOpt = None,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
):
    """Fine-tune a model for TASK from a recipe."""
    if folds is not None:  # before the Hub token is asked for
        check_folds_request(folds, resume, push_to_hub)
    token = push_mod.ready(push_to_hub) if push_to_hub and not dry_run else None  # no token: said before training
    if num_processes > 1 and "WORLD_SIZE" not in os.environ and not dry_run:
        _relaunch(num_processes)
    from taskcli import finetune as finetune_mod
    from taskcli.recipe import command_flags

    # the flags that are recipe fields are merged into the recipe (so recipe.yaml and --dry-run show them) and
    # checked with it: a bad value is a recipe error naming the flag
    flags = command_flags(model=model, data=data, output_dir=output_dir, lora=lora, gates=gate,
                          early_stopping=early_stopping, class_weights=class_weights, report_to=report_to)
    result = finetune_mod.finetune(task, recipe=recipe, sets=set_, smoke=smoke, flags=flags, resume=resume,
                                   overwrite=overwrite, dry_run=dry_run, command=_typed_command(), folds=folds)
    if int(os.environ.get("RANK", "0")) == 0:
        _print_finetune(result, as_json, dry_run, push_mod.after_finetune(result, push_to_hub, private, token, _log))


def _print_finetune(result: dict, as_json: bool, dry_run: bool, unpushed: str | None) -> None:
    """finetune's result on stdout (process 0 only), then the gates' exit (and why nothing was pushed)."""
    if result.get("finished"):  # --resume of a run that already did the steps asked for: nothing changed
        print(f"the run in {result['output_dir']} is finished (step {result['step']} of {result['planned']}): "
              "nothing to resume; ask for more steps (train.epochs or train.max_steps) to continue it",
              file=sys.stderr)
        if as_json:
            print(json.dumps(result))
        return
    if dry_run and not as_json:  # for people: the recipe as recipe.yaml will hold it (usable as a --recipe file)
        return display.print_dry_run(result)
    if as_json or dry_run:
        print(json.dumps(result, indent=None if as_json else 2, default=float))
        return gates_failed(result, unpushed)
    display.print_folds(result) if "per_fold" in result else display.print_finetune(result)
    gates_failed(result, unpushed)


def _typed_command() -> str:
    """The command as typed (recorded in recipe.yaml, and the base of the resume command after Ctrl-C)."""
    import shlex

    return "taskcli " + shlex.join(sys.argv[1:]) if sys.argv and Path(sys.argv[0]).name in ("taskcli", "__main__.py") else ""


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@app.command(epilog="Examples: `taskcli push runs/ner my-name/ner-distilbert` · `taskcli push runs/ner "
             "my-org/ner --private --json` · log in first: `hf auth login` (or set HF_TOKEN)")
@guarded
def push(
    folder: Path = typer.Argument(..., metavar="DIR", help="A finished run's folder (a `taskcli finetune` output)."),
    repo_id: str = typer.Argument(..., metavar="ORG/NAME", help="The Hub model repo (made if new)."),
    private: PrivateOpt = False,
    as_json: bool = typer.Option(False, "--json", help="Print the push as JSON (repo, url, commit, files...)."),
):
    """Push a finished run to the Hugging Face Hub: model, tokenizer/processor, recipe.yaml, metrics, model card and
    report, in one commit; never the checkpoint-* folders or optimizer states."""
    result = push_mod.push(folder, repo_id, private, log=_log)
    if as_json:
        print(json.dumps(result))
    else:
        display.print_pushed(result)


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
    folds: EvalFoldsOpt = None,
):
    """Evaluate a model on a dataset with the task's metrics."""
    from taskcli import evaluate as evaluate_mod
    from taskcli.recipe import command_flags

    if folds is not None:
        raise folds_not_in_eval(task, folds)

    result = evaluate_mod.evaluate(task, recipe=recipe, sets=set_, smoke=smoke, split=split, report=report,
                                   flags=command_flags(model=model, data=data, gates=gate))
    if as_json:
        print(json.dumps(result, default=float))
        return gates_failed(result)
    out = display.stdout()
    out.print(f"[bold]{result['task']}[/] · {result['model']} · split {result['split']} · {result['samples']} samples"
              f" ({result['split_made']})", highlight=False)
    display.print_metrics(out, result["metrics"])
    if result.get("report"):
        print(f"report: {len(result['report'])} plots in {report}", file=sys.stderr)
    gates_failed(result)


@app.command(epilog="Examples: `taskcli infer ner \"Alice works for Acme in Paris.\" --model runs/ner` · "
             "`taskcli infer qa --question \"Who?\" --context \"...\"` · `cat texts.txt | taskcli infer "
             "text-classification - --json` · `taskcli infer asr clip.flac recordings/` · "
             "`taskcli infer image-cls photos/ --top-k 3` · `taskcli infer seg street.jpg --save-maps masks/`")
@guarded
def infer(
    task: TaskArg,
    inputs: InputsArg = None,
    model: ModelOpt = None,
    recipe: RecipeOpt = None,
    set_: SetOpt = [],  # noqa: B006 - typer reads the default, never mutates it
    smoke: TinyOpt = False,
    batch_size: BatchSizeOpt = None,
    top_k: TopKOpt = None,
    question: QuestionOpt = None,
    context: ContextOpt = None,
    max_new_tokens: MaxNewTokensOpt = None,
    temperature: TemperatureOpt = None,
    top_p: TopPOpt = None,
    num_beams: NumBeamsOpt = None,
    do_sample: DoSampleOpt = None,
    seed: SeedOpt = None,
    language: LanguageOpt = None,
    asr_task: AsrTaskOpt = None,
    timestamps: TimestampsOpt = False,
    column: ColumnOpt = None,
    skip_bad: SkipBadOpt = False,
    save_maps: SaveMapsOpt = None,
    save_overlays: SaveOverlaysOpt = None,
    threshold: ThresholdOpt = None,
    precision: PrecisionOpt = None,
    as_json: AsJsonOpt = False,
    output: OutputOpt = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    chunk_size: ChunkSizeOpt = None,
    show_progress: ShowProgressOpt = None,
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
    on_text = display.show_text if display.interactive() and not as_json else None
    run = inference.infer_stream(task, list(inputs or []), model=model, recipe=recipe, sets=sets, smoke=smoke,
                                 options=options, start=writer.done if writer else 0, chunk_size=chunk_size,
                                 on_text=on_text)
    display.print_rows(run, writer, output, as_json, show_progress)
    collector.skip_teardown()  # its results, maps and overlays are closed files by now


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
        display.print_check(result)
    for note in result["notes"]:
        print(f"note: {note}", file=sys.stderr)
    for problem in result["problems"]:
        print(f"problem: {problem}", file=sys.stderr)
    if result["problems"]:
        raise typer.Exit(1)
    gates_failed(result)


@app.command(epilog="Examples: `taskcli export ner --model runs/ner` · `taskcli export ner --model runs/ner "
             "--quantize int8 -o runs/ner-int8 --tolerance 0.01`")
@guarded
def export(
    task: TaskArg,
    model: Optional[str] = typer.Option(None, "--model", "-m", help="The model folder (a `taskcli finetune` output) "
                                        "or hub id; default: the recipe's model."),
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
        out_ = display.stdout()
        out_.print(f"[bold]{result['task']}[/] · {result['model']} -> {result['output']} "
                   f"({', '.join(result['files'].values())}) · {result['samples']} rows of {result['data']}",
                   highlight=False)
        display.print_parity(out_, result)
    gates_failed({"gates_failed": result["parity_failed"]})


@app.command(epilog="Examples: `taskcli benchmark ner --model runs/ner` · `taskcli benchmark ner --model runs/ner "
             "--formats torch,onnx-int8 --precision fp32,bf16 --data dev.jsonl --plot bench.png --json`")
@guarded
def benchmark(
    task: TaskArg,
    model: SavedModelOpt,
    formats: str = typer.Option("torch,onnx,onnx-int8", "--formats", help="Comma-separated: torch, onnx, onnx-int8."),
    precision: BenchPrecisionOpt = None,
    tolerance: ToleranceOpt = 0.005,
    recipe: RecipeOpt = None,
    data: DataOpt = None,
    set_: SetOpt = [],  # noqa: B006
    smoke: TinyOpt = False,
    plot: BenchPlotOpt = None,
    as_json: bool = typer.Option(False, "--json", help="Print the table as JSON."),
):
    """Formats x precisions: size, main metric, ms/input p50/p95, inputs/s, pass/fail vs torch fp32 (exit 3: a fail)."""
    from taskcli import benchmark as benchmark_mod

    result = benchmark_mod.benchmark(task, model, formats, data, tolerance, recipe, set_, smoke, precision, plot)
    if as_json:
        print(json.dumps(result, default=float))
    else:
        display.print_benchmark(result)
    gates_failed({"gates_failed": [line for row in result["rows"] for line in row["failed"]]})


app.command(epilog=cli_tune.EPILOG)(cli_tune.tune)


def run() -> None:
    collector.run(app)  # fewer collections while the libraries load; infer leaves out the teardown (collector.py)
