"""Metric functions shared by tasks: offline, deterministic, built on the reference libraries.

Plus `extra_metrics`: any `evaluate` metric (hub name or local script path), loaded only when a recipe asks.
"""

from __future__ import annotations

import collections
import re
import string
from typing import Any

from taskcli.errors import TaskcliError


def main_output(pred):
    """The first model output of a Trainer EvalPrediction (logits, generated ids, depth...): predictions is a
    tuple when the model returns more than one tensor."""
    return pred.predictions[0] if isinstance(pred.predictions, (tuple, list)) else pred.predictions


def scalar_metrics(metrics: dict) -> dict:
    """The single-number metrics, in order (not per-class dicts, curves or matrices)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) or v is None}


def nested_tables(metrics: dict) -> list[tuple[str, str, list[str], dict[str, dict]]]:
    """The nested metrics as tables, for the terminal and the model card alike: (metric key, first column's
    header, score columns, {row name: {column: value}}).

    per_class / per_entity hold a dict of scores per name; per_class_iou / per_class_ap one score per name (None =
    absent); a breakdown such as wer_by_duration one score per group. Curves and matrices (lists) are for the
    report's plots, not tables."""
    tables = []
    for key, value in metrics.items():
        if not isinstance(value, dict) or not value or any(isinstance(v, list) for v in value.values()):
            continue
        score, _, what = key.partition("_by_")
        first = what.replace("_", " ") if what else key.split("_")[1] if key.startswith("per_") else "name"
        column = score if what else key.split("_")[-1]
        rows = {str(name): row if isinstance(row, dict) else {column: row} for name, row in value.items()}
        cols = list(dict.fromkeys(c for row in rows.values() for c in row))
        tables.append((key, first, cols, rows))
    return tables


def classification(preds, refs, labels: list[str]) -> dict:
    """Accuracy, macro F1 and per-class precision/recall/F1 (scikit-learn).

    The macro average is over the classes present in the references or the predictions (scikit-learn's default):
    a class the eval rows never mention and the model never predicts is not scored 0. Per-class rows list every class.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    ids = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(refs, preds, labels=ids, zero_division=0)
    return {
        "accuracy": float(accuracy_score(refs, preds)),
        "f1": float(f1_score(refs, preds, average="macro", zero_division=0)),
        "per_class": {
            str(labels[i]): {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i in ids
        },
        # rows: true class, columns: predicted, in label order (the run report draws it)
        "confusion_matrix": confusion_matrix(refs, preds, labels=ids).tolist(),
    }


THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))  # the multi-label threshold search: 0.05 ... 0.95


def multi_label(scores, refs, labels: list[str], threshold: float | None = None) -> dict:
    """Multi-label scores (scikit-learn) of per-label scores [rows, labels] against 0/1 references: micro and macro
    F1, subset accuracy (every label of a row right) and per-label precision/recall/F1/support, at `threshold`, or
    at the one of THRESHOLDS with the best micro F1 (ties: the nearest 0.5), which `threshold` records. The macro
    average is over the labels present in the references or the predictions, as `classification`'s."""
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    scores, refs = np.asarray(scores, dtype=np.float64), np.asarray(refs).astype(int)

    def micro(t):
        return float(f1_score(refs, (scores >= t).astype(int), average="micro", zero_division=0))

    if threshold is None:
        threshold = max(THRESHOLDS, key=lambda t: (micro(t), -abs(t - 0.5)))
    preds = (scores >= threshold).astype(int)
    p, r, f, s = precision_recall_fscore_support(refs, preds, average=None, labels=list(range(len(labels))),
                                                 zero_division=0)
    present = (refs.sum(axis=0) + preds.sum(axis=0)) > 0
    return {
        "f1_micro": micro(threshold),
        "f1_macro": float(f[present].mean()) if present.any() else 0.0,
        "subset_accuracy": float(accuracy_score(refs, preds)),
        "threshold": float(threshold),
        "f1_micro_at_half": micro(0.5),
        "per_class": {str(labels[i]): {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                       "support": int(s[i])} for i in range(len(labels))},
    }


