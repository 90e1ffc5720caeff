"""The run report's plots: which PNGs each task's metrics produce, that they are real images, and the numbers
behind them (normalised confusion rows, training series)."""

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from taskcli import report

REPO = Path(__file__).resolve().parent.parent


def history() -> list[dict]:
    """A Trainer log_history: training logs every 5 steps, an evaluation every 10, then the closing summary."""
    entries = []
    for step in range(5, 31, 5):
        entries.append({"loss": 1.0 / step, "grad_norm": 2.0, "learning_rate": 5e-5 * (1 - step / 30),
                        "epoch": step / 10, "step": step})
        if step % 10 == 0:
            entries.append({"eval_loss": 0.5 / step, "eval_accuracy": 0.5 + step / 100, "eval_f1": 0.4 + step / 100,
                            "eval_per_class": {"neg": {"f1": 0.5}}, "eval_runtime": 1.2,
                            "eval_samples_per_second": 50.0, "eval_steps_per_second": 6.0,
                            "eval_model_preparation_time": 0.01, "epoch": step / 10, "step": step})
    entries.append({"train_runtime": 12.0, "train_samples_per_second": 40.0, "train_loss": 0.2, "epoch": 3.0,
                    "step": 30, "total_flos": 1e12})
    return entries


CLASSIFICATION = {
    "loss": 0.3, "accuracy": 0.9, "f1": 0.88,
    "per_class": {"neg": {"precision": 0.8, "recall": 0.9, "f1": 0.85, "support": 12},
                  "pos": {"precision": 0.95, "recall": 0.9, "f1": 0.92, "support": 14},
                  "meh": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}},
    "confusion_matrix": [[10, 2, 0], [1, 13, 0], [0, 0, 0]],
}
NER = {"precision": 0.8, "recall": 0.7, "f1": 0.75, "accuracy": 0.95,
       "per_entity": {"PER": {"precision": 0.9, "recall": 0.8, "f1": 0.85, "support": 20},
                      "LOC": {"precision": 0.7, "recall": 0.6, "f1": 0.65, "support": 9},
                      "MISC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 3}}}
# 150 ADE20K-sized classes, every third one absent from the eval images.
SEGMENTATION = {"mean_iou": 0.41, "mean_accuracy": 0.52, "overall_accuracy": 0.8,
                "per_class_iou": {f"class {i} with a fairly long name": None if i % 3 == 0 else (i % 10) / 10
                                  for i in range(150)}}
DETECTION = {"map": 0.3, "map_50": 0.55, "map_75": 0.28, "mar_100": 0.4, "per_class_ap": {"cat": 0.4, "dog": None}}
ASR = {"wer": 0.3, "cer": 0.1}


def names(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def assert_real_png(path: Path, max_side: int = 3000) -> tuple[int, int]:
    """The file is a PNG that decodes, of a plausible size, with something drawn on it."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
        assert 300 <= width <= max_side and 200 <= height <= max_side, (path.name, image.size)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 20, f"{path.name} looks blank"
    return width, height


def test_classification_with_history_writes_every_plot(tmp_path):
    out = tmp_path / "report" / "nested"  # created on demand
    paths = report.write(out, CLASSIFICATION, history())
    assert names(paths) == ["training_curves.png", "metrics.png", "confusion_matrix.png", "per_class_f1.png"]
    assert all(p.parent == out for p in paths)
    for path in paths:
        assert_real_png(path)


@pytest.mark.parametrize("metrics, expected", [
    (NER, ["metrics.png", "per_entity_f1.png"]),
    (SEGMENTATION, ["metrics.png", "per_class_iou.png"]),
    (DETECTION, ["metrics.png", "per_class_ap.png"]),
    (ASR, ["metrics.png"]),
], ids=["ner", "segmentation", "detection", "asr"])
def test_each_task_writes_its_plots(tmp_path, metrics, expected):
    paths = report.write(tmp_path, metrics)
    assert names(paths) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(expected)
    sizes = {path.name: assert_real_png(path) for path in paths}
    if "per_class_iou.png" in sizes:
        # All 150 rows are shown, in a figure taller than the default, yet under 3000 px.
        assert 1500 <= sizes["per_class_iou.png"][1] < 3000


def test_normalised_rows_sum_to_one_and_an_empty_class_stays_zero():
    rows = report.normalised_rows([[3, 1, 0], [0, 0, 0], [2, 2, 4]])
    assert rows == [[0.75, 0.25, 0.0], [0.0, 0.0, 0.0], [0.25, 0.25, 0.5]]
    assert report.normalised_rows([[0.0]]) == [[0.0]]


def test_training_series_keeps_scalars_per_step_and_skips_the_summary():
    series = report.training_series(history())
    assert set(series) == {"loss", "learning_rate", "eval_loss", "eval_accuracy", "eval_f1"}
    assert [step for step, _ in series["loss"]] == [5, 10, 15, 20, 25, 30]  # not the summary's train_loss
    assert series["eval_accuracy"] == [(10, 0.6), (20, 0.7), (30, 0.8)]


def test_only_eval_entries_still_draw_training_curves(tmp_path):
    evals = [e for e in history() if "eval_loss" in e]
    assert set(report.training_series(evals)) == {"eval_loss", "eval_accuracy", "eval_f1"}
    paths = report.write(tmp_path, {}, evals[:1])  # a single evaluation: one marker per panel
    assert names(paths) == ["training_curves.png"]
    assert_real_png(paths[0])


@pytest.mark.parametrize("log_history", [None, [], [{"train_runtime": 3.0, "train_loss": 0.4, "step": 4}]])
def test_no_training_logs_no_training_curves(tmp_path, log_history):
    assert names(report.write(tmp_path, ASR, log_history)) == ["metrics.png"]


def test_nothing_plottable_writes_nothing(tmp_path):
    metrics = {"epoch": 3.0, "runtime": 1.5, "samples_per_second": 10.0, "perplexity": float("inf"),
               "ok": True, "per_class": {}, "confusion_matrix": [[1, 2]], "note": "text"}
    assert report.write(tmp_path, metrics, []) == []
    assert list(tmp_path.iterdir()) == []


def test_values_on_other_scales_and_unknown_class_names_still_draw(tmp_path):
    # BLEU 0..100 and a perplexity next to a loss; a confusion matrix whose classes per_class does not name.
    metrics = {"loss": 0.4, "bleu": 31.5, "perplexity": 950.0, "gen_len": 18.0,
               "confusion_matrix": [[i * j for j in range(22)] for i in range(22)]}
    paths = report.write(tmp_path, metrics)
    assert names(paths) == ["metrics.png", "confusion_matrix.png"]
    for path in paths:
        assert_real_png(path)


def test_importing_the_module_does_not_import_matplotlib():
    code = "import sys, taskcli.report; assert not {'matplotlib', 'numpy'} & set(sys.modules), sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
