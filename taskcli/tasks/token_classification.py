"""token-classification (NER): words + per-word tags -> entity groups with character offsets."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from taskcli.errors import TaskcliError
from taskcli.task import Task

# Byte-level BPE tokenizers need this to take pre-split words.
_PREFIX_SPACE_TYPES = {"roberta", "gpt2", "bart", "longformer", "deberta", "mpnet"}


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label_all_tokens: bool = False  # tag every sub-token of a word (else only the first; the rest are ignored)


def labels(run, dsd) -> list[str]:
    feature = dsd["train" if "train" in dsd else "eval"].features["tags"]
    inner = getattr(feature, "feature", None)
    if inner is not None and hasattr(inner, "names"):
        return list(inner.names)
    found = {tag for ds in dsd.values() for row in ds["tags"] for tag in row}
    if all(isinstance(t, int) for t in found):
        raise TaskcliError("NER tags are integers without names", "set data.labels in the recipe (names in id order)")
    # "O" first, then by entity type with B- before I-: a stable, readable id order.
    return sorted(found, key=lambda t: (t != "O", t[2:] if t[:2] in ("B-", "I-") else t, t))


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
    try:
        return [index[t] for t in tags]
    except KeyError as err:
        raise TaskcliError(f"unknown NER tag {err} in the data", f"known tags: {', '.join(index)}") from None


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

    return ds.map(encode, batched=True, remove_columns=ds.column_names)


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


def read_inputs(run, args, options):
    from taskcli.inputs import read_text_inputs

    out = []
    for item in read_text_inputs(args):
        if isinstance(item, dict):
            if "text" not in item:
                raise TaskcliError("a JSON input for token-classification needs a 'text' field", f"got keys {list(item)}")
            item = item["text"]
        out.append(str(item))
    return out


def predict(run, model, texts, options):
    """Batched, length-sorted forward; entity grouping as the pipeline's aggregation_strategy='simple'."""
    import torch

    from taskcli.batching import pad_ids, run_sorted

    tok = run.tokenizer()
    limit = min(getattr(model.config, "max_position_embeddings", 512) or 512, tok.model_max_length or 512, 512)
    enc = tok(texts, truncation=True, max_length=limit, return_offsets_mapping=True, return_special_tokens_mask=True)
    id2label = model.config.id2label
    device = model.device

    def forward(idx):
        ids, mask = pad_ids([enc["input_ids"][i] for i in idx], tok.pad_token_id or 0)
        with torch.inference_mode():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            probs = torch.softmax(logits, dim=-1).cpu().numpy()
        return [_entities(tok, texts[i], enc["input_ids"][i], enc["offset_mapping"][i],
                          enc["special_tokens_mask"][i], probs[j, : len(enc["input_ids"][i])], id2label)
                for j, i in enumerate(idx)]

    lengths = [len(x) for x in enc["input_ids"]]
    return [{"entities": ents} for ents in run_sorted(lengths, options.get("batch_size", 32), forward)]


def _entities(tok, text, ids, offsets, special, probs, id2label):
    import numpy as np

    best = probs.argmax(-1)
    tokens = []
    for k, token_id in enumerate(ids):
        if special[k]:
            continue
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


TASK = Task(
    name="token-classification",
    aliases=("ner", "token-cls"),
    summary="Named-entity recognition / word tagging",
    modality="text",
    metric_names=("precision", "recall", "f1", "accuracy"),
    best_metric="f1",
    columns={"tokens": "list of words", "tags": "list of per-word tags (IOB strings or ClassLabel ids)"},
    sample="token-classification.jsonl",
    default_recipe="distilbert",
    auto_model="AutoModelForTokenClassification",
    load_processor=load_processor,
    preprocess=preprocess,
    collator=collator,
    metrics=metrics,
    read_inputs=read_inputs,
    predict=predict,
    render=render,
    labels=labels,
    params=Params,
    cross_entropy_loss=True,
)
