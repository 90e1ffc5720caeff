"""`taskcli infer`: every input gives exactly one output row, in order. An empty input is an error naming where
it is (or, with --skip-bad, an error row in its place), never a made-up answer; output piped into `head` ends
quietly."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import assert_clean_error

TASKCLI = Path(sys.executable).with_name("taskcli")


def test_an_empty_argument_is_an_error_naming_it(cli, trained, one_torch_thread):
    out = trained("text-classification")
    result = cli("infer", "text-cls", "fine", "", "bad", "--model", out)
    assert_clean_error(result, "input 2 is empty", "--skip-bad")
    assert result.stdout == ""


def test_a_blank_stdin_line_is_an_error_naming_its_line(cli, trained, one_torch_thread):
    out = trained("text-classification")
    result = cli("infer", "text-cls", "-", "--model", out, "--json", input="fine\n   \nbad\n")
    assert_clean_error(result, "stdin line 2 is empty")
    assert result.stdout == ""


def test_a_blank_file_line_is_an_error_naming_file_and_line(cli, trained, tmp_path, one_torch_thread):
    out = trained("token-classification")
    notes = tmp_path / "notes.txt"
    notes.write_text("Alice works in Paris .\n\nBob too .\n")
    assert_clean_error(cli("infer", "ner", notes, "--model", out), f"{notes}:2 is empty")


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "table"])
def test_skip_bad_gives_one_row_per_line_in_order(cli, trained, as_json, one_torch_thread):
    out = trained("text-classification")
    texts = ["I loved every minute of it .", "", "Rude staff and slow service ."]
    args = ["infer", "text-cls", "-", "--model", out, "--skip-bad", "--batch-size", "1"]
    result = cli(*args, *(["--json"] if as_json else []), input="\n".join(texts) + "\n")
    assert result.exit_code == 0, result.stderr
    assert "skipped: stdin line 2 is empty" in result.stderr and "skipped 1 of 3 inputs" in result.stderr
    if as_json:
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        assert [r["input"] for r in rows] == texts
        assert rows[1] == {"input": "", "error": "empty input"}
        assert "label" in rows[0] and "label" in rows[2] and "error" not in rows[0]
    else:
        body = [line for line in result.stdout.splitlines() if line.startswith("│")]
        assert len(body) == 3 and "I loved" in body[0] and "empty input" in body[1] and "Rude staff" in body[2]


def test_summarization_of_nothing_is_an_error_not_a_summary(cli, trained, one_torch_thread):
    out = trained("summarization")
    result = cli("infer", "summarization", "", "--model", out, "--json")
    assert_clean_error(result, "input 1 is empty")
    assert result.stdout == ""


@pytest.mark.parametrize("task,good", [
    ("token-classification", "Alice works in Paris ."),
    ("question-answering", json.dumps({"question": "Who ?", "context": "Alice works in Paris ."})),
    ("text-generation", "the cat"),
    ("fill-mask", "the <mask> sat ."),
    ("summarization", "the cat sat on the mat ."),
    ("translation", "the cat sat on the mat ."),
])
def test_every_text_task_keeps_one_row_per_input(cli, trained, task, good, one_torch_thread):
    extra = ["--max-new-tokens", "2"] if task in ("text-generation", "summarization", "translation") else []
    lines = [good, "", good, "  "]
    result = cli("infer", task, "-", "--model", trained(task), "--skip-bad", "--json", *extra,
                 input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["input"] for r in rows] == [json.loads(good) if good.startswith("{") else good, "", rows[0]["input"], "  "]
    assert [("error" in r) for r in rows] == [False, True, False, True]


def test_a_fill_mask_input_without_a_mask_is_a_per_input_error(cli, trained, one_torch_thread):
    out = trained("fill-mask")
    assert_clean_error(cli("infer", "mlm", "the <mask> sat .", "no mask here", "--model", out),
                       "input 2 has no mask token")
    result = cli("infer", "mlm", "the <mask> sat .", "no mask here", "--model", out, "--skip-bad", "--json")
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert "masks" in rows[0] and rows[1] == {"input": "no mask here", "error": "no mask token"}


def test_all_inputs_bad_is_an_error(cli, trained, one_torch_thread):
    out = trained("text-classification")
    result = cli("infer", "text-cls", "", " ", "--model", out, "--skip-bad")
    assert result.exit_code == 1 and result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == ["skipped: input 1 is empty", "skipped: input 2 is empty",
                                          "error: none of the 2 inputs could be used — see the messages above"]


def test_output_piped_into_head_ends_quietly(tmp_path):
    """`taskcli infer ... | head -1`: the reader leaves after one line; no traceback, no "Exception ignored", and
    exit 141 as cat or grep would (stopped by SIGPIPE)."""
    texts = tmp_path / "texts.txt"  # far more output than a pipe holds
    texts.write_text("".join(f"line {i} " + "word " * 40 + "\n" for i in range(1500)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("TASKCLI_DEBUG", None)
    for fmt in (["--json"], []):
        proc = subprocess.Popen([str(TASKCLI), "infer", "text-cls", str(texts), "--smoke", *fmt],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
        first = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=300) == 141, err
        assert first.strip(), err
        assert "Traceback" not in err and "Exception ignored" not in err and "BrokenPipe" not in err, err
        assert "error:" not in err, err


# ----------------------------------------------------------------------------- text that is not text (issue 17)

SURROGATE = '{"text": "\\ud800"}'  # JSON's escape for half of a character: tokenizers raise TypeError on it


def _rows(result) -> list[dict]:
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_a_lone_surrogate_is_a_bad_input_wherever_it_comes_from(cli, trained, tmp_path, one_torch_thread):
    out = trained("text-classification")
    path = tmp_path / "in.txt"
    path.write_text(f"fine\n{SURROGATE}\nbad\n")
    ways = [((path,), None, f"{path}:2"), (("-",), f"fine\n{SURROGATE}\nbad\n", "stdin line 2"),
            (("fine", SURROGATE, "bad"), None, "input 2")]
    for args, stdin, where in ways:
        result = cli("infer", "text-cls", *args, "--model", out, input=stdin)
        assert_clean_error(result, f"{where} is not valid Unicode text", "\\ud800", "--skip-bad")
        assert result.stdout == ""
        rows = _rows(cli("infer", "text-cls", *args, "--model", out, "--skip-bad", "--json", input=stdin))
        assert [("error" in r) for r in rows] == [False, True, False], rows
        assert rows[1]["input"] == SURROGATE and "lone surrogate" in rows[1]["error"]


def test_bytes_that_are_not_utf8_are_an_error_row_for_their_line(cli, trained, tmp_path, one_torch_thread):
    out = trained("text-classification")
    data = b"good film\n\xff\xfe caf\xe9\nslow service\n"
    path = tmp_path / "latin.txt"
    path.write_bytes(data)
    for args, stdin, says in (((path,), None, f"input file {path} is not UTF-8 text (line 2)"),
                              (("-",), data, "stdin is not UTF-8 text (line 2)")):
        assert_clean_error(cli("infer", "text-cls", *args, "--model", out, input=stdin), says)
        result = cli("infer", "text-cls", *args, "--model", out, "--skip-bad", "--json", input=stdin)
        rows = _rows(result)
        assert f"skipped: {says}" in result.stderr
        assert [r["input"] for r in rows] == ["good film", "\ufffd\ufffd caf\ufffd", "slow service"]
        assert rows[1]["error"] == "not UTF-8 text" and "label" in rows[0] and "label" in rows[2]


@pytest.mark.parametrize("task,good,bad,says", [
    ("text-classification", {"text": "fine"}, {"text": ["a", "b"]}, "'text' as a list"),
    ("text-classification", {"text": "fine"}, {"text": 5}, "'text' as a number"),
    ("text-classification", {"text": "fine"}, {"text": None}, "'text' as null"),
    ("text-classification", {"text": "fine"}, {"text": {"a": "b"}}, "'text' as an object"),
    ("text-classification", {"text": "fine", "text_pair": "ok"}, {"text": "fine", "text_pair": True},
     "'text_pair' as a boolean"),
    ("question-answering", {"question": "Who ?", "context": "Alice works ."}, {"question": "Who ?", "context": 7},
     "'context' as a number"),
])
def test_a_text_field_that_is_not_a_string_is_a_bad_input(cli, trained, task, good, bad, says, one_torch_thread):
    """Never str()-ed and run: `{"text": ["a", "b"]}` used to be classified as the text "['a', 'b']"."""
    out = trained(task)
    args = [json.dumps(good), json.dumps(bad)]
    assert_clean_error(cli("infer", task, *args, "--model", out), f"input 2 has {says}, not text")
    rows = _rows(cli("infer", task, *args, "--model", out, "--skip-bad", "--json"))
    assert "error" not in rows[0] and rows[1] == {"input": bad, "error": f"{says.replace(' as ', ' is ')}, not text"}
