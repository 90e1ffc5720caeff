"""automatic-speech-recognition: audio file -> transcript. Whisper (seq2seq + generate) or CTC (Wav2Vec2 & co).

Which of the two a run is comes from the checkpoint's config (encoder-decoder -> seq2seq generation, otherwise
CTC), so `taskcli infer asr clip.flac --model DIR` works for either kind without naming a recipe. This module
holds the task and its training side; the two kinds' inference are separate pieces, speech_whisper.py and
speech_ctc.py, and `steps` picks one by the loaded model.

CTC checkpoints without a tokenizer (e.g. facebook/wav2vec2-base, and the --smoke tiny model) get a character
vocabulary built from the training transcripts, normalised as the recipe says (space -> "|", plus <pad>, <unk>),
as the Hugging Face CTC fine-tuning guide does; the vocab.json is saved with the model. The `labels` hook is
where the engine shows a task its data before the model loads, so that is where the transcripts are read.

Text normalisation (`params.normalizer`, `lowercase`, `remove_punctuation`) applies to predictions and
references for WER/CER, and to training targets when `params.normalize_targets` is set.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from taskcli.errors import TaskcliError
from taskcli.generation import GenerationOptions
from taskcli.task import Task


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    language: str | None = Field("en", description="Whisper: spoken language (code or name); null = detect")
    task: Literal["transcribe", "translate"] = Field("transcribe", description="Whisper: transcribe or translate to English")
    normalizer: Literal["none", "basic", "english"] = Field(
        "english", description="Whisper's text normaliser used for scoring (english: spelling, numbers; basic: "
                               "lower-case, no punctuation/diacritics)")
    lowercase: bool = False
    remove_punctuation: bool = False
    normalize_targets: bool = Field(False, description="also normalise the training transcripts (CTC recipes do)")
    max_duration_s: float = Field(30.0, gt=0, description="training clips longer than this are dropped")
    chunk_length_s: float = Field(20.0, gt=0, description="CTC inference: window for long recordings")
    stride_length_s: float = Field(4.0, ge=0, description="CTC inference: overlap on each side of a window")
    freeze_feature_encoder: bool = Field(True, description="CTC: keep the convolutional feature encoder frozen")


class Options(GenerationOptions):
    """Speech recognition's infer options (Whisper: generate()'s too; CTC reads --timestamps only)."""

    language: str | None = None  # Whisper: the spoken language (default: params.language)
    # Whisper: transcribe, or translate to English (default: params.task); its flag is --task, Whisper's own word
    mode: Literal["transcribe", "translate"] | None = Field(None, json_schema_extra={"flag": "--task"})
    timestamps: bool = False  # segment (Whisper) or word (CTC) times


# ----------------------------------------------------------------------------- text normalisation


def normalizer(params, spelling: dict | None = None):
    """A text -> text function from the recipe params (plain values only: safe in datasets closures)."""
    kind, lower, strip_punct = params.normalizer, params.lowercase, params.remove_punctuation
    base = None
    if kind == "english":
        from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

        base = EnglishTextNormalizer(spelling or {})
    elif kind == "basic":
        from transformers.models.whisper.english_normalizer import BasicTextNormalizer

        base = BasicTextNormalizer()

    def norm(text: str) -> str:
        text = text or ""
        if base is not None:
            text = base(text)
        if lower:
            text = text.lower()
        if strip_punct:
            text = re.sub(r"[^\w\s']|_", " ", text)
        return " ".join(text.split())

    return norm


def _spelling(run) -> dict:
    return getattr(run.tokenizer(), "english_spelling_normalizer", None) or {}


# ----------------------------------------------------------------------------- labels hook: CTC vocabulary


def labels(run, dsd):
    """No label set; records the transcripts' characters for a CTC vocabulary (used if the checkpoint has none)."""
    split = "train" if "train" in dsd else next(iter(dsd))
    norm = normalizer(run.params) if run.params.normalize_targets else (lambda t: t or "")
    chars = set()
    for text in dsd[split]["text"]:
        chars.update(norm(text))
    run.learned.ctc_chars = sorted(chars)
    return None


def ctc_vocab(chars) -> dict[str, int]:
    """<pad> 0 (the CTC blank), <unk> 1, "|" word delimiter 2, then the characters (space -> "|")."""
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2}
    for c in chars:
        c = "|" if c == " " else c
        if c not in vocab:
            vocab[c] = len(vocab)
    return vocab


# ----------------------------------------------------------------------------- processor / model


def _kind(run) -> str:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(run.model_source, **run.pretrained_kwargs())
    return "seq2seq" if getattr(config, "is_encoder_decoder", False) else "ctc"


