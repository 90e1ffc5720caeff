"""Files a user owns are never lost: `finetune --overwrite` deletes only a folder a taskcli run wrote, `infer
--output --overwrite` keeps the old file until the new run has rows, an output folder that cannot be written fails
before anything loads, a full disk is one line naming the file, a finished run's --resume changes nothing, and a CSV
output has no catch-all column."""

import csv
import errno
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from conftest import assert_clean_error

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# A short smoke run: 48 rows, batch 8, 5 epochs = 30 steps, an evaluation (and checkpoint) every 10, one checkpoint
# kept (the recipe's save_total_limit: 1). The highest loss counts as best, so the best checkpoint is the first one
# and not the last, as in the run.
SHORT = ["--smoke", "--set", "train.epochs=5", "--set", "train.eval_steps=10", "--set", "eval.metric_for_best_model=loss",
         "--set", "train.trainer_args.greater_is_better=true"]


def _files(folder: Path) -> dict:
    """Every file under `folder` with its size and modification time: equal snapshots = nothing written."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def _thesis(tmp_path: Path) -> Path:
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "thesis.tex").write_text("three years of work")
    return folder


def test_overwrite_refuses_a_folder_taskcli_did_not_write(cli, tmp_path):
    """The issue's example: `mkdir thesis; echo x > thesis/thesis.tex; taskcli finetune text-cls --smoke -o thesis
    --overwrite` deleted the thesis."""
    thesis = _thesis(tmp_path)
    result = cli("finetune", "text-cls", "--smoke", "-o", thesis, "--overwrite")
    assert_clean_error(result, "--overwrite refused", "not written by a taskcli run", "thesis.tex")
    assert (thesis / "thesis.tex").read_text() == "three years of work"


def test_overwrite_refuses_the_current_folder_home_and_git_repositories(cli, tmp_path, monkeypatch):
    thesis = _thesis(tmp_path)
    (thesis / "recipe.yaml").write_text("task: text-classification\nprovenance: {}\n")  # looks like an old run...
    monkeypatch.chdir(thesis)  # ...but it is where the user stands
    assert_clean_error(cli("finetune", "text-cls", "--smoke", "-o", ".", "--overwrite"), "the current folder")
    monkeypatch.setenv("HOME", str(thesis))
    monkeypatch.chdir(tmp_path)
    assert_clean_error(cli("finetune", "text-cls", "--smoke", "-o", thesis, "--overwrite"), "your home folder")
    monkeypatch.setenv("HOME", str(tmp_path / "elsewhere"))
    (thesis / ".git").mkdir()
    assert_clean_error(cli("finetune", "text-cls", "--smoke", "-o", thesis, "--overwrite"), "a git repository")
    assert (thesis / "thesis.tex").read_text() == "three years of work"


def test_overwrite_never_deletes_the_root():
    from taskcli.run_folder import check_overwrite
    from taskcli.errors import TaskcliError

    with pytest.raises(TaskcliError, match="would delete the whole disk"):
        check_overwrite(Path("/"))


@pytest.mark.parametrize("where", ["/proc/x", "under-a-file/out", "read-only/out"])
def test_an_output_dir_that_cannot_be_written_fails_before_anything_loads(cli, tmp_path, monkeypatch, where):
    if where.startswith("/proc") and not Path("/proc").is_dir():
        pytest.skip("no /proc here")
    if where.startswith("read-only"):
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        (tmp_path / "read-only").mkdir(mode=0o500)
    (tmp_path / "under-a-file").write_text("a file")
    from taskcli import finetune

    monkeypatch.setattr(finetune, "build_smoke_model", lambda *a: pytest.fail("the model was built"))
    out = where if where.startswith("/") else tmp_path / where
    result = cli("finetune", "text-cls", "--smoke", "-o", out)
    assert_clean_error(result, f"cannot write to output dir {out}")  # first line: before the run header


def test_overwrite_replaces_a_taskcli_run_only_when_the_new_run_starts(cli, tmp_path):
    out = tmp_path / "run"
    args = ["finetune", "text-cls", "--smoke", "--set", "train.max_steps=2", "-o", out]
    assert cli(*args).exit_code == 0
    assert json.loads((out / ".taskcli-run").read_text())["status"] == "finished"
    # a replacing run that fails before it starts (bad data) leaves the old run as it was
    before = _files(out)
    assert_clean_error(cli(*args, "--overwrite", "--data", tmp_path / "missing.csv"), "missing.csv")
    assert _files(out) == before
    # a run of an older taskcli (no marker: recognised by its recipe.yaml and checkpoints) is replaced too
    (out / ".taskcli-run").unlink()
    (out / "stale.txt").write_text("left by the old run")
    result = cli(*args, "--overwrite")
    assert result.exit_code == 0, result.stderr
    assert not (out / "stale.txt").exists() and (out / "model.safetensors").is_file()


def test_resume_of_a_finished_run_changes_nothing_and_more_steps_go_on_from_its_last_step(cli, tmp_path):
    """The issue: `finetune ... --resume` after the run completed went on from the best checkpoint (the last one was
    deleted, save_total_limit 1) and trained those steps again, rewriting the model."""
    out = tmp_path / "run"
    first = cli("finetune", "text-cls", *SHORT, "-o", out)
    assert first.exit_code == 0, first.stderr
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-10", "checkpoint-30"]  # best and last
    old = tmp_path / "old"  # as a run of an older taskcli left it: no marker, the last checkpoint deleted
    shutil.copytree(out, old)
    (old / ".taskcli-run").unlink()
    shutil.rmtree(old / "checkpoint-30")
    before = _files(out)
    again = cli("finetune", "text-cls", *SHORT, "-o", out, "--resume")
    assert again.exit_code == 0, again.stderr
    assert "is finished (step 30 of 30): nothing to resume" in " ".join(again.stderr.split())
    assert _files(out) == before
    # more epochs: from the true last step
    more = cli("finetune", "text-cls", *SHORT, "--set", "train.epochs=6", "-o", out, "--resume")
    assert more.exit_code == 0, more.stderr
    assert f"continuingfrom{out}/checkpoint-30(step30of36)" in "".join(more.stderr.split())
    assert json.loads((out / ".taskcli-run").read_text())["global_step"] == 36

    # the older run: finished as it is; more steps would train steps 11-30 again from checkpoint-10: refused
    before = _files(old)
    again = cli("finetune", "text-cls", *SHORT, "-o", old, "--resume")
    assert again.exit_code == 0 and "is finished" in again.stderr, again.stderr
    assert_clean_error(cli("finetune", "text-cls", *SHORT, "--set", "train.epochs=6", "-o", old, "--resume"),
                       "its newest checkpoint is checkpoint-10 (step 10)", "would train steps 11-30 again")
    assert _files(old) == before


# torch.save's own words when the disk fills (its zip writer's short write), measured on a full 64 KB tmpfs
TORCH_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"


@pytest.mark.parametrize("writer", ["torch.save", "safetensors"])
def test_a_full_disk_in_finetune_is_one_line_naming_the_file(cli, tmp_path, monkeypatch, writer):
    import torch
    import transformers.modeling_utils
    from safetensors import SafetensorError

    written = []

    def full(obj, path, *args, **kwargs):  # the file is begun, then the write fails
        Path(path).write_bytes(b"PK\x03\x04")
        written.append(Path(path))
        if writer == "torch.save":
            raise RuntimeError(TORCH_FULL)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    if writer == "torch.save":
        monkeypatch.setattr(torch, "save", full)
    else:
        monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", full)
    out = tmp_path / "run"
    result = cli("finetune", "text-cls", "--smoke", "--set", "train.max_steps=2", "-o", out)
    assert written and result.exit_code == 1
    last = result.stderr.strip().splitlines()[-1]  # after the run header and the steps trained
    assert last.startswith(f"error: no space left on device writing {written[0]} — "), result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "inline_container" not in result.stderr


# ------------------------------------------------------------------------------------------------ infer --output


@pytest.fixture(scope="module")
def model(trained):
    return trained("text-classification")


def test_infer_overwrite_keeps_the_old_file_until_the_run_has_rows(cli, model, tmp_path):
    """The issue: `infer --output rows.jsonl --overwrite` emptied the old file before the model even loaded."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"input": "kept", "label": "positive"}\n')
    old = rows.read_text()
    texts = tmp_path / "in.txt"
    texts.write_text("a good film\n\na bad film\n")  # line 2 is empty: the first chunk fails without --skip-bad
    assert_clean_error(cli("infer", "text-cls", texts, "-m", tmp_path / "no-model", "--output", rows, "--overwrite"),
                       "no-model")
    assert_clean_error(cli("infer", "text-cls", texts, "-m", model, "--output", rows, "--overwrite"), "is empty")
    assert rows.read_text() == old
    done = cli("infer", "text-cls", texts, "-m", model, "--output", rows, "--overwrite", "--skip-bad")
    assert done.exit_code == 0, done.stderr
    assert [json.loads(line)["input"] for line in rows.read_text().splitlines()] == ["a good film", "", "a bad film"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "rows.jsonl"]  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(rows.stat().st_mode) == 0o666 & ~umask  # an ordinary file, not mkstemp's private one


def test_infer_output_that_cannot_be_written_fails_before_the_model_loads(cli, tmp_path):
    (tmp_path / "a-file").write_text("x")
    # --model does not exist either: the output is checked first
    assert_clean_error(cli("infer", "text-cls", "hello", "-m", tmp_path / "no-model", "--output",
                           tmp_path / "a-file" / "rows.jsonl"), "a-file is a file, not a folder")


def test_a_full_disk_in_infer_output_is_one_line_naming_the_file(cli, model, tmp_path, monkeypatch):
    from taskcli import results

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(results.os, "fsync", full)
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"input": "kept"}\n')
    result = cli("infer", "text-cls", "a good film", "-m", model, "--output", rows, "--overwrite")
    assert_clean_error(result, f"no space left on device writing {rows}")
    assert rows.read_text() == '{"input": "kept"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]


def test_csv_output_has_a_column_per_field_and_no_catch_all(cli, model, tmp_path):
    """`infer --output x.csv` had an always-empty `extra` column; a field only later rows carry (a truncation
    note) widens the file instead, and --resume goes on with the widened header."""
    out = tmp_path / "rows.csv"
    result = cli("infer", "text-cls", "a good film", "a bad film", "-m", model, "--output", out)
    assert result.exit_code == 0, result.stderr
    with out.open(newline="") as fh:
        assert next(csv.reader(fh)) == ["input", "label", "score", "error"]

    from taskcli.results import Writer

    path = tmp_path / "wide.csv"
    writer = Writer(path, resume=False)
    writer.write([{"input": "short", "label": "a"}])
    writer.write([{"input": "long", "label": "b", "truncated": True, "input_tokens": 512}])
    writer.write([{"input": "", "error": "empty input"}])
    writer.close()
    with path.open(newline="") as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == ["input", "label", "truncated", "input_tokens", "error"]
    assert [r["truncated"] for r in table] == ["", "true", ""] and table[1]["input_tokens"] == "512"
    resumed = Writer(path, resume=True)
    assert resumed.done == 3 and resumed.header == list(table[0])
    resumed.write([{"input": "more", "label": "c", "score": 0.5}])
    with path.open(newline="") as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == ["input", "label", "truncated", "input_tokens", "score", "error"]
    assert [r["input"] for r in table] == ["short", "long", "", "more"] and table[3]["score"] == "0.5"
