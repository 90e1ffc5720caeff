"""fill-mask (masked LM): fine-tune with the MLM collator on packed blocks; texts with a mask -> top-k fills.

Eval reports loss and perplexity. Infer accepts the model's own mask token or a generic `<mask>` / `[MASK]`
(either spelling, any case) and returns, per mask, the top-k fills with scores, as `pipeline("fill-mask")`.
"""

from __future__ import annotations

import re

from taskcli.errors import TaskcliError
from taskcli.task import Task
from taskcli.tasks.lm_common import block_size, MLMParams, context_size, no_metrics, pack, perplexity_callback

GENERIC_MASK = re.compile(r"<mask>|\[mask\]", re.IGNORECASE)


def load_processor(run):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run.model_source, **run.pretrained_kwargs())
    if tok.mask_token is None:
        raise TaskcliError(f"the tokenizer of {run.model_source} has no mask token", "fill-mask needs a masked-LM model")
    return tok


def preprocess(run, ds, training):
    return pack(run, ds, add_eos=False, special_tokens_mask=True)


def collator(run):
    from transformers import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(run.tokenizer(), mlm=True, mlm_probability=run.params.mlm_probability)


def read_inputs(run, args, options):
    from taskcli.inputs import BadInput, read_texts, text_of

    tok = run.tokenizer()

    def use(item):
        text = text_of(item)
        # the model's own token is left alone; the generic spellings become it
        parts = text.split(tok.mask_token)
        masked = tok.mask_token.join(GENERIC_MASK.sub(lambda m: tok.mask_token, p) for p in parts)
        if tok.mask_token not in masked:
            raise BadInput(f"has no mask token: {text[:60]!r}", "no mask token",
                           f"write {tok.mask_token} where a word is missing (<mask> and [MASK] work too)")
        return masked

    return read_texts(args, options, use)


def predict(run, model, texts, options):
    """Batched, length-sorted forward; per mask the top-k tokens, scored and decoded as the pipeline does."""
    import numpy as np
    import torch

    from taskcli.batching import pad_ids, run_sorted

    tok = run.tokenizer()
    top_k = int(options.get("top_k") or 5)
    ctx = context_size(model.config, tok)
    enc = tok(texts)["input_ids"]
    for ids in enc:
        if len(ids) > ctx:
            raise TaskcliError(f"an input is {len(ids)} tokens, longer than the model's context ({ctx} tokens)",
                               "shorten the text around the mask")
    device = model.device

    def forward(idx):
        ids, mask = pad_ids([enc[i] for i in idx], tok.pad_token_id if tok.pad_token_id is not None else 0)
        with torch.inference_mode():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float().cpu()
        results = []
        for row, i in enumerate(idx):
            input_ids = np.array(enc[i])
            positions = np.nonzero(input_ids == tok.mask_token_id)[0]
            probs = logits[row, torch.as_tensor(positions)].softmax(dim=-1)
            values, preds = probs.topk(min(top_k, probs.shape[-1]))
            single = len(positions) == 1
            masks = []
            for m, (vals, ps) in enumerate(zip(values.tolist(), preds.tolist())):
                fills = []
                for v, p in zip(vals, ps):
                    tokens = input_ids.copy()
                    tokens[positions[m]] = p
                    if tok.pad_token_id is not None:
                        tokens = tokens[tokens != tok.pad_token_id]
                    fills.append({"score": float(v), "token": int(p), "token_str": tok.decode([p]),
                                  "sequence": tok.decode(tokens, skip_special_tokens=single)})
                masks.append(fills)
            results.append({"masks": masks})
        return results

    return run_sorted([len(e) for e in enc], options.get("batch_size", 32), forward)


def render(text, result):
    rows = []
    for m, fills in enumerate(result["masks"]):
        for fill in fills:
            row = {"fill": fill["token_str"].strip(), "score": f"{fill['score']:.3f}", "sequence": fill["sequence"]}
            if len(result["masks"]) > 1:
                row = {"mask": str(m + 1), **row}
            rows.append(row)
    return rows


TASK = Task(
    check=block_size,
    infer_options=frozenset({"top_k"}),
    name="fill-mask",
    random_eval=True,
    features_per_example=False,
    aliases=("masked-lm", "mlm"),
    summary="Masked language modeling: fill in masked words",
    modality="text",
    metric_names=("loss", "perplexity"),
    best_metric="loss",
    greater_is_better=False,
    columns={"text": "raw text (any length; packed into blocks)"},
    sample="fill-mask.txt",
    default_recipe="distilroberta",
    auto_model="AutoModelForMaskedLM",
    load_processor=load_processor,
    preprocess=preprocess,
    collator=collator,
    metrics=no_metrics,
    read_inputs=read_inputs,
    predict=predict,
    render=render,
    params=MLMParams,
    callbacks=(perplexity_callback,),
    cross_entropy_loss=True,
)
