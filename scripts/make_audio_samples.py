"""Make the bundled audio smoke samples: short real speech spoken by espeak-ng, stored as 16 kHz mono FLAC.

    apt-get install espeak-ng          # the only system dependency
    .venv/bin/python scripts/make_audio_samples.py

Writes
  taskcli/samples/automatic-speech-recognition/  clip_NN.flac + metadata.jsonl {"file_name", "transcription"}
  taskcli/samples/audio-classification/<label>/<label>_NN.flac   (folder per label, keyword-spotting style)

espeak-ng -> WAV (22.05 kHz) on stdout -> soundfile -> soxr resample to 16 kHz -> FLAC (PCM_16).
The output is deterministic for a given espeak-ng build (espeak-ng 1.51 was used for the committed files).
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

ROOT = Path(__file__).resolve().parents[1] / "taskcli" / "samples"
RATE = 16_000

# Short sentences with a small shared vocabulary: a tiny model can memorise them in seconds.
SENTENCES = [
    "the cat sat on the mat",
    "open the door please",
    "turn on the light",
    "the sun is hot today",
    "i like green apples",
    "we walk to the park",
    "call me in the morning",
    "the dog runs fast",
    "close the window now",
    "she reads a good book",
    "play some music",
    "the bird can sing",
    "it is cold outside",
    "bring me a cup of tea",
    "the red car stopped",
    "please sit down here",
]
# (voice, words per minute, pitch): a little variety, all intelligible
ASR_VOICES = [("en-us", 165, 50), ("en", 160, 40), ("en-us+f3", 170, 60), ("en+m3", 155, 45)]

KEYWORDS = ["yes", "no", "up", "down"]
KW_VOICES = [("en-us", 160, 50), ("en", 150, 35), ("en-us+f2", 175, 70), ("en+m4", 140, 40),
             ("en-us+f4", 165, 60), ("en-gb-x-rp", 155, 45)]


def speak(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
                         check=True, capture_output=True).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    audio = soxr.resample(audio, rate, RATE)
    # trim leading/trailing near-silence, keep 50 ms margins
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    if loud.size:
        audio = audio[max(0, loud[0] - 800): loud[-1] + 800]
    return np.clip(audio, -1.0, 1.0)


def main() -> None:
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng not found: apt-get install espeak-ng")
    asr = ROOT / "automatic-speech-recognition"
    shutil.rmtree(asr, ignore_errors=True)
    asr.mkdir(parents=True)
    rows = []
    for i, text in enumerate(SENTENCES):
        voice, speed, pitch = ASR_VOICES[i % len(ASR_VOICES)]
        name = f"clip_{i:02d}.flac"
        sf.write(asr / name, speak(text, voice, speed, pitch), RATE, format="FLAC", subtype="PCM_16")
        rows.append({"file_name": name, "transcription": text})
    (asr / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    cls = ROOT / "audio-classification"
    shutil.rmtree(cls, ignore_errors=True)
    for word in KEYWORDS:
        (cls / word).mkdir(parents=True)
        for j, (voice, speed, pitch) in enumerate(KW_VOICES):
            sf.write(cls / word / f"{word}_{j:02d}.flac", speak(word, voice, speed, pitch), RATE,
                     format="FLAC", subtype="PCM_16")
    total = sum(p.stat().st_size for p in list(asr.rglob("*")) + list(cls.rglob("*")) if p.is_file())
    print(f"wrote {len(rows)} ASR clips and {len(KEYWORDS) * len(KW_VOICES)} keyword clips, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
