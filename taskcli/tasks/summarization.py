"""summarization: document -> summary with an encoder-decoder (T5, BART), as in the HF summarization guide.

Eval: ROUGE-1/2/L/Lsum (rouge-score with stemming, plain mean) and the mean generated length. Infer: texts,
plain-text files (one document per file) or JSON Lines ({"document": ...}) -> summaries, with batched,
length-sorted generate().
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from taskcli.errors import TaskcliError
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


def read_inputs(run, args, options):
    """Texts, JSON lines ({"document": ...}), or plain-text files read whole, one document each."""
    from taskcli.inputs import arg_entries, read_texts, text_of

    entries = []
    for n, arg in enumerate(args, 1):
        path = Path(arg).expanduser()
        if arg != "-" and len(arg) < 4096 and "\n" not in arg and path.is_file() and path.suffix.lower() in _WHOLE_FILE:
            try:
                entries.append((arg, path.read_text(encoding="utf-8").strip()))
            except UnicodeDecodeError:
                raise TaskcliError(f"input file {arg} is not UTF-8 text", "pass a text file") from None
        else:
            entries.extend(arg_entries(arg, n))
    return read_texts(args, options, lambda item: text_of(item, ("document", "text")), entries)


def predict(run, model, texts, options):
    prefix = run.params.prefix
    return s2s.generate_rows(run, model, [prefix + t for t in texts], options, "summary_text")


def render(text, result):
    return [{"summary": result["summary_text"]}]


TASK = Task(
    generates=True,
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
    read_inputs=read_inputs,
    predict=predict,
    render=render,
    params=Params,
    seq2seq=True,
    before_save=s2s.record_prefix,
)
