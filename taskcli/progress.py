"""One rich progress display for training (stderr), instead of the libraries' tqdm bars and log lines."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from transformers import TrainerCallback


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
            self.progress.stop()
