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
