"""question-answering (extractive): question + context -> answer span, with SQuAD v1/v2 scoring.

transformers 5 has no question-answering pipeline, so the span search lives here and serves both eval and
infer: every overflow window of a long context is scored, and the best valid (start <= end, at most
`max_answer_length` tokens, inside the context) span wins. Scores are start-probability x end-probability.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from taskcli.errors import TaskcliError
from taskcli.task import Context, Encoded, InferOptions, Steps, Task, numpy_of, softmax


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    doc_stride: int = Field(128, gt=0, description="token overlap between windows of a long context")
    max_answer_length: int = Field(30, gt=0, description="longest answer, in tokens")
    allow_no_answer: bool | None = Field(
        None, description="SQuAD v2 'no answer' predictions; default: on when the data has unanswerable questions")


def load_processor(run):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run.model_source, **run.pretrained_kwargs())
    if not getattr(tok, "is_fast", False):
        raise TaskcliError(f"{run.model_source} has no fast tokenizer", "question-answering needs offset mappings")
    return tok


def _windows(tok, questions, contexts, max_length, stride):
    """Tokenize (question, context) pairs into overflow windows; pad side decides which text is truncated."""
    q_first = tok.padding_side == "right"
    if max_length <= stride:
        raise TaskcliError(f"params.doc_stride ({stride}) must be below data.max_length ({max_length})")
    return tok(
        [q.lstrip() for q in questions] if q_first else contexts,
        contexts if q_first else [q.lstrip() for q in questions],
        truncation="only_second" if q_first else "only_first",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    ), (1 if q_first else 0)


def preprocess(run, ds, training):
    """Windows with start/end token positions (CLS when the answer is outside the window or absent)."""
    tok, max_length, stride = run.tokenizer(), run.recipe.data.max_length, run.params.doc_stride
    has_id = "id" in ds.column_names

    def encode(batch):
        enc, ctx_seq = _windows(tok, batch["question"], batch["context"], max_length, stride)
        sample_map = enc.pop("overflow_to_sample_mapping")
        starts, ends, example_ids, offsets = [], [], [], []
        for i, offs in enumerate(enc["offset_mapping"]):
            ex = sample_map[i]
            seq_ids = enc.sequence_ids(i)
            cls = enc["input_ids"][i].index(tok.cls_token_id) if tok.cls_token_id in enc["input_ids"][i] else 0
            answers = batch["answers"][ex]
            ctx_tokens = [k for k, s in enumerate(seq_ids) if s == ctx_seq]
            start_tok = end_tok = cls
            if answers["answer_start"]:
                a_start = answers["answer_start"][0]
                a_end = a_start + len(answers["text"][0])
                first, last = ctx_tokens[0], ctx_tokens[-1]
                if offs[first][0] <= a_start and offs[last][1] >= a_end:
                    start_tok = next(k for k in ctx_tokens if offs[k][1] > a_start)
                    end_tok = next(k for k in reversed(ctx_tokens) if offs[k][0] < a_end)
            starts.append(start_tok)
            ends.append(end_tok)
            example_ids.append(str(batch["id"][ex] if has_id else batch["__index"][ex]))
            # keep offsets only for context tokens: the span search must never pick question tokens
            offsets.append([o if seq_ids[k] == ctx_seq else None for k, o in enumerate(offs)])
        enc["start_positions"], enc["end_positions"] = starts, ends
        enc["example_id"], enc["offset_mapping"] = example_ids, offsets
        return enc

    ds = _with_index(ds)
    return run.map(ds, encode, batched=True, remove_columns=ds.column_names)


def _with_index(ds):
    """A stable per-example key when the data has no `id` column."""
    return ds if "id" in ds.column_names else ds.add_column("__index", list(range(len(ds))))


def collator(run):
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(run.tokenizer())


def best_answers(start_logits, end_logits, feature_offsets, feature_example, contexts, max_answer_len, allow_null):
    """{example_id: {"answer", "score", "start", "end"}} from per-window logits (numpy arrays)."""
    import numpy as np

    best: dict = {}
    for k, (s_log, e_log, offs) in enumerate(zip(start_logits, end_logits, feature_offsets)):
        ex = feature_example[k]
        n = min(len(offs), len(s_log))
        in_ctx = np.array([offs[i] is not None for i in range(n)] + [False] * (len(s_log) - n))
        keep = in_ctx.copy()
        keep[0] = True  # CLS: the 'no answer' position
        s_prob = softmax(np.where(keep, s_log, -np.inf))
        e_prob = softmax(np.where(keep, e_log, -np.inf))
        scores = np.outer(s_prob * in_ctx, e_prob * in_ctx)
        scores = np.triu(scores) - np.triu(scores, k=max_answer_len)  # start <= end < start + max_len
        s_i, e_i = np.unravel_index(int(np.argmax(scores)), scores.shape)
        span = float(scores[s_i, e_i])
        null = float(s_prob[0] * e_prob[0])
        entry = best.setdefault(ex, {"answer": "", "score": -1.0, "start": 0, "end": 0, "null": 1.0})
        entry["null"] = min(entry["null"], null)
        if span > entry["score"] and in_ctx[s_i]:
            start, end = offs[s_i][0], offs[e_i][1]
            entry.update(answer=contexts[ex][start:end], score=span, start=int(start), end=int(end))
    for entry in best.values():
        if allow_null and entry["null"] > entry["score"]:
            entry.update(answer="", score=entry["null"], start=0, end=0)
        entry.pop("null")
        entry["score"] = max(entry["score"], 0.0)
    return best


def metrics(run, examples, features):
    """Official SQuAD EM/F1 (v2 'no answer' handling when the data has unanswerable questions)."""
    from taskcli.metrics import extra, squad

    examples = _with_index(examples)
    key = "id" if "id" in examples.column_names else "__index"
    ids = [str(x) for x in examples[key]]
    contexts = dict(zip(ids, examples["context"]))
    references = {i: list(a["text"]) for i, a in zip(ids, examples["answers"])}
    allow_null = run.params.allow_no_answer
    if allow_null is None:
        allow_null = any(not golds for golds in references.values())
    offsets, feature_example = list(features["offset_mapping"]), list(features["example_id"])
    max_len, extra_names = run.params.max_answer_length, run.recipe.eval.extra_metrics

    def compute(pred):
        start_logits, end_logits = pred.predictions[:2]
        answers = best_answers(start_logits, end_logits, offsets, feature_example, contexts, max_len, allow_null)
        predicted = {i: a["answer"] for i, a in answers.items()}
        # `evaluate`'s squad metrics take these shapes
        extra_preds = [{"id": i, "prediction_text": predicted.get(i, "")} for i in ids]
        extra_refs = [{"id": i, "answers": {"text": references[i], "answer_start": [0] * len(references[i])}} for i in ids]
        return {**squad(predicted, references), **extra(extra_names, extra_preds, extra_refs)}

    return compute


class Options(InferOptions):
    """One question asked of one context from the command line (besides JSON inputs): both or neither."""

    question: str | None = None
    context: str | None = None  # the text, or a file holding it


@dataclass
class _Context(Context):
    tok: Any = None
    window: int = 384  # tokens per window: data.max_length within the tokenizer's limit
    stride: int = 128  # params.doc_stride
    keys: tuple = ()  # the tokenizer outputs the model takes (token_type_ids only where its forward does)
    ctx_seq: int = 1  # sequence id of the context in a window: the pad side decides which text comes first
    max_answer_length: int = 30
    allow_null: bool = False


@dataclass
class _Item(Encoded):
    context: str = ""
    offsets: list = field(default_factory=list)  # per window: character spans of its context tokens, None elsewhere


def setup(run, model, options):
    tok = run.tokenizer()
    keys = ["input_ids", "attention_mask", "token_type_ids"]
    if "token_type_ids" not in model.forward.__code__.co_varnames:
        keys.remove("token_type_ids")
    return _Context(run, model, options, tok=tok,
                    window=min(run.recipe.data.max_length, tok.model_max_length or 512), stride=run.params.doc_stride,
                    keys=tuple(keys), ctx_seq=1 if tok.padding_side == "right" else 0,
                    max_answer_length=run.params.max_answer_length, allow_null=bool(run.params.allow_no_answer))


def read(ctx, args):
    """--question/--context first, then JSON objects {"question", "context"} as args, files (JSONL) or stdin."""
    from pathlib import Path

    from taskcli.inputs import text_entries

    options, entries = ctx.options, []
    if options.question or options.context:
        if not (options.question and options.context):
            raise TaskcliError("question-answering needs both --question and --context")
        context = options.context
        if len(context) < 1024 and "\n" not in context and Path(context).suffix and Path(context).is_file():
            context = Path(context).read_text(encoding="utf-8")
        entries.append(("--question/--context", {"question": options.question, "context": context}))
    return entries + text_entries(args, ctx)


def parse(ctx, item):
    from taskcli.inputs import BadInput, empty, text_of

    if isinstance(item, str) and not item.strip():
        raise empty()
    if not (isinstance(item, dict) and "question" in item and "context" in item):
        raise BadInput("is not a JSON object with 'question' and 'context'", "no 'question' and 'context'",
                       'pass {"question": "...", "context": "..."} lines, or --question/--context')
    return text_of(item, ("question",)), text_of(item, ("context",))


def encode(ctx, pairs):
    """Each (question, context) as overflow windows of its context (several for a long one)."""
    enc, _ = _windows(ctx.tok, [q for q, _ in pairs], [c for _, c in pairs], ctx.window, ctx.stride)
    out = [_Item([], [], context=c) for _, c in pairs]
    for w, owner in enumerate(enc["overflow_to_sample_mapping"]):
        seq_ids = enc.sequence_ids(w)
        out[owner].features.append({k: enc[k][w] for k in ctx.keys if k in enc})
        out[owner].lengths.append(len(enc["input_ids"][w]))
        out[owner].offsets.append([o if seq_ids[j] == ctx.ctx_seq else None
                                   for j, o in enumerate(enc["offset_mapping"][w])])
    return out


def forward(ctx, batch):
    """Per window, (start logits, end logits) of its own tokens (padding dropped)."""
    out = ctx.model(**batch)
    s, e = numpy_of(out.start_logits), numpy_of(out.end_logits)
    real = batch["attention_mask"].bool().cpu().numpy()
    return [(s[j][real[j]], e[j][real[j]]) for j in range(len(s))]


def decode(ctx, enc, logits):
    """The best span over all the input's windows (see best_answers)."""
    answers = best_answers([s for s, _ in logits], [e for _, e in logits], enc.offsets, [0] * len(logits),
                           [enc.context], ctx.max_answer_length, ctx.allow_null)
    return answers[0]


