"""What the commands print for people: metric tables, infer's rows, the check report, export's parity and the
benchmark table (rich, imported when printing). Machines read `--json`, printed by the commands themselves."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def stdout():
    from rich.console import Console

    return Console()


def print_metrics(out, metrics: dict, title: str | None = None) -> None:
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
            sub.add_row(Text(name), *(number(row.get(c)) for c in cols))
        out.print(sub)


def number(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "–" if value is None else str(value)


def show_text(text: str, ended: bool) -> None:
    """on_text for the terminal: text as it is made (the current sys.stdout, not the one at import)."""
    sys.stdout.write(text + ("\n" if ended else ""))
    sys.stdout.flush()


def interactive() -> bool:
    """Whether a person reads stdout in a terminal: then text-generation streams a single prompt's tokens there
    (instead of a table after the fact). Piped or redirected output gets the table (or --json) only."""
    return sys.stdout.isatty()


INPUT_SHOWN = 60  # characters of an input the infer table shows; --json rows carry the whole input


def abbreviated(text: str) -> str:
    """A long input as its first characters, "…" and its length, so that its table row stays two lines
    instead of folding into dozens and pushing the results away. A long single word (a file path, a URL) keeps
    its end instead, where the file name is."""
    if len(text) <= INPUT_SHOWN:
        return text
    if not any(c.isspace() for c in text):
        return "…" + text[-(INPUT_SHOWN - 3):]
    head = " ".join(text.split())[:INPUT_SHOWN - 3].rstrip()
    return f"{head}…\n({len(text):,} chars)"


def infer_table(task_obj, done: list):
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
        shown = abbreviated(r.input if isinstance(r.input, str) else json.dumps(r.input, ensure_ascii=False))
        for k, row in enumerate(item_rows or [{}]):  # an input with nothing to show (no boxes) still has its row
            table.add_row(Text(shown if k == 0 else ""), *(Text(str(row.get(c, ""))) for c in cols))
    return table


def print_check(result: dict) -> None:
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


def print_parity(out, result: dict) -> None:
    """export's scores: one row per metric, one column per format, and the largest output difference."""
    from rich.table import Table

    from taskcli.metrics import scalar_metrics

    formats = list(result["metrics"])
    table = Table(show_header=True, header_style="bold")
    table.add_column("metric", overflow="fold")
    for fmt in formats:
        table.add_column(fmt, justify="right", no_wrap=True)
    for key in scalar_metrics(result["metrics"]["torch"]):
        table.add_row(key, *(number(result["metrics"][f].get(key)) for f in formats))
    table.add_row("largest output difference", "–", *(f"{result['max_abs_diff'][f]:.3g}" for f in formats[1:]))
    out.print(table)



def print_rows(run, writer, output: str | None, as_json: bool, show_progress: bool | None) -> None:
    """infer's rows as they come, a chunk at a time: into the --output file, as JSON lines, or (for people) one
    table at the end; a progress bar on stderr; the --skip-bad count."""
    from taskcli import results as results_mod

    if writer:
        writer.check_continues(run.total, run.before_start)
    total, start = run.total, writer.done if writer else 0
    if show_progress is None:  # --json into a pipe is a machine's stream: quiet unless asked
        show_progress = sys.stderr.isatty() and (writer is not None or not as_json or sys.stdout.isatty())
    from taskcli.counting import counting

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
        console = stdout()
        with console.capture() as captured:
            console.print(infer_table(run.task, table_rows))
        for line in captured.get().splitlines(keepends=True):  # line by line: see above
            sys.stdout.write(line)
        sys.stdout.flush()
    if skipped:
        print(f"skipped {skipped} of {done} inputs (--skip-bad): their rows say why", file=sys.stderr)


def print_benchmark(result: dict) -> None:
    """benchmark's table: one row per format and precision."""
    from rich import box
    from rich.table import Table

    out = stdout()
    out.print(f"[bold]{result['task']}[/] · {result['model']} · {result['samples']} rows of {result['data']}",
              highlight=False)
    # ms p50/p95: per input (a batch's forward over its rows); short headers and no column rules keep the table in 80
    # columns
    table = Table(show_header=True, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True, show_edge=False)
    for name in ("format", "dtype", "MB", "load s", result["rows"][0]["metric"], "ms p50", "ms p95", "inputs/s",
                 "parity"):
        table.add_column(name, justify="left" if name in ("format", "dtype") else "right", no_wrap=True)
    for row in result["rows"]:
        table.add_row(row["format"], row["precision"], f"{row['size_mb']:.1f}", f"{row['load_s']:.2f}",
                      number(row["value"]), f"{row['ms_p50']:.2f}", f"{row['ms_p95']:.2f}",
                      f"{row['inputs_per_s']:.1f}", row["parity"])
    out.print(table)
    if result.get("plot"):
        print(f"plot: {result['plot']}", file=sys.stderr)


