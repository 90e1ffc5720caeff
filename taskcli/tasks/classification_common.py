"""Pieces shared by the whole-input classification tasks (audio-classification, image-classification): label
names from the data, accuracy/F1 metrics, and top-k results as the Hub pipelines return them."""

from __future__ import annotations

from taskcli.errors import TaskcliError


def class_names(dsd, kind: str) -> list[str]:
    """ClassLabel names of the 'label' column, else the sorted distinct string labels."""
    split = "train" if "train" in dsd else next(iter(dsd))
    feature = dsd[split].features.get("label")
    if hasattr(feature, "names"):
        return list(feature.names)
    found = {v for ds in dsd.values() for v in ds["label"]}
    if all(isinstance(v, int) for v in found):
        raise TaskcliError(f"{kind} labels are integers without names", "set data.labels in the recipe (names in id order)")
    return sorted(str(v) for v in found)


def label_id(value, index: dict[str, int]) -> int:
    """A row's label (ClassLabel id or name) -> id; unknown names are a clear error."""
    if isinstance(value, int):
        return value
    if str(value) not in index:
        raise TaskcliError(f"unknown label '{value}' in the data", f"known labels: {', '.join(index)}")
    return index[str(value)]


def metrics(run, examples, features):
    """Accuracy, macro F1 and per-class scores from the logits' argmax."""
    import numpy as np

    from taskcli.metrics import classification, main_output

    names = run.labels

    def compute(pred):
        logits = main_output(pred)
        return classification(np.argmax(logits, axis=-1), pred.label_ids, names)

    return compute


def top_k(logits, k: int, id2label: dict) -> list[dict]:
    """Softmax top-k per row, as the audio/image-classification pipelines score: [{"labels": [{label, score}]}]."""
    probs = logits.float().softmax(-1).cpu()
    scores, ids = probs.topk(min(k, probs.shape[-1]), dim=-1)
    return [{"labels": [{"label": id2label[int(i)], "score": float(s)} for s, i in zip(srow, irow)]}
            for srow, irow in zip(scores.tolist(), ids.tolist())]


def render(item, result) -> list[dict]:
    return [{"label": r["label"], "score": f"{r['score']:.4f}"} for r in result["labels"]]
