"""finetune --folds K: the folds never leak rows, keep label proportions and groups whole; the summary is the
per-fold metrics' mean and std; --gate holds the mean; bad requests are one line before any model loads."""

import json
from collections import Counter

import numpy as np
import pytest

from taskcli.errors import TaskcliError
from taskcli.folds import split, summarise

SMOKE = ["--smoke", "--set", "smoke.train.epochs=5"]


def _rows(labels, groups=None):
    import datasets

    data = {"text": [f"row {i}" for i in range(len(labels))], "label": labels}
    if groups is not None:
        data["doc"] = groups
    return datasets.Dataset.from_dict(data)


def _check_partition(folds, rows):
    seen = Counter()
    for train, held in folds:
        assert held and train
        assert not set(train) & set(held)
        assert sorted(train + held) == list(range(rows))
        seen.update(held)
    assert seen == Counter(range(rows))  # every row is scored in exactly one fold


@pytest.mark.parametrize("labels", [["a"] * 30 + ["b"] * 15 + ["c"] * 6, [0.5 * i for i in range(17)]],
                         ids=["classes", "regression"])
def test_every_row_lands_in_exactly_one_eval_fold(labels):
    folds, _ = split(_rows(labels), 3, "label", None, seed=0)
    assert len(folds) == 3
    _check_partition(folds, len(labels))


def test_stratified_folds_keep_the_label_proportions():
    labels = ["a"] * 30 + ["b"] * 15 + ["c"] * 6
    folds, how = split(_rows(labels), 3, "label", None, seed=1)
    assert "stratified by label" in how
    for _, held in folds:
        assert Counter(labels[i] for i in held) == {"a": 10, "b": 5, "c": 2}


def test_folds_are_seeded():
    labels = ["a", "b"] * 20
    assert split(_rows(labels), 4, "label", None, 7) == split(_rows(labels), 4, "label", None, 7)
    assert split(_rows(labels), 4, "label", None, 7)[0] != split(_rows(labels), 4, "label", None, 8)[0]


@pytest.mark.parametrize("labels", [["x", "y"] * 30, ["x"] * 50 + ["y"] * 10], ids=["balanced", "skewed"])
def test_a_group_is_never_on_both_sides_of_a_fold(labels):
    groups = [f"doc{i // 4}" for i in range(len(labels))]  # 15 documents of 4 rows
    folds, how = split(_rows(labels, groups), 5, "label", "doc", seed=0)
    assert "grouped by doc (15 groups)" in how
    _check_partition(folds, len(labels))
    for train, held in folds:
        assert not {groups[i] for i in train} & {groups[i] for i in held}


