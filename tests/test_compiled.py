"""`infer.compile` (taskcli/compiled.py): a compiled forward gives the eager forward's results, and is refused in one
line where it cannot run. Its speed is bench/bench_compiled_forward.py's, not a test's."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import same_rows
from tiers import slow_tier

ROOT = Path(__file__).resolve().parent.parent
COMPILE = ["--set", "infer.compile=true"]


def _infer(*args: str, kernels: Path | None = None) -> list[dict]:
    """`taskcli infer ... --json` in a process of its own (torch.compile's settings are process-wide); with `kernels`,
    compiled: inductor's cache goes there, and the run must have said it compiles and have written kernels there."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if kernels:
        args, env["TORCHINDUCTOR_CACHE_DIR"] = (*args, *COMPILE), str(kernels)
    done = subprocess.run([sys.executable, "-m", "taskcli", "infer", *args, "--json"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    if kernels:
        assert "compiling the forward" in done.stderr
        assert list(kernels.rglob("*.py")), "inductor wrote no kernels: the forward was not compiled"
    else:
        assert "compiling" not in done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _assert_same(eager: list[dict], compiled: list[dict]) -> None:
    assert len(eager) == len(compiled) > 0
    for e, c in zip(eager, compiled):
        assert same_rows(e, c, tol=1e-4), (e, c)  # fused kernels round differently


def test_a_compiled_forward_gives_the_eager_results(trained, tmp_path):
    """Sentences of different lengths in one run: batches of several shapes go through the one compiled graph."""
    model = str(trained("token-classification"))
    texts = ["Alice works for Acme in Paris .", "Bob lives in Berlin .",
             "The team from Zorg said the deal would grow , the mayor of Dublin , Wen Schmidt , spoke to reporters ."]
    args = ["ner", *texts, "--model", model, "--batch-size", "2"]
    eager = _infer(*args)
    assert any(row["entities"] for row in eager)
    _assert_same(eager, _infer(*args, kernels=tmp_path))


def _images(task: str, n: int = 3) -> list[str]:
    return sorted(str(p) for p in (ROOT / "taskcli" / "samples" / task).rglob("*") if p.suffix in (".jpg", ".png")
                  and "masks" not in p.parts and "depth" not in p.parts)[:n]


def test_a_compiled_segmenter_gives_the_eager_results(tmp_path):
    """Images compile static first (compile_model): SegFormer's graph with every dimension dynamic failed in
    inductor (ValueRangeError). Batches of 2 and 1: a second shape, recompiled with a dynamic batch."""
    args = ["image-segmentation", "--smoke", *_images("image-segmentation"), "--batch-size", "2"]
    _assert_same(_infer(*args), _infer(*args, kernels=tmp_path))


@slow_tier
@pytest.mark.parametrize("task", ["image-classification", "depth-estimation", "object-detection"])
def test_a_compiled_vision_model_gives_the_eager_results(task, tmp_path):
    args = [task, "--smoke", *_images(task), "--batch-size", "2"]
    _assert_same(_infer(*args), _infer(*args, kernels=tmp_path))


def _refused(cli, *args) -> str:
    result = cli("infer", *args, *COMPILE)
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_a_generating_task_is_refused_before_loading(cli):
    assert "text-generation generates token by token" in _refused(cli, "text-generation", "--smoke", "Once upon")


def test_an_exported_model_is_refused(cli, tmp_path):
    (tmp_path / "taskcli-export.json").write_text("{}")  # what marks a `taskcli export` folder
    assert "holds an exported (ONNX) model" in _refused(cli, "ner", "--model", tmp_path, "Alice lives in Paris .")


@pytest.mark.parametrize("cxx", ["/nonexistent/g++", "false"])  # not there; there but failing (`false --version`)
def test_a_missing_or_broken_cxx_compiler_is_refused(cli, monkeypatch, cxx):
    monkeypatch.setenv("CXX", cxx)
    line = _refused(cli, "ner", "--smoke", "Alice lives in Paris .")
    assert "needs a C++ compiler" in line and cxx in line


def test_a_generating_speech_model_is_refused(cli):
    """Speech recognition is one task for CTC models (one forward) and Whisper (generate): the model decides."""
    clip = ROOT / "taskcli" / "samples" / "automatic-speech-recognition" / "clip_00.flac"
    line = _refused(cli, "asr", "--smoke", "--recipe", "whisper", clip)
    assert "WhisperForConditionalGeneration generates token by token" in line
