"""token-classification (NER): words + per-word tags -> entity groups with character offsets."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from taskcli.errors import TaskcliError
from dataclasses import dataclass, field
from typing import Any

from taskcli.task import Context, Encoded, Steps, Task, numpy_of, softmax
from taskcli.tasks import label_sets

# Byte-level BPE tokenizers need this to take pre-split words.
_PREFIX_SPACE_TYPES = {"roberta", "gpt2", "bart", "longformer", "deberta", "mpnet"}


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label_all_tokens: bool = False  # tag every sub-token of a word (else only the first; the rest are ignored)
    stride: int | None = Field(None, ge=0, description="infer: texts longer than data.max_length tokens are read in "
                                                       "overlapping windows sharing this many tokens (default: a "
                                                       "quarter of data.max_length)")
    conll_tag_column: int = Field(-1, description="CoNLL column files: the column holding the tag (0 is the "
                                                  "token; -1 the last, as in CoNLL-2003's `token POS chunk NER`)")


def labels(run, dsd) -> list[str]:
    # "O" first, then by entity type with B- before I-: a stable, readable id order.
    return label_sets.names(dsd, lambda features: features["tags"], lambda ds: (t for row in ds["tags"] for t in row),
                            "NER tags", order=lambda t: (t != "O", t[2:] if t[:2] in ("B-", "I-") else t, t))


def load_processor(run):
    from transformers import AutoTokenizer

    kw = {"add_prefix_space": True} if run.recipe.model.type in _PREFIX_SPACE_TYPES else {}
    tok = AutoTokenizer.from_pretrained(run.model_source, **kw, **run.pretrained_kwargs())
    if not getattr(tok, "is_fast", False):
        raise TaskcliError(f"{run.model_source} has no fast tokenizer", "token-classification needs word offsets")
    return tok


def _tag_ids(index: dict, tags):
    if tags and isinstance(tags[0], int):
        return tags
    return [label_sets.label_id(t, index, "NER tag") for t in tags]


def preprocess(run, ds, training):
    # Only plain values in the closure: datasets hashes it to fingerprint the cache.
    tok, label_all, max_length = run.tokenizer(), run.params.label_all_tokens, run.recipe.data.max_length
    index = {n: i for i, n in enumerate(run.labels)}

    def encode(batch):
        enc = tok(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
        enc["labels"] = []
        for i, tags in enumerate(batch["tags"]):
            ids = _tag_ids(index, tags)
            row, previous = [], None
            for word in enc.word_ids(i):
                if word is None:
                    row.append(-100)
                elif word != previous or label_all:
                    row.append(ids[word])
                else:
                    row.append(-100)
                previous = word
            enc["labels"].append(row)
        return enc

    return run.map(ds, encode, batched=True, remove_columns=ds.column_names)


def collator(run):
    from transformers import DataCollatorForTokenClassification

    return DataCollatorForTokenClassification(run.tokenizer())


def metrics(run, examples, features):
    """seqeval on the first sub-token of each word (the positions that carry a label)."""
    import numpy as np

    from taskcli.metrics import entity_level, extra, main_output

    names, extra_names = run.labels, run.recipe.eval.extra_metrics

    def compute(pred):
        logits = main_output(pred)
        predicted = np.argmax(logits, axis=-1)
        true_tags, pred_tags = [], []
        for p_row, l_row in zip(predicted, pred.label_ids):
            keep = l_row != -100
            true_tags.append([names[i] for i in l_row[keep]])
            pred_tags.append([names[i] for i in p_row[keep]])
        return {**entity_level(true_tags, pred_tags), **extra(extra_names, pred_tags, true_tags)}

    return compute


@dataclass
class _Context(Context):
    tok: Any = None
    window: int = 512  # tokens per window
    stride: int = 128  # tokens neighbouring windows share


@dataclass
class _Text(Encoded):
    text: str = ""
    windows: list = field(default_factory=list)  # per window: (input_ids, offsets, special_tokens_mask)


def _window(run, model, tok) -> tuple[int, int]:
    """(tokens per window, tokens shared by neighbouring windows): data.max_length within the model's limit."""
    limit = min(getattr(model.config, "max_position_embeddings", 512) or 512, tok.model_max_length or 512, 512)
    window = min(run.recipe.data.max_length, limit)
    content = window - tok.num_special_tokens_to_add()
    stride = run.params.stride if run.params.stride is not None else window // 4
    if stride >= content:
        raise TaskcliError(f"params.stride is {stride} tokens, but a {window}-token window holds only {content} text "
                           "tokens", f"lower params.stride, or raise data.max_length (the window; at most {limit})")
    return window, stride


def setup(run, model, options):
    tok = run.tokenizer()
    window, stride = _window(run, model, tok)
    return _Context(run, model, options, tok=tok, window=window, stride=stride)


def parse(ctx, item):
    from taskcli.inputs import text_of

    return text_of(item)


def encode(ctx, texts):
    """Each text as overlapping windows of at most ctx.window tokens (one window for most texts)."""
    enc = ctx.tok(texts, truncation=True, max_length=ctx.window, stride=ctx.stride, return_overflowing_tokens=True,
                  return_offsets_mapping=True, return_special_tokens_mask=True)
    out = [_Text([], [], text=t) for t in texts]
    for w, owner in enumerate(enc["overflow_to_sample_mapping"]):  # a text's windows come left to right
        ids = enc["input_ids"][w]
        out[owner].features.append({"input_ids": ids, "attention_mask": enc["attention_mask"][w]})
        out[owner].lengths.append(len(ids))
        out[owner].windows.append((ids, enc["offset_mapping"][w], enc["special_tokens_mask"][w]))
    return out


