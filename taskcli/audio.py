"""Audio input, done once for every audio task: decode, mix to mono, resample.

Decoding uses soundfile (libsndfile: WAV, FLAC, OGG/Vorbis, Opus, MP3, AIFF...) and resampling uses soxr —
no ffmpeg binary, no torchcodec, no torchaudio. Headerless ``.pcm``/``.raw`` files are read as signed 16-bit
little-endian mono at 16 kHz (the usual speech convention; there is nothing in the file to say otherwise).

Also: a recording's header read without decoding (is it readable, how long). Finding audio files among `taskcli
infer` arguments and reading an audio dataset folder are the audio modality's (taskcli/modality.py). Dataset audio
columns stay paths (or undecoded {"bytes", "path"} dicts from a hub `Audio` column) until a task decodes them
with :func:`load`.
"""

from __future__ import annotations

import io
from pathlib import Path

from taskcli.errors import TaskcliError

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".aiff", ".aif", ".aifc", ".au", ".pcm", ".raw"}
RAW_SUFFIXES = {".pcm", ".raw"}
RAW_RATE = 16_000
# Common containers libsndfile cannot open: say so up front instead of a codec error.
UNSUPPORTED = {".m4a", ".aac", ".mp4", ".wma", ".webm", ".amr", ".3gp", ".mka", ".ac3"}
# True wherever the error shows up: `infer` has --skip-bad, training and eval data must be fixed instead.
_FIX = ("convert it to WAV/FLAC/MP3/OGG first (e.g. `ffmpeg -i IN OUT.flac`) or remove it from the data; "
        "`taskcli infer` skips such files with --skip-bad")


# Longest recording (seconds) a file may decode to, checked from its header before decoding: None (no limit) for
# `infer`, whose files are the user's own; `taskcli serve` sets it (--max-audio-seconds), as a 28 KB FLAC can hold
# ten minutes of silence (1.3 GB decoded and resampled).
MAX_SECONDS: float | None = None


def set_max_seconds(limit: float | None) -> None:
    """Set the duration limit (`MAX_SECONDS`) for this process."""
    global MAX_SECONDS
    MAX_SECONDS = limit


class BadAudio(TaskcliError):
    """One unreadable audio file; ``path`` names it."""

    def __init__(self, path: str, why: str):
        self.path = path
        super().__init__(f"cannot read audio file {path}: {why}", _FIX)


def _name(source) -> str:
    if isinstance(source, dict):
        return str(source.get("path") or "<audio bytes>")
    return str(source)


def decode(source) -> tuple:
    """(float32 array [frames, channels], sample rate) at the file's own rate and channel count.

    `source`: a path, or a dict from a datasets `Audio(decode=False)` column ({"bytes", "path"}), or a dict
    {"array"/"raw", "sampling_rate"} of already decoded audio.
    """
    import numpy as np

    name = _name(source)
    if isinstance(source, dict):
        raw = source.get("array", source.get("raw"))
        if raw is not None:
            arr = np.asarray(raw, dtype=np.float32)
            return (arr[:, None] if arr.ndim == 1 else arr), int(source["sampling_rate"])
        if source.get("bytes"):
            return _read(io.BytesIO(source["bytes"]), Path(name).suffix.lower(), name)
        source = source.get("path")
        if not source:
            raise BadAudio(name, "the audio entry has neither bytes nor a path")
    path = Path(str(source)).expanduser()
    suffix = path.suffix.lower()
    if not path.exists():
        raise BadAudio(name, "no such file")
    if path.is_dir():
        raise BadAudio(name, "it is a directory")
    if path.stat().st_size == 0:
        raise BadAudio(name, "the file is empty")
    return _read(str(path), suffix, name)


