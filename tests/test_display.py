"""What a person reads: tables fit an 80-column terminal, a long input is abbreviated in them (whole in --json),
and a single prompt's generation is shown once (streamed to a terminal, else in the table)."""

import io
import json

import pytest

import taskcli.cli
import taskcli.display

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LONG = " ".join(f"word{i}" for i in range(600))[:3000]


def _widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


def test_a_long_input_is_abbreviated_in_an_80_column_table_and_whole_in_json(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    shown = cli("infer", "text-classification", "--smoke", LONG)
    assert shown.exit_code == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert _widest(shown.stdout) <= 80, shown.stdout
    assert len(lines) <= 8, shown.stdout  # folded at 58 characters a line it took ~55 lines
    assert LONG[:40] in shown.stdout and "3,000 chars" in shown.stdout
    assert "word500" not in shown.stdout
    assert "label" in lines[1] and "score" in lines[1]  # the result columns are still there, beside the input

    as_json = cli("infer", "text-classification", "--smoke", LONG, "--json")
    assert as_json.exit_code == 0, as_json.stderr
    assert json.loads(as_json.stdout)["input"] == LONG


def test_a_short_input_is_shown_as_it_is_and_a_long_path_keeps_its_file_name():
    assert taskcli.display.abbreviated("I loved every minute of it .") == "I loved every minute of it ."
    path = "/home/someone/datasets/speech_commands/validation/recordings/yes/0a7c2a8d_nohash_0.flac"
    shown = taskcli.display.abbreviated(path)
    assert shown.startswith("…") and shown.endswith("yes/0a7c2a8d_nohash_0.flac") and len(shown) <= 58


def test_per_class_tables_fit_80_columns_and_keep_every_name_and_number_whole():
    from rich.console import Console

    names = [f"a_rather_long_class_name_that_ends_in_number_{i}" for i in range(5)]
    metrics = {"accuracy": 0.5, "f1_macro": 0.2468, "eval_samples_per_second": 1234.5678,
               "per_class": {n: {"precision": 0.123456, "recall": 0.5, "f1": 0.25, "support": 12} for n in names}}
    buf = io.StringIO()
    taskcli.display.print_metrics(Console(width=80, file=buf), metrics)
    text = buf.getvalue()
    assert _widest(text) <= 80, text
    cells = [line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│")]
    # a name folds onto the next lines (whose other cells are empty) instead of being cut to "a_rather_lon…"
    assert "…" not in text
    assert all(n in "".join(cells) for n in names), text
    for number in ("0.5000", "0.2468", "1234.5678", "0.1235", "0.2500"):
        assert number in text, text


@pytest.mark.parametrize("interactive", [True, False], ids=["terminal", "piped"])
def test_a_single_prompt_is_shown_once(cli, monkeypatch, interactive):
    monkeypatch.setenv("COLUMNS", "200")  # the table keeps the text on one line, so a second copy would be found
    args = ["infer", "text-generation", "--smoke", "Once upon a time", "--max-new-tokens", "8", "--greedy"]
    expected = json.loads(cli(*args, "--json").stdout)["generated_text"]
    assert len(expected) > len("Once upon a time")
    monkeypatch.setattr(taskcli.display, "interactive", lambda: interactive)
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    assert (result.stdout + result.stderr).count(expected.strip()) == 1, (result.stdout, result.stderr)
    assert expected.strip() not in result.stderr  # nothing streams to stderr
    table = "generated text" in result.stdout
    assert table != interactive  # streamed to the terminal: no table; piped: the table only


def test_json_never_streams(cli, monkeypatch):
    monkeypatch.setattr(taskcli.display, "interactive", lambda: True)
    result = cli("infer", "text-generation", "--smoke", "Once upon a time", "--max-new-tokens", "8", "--json")
    assert result.exit_code == 0, result.stderr
    row = json.loads(result.stdout)  # exactly one JSON line, no streamed text before it
    assert row["input"] == "Once upon a time" and "streamed" not in row


def test_brackets_in_inputs_are_text_not_markup(cli):
    text = "a [/] b [bold]c[/bold]"
    result = cli("infer", "text-classification", "--smoke", text)
    assert result.exit_code == 0, result.stderr
    assert text in result.stdout


def test_per_class_scores_that_are_single_numbers_get_a_table():
    import io

    from rich.console import Console

    from taskcli.display import print_metrics as _print_metrics

    buf = io.StringIO()
    _print_metrics(Console(file=buf, width=80), {"mean_iou": 0.5, "per_class_iou": {"road": 0.75, "sky": None}})
    shown = buf.getvalue()
    assert "per class iou" in shown and "road" in shown and "0.7500" in shown and "sky" in shown
