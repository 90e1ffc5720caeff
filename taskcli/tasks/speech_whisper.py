"""Speech recognition with Whisper (seq2seq + generate): the inference Steps the ASR task uses for encoder-decoder
checkpoints. Not a task of its own (speech_recognition.py is the task; its `steps` picks this or speech_ctc).

Recordings up to the model's window (30 s; 4 s for the tiny test model) are short-form: one decoding pass each.
Longer ones are long-form: generate() walks them window by window with timestamps, which needs the untruncated
log-mels and their attention mask. The two are separate batch groups, as they are different generate() calls.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from taskcli import audio
from taskcli.errors import TaskcliError
from taskcli.task import Context, Encoded, Steps

SHORT, LONG = "short", "long"  # batch groups


@dataclass
class _Context(Context):
    fe: Any = None  # WhisperFeatureExtractor
    tok: Any = None
    rate: int = 16000
    window: int = 480000  # samples of the model's window (short-form up to this)
    timestamps: bool = False  # --timestamps: segments with start/end times
    precision: float = 0.02  # seconds per timestamp token
    gen: dict | None = None  # generate() settings (recipe, flags, language/task)
    noted: set = field(default_factory=set)  # stderr notes already given this run


@dataclass
class _Recording(Encoded):
    seconds: float = 0.0  # its duration: the one segment's end when no timestamp token came out


def _gen_kwargs(run, model, options) -> dict:
    """generate() settings; language/task only for multilingual Whisper (English-only models refuse them)."""
    from taskcli import generation

    gen = generation.settings(run, model, options)
    if getattr(model.generation_config, "lang_to_id", None):
        language = options.language if options.language is not None else run.params.language
        if language is not None:
            gen["language"] = language
        gen["task"] = options.mode or run.params.task
    elif options.language or options.mode == "translate":
        raise TaskcliError("--language/--task need a multilingual Whisper model", "drop them for this model")
    return gen


def setup(run, model, options):
    fe = run.processor.feature_extractor
    return _Context(run, model, options, fe=fe, tok=run.tokenizer(),
                    rate=fe.sampling_rate, window=fe.n_samples, timestamps=options.timestamps,
                    precision=float(getattr(fe, "hop_length", 160)) * 2 / fe.sampling_rate,
                    gen=_gen_kwargs(run, model, options))


def encode(ctx, arrays):
    """Each recording as one feature: its samples. Log-mels are made per batch in `collate`, because the feature
    extractor pads the samples (to the window, or for long-form to the batch's longest) before extracting them."""
    return [_Recording([a], [len(a)], group=LONG if len(a) > ctx.window else SHORT, seconds=len(a) / ctx.rate)
            for a in arrays]


def collate(ctx, arrays):
    """Short-form: log-mels of the samples padded to the window (no mask: Whisper reads whole windows).
    Long-form: untruncated, padded to the longest, with the mask that tells generate() where each one ends."""
    if len(arrays[0]) <= ctx.window:  # a batch is all of one group
        return {"input_features": ctx.fe(arrays, sampling_rate=ctx.rate, return_tensors="pt").input_features}
    feats = ctx.fe(arrays, sampling_rate=ctx.rate, return_tensors="pt", truncation=False, padding="longest",
                   return_attention_mask=True)
    return {"input_features": feats.input_features, "attention_mask": feats.attention_mask}


def forward(ctx, batch):
    if "attention_mask" in batch:  # long-form (see collate): windows in turn, timestamps tell where to go on
        ids = ctx.model.generate(batch["input_features"], attention_mask=batch["attention_mask"],
                                 return_timestamps=True, **ctx.gen)
    else:
        # one decoding pass per clip (short-form): a stray timestamp token must not start another segment
        ids = ctx.model.generate(batch["input_features"], return_timestamps=ctx.timestamps,
                                 force_unique_generate_call=True, **ctx.gen)
    return list(ids.cpu())


def decode(ctx, rec, outputs):
    ids = [int(t) for t in outputs[0]]
    text = ctx.tok.decode(ids, skip_special_tokens=True).strip()
    row: dict = {"text": text}
    if ctx.timestamps:
        row["chunks"], clamped = chunks(ctx.tok, ids, ctx.precision, rec.seconds)
        if not row["chunks"] and text:  # no timestamp tokens came out: the whole clip is one segment
            row["chunks"] = [{"text": text, "timestamp": [0.0, round(rec.seconds, 2)]}]
        if clamped:
            row["timestamps_clamped"] = True
            _note_once(ctx, "clamped", "note: Whisper gave times past the end of a recording; they were clamped to "
                                       "its duration (its row says \"timestamps_clamped\": true)")
    if not text:
        row["note"] = NO_TEXT
        _note_once(ctx, "no_text", f"note: a recording gave no text (its row has \"text\": \"\" and \"note\": "
                                   f"\"{NO_TEXT}\")")
    return row


NO_TEXT = "no speech recognised"


def _note_once(ctx, what: str, line: str) -> None:
    """One stderr note per kind and run (the rows concerned say it too)."""
    if what not in ctx.noted:
        ctx.noted.add(what)
        print(line, file=sys.stderr)


def chunks(tok, ids: list[int], precision: float, seconds: float) -> tuple[list[dict], bool]:
    """Timestamped segments of one output, and whether any time was clamped. The tokenizer's own segmenting, as the
    ASR pipeline uses it (`_decode_asr`: special tokens such as <|en|><|transcribe|> never reach a segment's text,
    long-form windows are offset); its `decode(output_offsets=True)` keeps special tokens in segment texts. Times
    past the recording's end (a model may predict any timestamp token up to 30 s) are clamped to its duration;
    `clamped` says so when one was more than a timestamp step past it."""
    import numpy as np

    _, found = tok._decode_asr([{"tokens": np.array([ids])}], return_timestamps=True, return_language=False,
                               time_precision=precision)
    end, out, clamped = round(seconds, 2), [], False
    for seg in found.get("chunks", []):
        if not seg["text"].strip():
            continue
        start, stop = seg["timestamp"]  # stop is None when the output ends without a closing timestamp
        start = 0.0 if start is None else round(float(start), 2)
        stop = end if stop is None else round(float(stop), 2)
        clamped |= max(start, stop) > end + precision  # less than one timestamp step is the clip's rounding
        start = min(start, end)
        out.append({"text": seg["text"].strip(), "timestamp": [start, min(max(stop, start), end)]})
    return out, clamped


STEPS = Steps(setup=setup, parse=audio.parse, encode=encode, collate=collate, forward=forward, decode=decode,
              errors=(audio.BadAudio,))
