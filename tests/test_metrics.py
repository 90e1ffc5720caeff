"""Metric values equal the reference implementations on fixed inputs."""

import pytest

from taskcli import metrics

TRUE = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "O", "O", "B-PER"], ["O", "B-MISC", "I-MISC"]]
PRED = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "O", "O", "O", "B-PER"], ["O", "B-MISC", "I-MISC"]]


def test_entity_level_equals_seqeval():
    from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score
    from seqeval.metrics.sequence_labeling import precision_recall_fscore_support

    ours = metrics.entity_level(TRUE, PRED)
    assert ours["precision"] == pytest.approx(precision_score(TRUE, PRED))
    assert ours["recall"] == pytest.approx(recall_score(TRUE, PRED))
    assert ours["f1"] == pytest.approx(f1_score(TRUE, PRED))
    assert ours["accuracy"] == pytest.approx(accuracy_score(TRUE, PRED))
    p, r, f, s = precision_recall_fscore_support(TRUE, PRED, average=None)
    for k, name in enumerate(["LOC", "MISC", "ORG", "PER"]):  # seqeval's sorted type order
        assert ours["per_entity"][name]["f1"] == pytest.approx(f[k])
    assert ours["per_entity"]["ORG"]["f1"] == 0.0 and ours["per_entity"]["PER"]["f1"] == 1.0
    assert ours["per_entity"]["LOC"]["support"] == 1
    # hand check: 3 of 4 predicted entities right, 3 of 5 gold found
    assert ours["precision"] == pytest.approx(3 / 4) and ours["recall"] == pytest.approx(3 / 5)


def test_classification_equals_sklearn():
    from sklearn.metrics import accuracy_score, f1_score

    refs, preds = [0, 1, 2, 2, 1, 0, 2], [0, 2, 2, 2, 1, 1, 0]
    ours = metrics.classification(preds, refs, ["a", "b", "c"])
    assert ours["accuracy"] == pytest.approx(accuracy_score(refs, preds))
    assert ours["f1"] == pytest.approx(f1_score(refs, preds, average="macro"))
    assert ours["per_class"]["c"]["support"] == 3


PREDICTIONS = {"q1": "the Eiffel Tower", "q2": "in 1889", "q3": "", "q4": "Paris, France", "q5": "nothing",
               "q6": "Gustave  Eiffel's company!"}
REFERENCES = {"q1": ["Eiffel Tower", "The Eiffel tower."], "q2": ["1889"], "q3": [], "q4": ["Paris"], "q5": [],
              "q6": ["Gustave Eiffel"]}


def test_squad_equals_official_scoring_reference():
    """torchmetrics' SQuAD metric ports the official script; v2 'no answer' golds become [''] as in v2's script."""
    import torch
    from torchmetrics.functional.text import squad as reference

    preds = [{"prediction_text": p, "id": q} for q, p in PREDICTIONS.items()]
    target = [{"answers": {"answer_start": [0] * max(1, len(g)), "text": g or [""]}, "id": q}
              for q, g in REFERENCES.items()]
    ref = {k: float(v) for k, v in reference(preds, target).items()}
    ours = metrics.squad(PREDICTIONS, REFERENCES)
    assert ours["exact_match"] == pytest.approx(ref["exact_match"], abs=1e-4)
    assert ours["f1"] == pytest.approx(ref["f1"], abs=1e-4)
    # and by hand: q1, q3 exact; q2 and q4 F1 = 2*(1/2*1)/(1/2+1) = 2/3; q5 wrong;
    # q6 "gustave eiffels company" vs "gustave eiffel": P = 1/3, R = 1/2, F1 = 0.4
    assert ours["exact_match"] == pytest.approx(100 * 2 / 6)
    assert ours["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1 + 2 / 3 + 0 + 0.4) / 6)
    assert ours["NoAns_exact"] == pytest.approx(50.0) and ours["HasAns_exact"] == pytest.approx(25.0)
    assert torch.is_tensor(reference(preds, target)["f1"])


def test_extra_metric_from_a_local_evaluate_script(tmp_path, cli, trained):
    """eval.extra_metrics loads `evaluate` metrics by path (offline) and adds their values."""
    import json

    script = tmp_path / "share_negative.py"
    script.write_text('''
import datasets
import evaluate


class ShareNegative(evaluate.Metric):
    """Fraction of predictions equal to label id 0."""

    def _info(self):
        return evaluate.MetricInfo(description="", citation="", inputs_description="",
                                   features=datasets.Features({"predictions": datasets.Value("int64"),
                                                               "references": datasets.Value("int64")}))

    def _compute(self, predictions, references):
        return {"share_negative": sum(p == 0 for p in predictions) / len(predictions)}
''')
    out = trained("text-classification")
    result = cli("eval", "text-classification", "--model", out, "--smoke", "--json",
                 "--set", f"eval.extra_metrics=['{script}']")
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["metrics"]
    assert m["share_negative"] == pytest.approx(0.5, abs=0.05)  # the sample is half negative, and learnt
