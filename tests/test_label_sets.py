"""One rule for label names and ids (taskcli/tasks/label_sets.py), used by the classification, NER and detection
tasks alike."""

import datasets
import pytest

from taskcli import registry
from taskcli.errors import TaskcliError


def _labels(task: str, **splits):
    return registry.get(task).labels(None, datasets.DatasetDict({k: datasets.Dataset.from_list(v)
                                                                 for k, v in splits.items()}))


def test_names_come_from_the_rows_in_each_task_s_order():
    assert _labels("image-classification", train=[{"label": "dog"}, {"label": "cat"}],
                   eval=[{"label": "bird"}]) == ["bird", "cat", "dog"]
    assert _labels("token-classification", train=[{"tags": ["B-PER", "I-PER", "O", "B-LOC"]}],
                   eval=[{"tags": ["I-LOC"]}]) == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert _labels("object-detection", train=[{"objects": {"category": ["car", "bus"], "bbox": [[0, 0, 1, 1]] * 2}}]) \
        == ["bus", "car"]


def test_class_label_names_win_and_integers_without_names_are_refused():
    named = datasets.Dataset.from_dict({"tags": [[0, 1]]}, features=datasets.Features(
        {"tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-X"]))}))
    assert registry.get("ner").labels(None, datasets.DatasetDict(train=named)) == ["O", "B-X"]
    for task, rows, kind in [("image-classification", [{"label": 1}], "image labels"),
                             ("token-classification", [{"tags": [0, 1]}], "NER tags"),
                             ("object-detection", [{"objects": {"category": [2], "bbox": [[0, 0, 1, 1]]}}],
                              "object categories")]:
        with pytest.raises(TaskcliError, match=f"{kind} are integers without names"):
            _labels(task, train=rows)


def test_an_unknown_label_names_itself_and_the_known_ones():
    from taskcli.tasks.label_sets import label_id

    index = {"O": 0, "B-PER": 1}
    assert (label_id("B-PER", index, "NER tag"), label_id(5, index, "NER tag")) == (1, 5)
    with pytest.raises(TaskcliError) as err:
        label_id("B-ORG", index, "NER tag")
    assert str(err.value).startswith("unknown NER tag 'B-ORG' in the data") and err.value.hint == "known: O, B-PER"
