"""Audio tasks end to end on tiny models: finetune --smoke -> eval --smoke (thresholds) -> infer, and parity with
transformers.pipeline on the same decoded arrays."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from taskcli import audio, inference
from taskcli.cli import app

from conftest import DATA

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
REAL = DATA / "audio"
ASR_SAMPLE = ROOT / "taskcli" / "samples" / "automatic-speech-recognition"
CLS_SAMPLE = ROOT / "taskcli" / "samples" / "audio-classification"
TRANSCRIPTS = {json.loads(line)["file_name"]: json.loads(line)["transcription"]
               for line in (ASR_SAMPLE / "metadata.jsonl").read_text().splitlines()}
runner = CliRunner()


def cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def finetune_smoke(task, recipe, out):
    result = cli("finetune", task, "--recipe", recipe, "--smoke", "--output-dir", out, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def whisper_dir(trained):
    return trained("automatic-speech-recognition")  # the default recipe, whisper: one training shared with others


@pytest.fixture(scope="module")
def ctc_dir(trained):
    return trained("automatic-speech-recognition", "wav2vec2")  # one smoke training, shared with test_export's case


@pytest.fixture(scope="module")
def cls_dir(trained):
    return trained("audio-classification")  # the default recipe, wav2vec2: one training shared with others


def eval_smoke(task, recipe, model):
    result = cli("eval", task, "--recipe", recipe, "--smoke", "--model", model, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])["metrics"]


def arrays_for(paths, rate=16000):
    return [audio.load(p, rate) for p in paths]


# ----------------------------------------------------------------------------- Whisper


def test_whisper_smoke_learns_and_infers(whisper_dir):
    metrics = eval_smoke("asr", "whisper", whisper_dir)
    assert metrics["wer"] <= 0.1, metrics
    clip = ASR_SAMPLE / "clip_00.flac"
    result = cli("infer", "asr", clip, "--model", whisper_dir)  # the card's example
    assert result.exit_code == 0, result.output
    assert TRANSCRIPTS["clip_00.flac"] in " ".join(result.stdout.split())
    assert (whisper_dir / "vocab.json").is_file() or (whisper_dir / "tokenizer.json").is_file()


def test_whisper_pipeline_parity(whisper_dir):
    from transformers import pipeline

    paths = [str(p) for p in sorted(ASR_SAMPLE.glob("*.flac"))[:6]] + [str(REAL / "test_audio_44100.mp3"),
                                                                       str(REAL / "test_audio_48000.opus")]
    task, items, results = inference.infer("asr", paths, model=str(whisper_dir), options={"batch_size": 4})
    assert items == paths  # input order kept
    pipe = pipeline("automatic-speech-recognition", model=str(whisper_dir), device="cpu")
    expected = [pipe({"raw": a, "sampling_rate": 16000}, generate_kwargs={"max_new_tokens": 128, "num_beams": 1,
                                                                           "language": "en", "task": "transcribe"})
                for a in arrays_for(paths)]
    assert [r["text"] for r in results] == [e["text"].strip() for e in expected]
    assert results[0]["text"] == TRANSCRIPTS["clip_00.flac"]
    # --precision bf16 (the fast CPU path) still transcribes correctly every clip fp32 gets right (a clip held out
    # of the smoke training gets a guess, which may differ)
    _, _, bf16 = inference.infer("asr", paths[:6], model=str(whisper_dir), sets=["infer.precision=bf16"],
                              options={"batch_size": 4})
    right = [i for i in range(6) if results[i]["text"] == TRANSCRIPTS[Path(paths[i]).name]]
    assert len(right) >= 4 and all(bf16[i]["text"] == results[i]["text"] for i in right)


def test_whisper_long_recording_and_timestamps(whisper_dir, tmp_path):
    # 3 clips with pauses: longer than the tiny model's 4 s window -> Whisper long-form generation.
    parts = []
    for name in ("clip_00.flac", "clip_02.flac", "clip_05.flac"):
        a, _ = sf.read(str(ASR_SAMPLE / name), dtype="float32")
        parts += [a, np.zeros(24000, dtype=np.float32)]
    long = np.concatenate(parts)
    sf.write(tmp_path / "long.wav", np.stack([long, long], axis=1), 16000)  # stereo WAV
    short = ASR_SAMPLE / "clip_00.flac"
    result = cli("infer", "asr", tmp_path / "long.wav", short, "--model", whisper_dir, "--timestamps", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [r["input"] for r in rows] == [str(tmp_path / "long.wav"), str(short)]
    # the tiny model never saw timestamp tokens: only the shape of the answer is checked here
    assert isinstance(rows[0]["text"], str) and isinstance(rows[0].get("chunks", []), list)
    assert all(c["timestamp"][0] <= c["timestamp"][1] for r in rows for c in r.get("chunks", []))
    plain = cli("infer", "asr", tmp_path / "long.wav", short, "--model", whisper_dir, "--json")
    rows = [json.loads(line) for line in plain.stdout.strip().splitlines()]
    assert isinstance(rows[0]["text"], str) and rows[1]["text"] == TRANSCRIPTS["clip_00.flac"]


def test_whisper_language_and_task_options(whisper_dir):
    clip = str(ASR_SAMPLE / "clip_03.flac")
    _, _, results = inference.infer("asr", [clip], model=str(whisper_dir), options={"language": "en", "mode": "transcribe"})
    assert results[0]["text"] == TRANSCRIPTS["clip_03.flac"]
    _, _, results = inference.infer("asr", [clip], model=str(whisper_dir), options={"language": "fr", "mode": "translate"})
    assert isinstance(results[0]["text"], str)


def test_bad_files_one_line_and_skip_bad(whisper_dir, tmp_path):
    bad = tmp_path / "voice.m4a"
    bad.write_bytes(b"\x00\x00\x00\x20ftypM4A " + b"\x00" * 64)
    good = ASR_SAMPLE / "clip_00.flac"
    result = cli("infer", "asr", good, bad, "--model", whisper_dir)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "voice.m4a" in lines[0] and "Traceback" not in result.output
    result = cli("infer", "asr", good, bad, "--model", whisper_dir, "--skip-bad", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]  # one row per input, in order
    assert [r["input"] for r in rows] == [str(good), str(bad)] and "voice.m4a" in rows[1]["error"]
    assert "text" in rows[0] and "voice.m4a" in result.stderr


def test_infer_reads_every_real_format(whisper_dir):
    files = sorted(str(p) for p in REAL.iterdir())
    result = cli("infer", "asr", REAL, "--model", whisper_dir, "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [r["input"] for r in rows] == files and all(isinstance(r["text"], str) for r in rows)


# ----------------------------------------------------------------------------- Wav2Vec2 CTC


def test_ctc_smoke_learns_and_parity(ctc_dir):
    from transformers import pipeline

    vocab = json.loads((ctc_dir / "vocab.json").read_text())
    assert {"<pad>", "<unk>", "|"} <= set(vocab) and set(vocab) - {"<pad>", "<unk>", "|"} <= set("abcdefghijklmnopqrstuvwxyz'")
    metrics = eval_smoke("asr", "wav2vec2", ctc_dir)
    assert metrics["wer"] <= 0.25, metrics
    result = cli("infer", "asr", ASR_SAMPLE / "clip_01.flac", "--model", ctc_dir, "--json")
    assert result.exit_code == 0, result.output
    paths = [str(p) for p in sorted(ASR_SAMPLE.glob("*.flac"))] + [str(REAL / "test_audio_44100.wav")]
    _, _, results = inference.infer("asr", paths, model=str(ctc_dir), options={"batch_size": 5})
    pipe = pipeline("automatic-speech-recognition", model=str(ctc_dir), device="cpu")
    expected = [pipe({"raw": a, "sampling_rate": 16000})["text"].strip() for a in arrays_for(paths)]
    assert [r["text"] for r in results] == expected


def test_ctc_long_recording_and_word_times(ctc_dir, tmp_path):
    a, _ = sf.read(str(ASR_SAMPLE / "clip_00.flac"), dtype="float32")
    long = np.concatenate([a, np.zeros(16000, dtype=np.float32)] * 3)
    path = tmp_path / "long.flac"
    sf.write(path, long, 16000)
    _, _, res = inference.infer("asr", [str(path)], model=str(ctc_dir), recipe="wav2vec2",
                             sets=["params.chunk_length_s=2.0", "params.stride_length_s=0.4"],
                             options={"timestamps": True})
    chunks = res[0]["chunks"]
    assert chunks and all(c["timestamp"][0] <= c["timestamp"][1] for c in chunks)
    assert all(a["timestamp"][1] <= b["timestamp"][0] for a, b in zip(chunks, chunks[1:]))
    assert chunks[-1]["timestamp"][1] <= len(long) / 16000 + 0.05
    # the tiny model only saw isolated clips, so only the first (fully in-window) sentence is checked
    assert res[0]["text"].startswith("the cat sat")
    assert [c["text"] for c in chunks[:3]] == ["the", "cat", "sat"] and chunks[1]["timestamp"][0] > 0.05


# ----------------------------------------------------------------------------- audio-classification


def test_audio_classification_smoke_and_parity(cls_dir):
    from transformers import pipeline

    metrics = eval_smoke("audio-classification", "wav2vec2", cls_dir)
    assert metrics["accuracy"] >= 0.9, metrics
    assert set(metrics["per_class"]) == {"down", "no", "up", "yes"}
    paths = [str(p) for p in sorted(CLS_SAMPLE.rglob("*.flac"))[::3]] + [str(REAL / "test_audio_48000.opus")]
    _, _, results = inference.infer("audio-classification", paths, model=str(cls_dir), options={"top_k": 3, "batch_size": 4})
    pipe = pipeline("audio-classification", model=str(cls_dir), device="cpu")
    for arr, res in zip(arrays_for(paths), results):
        exp = pipe({"raw": arr, "sampling_rate": 16000}, top_k=3)
        assert [r["label"] for r in res["labels"]] == [e["label"] for e in exp]
        np.testing.assert_allclose([r["score"] for r in res["labels"]], [e["score"] for e in exp], atol=1e-4)
    right = sum(res["labels"][0]["label"] == Path(p).parent.name for p, res in zip(paths[:-1], results))
    assert right >= 0.9 * (len(paths) - 1)
    result = cli("infer", "audio-classification", CLS_SAMPLE / "yes", "--model", cls_dir, "--top-k", "2")
    assert result.exit_code == 0 and "yes" in result.stdout


def test_audio_classification_hubert_recipe_smoke(tmp_path):
    result = finetune_smoke("audio-classification", "hubert", tmp_path / "model")
    assert result["metrics"]["accuracy"] >= 0.9, result["metrics"]
    assert json.loads((tmp_path / "model" / "config.json").read_text())["model_type"] == "hubert"