def forward(ctx, batch):
    probs = softmax(numpy_of(ctx.model(**batch).logits))
    lengths = batch["attention_mask"].sum(-1).tolist()
    return [row[:n] for row, n in zip(probs, lengths)]


def decode(ctx, enc, probs):
    """Entity grouping as the pipeline's aggregation_strategy='simple', character offsets into the whole text."""
    ids, offsets, text_probs = _merge([(*w, p) for w, p in zip(enc.windows, probs)], ctx.stride)
    return {"entities": _entities(ctx.tok, enc.text, ids, offsets, text_probs, ctx.model.config.id2label)}


STEPS = Steps(setup=setup, parse=parse, encode=encode, forward=forward, decode=decode)


def _merge(windows, stride):
    """The text tokens of overlapping windows as one sequence: (ids, offsets, per-token probabilities).

    Window k+1 starts `stride` text tokens before window k ends. Where windows overlap, a token keeps the
    prediction of the window in which it sits farthest from a cut edge (the text's own ends are not cuts), i.e.
    the one that saw the most context on both sides; no averaging, so a one-window text is scored as before."""
    import numpy as np

    ids, offsets, probs, room = [], [], [], []
    start = 0
    for k, (w_ids, w_offsets, special, w_probs) in enumerate(windows):
        keep = [t for t in range(len(w_ids)) if not special[t]]
        n = len(keep)
        for j, t in enumerate(keep):
            left = j if k > 0 else n
            right = n - 1 - j if k < len(windows) - 1 else n
            g = start + j
            if g == len(ids):
                ids.append(w_ids[t])
                offsets.append(tuple(w_offsets[t]))
                probs.append(w_probs[t])
                room.append(min(left, right))
            elif tuple(w_offsets[t]) != offsets[g]:  # the windows must step as described above
                raise RuntimeError(f"token-classification windows misaligned at token {g}")
            elif min(left, right) > room[g]:
                probs[g], room[g] = w_probs[t], min(left, right)
        start += n - stride
    return ids, offsets, np.asarray(probs, dtype=np.float32).reshape(len(ids), windows[0][3].shape[-1])


def _entities(tok, text, ids, offsets, probs, id2label):
    """Entity groups from text tokens (no special tokens) and their probabilities."""
    import numpy as np

    best = probs.argmax(-1)
    tokens = []
    for k, token_id in enumerate(ids):
        start, end = offsets[k]
        word = text[start:end] if token_id == tok.unk_token_id else tok.convert_ids_to_tokens(token_id)
        tokens.append((id2label[int(best[k])], float(probs[k, best[k]]), word, start, end))
    groups, current = [], []
    for entry in tokens:
        bi, tag = _split_tag(entry[0])
        if current and (tag != _split_tag(current[-1][0])[1] or bi == "B"):
            groups.append(current)
            current = []
        current.append(entry)
    if current:
        groups.append(current)
    out = []
    for g in groups:
        label = _split_tag(g[0][0])[1]
        if label == "O" or g[0][0] == "O":
            continue
        out.append({
            "entity_group": label,
            "score": float(np.mean([e[1] for e in g])),
            "word": tok.convert_tokens_to_string([e[2] for e in g]),
            "start": int(g[0][3]),
            "end": int(g[-1][4]),
        })
    return out


def _split_tag(name: str) -> tuple[str, str]:
    if name.startswith(("B-", "I-")):
        return name[0], name[2:]
    return "I", name


def render(text, result):
    if not result["entities"]:
        return [{"entity": "—", "label": "", "score": "", "span": ""}]
    return [{"entity": e["word"], "label": e["entity_group"], "score": f"{e['score']:.3f}",
             "span": f"{e['start']}-{e['end']}"} for e in result["entities"]]


def read_data(recipe, path):
    """CoNLL column files (a file, or a folder of them by split; see taskcli.conll), or None for other formats."""
    from pathlib import Path

    from taskcli import conll

    return conll.load(Path(path), getattr(recipe.params, "conll_tag_column", -1))


TASK = Task(
    name="token-classification",
    label_column="tags",
    aliases=("ner", "token-cls"),
    summary="Named-entity recognition / word tagging",
    modality="text",
    metric_names=("precision", "recall", "f1", "accuracy"),
    best_metric="f1",
    columns={"tokens": "list of words", "tags": "list of per-word tags (IOB strings or ClassLabel ids)"},
    column_aliases={"tokens": ("tokens", "words"), "tags": ("ner_tags", "tags", "ner", "labels")},
    sample="token-classification.jsonl",
    default_recipe="distilbert",
    auto_model="AutoModelForTokenClassification",
    load_processor=load_processor,
    preprocess=preprocess,
    collator=collator,
    metrics=metrics,
    steps=lambda run, model: STEPS,
    render=render,
    labels=labels,
    read_data=read_data,
    params=Params,
    cross_entropy_loss=True,
    numpy_steps=True,
)