def print_dry_run(result: dict) -> None:
    """finetune --dry-run for people: the recipe as recipe.yaml will hold it (usable as a --recipe file)."""
    import yaml

    there = "already exists" if result["output_dir_exists"] else "new"
    print(f"# Dry run, nothing trained. The recipe as {Path(result['output_dir']) / 'recipe.yaml'} would record "
          f"it (output folder: {there}):\n" + yaml.safe_dump(result["resolved"], sort_keys=False,
                                                             allow_unicode=True), end="")


def print_finetune(result: dict) -> None:
    """finetune's result for people: where the model went, the loss, the kept checkpoint's metrics."""
    out = stdout()
    out.print(f"[bold green]saved[/] {result['output_dir']}  (train loss {result['train_loss']:.4f}, "
              f"{result['train_runtime_s']:.1f}s)")
    scored = result["scored"]
    best = f" by {scored['metric']}" if scored["checkpoint"] == "best" else ""
    stopped = f"; stopped early at step {scored['stopped_early_at']} of {scored['planned_steps']}" \
        if "stopped_early_at" in scored else ""
    print_metrics(out, result["metrics"],
                  title=f"eval metrics ({scored['checkpoint']}{best}, step {scored['step']}{stopped})")
    if result.get("pushed"):
        print_pushed(result["pushed"])


def print_pushed(pushed: dict) -> None:
    """A push's result for people: where it went, the commit, how much."""
    stdout().print(f"[bold green]pushed[/] {pushed['folder']} to {pushed['url']}  ({len(pushed['files'])} files, "
                   f"{pushed['bytes'] / 1e6:.1f} MB; commit {pushed['commit'][:8]}: {pushed['message']})",
                   highlight=False, soft_wrap=True)


def print_tune(result: dict) -> None:
    """tune's trials (parameters, metric, state) and the best one."""
    from rich.table import Table

    out = stdout()
    names = sorted({k for row in result["trials"] for k in row["params"]})
    table = Table(header_style="bold", title=f"{result['task']} · {result['finished']} trials finished · "
                  f"{result['metric'] or 'metric'} ({result['direction']})", title_justify="left")
    for col in ["trial", *names, result["metric"] or "value", "state", "s"]:
        table.add_column(col, justify="left" if col == "state" else "right", overflow="fold")
    for row in result["trials"]:
        table.add_row(str(row["trial"]), *(short(row["params"].get(n)) for n in names), number(row["value"]),
                      row["state"], short(row["seconds"]))
    out.print(table)
    best = result["best"]
    if best:
        out.print(f"best: trial {best['trial']} ({best['value']:.6g}) · recipe {best['recipe']} · model "
                  f"{best['output_dir']}" + (f" · plots {', '.join(Path(p).name for p in result['plots'])}"
                                             if result["plots"] else ""), highlight=False)


def short(value) -> str:
    """A searched value: 4 significant digits (a learning rate of 3e-05 is not 0.0000)."""
    return f"{value:.4g}" if isinstance(value, float) else "–" if value is None else str(value)


def print_folds(result: dict) -> None:
    """finetune --folds for people: one row per fold, then the mean ± std of each single-number metric."""
    from rich.table import Table

    out = stdout()
    names = list(result["mean"])
    out.print(f"[bold green]saved[/] {result['folds']} folds in {result['output_dir']} ({result['split']}; "
              f"summary in folds.json)", highlight=False)
    table = Table(show_header=True, header_style="bold")
    table.add_column("fold")
    for name in names:
        table.add_column(name, justify="right", no_wrap=True)
    for fold in result["per_fold"]:
        table.add_row(str(fold["fold"]), *(number(fold["metrics"].get(n)) for n in names))
    table.add_row("mean ± std", *(f"{result['mean'][n]:.4f} ± {result['std'][n]:.4f}" for n in names),
                  style="bold")
    out.print(table)
