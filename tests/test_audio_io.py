"""Audio input: decoding real files of several formats, rates and channel counts; bad files; input expansion;
local audio datasets; WER/CER equal to jiwer."""

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from taskcli import audio, modality
from taskcli.errors import TaskcliError

from conftest import DATA

ROOT = Path(__file__).resolve().parents[1]
REAL = DATA / "audio"
ASR_SAMPLE = ROOT / "taskcli" / "samples" / "automatic-speech-recognition"
CLS_SAMPLE = ROOT / "taskcli" / "samples" / "audio-classification"

# frames, rate, channels: data/README.md (measured upstream, see "Audio measurements" there)
REAL_FILES = {
    "test_audio_44100.wav": (202311, 44100, 2),
    "test_audio_44100.mp3": (110592, 44100, 2),
    "test_audio_16000.mp3": (40896, 16000, 2),
    "test_audio_48000.opus": (48000, 48000, 1),
    "test_audio_16000.pcm": (16208, 16000, 1),
}


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_decode_real_files(name):
    frames, rate, channels = REAL_FILES[name]
    arr, sr = audio.decode(str(REAL / name))
    assert (arr.shape, sr) == ((frames, channels), rate)
    assert arr.dtype == np.float32 and np.abs(arr).max() <= 1.0
    mono = audio.load(str(REAL / name), 16000)
    assert mono.ndim == 1 and mono.dtype == np.float32
    assert abs(len(mono) - frames * 16000 / rate) <= 2
    if rate == 16000 and channels == 2:  # no resampling: plain channel mean
        np.testing.assert_allclose(mono, arr.mean(axis=1), atol=1e-7)


def test_bundled_samples_are_16k_mono_flac():
    files = sorted(ASR_SAMPLE.glob("*.flac")) + sorted(CLS_SAMPLE.rglob("*.flac"))
    assert len(files) >= 30
    for f in files:
        info = sf.info(str(f))
        assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
    rows = [json.loads(line) for line in (ASR_SAMPLE / "metadata.jsonl").read_text().splitlines()]
    assert all((ASR_SAMPLE / r["file_name"]).is_file() and r["transcription"] for r in rows)
    total = sum(p.stat().st_size for p in (ROOT / "taskcli" / "samples").rglob("*.flac"))
    assert total < 1_500_000


