"""text-classification: a text (or sentence pair) -> one label with a score; or, with real-valued labels
(STS-B similarity, ratings), regression: one number per input, scored by Pearson/Spearman correlation and MSE; or,
with several labels per row (taskcli/multilabel.py), multi-label: every label scoring over a threshold."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from taskcli.errors import TaskcliError
from dataclasses import dataclass, field
from typing import Any

from taskcli import multilabel
from taskcli.task import Context, Encoded, Steps, Task, numpy_of, softmax
from taskcli.tasks import classification_common

SCORE = "score"  # the single output of a regression head


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    regression: bool | None = Field(None, description="predict a number (MSE loss); default: when the label "
                                                      "column holds floats, or the model is a regression model")


def _regression(run, on: bool) -> None:
    """Regression runs keep the model's own MSE loss and pick the best checkpoint by Pearson correlation."""
    run.learned.regression = on
    if on:
        run.learned.model_loss, run.learned.best_metric, run.learned.greater_is_better = True, "pearson", True


def labels(run, dsd) -> list[str]:
    if run.learned.multi_label:
        return classification_common.class_names(dsd, "text")
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

    if label_names is not None and run.learned.regression:
        return transformers.AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=1, problem_type="regression", id2label={0: SCORE}, label2id={SCORE: 0},
            ignore_mismatched_sizes=True, **run.pretrained_kwargs())
    model = classification_common.load_model(run, source, label_names)
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
    regression = bool(run.learned.regression)  # a plain bool: datasets hashes what the closure holds
    multi = bool(run.learned.multi_label)
    # ClassLabel ids name classes through the data's own names (which need not be in the model's id order)
    feature = ds.features.get("label")
    names = list(getattr(getattr(feature, "feature", feature), "names", None) or [])

    def encode(batch):
        args = (batch["text"], batch["text_pair"]) if pair else (batch["text"],)
        enc = tok(*args, truncation=True, max_length=max_length)
        if regression:
            enc["labels"] = [float(v) for v in batch["label"]]
            return enc
        if multi:  # one 0/1 target per label (float: BCE's)
            enc["labels"] = [multilabel.multi_hot(v, index, names) for v in batch["label"]]
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
        if run.learned.multi_label:
            return classification_common.multi_label_metrics(logits, pred.label_ids, names)
        if run.learned.regression:
            from taskcli.metrics import correlation

            return correlation(np.asarray(logits).reshape(-1), np.asarray(pred.label_ids).reshape(-1))
        preds = np.argmax(logits, axis=-1)
        return {**classification(preds, pred.label_ids, names),
                **extra(extra_names, preds.tolist(), pred.label_ids.tolist())}

    return compute


@dataclass
class _Context(Context):
    tok: Any = None
    limit: int = 512  # tokens the model reads; longer inputs are cut, and their rows say so
    id2label: dict = field(default_factory=dict)
    regression: bool = False  # one number per input, not squashed
    sigmoid: bool = False  # single-logit / multi-label heads: sigmoid scores, as the pipeline
    top_k: int = 1
    threshold: float | None = None  # multi-label: list every label scoring at least this


@dataclass
class _Text(Encoded):
    tokens: int = 0  # the input's untruncated length


def setup(run, model, options):
    tok = run.tokenizer()
    limit = min(tok.model_max_length or 512, getattr(model.config, "max_position_embeddings", 512) or 512)
    regression = _regression_head(run, model.config)
    threshold = multilabel.threshold(run, model, options.threshold)
    return _Context(run, model, options, truncates=(limit, "the model's maximum"), tok=tok,
                    limit=limit, id2label=model.config.id2label, regression=regression,
                    sigmoid=not regression and (model.config.num_labels == 1 or
                                                model.config.problem_type == "multi_label_classification"),
                    top_k=min(options.top_k, len(model.config.id2label)), threshold=threshold)