@pytest.mark.parametrize("k, groups, needle", [
    (7, None, "--folds 7: the training data has only 6 rows"),
    (3, None, "label 'b' has only 2 rows, too few for 3 stratified folds"),
    (2, "speaker", "data.group_column 'speaker' is not a column of the training data; columns: text, label"),
])
def test_folds_the_data_cannot_give(k, groups, needle):
    with pytest.raises(TaskcliError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        split(_rows(["a", "a", "a", "a", "b", "b"]), k, "label", groups, seed=0)


def test_fewer_groups_than_folds():
    with pytest.raises(TaskcliError, match="only 2 distinct values of data.group_column 'doc'"):
        split(_rows(["a", "b"] * 4, ["d1", "d2"] * 4), 3, "label", "doc", seed=0)


def test_summary_is_the_mean_and_std_of_the_folds():
    per_fold = [{"metrics": {"accuracy": a, "f1": f, "per_class": {"x": {"f1": 1.0}}, "ok": True}}
                for a, f in [(0.5, 0.25), (0.75, 0.5), (1.0, 1.0)]]
    mean, std = summarise(per_fold)
    assert list(mean) == ["accuracy", "f1"]  # single numbers only, in order
    assert mean["accuracy"] == pytest.approx(0.75) and std["accuracy"] == pytest.approx(np.std([0.5, 0.75, 1.0]))
    assert mean["f1"] == pytest.approx(np.mean([0.25, 0.5, 1.0])) and std["f1"] == pytest.approx(np.std([0.25, 0.5, 1.0]))


@pytest.fixture(scope="module")
def cross_validated(cli, tmp_path_factory, one_torch_thread):
    out = tmp_path_factory.mktemp("folds") / "cv"
    done = cli("finetune", "text-cls", *SMOKE, "--folds", "3", "-o", out, "--json")
    assert done.exit_code == 0, done.stderr
    return out, json.loads(done.stdout.strip().splitlines()[-1])


def test_folds_report_each_fold_and_their_mean_and_std(cross_validated):
    out, result = cross_validated
    assert result["folds"] == 3 and "stratified by label" in result["split"]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == \
        ["fold-1", "fold-2", "fold-3", "folds.json"]
    assert json.loads((out / "folds.json").read_text()) == {k: v for k, v in result.items() if k != "gates_failed"}
    assert sum(f["eval_rows"] for f in result["per_fold"]) == 48  # the bundled sample, each row scored once
    for fold in result["per_fold"]:
        assert fold["train_rows"] + fold["eval_rows"] == 48
        assert fold["metrics"] == json.loads((out / f"fold-{fold['fold']}" / "metrics.json").read_text())
    for name in ("loss", "accuracy", "f1"):
        values = [f["metrics"][name] for f in result["per_fold"]]
        assert result["mean"][name] == pytest.approx(np.mean(values))
        assert result["std"][name] == pytest.approx(np.std(values))
    accuracies = [f["metrics"]["accuracy"] for f in result["per_fold"]]
    assert min(accuracies) < max(accuracies)  # the gate test below needs folds that differ


def test_the_gate_holds_the_mean(cli, tmp_path, cross_validated, one_torch_thread):
    _, result = cross_validated
    mean, eps = result["mean"]["accuracy"], 1e-6
    # the mean passes both bounds, though one fold is below it and one above: a per-fold gate would fail one
    done = cli("finetune", "text-cls", *SMOKE, "--folds", "3", "-o", tmp_path / "cv", "--json",
               "--gate", f"accuracy>={mean - eps}", "--gate", f"accuracy<={mean + eps}", "--gate", "f1>=1.01")
    assert done.exit_code == 3, done.stderr
    failed = [line for line in done.stderr.splitlines() if line.startswith("gate failed")]
    assert failed == [f"gate failed: f1 = {result['mean']['f1']:.6g}, needs >= 1.01"]
    assert json.loads(done.stdout.strip().splitlines()[-1])["mean"] == pytest.approx(result["mean"])


def _one_line(done):
    lines = done.stderr.strip().splitlines()
    assert done.exit_code == 1 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_bad_requests_are_one_line_before_any_model_loads(cli, tmp_path):
    data = tmp_path / "talks.csv"
    data.write_text("text,label,speaker\n" + "".join(f"line {i},{'ab'[i % 2]},s{i % 3}\n" for i in range(12)))
    out = tmp_path / "cv"
    cases = [
        (["--folds", "1"], "--folds 1: cross-validation needs at least 2 folds"),
        (["--folds", "13", "--data", data], "--folds 13: the training data has only 12 rows"),
        (["--folds", "7", "--data", data], "label 'a' has only 6 rows, too few for 7 stratified folds"),
        (["--folds", "2", "--data", data, "--set", "data.group_column=doc"],
         "data.group_column 'doc' is not a column of the training data; columns: text, label, speaker"),
        (["--folds", "4", "--data", data, "--set", "data.group_column=speaker"],
         "only 3 distinct values of data.group_column 'speaker'"),
        (["--folds", "2", "--set", "data.streaming=true", "--set", "train.max_steps=4"],
         "--folds needs the training rows counted and split, and data.streaming reads them as a stream"),
        (["--folds", "2", "--resume"], "--resume does not continue a --folds run"),
        (["--folds", "2", "--push-to-hub", "me/cv"], "--push-to-hub pushes one model, and --folds trains one per fold"),
    ]
    for args, needle in cases:
        line = _one_line(cli("finetune", "text-cls", "--smoke", "-o", out, *args))
        assert needle in line, line
        assert not out.exists()  # refused before the run began (and before any model was built)


def test_eval_refuses_folds(cli):
    line = _one_line(cli("eval", "text-cls", "--smoke", "--folds", "5"))
    assert "eval has no --folds: cross-validation is a training-time estimate" in line
    assert "taskcli finetune text-cls --folds 5" in line
