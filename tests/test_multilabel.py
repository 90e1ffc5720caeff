"""Multi-label classification (issue 21): the three data layouts found and trained with --smoke, sigmoid/BCE, the
threshold chosen on eval saved in the model and used by infer, parity with pipeline(function_to_apply="sigmoid"),
pos_weight class weights, and the errors of a label column that is not one of the layouts."""

import csv
import json
import shutil
from pathlib import Path

import pytest

from conftest import assert_clean_error

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "text-classification" / "distilbert-multilabel.yaml"
SAMPLE = ROOT / "taskcli" / "samples" / "text-multilabel.jsonl"
IMAGES = ROOT / "taskcli" / "samples" / "image-classification"
TOPICS = ["economy", "health", "politics", "sports", "tech"]
QUICK = ("--set", "train.max_steps=2", "--set", "train.eval_strategy=no")  # a layout is read: no need to learn
TEXTS = ["The striker scored twice in the cup final .", "Hospitals use software to read scans .",
         "A local bakery opened on the old street .", "The minister announced a tax cut ."]


def sample_rows() -> list[dict]:
    return [json.loads(line) for line in SAMPLE.read_text().splitlines()]


def finetune(cli, out, *args, task="text-classification"):
    result = cli("finetune", task, "--smoke", "--output-dir", out, "--json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


@pytest.fixture(scope="module")
def listed(cli, tmp_path_factory, one_torch_thread):
    """The recipe's smoke run: the bundled sample's labels are lists."""
    out = tmp_path_factory.mktemp("ml") / "run"
    report, stderr = finetune(cli, out, "--recipe", RECIPE)
    return out, report, stderr


def infer(cli, model, *args) -> list[dict]:
    result = cli("infer", "text-classification", *TEXTS, "--model", model, "--json", *args)
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_list_layout_learns_sigmoid_bce_and_saves_its_threshold(listed):
    out, report, stderr = listed
    assert "multi-label: 5 labels (a list per row), sigmoid, BCE" in " ".join(stderr.split())
    metrics = report["metrics"]
    assert metrics["f1_micro"] >= 0.8 and metrics["f1_macro"] >= 0.7, metrics  # the sample is learnt
    assert {"subset_accuracy", "threshold", "f1_micro_at_half"} <= metrics.keys()
    assert set(metrics["per_class"]) == set(TOPICS)
    assert sum(c["support"] for c in metrics["per_class"].values()) == sum(len(r["label"]) for r in sample_rows())
    config = json.loads((out / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert config["multi_label_threshold"] == pytest.approx(metrics["threshold"])
    assert sorted(config["id2label"].values()) == TOPICS


def test_infer_lists_every_label_over_the_threshold_as_the_pipeline_scores(cli, listed):
    from transformers import pipeline

    out = listed[0]
    everything = infer(cli, out, "--threshold", "0")
    pipe = pipeline("text-classification", model=str(out), top_k=None, function_to_apply="sigmoid", device="cpu")
    for mine, theirs in zip(everything, pipe(TEXTS)):
        assert [r["label"] for r in mine["labels"]] == [r["label"] for r in theirs]
        assert [r["score"] for r in mine["labels"]] == pytest.approx([r["score"] for r in theirs], abs=1e-5)
    threshold = json.loads((out / "config.json").read_text())["multi_label_threshold"]
    rows = infer(cli, out)
    for row, full in zip(rows, everything):
        assert row["threshold"] == threshold
        assert row["labels"] == [r for r in full["labels"] if r["score"] >= threshold]
    assert "sports" in [r["label"] for r in rows[0]["labels"]]


def test_the_saved_threshold_is_used_and_threshold_overrides_it(cli, listed, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(listed[0], copy)
    config = json.loads((copy / "config.json").read_text())
    scores = [r["score"] for row in infer(cli, copy, "--threshold", "0") for r in row["labels"]]
    middle = sorted(scores)[len(scores) // 2]  # a threshold half of the scores reach
    config["multi_label_threshold"] = middle
    (copy / "config.json").write_text(json.dumps(config))
    rows = infer(cli, copy)
    assert {row["threshold"] for row in rows} == {middle}
    assert sum(len(row["labels"]) for row in rows) == sum(s >= middle for s in scores)
    assert all(len(row["labels"]) == len(TOPICS) for row in infer(cli, copy, "--threshold", "0"))
    table = cli("infer", "text-classification", "A quiet day .", "--model", copy, "--threshold", "1")
    assert table.exit_code == 0 and "(no label ≥ 1.00)" in table.stdout


def test_separated_strings_are_read_as_lists(cli, tmp_path, report_on):
    path = tmp_path / "topics.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([r["text"], "|".join(r["label"])] for r in sample_rows())  # an empty cell: no label
    report, stderr = finetune(cli, tmp_path / "out", "--data", path, "--set", 'data.label_separator="|"', *QUICK)
    assert "multi-label: 5 labels (split by '|')" in " ".join(stderr.split())
    assert set(report["metrics"]["per_class"]) == set(TOPICS)
    assert (tmp_path / "out" / "report" / "per_class_f1.png").is_file()  # the run report's per-label bars


def one_column_per_label(path: Path, extra: dict | None = None) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", *TOPICS, *(extra or {})])
        for i, row in enumerate(sample_rows()):
            writer.writerow([row["text"], *(int(t in row["label"]) for t in TOPICS),
                             *(v[i % len(v)] for v in (extra or {}).values())])
    return path


def test_one_column_per_label_is_found_and_trains(cli, tmp_path):
    path = one_column_per_label(tmp_path / "hot.csv")
    report, stderr = finetune(cli, tmp_path / "out", "--data", path, *QUICK)
    assert "multi-label: 5 labels (one 0/1 column per label (found))" in " ".join(stderr.split())
    assert list(report["metrics"]["per_class"]) == TOPICS  # the columns' order


def test_named_label_columns_with_pos_weight_class_weights(cli, tmp_path):
    path = one_column_per_label(tmp_path / "hot.csv", {"source": ["wire", "blog"]})
    named = "--set", "data.label_columns=[sports, politics, tech]"
    report, stderr = finetune(cli, tmp_path / "out", "--data", path, *named, "--class-weights", "auto", *QUICK)
    assert "multi-label: 3 labels (one 0/1 column per label), sigmoid, BCE with pos_weight" in " ".join(stderr.split())
    assert list(report["metrics"]["per_class"]) == ["sports", "politics", "tech"]
    import yaml

    weights = yaml.safe_load((tmp_path / "out" / "recipe.yaml").read_text())["provenance"]["class_weights"]
    assert list(weights) == ["sports", "politics", "tech"]
    assert all(w > 1 for w in weights.values())  # each topic is on fewer rows than off: negatives / positives


def test_named_label_columns_of_a_stream(cli, tmp_path):
    """A stream's eval rows are taken off its read training rows: read once, not twice."""
    path = one_column_per_label(tmp_path / "hot.csv")
    stream = ("--set", "data.streaming=true", "--set", "data.max_eval_samples=8", "--set", "train.max_steps=2")
    report, stderr = finetune(cli, tmp_path / "out", "--data", path, "--set", "data.label_columns=[sports, tech]",
                              *stream)
    assert "multi-label: 2 labels (one 0/1 column per label)" in " ".join(stderr.split())
    assert list(report["metrics"]["per_class"]) == ["sports", "tech"]


def test_multi_label_images(cli, tmp_path):
    from transformers import pipeline

    rows = []
    for picture in sorted(IMAGES.glob("*/*.jpg")):
        kind, number = picture.stem.split("_")
        rows.append({"image": str(picture), "label": [kind] + (["even"] if int(number) % 2 == 0 else [])})
    data = tmp_path / "pictures.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report, stderr = finetune(cli, tmp_path / "out", "--data", data, *QUICK, task="image-classification")
    assert "multi-label: 4 labels (a list per row), sigmoid, BCE" in " ".join(stderr.split())
    picture = rows[0]["image"]
    result = cli("infer", "image-classification", picture, "--model", tmp_path / "out", "--json", "--threshold", "0")
    assert result.exit_code == 0, result.stderr
    mine = json.loads(result.stdout)["labels"]
    theirs = pipeline("image-classification", model=str(tmp_path / "out"), function_to_apply="sigmoid",
                      top_k=None, device="cpu")(picture)
    assert [r["label"] for r in mine] == [r["label"] for r in theirs]
    assert [r["score"] for r in mine] == pytest.approx([r["score"] for r in theirs], abs=1e-5)


def loaded(tmp_path, rows_or_csv, *sets):
    """The data as finetune reads it (no model): (run, train split)."""
    from taskcli import data
    from taskcli.run import prepare

    if isinstance(rows_or_csv, list):
        path = tmp_path / "d.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows_or_csv))
    else:
        path = tmp_path / "d.csv"
        path.write_text(rows_or_csv)
    run = prepare("text-classification", None, list(sets), False)
    return run, data.load(run, str(path))["train"]


def test_single_label_data_is_not_multi_label(tmp_path):
    run, train = loaded(tmp_path, [{"text": f"row {i}", "label": ["a", "b|c"][i % 2]} for i in range(20)])
    assert not run.learned.multi_label and set(train["label"]) == {"a", "b|c"}  # no separator: one class
    csv_text = "text,label,flag\n" + "".join(f"row {i},{'ab'[i % 2]},{i % 2}\n" for i in range(20))
    run, train = loaded(tmp_path, csv_text)  # a 0/1 column beside a label column is not a label
    assert not run.learned.multi_label and "flag" in train.column_names


def test_an_empty_list_is_a_row_without_labels_not_a_blank_one(tmp_path):
    rows = [{"text": f"row {i}", "label": [] if i % 3 == 0 else ["a"]} for i in range(20)]
    run, train = loaded(tmp_path, rows)
    assert run.learned.multi_label and [] in train["label"]


@pytest.mark.parametrize("rows,sets,fragments", [
    ("text,a,b,note\nhi,1,0,x\nbye,0,1,y\nok,1,1,z\n", (), ("ambiguous", "data.label_columns=[a, b]")),
    ("text,a,b\nhi,1,0\nbye,0,2\nok,1,1\n", ("data.label_columns=[a, b]",), ("column 'b' row 2 holds 2", "0 or 1")),
    ("text,a,b\nhi,1,0\nbye,0,1\n", ("data.label_columns=[a, c]",), ("no column 'c'", "text, a, b")),
    ([{"text": "hi", "label": "x"}, {"text": "bye", "label": ["x", "y"]}], (), ("mixes kinds of labels", "row 1")),
    ([{"text": "hi", "label": [{"n": 1}]}, {"text": "bye", "label": [{"n": 2}]}], (), ("holds lists of",)),
    ([{"text": "hi", "label": ["x"]}, {"text": "bye", "label": ["y"]}], ('data.label_separator="|"',),
     ("holds lists already", "drop data.label_separator")),
    ([{"text": "hi", "label": ["x"], "a": 1}, {"text": "bye", "label": ["y"], "a": 0}], ("data.label_columns=[a]",),
     ("both give labels",)),
], ids=["ambiguous-01-columns", "not-0-1", "missing-column", "mixed", "lists-of-records", "separator-on-lists",
        "columns-and-label"])
def test_a_malformed_or_ambiguous_label_column_is_one_line(cli, tmp_path, rows, sets, fragments):
    path = tmp_path / ("d.csv" if isinstance(rows, str) else "d.jsonl")
    path.write_text(rows if isinstance(rows, str) else "".join(json.dumps(r) + "\n" for r in rows))
    result = cli("finetune", "text-classification", "--smoke", "--data", path, "--output-dir", tmp_path / "out",
                 *[a for s in sets for a in ("--set", s)])
    assert_clean_error(result, *fragments)
    assert not (tmp_path / "out").exists()


def test_threshold_on_a_single_label_model_is_one_line(cli, trained):
    result = cli("infer", "text-classification", "Great film .", "--model", trained("text-classification"),
                 "--threshold", "0.3")
    assert_clean_error(result, "--threshold applies to multi-label models", "--top-k")


def test_metrics_and_loss_against_their_definitions():
    import numpy as np
    import torch

    from taskcli.metrics import multi_label
    from taskcli.trainer import summed_bce

    refs = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 1]])
    scores = np.array([[0.9, 0.2, 0.1], [0.6, 0.4, 0.1], [0.3, 0.1, 0.2], [0.1, 0.7, 0.45]])
    at_half = multi_label(scores, refs, ["a", "b", "c"], threshold=0.5)
    # predictions at 0.5: [1,0,0] [1,0,0] [0,0,0] [0,1,0]: tp 3, fp 0, fn 2 -> micro F1 6/8
    assert at_half["f1_micro"] == pytest.approx(0.75) and at_half["subset_accuracy"] == pytest.approx(0.5)
    assert at_half["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    best = multi_label(scores, refs, ["a", "b", "c"])
    # every positive scores over every negative from 0.35 to 0.4: of the ties, the one nearest 0.5
    assert best["f1_micro"] == 1.0 and best["threshold"] == 0.4
    logits, targets = torch.randn(4, 3), torch.tensor(refs, dtype=torch.float32)
    weight = [1.0, 2.0, 3.0]
    expected = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(weight))(logits, targets)
    assert float(summed_bce({"logits": logits}, targets, pos_weight=weight)) == pytest.approx(float(expected))
    halves = sum(summed_bce({"logits": logits[i:i + 2]}, targets[i:i + 2], torch.tensor(12), weight) for i in (0, 2))
    assert float(halves) == pytest.approx(float(expected))  # two processes' halves add up to the whole


def test_a_best_model_metric_multi_label_runs_lack_is_one_line(cli, tmp_path):
    rows = [{"text": f"row {i} {'ab'[i % 2]}", "label": ["a", "b"][: 1 + i % 2]} for i in range(12)]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = cli("finetune", "text-classification", "--smoke", "--data", path, "--output-dir", tmp_path / "out",
                 "--set", "train.eval_strategy=epoch", "--set", "eval.metric_for_best_model=accuracy")
    assert_clean_error(result, "'accuracy' is not a multi-label metric", "eval.metric_for_best_model=f1_micro")
    assert not (tmp_path / "out").exists()


def test_onnx_export_and_benchmark_of_a_multi_label_model(cli, listed):
    pytest.importorskip("onnxruntime")
    out, report, _ = listed
    result = cli("benchmark", "text-classification", "--model", out, "--recipe", RECIPE, "--smoke", "--formats",
                 "torch,onnx", "--json")
    assert result.exit_code == 0, result.stderr
    rows = {r["format"]: r for r in json.loads(result.stdout)["rows"]}
    assert rows["torch"]["metric"] == "f1_micro" and rows["onnx"]["parity"] == "pass"
    assert rows["torch"]["value"] == pytest.approx(report["metrics"]["f1_micro"], abs=1e-6)
