"""Speech recognition with CTC models (Wav2Vec2 & co): the inference Steps the ASR task uses for checkpoints that
are not encoder-decoder. Not a task of its own (speech_recognition.py is the task; its `steps` picks this or
speech_whisper).

Greedy CTC: the argmax token per frame, which the tokenizer collapses (repeats, blanks) into text. A recording
longer than params.chunk_length_s is read in windows with params.stride_length_s of context each side, as the
pipeline's chunking does: each window is one feature of the recording, and decode joins their frames without the
context ones, so every frame comes from the window where it had context on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from taskcli import audio
from taskcli.errors import TaskcliError
from taskcli.task import Context, Encoded, Steps


@dataclass
class _Context(Context):
    fe: Any = None  # Wav2Vec2FeatureExtractor & co
    tok: Any = None
    rate: int = 16000
    ratio: int = 320  # input samples per output frame
    window: int = 320000  # samples per window of a long recording
    stride: int = 64000  # samples of context each side of a window
    timestamps: bool = False  # --timestamps: words with start/end times


@dataclass
class _Recording(Encoded):
    # per window (feature): output frames of context to drop at its (left, right) end; (0, 0) for a whole clip
    margins: list = field(default_factory=list)


def setup(run, model, options):
    fe = run.processor.feature_extractor
    rate = fe.sampling_rate
    return _Context(run, model, options, audio.infer_batch_size(fe, options.batch_size), fe=fe, tok=run.tokenizer(),
                    rate=rate, ratio=int(getattr(model.config, "inputs_to_logits_ratio", 320)),
                    window=int(run.params.chunk_length_s * rate), stride=int(run.params.stride_length_s * rate),
                    timestamps=options.timestamps)


def _windows(ctx, n: int) -> list[tuple[int, int, int, int]]:
    """(lo, hi, left, right) of each window of an n-sample recording: samples [lo, hi) are read, and `left` and
    `right` frames at its ends are context, dropped (the next window reads them with context of their own)."""
    if n <= ctx.window:
        return [(0, n, 0, 0)]
    step = ctx.window - 2 * ctx.stride  # samples each window contributes
    if step <= 0:
        raise TaskcliError(f"params.stride_length_s ({ctx.run.params.stride_length_s}) must be under half of "
                           f"params.chunk_length_s ({ctx.run.params.chunk_length_s})",
                           "lower params.stride_length_s or raise params.chunk_length_s")
    out = []
    for start in range(0, n, step):
        lo, hi = max(0, start - ctx.stride), min(n, start + step + ctx.stride)
        out.append((lo, hi, int(round((start - lo) / ctx.ratio)), int(round((hi - min(n, start + step)) / ctx.ratio))))
        if start + step >= n:
            break
    return out


def encode(ctx, arrays):
    """Each recording as its windows (one for most), normalised by the feature extractor one window at a time."""
    spans = [_windows(ctx, len(a)) for a in arrays]
    pieces = [a[lo:hi] for a, ws in zip(arrays, spans) for lo, hi, _, _ in ws]
    values = iter(ctx.fe(pieces, sampling_rate=ctx.rate).input_values)
    return [_Recording([{"input_values": next(values)} for _ in ws], [hi - lo for lo, hi, _, _ in ws],
                       margins=[(left, right) for _, _, left, right in ws]) for ws in spans]


def forward(ctx, batch):
    """Argmax ids per frame of each row, without the frames of its padding."""
    ids = ctx.model(**batch).logits.argmax(-1).cpu()
    if "attention_mask" not in batch:
        return list(ids.numpy())
    frames = ctx.model._get_feat_extract_output_lengths(batch["attention_mask"].sum(-1)).tolist()
    return [row[:int(n)].numpy() for row, n in zip(ids, frames)]


def decode(ctx, rec, outputs):
    import numpy as np

    ids = [int(t) for t in np.concatenate([row[left:len(row) - right] for row, (left, right) in
                                           zip(outputs, rec.margins)])]
    if not ctx.timestamps:
        return {"text": ctx.tok.decode(ids).strip()}
    seconds = ctx.ratio / ctx.rate  # per frame
    dec = ctx.tok.decode(ids, output_word_offsets=True)
    chunks = [{"text": w["word"], "timestamp": [round(float(w["start_offset"] * seconds), 2),
                                               round(float(w["end_offset"] * seconds), 2)]}
              for w in dec.word_offsets]
    return {"text": dec.text.strip(), "chunks": chunks}


STEPS = Steps(setup=setup, parse=audio.parse, encode=encode, forward=forward, decode=decode,
              errors=(audio.BadAudio,))
