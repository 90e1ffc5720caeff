"""automatic-speech-recognition: audio file -> transcript. Whisper (seq2seq + generate) or CTC (Wav2Vec2 & co).

Which of the two a run is comes from the checkpoint's config (encoder-decoder -> seq2seq generation, otherwise
CTC), so `taskcli infer asr clip.flac --model DIR` works for either kind without naming a recipe.

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
    run.state["ctc_chars"] = sorted(chars)
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
    run.state["asr_kind"] = kind
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
        chars = run.state.get("ctc_chars")
        if not chars:
            raise TaskcliError(f"{run.model_source} has no CTC vocabulary (vocab.json)",
                               "fine-tune it first: `taskcli finetune asr --recipe wav2vec2` builds one from the transcripts")
        import json
        import tempfile

        tmp = tempfile.TemporaryDirectory(prefix="taskcli-vocab-")
        run._tmp.append(tmp)
        path = f"{tmp.name}/vocab.json"
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(ctc_vocab(chars), fh, ensure_ascii=False)
        tok = Wav2Vec2CTCTokenizer(path, unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|",
                                   bos_token=None, eos_token=None)
    return Wav2Vec2Processor(feature_extractor=fe, tokenizer=tok)


def load_model(run, source, label_names):
    kw = run.pretrained_kwargs()
    if run.state.get("asr_kind") == "seq2seq":
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
    seq2seq = run.state.get("asr_kind") == "seq2seq"
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
    if run.state.get("asr_kind") == "seq2seq":
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
    seq2seq = run.state.get("asr_kind") == "seq2seq"
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


def read_inputs(run, args, options):
    """Paths (files, dirs, globs, - for stdin); each decoded once here, bad ones reported (--skip-bad) or fatal."""
    from taskcli import audio

    return audio.read_inputs(args, options, run.processor.feature_extractor.sampling_rate)


def _arrays(run, inputs, options):
    from taskcli import audio

    rate = run.processor.feature_extractor.sampling_rate
    cache = options.get("_decoded") or {}
    return [cache[x] if isinstance(x, str) and x in cache else audio.load(x, rate) for x in inputs]


def predict(run, model, inputs, options):
    arrays = _arrays(run, inputs, options)
    if run.state.get("asr_kind") == "seq2seq":
        return _predict_seq2seq(run, model, arrays, options)
    return _predict_ctc(run, model, arrays, options)


def _gen_kwargs(run, model, options) -> dict:
    from taskcli import generation

    gen = generation.settings(run, model, options)
    if getattr(model.generation_config, "lang_to_id", None):
        language = options.get("language", run.params.language)
        if language is not None:
            gen["language"] = language
        gen["task"] = options.get("task") or run.params.task
    elif options.get("language") or options.get("task") == "translate":
        raise TaskcliError("--language/--task need a multilingual Whisper model", "drop them for this model")
    return gen


def _predict_seq2seq(run, model, arrays, options):
    import torch

    from taskcli.batching import run_sorted

    fe, tok = run.processor.feature_extractor, run.tokenizer()
    rate, window = fe.sampling_rate, fe.n_samples
    timestamps = bool(options.get("timestamps"))
    gen = _gen_kwargs(run, model, options)
    bs = int(options.get("batch_size") or 8)
    device, dtype = model.device, model.dtype
    precision = float(getattr(fe, "hop_length", 160)) * 2 / rate  # seconds per timestamp token (0.02)

    def short(idx):
        feats = fe([arrays[i] for i in idx], sampling_rate=rate, return_tensors="pt")
        with torch.inference_mode():
            # one decoding pass per clip (short-form): a stray timestamp token must not start another segment
            ids = model.generate(feats.input_features.to(device, dtype), return_timestamps=timestamps,
                                 force_unique_generate_call=True, **gen)
        return [_result(tok, row, timestamps, precision, len(arrays[i]) / rate) for i, row in zip(idx, ids)]

    def long(idx):
        feats = fe([arrays[i] for i in idx], sampling_rate=rate, return_tensors="pt", truncation=False,
                   padding="longest", return_attention_mask=True)
        with torch.inference_mode():
            ids = model.generate(feats.input_features.to(device, dtype), attention_mask=feats.attention_mask.to(device),
                                 return_timestamps=True, **gen)
        return [_result(tok, row, timestamps, precision, len(arrays[i]) / rate) for i, row in zip(idx, ids)]

    out: list = [None] * len(arrays)
    for fn, group in ((long, [i for i, a in enumerate(arrays) if len(a) > window]),
                      (short, [i for i, a in enumerate(arrays) if len(a) <= window])):
        if not group:
            continue
        results = run_sorted([len(arrays[i]) for i in group], bs, lambda idx: fn([group[j] for j in idx]))
        for i, r in zip(group, results):
            out[i] = r
    return out


def _result(tok, ids, timestamps: bool, precision: float, duration: float) -> dict:
    ids = [int(t) for t in ids]
    text = tok.decode(ids, skip_special_tokens=True).strip()
    if not timestamps:
        return {"text": text}
    decoded = tok.decode(ids, skip_special_tokens=True, output_offsets=True, time_precision=precision)
    chunks = [{"text": o["text"].strip(), "timestamp": [round(float(o["timestamp"][0]), 2),
                                                        round(float(o["timestamp"][1]), 2)]}
              for o in decoded.get("offsets", []) if o["text"].strip()]
    if not chunks and text:  # no timestamp tokens came out: the whole clip is one segment
        chunks = [{"text": text, "timestamp": [0.0, round(duration, 2)]}]
    return {"text": text, "chunks": chunks}


def _predict_ctc(run, model, arrays, options):
    import numpy as np
    import torch

    from taskcli.batching import run_sorted

    fe, tok = run.processor.feature_extractor, run.tokenizer()
    rate = fe.sampling_rate
    masked = bool(getattr(fe, "return_attention_mask", False))
    # Without an attention mask (group-norm wav2vec2-base) padding would change the result: batch one by one.
    bs = int(options.get("batch_size") or 8) if masked else 1
    ratio = int(getattr(model.config, "inputs_to_logits_ratio", 320))
    window = int(run.params.chunk_length_s * rate)
    stride = int(run.params.stride_length_s * rate)
    device = model.device
    timestamps = bool(options.get("timestamps"))

    def logits_of(batch):
        feats = fe(batch, sampling_rate=rate, return_tensors="pt", padding=True, return_attention_mask=masked)
        kw = {"attention_mask": feats.attention_mask.to(device)} if masked else {}
        with torch.inference_mode():
            return model(feats.input_values.to(device, model.dtype), **kw).logits.float().cpu().numpy()

    def ids_of(array) -> np.ndarray:
        """Argmax ids of a long recording: windows with `stride` context each side, context frames dropped."""
        pieces, step = [], window - 2 * stride
        for start in range(0, len(array), step):
            lo, hi = max(0, start - stride), min(len(array), start + step + stride)
            lg = logits_of([array[lo:hi]])[0]
            n_frames = lg.shape[0]
            left = int(round((start - lo) / ratio))
            right = int(round((hi - min(len(array), start + step)) / ratio))
            pieces.append(lg[left: n_frames - right].argmax(-1))
            if start + step >= len(array):
                break
        return np.concatenate(pieces)

    def forward(idx):
        if len(idx) == 1 and len(arrays[idx[0]]) > window:
            rows = [ids_of(arrays[idx[0]])]
        else:
            lg = logits_of([arrays[i] for i in idx])
            rows = []
            for j, i in enumerate(idx):
                n = int(model._get_feat_extract_output_lengths(torch.tensor(len(arrays[i])))) if masked else lg.shape[1]
                rows.append(lg[j, :n].argmax(-1))
        return [_ctc_result(tok, r, timestamps, ratio / rate) for r in rows]

    lengths = [len(a) for a in arrays]
    long_first = [i for i in range(len(arrays)) if lengths[i] > window]
    out: list = [None] * len(arrays)
    for i in long_first:  # long recordings go one at a time, window by window
        out[i] = forward([i])[0]
    rest = [i for i in range(len(arrays)) if lengths[i] <= window]
    if rest:
        results = run_sorted([lengths[i] for i in rest], bs, lambda idx: forward([rest[j] for j in idx]))
        for i, r in zip(rest, results):
            out[i] = r
    return out


def _ctc_result(tok, ids, timestamps: bool, seconds_per_frame: float) -> dict:
    ids = [int(t) for t in ids]
    if not timestamps:
        return {"text": tok.decode(ids).strip()}
    dec = tok.decode(ids, output_word_offsets=True)
    chunks = [{"text": w["word"], "timestamp": [round(float(w["start_offset"] * seconds_per_frame), 2),
                                               round(float(w["end_offset"] * seconds_per_frame), 2)]}
              for w in dec.word_offsets]
    return {"text": dec.text.strip(), "chunks": chunks}


def render(path, result):
    if result.get("chunks"):
        return [{"time": f"{c['timestamp'][0]:.2f}-{c['timestamp'][1]:.2f}", "text": c["text"]} for c in result["chunks"]]
    return [{"text": result["text"]}]


TASK = Task(
    infer_options=frozenset({"language", "task", "timestamps"}),
    generates=True,
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
    read_inputs=read_inputs,
    predict=predict,
    render=render,
    labels=labels,
    params=Params,
    seq2seq=True,
    greater_is_better=False,
)