@pytest.fixture()
def bad_files(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "corrupt.flac").write_bytes(b"this is not audio at all" * 20)
    (tmp_path / "voice.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + b"\x00" * 64)
    return tmp_path


@pytest.mark.parametrize("name,why", [("empty.wav", "empty"), ("corrupt.flac", "not a readable audio format"),
                                      ("voice.m4a", "not supported"), ("missing.wav", "no such file")])
def test_bad_file_errors_name_the_file(bad_files, name, why):
    with pytest.raises(TaskcliError) as err:
        audio.load(str(bad_files / name), 16000)
    text = str(err.value)
    assert name in text and why in text and "\n" not in text and "--skip-bad" in text


def test_bad_files_stop_the_loop_or_become_error_rows(bad_files, capsys):
    """The one inference loop with audio's parse step: without --skip-bad the first bad file stops the run; with it
    each bad file is reported on stderr and marked, the good one goes on to encode."""
    from taskcli import inference
    from taskcli.task import Context, Encoded, Steps

    good = str(sorted(ASR_SAMPLE.glob("*.flac"))[0])
    steps = Steps(setup=None, parse=lambda ctx, path: audio.load(path, 16000), decode=None,
                  encode=lambda ctx, arrays: [Encoded([a], [len(a)]) for a in arrays], errors=(audio.BadAudio,))
    ctx = Context(None, None, {}, 8)
    chunk = [(p, p) for p in (str(bad_files / "voice.m4a"), good, str(bad_files / "empty.wav"))]
    out = inference.encode(ctx, steps, chunk, skip_bad=True)
    assert [isinstance(e, inference.Bad) for e in out] == [True, False, True] and len(out[1].features[0]) > 0
    assert capsys.readouterr().err.count("skipped: ") == 2
    with pytest.raises(TaskcliError):
        inference.encode(ctx, steps, [(good, good), chunk[0]], skip_bad=False)


def test_expand_inputs(tmp_path, monkeypatch):
    for name in ("b.wav", "a.flac", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.mp3").write_bytes(b"x")
    assert modality.AUDIO.expand_inputs([str(tmp_path)]) == [str(tmp_path / "a.flac"), str(tmp_path / "b.wav"),
                                                             str(tmp_path / "sub" / "c.mp3")]
    assert modality.AUDIO.expand_inputs([str(tmp_path / "*.wav")]) == [str(tmp_path / "b.wav")]
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{tmp_path / 'b.wav'}\n\n{tmp_path / 'a.flac'}\n"))
    assert modality.AUDIO.expand_inputs(["-"]) == [str(tmp_path / "b.wav"), str(tmp_path / "a.flac")]
    with pytest.raises(TaskcliError):
        modality.AUDIO.expand_inputs([str(tmp_path / "*.ogg")])


def test_wer_cer_equal_jiwer():
    import jiwer

    from taskcli.metrics import wer_cer

    refs = ["the cat sat on the mat", "open the door please", "turn on the light", "hello world"]
    hyps = ["the cat sat on a mat", "open door please now", "turn on the lights", ""]
    got = wer_cer(hyps, refs)
    assert got["wer"] == jiwer.wer(refs, hyps) and got["cer"] == jiwer.cer(refs, hyps)
    assert got == {"wer": pytest.approx(6 / 16), "cer": pytest.approx(jiwer.cer(refs, hyps))}
    assert wer_cer(refs, refs) == {"wer": 0.0, "cer": 0.0}


def test_normalizers():
    from taskcli.tasks.speech_recognition import Params, normalizer

    assert normalizer(Params(normalizer="english"))("Mr. Smith, it's TWENTY-five!") == "mister smith it is 25"
    assert normalizer(Params(normalizer="basic"))("Hello, World!  Ça va?") == "hello world ça va"
    assert normalizer(Params(normalizer="none", lowercase=True, remove_punctuation=True))("It's OK, Bob.") == "it's ok bob"
    assert normalizer(Params(normalizer="none"))("  Keep  As Is. ") == "Keep As Is."


def test_local_audio_datasets(tmp_path):
    from taskcli.data import load_raw
    from taskcli.recipe import resolve
    from taskcli.registry import get

    recipe = resolve(get("asr"), None).recipe
    # audiofolder layout: files + metadata.csv with file_name
    folder = tmp_path / "clips"
    folder.mkdir()
    clip = sorted(ASR_SAMPLE.glob("*.flac"))[0]
    (folder / "one.flac").write_bytes(clip.read_bytes())
    (folder / "metadata.csv").write_text("file_name,transcription\none.flac,the cat sat on the mat\n")
    ds = load_raw(str(folder), recipe, "audio")["train"]
    assert ds[0] == {"audio": str((folder / "one.flac").resolve()), "transcription": "the cat sat on the mat"}
    # CSV with a relative path column
    (tmp_path / "list.csv").write_text("path,sentence\nclips/one.flac,hello\n")
    ds = load_raw(str(tmp_path / "list.csv"), recipe)["train"]
    assert ds[0]["path"] == str((folder / "one.flac").resolve())
    # folder per label
    ds = load_raw(str(CLS_SAMPLE), recipe, "audio")["train"]
    assert set(ds["label"]) == {"yes", "no", "up", "down"} and all(Path(p).is_file() for p in ds["audio"])


def test_hub_style_audio_column_is_read_undecoded():
    """A datasets `Audio` column (hub datasets) is cast to decode=False and read with soundfile, bytes or path."""
    import datasets

    clip = str(sorted(ASR_SAMPLE.glob("*.flac"))[0])
    ds = datasets.Dataset.from_dict({"audio": [clip], "text": ["x"]}).cast_column("audio", datasets.Audio())
    row = audio.undecoded(ds, "audio")[0]["audio"]
    assert isinstance(row, dict) and row["path"] == clip
    want = audio.load(clip, 16000)
    np.testing.assert_array_equal(audio.load(row, 16000), want)
    with open(clip, "rb") as fh:
        np.testing.assert_array_equal(audio.load({"bytes": fh.read(), "path": None}, 16000), want)