def segmentation(confusion, labels: list[str]) -> dict:
    """Semantic segmentation scores from a pixel confusion matrix [true, predicted] (ignored pixels left out).

    mean_iou averages IoU over the classes present in the references or the predictions; mean_accuracy
    (per-class recall) over the classes present in the references; overall_accuracy is the pixel accuracy
    (the conventions of `evaluate`'s mean_iou).
    """
    import numpy as np

    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(cm)
    true, pred = cm.sum(axis=1), cm.sum(axis=0)
    union = true + pred - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(true > 0, tp / true, np.nan)
    total = cm.sum()
    return {
        "mean_iou": float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0,
        "mean_accuracy": float(np.nanmean(acc)) if np.isfinite(acc).any() else 0.0,
        "overall_accuracy": float(tp.sum() / total) if total else 0.0,
        "per_class_iou": {str(name): (None if np.isnan(v) else float(v)) for name, v in zip(labels, iou)},
    }


# ground-truth depth ranges (metres) of the error-by-depth breakdown: indoor scenes fill the first bins, outdoor the last
DEPTH_BINS = ((0, 1), (1, 2), (2, 4), (4, 8), (8, 16), (16, None))
DEPTH_SUMS = ("n", "abs_rel", "sq_rel", "sq_err", "sq_log", "delta1", "delta2", "delta3",
              *(f"bin{k}_{s}" for k in range(len(DEPTH_BINS)) for s in ("n", "abs_rel")))


def _range_name(lo, hi, unit: str) -> str:
    return f"{lo}+ {unit}" if hi is None else f"{lo}-{hi} {unit}"


def depth_sums(pred, ref, valid) -> dict:
    """Per-pixel error sums of a batch over `valid` pixels (numpy arrays), to be added up across batches."""
    import numpy as np

    p, g = np.maximum(pred[valid].astype(np.float64), 1e-6), ref[valid].astype(np.float64)
    ratio = np.maximum(p / g, g / p)
    bins = {}
    for k, (lo, hi) in enumerate(DEPTH_BINS):
        inside = (g >= lo) & (g < hi if hi is not None else True)
        bins[f"bin{k}_n"] = float(inside.sum())
        bins[f"bin{k}_abs_rel"] = float(np.sum(np.abs(p[inside] - g[inside]) / g[inside]))
    return {**bins, "n": float(g.size), "abs_rel": float(np.sum(np.abs(p - g) / g)), "sq_rel": float(np.sum((p - g) ** 2 / g)),
            "sq_err": float(np.sum((p - g) ** 2)), "sq_log": float(np.sum((np.log(p) - np.log(g)) ** 2)),
            "delta1": float(np.sum(ratio < 1.25)), "delta2": float(np.sum(ratio < 1.25 ** 2)),
            "delta3": float(np.sum(ratio < 1.25 ** 3))}


def depth(sums: dict) -> dict:
    """The usual monocular-depth scores (Eigen et al.) from summed errors: abs_rel, sq_rel, rmse, rmse_log and
    the share of pixels within 1.25, 1.25^2, 1.25^3 of the reference."""
    import math

    n = sums["n"] or 1.0
    by_depth = {_range_name(lo, hi, "m"): sums[f"bin{k}_abs_rel"] / sums[f"bin{k}_n"]
                for k, (lo, hi) in enumerate(DEPTH_BINS) if sums.get(f"bin{k}_n")}
    return {"abs_rel_by_depth": by_depth, "abs_rel": sums["abs_rel"] / n, "sq_rel": sums["sq_rel"] / n, "rmse": math.sqrt(sums["sq_err"] / n),
            "rmse_log": math.sqrt(sums["sq_log"] / n), "delta1": sums["delta1"] / n, "delta2": sums["delta2"] / n,
            "delta3": sums["delta3"] / n}


