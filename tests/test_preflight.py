"""The preflight (taskcli/preflight.py): data that would give a wrong model or a wasted run is named before the model
loads, or noted where a user could mean either (issue 18 §1; issue 17's regression label bullet)."""

import json
import shutil
from pathlib import Path

import pytest

from conftest import REPO, assert_clean_error

STEP = ["--set", "train.max_steps=1", "--set", "train.eval_strategy=no"]
IMAGES = REPO / "taskcli" / "samples" / "image-classification"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def csv_of(path: Path, labels: list[str]) -> Path:
    rows = "".join(f"text number {i} here,{label}\n" for i, label in enumerate(labels))
    return write(path, "text,label\n" + rows)


def saved_labels(out: Path) -> list[str]:
    config = json.loads((out / "config.json").read_text())
    return [config["id2label"][str(i)] for i in range(len(config["id2label"]))]


def test_whole_number_float_labels_train_classification_with_a_note(cli, tmp_path, one_torch_thread):
    data = csv_of(tmp_path / "f.csv", ["0.0", "1.0", "2.0"] * 4)
    result = cli("finetune", "text-cls", "--smoke", "--data", data, "-o", tmp_path / "out", *STEP)
    assert result.exit_code == 0, result.stderr
    assert saved_labels(tmp_path / "out") == ["0", "1", "2"]
    assert "note: the labels are whole numbers written as floats (0, 1, 2): read as 3 classes" in result.stderr
    assert "params.regression=true" in result.stderr
    assert "regression: 1 output" not in result.stderr


def test_regression_when_asked_is_said_in_the_header(cli, tmp_path, one_torch_thread):
    data = csv_of(tmp_path / "f.csv", ["0.0", "1.0", "2.0"] * 4)
    result = cli("finetune", "text-cls", "--smoke", "--data", data, "-o", tmp_path / "out", *STEP,
                 "--set", "params.regression=true")
    assert result.exit_code == 0, result.stderr
    assert "text-classification · regression: 1 output, MSE" in result.stderr
    assert saved_labels(tmp_path / "out") == ["score"]


def test_labels_with_trailing_spaces_merge_with_a_note(cli, tmp_path, one_torch_thread):
    data = csv_of(tmp_path / "s.csv", ["positive", "negative", "negative ", "positive", "negative", "negative "])
    result = cli("finetune", "text-cls", "--smoke", "--data", data, "-o", tmp_path / "out", *STEP)
    assert result.exit_code == 0, result.stderr
    assert saved_labels(tmp_path / "out") == ["negative", "positive"]
    assert "note: labels with surrounding spaces were merged into the class without them: 'negative ' -> " \
           "'negative'" in result.stderr


def test_labels_differing_in_case_are_named(cli, tmp_path, one_torch_thread):
    data = csv_of(tmp_path / "c.csv", ["Positive", "positive", "negative"] * 3)
    result = cli("finetune", "text-cls", "--smoke", "--data", data, "-o", tmp_path / "out", *STEP)
    assert result.exit_code == 0, result.stderr
    assert "labels differing only in case are separate classes: 'Positive' / 'positive'" in result.stderr


def test_a_blank_label_is_named_by_row_and_column(cli, tmp_path):
    data = write(tmp_path / "train.csv", "text,label\ngood film,pos\nbad film,\nok film,neg\n")
    result = cli("finetune", "text-cls", "--smoke", "--data", data, "-o", tmp_path / "out", *STEP)
    assert_clean_error(result, "train.csv row 2 (line 3), column 'label': the label is blank", "data.skip_bad")
    assert len(result.stderr.strip().splitlines()) == 1


