"""Repos that will not load: each cause gets its own one-line diagnosis (taskcli/hub.py)."""

from __future__ import annotations

import shutil

from conftest import assert_clean_error
from taskcli.hub import load_error


def test_truncated_weights_name_the_file(cli, trained, tmp_path, one_torch_thread):
    model = tmp_path / "model"
    shutil.copytree(trained("token-classification"), model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    result = cli("infer", "ner", "Alice works in Paris .", "--model", model)
    assert_clean_error(result, str(weights), "damaged or truncated")
    assert "network" not in result.stderr


def test_script_error_names_repo_and_fix():
    err = load_error("dataset", "PolyAI/minds14",
                     RuntimeError("Dataset scripts are no longer supported, but found minds14.py"))
    assert "PolyAI/minds14" in str(err) and "minds14.py" in str(err) and "refs/convert/parquet" in str(err)


def test_missing_package_names_the_install():
    cause = ImportError("DetrConvEncoder requires the timm library but it was not found in your environment.")
    err = load_error("model", "facebook/detr-resnet-50", cause)
    assert "'timm'" in str(err) and "pip install timm" in str(err) and "no_timm" in str(err)


def test_network_only_when_the_network_is_the_cause(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    class ConnectError(Exception):
        pass

    try:
        raise OSError("We couldn't connect to the Hub") from ConnectError("[Errno -2] Name or service not known")
    except OSError as e:
        assert "no network" in str(load_error("model", "org/name", e))
    err = load_error("model", "org/name", OSError("org/name is not a local folder and is not a valid model identifier"))
    assert "not found" in str(err) and "network" not in str(err)

    class DatasetNotFoundError(Exception):  # datasets' own class name is what counts
        pass

    assert "not found" in str(load_error("dataset", "org/data", DatasetNotFoundError("Dataset 'org/data' doesn't exist")))


def test_missing_local_model_folder_is_no_such_directory(cli, tmp_path, monkeypatch):
    """`runs/nope` is a path when runs/ exists here: not a hub id, not a network problem."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    result = cli("eval", "ner", "--model", "runs/nope", "--smoke")
    assert_clean_error(result, "no such directory: runs/nope")
    assert "network" not in result.stderr


def test_precision_fp32_is_accepted(cli):
    result = cli("finetune", "ner", "--smoke", "--set", "train.precision=fp32", "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    import json

    assert json.loads(result.stdout)["resolved"]["train"]["precision"] == "no"


def test_model_of_another_task_is_named(cli, trained, one_torch_thread):
    """A text-classification model given to `infer ner`: one line naming both tasks, no made-up entities."""
    model = trained("text-classification")
    result = cli("infer", "ner", "hello", "--model", model)
    assert_clean_error(result, "is a text-classification model", "not a token-classification one")
    assert result.stdout.strip() == ""
