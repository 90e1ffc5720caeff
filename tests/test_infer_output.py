"""`infer` a chunk at a time: rows in input order as each chunk is done, --output FILE (.jsonl/.csv/.parquet), and
--resume after kill -9 with no duplicate or missing row."""

import csv
import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, assert_clean_error, same_rows, slow_tier

WORDS = "Alice Bob Carol works lives in Paris Berlin Tokyo for Globex Initech today".split()


@pytest.fixture(scope="module")
def ner_model(trained):
    return trained("token-classification")


@pytest.fixture(scope="module")
def lines(tmp_path_factory):
    import random

    rng = random.Random(0)
    path = tmp_path_factory.mktemp("in") / "lines.txt"
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12))) for _ in range(300))
                    + "\n")
    return path


def _json_rows(cli, model, lines, *extra):
    result = cli("infer", "ner", str(lines), "--model", model, "--json", *extra)
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]



def test_chunks_do_not_change_the_rows(cli, ner_model, lines):
    whole = _json_rows(cli, ner_model, lines, "--chunk-size", "1000")
    assert len(whole) == 300 and whole[0]["input"] == lines.read_text().splitlines()[0]
    assert same_rows(_json_rows(cli, ner_model, lines, "--chunk-size", "7"), whole)


def test_output_file_holds_the_json_rows(cli, ner_model, lines, tmp_path):
    expected = _json_rows(cli, ner_model, lines)
    out = tmp_path / "rows.jsonl"
    result = cli("infer", "ner", str(lines), "--model", ner_model, "--output", out, "--chunk-size", "50")
    assert result.exit_code == 0, result.stderr
    assert not result.stdout.strip() and f"wrote 300 rows to {out}" in result.stderr
    assert same_rows([json.loads(line) for line in out.read_text().splitlines()], expected)
    # an existing file is never replaced without being asked
    again = cli("infer", "ner", str(lines), "--model", ner_model, "--output", out)
    assert_clean_error(again, f"{out} already exists", "--resume", "--overwrite")
    assert same_rows([json.loads(line) for line in out.read_text().splitlines()], expected)
    assert cli("infer", "ner", str(lines), "--model", ner_model, "--output", out, "--overwrite").exit_code == 0


def _file_rows(path) -> list[dict]:
    """The rows of an --output .jsonl or .csv file, the .csv's entities parsed back from their JSON cell."""
    if path.suffix == ".csv":
        with path.open(newline="") as fh:
            return [{"input": r["input"], "entities": json.loads(r["entities"])} for r in csv.DictReader(fh)]
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_csv_and_parquet_outputs(cli, ner_model, lines, tmp_path):
    import pyarrow.parquet as pq

    expected = _json_rows(cli, ner_model, lines)
    for name in ("rows.csv", "rows.parquet"):
        result = cli("infer", "ner", str(lines), "--model", ner_model, "--output", tmp_path / name)
        assert result.exit_code == 0, result.stderr
    table = _file_rows(tmp_path / "rows.csv")
    assert [r["input"] for r in table] == [r["input"] for r in expected]
    assert same_rows([r["entities"] for r in table], [r["entities"] for r in expected])
    parquet = pq.read_table(tmp_path / "rows.parquet").to_pylist()
    assert [r["input"] for r in parquet] == [r["input"] for r in expected]
    assert same_rows([json.loads(r["entities"]) for r in parquet], [r["entities"] for r in expected])


