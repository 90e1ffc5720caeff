"""Shared by summarization and translation: encoder-decoder models, one Seq2SeqTrainer path.

The engine trains and evaluates them with Seq2SeqTrainer and predict_with_generate (Task.seq2seq=True);
these helpers tokenize (source, target) pairs, decode generated ids for the metrics, and run batched,
length-sorted generate() for `infer` (transformers 5 has no summarization/translation pipeline); sources
longer than data.max_length are truncated to it, and `generate_rows` says so.

Not a task module (no TASK): imported by the two task modules' hooks.
"""

from __future__ import annotations

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
        enc = tok(sources_of(batch), max_length=max_length, truncation=True)
        enc["labels"] = tok(text_target=targets_of(batch), max_length=max_target_length, truncation=True)["input_ids"]
        return enc

    out = run.map(ds, encode, batched=True, remove_columns=ds.column_names)
    return out.remove_columns([c for c in out.column_names if c == "token_type_ids"])


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


def generate(run, model, sources: list[str], options: dict, extra_generate: dict | None = None) -> list[str]:
    """Batched generate(), longest inputs first (less padding), results in input order."""
    import torch

    from taskcli import generation
    from taskcli.batching import pad_ids, run_sorted

    tok = run.tokenizer()
    gen = generation.settings(run, model, options, default_max_new_tokens=128)
    gen.update(extra_generate or {})
    enc = tok(sources, max_length=run.recipe.data.max_length, truncation=True)["input_ids"]
    device = model.device

    def batch(idx):
        ids, mask = pad_ids([enc[i] for i in idx], tok.pad_token_id)
        with torch.inference_mode():
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **gen)
        return [t.strip() for t in tok.batch_decode(out, skip_special_tokens=True)]

    return run_sorted([len(e) for e in enc], options.get("batch_size", 16), batch)


def generate_rows(run, model, sources: list[str], options: dict, key: str) -> list[dict]:
    """`infer` results {key: generated text}; rows of sources cut to data.max_length say so (see truncation.py)."""
    from taskcli import truncation

    rows = [{key: text} for text in generate(run, model, sources, options)]
    counts = truncation.token_counts(run.tokenizer(), sources)
    return truncation.mark(rows, counts, run.recipe.data.max_length, "data.max_length")
