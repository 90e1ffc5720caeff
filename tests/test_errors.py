"""Bad input: one clear `error:` line on stderr, non-zero exit, no traceback (unless TASKCLI_DEBUG=1)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, assert_clean_error


def test_missing_data_file(cli, tmp_path):
    result = cli("finetune", "ner", "--smoke", "--data", "nope/train.jsonl", "--output-dir", tmp_path / "o")
    assert_clean_error(result, "not found", "nope/train.jsonl")


def test_unsupported_file_type(cli, tmp_path):
    bad = tmp_path / "train.xlsx"
    bad.write_text("x")
    assert_clean_error(cli("finetune", "ner", "--smoke", "--data", bad, "--output-dir", tmp_path / "o"),
                       "unsupported data file type", ".xlsx")


def test_missing_column_names_the_fix(cli, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"toks": ["a"], "ner_tags": ["O"]}) + "\n")
    result = cli("finetune", "ner", "--smoke", "--data", data, "--output-dir", tmp_path / "o")
    assert_clean_error(result, "missing column 'tokens'", "--set data.columns.tokens=")


def test_empty_dataset(cli, tmp_path):
    data = tmp_path / "train.csv"
    data.write_text("text,label\n")
    assert_clean_error(cli("finetune", "text-classification", "--smoke", "--data", data, "--output-dir",
                           tmp_path / "o"), "empty")


def test_unknown_label_in_eval_data(cli, trained, tmp_path):
    data = tmp_path / "dev.jsonl"
    data.write_text(json.dumps({"text": "fine", "label": "neutral"}) + "\n")
    out = trained("text-classification")
    assert_clean_error(cli("eval", "text-cls", "--model", out, "--data", data), "labels don't match", "neutral")


def test_hub_model_offline_is_a_clear_error_not_a_hang(cli, tmp_path):
    result = cli("infer", "ner", "Alice went to Paris", "--model", "no-such-org/no-such-model")
    assert_clean_error(result, "no-such-org/no-such-model", "--smoke")


def test_hub_dataset_offline_is_a_clear_error(cli, tmp_path):
    result = cli("finetune", "ner", "--smoke", "--data", "no-such-org/no-such-dataset", "--output-dir", tmp_path / "o")
    assert_clean_error(result, "no-such-org/no-such-dataset", "--smoke")


def test_existing_output_dir_is_never_clobbered(cli, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    assert_clean_error(cli("finetune", "ner", "--smoke", "--output-dir", out), "not empty", "--overwrite")
    assert (out / "notes.txt").read_text() == "precious"
    assert_clean_error(cli("finetune", "ner", "--smoke", "--output-dir", out, "--resume"), "nothing to resume")


def test_fp16_without_cuda(cli, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: fp16 is valid here")
    result = cli("finetune", "ner", "--smoke", "--output-dir", tmp_path / "o", "--set", "train.precision=fp16")
    assert_clean_error(result, "fp16 needs a CUDA GPU", "bf16")
    assert_clean_error(cli("infer", "ner", "Alice", "--smoke", "--precision", "fp16"), "fp16 inference needs a CUDA",
                       "bf16")


def test_missing_input_file_and_no_inputs(cli, trained):
    out = trained("token-classification")
    assert_clean_error(cli("infer", "ner", "texts.txt", "--model", out), "input file not found")
    assert_clean_error(cli("infer", "ner", "--model", out), "no inputs")
    assert_clean_error(cli("infer", "ner", "x", "--model", "./not/here"), "no such directory")


def test_traceback_only_with_debug(tmp_path):
    env = dict(os.environ, TASKCLI_DEBUG="1")
    cmd = [sys.executable, "-m", "taskcli", "finetune", "ner", "--recipe", "bertt", "--dry-run"]
    debug = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    assert debug.returncode != 0 and "Traceback" in debug.stderr
    env.pop("TASKCLI_DEBUG")
    plain = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.startswith("error: unknown recipe 'bertt'") and len(plain.stderr.strip().splitlines()) == 1


def test_unreachable_hub_fails_fast_without_offline_flags():
    """No HF_HUB_OFFLINE set, Hub unreachable: one clear line within seconds, not a minute of retries."""
    import time

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # discard port: connection refused at once
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "taskcli", "infer", "ner", "Alice went to Paris"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert done.returncode == 1 and time.perf_counter() - start < 30
    assert done.stderr.startswith("error: cannot reach the Hugging Face Hub to load model "
                                  "'stevhliu/my_awesome_wnut_model'") and "--smoke" in done.stderr
    assert "Traceback" not in done.stderr and "Retrying" not in done.stderr


def test_unreachable_hub_fails_fast_with_trainer_args_checked_first(tmp_path):
    """train.trainer_args are checked (importing transformers) before the data loads: offline mode must still be
    decided first, or the load retries the Hub for a minute."""
    import time

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "taskcli", "finetune", "ner", "--set", "train.trainer_args.save_steps=10",
                           "-o", str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=120)
    assert done.returncode == 1 and time.perf_counter() - start < 30
    assert done.stderr.startswith("error: cannot reach the Hugging Face Hub to load dataset 'leondz/wnut_17'")
    assert "Retrying" not in done.stderr


@pytest.mark.parametrize("offline, user_says, enabled", [("1", None, False), ("1", "YES", True), ("0", None, True)])
def test_offline_runs_skip_the_hubs_kernels(monkeypatch, offline, user_says, enabled):
    """Offline, transformers must not fetch the Hub's `kernels` when a GPU model goes to eval mode (it raised after
    training on an H200); a user's own USE_HUB_KERNELS wins, and online runs keep transformers' default."""
    from transformers.integrations.hub_kernels import _kernels_enabled  # reads the environment at each call

    from taskcli.run import quiet_libraries

    monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    monkeypatch.delenv("USE_HUB_KERNELS", raising=False)
    if user_says:
        monkeypatch.setenv("USE_HUB_KERNELS", user_says)
    quiet_libraries()
    assert _kernels_enabled() is enabled
