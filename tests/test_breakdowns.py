"""Scores broken down by a property of the examples, and their report plots: QA exact match by answer length,
ASR WER by clip duration, depth error by depth range, detection precision-recall curves."""

import json

import numpy as np
import pytest
from PIL import Image

from taskcli import metrics, report


def test_exact_match_by_answer_length():
    refs = {"a": ["Paris"], "b": ["New York City", "the Big Apple"], "c": [], "d": ["Ada"]}
    preds = {"a": "Paris", "b": "York", "c": "", "d": "Bob"}
    got = metrics.squad(preds, refs)["exact_match_by_answer_length"]
    # b's shortest gold answer ("Big Apple" once articles are dropped) has 2 words
    assert got == {"no answer": 100.0, "1 word": 50.0, "2 words": 0.0}


def test_wer_by_duration_is_the_corpus_wer_of_each_range():
    refs = ["a b c d", "e f", "g h i j"]
    preds = ["a b c d", "e x", "x x x x"]
    got = metrics.wer_by_duration(preds, refs, [1.0, 3.5, 25.0])
    assert got == {"0-2 s": 0.0, "2-5 s": 0.5, "20-30 s": 1.0}
    both = metrics.wer_by_duration(preds, refs, [1.0, 1.5, 25.0])
    assert both["0-2 s"] == pytest.approx(1 / 6)  # one wrong word of the six in that range


def test_depth_error_by_depth_range():
    ref = np.array([[0.5, 1.5], [3.0, 10.0]])
    pred = ref * np.array([[1.1, 1.0], [1.5, 0.8]])
    sums = metrics.depth_sums(pred, ref, ref > 0)
    got = metrics.depth(sums)["abs_rel_by_depth"]
    assert got == pytest.approx({"0-1 m": 0.1, "1-2 m": 0.0, "2-4 m": 0.5, "8-16 m": 0.2})


def test_detection_precision_recall_curves():
    truth = [[(0, [10, 10, 50, 50])], [(1, [0, 0, 20, 20])]]
    found = [[(0, 0.9, [10, 10, 50, 50])], [(0, 0.8, [0, 0, 20, 20])]]  # image 2: right box, wrong class
    scored = metrics.coco_detection(found, truth, ["cat", "dog", "bird"])
    curves = scored["pr_curve_50"]
    assert set(curves) == {"cat", "dog"}  # bird has no reference box: no curve
    assert curves["cat"] == pytest.approx([1.0] * 101)  # the only cat found first (the wrong one scores lower)
    assert curves["dog"] == [0.0] * 101  # never found


def test_report_draws_breakdowns_and_curves(tmp_path):
    scores = {"wer": 0.3, "wer_by_duration": {"0-2 s": 0.2, "2-5 s": 0.4},
              "pr_curve_50": {"cat": [1.0] * 50 + [0.5] * 51}, "not_a_breakdown": {"x": "y"}}
    written = report.write(tmp_path, scores)
    assert [p.name for p in written] == ["metrics.png", "pr_curves.png", "wer_by_duration.png"]
    for path in written:
        with Image.open(path) as image:
            assert image.size[0] > 300 and len(image.convert("RGB").getcolors(1 << 16) or []) > 20


def test_asr_eval_reports_wer_by_duration(cli, trained):
    result = cli("eval", "asr", "--model", trained("automatic-speech-recognition"), "--smoke", "--json")
    assert result.exit_code == 0, result.stderr
    scores = json.loads(result.stdout)["metrics"]
    assert scores["wer_by_duration"] and all(0 <= v for v in scores["wer_by_duration"].values())
    assert set(scores["wer_by_duration"]) <= {"0-2 s", "2-5 s", "5-10 s", "10-20 s", "20-30 s", "30+ s"}
