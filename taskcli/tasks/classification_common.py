"""Pieces shared by the whole-input classification tasks (audio-classification, image-classification): label
names from the data, accuracy/F1 metrics, and top-k results as the Hub pipelines return them."""

from __future__ import annotations

from taskcli.tasks import label_sets


def class_names(dsd, kind: str) -> list[str]:
    """ClassLabel names of the 'label' column, else the sorted distinct labels."""
    return label_sets.names(dsd, lambda features: features.get("label"), lambda ds: ds["label"], f"{kind} labels")


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
