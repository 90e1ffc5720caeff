"""translation: source text -> target text with an encoder-decoder (T5, BART, mBART), as in the HF guide.

Data: `source`/`target` columns, or the WMT-style nested layout {"translation": {"en": ..., "ro": ...}} read
with params.source_lang / params.target_lang. Multilingual tokenizers (mBART, NLLB...) get their language
codes from params.source_lang_code / target_lang_code. Eval: sacreBLEU and chrF plus the mean generated
length. Infer: texts -> translations, batched and length-sorted.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from taskcli.errors import TaskcliError
from taskcli.generation import GenerationOptions
from taskcli.metrics import bleu_chrf  # light: the scorer's own imports happen when it runs
from taskcli.task import Task
from taskcli.tasks import seq2seq_common as s2s


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source_lang: str = Field("en", description="key of the source text in nested `translation` records")
    target_lang: str = Field("fr", description="key of the target text in nested `translation` records")
    prefix: str = Field("", description='put before every source, e.g. "translate English to French: " for T5')
    source_lang_code: str | None = Field(None, description="tokenizer language code of the source (mBART: en_XX)")
    target_lang_code: str | None = Field(None, description="tokenizer language code of the target (mBART: ro_RO)")
    max_target_length: int = Field(128, gt=0, description="target tokens kept for training labels")


def _known_codes(tok) -> list[str]:
    codes = getattr(tok, "lang_code_to_id", None) or {}
    if not codes:
        codes = [t for t in getattr(tok, "additional_special_tokens", None) or [] if "_" in str(t)]
    return sorted(map(str, codes))


def load_processor(run):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run.model_source, **run.pretrained_kwargs())
    p = run.params
    vocab = tok.get_vocab()
    for which, code in (("source", p.source_lang_code), ("target", p.target_lang_code)):
        if code is not None and code not in vocab:
            known = _known_codes(tok)
            shown = ", ".join(known[:12]) + ("..." if len(known) > 12 else "") if known else "none"
            raise TaskcliError(
                f"the tokenizer of {run.model_source} doesn't know the {which} language code '{code}' "
                f"(known codes: {shown})",
                f"set params.{which}_lang_code to one of the tokenizer's codes"
                + ("" if known else ", or drop it for a monolingual model"),
            )
    if p.source_lang_code is not None and hasattr(tok, "src_lang"):
        tok.src_lang = p.source_lang_code
    if p.target_lang_code is not None and hasattr(tok, "tgt_lang"):
        tok.tgt_lang = p.target_lang_code
    return tok


def load_model(run, source, labels):
    model = s2s.load_model(run, source, labels)
    code = run.params.target_lang_code
    if code is not None:
        tok = run.tokenizer()
        code_id = tok.convert_tokens_to_ids(code)
        target = tok(text_target="a")["input_ids"]
        gc = model.generation_config
        if target and target[0] == code_id:  # mBART-50 / NLLB: labels start with the code; force it first
            gc.forced_bos_token_id = code_id
        else:  # mBART (cc25): labels end with [eos, code]; the decoder starts from the code
            gc.decoder_start_token_id = code_id
            model.config.decoder_start_token_id = code_id
    return model


def _pairs_fn(ds, src: str, tgt: str):
    """(sources_of, targets_of) for this dataset's layout; errors for missing columns / languages."""
    cols = ds.column_names
    if "source" in cols and "target" in cols:
        return (lambda b: [s or "" for s in b["source"]]), (lambda b: [t or "" for t in b["target"]])
    if "translation" not in cols:
        raise TaskcliError(
            f"translation data needs 'source' and 'target' columns or a nested 'translation' column; "
            f"columns: {', '.join(cols)}",
            "map them with --set data.columns.source=COL --set data.columns.target=COL",
        )
    from taskcli.data import is_streamed

    first = (next(iter(ds.take(1))) if is_streamed(ds) else ds[0])["translation"]
    if not isinstance(first, dict):
        raise TaskcliError("the 'translation' column must hold {language: text} records", f"got {type(first).__name__}")
    for which, lang in (("source", src), ("target", tgt)):
        if lang not in first:
            raise TaskcliError(
                f"{which} language '{lang}' is not in the data's translation records (languages: {', '.join(first)})",
                f"--set params.{which}_lang=...",
            )
    return (lambda b: [t[src] or "" for t in b["translation"]]), (lambda b: [t[tgt] or "" for t in b["translation"]])


def preprocess(run, ds, training):
    p = run.params
    sources_of, targets_of = _pairs_fn(ds, p.source_lang, p.target_lang)
    prefix = p.prefix
    return s2s.encode_pairs(run, ds, lambda b: [prefix + s for s in sources_of(b)], targets_of, p.max_target_length)


def parse(ctx, item):
    """A text, or a JSON line: {"en": ...} (params.source_lang), {"source": ...}, {"text": ...}, or a nested
    {"translation": {...}} record."""
    from taskcli.inputs import text_of

    if isinstance(item, dict) and isinstance(item.get("translation"), dict):
        item = item["translation"]
    return text_of(item, (ctx.run.params.source_lang, "source", "text"))


STEPS = s2s.steps("translation_text", parse)


def infer_columns(params) -> dict:
    """An infer table's source column: `source`, one named for the source language, `text`, or the WMT layout's
    nested {"translation": {"en": ...}} (a column and its key)."""
    lang = params.source_lang
    return {"source": ("source", lang, "text", ("translation", lang))} if lang else {}


def render(text, result):
    return [{"translation": result["translation_text"]}]


TASK = Task(
    infer_options=GenerationOptions,
    name="translation",
    aliases=("translate", "mt"),
    summary="Machine translation (encoder-decoder)",
    modality="text",
    metric_names=("bleu", "chrf", "gen_len"),
    best_metric="bleu",
    columns={"source": "source-language text", "target": "target-language text",
             "translation": "nested {language: text} records (WMT layout), read with params.source_lang/target_lang"},
    optional_columns=("source", "target", "translation"),
    infer_columns=infer_columns,
    sample="translation.jsonl",
    default_recipe="t5-small",
    auto_model="AutoModelForSeq2SeqLM",
    load_processor=load_processor,
    load_model=load_model,
    preprocess=preprocess,
    collator=s2s.collator,
    metrics=s2s.generation_metrics(bleu_chrf),
    steps=lambda run, model: STEPS,
    render=render,
    params=Params,
    seq2seq=True,
    before_save=s2s.record_prefix,
)