STEPS = Steps(setup=setup, read=read, parse=parse, encode=encode, forward=forward, decode=decode)


def render(item, result):
    return [{"answer": result["answer"] or "(no answer)", "score": f"{result['score']:.4f}",
             "span": f"{result['start']}-{result['end']}"}]


TASK = Task(
    infer_options=Options,
    name="question-answering",
    features_per_example=False,
    aliases=("qa", "extractive-qa"),
    summary="Extractive question answering (SQuAD-style spans)",
    modality="text",
    metric_names=("exact_match", "f1"),
    best_metric="f1",
    columns={"question": "the question", "context": "text that holds the answer",
             "answers": "{text: [..], answer_start: [..]} (empty lists = unanswerable)", "id": "optional example id"},
    optional_columns=("id",),
    sample="question-answering.jsonl",
    default_recipe="distilbert",
    auto_model="AutoModelForQuestionAnswering",
    load_processor=load_processor,
    preprocess=preprocess,
    collator=collator,
    metrics=metrics,
    steps=lambda run, model: STEPS,
    render=render,
    params=Params,
    warm_up=({"question": "Where does Alice work?", "context": "Alice works for Globex in Paris."},
             {"question": "Who hired Bob last year?", "context": "Bob moved to Berlin in spring, and last year "
                                                                "Initech hired him to lead its new office there."}),
)
