"""Shared by text-generation (causal LM) and fill-mask (masked LM): raw text -> packed fixed-size blocks.

Packing, as in the Hugging Face language-modeling guide: tokenize every text, concatenate the token ids and
cut them into ``block_size`` blocks, so no position of a batch is padding. Eval reports the loss and
perplexity = exp(eval loss) (the guide's definition), added by a Trainer callback.

Not a task module (no TASK): imported by the two task modules' hooks.
"""

from __future__ import annotations

import math
import re

from pydantic import BaseModel, ConfigDict, Field

from taskcli.errors import TaskcliError

# WikiExtractor wraps each article in <doc id=... url=... title=...> ... </doc> lines.
DOC_TAG = re.compile(r"^\s*(<doc\s[^>]*>|</doc>)\s*$")


class LMParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    block_size: int | None = Field(128, gt=1, description="tokens per packed block (default: the model's context)")
    strip_doc_tags: bool = Field(True, description="drop WikiExtractor <doc ...> / </doc> lines")


class MLMParams(LMParams):
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="share of tokens the MLM collator masks")


def context_size(config, tokenizer=None) -> int:
    """Longest input the model takes, in tokens (RoBERTa-style position offsets taken into account)."""
    ctx = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None) or 512
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "longformer"):
        ctx -= (getattr(config, "pad_token_id", 1) or 1) + 1
    tok_max = getattr(tokenizer, "model_max_length", None)
    if tok_max and tok_max < 1_000_000:
        ctx = min(ctx, tok_max)
    return int(ctx)


def block_size(run) -> int:
    """params.block_size, checked against the model's context."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(run.model_source, **run.pretrained_kwargs())
    ctx = context_size(config, run.tokenizer())
    size = run.params.block_size or min(ctx, 1024)
    if size > ctx:
        raise TaskcliError(
            f"block_size {size} is larger than the model's context ({ctx} tokens)",
            f"set params.block_size to {ctx} or less (--set params.block_size={min(ctx, 128)})",
        )
    return size


def pack(run, ds, add_eos: bool, special_tokens_mask: bool):
    """Tokenize the `text` column, concatenate, split into blocks of block_size (the last partial one dropped,
    unless the data is shorter than one block). A streamed dataset (data.streaming) is packed as training reads
    it: its column names are known before the map but not after, so nothing here reads them from a map's result."""
    from taskcli.data import is_streamed

    size = block_size(run)
    # Only plain values in the closures: datasets hashes them to fingerprint its cache.
    tok = run.tokenizer()
    strip = bool(run.params.strip_doc_tags)
    eos = tok.eos_token_id if add_eos else None
    pattern = DOC_TAG.pattern

    def texts_of(batch):
        doc = re.compile(pattern)
        return [t for t in batch["text"] if t and t.strip() and not (strip and doc.match(t))]

    def tokenize(batch):
        texts = texts_of(batch)
        if not texts:  # a batch of blank lines (wikitext's first row is ""): the fast tokenizer fails on an empty list
            keys = ["input_ids", "attention_mask"] + (["special_tokens_mask"] if special_tokens_mask else [])
            return {k: [] for k in keys}
        enc = dict(tok(texts, return_special_tokens_mask=special_tokens_mask))
        enc.pop("token_type_ids", None)  # one segment: the models take none
        if eos is not None:
            enc["input_ids"] = [ids + [eos] for ids in enc["input_ids"]]
            enc["attention_mask"] = [m + [1] for m in enc["attention_mask"]]
        return enc

    def group(batch):
        concat = {k: sum(batch[k], []) for k in batch}
        total = len(concat["input_ids"])
        total = (total // size) * size or total  # keep one short block when there is less than one
        return {k: [v[i:i + size] for i in range(0, total, size)] for k, v in concat.items()}

    if "text" not in ds.column_names:
        raise TaskcliError(f"no 'text' column in the data; columns: {', '.join(ds.column_names)}",
                           "map it with --set data.columns.text=YOUR_COLUMN")
    streamed = is_streamed(ds)
    if streamed and not any(texts_of(batch) for batch in ds.take(STREAM_TEXT_PROBE).iter(batch_size=100)):
        # the stream repeats without end: packing text-less rows would wait for a block forever
        raise TaskcliError(f"the first {STREAM_TEXT_PROBE} rows of the training stream hold no text",
                           "check the text column / files (blank lines and <doc> tags are skipped)")
    tokenized = ds.map(tokenize, batched=True, remove_columns=ds.column_names)
    blocks = run.map(tokenized, group, batched=True, batch_size=1000)
    if not streamed and len(blocks) == 0:
        raise TaskcliError("the data holds no text", "check the text column / file")
    return blocks


STREAM_TEXT_PROBE = 1000  # rows of a training stream looked at for text before packing it


class CausalCollator:
    """Stack packed blocks; labels = input_ids (the model shifts them). A short block is right-padded."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features):
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        labels = torch.full((len(features), width), -100, dtype=torch.long)
        for i, f in enumerate(features):
            row = torch.tensor(f["input_ids"], dtype=torch.long)
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
            labels[i, : len(row)] = torch.tensor(f.get("labels", f["input_ids"]), dtype=torch.long)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def perplexity_callback():
    """A TrainerCallback adding eval_perplexity = exp(eval_loss) to every evaluation's metrics."""
    from transformers import TrainerCallback

    class Perplexity(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            for key in [k for k in (metrics or {}) if k.endswith("loss")]:
                name = key[: -len("loss")] + "perplexity"
                metrics[name] = math.exp(metrics[key]) if metrics[key] < 700 else float("inf")

    return Perplexity()


def no_metrics(run, examples, features):
    """Loss only: no logits are gathered (a vocab-sized array per token would not fit); perplexity comes
    from the callback."""
    return None