def coco_detection(predictions: list[list[tuple]], references: list[list[tuple]], labels: list[str]) -> dict:
    """COCO box metrics by pycocotools (the reference implementation): map (IoU 0.50:0.95), map_50, map_75,
    mar_100 and per-class AP. predictions[i]: (class id, score, [x0, y0, x1, y1]) for image i; references[i]:
    (class id, [x0, y0, x1, y1]); pixels."""
    import contextlib
    import io

    import numpy as np
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(box):
        x0, y0, x1, y1 = box
        return [x0, y0, x1 - x0, y1 - y0]

    anns = [{"id": k + 1, "image_id": i, "category_id": c + 1, "bbox": xywh(b), "area": xywh(b)[2] * xywh(b)[3],
             "iscrowd": 0} for k, (i, c, b) in enumerate((i, c, b) for i, refs in enumerate(references) for c, b in refs)]
    dets = [{"image_id": i, "category_id": c + 1, "bbox": xywh(b), "score": s}
            for i, preds in enumerate(predictions) for c, s, b in preds]
    zero = {"map": 0.0, "map_50": 0.0, "map_75": 0.0, "mar_100": 0.0, "per_class_ap": {str(n): 0.0 for n in labels}}
    if not anns or not dets:
        return zero
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and summary table
        truth = COCO()
        truth.dataset = {"images": [{"id": i} for i in range(len(references))], "annotations": anns,
                         "categories": [{"id": k + 1, "name": str(n)} for k, n in enumerate(labels)]}
        truth.createIndex()
        scored = COCOeval(truth, truth.loadRes(dets), "bbox")
        scored.evaluate()
        scored.accumulate()
        scored.summarize()
    stats = [max(float(v), 0.0) for v in scored.stats]  # -1 = nothing to score at that setting
    precision = scored.eval["precision"]  # [IoU, recall, class, area, max dets]
    per_class, curves = {}, {}
    for k, name in enumerate(labels):
        p = precision[:, :, k, 0, -1]
        per_class[str(name)] = float(np.mean(p[p > -1])) if (p > -1).any() else None
        at_50 = precision[0, :, k, 0, -1]  # IoU 0.5, the 101 recall points 0, 0.01, ..., 1
        if (at_50 > -1).any():  # -1: the class has no reference box
            curves[str(name)] = [max(float(v), 0.0) for v in at_50]
    return {"map": stats[0], "map_50": stats[1], "map_75": stats[2], "mar_100": stats[8], "per_class_ap": per_class,
            "pr_curve_50": curves}


def correlation(predictions, references) -> dict:
    """Regression scores (the GLUE STS-B set): Pearson and Spearman correlation (scipy), and mean squared error."""
    import numpy as np
    from scipy.stats import pearsonr, spearmanr

    p, r = np.asarray(predictions, dtype=np.float64), np.asarray(references, dtype=np.float64)
    flat = np.ptp(p) == 0 or np.ptp(r) == 0  # a constant side has no correlation: report 0, not NaN
    return {"pearson": 0.0 if flat else float(pearsonr(p, r)[0]),
            "spearman": 0.0 if flat else float(spearmanr(p, r)[0]),
            "mse": float(np.mean((p - r) ** 2))}


def entity_level(true_tags: list[list[str]], pred_tags: list[list[str]]) -> dict:
    """seqeval (CoNLL entity matching): micro precision/recall/F1, token accuracy, per-entity scores."""
    from seqeval.metrics import accuracy_score, classification_report

    report = classification_report(true_tags, pred_tags, output_dict=True, zero_division=0)
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
    return {
        "precision": float(micro["precision"]),
        "recall": float(micro["recall"]),
        "f1": float(micro["f1-score"]),
        "accuracy": float(accuracy_score(true_tags, pred_tags)),
        "per_entity": {
            name: {"precision": float(v["precision"]), "recall": float(v["recall"]), "f1": float(v["f1-score"]),
                   "support": int(v["support"])}
            for name, v in report.items()
            if not name.endswith(" avg")
        },
    }


# --- SQuAD scoring, as defined by the official v1.1/v2.0 evaluation scripts -------------------------------


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _f1(gold: str, pred: str) -> float:
    gold_toks, pred_toks = normalize_answer(gold).split(), normalize_answer(pred).split()
    if not gold_toks or not pred_toks:  # no-answer: right only if both are empty
        return float(gold_toks == pred_toks)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_toks), same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def answer_length(golds: list[str]) -> str:
    """The exact-match breakdown's bucket of a question: its shortest gold answer's length in words."""
    if not golds:
        return "no answer"
    words = min(len(normalize_answer(g).split()) for g in golds)
    return "1 word" if words <= 1 else "2 words" if words == 2 else "3-4 words" if words <= 4 else "5+ words"


ANSWER_LENGTHS = ("no answer", "1 word", "2 words", "3-4 words", "5+ words")


