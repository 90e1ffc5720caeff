"""`infer` reads tables (.csv, .tsv, .jsonl, .json, .parquet) by column (issue 18 §3): one input per row, made of
the task's input columns only, never the header and never another column's value (a label would leak into the
input); `--column` picks the column; an `id` column is kept in the rows; media tables hold paths relative to
their folder."""

import csv
import json
import shutil

import pytest

from conftest import REPO, assert_clean_error, same_rows

TEXTS = ["I adored this film", "Rude staff, slow service .", 'A "quiet" evening\nwith friends']  # commas, quotes,
LABELS = ["LABEL_pos", "LABEL_neg", "LABEL_pos"]  # a line break: what a CSV quotes
IDS = ["r1", "r2", "r3"]


def _rows(result) -> list[dict]:
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def _write(path, records: list[dict]) -> None:
    """`records` as a table file of the path's kind."""
    kind = path.suffix
    if kind in (".csv", ".tsv"):
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(records[0]), delimiter="\t" if kind == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(records)
    elif kind == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    elif kind == ".json":
        path.write_text(json.dumps(records), encoding="utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), path)


@pytest.fixture(scope="module")
def model(trained):
    return trained("text-classification")


@pytest.fixture(scope="module")
def plain(cli, model, one_torch_thread):
    """The texts' rows given as arguments: what every table of them must give."""
    return _rows(cli("infer", "text-cls", *TEXTS, "--model", model, "--json"))


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json", ".parquet"])
def test_a_table_gives_its_rows_predictions_and_nothing_of_its_other_columns(cli, model, plain, tmp_path, suffix):
    table = tmp_path / f"dev{suffix}"
    _write(table, [{"id": i, "text": t, "label": lab} for i, t, lab in zip(IDS, TEXTS, LABELS)])
    rows = _rows(cli("infer", "text-cls", table, "--model", model, "--json"))
    assert [r["input"] for r in rows] == TEXTS  # no header row, nothing but the text
    assert not any("LABEL_" in json.dumps(r["input"]) for r in rows)
    assert [r["id"] for r in rows] == IDS
    assert same_rows([{k: v for k, v in r.items() if k != "id"} for r in rows], plain)


def test_the_recipes_column_or_column_picks_the_input(cli, model, plain, tmp_path):
    table = tmp_path / "reviews.csv"
    _write(table, [{"review": t, "label": lab} for t, lab in zip(TEXTS, LABELS)])
    missing = cli("infer", "text-cls", table, "--model", model)
    assert_clean_error(missing, f"{table} has no 'text' column (its columns: 'review', 'label')", "--column")
    assert missing.stdout == ""
    assert same_rows(_rows(cli("infer", "text-cls", table, "--model", model, "--json", "--column", "review")), plain)
    mapped = cli("infer", "text-cls", table, "--model", model, "--json", "--set", "data.columns.text=review")
    assert same_rows(_rows(mapped), plain)
    assert_clean_error(cli("infer", "text-cls", table, "--model", model, "--column", "body"),
                       "has no 'body' column (its columns: 'review', 'label')")
    assert_clean_error(cli("infer", "text-cls", "fine", "--model", model, "--column", "review"),
                       "--column applies to table files")


def test_a_row_without_its_input_is_a_bad_input(cli, model, tmp_path):
    table = tmp_path / "dev.csv"
    _write(table, [{"id": 1, "text": TEXTS[0]}, {"id": 2, "text": ""}, {"id": 3, "text": TEXTS[1]}])
    assert_clean_error(cli("infer", "text-cls", table, "--model", model), f"{table}:3 has no 'text' value",
                       "--skip-bad")
    result = cli("infer", "text-cls", table, "--model", model, "--json", "--skip-bad")
    rows = _rows(result)
    assert rows[1] == {"input": "", "id": "2", "error": "no 'text' value"}
    assert [r["input"] for r in rows] == [TEXTS[0], "", TEXTS[1]] and "label" in rows[2]
    assert f"skipped: {table}:3 has no 'text' value" in result.stderr


def test_sentence_pairs_and_qa_read_their_columns(cli, trained, tmp_path, one_torch_thread):
    pairs = tmp_path / "pairs.tsv"
    _write(pairs, [{"text": "He left early .", "text_pair": "He went away early .", "label": "LABEL_1"}])
    [row] = _rows(cli("infer", "text-cls", pairs, "--model", trained("text-classification"), "--json"))
    assert row["input"] == {"text": "He left early .", "text_pair": "He went away early ."}
    squad = [json.loads(line) for line in (REPO / "taskcli/samples/question-answering.jsonl").open()][:3]
    qa = tmp_path / "qa.parquet"
    _write(qa, squad)
    rows = _rows(cli("infer", "qa", qa, "--model", trained("question-answering"), "--json"))
    assert [r["input"] for r in rows] == [{"question": s["question"], "context": s["context"]} for s in squad]
    assert [r["id"] for r in rows] == [s["id"] for s in squad] and all("answer" in r for r in rows)


def test_output_keeps_the_id_and_resume_continues_a_table(cli, model, tmp_path):
    table = tmp_path / "dev.csv"
    _write(table, [{"id": f"r{i}", "text": f"{TEXTS[i % 2]} {i}", "label": "LABEL_x"} for i in range(40)])
    whole, part = tmp_path / "whole.csv", tmp_path / "part.csv"
    args = ("infer", "text-cls", table, "--model", model, "--batch-size", "4")
    assert cli(*args, "--output", whole).exit_code == 0
    got = _csv_rows(whole)
    assert [r["id"] for r in got] == [f"r{i}" for i in range(40)] and "LABEL_x" not in whole.read_text()
    part.write_text("".join(whole.read_text().splitlines(keepends=True)[:12]))  # as a killed run leaves it
    result = cli(*args, "--output", part, "--resume")
    assert result.exit_code == 0, result.stderr
    assert "11 were there already" in result.stderr
    resumed = _csv_rows(part)  # scores move in the 7th digit with other batch mates
    assert same_rows([{**r, "score": float(r["score"])} for r in resumed],
                     [{**r, "score": float(r["score"])} for r in got])


def _csv_rows(path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_an_image_table_holds_paths_relative_to_its_folder(cli, trained, tmp_path, one_torch_thread):
    out = trained("image-classification")
    sample = REPO / "taskcli" / "samples" / "image-classification"
    (tmp_path / "data" / "pics").mkdir(parents=True)
    names = ["cat/cat_00.jpg", "toy/toy_01.jpg", "remote/remote_02.jpg"]
    for name in names:
        shutil.copy(sample / name, tmp_path / "data" / "pics" / name.split("/")[1])
    table = tmp_path / "data" / "photos.csv"
    _write(table, [{"image": f"pics/{n.split('/')[1]}", "label": n.split("/")[0]} for n in names])
    rows = _rows(cli("infer", "image-cls", table, "--model", out, "--json"))
    direct = _rows(cli("infer", "image-cls", *(tmp_path / "data" / "pics" / n.split("/")[1] for n in names),
                       "--model", out, "--json"))
    assert [r["input"] for r in rows] == [str(tmp_path / "data" / "pics" / n.split("/")[1]) for n in names]
    assert same_rows([r["labels"] for r in rows], [r["labels"] for r in direct])
    _write(table, [{"image": "pics/cat_00.jpg"}, {"image": ""}])
    result = cli("infer", "image-cls", table, "--model", out, "--json", "--skip-bad")
    assert [("error" in r) for r in _rows(result)] == [False, True] and f"{table}:3 has no 'image' value" \
        in result.stderr


def test_a_text_file_stays_one_input_per_line(cli, model, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("text,label\nfine,LABEL_pos\n")
    assert [r["input"] for r in _rows(cli("infer", "text-cls", notes, "--model", model, "--json"))] == \
        ["text,label", "fine,LABEL_pos"]


def test_a_table_that_will_not_read_is_one_line_and_a_bad_cell_one_row(cli, model, tmp_path):
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ngood film,pos\ncafé crème,neg\n".encode("latin-1"))
    assert_clean_error(cli("infer", "text-cls", latin, "--model", model), f"{latin}:3 is not UTF-8 text in 'text'")
    rows = _rows(cli("infer", "text-cls", latin, "--model", model, "--json", "--skip-bad"))
    assert [r["input"] for r in rows] == ["good film", "caf\ufffd cr\ufffdme"] and rows[1]["error"] == "not UTF-8 text"
    for text, says in (("", "is empty"), ("text,label\n", "has a header but no rows"),
                       ('text\n"no end quote\nmore\n', ":3 is not valid CSV")):
        (tmp_path / "t.csv").write_text(text)
        assert_clean_error(cli("infer", "text-cls", tmp_path / "t.csv", "--model", model, "--skip-bad"), says)


def _no_model_loads(monkeypatch):
    """The run stops if anything asks for the model: a table's error must come before that."""
    from taskcli import inference

    def load(*args, **kwargs):
        raise AssertionError("the model was loaded before the table was checked")

    monkeypatch.setattr(inference, "load_for_inference", load)


@pytest.mark.parametrize("case", ["--column", "no text column", "header only", "empty", "image table"])
def test_a_tables_header_is_checked_before_the_model_loads(cli, model, tmp_path, monkeypatch, case):
    table = tmp_path / "t.csv"
    _write(table, [{"review": t, "label": lab} for t, lab in zip(TEXTS, LABELS)])
    task, extra, says = "text-cls", (), "has no 'text' column (its columns: 'review', 'label')"
    if case == "--column":
        extra, says = ("--column", "body"), "has no 'body' column"
    elif case == "header only":
        table.write_text("text,label\n")
        says = "has a header but no rows"
    elif case == "empty":
        table.write_text("")
        says = "is empty"
    elif case == "image table":
        task, says = "image-cls", "has no 'image' or 'file_name' or 'path'"
    _no_model_loads(monkeypatch)
    result = cli("infer", task, table, "--model", model, *extra)
    assert_clean_error(result, f"{table} {says}")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_missing_column_is_said_before_torch_or_transformers_is_imported(model, tmp_path):
    """The real command in a fresh interpreter: `-X importtime` lists every module imported before it exits."""
    import subprocess
    import sys

    table = tmp_path / "dev.csv"
    _write(table, [{"text": t, "label": lab} for t, lab in zip(TEXTS, LABELS)])
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "taskcli", "infer", "text-cls", str(table),
                           "--model", str(model), "--column", "missing"], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in done.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    errors = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert done.returncode == 1 and len(errors) == 1, done.stderr[-2000:]
    assert errors[0].startswith(f"error: {table} has no 'missing' column (its columns: 'text', 'label')")
    assert "taskcli" in imported and not imported & {"torch", "transformers", "datasets"}


def test_translation_reads_its_source_languages_column_and_wmts_nested_records(tmp_path):
    """The translation task declares its table columns from params.source_lang (Task.infer_columns as a function):
    a column named for the language, then `text`, then WMT's nested {"translation": {"de": ...}} record."""
    from types import SimpleNamespace

    from taskcli import registry
    from taskcli.inputs import Table

    task = registry.get("translation")
    run = SimpleNamespace(task=task, recipe=SimpleNamespace(data=SimpleNamespace(columns={})),
                          params=task.params(source_lang="de"))
    table = Table.for_run(run, task.infer_options())  # the typed options, no --column
    assert table.fields == [("source", ("source", "de", "text", ("translation", "de")), True)]
    for name, rows in (("wmt.jsonl", [{"translation": {"en": "Good morning", "de": "Guten Morgen"}}]),
                       ("pairs.csv", [{"en": "Good morning", "de": "Guten Morgen"}])):
        _write(tmp_path / name, rows)
        assert [item for _, item in table.entries(tmp_path / name, name)] == ["Guten Morgen"]