# a second kill -9 (~14 s) for .csv in the slow tier; a torn .csv row is resumed every run (the test below)
@pytest.mark.parametrize("suffix", [".jsonl", pytest.param(".csv", marks=slow_tier)])
def test_resume_after_kill_9_has_no_duplicates_or_gaps(cli, ner_model, lines, tmp_path, suffix):
    """A real kill -9 mid-run (after some chunks are on disk, likely mid-write), then --resume: the file equals
    the one an uninterrupted run writes."""
    big = tmp_path / "big.txt"
    big.write_text(lines.read_text() * 4)  # 1,200 inputs
    cmd = [sys.executable, "-m", "taskcli", "infer", "ner", str(big), "--model", str(ner_model), "--chunk-size", "40"]
    whole = tmp_path / f"whole{suffix}"
    # the uninterrupted reference run in this process (no second start-up); the killed one is a process of its own
    assert cli(*cmd[3:], "--output", whole).exit_code == 0
    cut = tmp_path / f"cut{suffix}"
    proc = subprocess.Popen([*cmd, "--output", str(cut)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and (not cut.exists() or cut.stat().st_size < 8_000) and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    held = cut.read_text().count("\n")
    assert 0 < held < 1200
    done = subprocess.run([*cmd, "--output", str(cut), "--resume"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "were there already" in done.stderr
    assert cut.read_text() == whole.read_text()


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_resume_after_a_torn_last_row(cli, ner_model, lines, tmp_path, suffix):
    """What a kill mid-write leaves, made exactly (the kill -9 test above cannot choose where it lands): three whole
    chunks, then a row cut short; --resume drops the torn row and writes the rest, in input order."""
    whole = tmp_path / f"whole{suffix}"
    args = ["infer", "ner", str(lines), "--model", ner_model, "--chunk-size", "40"]
    assert cli(*args, "--output", whole).exit_code == 0
    written = whole.read_text().splitlines(keepends=True)
    kept = 120 + (suffix == ".csv")  # three chunks of 40 (and the csv header)
    cut = tmp_path / f"cut{suffix}"
    cut.write_text("".join(written[:kept]) + written[kept][:-5])  # the next row five characters short of its end
    result = cli(*args, "--output", cut, "--resume")
    assert result.exit_code == 0, result.stderr
    assert "(120 were there already)" in result.stderr
    resumed, expected = _file_rows(cut), _file_rows(whole)
    # compared within same_rows' tolerance: measured here, the resumed rows' scores differed from the whole run's in
    # the last digits (the kill -9 test's subprocess resume matched exactly); the cause was not found
    assert [r["input"] for r in resumed] == [r["input"] for r in expected] and same_rows(resumed, expected)


def test_resume_checks_the_inputs_and_the_file(cli, ner_model, lines, tmp_path):
    out = tmp_path / "rows.jsonl"
    assert cli("infer", "ner", str(lines), "--model", ner_model, "--output", out).exit_code == 0
    other = tmp_path / "other.txt"
    other.write_text("\n".join(reversed(lines.read_text().splitlines())) + "\n")
    out.write_text("".join(out.read_text().splitlines(keepends=True)[:10]))
    assert_clean_error(cli("infer", "ner", str(other), "--model", ner_model, "--output", out, "--resume"),
                       "row 10 is for another input")
    assert_clean_error(cli("infer", "ner", str(lines), "--model", ner_model, "--output", tmp_path / "r.parquet",
                           "--resume"), "--resume needs a .jsonl or .csv output")
    assert_clean_error(cli("infer", "ner", str(lines), "--model", ner_model, "--resume"), "add --output FILE")
    assert_clean_error(cli("infer", "ner", str(lines), "--model", ner_model, "--output", tmp_path / "r.txt"),
                       "unknown file type '.txt'")
    # the same inputs: the missing 290 rows are added
    done = cli("infer", "ner", str(lines), "--model", ner_model, "--output", out, "--resume")
    assert done.exit_code == 0, done.stderr
    assert len(out.read_text().splitlines()) == 300 and "wrote 290 rows" in done.stderr


def test_skip_bad_rows_are_written_in_place(cli, ner_model, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("Alice works in Paris\n\nBob lives in Tokyo\n")
    out = tmp_path / "rows.jsonl"
    result = cli("infer", "ner", str(src), "--model", ner_model, "--output", out, "--skip-bad")
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["input"] for r in rows] == ["Alice works in Paris", "", "Bob lives in Tokyo"]
    assert rows[1]["error"] == "empty input" and "error" not in rows[0]


def test_stdin_is_read_as_it_comes(ner_model, tmp_path):
    """The first rows come out while stdin is still open: inputs are read lazily, a chunk at a time (the first
    chunk is one batch), not all before the run starts."""
    proc = subprocess.Popen([sys.executable, "-m", "taskcli", "infer", "ner", "-", "--model", str(ner_model), "--json",
                             "--batch-size", "2"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=REPO, text=True)
    try:
        proc.stdin.write("Alice works in Paris\nBob lives in Berlin\n")
        proc.stdin.flush()
        # a row must come out while stdin is still open (a reader that waits for the end would never send one)
        ready, _, _ = select.select([proc.stdout], [], [], 180)
        assert ready, "no row within 180 s of the first lines while stdin stayed open"
        first = json.loads(proc.stdout.readline())
        assert first["input"] == "Alice works in Paris"
        assert json.loads(proc.stdout.readline())["input"] == "Bob lives in Berlin"
        proc.stdin.write("Carol went to Tokyo\n")
        proc.stdin.close()
        rest = [json.loads(line) for line in proc.stdout.read().splitlines()]
        assert [r["input"] for r in rest] == ["Carol went to Tokyo"]
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()


def test_a_file_that_is_not_utf8_is_one_clear_line(cli, ner_model, tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Alice went to Paris\nZoë went to Köln\n".encode("latin-1"))
    assert_clean_error(cli("infer", "ner", str(path), "--model", ner_model), f"input file {path} is not UTF-8 text "
                       "(line 2)")
