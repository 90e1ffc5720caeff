"""text-classification: a text (or sentence pair) -> one label with a score; or, with real-valued labels
(STS-B similarity, ratings), regression: one number per input, scored by Pearson/Spearman correlation and MSE."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from taskcli.errors import TaskcliError
from taskcli.task import Task

SCORE = "score"  # the single output of a regression head


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    regression: bool | None = Field(None, description="predict a number (MSE loss); default: when the label "
                                                      "column holds floats, or the model is a regression model")


def _regression(run, on: bool) -> None:
    """Regression runs keep the model's own MSE loss and pick the best checkpoint by Pearson correlation."""
    run.state["regression"] = on
    if on:
        run.state.update(model_loss=True, best_metric="pearson", greater_is_better=True)


def labels(run, dsd) -> list[str]:
    feature = dsd["train" if "train" in dsd else "eval"].features["label"]
    floats = getattr(feature, "dtype", "").startswith("float")
    if run.params.regression or (run.params.regression is None and floats):
        _regression(run, True)
        return [SCORE]
    if hasattr(feature, "names"):
        return list(feature.names)
    found = {v for ds in dsd.values() for v in ds["label"]}
    if any(isinstance(v, float) and not float(v).is_integer() for v in found):
        raise TaskcliError("label column holds real numbers", "drop params.regression: false to fit them as numbers")
    if all(isinstance(v, (int, float)) for v in found):
        return [str(i) for i in range(int(max(found)) + 1)]  # integer ids keep their meaning
    return sorted(str(v) for v in found)


def load_model(run, source, label_names):
    import transformers

    from taskcli.task import load_pretrained

    if label_names is not None and run.state.get("regression"):
        return transformers.AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=1, problem_type="regression", id2label={0: SCORE}, label2id={SCORE: 0},
            ignore_mismatched_sizes=True, **run.pretrained_kwargs())
    model = load_pretrained(run, source, label_names)
    if label_names is None and model.config.problem_type == "regression":
        _regression(run, True)
    return model


def load_processor(run):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(run.model_source, **run.pretrained_kwargs())


def preprocess(run, ds, training):
    tok, max_length = run.tokenizer(), run.recipe.data.max_length
    index = {n: i for i, n in enumerate(run.labels)}
    pair = "text_pair" in ds.column_names
    regression = bool(run.state.get("regression"))  # a plain bool: datasets hashes what the closure holds
    # ClassLabel ids name classes through the data's own names (which need not be in the model's id order)
    names = list(getattr(ds.features.get("label"), "names", None) or [])

    def encode(batch):
        args = (batch["text"], batch["text_pair"]) if pair else (batch["text"],)
        enc = tok(*args, truncation=True, max_length=max_length)
        if regression:
            enc["labels"] = [float(v) for v in batch["label"]]
            return enc
        try:
            enc["labels"] = [index[v if isinstance(v, str) else names[int(v)] if names else str(int(v))]
                             for v in batch["label"]]
        except KeyError as err:
            raise TaskcliError(f"unknown label {err} in the data", f"the model knows: {', '.join(index)}") from None
        return enc

    return run.map(ds, encode, batched=True, remove_columns=ds.column_names)


def collator(run):
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(run.tokenizer())


def metrics(run, examples, features):
    import numpy as np

    from taskcli.metrics import classification, extra, main_output

    names, extra_names = run.labels, run.recipe.eval.extra_metrics

    def compute(pred):
        logits = main_output(pred)
        if run.state.get("regression"):
            from taskcli.metrics import correlation

            return correlation(np.asarray(logits).reshape(-1), np.asarray(pred.label_ids).reshape(-1))
        preds = np.argmax(logits, axis=-1)
        return {**classification(preds, pred.label_ids, names),
                **extra(extra_names, preds.tolist(), pred.label_ids.tolist())}

    return compute


def read_inputs(run, args, options):
    """Plain texts, or JSON lines {"text": ..., "text_pair": ...} for sentence pairs."""
    from taskcli.inputs import empty, read_texts, text_of

    def use(item):
        if not isinstance(item, dict):
            return item
        text, pair = text_of(item), item.get("text_pair")
        if pair is not None and not str(pair).strip():
            raise empty()
        return text if pair is None else {"text": text, "text_pair": str(pair)}

    return read_texts(args, options, use)


def predict(run, model, items, options):
    """Length-sorted batches; softmax scores (sigmoid for single-logit / multi-label heads, as the pipeline).
    Inputs longer than the model's maximum are truncated to it, with a note on stderr and in their rows."""
    import torch

    from taskcli import truncation
    from taskcli.batching import run_sorted

    tok = run.tokenizer()
    texts = [i["text"] if isinstance(i, dict) else i for i in items]
    pairs = [i["text_pair"] if isinstance(i, dict) else None for i in items]
    limit = min(tok.model_max_length or 512, getattr(model.config, "max_position_embeddings", 512) or 512)
    if any(p is not None for p in pairs):
        encodings = [dict(tok(t, p, truncation=True, max_length=limit)) for t, p in zip(texts, pairs)]
    else:
        batch = tok(texts, truncation=True, max_length=limit)
        encodings = [{k: batch[k][i] for k in batch} for i in range(len(texts))]
    id2label = model.config.id2label
    regression = model.config.problem_type == "regression"
    sigmoid = not regression and (model.config.num_labels == 1 or
                                  model.config.problem_type == "multi_label_classification")
    top_k = min(options.get("top_k", 1), len(id2label))

    def forward(idx):
        inputs = tok.pad([encodings[i] for i in idx], return_tensors="pt").to(model.device)
        with torch.inference_mode():
            logits = model(**inputs).logits.float()
        if regression:  # the number itself: no squashing
            return [{"label": SCORE, "score": float(v)} for v in logits[:, 0].cpu().tolist()]
        probs = (torch.sigmoid(logits) if sigmoid else torch.softmax(logits, dim=-1)).cpu()
        scores, labels_ = probs.topk(top_k, dim=-1)
        rows = []
        for s, l in zip(scores.tolist(), labels_.tolist()):
            ranked = [{"label": id2label[j], "score": float(v)} for v, j in zip(s, l)]
            rows.append({**ranked[0], **({"top_k": ranked} if top_k > 1 else {})})
        return rows

    results = run_sorted([len(e["input_ids"]) for e in encodings], options.get("batch_size", 32), forward)
    return truncation.mark(results, truncation.token_counts(tok, texts, pairs), limit, "the model's maximum")


def render(item, result):
    ranked = result.get("top_k") or [result]
    return [{"label": r["label"], "score": f"{r['score']:.4f}"} for r in ranked]


TASK = Task(
    infer_options=frozenset({"top_k"}),
    name="text-classification",
    label_column="label",
    aliases=("text-cls", "sentiment", "classification"),
    summary="Sentence / sentence-pair classification",
    modality="text",
    metric_names=("accuracy", "f1"),
    best_metric="accuracy",
    columns={"text": "the text", "text_pair": "optional second sentence", "label": "class name or id"},
    optional_columns=("text_pair",),
    sample="text-classification.jsonl",
    default_recipe="distilbert",
    auto_model="AutoModelForSequenceClassification",
    load_processor=load_processor,
    preprocess=preprocess,
    collator=collator,
    metrics=metrics,
    read_inputs=read_inputs,
    predict=predict,
    render=render,
    labels=labels,
    load_model=load_model,
    params=Params,
    cross_entropy_loss=True,
)