def _regression_head(run, config) -> bool:
    """Does the model's one output give the number itself? problem_type says so when set; a one-output head without
    one is regression, as transformers' own loss treats it (textattack/bert-base-uncased-STS-B has no problem_type);
    the recipe's params.regression, when set, decides for a one-output head (bert-stsb: true)."""
    if config.num_labels != 1:
        return config.problem_type == "regression"
    if run.params.regression is not None:
        return bool(run.params.regression)
    return config.problem_type in (None, "regression")


def parse(ctx, item):
    """A plain text, or a JSON line {"text": ..., "text_pair": ...} (sentence pairs) -> (text, pair or None)."""
    from taskcli.inputs import text_of

    if not isinstance(item, dict):
        return text_of(item), None
    return text_of(item), text_of(item, ("text_pair",)) if "text_pair" in item else None


def encode(ctx, pairs):
    texts, seconds = [t for t, _ in pairs], [p for _, p in pairs]
    second = seconds if any(p is not None for p in seconds) else None
    if second is not None and not all(p is not None for p in second):  # the tokenizer takes pairs or none
        return [encode(ctx, [pair])[0] for pair in pairs]
    full = ctx.tok(texts, second, verbose=False)["input_ids"]
    enc = ctx.tok(texts, second, truncation=True, max_length=ctx.limit)
    rows = [{k: enc[k][i] for k in enc} for i in range(len(texts))]
    return [_Text([row], [len(row["input_ids"])], tokens=len(ids)) for row, ids in zip(rows, full)]


def forward(ctx, batch):
    """Scores in numpy whichever runtime ran (torch, or an export's ONNX Runtime with or without torch)."""
    import numpy as np

    logits = numpy_of(ctx.model(**batch).logits)
    if ctx.regression:
        return logits[:, 0].tolist()
    if ctx.sigmoid:
        with np.errstate(over="ignore"):  # a logit below -88: exp overflows, and the score is 0 as it should be
            return 1.0 / (1.0 + np.exp(-logits))
    return softmax(logits)


def decode(ctx, enc, outputs):
    import numpy as np

    if ctx.regression:  # the number itself: no squashing
        row = {"label": SCORE, "score": float(outputs[0])}
    elif ctx.threshold is not None:
        row = multilabel.over(outputs[0].tolist(), ctx.threshold, ctx.id2label)
    else:
        ids = np.argsort(-outputs[0], kind="stable")[:ctx.top_k]  # highest first, ties in id order
        ranked = [{"label": ctx.id2label[int(j)], "score": float(outputs[0][j])} for j in ids]
        row = {**ranked[0], **({"top_k": ranked} if ctx.top_k > 1 else {})}
    if enc.tokens > ctx.limit:
        row.update(truncated=True, input_tokens=enc.tokens)
    return row


STEPS = Steps(setup=setup, parse=parse, encode=encode, forward=forward, decode=decode)


def render(item, result):
    if "labels" in result:  # multi-label
        return classification_common.render(item, result)
    ranked = result.get("top_k") or [result]
    return [{"label": r["label"], "score": f"{r['score']:.4f}"} for r in ranked]


TASK = Task(
    infer_options=classification_common.ClassifyOptions,
    name="text-classification",
    label_column="label",
    aliases=("text-cls", "sentiment", "classification"),
    summary="Sentence / sentence-pair classification",
    modality="text",
    metric_names=("accuracy", "f1"),
    best_metric="accuracy",
    columns={"text": "the text", "text_pair": "optional second sentence",
             "label": "class name or id (multi-label: a list, a separated string or 0/1 columns)"},
    optional_columns=("text_pair",),
    sample="text-classification.jsonl",
    default_recipe="distilbert",
    auto_model="AutoModelForSequenceClassification",
    load_processor=load_processor,
    preprocess=preprocess,
    collator=collator,
    metrics=metrics,
    steps=lambda run, model: STEPS,
    render=render,
    labels=labels,
    load_model=load_model,
    params=Params,
    cross_entropy_loss=True,
    multi_label=True,
    check=multilabel.check,
    before_save=multilabel.before_save,
    numpy_steps=True,
)