def squad(predictions: dict[str, str], references: dict[str, list[str]]) -> dict:
    """Exact match and F1 in percent, max over gold answers; an empty gold list means 'no answer' (v2).
    Also exact match by gold answer length (`exact_match_by_answer_length`)."""
    em = f1 = 0.0
    has_ans = [q for q, golds in references.items() if golds]
    no_ans = [q for q, golds in references.items() if not golds]
    per_q = {}
    for qid, golds in references.items():
        golds = golds or [""]
        pred = predictions.get(qid, "")
        q_em = max(float(normalize_answer(g) == normalize_answer(pred)) for g in golds)
        q_f1 = max(_f1(g, pred) for g in golds)
        per_q[qid] = (q_em, q_f1)
        em += q_em
        f1 += q_f1
    n = max(len(references), 1)
    out = {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n}
    buckets: dict[str, list[float]] = {}
    for qid, golds in references.items():
        buckets.setdefault(answer_length(golds), []).append(per_q[qid][0])
    out["exact_match_by_answer_length"] = {b: 100.0 * sum(buckets[b]) / len(buckets[b])
                                           for b in ANSWER_LENGTHS if b in buckets}
    if no_ans:  # SQuAD v2 breakdown
        for name, ids in (("HasAns", has_ans), ("NoAns", no_ans)):
            if ids:
                out[f"{name}_exact"] = 100.0 * sum(per_q[q][0] for q in ids) / len(ids)
                out[f"{name}_f1"] = 100.0 * sum(per_q[q][1] for q in ids) / len(ids)
    return out


# --- extra metrics via `evaluate` -------------------------------------------------------------------------


def extra(names: list[str], predictions: list[Any], references: list[Any]) -> dict:
    """Compute each `eval.extra_metrics` entry with the `evaluate` library (hub name or local script)."""
    if not names:
        return {}
    import evaluate

    out: dict = {}
    for name in names:
        try:
            metric = evaluate.load(name)
        except Exception as err:  # noqa: BLE001 - offline hub, bad path...
            raise TaskcliError(
                f"cannot load extra metric '{name}': {str(err).splitlines()[0][:160]}",
                "give a local metric script path, or run online",
            ) from None
        result = metric.compute(predictions=predictions, references=references)
        for key, value in (result or {}).items():
            out[key if key not in out else f"{name}_{key}"] = value
    return out


# --- speech recognition -----------------------------------------------------------------------------------


DURATIONS = ((0, 2), (2, 5), (5, 10), (10, 20), (20, 30), (30, None))  # seconds; Whisper reads 30 s windows


def wer_by_duration(predictions: list[str], references: list[str], seconds: list[float]) -> dict[str, float]:
    """Corpus WER of the clips in each duration range (only the ranges that hold clips)."""
    out = {}
    for lo, hi in DURATIONS:
        picked = [i for i, s in enumerate(seconds) if s >= lo and (hi is None or s < hi)]
        if picked:
            out[_range_name(lo, hi, "s")] = wer_cer([predictions[i] for i in picked], [references[i] for i in picked])["wer"]
    return out


def wer_cer(predictions: list[str], references: list[str]) -> dict:
    """Corpus-level word and character error rates with jiwer (its values exactly), on already-normalised text."""
    import jiwer

    if not references:
        return {"wer": 0.0, "cer": 0.0}
    if not any(r.strip() for r in references):  # jiwer cannot score against nothing but empty references
        wrong = float(any(p.strip() for p in predictions))
        return {"wer": wrong, "cer": wrong}
    return {"wer": float(jiwer.wer(references, predictions)), "cer": float(jiwer.cer(references, predictions))}


# --- generative text: ROUGE (rouge-score) and BLEU / chrF (sacreBLEU) --------------------------------------


def rouge(predictions: list[str], references: list[str]) -> dict:
    """ROUGE-1/2/L/Lsum F-measures (rouge-score, Porter stemming), plain mean over examples: deterministic,
    as the summarization guide reports them (fractions in 0..1). rougeLsum splits sentences on newlines."""
    from rouge_score import rouge_scorer

    keys = ("rouge1", "rouge2", "rougeL", "rougeLsum")
    scorer = rouge_scorer.RougeScorer(list(keys), use_stemmer=True)
    totals = dict.fromkeys(keys, 0.0)
    for pred, ref in zip(predictions, references):
        scores = scorer.score(ref, pred)  # (target, prediction)
        for k in keys:
            totals[k] += scores[k].fmeasure
    n = max(len(predictions), 1)
    return {k: totals[k] / n for k in keys}


def bleu_chrf(predictions: list[str], references: list[str] | list[list[str]]) -> dict:
    """Corpus sacreBLEU (default 13a tokenizer) and chrF, both 0..100, one or more references per example."""
    import sacrebleu

    refs = [r if isinstance(r, (list, tuple)) else [r] for r in references]
    width = max((len(r) for r in refs), default=1)
    streams = [[r[i] if i < len(r) else "" for r in refs] for i in range(width)]
    return {
        "bleu": float(sacrebleu.corpus_bleu(predictions, streams).score),
        "chrf": float(sacrebleu.corpus_chrf(predictions, streams).score),
    }
