"""Shared by summarization and translation: encoder-decoder models, one Seq2SeqTrainer path.

The engine trains and evaluates them with Seq2SeqTrainer and predict_with_generate (Task.seq2seq=True);
these helpers tokenize (source, target) pairs, decode generated ids for the metrics, and give the inference
steps around generate() for `infer` (transformers 5 has no summarization/translation pipeline); sources
longer than data.max_length are truncated to it, and their rows say so.

Not a task module (no TASK): imported by the two task modules' hooks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from taskcli.task import Context, Encoded, Steps


def load_model(run, source, labels):
    from transformers import AutoModelForSeq2SeqLM

    return AutoModelForSeq2SeqLM.from_pretrained(source, **run.pretrained_kwargs())


def record_prefix(run, model) -> None:
    """Save the task prefix the model was trained with (T5's "summarize: ") where `transformers` users find it:
    config.task_specific_params[task]["prefix"], the key T5's own configs use."""
    prefix = run.params.prefix
    if prefix:
        params = dict(getattr(model.config, "task_specific_params", None) or {})
        params[run.task.name] = {**params.get(run.task.name, {}), "prefix": prefix}
        model.config.task_specific_params = params


def encode_pairs(run, ds, sources_of, targets_of, max_target_length: int):
    """Tokenize sources (truncated to data.max_length) and targets (as labels) with a batched map.

    `sources_of(batch)` / `targets_of(batch)` give the strings of a batch; they must close over plain values
    only (datasets hashes the map function)."""
    tok, max_length = run.tokenizer(), run.recipe.data.max_length

    def encode(batch):
        enc = dict(tok(sources_of(batch), max_length=max_length, truncation=True))
        enc.pop("token_type_ids", None)  # dropped here: a streamed map's result has no column names to drop it by
        enc["labels"] = tok(text_target=targets_of(batch), max_length=max_target_length, truncation=True)["input_ids"]
        return enc

    return run.map(ds, encode, batched=True, remove_columns=ds.column_names)


def collator(run):
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(run.tokenizer(), label_pad_token_id=-100, pad_to_multiple_of=None)


def generation_metrics(score):
    """A task's metrics hook: decode the generated ids and the references, then score(texts, refs) + gen_len."""

    def metrics(run, examples, features):
        tok = run.tokenizer()

        def compute(pred):
            texts, refs, gen_len = decode_eval(tok, pred)
            return {**score(texts, refs), "gen_len": gen_len}

        return compute

    return metrics


def decode_eval(tok, pred):
    """(predicted strings, reference strings, generated lengths) from a Seq2SeqTrainer EvalPrediction."""
    import numpy as np

    from taskcli.metrics import main_output

    preds = main_output(pred)
    preds = np.where(preds < 0, tok.pad_token_id, preds)
    labels = np.where(pred.label_ids < 0, tok.pad_token_id, pred.label_ids)
    texts = [t.strip() for t in tok.batch_decode(preds, skip_special_tokens=True)]
    refs = [t.strip() for t in tok.batch_decode(labels, skip_special_tokens=True)]
    gen_len = float(np.mean([np.count_nonzero(p != tok.pad_token_id) for p in preds])) if len(preds) else 0.0
    return texts, refs, gen_len


@dataclass
class _Context(Context):
    tok: Any = None
    gen: dict = field(default_factory=dict)  # generate()'s settings (taskcli.generation)
    max_length: int = 512  # data.max_length: longer sources are cut to it, and their rows say so
    prefix: str = ""  # params.prefix, put before every source (T5's "summarize: ")
    key: str = ""  # the result's field: "summary_text", "translation_text"


@dataclass
class _Source(Encoded):
    tokens: int = 0  # the source's untruncated length


def steps(key: str, parse, read=None) -> Steps:
    """A seq2seq task's inference: `parse` (ctx, input) -> source text; results are {key: generated text}."""

    def setup(run, model, options):
        from taskcli import generation

        max_length = run.recipe.data.max_length
        return _Context(run, model, options, truncates=(max_length, "data.max_length"),
                        tok=run.tokenizer(), gen=generation.settings(run, model, options, default_max_new_tokens=128),
                        max_length=max_length, prefix=run.params.prefix, key=key)

    return Steps(setup=setup, read=read, parse=parse, encode=encode, forward=forward, decode=decode)


def encode(ctx, texts):
    sources = [ctx.prefix + t for t in texts]
    full = ctx.tok(sources, verbose=False)["input_ids"]
    enc = ctx.tok(sources, max_length=ctx.max_length, truncation=True)
    return [_Source([{k: enc[k][i] for k in ("input_ids", "attention_mask")}], [len(enc["input_ids"][i])],
                    tokens=len(ids)) for i, ids in enumerate(full)]


def forward(ctx, batch):
    return list(ctx.model.generate(**batch, **ctx.gen).cpu())


def decode(ctx, enc, outputs):
    row = {ctx.key: ctx.tok.decode(outputs[0], skip_special_tokens=True).strip()}
    if enc.tokens > ctx.max_length:
        row.update(truncated=True, input_tokens=enc.tokens)
    return row
