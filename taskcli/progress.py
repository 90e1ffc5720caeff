"""One rich progress display for training (stderr), instead of the libraries' tqdm bars and log lines."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from transformers import TrainerCallback

from taskcli.preflight import planned_steps  # noqa: F401 - counted there (the preflight needs it without transformers)


class RichProgress(TrainerCallback):
    """Step bar with epoch, loss and learning rate; each evaluation printed as a small table."""

    def __init__(self, log=None):
        self.console = Console(stderr=True)
        self.log = log or self.console.print
        self.progress = None
        self.task_id = None
        # shown as text: "—" until the first logged value (never "loss nan" before the first log)
        self.fields = {"epoch": 0.0, "loss": "—", "lr": "—"}

    def on_train_begin(self, args, state, control, **kwargs):
        self.progress = Progress(
            TextColumn("[bold]train[/]"),
            BarColumn(),
            TextColumn("step {task.completed}/{task.total}"),
            TextColumn("epoch {task.fields[epoch]:.2f}"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("lr {task.fields[lr]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.task_id = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, **self.fields)

    def on_step_end(self, args, state, control, **kwargs):
        self.fields["epoch"] = state.epoch or 0.0
        self.progress.update(self.task_id, completed=state.global_step, **self.fields)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs:
            self.fields["loss"] = f"{float(logs['loss']):.4f}"
        if "learning_rate" in logs:
            self.fields["lr"] = f"{float(logs['learning_rate']):.2e}"
        if self.progress:
            self.progress.update(self.task_id, **self.fields)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not metrics or self.progress is None:
            return
        table = Table(title=f"eval @ epoch {state.epoch or 0:.2f} (step {state.global_step})", title_justify="left")
        shown = {k[5:]: v for k, v in metrics.items() if k.startswith("eval_") and isinstance(v, (int, float))
                 and not k.endswith(("runtime", "per_second"))}
        for name in shown:
            table.add_column(name, justify="right")
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in shown.values()))
        self.progress.console.print(table)

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress:
            self.progress.update(self.task_id, completed=state.global_step)
        self.stop()

    def stop(self):
        """End the live display (also when training is interrupted), so later lines print below it."""
        if self.progress:
            self.progress.stop()
            self.progress = None


class EpochTicker(TrainerCallback):
    """Sets the EpochClock's epoch as each epoch begins (also the epoch a --resume continues: the restored
    state.epoch, e.g. 1.5, is in epoch 1)."""

    def __init__(self, clock):
        self.clock = clock

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.clock.epoch = int(state.epoch or 0)


class Evaluations(TrainerCallback):
    """Each training-time evaluation's metrics by step, as complete as the task's own callbacks made them (e.g.
    perplexity added to the loss): the final metrics reuse the one of the kept checkpoint."""

    def __init__(self):
        self.by_step: dict[int, dict] = {}

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics:
            self.by_step[state.global_step] = dict(metrics)


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def print_header(run, model_desc: str, parameters: tuple[int, int], device: str, args, out, resume_from, log=None,
                 sharding: str | None = None):
    """What is about to run, before the first step: model, parameters, device, precision, data, steps, output;
    `sharding`: train.fsdp / train.deepspeed in words."""
    info = run.data_info
    steps, how = planned_steps(args, info.train_rows)
    precision = run.recipe.train.precision if run.recipe.train.precision != "no" else "fp32"
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    grid.add_row("finetune", f"{run.task.name} · recipe {run.resolved.name}" + (" · --smoke" if run.smoke else ""))
    if run.learned.regression:  # said whenever it is on: float labels made it so unless params.regression is set
        grid.add_row("task", f"{run.task.name} · regression: 1 output, MSE")
    if run.learned.multi_label:  # 'multi-label: 12 labels (a list per row), sigmoid, BCE'
        from taskcli.multilabel import header

        grid.add_row("task", f"{run.task.name} · {header(run)}")
    grid.add_row("model", f"{model_desc} · {_count(parameters[0])} parameters, {_count(parameters[1])} trainable")
    train = f"{info.train_rows} rows" if info.train_rows is not None else "streamed"
    grid.add_row("data", f"{info.source} · train {train} (split '{info.train_split}') · eval "
                         f"{info.eval_rows} rows: {info.eval_made}")
    grid.add_row("device", f"{device} · precision {precision} · {args.world_size} process"
                           f"{'es' if args.world_size > 1 else ''} · global batch "
                           f"{args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps}"
                           + (f" · {sharding}" if sharding else ""))
    grid.add_row("steps", f"{steps} ({how})")
    grid.add_row("output", str(out))
    for note in info.notes:  # the preflight's notes (taskcli.preflight), also printed as `note:` lines before
        grid.add_row("note", note)
    if resume_from:
        state = _resumed_step(resume_from)
        grid.add_row("resume", f"continuing from {resume_from}" + (f" (step {state} of {steps})" if state else ""))
    from taskcli.preflight import say

    say(info.notes)  # as `note:` lines too, for logs that keep stderr's lines but not the table
    (log or Console(stderr=True).print)(grid)


def _resumed_step(checkpoint: str) -> int | None:
    import json
    from pathlib import Path

    try:
        return int(json.loads((Path(checkpoint) / "trainer_state.json").read_text())["global_step"])
    except (OSError, ValueError, KeyError):
        return None
