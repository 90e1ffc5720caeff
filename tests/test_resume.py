"""--resume ends where the uninterrupted run ends, also mid-epoch and with random training augmentations, and the
final model is the checkpoint the metrics scored (models that save weights under other names included: DETR)."""

import json
import shutil

import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# 12 smoke images, batch 6: 2 steps an epoch, 2 epochs, a checkpoint every step; augmentation on (smoke turns it off)
STEPS = ["--set", "train.epochs=2", "--set", "train.max_steps=-1", "--set", "train.batch_size=6",
         "--set", "train.eval_strategy=steps", "--set", "train.eval_steps=1", "--set", "train.save_total_limit=10",
         "--set", "train.warmup_ratio=0", "--set", "eval.metric_for_best_model=loss", "--set", "params.augment=true"]


@pytest.mark.parametrize("task", ["object-detection", "image-segmentation", "image-classification"])
def test_resume_mid_epoch_with_augmentation_matches_the_whole_run(cli, tmp_path, task):
    whole = tmp_path / "whole"
    first = cli("finetune", task, "--smoke", *STEPS, "-o", whole, "--json")
    assert first.exit_code == 0, first.stderr
    cut = tmp_path / "cut"  # a run killed after step 1, mid-epoch: only checkpoint-1 survives
    shutil.copytree(whole / "checkpoint-1", cut / "checkpoint-1")
    again = cli("finetune", task, "--smoke", *STEPS, "-o", cut, "--resume", "--json")
    assert again.exit_code == 0, again.stderr
    a, b = json.loads(first.stdout)["metrics"], json.loads(again.stdout)["metrics"]
    scalars = [k for k, v in a.items() if isinstance(v, float)]
    assert scalars
    for key in scalars:
        assert b[key] == pytest.approx(a[key], abs=1e-6), key
    # the saved model is the one the final metrics scored
    scored = json.loads(cli("eval", task, "--model", whole, "--smoke", "--json").stdout)["metrics"]
    for key in scalars:
        assert scored[key] == pytest.approx(a[key], abs=1e-5), key


def _resumed_equals_whole(cli, tmp_path, task, args, cut_at):
    whole = tmp_path / "whole"
    first = cli("finetune", task, *args, "-o", whole, "--json")
    assert first.exit_code == 0, first.stderr
    cut = tmp_path / "cut"  # a run killed after step `cut_at`: only that checkpoint survives
    shutil.copytree(whole / f"checkpoint-{cut_at}", cut / f"checkpoint-{cut_at}")
    again = cli("finetune", task, *args, "-o", cut, "--resume", "--json")
    assert again.exit_code == 0, again.stderr
    a, b = json.loads(first.stdout), json.loads(again.stdout)  # (train_loss averages this session's steps only)
    scalars = [k for k, v in a["metrics"].items() if isinstance(v, float)]
    for key in scalars:
        assert b["metrics"][key] == pytest.approx(a["metrics"][key], abs=1e-6), key
    return whole, first


def test_resume_of_an_audio_task_matches_the_whole_run(cli, tmp_path):
    args = ["--smoke", "--set", "train.epochs=2", "--set", "train.max_steps=-1", "--set", "train.batch_size=4",
            "--set", "train.eval_strategy=steps", "--set", "train.eval_steps=1", "--set", "train.save_total_limit=10",
            "--set", "eval.metric_for_best_model=loss"]
    _resumed_equals_whole(cli, tmp_path, "audio-classification", args, cut_at=4)


STREAM = ["--smoke", "--data", "taskcli/samples/text-classification.jsonl", "--set", "data.streaming=true",
          "--set", "data.max_eval_samples=8", "--set", "data.shuffle_buffer=16", "--set", "train.max_steps=8",
          "--set", "train.batch_size=8", "--set", "train.eval_strategy=steps", "--set", "train.eval_steps=2",
          "--set", "train.save_total_limit=10", "--set", "eval.metric_for_best_model=loss"]


def test_streaming_trains_from_the_stream_and_resumes_exactly(cli, tmp_path, monkeypatch):
    """40 streamed rows, batch 8: step 6 is in the second pass over the stream (reshuffled); resuming there ends
    on the whole run's loss and metrics. The eval rows are the first 8 of the file, fixed, kept out of training."""
    from conftest import REPO

    monkeypatch.chdir(REPO)
    whole, first = _resumed_equals_whole(cli, tmp_path, "text-classification", STREAM, cut_at=6)
    assert "train streamed" in " ".join(first.stderr.split())
    saved = (whole / "recipe.yaml").read_text()
    assert "streaming: true" in saved and "the first 8 rows of the 'train' stream, kept out of training" in saved
    assert json.loads(first.stdout)["scored"]["step"] in (2, 4, 6, 8)


@pytest.mark.parametrize("sets, fragment", [
    (["train.max_steps=-1"], "data.streaming needs train.max_steps"),
    (["train.class_weights=auto"], "train.class_weights=auto counts the training labels"),
])
def test_streaming_misuse_is_one_line(cli, tmp_path, monkeypatch, sets, fragment):
    from conftest import REPO, assert_clean_error

    monkeypatch.chdir(REPO)
    args = [a for a in STREAM] + [x for s in sets for x in ("--set", s)]
    assert_clean_error(cli("finetune", "text-classification", *args, "-o", tmp_path / "o"), fragment)


def test_streaming_is_refused_for_image_tasks(cli, tmp_path):
    from conftest import assert_clean_error

    assert_clean_error(cli("finetune", "image-classification", "--smoke", "--set", "data.streaming=true", "--set",
                           "train.max_steps=2", "-o", tmp_path / "o"), "data.streaming is not supported for "
                                                                        "image-classification")
