"""The run report's worst examples: the eval rows the fine-tuned model gets most wrong, by their own loss.

Each eval row is scored alone with the Trainer's loss (the task's own loss function, whatever it is), the
highest losses are shown in ``worst_examples.md`` with the row's input, its reference and the model's
prediction (the same `predict` that `taskcli infer` runs); for the vision tasks the prediction is drawn over the
image (``worst/NAME.png``), as `infer --save-overlays` draws it.

Only tasks whose eval features are one per example take part (not question answering, whose long contexts
span several windows, nor the language-modelling tasks, whose features are packed blocks of text).
"""

from __future__ import annotations

import json
from pathlib import Path

SHOWN = 5  # rows in the table
SCORED = 200  # eval rows scored at most: one forward pass each, after training
TEXT_WIDTH = 160  # characters of an input or reference shown in the table


def ranked(trainer, features, limit: int = SCORED) -> list[tuple[int, float]]:
    """(eval row, loss) of the first `limit` rows, highest loss first."""
    import torch

    subset = features.select(range(min(limit, len(features))))
    args = trainer.args
    before = args.per_device_eval_batch_size
    args.per_device_eval_batch_size = 1  # one row per batch: the loss is that row's own
    try:
        loader = trainer.get_eval_dataloader(subset)
    finally:
        args.per_device_eval_batch_size = before
    model = trainer.model
    model.eval()
    losses = []
    with torch.no_grad():
        for i, batch in enumerate(loader):
            batch = trainer._prepare_inputs(batch)
            loss = trainer.compute_loss(model, batch)
            losses.append((i, float(loss)))
    return sorted(losses, key=lambda pair: -pair[1])


def _shown(value, width: int = TEXT_WIDTH) -> str:
    """A cell: lists of words joined, long text abbreviated, table characters escaped; nothing is "—"."""
    if value is None:
        return "—"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = " ".join(value)
    elif isinstance(value, dict):
        value = value.get("path") or json.dumps({k: v for k, v in value.items() if k != "bytes"}, default=str)
    text = " ".join(str(value).split())
    if len(text) > width:
        text = text[: width - 1] + "…"
    return text.replace("|", "\\|")


def _input_of(run, row: dict):
    """What `taskcli infer` would take for this row: its text, or its file's path; None when there is no such
    form (a decoded hub image, a sentence pair)."""
    role = next(iter(run.task.columns))
    value = row.get(role)
    if row.get("text_pair"):  # a sentence pair has no single-text form
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return " ".join(value)
    if isinstance(value, dict):
        value = value.get("path")
    if isinstance(value, str) and value.strip():
        return value if run.task.modality == "text" or Path(value).is_file() else None
    return None


def _reference(run, row: dict):
    roles = list(run.task.columns)
    role = next((r for r in reversed(roles) if r not in run.task.optional_columns and r != roles[0]), None)
    value = row.get(role) if role else None
    names = run.labels or []
    if isinstance(value, int) and 0 <= value < len(names) and not isinstance(value, bool):
        return names[value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value) and names:
        return [names[v] if 0 <= v < len(names) else v for v in value]
    return value


def write(run, model, examples, losses: list[tuple[int, float]], folder: Path) -> Path | None:
    """worst_examples.md (and worst/*.png for images) in `folder`; None when nothing was scored."""
    if not losses:
        return None
    import datasets

    for column, feature in examples.features.items():  # file references, not decoded media (audio needs torchcodec)
        if isinstance(feature, (datasets.Audio, datasets.Image)) and feature.decode:
            examples = examples.cast_column(column, type(feature)(decode=False))
    folder.mkdir(parents=True, exist_ok=True)
    top = losses[:SHOWN]
    from taskcli import inference, overlays

    visual = run.task.name in overlays.TASKS  # the tasks whose predictions infer --save-overlays draws
    lines = [f"# Worst eval examples\n\nThe {len(top)} highest-loss rows of the first {len(losses)} eval rows, "
             f"each scored alone.\n", "| # | row | loss | input | reference | prediction |", "|---|---|---|---|---|---|"]
    for rank, (index, loss) in enumerate(top, 1):
        row = examples[index]
        source = _input_of(run, row)
        prediction = "—"
        if source is not None:
            options = {"batch_size": 1, "top_k": 1, "as_json": True}
            if visual:
                options["save_overlays"] = str(folder / "worst" / f"{rank:02d}")
            try:
                result = inference.predict_args(run, model, [source], options)[0]
                rendered = run.task.render(source, result)
                # the table cells infer would show, without its empty ones ("—" marks a row with nothing found)
                shown_rows = [" ".join(str(v) for v in r.values() if str(v).strip() and str(v) != "—")
                              for r in rendered[:5]]
                prediction = "; ".join(r for r in shown_rows if r) or "(nothing)"
                if visual:
                    drawn = sorted((folder / "worst" / f"{rank:02d}").glob("*.png"))
                    prediction = " ".join(f"![{rank}]({p.relative_to(folder).as_posix()})" for p in drawn) or prediction
            except Exception as err:  # noqa: BLE001 - the report must not fail a finished run; the row says why
                prediction = f"(not predicted: {str(err).splitlines()[0][:80]})"
        raw = source if source is not None else row.get(next(iter(run.task.columns)))
        shown = _shown(Path(raw).name if run.task.modality != "text" and isinstance(raw, str) else raw)
        reference = _reference(run, row)
        if run.task.modality != "text" and isinstance(reference, str) and Path(reference).is_file():
            reference = Path(reference).name  # a mask or depth file
        lines.append(f"| {rank} | {index} | {loss:.4f} | {shown} | {_shown(reference)} | "
                     f"{_shown(prediction, 400) if not visual else prediction} |")
    path = folder / "worst_examples.md"
    path.write_text("\n".join(lines) + "\n")
    return path
