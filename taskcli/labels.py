"""A model's labels against the data's: the check, the renaming and re-numbering, and class weights."""

from __future__ import annotations

import sys

from taskcli import data as data_mod
from taskcli.errors import TaskcliError
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taskcli.run import Run


def check_labels(run: Run, model) -> list[str] | None:
    """Labels of a trained model; error when the data holds labels the model does not know.

    A model whose labels are unnamed (transformers' LABEL_0, LABEL_1, ... defaults, as many Hub fine-tunes ship)
    and as many as the data's is read in the data's label order: its ids are all that names them.
    """
    import re

    model_labels = [model.config.id2label[i] for i in sorted(model.config.id2label)] if run.labels is not None else None
    if model_labels is None:
        return None
    generic = all(re.fullmatch(r"LABEL_\d+", str(name)) for name in model_labels)
    if generic and len(model_labels) == len(run.labels) and set(model_labels) != set(run.labels):
        print(f"note: {run.model_source} has unnamed labels ({', '.join(model_labels[:3])}...): reading them in "
              f"the data's order ({', '.join(map(str, run.labels[:4]))}{'...' if len(run.labels) > 4 else ''})",
              file=sys.stderr)
        return list(run.labels)
    unknown = sorted(set(run.labels) - set(model_labels))
    if unknown:
        raise TaskcliError(
            f"the model's labels don't match the data: {', '.join(map(str, unknown[:5]))} not among the model's "
            f"{len(model_labels)} labels ({', '.join(map(str, model_labels[:8]))}{'...' if len(model_labels) > 8 else ''})",
            f"evaluate on data with the model's label set, or pass --model with a model fine-tuned on this data "
            f"(`taskcli finetune {run.task.name} --recipe {run.resolved.name}`)",
        )
    return model_labels


def rename_labels(ds, label_map: dict[str, str]):
    """ClassLabel names of the data -> the model's names for the same classes (recipe `eval.label_map`)."""
    import datasets

    for column, feature in ds.features.items():
        inner = getattr(feature, "feature", None)
        names = getattr(feature, "names", None) or getattr(inner, "names", None)
        if names and any(n in label_map for n in names):
            renamed = datasets.ClassLabel(names=[label_map.get(n, n) for n in names])
            new = renamed if getattr(feature, "names", None) else datasets.Sequence(renamed)
            ds = ds.cast_column(column, new)
    return ds


def align_label_ids(ds, labels: list[str]):
    """Re-number ClassLabel columns (also lists of them, e.g. NER tags) to the model's label order.

    Hub data stores label ids in the dataset's own order; a model trained elsewhere (e.g. dslim/bert-base-NER on
    CoNLL-2003: O, B-MISC, I-MISC, B-PER, ...) numbers the same names differently.
    """
    for column, feature in ds.features.items():
        names = getattr(feature, "names", None) or getattr(getattr(feature, "feature", None), "names", None)
        if names and list(names) != list(labels) and set(names) <= set(labels):
            ds = ds.align_labels_with_mapping({name: i for i, name in enumerate(labels)}, column)
    return ds


def class_weights(run: Run, train_rows) -> list[float] | None:
    """train.class_weights as one weight per label id: 'auto' balances the training label counts
    (n_rows / (n_classes * n_label), scikit-learn's 'balanced'; a label with no row gets 1; multi-label: BCE's
    pos_weight, n_negative / n_positive), a mapping names them (unnamed labels get 1)."""
    wanted = run.recipe.train.class_weights
    if wanted is None:
        return None
    if wanted == "auto" and data_mod.is_streamed(train_rows):
        raise TaskcliError("train.class_weights=auto counts the training labels, and a streamed dataset (data.streaming)"
                           " is not read ahead", "give a weight per label, e.g. --set 'train.class_weights={pos: 1, "
                           "neg: 3}'")
    if not run.task.cross_entropy_loss or run.labels is None or run.task.label_column is None or \
            run.learned.model_loss:
        raise TaskcliError(f"train.class_weights applies to classification with a cross-entropy loss; "
                           f"{run.task.name}{' on real-valued labels' if run.learned.model_loss else ''} has none",
                           "drop train.class_weights")
    names = [str(n) for n in run.labels]
    if isinstance(wanted, dict):
        unknown = [k for k in wanted if k not in names]
        if unknown:
            raise TaskcliError(f"train.class_weights names unknown label '{unknown[0]}'", f"labels: {', '.join(names)}")
        return [float(wanted.get(n, 1.0)) for n in names]
    import collections

    index = {n: i for i, n in enumerate(names)}
    counts: collections.Counter = collections.Counter()
    for value in train_rows[run.task.label_column]:
        for v in value if isinstance(value, list) else [value]:
            counts[v if isinstance(v, int) else index.get(str(v), -1)] += 1
    if run.learned.multi_label:  # BCE's pos_weight: a label's negative rows over its positive ones
        from taskcli.multilabel import pos_weight

        return pos_weight(counts, len(train_rows), len(names))
    total = sum(c for i, c in counts.items() if 0 <= i < len(names))
    present = sum(1 for i in range(len(names)) if counts[i])
    return [total / (present * counts[i]) if counts[i] else 1.0 for i in range(len(names))]

