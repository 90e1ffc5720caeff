"""Pieces shared by the whole-input classification tasks (audio-, image- and text-classification): label
names from the data, accuracy/F1 metrics, top-k results as the Hub pipelines return them, and multi-label runs'
model head, metrics and infer options (taskcli/multilabel.py reads their data)."""

from __future__ import annotations

from pydantic import Field

from taskcli import multilabel
from taskcli.errors import TaskcliError
from taskcli.task import RankedOptions, load_pretrained
from taskcli.tasks import label_sets


class ClassifyOptions(RankedOptions):
    """Classifiers that can be multi-label: the score a label needs to be listed."""

    threshold: float | None = Field(None, ge=0.0, le=1.0)  # multi-label: default the model's (chosen on eval)


def class_names(dsd, kind: str) -> list[str]:
    """ClassLabel names of the 'label' column (or of its lists), else the sorted distinct labels (also those in
    lists: multi-label rows)."""
    def values(ds):
        return (x for v in ds["label"] for x in (v if isinstance(v, list) else [v]) if x is not None)

    return label_sets.names(dsd, lambda features: features.get("label"), values, f"{kind} labels")


def load_model(run, source, labels):
    """The task's model; a multi-label run's fresh head says so in its config (sigmoid, BCE), and a trained model
    that is multi-label makes the run so."""
    multi = run.learned.multi_label
    model = load_pretrained(run, source, labels, **({"problem_type": multilabel.MULTI} if multi and labels else {}))
    if getattr(model.config, "problem_type", None) == multilabel.MULTI:
        multilabel.learn(run)
    elif multi and labels is None:
        raise TaskcliError(f"the data holds several labels per row, and {run.model_source} is a single-label model",
                           "evaluate a multi-label model (finetune one on this data), or data with one label per row")
    return model


def metrics(run, examples, features):
    """Accuracy, macro F1 and per-class scores from the logits' argmax; multi-label: from the sigmoid scores."""
    import numpy as np

    from taskcli.metrics import classification, main_output

    names = run.labels

    def compute(pred):
        logits = main_output(pred)
        if run.learned.multi_label:
            return multi_label_metrics(logits, pred.label_ids, names)
        return classification(np.argmax(logits, axis=-1), pred.label_ids, names)

    return compute


def multi_label_metrics(logits, refs, names) -> dict:
    """Multi-label scores of the logits' sigmoid against the 0/1 targets, at the best threshold on these rows."""
    import numpy as np

    from taskcli.metrics import multi_label

    scores = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
    return multi_label(scores, np.asarray(refs) > 0.5, names)


def top_k(logits, k: int, id2label: dict) -> list[dict]:
    """Softmax top-k per row, as the audio/image-classification pipelines score: [{"labels": [{label, score}]}]."""
    probs = logits.float().softmax(-1).cpu()
    scores, ids = probs.topk(min(k, probs.shape[-1]), dim=-1)
    return [{"labels": [{"label": id2label[int(i)], "score": float(s)} for s, i in zip(srow, irow)]}
            for srow, irow in zip(scores.tolist(), ids.tolist())]


def sigmoid_over(logits, threshold: float, id2label: dict) -> dict:
    """Multi-label: every label whose sigmoid score reaches `threshold`, as pipeline(..., top_k=None,
    function_to_apply="sigmoid") scores them."""
    return multilabel.over(logits.float().sigmoid().reshape(-1).cpu().tolist(), threshold, id2label)


def render(item, result) -> list[dict]:
    if not result["labels"] and "threshold" in result:  # multi-label, nothing over the threshold: said, not blank
        return [{"label": f"(no label ≥ {result['threshold']:.2f})", "score": ""}]
    return [{"label": r["label"], "score": f"{r['score']:.4f}"} for r in result["labels"]]
