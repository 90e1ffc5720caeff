"""text-generation (causal LM): fine-tune on raw text packed into blocks; prompts -> continuations.

Eval reports loss and perplexity. Infer decodes with the recipe's `infer.generation` settings, overridden by
--max-new-tokens / --temperature / --top-p / --top-k / --num-beams / --do-sample|--greedy / --seed; greedy
results equal `pipeline("text-generation")`'s. When stdout is a terminal (options["interactive"], decided by the CLI)
and neither --json nor beam search is asked for, a single prompt streams its tokens to stdout as they come; its
result is then marked "streamed": True, and the CLI drops that mark and does not print the text again.
"""

from __future__ import annotations

import sys

from taskcli.errors import TaskcliError
from taskcli.task import Task
from taskcli.tasks.lm_common import block_size, CausalCollator, LMParams, context_size, no_metrics, pack, perplexity_callback

def load_processor(run):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run.model_source, **run.pretrained_kwargs())
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token  # GPT-2 has no pad token; generate() and padding need one
    return tok


def load_model(run, source, labels):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(source, **run.pretrained_kwargs())
    if model.generation_config.pad_token_id is None and run.tokenizer().pad_token_id is not None:
        model.generation_config.pad_token_id = run.tokenizer().pad_token_id
    return model


def preprocess(run, ds, training):
    return pack(run, ds, add_eos=True, special_tokens_mask=False)


def collator(run):
    tok = run.tokenizer()
    return CausalCollator(tok.pad_token_id if tok.pad_token_id is not None else 0)


def read_inputs(run, args, options):
    from taskcli.inputs import read_texts, text_of

    return read_texts(args, options, lambda item: text_of(item, ("prompt", "text")))


def _stdout_streamer(tok):
    from transformers import TextStreamer

    class StdoutStreamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False):
            sys.stdout.write(text + ("\n" if stream_end else ""))  # the current sys.stdout, not the one at import
            sys.stdout.flush()

    return StdoutStreamer(tok, skip_prompt=False, skip_special_tokens=True)


def equal_length_batches(lengths: list[int], batch_size: int):
    """Batches of prompts with the same token count (no padding, so batched == one-by-one results)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    for i in order:
        if batch and (len(batch) == batch_size or lengths[batch[0]] != lengths[i]):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def predict(run, model, prompts, options):
    import torch

    from taskcli import generation

    tok = run.tokenizer()
    gen = generation.settings(run, model, options, default_max_new_tokens=50)
    ctx = context_size(model.config, tok)
    enc = [tok(p)["input_ids"] for p in prompts]
    for prompt, ids in zip(prompts, enc):
        if not ids:
            raise TaskcliError("an empty prompt", "give each prompt some text")
        if len(ids) >= ctx:
            raise TaskcliError(f"a prompt is {len(ids)} tokens, longer than the model's context ({ctx} tokens)",
                               "shorten the prompt")
        if len(ids) + gen["max_new_tokens"] > ctx:
            raise TaskcliError(
                f"prompt ({len(ids)} tokens) + max_new_tokens ({gen['max_new_tokens']}) exceed the model's "
                f"context ({ctx} tokens)", f"use --max-new-tokens {ctx - len(ids)} or less")
    stream = (len(prompts) == 1 and options.get("interactive") and not options.get("as_json")
              and gen.get("num_beams", 1) == 1)
    out: list = [None] * len(prompts)
    for idx in equal_length_batches([len(e) for e in enc], options.get("batch_size", 8)):
        ids = torch.tensor([enc[i] for i in idx], dtype=torch.long, device=model.device)
        with torch.inference_mode():
            seqs = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                  streamer=_stdout_streamer(tok) if stream else None, **gen)
        for row, i in enumerate(idx):
            new = tok.decode(seqs[row, ids.shape[1]:], skip_special_tokens=True)
            out[i] = {"generated_text": prompts[i] + new, **({"streamed": True} if stream else {})}
    return out


def render(prompt, result):
    return [{"generated text": result["generated_text"]}]


TASK = Task(
    check=block_size,
    generates=True,
    name="text-generation",
    features_per_example=False,
    aliases=("causal-lm", "clm"),
    summary="Causal language modeling: continue a prompt",
    modality="text",
    metric_names=("loss", "perplexity"),
    best_metric="loss",
    greater_is_better=False,
    columns={"text": "raw text (any length; packed into blocks)"},
    sample="text-generation.txt",
    default_recipe="distilgpt2",
    auto_model="AutoModelForCausalLM",
    load_processor=load_processor,
    load_model=load_model,
    preprocess=preprocess,
    collator=collator,
    metrics=no_metrics,
    read_inputs=read_inputs,
    predict=predict,
    render=render,
    params=LMParams,
    callbacks=(perplexity_callback,),
)
