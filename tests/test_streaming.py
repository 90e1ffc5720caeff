"""data.streaming for every task that reads text (text-classification's streamed run is in test_resume.py): each
trains from the stream of its bundled sample, packing included (text-generation, fill-mask), and a resume from a
checkpoint in the middle ends on the whole run's metrics. The settings are the classification test's: 40 streamed
rows (packed blocks for the language models), batch 8, a resume at step 6 of 8."""

import pytest
from test_resume import _resumed_equals_whole

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SAMPLES = {"token-classification": "token-classification.jsonl", "question-answering": "question-answering.jsonl",
           "text-generation": "text-generation.txt", "fill-mask": "fill-mask.txt",
           "summarization": "summarization.jsonl", "translation": "translation.jsonl"}


def _streamed(data):
    return ["--smoke", "--data", data, "--set", "data.streaming=true",
            "--set", "data.max_eval_samples=8", "--set", "data.shuffle_buffer=16", "--set", "train.max_steps=8",
            "--set", "train.batch_size=8", "--set", "train.eval_strategy=steps", "--set", "train.eval_steps=2",
            "--set", "train.save_total_limit=10", "--set", "eval.metric_for_best_model=loss"]


@pytest.mark.parametrize("task", list(SAMPLES))
def test_a_text_task_trains_from_the_stream_and_resumes_exactly(cli, tmp_path, monkeypatch, task):
    from conftest import REPO

    monkeypatch.chdir(REPO)
    whole, first = _resumed_equals_whole(cli, tmp_path, task, _streamed(f"taskcli/samples/{SAMPLES[task]}"), cut_at=6)
    assert "train streamed" in " ".join(first.stderr.split())
    saved = (whole / "recipe.yaml").read_text()
    assert "streaming: true" in saved and "the first 8 rows of the 'train' stream, kept out of training" in saved


def test_the_issue_command_packs_a_streamed_corpus(cli, tmp_path):
    """The command of issue 18 §4 (it stopped in lm_common.pack: a streamed map's result has no column names)."""
    result = cli("finetune", "text-generation", "--smoke", "--set", "data.streaming=true", "--set",
                 "train.max_steps=20", "-o", tmp_path / "o", "--json")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "o" / "model.safetensors").is_file()


def test_a_stream_without_text_is_one_line(cli, tmp_path):
    """Packing rows that hold no text would wait for a block forever on a stream that repeats: refused before the
    first step, with one error line after the run header."""
    blank = tmp_path / "blank.txt"
    blank.write_text("\n".join(["", "   ", "<doc id=1 url=x title=y>", "</doc>"] * 10) + "\n")
    result = cli("finetune", "text-generation", *_streamed(blank), "-o", tmp_path / "o")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [result.stderr.strip().splitlines()[-1]], result.stderr
    assert "the first 1000 rows of the training stream hold no text" in errors[0]
