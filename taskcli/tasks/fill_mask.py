"""fill-mask (masked LM): fine-tune with the MLM collator on packed blocks; texts with a mask -> top-k fills.

Eval reports loss and perplexity. Infer accepts the model's own mask token or a generic `<mask>` / `[MASK]`
(either spelling, any case) and returns, per mask, the top-k fills with scores, as `pipeline("fill-mask")`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from taskcli.errors import TaskcliError
from taskcli.task import Context, Encoded, RankedOptions, Steps, Task
from taskcli.tasks.lm_common import block_size, MLMParams, context_size, no_metrics, pack, perplexity_callback

GENERIC_MASK = re.compile(r"<mask>|\[mask\]", re.IGNORECASE)


def load_processor(run):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run.model_source, **run.pretrained_kwargs())
    if tok.mask_token is None:
        raise TaskcliError(f"the tokenizer of {run.model_source} has no mask token", "fill-mask needs a masked-LM model")
    return tok


def preprocess(run, ds, training):
    blocks = pack(run, ds, add_eos=False, special_tokens_mask=True)
    if training:
        return blocks
    # Eval blocks are masked once, here: every evaluation (in training, `taskcli eval`, a resumed run's) scores the
    # same positions, whatever the epoch or the random state. Plain values in the closure: datasets hashes it.
    tok, probability, seed = run.tokenizer(), run.params.mlm_probability, run.seed

    def mask(batch):
        import torch

        masker = keyed_masks(tok, probability, seed)
        ids, labels = [], []
        for row, special in zip(batch["input_ids"], batch["special_tokens_mask"]):
            masked, label = masker.masked(torch.tensor([row]), torch.tensor([special]), "eval")
            ids.append(masked[0].tolist())
            labels.append(label[0].tolist())
        return {"input_ids": ids, "labels": labels}

    return run.map(blocks, mask, batched=True, remove_columns=["special_tokens_mask"])


def collator(run):
    return keyed_masks(run.tokenizer(), run.params.mlm_probability, run.seed, run.clock)


def keyed_masks(tok, probability: float, seed: int, clock=None):
    """The MLM collator, with each block's masks drawn from a generator seeded by (seed, epoch, the block's tokens)
    instead of the global RNG: a resumed run masks every batch as the uninterrupted run did (the Trainer draws a
    resumed run's first batch before it restores the global RNG, and a streamed run collates the batches it skips).
    Eval blocks, masked at preprocess, arrive with their labels and are only padded."""
    import hashlib

    import torch
    from transformers import DataCollatorForLanguageModeling

    from taskcli.tasks.lm_common import CausalCollator

    class KeyedMasks(DataCollatorForLanguageModeling):
        def torch_call(self, examples):
            if all("labels" in e for e in examples):
                return CausalCollator(tok.pad_token_id)(examples)
            return super().torch_call(examples)

        def torch_mask_tokens(self, inputs, special_tokens_mask=None, offset_mapping=None):
            epoch = str(clock.epoch if clock is not None else 0)
            rows = [self.masked(inputs[i:i + 1], None if special_tokens_mask is None else special_tokens_mask[i:i + 1],
                                epoch) for i in range(len(inputs))]
            return torch.cat([r[0] for r in rows]), torch.cat([r[1] for r in rows])

        def masked(self, row, special, tag: str):
            key = hashlib.blake2b(f"{seed}/{tag}/".encode() + row.numpy().tobytes(), digest_size=8)
            self.generator = torch.Generator().manual_seed(int.from_bytes(key.digest(), "little"))
            try:
                return super().torch_mask_tokens(row.clone(), special)
            finally:
                self.generator = None

    return KeyedMasks(tok, mlm=True, mlm_probability=probability)


@dataclass
class _Context(Context):
    tok: Any = None
    top_k: int = 5  # fills per mask
    limit: int = 512  # the model's context, in tokens


@dataclass
class _Text(Encoded):
    input_ids: list = field(default_factory=list)  # the text's tokens, the masks among them


def setup(run, model, options):
    tok = run.tokenizer()
    return _Context(run, model, options, tok=tok, top_k=options.top_k,
                    limit=context_size(model.config, tok))


def parse(ctx, item):
    """The text with every mask spelled as the model's own, tokenized: the mask and the length are checked here,
    so that an input without a mask or too long for the model is an error row of its own with --skip-bad."""
    from taskcli.inputs import BadInput, text_of

    tok, text = ctx.tok, text_of(item)
    # the model's own token is left alone; the generic spellings become it
    parts = text.split(tok.mask_token)
    masked = tok.mask_token.join(GENERIC_MASK.sub(lambda m: tok.mask_token, p) for p in parts)
    if tok.mask_token not in masked:
        raise BadInput(f"has no mask token: {text[:60]!r}", "no mask token",
                       f"write {tok.mask_token} where a word is missing (<mask> and [MASK] work too)")
    enc = dict(tok(masked))
    if len(enc["input_ids"]) > ctx.limit:
        raise BadInput(f"is {len(enc['input_ids'])} tokens, longer than the model's context ({ctx.limit} tokens)",
                       "longer than the model's context", "shorten the text around the mask")
    return enc


def encode(ctx, encodings):
    return [_Text([enc], [len(enc["input_ids"])], input_ids=enc["input_ids"]) for enc in encodings]


def forward(ctx, batch):
    """Per row, the vocabulary probabilities at its mask positions only (not a vocab-sized row per token)."""
    logits = ctx.model(**batch).logits
    masks = batch["input_ids"] == ctx.tok.mask_token_id
    return [logits[j, masks[j]].float().softmax(dim=-1).cpu() for j in range(len(logits))]


def decode(ctx, enc, outputs):
    """Per mask the top-k tokens, scored and decoded as the pipeline does."""
    import numpy as np

    tok, probs = ctx.tok, outputs[0]
    input_ids = np.array(enc.input_ids)
    positions = np.nonzero(input_ids == tok.mask_token_id)[0]
    values, preds = probs.topk(min(ctx.top_k, probs.shape[-1]))
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
    return {"masks": masks}


STEPS = Steps(setup=setup, parse=parse, encode=encode, forward=forward, decode=decode)


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
    infer_options=RankedOptions,
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
    packs_text=True,
    sample="fill-mask.txt",
    default_recipe="distilroberta",
    auto_model="AutoModelForMaskedLM",
    load_processor=load_processor,
    preprocess=preprocess,
    collator=collator,
    metrics=no_metrics,
    steps=lambda run, model: STEPS,
    render=render,
    params=MLMParams,
    warm_up=("Paris is the <mask> of France.",
             "Alice stayed at home because the <mask> was cold and windy all day long."),
    callbacks=(perplexity_callback,),
    cross_entropy_loss=True,
)