def load_processor(run):
    kind = _kind(run)
    run.learned.asr_kind = kind
    if kind == "seq2seq":
        from transformers import AutoProcessor

        proc = AutoProcessor.from_pretrained(run.model_source, **run.pretrained_kwargs())
        tok = getattr(proc, "tokenizer", None)
        if tok is not None and hasattr(tok, "set_prefix_tokens") and run.params.language:
            tok.set_prefix_tokens(language=run.params.language, task=run.params.task, predict_timestamps=False)
        return proc
    from transformers import AutoFeatureExtractor, Wav2Vec2CTCTokenizer, Wav2Vec2Processor

    fe = AutoFeatureExtractor.from_pretrained(run.model_source, **run.pretrained_kwargs())
    tok = None
    try:
        tok = Wav2Vec2CTCTokenizer.from_pretrained(run.model_source, **run.pretrained_kwargs())
    except (OSError, ValueError, TypeError):
        tok = None
    if tok is None or not tok.get_vocab():
        chars = run.learned.ctc_chars
        if not chars:
            raise TaskcliError(f"{run.model_source} has no CTC vocabulary (vocab.json)",
                               "fine-tune it first: `taskcli finetune asr --recipe wav2vec2` builds one from the transcripts")
        import json
        path = f"{run.temp_dir('taskcli-vocab-')}/vocab.json"
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(ctc_vocab(chars), fh, ensure_ascii=False)
        tok = Wav2Vec2CTCTokenizer(path, unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|",
                                   bos_token=None, eos_token=None)
    return Wav2Vec2Processor(feature_extractor=fe, tokenizer=tok)


def load_model(run, source, label_names):
    kw = run.pretrained_kwargs()
    if run.learned.asr_kind == "seq2seq":
        from transformers import AutoModelForSpeechSeq2Seq

        model = AutoModelForSpeechSeq2Seq.from_pretrained(source, **kw)
        gen = model.generation_config
        if getattr(gen, "lang_to_id", None):  # multilingual Whisper: language/task go through generate()
            gen.language = run.params.language
            gen.task = run.params.task
            gen.forced_decoder_ids = None
        return model
    from transformers import AutoModelForCTC

    tok = run.tokenizer()
    model = AutoModelForCTC.from_pretrained(
        source, ctc_loss_reduction="mean", pad_token_id=tok.pad_token_id, vocab_size=len(tok),
        ignore_mismatched_sizes=True, **kw)
    if run.params.freeze_feature_encoder and hasattr(model, "freeze_feature_encoder"):
        model.freeze_feature_encoder()
    return model


# ----------------------------------------------------------------------------- training features


def preprocess(run, ds, training):
    from taskcli import audio

    ds = audio.undecoded(ds, "audio")
    fe, tok = run.processor.feature_extractor, run.tokenizer()
    rate = fe.sampling_rate
    norm = normalizer(run.params, _spelling(run)) if run.params.normalize_targets else None
    seq2seq = run.learned.asr_kind == "seq2seq"
    max_label = 448 if seq2seq else None
    max_samples = int(run.params.max_duration_s * rate) if training else None

    def encode(row):
        array = audio.load(row["audio"], rate)
        text = norm(row["text"]) if norm else (row["text"] or "")
        if seq2seq:
            out = {"input_features": fe(array, sampling_rate=rate).input_features[0]}
            ids = tok(text).input_ids
            out["labels"] = ids[:max_label] if max_label else ids
        else:
            out = {"input_values": fe(array, sampling_rate=rate).input_values[0]}
            out["labels"] = tok(text).input_ids
        out["n_samples"] = len(array)
        return out

    out = run.map(ds, encode, remove_columns=ds.column_names)
    if max_samples:
        out = out.filter(lambda n: n <= max_samples, input_columns="n_samples")
        if len(out) == 0:
            raise TaskcliError(f"every training clip is longer than params.max_duration_s={run.params.max_duration_s}",
                               "raise it with --set params.max_duration_s=...")
    # eval keeps the clip lengths (the metrics' WER by duration); the Trainer drops the column before the model
    return out.remove_columns("n_samples") if training else out


