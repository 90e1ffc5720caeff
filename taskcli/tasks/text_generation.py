"""text-generation (causal LM): fine-tune on raw text packed into blocks; prompts -> continuations.

Eval reports loss and perplexity. Infer decodes with the recipe's `infer.generation` settings, overridden by
--max-new-tokens / --temperature / --top-p / --top-k / --num-beams / --do-sample|--greedy / --seed; greedy
results equal `pipeline("text-generation")`'s. When the caller watches (Context.on_text: the CLI's terminal, not
--json) and there is a single prompt and no beam search, its tokens are shown through on_text as they come; its
Result is then `streamed`, and the CLI does not print the text again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from taskcli.generation import GenerationOptions
from taskcli.task import Context, Encoded, Result, Steps, Task
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


@dataclass
class _Context(Context):
    tok: Any = None
    gen: dict = field(default_factory=dict)  # generate()'s settings (taskcli.generation)
    limit: int = 1024  # the model's context, in tokens: prompt + new tokens must fit
    # show the prompt's tokens through on_text as they come: someone watches, no beams, and there is one prompt
    stream: bool = False


@dataclass
class _Prompt(Encoded):
    text: str = ""


def setup(run, model, options):
    from taskcli import generation

    tok = run.tokenizer()
    gen = generation.settings(run, model, options, default_max_new_tokens=50)
    return _Context(run, model, options, tok=tok, gen=gen, limit=context_size(model.config, tok))


def read(ctx, args):
    """The arguments' lines; shown as they are made only when someone watches and they are one prompt."""
    from taskcli.inputs import text_entries

    todo = text_entries(args, ctx)
    ctx.stream = ctx.on_text is not None and ctx.gen.get("num_beams", 1) == 1
    if ctx.stream:
        total = getattr(todo, "total", None)
        if total is None:  # stdin: counted by reading it (only when a person watches stdout)
            todo = list(todo)
            total = len(todo)
        ctx.stream = total == 1
    return todo


def parse(ctx, item):
    """The prompt, tokenized: its length is checked against the context here (an error row of its own)."""
    from taskcli.inputs import BadInput, text_of

    text = text_of(item, ("prompt", "text"))
    enc = dict(ctx.tok(text))
    n, new = len(enc["input_ids"]), ctx.gen["max_new_tokens"]
    if not n:
        raise BadInput("is an empty prompt", "an empty prompt", "give each prompt some text")
    if n >= ctx.limit:
        raise BadInput(f"is {n} tokens, longer than the model's context ({ctx.limit} tokens)",
                       "longer than the model's context", "shorten the prompt")
    if n + new > ctx.limit:
        raise BadInput(f"({n} tokens) + max_new_tokens ({new}) exceed the model's context "
                       f"({ctx.limit} tokens)", "prompt + max_new_tokens exceed the model's context",
                       f"use --max-new-tokens {ctx.limit - n} or less")
    return text, enc


def encode(ctx, prompts):
    # grouped by length: prompts of a batch are never padded, so batched results equal one-by-one ones
    return [_Prompt([enc], [len(enc["input_ids"])], group=len(enc["input_ids"]), text=text) for text, enc in prompts]


def forward(ctx, batch):
    """Per row, the new tokens generate() added after the prompt."""
    seqs = ctx.model.generate(**batch, streamer=_streamer(ctx.tok, ctx.on_text) if ctx.stream else None, **ctx.gen)
    width = batch["input_ids"].shape[1]
    return list(seqs[:, width:].cpu())


def decode(ctx, enc, outputs):
    new = ctx.tok.decode(outputs[0], skip_special_tokens=True)
    # a streamed result was shown as it came: the CLI does not print it again
    return Result({"generated_text": enc.text + new}, streamed=ctx.stream)


STEPS = Steps(setup=setup, read=read, parse=parse, encode=encode, forward=forward, decode=decode)


def _streamer(tok, on_text):
    """generate()'s streamer, handing each finished piece of text to the caller's on_text(text, ended)."""
    from transformers import TextStreamer

    class Streamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False):
            on_text(text, stream_end)

    return Streamer(tok, skip_prompt=False, skip_special_tokens=True)


def render(prompt, result):
    return [{"generated text": result["generated_text"]}]


TASK = Task(
    check=block_size,
    infer_options=GenerationOptions,
    name="text-generation",
    features_per_example=False,
    aliases=("causal-lm", "clm"),
    summary="Causal language modeling: continue a prompt",
    modality="text",
    metric_names=("loss", "perplexity"),
    best_metric="loss",
    greater_is_better=False,
    columns={"text": "raw text (any length; packed into blocks)"},
    packs_text=True,
    infer_columns={"text": ("prompt", "text")},  # parse reads {"prompt": ...} first
    sample="text-generation.txt",
    default_recipe="distilgpt2",
    auto_model="AutoModelForCausalLM",
    load_processor=load_processor,
    load_model=load_model,
    preprocess=preprocess,
    collator=collator,
    metrics=no_metrics,
    steps=lambda run, model: STEPS,
    render=render,
    params=LMParams,
    callbacks=(perplexity_callback,),
)
