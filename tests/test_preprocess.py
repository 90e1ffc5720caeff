"""Preprocessing at scale: shown as it goes (rows, rows/s), done by data.num_proc workers when asked, and read
back from datasets' cache by a second run of the same recipe on the same data. (The time it saves is measured in
`make bench`: bench/bench_preprocess.py.)"""

import json
import os
import random
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    rng = random.Random(0)
    words = "a fine gripping dull warm flat film story cast ending pace score".split()
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    rows = [f"{' '.join(rng.choice(words) for _ in range(rng.randint(4, 30)))},{rng.choice(['pos', 'neg'])}"
            for _ in range(3000)]
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    return path


def _finetune(model, data, out, cache, *extra):
    cmd = [sys.executable, "-m", "taskcli", "finetune", "text-classification", "--model", str(model), "--data",
           str(data), "-o", str(out), "--json", "--set", "train.max_steps=3", "--set", "train.eval_strategy=no",
           "--set", "data.max_eval_samples=32", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600,
                          env=dict(os.environ, HF_DATASETS_CACHE=str(cache)))
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.fixture(scope="module")
def first_run(trained, reviews, tmp_path_factory):
    """One plain run on the reviews with a datasets cache of its own: (its --json result, its stderr, the cache)."""
    tmp = tmp_path_factory.mktemp("first")
    return (*_finetune(trained("text-classification"), reviews, tmp / "one", tmp / "cache"), tmp / "cache")


def test_preprocessing_shows_progress_and_a_second_run_reads_the_cache(trained, reviews, tmp_path, first_run):
    model = trained("text-classification")
    first, err1, cache = first_run
    assert "features train" in err1 and "2,700/2,700 rows" in err1 and "rows/s" in err1, err1[-2000:]
    assert "read back from the datasets cache" not in err1
    second, err2 = _finetune(model, reviews, tmp_path / "two", cache)
    assert "features train 2,700 rows read back from the datasets cache" in " ".join(err2.split()), err2
    assert "rows/s" not in err2
    assert second["metrics"] == first["metrics"] and second["train_loss"] == first["train_loss"]
    # a changed setting that shapes the features is not served from the cache
    third, err3 = _finetune(model, reviews, tmp_path / "three", cache, "--set", "data.max_length=8")
    assert "rows/s" in err3 and "read back" not in err3


def test_worker_processes_make_the_same_features(trained, reviews, tmp_path, first_run):
    model = trained("text-classification")
    one, _, _ = first_run  # one process made its features
    two, err = _finetune(model, reviews, tmp_path / "two", tmp_path / "cache2", "--set", "data.num_proc=2")
    assert "2,700/2,700 rows" in err, err[-2000:]
    assert two["metrics"] == one["metrics"] and two["train_loss"] == one["train_loss"]
