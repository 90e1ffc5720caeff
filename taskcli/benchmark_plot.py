"""benchmark --plot FILE: the table as a figure for CI artifacts and reviews. Left, ms per input per row (the bar is
p50, the whisker reaches p95); right, the main metric per row beside the torch fp32 metric (dashed) and the band
--tolerance allows around it (shaded). A row that failed parity is drawn red in both panels."""

from __future__ import annotations

from pathlib import Path

from taskcli.errors import TaskcliError

SUFFIXES = (".png", ".svg", ".pdf")  # what matplotlib's Agg canvas writes


def check_target(path: str | None) -> Path | None:
    """--plot's file, checked before the benchmark runs: a known image type in an existing folder, and a new file
    (nothing a user made is overwritten)."""
    if path is None:
        return None
    target = Path(path)
    if target.suffix.lower() not in SUFFIXES:
        raise TaskcliError(f"--plot {path}: not an image file name", f"end it in {', '.join(SUFFIXES)}")
    if target.exists():
        raise TaskcliError(f"--plot {path} already exists", "choose a new file name, or remove the old one first")
    if not target.parent.is_dir():
        raise TaskcliError(f"--plot {path}: no such folder {target.parent}", "create the folder first")
    return target


def label(row: dict) -> str:
    """'torch bf16', 'onnx fp32', 'onnx-int8'."""
    return row["format"] if row["format"].endswith(row["precision"]) else f"{row['format']} {row['precision']}"


def figure(result: dict):
    """The figure (not yet saved): axes[0] the timings, axes[1] the metric."""
    from taskcli.report import pyplot

    plt = pyplot()
    rows = result["rows"]
    colours = ["tab:red" if row["parity"] == "fail" else "tab:blue" for row in rows]
    places = list(range(len(rows)))
    fig, (speed, score) = plt.subplots(1, 2, sharey=True, figsize=(11, 1.6 + 0.5 * len(rows)))
    p50 = [row["ms_p50"] for row in rows]
    whiskers = [[0] * len(rows), [row["ms_p95"] - row["ms_p50"] for row in rows]]
    speed.barh(places, p50, xerr=whiskers, color=colours, capsize=4)
    speed.set_yticks(places, [label(row) for row in rows])
    speed.invert_yaxis()  # the table's order, top to bottom
    speed.set_xlabel("ms per input (bar p50, whisker p95)")
    speed.set_title("speed")
    metric, reference = rows[0]["metric"], result.get("reference")
    values = [float("nan") if row["value"] is None else row["value"] for row in rows]
    score.scatter(values, places, color=colours, zorder=3)
    if reference is not None:
        # parity_lines' rule: absolute on 0..1 scores, relative above 1
        allowed = result["tolerance"] * max(1.0, abs(reference))
        score.axvline(reference, color="black", linestyle="--", label=f"torch fp32 {reference:.4g}")
        score.axvspan(reference - allowed, reference + allowed, color="tab:green", alpha=0.2,
                      label=f"± tolerance ({allowed:.3g})")
        score.legend(loc="best", fontsize=8)
    score.set_xlabel(metric)
    score.set_title(f"{metric} on {result['samples']} rows")
    fig.suptitle(f"{result['task']} · {result['model']}")
    fig.tight_layout()
    return fig


def write(result: dict, path: Path) -> None:
    from taskcli.report import pyplot, save_figure

    save_figure(pyplot(), figure(result), path)
