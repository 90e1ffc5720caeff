"""The plots of a run report: PNGs drawn with matplotlib from a run's final metrics and its Trainer log history.

`write(folder, metrics, log_history)` draws only what the data holds, in this order:

- ``training_curves.png``: training (and eval) loss, learning rate and every other eval metric, per step;
- ``metrics.png``: the final scalar metrics (scores in 0..1 apart from values on other scales, such as losses);
- ``confusion_matrix.png``: counts and rows normalised by true class;
- ``per_class_f1.png``, ``per_entity_f1.png``, ``per_class_iou.png``, ``per_class_ap.png``: one bar per class;
- ``pr_curves.png``: detection's precision-recall curve per class (IoU 0.5);
- ``<metric>_by_<what>.png``: a score broken down by a property of the examples, e.g. ``wer_by_duration.png``
  (ASR), ``exact_match_by_answer_length.png`` (QA), ``abs_rel_by_depth.png`` (depth).

matplotlib is imported only when a figure is drawn: `taskcli` imports this module on every command.
"""

from __future__ import annotations

import math
from pathlib import Path

DPI = 100
MAX_INCHES = 29  # at DPI 100 the tallest figure stays under 3000 px, even for ADE20K's 150 classes
ANNOTATE_UP_TO = 20  # classes in a confusion matrix whose cells still have room for their numbers
# Throughput figures the Trainer logs with every evaluation: they say how fast, not how good.
SPEED_KEYS = {"runtime", "samples_per_second", "steps_per_second", "model_preparation_time"}
# Per-name scores a task reports: (metrics key, file, title, axis label, what None means).
PER_NAME = (
    ("per_class", "per_class_f1.png", "F1 per class", "F1", None),
    ("per_entity", "per_entity_f1.png", "F1 per entity type", "F1", None),
    ("per_class_iou", "per_class_iou.png", "IoU per class", "IoU", "class absent: no pixels to score"),
    ("per_class_ap", "per_class_ap.png", "AP per class", "AP", "class absent: no boxes to score"),
)


def write(folder: Path, metrics: dict, log_history: list[dict] | None = None) -> list[Path]:
    """Write the report's PNGs into `folder` (created if missing) and return their paths in a stable order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(name: str, draw, *args) -> None:
        path = folder / name
        draw(path, *args)
        written.append(path)

    series = training_series(log_history or [])
    if series:
        save("training_curves.png", draw_training_curves, series)
    scores = final_scalars(metrics)
    if scores:
        save("metrics.png", draw_metrics, scores)
    matrix = square_matrix(metrics.get("confusion_matrix"))
    if matrix:
        per_class = metrics.get("per_class")
        names = list(per_class) if isinstance(per_class, dict) and len(per_class) == len(matrix) else None
        save("confusion_matrix.png", draw_confusion_matrix, matrix, names or [str(i) for i in range(len(matrix))])
    for key, name, title, label, absent in PER_NAME:
        values, support = per_name_scores(metrics.get(key))
        if values:
            save(name, draw_per_name, values, support, title, label, absent)
    curves = pr_curves(metrics.get("pr_curve_50"))
    if curves:
        save("pr_curves.png", draw_pr_curves, curves)
    for key, values in breakdowns(metrics).items():
        save(f"{key}.png", draw_breakdown, key, values)
    return written


# --- the data behind the plots (plain Python, testable without drawing) ------------------------------------


def is_number(value) -> bool:
    """A finite int or float; bools are ints to Python but not scores, and inf (a diverged perplexity) or NaN
    would wreck an axis."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_speed(name: str) -> bool:
    return name.removeprefix("eval_") in SPEED_KEYS


