"""`taskcli check` (issue 18 §2): the preflight as a report, with gates for CI and plots."""

import json
from pathlib import Path

import pytest

from conftest import assert_clean_error
from taskcli import registry


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("task", registry.names())
def test_check_runs_on_every_tasks_smoke_data(cli, task, one_torch_thread):
    result = cli("check", task, "--smoke", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["task"] == task and report["problems"] == []
    assert report["splits"]["train"]["rows"] > 0 and report["splits"]["eval"]["rows"] > 0
    plan = report["plan"]
    assert plan["steps_per_epoch"] >= 1 and plan["total_steps"] >= plan["steps_per_epoch"]
    probe = plan["probe"]
    assert probe["seconds_per_batch"] > 0 and probe["peak_memory_mb"] > 0
    assert plan["estimated_epoch_seconds"] > 0
    assert report["figures"]["rows_train"] == report["splits"]["train"]["rows"]
    modality = registry.get(task).modality
    if modality == "text":
        assert report["lengths"]["max"] >= report["lengths"]["min"] > 0
        assert sum(report["lengths"]["histogram"]["counts"]) >= report["splits"]["train"]["rows"]
    if modality == "image":
        assert report["splits"]["train"]["image_sizes"]["width"]["min"] > 0
    if modality == "audio":
        assert report["splits"]["train"]["audio_seconds"]["total"] > 0


@pytest.fixture
def overlapping(tmp_path) -> Path:
    folder = tmp_path / "d"
    folder.mkdir()
    write(folder / "train.csv", "text,label\na good film,pos\na bad film,neg\nfine work,pos\nweak plot,neg\n"
                                "a good film,pos\nlovely,pos\n")
    write(folder / "validation.csv", "text,label\na good film,pos\nweak plot,neg\nnew text here,pos\n")
    return folder


def test_the_json_report_counts_labels_duplicates_and_cut_inputs(cli, overlapping, one_torch_thread):
    result = cli("check", "text-cls", "--smoke", "--data", overlapping, "--json", "--no-probe",
                 "--set", "data.max_length=4")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    train = report["splits"]["train"]
    assert train == {"rows": 6, "duplicates": 1, "labels": {"pos": 4, "neg": 2}, "imbalance": 2.0}
    assert report["splits"]["eval"]["rows"] == 3
    assert report["duplicates_across_splits"] == 2
    lengths = report["lengths"]
    assert lengths["max_length"] == 4 and sum(lengths["histogram"]["counts"]) == 9  # train + eval inputs
    assert 0 < lengths["cut"] < 9 and lengths["max"] > 4
    assert report["plan"]["steps_per_epoch"] == 1 and "probe" not in report["plan"]
    assert report["figures"]["duplicates_across_splits"] == 2
    assert "note: 2 of 3 eval rows have the same input as a training row" in result.stderr


def test_a_failed_gate_exits_3(cli, overlapping):
    failed = cli("check", "text-cls", "--smoke", "--data", overlapping, "--no-probe",
                 "--gate", "duplicates_across_splits==0")
    assert failed.exit_code == 3, failed.stderr
    assert "gate failed: duplicates_across_splits = 2, needs == 0" in failed.stderr
    assert "eval rows whose input is in train: 2" in failed.stdout
    held = cli("check", "text-cls", "--smoke", "--data", overlapping, "--no-probe", "--gate", "rows_train>=6")
    assert held.exit_code == 0, held.stderr
    unknown = cli("check", "text-cls", "--smoke", "--data", overlapping, "--no-probe", "--gate", "nonsense>=1")
    assert_clean_error(unknown, "gate on 'nonsense'", "duplicates_across_splits")


def test_problems_a_run_would_stop_on_are_all_listed(cli, tmp_path):
    data = write(tmp_path / "train.csv", "text,label\ngood film,pos\nbad film,\nok film,neg\n  ,neg\nfine,\n")
    result = cli("check", "text-cls", "--smoke", "--data", data, "--no-probe")
    assert result.exit_code == 1
    problems = [line for line in result.stderr.splitlines() if line.startswith("problem: ")]
    assert problems == ["problem: train.csv row 2 (line 3), column 'label': the label is blank",
                        "problem: train.csv row 5 (line 6), column 'label': the label is blank",
                        "problem: train.csv row 4 (line 5), column 'text': the text is blank"]


def test_report_folder_gets_the_plots(cli, overlapping, tmp_path):
    out = tmp_path / "plots"
    result = cli("check", "text-cls", "--smoke", "--data", overlapping, "--no-probe", "--report", out)
    assert result.exit_code == 0, result.stderr
    for name in ("label_counts.png", "token_lengths.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_model_option_checks_with_a_trained_model_folder(cli, trained, overlapping, tmp_path, one_torch_thread):
    """--model: the plan and probe run on the checkpoint a finetune --model would start from, without --smoke (which
    before needed the recipe's hub checkpoint)."""
    model = trained("text-classification")
    result = cli("check", "text-cls", "--model", model, "--data", overlapping, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["model"] == str(model.resolve()) and report["splits"]["train"]["rows"] == 6
    assert report["plan"]["probe"]["seconds_per_batch"] > 0
    people = cli("check", "text-cls", "-m", model, "--data", overlapping, "--no-probe")
    assert people.exit_code == 0, people.stderr
    assert f"model {model.resolve()}" in people.stdout.splitlines()[0]
    missing = cli("check", "text-cls", "--model", tmp_path / "no-such-run", "--data", overlapping)
    assert_clean_error(missing, "no such directory", "no-such-run")


@pytest.mark.parametrize("task", ["fill-mask", "text-generation"])
def test_probe_skips_leading_blank_rows(cli, tmp_path, task, one_torch_thread):
    """A batch of 1 on data that opens with a blank row (wikitext's first row is ""): the probe times the first row
    with text; it used to hand the tokenizer an empty list (IndexError) or pack no block ('holds no text')."""
    lines = ["", "   "] + [f"Line {i} of a small corpus about rivers and the towns along them ." for i in range(12)]
    data = write(tmp_path / "corpus.jsonl", "\n".join(json.dumps({"text": t}) for t in lines) + "\n")
    result = cli("check", task, "--smoke", "--data", data, "--set", "train.batch_size=1", "--json")
    assert result.exit_code == 0, result.stderr
    probe = json.loads(result.stdout)["plan"]["probe"]
    assert probe["batch_rows"] == 1 and probe["seconds_per_batch"] > 0, probe