def test_blank_labels_and_texts_are_dropped_and_counted_with_skip_bad(cli, tmp_path, one_torch_thread):
    data = write(tmp_path / "train.csv", "text,label\ngood film,pos\nbad film,\n  ,neg\nok film,neg\nfine,pos\n")
    result = cli("finetune", "text-cls", "--smoke", "--data", data, "-o", tmp_path / "out", *STEP,
                 "--set", "data.skip_bad=true")
    assert result.exit_code == 0, result.stderr
    assert "note: data.skip_bad: dropped 2 rows (1 blank label in train, 1 blank text in train)" in result.stderr
    recipe = (tmp_path / "out" / "recipe.yaml").read_text()
    assert "skip_bad: true" in recipe


def test_an_empty_label_column(cli, tmp_path):
    data = write(tmp_path / "train.csv", "text,label\ngood film,\nbad film,\nok film,\n")
    result = cli("finetune", "text-cls", "--smoke", "--data", data, "-o", tmp_path / "out", *STEP)
    assert_clean_error(result, "column 'label' of train.csv is empty in every row (3)")


def test_regression_labels_with_an_empty_cell_are_named(cli, tmp_path):
    """Issue 17: a NaN/empty regression label was a TypeError after the model was built."""
    data = write(tmp_path / "train.csv", "text,label\ngood film,0.5\nbad film,\nok film,2.7\nfine,1.2\n")
    result = cli("finetune", "text-cls", "--smoke", "--data", data, "-o", tmp_path / "out", *STEP)
    assert_clean_error(result, "train.csv row 2 (line 3), column 'label': the label is blank")


def test_a_corrupt_image_in_the_eval_split_is_named_before_training(cli, tmp_path):
    folder = tmp_path / "pics"
    for split, take in (("train", slice(0, 3)), ("validation", slice(3, 5))):
        for label in ("cat", "toy"):
            (folder / split / label).mkdir(parents=True)
            for src in sorted((IMAGES / label).iterdir())[take]:
                shutil.copy(src, folder / split / label / src.name)
    (folder / "validation" / "toy" / "broken.jpg").write_bytes(b"this is not a JPEG at all")
    result = cli("finetune", "image-cls", "--smoke", "--data", folder, "-o", tmp_path / "out", *STEP)
    assert_clean_error(result, "the validation split's row 3, column 'image'", "broken.jpg is not an image")
    assert len(result.stderr.strip().splitlines()) == 1  # no run header, no training step

    dropped = cli("finetune", "image-cls", "--smoke", "--data", folder, "-o", tmp_path / "out2", *STEP,
                  "--set", "data.skip_bad=true")
    assert dropped.exit_code == 0, dropped.stderr
    assert "dropped 1 rows (1 unreadable image in eval)" in dropped.stderr


@pytest.mark.parametrize("name, content, encoding, expected", [
    ("empty.csv", "", "utf-8", "data file {path} is empty"),
    ("header.csv", "text,label\n", "utf-8", "data file {path} holds only a header line, no rows"),
    ("latin.csv", "text,label\nfine,pos\ncafé crème,neg\n", "latin-1",
     "{path} is not utf-8 text: byte 0xe9 at line 3 (byte offset 23) does not decode"),
])
def test_files_that_will_not_read_each_say_why(cli, tmp_path, name, content, encoding, expected):
    path = write(tmp_path / name, content, encoding)
    result = cli("finetune", "text-cls", "--smoke", "--data", path, "-o", tmp_path / "out", *STEP)
    assert_clean_error(result, expected.format(path=path))
    assert len(result.stderr.strip().splitlines()) == 1
    if encoding != "utf-8":
        assert "data.encoding" in result.stderr


def test_data_encoding_reads_a_latin1_file(cli, tmp_path, one_torch_thread):
    path = write(tmp_path / "latin.csv", "text,label\nfine,pos\ncafé crème,neg\nbon,pos\nmal,neg\n", "latin-1")
    result = cli("finetune", "text-cls", "--smoke", "--data", path, "-o", tmp_path / "out", *STEP,
                 "--set", "data.encoding=latin-1")
    assert result.exit_code == 0, result.stderr