def training_series(log_history: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """(step, value) points per curve: "loss" and "learning_rate" from the training logs, "eval_<metric>" from the
    evaluations (scalars only, speed figures left out). The run's closing summary entry is skipped."""
    series: dict[str, list[tuple[float, float]]] = {}
    for i, entry in enumerate(log_history):
        if "train_runtime" in entry:  # the summary: train_loss there is an average over the run, not a point
            continue
        step = entry.get("step", i)
        if any(key.startswith("eval_") for key in entry):
            names = [k for k in entry if k.startswith("eval_") and not is_speed(k)]
        else:
            names = ["loss", "learning_rate"]
        for name in names:
            if is_number(entry.get(name)) and is_number(step):
                series.setdefault(name, []).append((step, entry[name]))
    return series


def final_scalars(metrics: dict) -> dict[str, float]:
    """The metrics worth a bar: finite numbers, without speed figures or epoch/step counters."""
    return {name: value for name, value in metrics.items()
            if is_number(value) and not is_speed(name) and name not in ("epoch", "step")}


def square_matrix(matrix) -> list[list[float]] | None:
    """The confusion matrix as a list of rows, or None when it is missing or not square (nothing to draw)."""
    if not isinstance(matrix, (list, tuple)) or not matrix:
        return None
    rows = [list(row) for row in matrix if isinstance(row, (list, tuple))]
    if len(rows) != len(matrix) or any(len(row) != len(rows) or not all(map(is_number, row)) for row in rows):
        return None
    return rows


def normalised_rows(matrix: list[list[float]]) -> list[list[float]]:
    """Each row divided by its sum, so a true class's row sums to 1; a class with no examples stays all zeros."""
    out = []
    for row in matrix:
        total = sum(row)
        out.append([value / total if total else 0.0 for value in row])
    return out


def per_name_scores(scores) -> tuple[dict[str, float | None], dict[str, int]]:
    """{name: score or None} and {name: support} from per_class / per_entity (dicts holding "f1" and "support")
    or per_class_iou / per_class_ap (a score or None per name)."""
    if not isinstance(scores, dict):
        return {}, {}
    values: dict[str, float | None] = {}
    support: dict[str, int] = {}
    for name, score in scores.items():
        if isinstance(score, dict):
            if is_number(score.get("support")):
                support[str(name)] = int(score["support"])
            score = score.get("f1")
        values[str(name)] = score if is_number(score) else None
    return values, support


def pr_curves(curves) -> dict[str, list[float]]:
    """{class: precision at the 101 recall points 0, 0.01, ..., 1} (detection's pr_curve_50), well-formed only."""
    if not isinstance(curves, dict):
        return {}
    return {str(k): [float(x) for x in v] for k, v in curves.items()
            if isinstance(v, list) and len(v) == 101 and all(is_number(x) for x in v)}


def breakdowns(metrics: dict) -> dict[str, dict[str, float]]:
    """Metrics named `<score>_by_<property>` that map groups of examples (in order) to a score."""
    return {key: {str(g): float(v) for g, v in value.items()} for key, value in metrics.items()
            if "_by_" in key and isinstance(value, dict) and value and all(is_number(v) for v in value.values())}


# --- drawing -------------------------------------------------------------------------------------------------


def pyplot():
    """pyplot on the headless Agg backend: a report is written on servers and in CI, where there is no display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(plt, fig, path: Path) -> None:
    try:
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)  # pyplot keeps every open figure alive: a long session would only grow


def short(name: str, width: int = 32) -> str:
    """A class name cut to fit beside its bar (ADE20K has names such as 'chest of drawers, chest, bureau, dresser')."""
    return name if len(name) <= width else name[: width - 1] + "…"


def draw_training_curves(path: Path, series: dict[str, list[tuple[float, float]]]) -> None:
    plt = pyplot()
    panels = []  # (title, y label, [(curve, label)])
    losses = [(name, label) for name, label in (("loss", "train"), ("eval_loss", "eval")) if name in series]
    if losses:
        panels.append(("loss", "loss", losses))
    if "learning_rate" in series:
        panels.append(("learning rate", "learning rate", [("learning_rate", None)]))
    for name in series:
        if name.startswith("eval_") and name != "eval_loss":
            metric = name.removeprefix("eval_")
            panels.append((f"eval {metric}", metric, [(name, None)]))

    columns = min(len(panels), 3)
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, min(3.5 * rows, MAX_INCHES)),
                             squeeze=False, layout="constrained")
    flat = axes.ravel()
    for ax, (title, ylabel, curves) in zip(flat, panels):
        for name, label in curves:
            steps, values = zip(*series[name])
            # Markers show every point of a short run (one eval is one point); on a long one they would be a smear.
            ax.plot(steps, values, marker="o" if len(steps) <= 50 else None, markersize=4, label=label)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if len(curves) > 1:
            ax.legend()
        if curves[0][0] == "learning_rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    for ax in flat[len(panels):]:
        ax.set_visible(False)
    fig.suptitle("training curves")
    save_figure(plt, fig, path)


def draw_metrics(path: Path, scores: dict[str, float]) -> None:
    """Scores in 0..1 share one axis; the rest (losses, RMSE, BLEU 0..100, generated length) get their own, which a
    0..1 score would be a sliver on."""
    plt = pyplot()
    unit = {k: v for k, v in scores.items() if 0 <= v <= 1 and not k.endswith("loss")}
    other = {k: v for k, v in scores.items() if k not in unit}
    groups = [(title, group) for title, group in (("scores (0 to 1)", unit), ("other scales", other)) if group]
    heights = [len(group) for _, group in groups]
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, min(1.2 + 0.45 * sum(heights) + len(groups), MAX_INCHES)),
                             height_ratios=heights, squeeze=False, layout="constrained")
    for ax, (title, group) in zip(axes.ravel(), groups):
        names = list(group)
        values = [group[n] for n in names]
        bars = ax.barh(names, values, height=0.6, color="tab:blue" if group is unit else "tab:orange")
        ax.bar_label(bars, labels=[f"{v:.4g}" for v in values], padding=3)
        ax.invert_yaxis()  # the first metric on top, as in the metrics table
        if group is unit:
            ax.set_xlim(0, 1.12)  # room for the value labels past a score of 1
        else:
            positive = [v for v in values if v > 0]
            if len(positive) == len(values) and max(values) / min(values) > 100:
                ax.set_xscale("log")  # a loss of 0.3 beside a perplexity of 900: both stay visible
            ax.margins(x=0.15)
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("final metrics")
    save_figure(plt, fig, path)


def draw_confusion_matrix(path: Path, matrix: list[list[float]], names: list[str]) -> None:
    plt = pyplot()
    n = len(matrix)
    side = min(max(2.5 + 0.45 * n, 4), MAX_INCHES / 2)  # two squares side by side within the size cap
    fig, (left, right) = plt.subplots(1, 2, figsize=(2 * side + 2.5, side + 1), layout="constrained")
    labels = [short(name, 20) for name in names]
    font = max(3.0, min(10.0, 0.7 * 72 * side / n))  # tick labels shrink to their row's height
    counts_top = max(max(row) for row in matrix) or 1  # an all-zero matrix still gets a valid colour scale
    for ax, values, title, number, top in (
        (left, matrix, "confusion matrix (counts)", lambda v: f"{v:g}", counts_top),
        (right, normalised_rows(matrix), "confusion matrix (normalised by true class)", lambda v: f"{v:.2f}", 1),
    ):
        image = ax.imshow(values, cmap="Blues", vmin=0, vmax=top)
        fig.colorbar(image, ax=ax, shrink=0.8)
        ax.set_xticks(range(n), labels, fontsize=font, rotation=0 if n <= 5 else 45 if n <= 20 else 90,
                      ha="center" if n <= 5 or n > 20 else "right")
        ax.set_yticks(range(n), labels, fontsize=font)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        if n <= ANNOTATE_UP_TO:
            for i, row in enumerate(values):
                for j, value in enumerate(row):
                    # White on the dark cells, black on the light ones.
                    ax.text(j, i, number(value), ha="center", va="center", fontsize=max(6.0, font - 1),
                            color="white" if value > top / 2 else "black")
    save_figure(plt, fig, path)


def draw_per_name(path: Path, values: dict[str, float | None], support: dict[str, int], title: str, label: str,
                  absent: str | None) -> None:
    """Horizontal bars, one per name in the task's label order: long names stay readable and many classes stack
    down the page. A None score gets an empty hatched bar, so an absent class is not mistaken for a score of 0."""
    plt = pyplot()
    names = list(values)
    row = min(0.3, (MAX_INCHES - 1.5) / len(names))  # 150 classes shrink their rows rather than the page growing
    fig, ax = plt.subplots(figsize=(9, 1.5 + row * len(names)), layout="constrained")
    font = max(4.0, min(10.0, 0.75 * 72 * row))
    ticks = [short(n) + (f" (n={support[n]})" if n in support else "") for n in names]
    scored = [0.0 if values[n] is None else values[n] for n in names]
    bars = ax.barh(range(len(names)), scored, color="tab:blue")
    missing = [i for i, n in enumerate(names) if values[n] is None]
    if missing:
        ax.barh(missing, [1.0] * len(missing), color="none", edgecolor="lightgray", hatch="//",
                label=absent or "not scored")
        fig.legend(loc="outside lower center", fontsize=8)  # below the axis: over the bars it would hide some
    if len(names) <= 40:  # beyond that the numbers would overlap one another
        ax.bar_label(bars, labels=["" if values[n] is None else f"{values[n]:.2f}" for n in names],
                     padding=3, fontsize=font)
    ax.set_yticks(range(len(names)), ticks, fontsize=font)
    ax.set_ylim(len(names) - 0.5, -0.5)  # the first class on top
    ax.set_xlim(0, 1.1)
    ax.set_xlabel(label)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title)
    save_figure(plt, fig, path)


def draw_pr_curves(path: Path, curves: dict[str, list[float]]) -> None:
    """One precision-recall line per class; the legend names at most 20 (the others are drawn, unnamed)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 6), layout="constrained")
    recall = [i / 100 for i in range(101)]
    for i, (name, precision) in enumerate(curves.items()):
        ax.plot(recall, precision, label=short(name) if i < 20 else None, linewidth=1.5)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    ax.set_title("precision-recall per class (IoU 0.5)")
    if curves:
        ax.legend(fontsize=8, loc="lower left")
    save_figure(plt, fig, path)


def draw_breakdown(path: Path, key: str, values: dict[str, float]) -> None:
    """Bars of one score per group of examples, groups in the metric's own order (short to long, near to far)."""
    plt = pyplot()
    score, _, what = key.partition("_by_")
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(values) + 2), 4.5), layout="constrained")
    bars = ax.bar(range(len(values)), list(values.values()), color="tab:blue")
    ax.bar_label(bars, labels=[f"{v:.3g}" for v in values.values()], padding=3, fontsize=9)
    ax.set_xticks(range(len(values)), [short(g, 16) for g in values], rotation=30 if len(values) > 6 else 0)
    ax.set_xlabel(what.replace("_", " "))
    ax.set_ylabel(score.replace("_", " "))
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"{score.replace('_', ' ')} by {what.replace('_', ' ')}")
    save_figure(plt, fig, path)