class SpeechCollator:
    """Pads audio features (stacks Whisper's fixed-size log-mels) and labels (-100)."""

    def __init__(self, key: str, start_id: int | None, use_mask: bool):
        self.key, self.start_id, self.use_mask = key, start_id, use_mask

    def __call__(self, features):
        import numpy as np
        import torch

        xs = [np.asarray(f[self.key], dtype=np.float32) for f in features]
        batch = {}
        if self.key == "input_features":
            batch["input_features"] = torch.from_numpy(np.stack(xs))
        else:
            width = max(len(x) for x in xs)
            values = np.zeros((len(xs), width), dtype=np.float32)
            mask = np.zeros((len(xs), width), dtype=np.int64)
            for i, x in enumerate(xs):
                values[i, : len(x)] = x
                mask[i, : len(x)] = 1
            batch["input_values"] = torch.from_numpy(values)
            if self.use_mask:
                batch["attention_mask"] = torch.from_numpy(mask)
        rows = [list(f["labels"]) for f in features]
        if self.start_id is not None and rows and all(r and r[0] == self.start_id for r in rows):
            rows = [r[1:] for r in rows]  # the model prepends decoder_start_token_id itself
        width = max(len(r) for r in rows)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, r in enumerate(rows):
            labels[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        batch["labels"] = labels
        return batch


def collator(run):
    if run.learned.asr_kind == "seq2seq":
        start = run.tokenizer().convert_tokens_to_ids("<|startoftranscript|>")
        return SpeechCollator("input_features", start if isinstance(start, int) else None, False)
    return SpeechCollator("input_values", None, bool(getattr(run.processor.feature_extractor,
                                                               "return_attention_mask", False)))


def metrics(run, examples, features):
    """WER/CER (jiwer) of the decoded predictions against the examples' transcripts, both normalised."""
    import numpy as np

    from taskcli.metrics import main_output, wer_by_duration, wer_cer

    tok = run.tokenizer()
    norm = normalizer(run.params, _spelling(run))
    refs = [norm(t) for t in examples["text"]]
    seq2seq = run.learned.asr_kind == "seq2seq"
    pad = tok.pad_token_id or 0
    frames = None if seq2seq else _ctc_frames(run, [len(x) for x in features["input_values"]])
    rate = run.processor.feature_extractor.sampling_rate
    seconds = [n / rate for n in features["n_samples"]] if "n_samples" in features.column_names else None

    def compute(pred):
        out = main_output(pred)
        if seq2seq:
            ids = np.where(out == -100, pad, out)
            texts = tok.batch_decode(ids, skip_special_tokens=True)
        else:
            padded = (out == -100).all(-1)  # rows the Trainer added when concatenating batches
            ids = out.argmax(-1)
            ids[padded] = pad
            for i, n in enumerate(frames[: len(ids)]):  # frames past a clip's end (batch padding) are noise
                ids[i, n:] = pad
            texts = tok.batch_decode(ids)
        preds = [norm(t) for t in texts]
        scores = wer_cer(preds, refs[: len(preds)])
        if seconds:
            scores["wer_by_duration"] = wer_by_duration(preds, refs[: len(preds)], seconds[: len(preds)])
        return scores

    return compute


def _ctc_frames(run, n_samples: list[int]) -> list[int]:
    """Output frames of each clip: the conv feature encoder's length formula (no padding, kernel k, stride s)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(run.model_source, **run.pretrained_kwargs())
    out = []
    for n in n_samples:
        for k, s in zip(config.conv_kernel, config.conv_stride):
            n = (n - k) // s + 1
        out.append(max(int(n), 0))
    return out


# ----------------------------------------------------------------------------- inference


def steps(run, model):
    """Whisper or CTC by the loaded model itself (not the recipe), so either kind of checkpoint just works."""
    if getattr(model.config, "is_encoder_decoder", False):
        from taskcli.tasks import speech_whisper

        return speech_whisper.STEPS
    from taskcli.tasks import speech_ctc

    return speech_ctc.STEPS


def render(path, result):
    if result.get("chunks"):
        return [{"time": f"{c['timestamp'][0]:.2f}-{c['timestamp'][1]:.2f}", "text": c["text"]} for c in result["chunks"]]
    if result.get("note"):  # Whisper: a recording that gave no text says so (speech_whisper.decode)
        return [{"text": result["text"], "note": result["note"]}]
    return [{"text": result["text"]}]


TASK = Task(
    infer_options=Options,
    name="automatic-speech-recognition",
    aliases=("asr", "speech-recognition", "transcribe"),
    summary="Speech to text (Whisper seq2seq or Wav2Vec2 CTC)",
    modality="audio",
    metric_names=("wer", "cer"),
    best_metric="wer",
    columns={"audio": "audio file path (or a hub Audio column)", "text": "transcript"},
    sample="automatic-speech-recognition",
    default_recipe="whisper",
    auto_model="AutoModelForSpeechSeq2Seq",
    alt_auto_models=("AutoModelForCTC",),
    load_processor=load_processor,
    load_model=load_model,
    preprocess=preprocess,
    collator=collator,
    metrics=metrics,
    steps=steps,
    render=render,
    labels=labels,
    params=Params,
    seq2seq=True,
    greater_is_better=False,
)
