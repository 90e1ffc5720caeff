"""taskcli's display for counted work (infer's inputs, datasets' map rows) on stderr: rich only, so infer's path
imports no transformers Trainer code (taskcli.progress's TrainerCallback pulls in training_args and peft, ~0.4 s)."""

from __future__ import annotations

import contextlib
import os

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text


class _PerSecond(ProgressColumn):
    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        return Text(f"{task.speed:,.0f} {self.unit}/s" if task.speed else "", style="progress.data.speed")


def _rows_bar(label: str, total, unit: str, initial: int = 0) -> tuple[Progress, int]:
    """taskcli's display for counted work: label, bar, done/total UNIT, UNIT/s, elapsed, ETA (stderr)."""
    progress = Progress(TextColumn(f"[bold]{label}[/]"), BarColumn(),
                        TextColumn("{task.completed:,}/{task.total:,} " + unit), _PerSecond(unit),
                        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                        console=Console(stderr=True), transient=False)
    return progress, progress.add_task(label, total=total, completed=initial)


@contextlib.contextmanager
def counting(label: str, total: int, unit: str, initial: int = 0, shown: bool = True):
    """A progress display for a loop; yields advance(n)."""
    if not shown:
        yield lambda n: None
        return
    progress, task_id = _rows_bar(label, total, unit, initial)
    progress.start()
    try:
        yield lambda n: progress.advance(task_id, n)
    finally:
        progress.stop()


class RowsProgress:
    """What datasets' map reports (it counts rows on the main process, also with num_proc workers), drawn as
    taskcli's own display: rows done, rows/s, ETA. Stands in for datasets' tqdm bar (its constructor and
    update/close/context-manager use) while `preprocessing` is active."""

    made = 0  # bars drawn inside the current `preprocessing` block: none means every map was a cache hit

    def __init__(self, label: str, *_, total=None, initial=0, **__):
        type(self).made += 1
        self.progress, self.task_id = _rows_bar(label, total, "rows", initial)
        self.progress.start()

    def update(self, n=1):
        self.progress.advance(self.task_id, n)

    def close(self):
        self.progress.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


SHOWN_FROM_ROWS = 1000


@contextlib.contextmanager
def preprocessing(label: str, rows: int | None, log=None):
    """Show the progress of datasets' map calls inside this block as `label` (main process only), and say so when
    every one of them was read back from datasets' cache instead."""
    import functools

    import datasets.arrow_dataset as arrow_dataset

    if int(os.environ.get("RANK", "0")) != 0 or (rows is not None and rows < SHOWN_FROM_ROWS):
        yield  # a few rows take no time: nothing to watch, no note (smoke runs stay quiet)
        return
    original, RowsProgress.made = arrow_dataset.hf_tqdm, 0
    arrow_dataset.hf_tqdm = functools.partial(RowsProgress, label)
    try:
        yield
    finally:
        arrow_dataset.hf_tqdm = original
    if RowsProgress.made == 0 and rows:
        (log or Console(stderr=True).print)(f"[bold]{label}[/] {rows:,} rows read back from the datasets cache")
