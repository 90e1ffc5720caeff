"""summarization: document -> summary with an encoder-decoder (T5, BART), as in the HF summarization guide.

Eval: ROUGE-1/2/L/Lsum (rouge-score with stemming, plain mean) and the mean generated length. Infer: texts,
plain-text files (one document per file) or JSON Lines ({"document": ...}) -> summaries, with batched,
length-sorted generate().
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from taskcli.errors import TaskcliError
from taskcli.generation import GenerationOptions
from taskcli.metrics import rouge  # light: the scorer's own imports happen when it runs
from taskcli.task import Task
from taskcli.tasks import seq2seq_common as s2s


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prefix: str = Field("", description='put before every document, e.g. "summarize: " for T5')
    max_target_length: int = Field(128, gt=0, description="summary tokens kept for training labels")


def load_processor(run):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(run.model_source, **run.pretrained_kwargs())


def preprocess(run, ds, training):
    prefix = run.params.prefix
    return s2s.encode_pairs(run, ds, lambda b: [prefix + (d or "") for d in b["document"]],
                            lambda b: [s or "" for s in b["summary"]], run.params.max_target_length)


_WHOLE_FILE = {".txt", ".md", ""}


def read(ctx, args):
    """Texts, JSON lines ({"document": ...}), or plain-text files read whole, one document each."""
    from taskcli.inputs import arg_entries

    def whole_file(arg: str, path: Path) -> bool:
        try:
            return arg != "-" and "\n" not in arg and path.suffix.lower() in _WHOLE_FILE and path.is_file()
        except OSError:  # a text too long to be a file name
            return False

    entries = []
    for n, arg in enumerate(args, 1):
        path = Path(arg).expanduser()
        if len(arg) < 4096 and whole_file(arg, path):
            try:
                entries.append((arg, path.read_text(encoding="utf-8").strip()))
            except UnicodeDecodeError:
                raise TaskcliError(f"input file {arg} is not UTF-8 text", "pass a text file") from None
        else:
            entries.extend(arg_entries(arg, n, ctx))
    return entries


def parse(ctx, item):
    from taskcli.inputs import text_of

    return text_of(item, ("document", "text"))


STEPS = s2s.steps("summary_text", parse, read)


def render(text, result):
    return [{"summary": result["summary_text"]}]


TASK = Task(
    infer_options=GenerationOptions,
    name="summarization",
    aliases=("summarize", "sum"),
    summary="Abstractive summarization (encoder-decoder)",
    modality="text",
    metric_names=("rouge1", "rouge2", "rougeL", "rougeLsum", "gen_len"),
    best_metric="rougeL",
    columns={"document": "text to summarize", "summary": "reference summary"},
    sample="summarization.jsonl",
    default_recipe="t5-small",
    auto_model="AutoModelForSeq2SeqLM",
    load_processor=load_processor,
    load_model=s2s.load_model,
    preprocess=preprocess,
    collator=s2s.collator,
    metrics=s2s.generation_metrics(rouge),
    steps=lambda run, model: STEPS,
    render=render,
    params=Params,
    seq2seq=True,
    before_save=s2s.record_prefix,
)