def test_train_eval_overlap_is_counted(cli, tmp_path, one_torch_thread):
    folder = tmp_path / "d"
    folder.mkdir()
    write(folder / "train.csv", "text,label\na good film,pos\na bad film,neg\nfine work,pos\nweak plot,neg\n")
    write(folder / "validation.csv", "text,label\na good film,pos\nweak plot,neg\nnew text,pos\n")
    result = cli("finetune", "text-cls", "--smoke", "--data", folder, "-o", tmp_path / "out", *STEP)
    assert result.exit_code == 0, result.stderr
    assert "note: 2 of 3 eval rows have the same input as a training row" in result.stderr


def test_a_data_swap_too_short_to_learn_says_the_steps(cli, tmp_path, trained, one_torch_thread):
    model = trained("text-classification")
    data = csv_of(tmp_path / "mine.csv", ["pos", "neg"] * 20)
    result = cli("finetune", "text-cls", "--model", model, "--data", data, "-o", tmp_path / "out",
                 "--set", "train.epochs=1", "--set", "train.eval_strategy=no")
    assert result.exit_code == 0, result.stderr
    assert "note: --data has 36 training rows: 1 epochs x 3 steps = 3 optimizer steps" in result.stderr
    assert "--set train.epochs=34" in result.stderr


def test_a_broken_recording_is_named_or_dropped(cli, tmp_path, one_torch_thread):
    folder = tmp_path / "clips"
    source = REPO / "taskcli" / "samples" / "audio-classification"
    for label in ("yes", "no"):
        (folder / label).mkdir(parents=True)
        for src in sorted((source / label).iterdir())[:4]:
            shutil.copy(src, folder / label / src.name)
    (folder / "no" / "zz_broken.flac").write_bytes(b"fLaC but then nothing sensible")
    result = cli("finetune", "audio-cls", "--smoke", "--data", folder, "-o", tmp_path / "out", *STEP)
    assert_clean_error(result, "the train split's row 5, column 'audio'", "zz_broken.flac is not a readable audio")
    dropped = cli("finetune", "audio-cls", "--smoke", "--data", folder, "-o", tmp_path / "out2", *STEP,
                  "--set", "data.skip_bad=true")
    assert dropped.exit_code == 0, dropped.stderr
    assert "dropped 1 rows (1 unreadable audio in train)" in dropped.stderr


def test_a_streamed_split_is_checked_on_its_eval_rows_and_a_sample(cli, tmp_path):
    data = write(tmp_path / "train.csv", "text,label\n" + "".join(f"text {i},{'pos' if i % 2 else 'neg'}\n"
                                                                  for i in range(30)) + "late row,\n")
    result = cli("finetune", "text-cls", "--smoke", "--data", data, "-o", tmp_path / "out", *STEP,
                 "--set", "data.streaming=true", "--set", "data.max_eval_samples=8")
    assert_clean_error(result, "train.csv row 31 (line 32), column 'label': the label is blank")
    dropped = cli("finetune", "text-cls", "--smoke", "--data", data, "-o", tmp_path / "out2", *STEP,
                  "--set", "data.streaming=true", "--set", "data.max_eval_samples=8", "--set", "data.skip_bad=true")
    assert dropped.exit_code == 0, dropped.stderr
    assert "note: data.skip_bad: rows of the training stream with a blank label" in dropped.stderr


def test_eval_runs_the_preflight_too(cli, tmp_path, trained, one_torch_thread):
    model = trained("text-classification")
    data = write(tmp_path / "dev.csv", "text,label\nI adored this film,positive\nawful,\n")
    result = cli("eval", "text-cls", "--model", model, "--data", data)
    assert_clean_error(result, "dev.csv row 2 (line 3), column 'label': the label is blank")
    (tmp_path / "spaced").mkdir()
    write(tmp_path / "spaced" / "validation.csv", "text,label\nI adored this film,positive \nawful,negative\n")
    result = cli("eval", "text-cls", "--model", model, "--data", tmp_path / "spaced", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["samples"] == 2  # 'positive ' is the model's 'positive'
