"""The run report's worst examples: the eval rows the fine-tuned model gets most wrong, by their own loss.

Each eval row is scored alone with the Trainer's loss (the task's own loss function, whatever it is), the
highest losses are shown in ``worst_examples.md`` with the row's input, its reference and the model's
prediction (the eval row's input through the same inference loop that `taskcli infer` runs, one session for the
report); for the vision tasks the prediction is drawn over the image (``worst/NAME.png``), as `infer
--save-overlays` draws it.

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
    """The row's input as `taskcli infer` reads one: its text (a sentence pair as {"text", "text_pair"}), or its
    file's path; None when there is none (a decoded hub image)."""
    role = next(iter(run.task.columns))
    value = row.get(role)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return " ".join(value)
    if isinstance(value, dict):
        value = value.get("path")
    if not (isinstance(value, str) and value.strip()):
        return None
    if run.task.modality.media:
        return value if Path(value).is_file() else None
    return {"text": value, "text_pair": row["text_pair"]} if row.get("text_pair") else value


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
    from taskcli import inference
    from taskcli.task import RankedOptions

    kind = run.task.infer_options
    visual = "save_overlays" in kind.model_fields  # the tasks whose predictions infer --save-overlays draws
    options = {"batch_size": 1, **({"top_k": 1} if issubclass(kind, RankedOptions) else {}),
               **({"save_overlays": str(folder / "worst")} if visual else {})}
    try:
        session, failed = inference.session(run, model, options), None
    except Exception as err:  # noqa: BLE001 - the report must not fail a finished run; its rows say why
        session, failed = None, f"(not predicted: {str(err).splitlines()[0][:80]})"
    lines = [f"# Worst eval examples\n\nThe {len(top)} highest-loss rows of the first {len(losses)} eval rows, "
             f"each scored alone.\n", "| # | row | loss | input | reference | prediction |", "|---|---|---|---|---|---|"]
    for rank, (index, loss) in enumerate(top, 1):
        row = examples[index]
        source = _input_of(run, row)
        prediction = "—" if source is None or session else failed
        if source is not None and session:
            try:
                result = inference.results(session[1], session[0], [(f"eval row {index}", source)])[0]
                rendered = run.task.render(source, result.fields)
                # the table cells infer would show, without its empty ones ("—" marks a row with nothing found)
                shown_rows = [" ".join(str(v) for v in r.values() if str(v).strip() and str(v) != "—")
                              for r in rendered[:5]]
                prediction = "; ".join(r for r in shown_rows if r) or "(nothing)"
                if result.overlay is not None:
                    prediction = f"![{rank}]({Path(result.overlay).relative_to(folder).as_posix()})"
            except Exception as err:  # noqa: BLE001 - the report must not fail a finished run; the row says why
                prediction = f"(not predicted: {str(err).splitlines()[0][:80]})"
        raw = source if source is not None else row.get(next(iter(run.task.columns)))
        shown = _shown(Path(raw).name if run.task.modality.media and isinstance(raw, str) else raw)
        reference = _reference(run, row)
        if run.task.modality.media and isinstance(reference, str) and Path(reference).is_file():
            reference = Path(reference).name  # a mask or depth file
        lines.append(f"| {rank} | {index} | {loss:.4f} | {shown} | {_shown(reference)} | "
                     f"{_shown(prediction, 400) if not visual else prediction} |")
    path = folder / "worst_examples.md"
    path.write_text("\n".join(lines) + "\n")
    return path