def _read(file, suffix: str, name: str) -> tuple:
    """Decode a path or a file object; over MAX_SECONDS is refused from the header, before decoding."""
    import soundfile as sf

    raw = {"samplerate": RAW_RATE, "channels": 1, "subtype": "PCM_16", "endian": "LITTLE", "format": "RAW"}
    if suffix in UNSUPPORTED:
        raise BadAudio(name, f"'{suffix}' audio is not supported (soundfile reads WAV, FLAC, MP3, OGG/Vorbis, Opus)")
    try:
        with sf.SoundFile(file, **(raw if suffix in RAW_SUFFIXES else {})) as sound:
            if MAX_SECONDS is not None and sound.frames > MAX_SECONDS * sound.samplerate:
                raise BadAudio(name, f"it is {sound.frames / sound.samplerate:.1f} s long, more than the limit of "
                                     f"{MAX_SECONDS:g} s")
            arr, rate = sound.read(dtype="float32", always_2d=True), sound.samplerate
    except BadAudio:
        raise
    except Exception as err:  # noqa: BLE001 - libsndfile's errors are user data errors
        raise BadAudio(name, _why(err)) from None
    return _checked(arr, rate, name)


def _why(err: Exception) -> str:
    import re

    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    text = re.sub(r"^Error opening .*?: ", "", text)  # libsndfile names the file (or <_io.BytesIO ...>) itself
    return f"not a readable audio format ({text[:120]})"


def _checked(arr, rate, name):
    if arr.shape[0] == 0:
        raise BadAudio(name, "it holds no audio samples")
    return arr, int(rate)


def to_mono_rate(arr, rate: int, target: int | None):
    """Mix [frames, channels] down to mono float32 and resample to `target` (soxr, high quality)."""
    import numpy as np

    mono = arr.mean(axis=1) if arr.ndim == 2 else arr
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if target and rate != target:
        import soxr

        mono = soxr.resample(mono, rate, target).astype(np.float32, copy=False)
    return mono


def load(source, rate: int | None):
    """Mono float32 array at `rate` (None: the file's own rate)."""
    arr, sr = decode(source)
    return to_mono_rate(arr, sr, rate)


def parse(ctx, path: str):
    """Infer's `parse` step for every audio task: one file decoded to mono at `ctx.rate` (the feature extractor's);
    BadAudio makes it an error row with --skip-bad."""
    return load(path, ctx.rate)


def infer_batch_size(fe, requested: int) -> int:
    """Inputs per batch for a feature extractor: without an attention mask (group-norm wav2vec2-base) padding would
    change the result, so one input per batch; otherwise `requested`. (The default collate, the processor's own
    `pad`, adds the mask where the extractor makes one.)"""
    return int(requested) if getattr(fe, "return_attention_mask", False) else 1


def expand_inputs(args: list[str]) -> list[str]:
    """`taskcli infer` arguments -> audio paths; kept for callers not yet on `modality.AUDIO.expand_inputs`."""
    from taskcli import files

    return files.expand_inputs(args, AUDIO_SUFFIXES, "audio")


def header_problem(source, name: str | None) -> str | None:
    """Why a recording (a path or a BytesIO) will not open, from its header (soundfile's info), or None."""
    if not isinstance(source, io.BytesIO):
        suffix = Path(str(source)).suffix.lower()
        if suffix in RAW_SUFFIXES:  # headerless: nothing to check before decoding
            return None
        if suffix in UNSUPPORTED:
            return f"{name}: '{suffix}' audio is not supported (soundfile reads WAV, FLAC, MP3, OGG/Vorbis, Opus)"
    import soundfile as sf

    try:
        info = sf.info(source if isinstance(source, io.BytesIO) else str(source))
    except Exception as err:  # noqa: BLE001 - libsndfile's errors are user data errors
        return f"{name or 'audio bytes'} is not a readable audio file ({str(err).splitlines()[0][:80]})"
    return f"{name} holds no audio samples" if info.frames == 0 else None


def header_seconds(source) -> float | None:
    """Seconds of a recording (a path or a BytesIO) from its header (soundfile's info), or None."""
    import soundfile as sf

    try:
        return sf.info(source if isinstance(source, io.BytesIO) else str(source)).duration
    except Exception:  # noqa: BLE001 - an unreadable file is a preflight problem, listed there
        return None


def undecoded(ds, column: str):
    """Make a datasets `Audio` column undecoded ({"bytes", "path"}): decoding it needs torchcodec."""
    import datasets

    feature = ds.features.get(column)
    if isinstance(feature, datasets.Audio) and feature.decode:
        return ds.cast_column(column, datasets.Audio(decode=False))
    return ds
