"""CoNLL column files and common column names for token-classification: the reader's edge cases on small
files written here, GermEval (tests/data/GermEval) end to end, and a `words`/`ner` JSONL without
--set data.columns."""

import json

import pytest

from conftest import DATA, assert_clean_error
from taskcli import conll
from taskcli.errors import TaskcliError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GERMEVAL = DATA / "GermEval"

CONLL2003 = (  # CoNLL-2003 layout: token POS chunk NER, here tab-separated, with -DOCSTART- and its blank line
    "-DOCSTART-\t-X-\t-X-\tO\n"
    "\n"
    "EU\tNNP\tB-NP\tB-ORG\n"
    "rejects\tVBZ\tB-VP\tO\n"
    "German\tJJ\tB-NP\tB-MISC\n"
    "\n"
    "Peter\tNNP\tB-NP\tB-PER\n"
    "Blackburn\tNNP\tI-NP\tI-PER\n"
    "\n"
    "-DOCSTART-\t-X-\t-X-\tO\n"
    "\n"
    "BRUSSELS\tNNP\tB-NP\tB-LOC\n"
)


def _write(path, text: str, newline: str = "\n"):
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


def _rows(dsd, split="train"):
    return list(zip(dsd[split]["tokens"], dsd[split]["tags"]))


def test_germeval_folder_reads_as_train_and_validation():
    assert conll.looks_like_conll(GERMEVAL / "train.txt")
    dsd = conll.load(GERMEVAL)
    assert set(dsd) == {"train", "validation"}
    assert (len(dsd["train"]), len(dsd["validation"])) == (11, 11)
    assert sum(map(len, dsd["train"]["tokens"])) == 190 and sum(map(len, dsd["validation"]["tokens"])) == 192
    tokens, tags = _rows(dsd)[0]
    assert tokens[:5] == ["Schartau", "sagte", "dem", '"', "Tagesspiegel"]
    assert tags[:5] == ["B-PER", "O", "O", "O", "B-ORG"]
    assert tokens[21] == "überzeugend"
    assert all(len(t) == len(g) for t, g in _rows(dsd) + _rows(dsd, "validation"))


def test_conll2003_tab_four_columns_with_docstart(tmp_path):
    path = _write(tmp_path / "train.conll", CONLL2003)
    assert _rows(conll.load(path)) == [
        (["EU", "rejects", "German"], ["B-ORG", "O", "B-MISC"]),
        (["Peter", "Blackburn"], ["B-PER", "I-PER"]),
        (["BRUSSELS"], ["B-LOC"]),
    ]
    # params.conll_tag_column picks another column (here the POS tags)
    assert _rows(conll.load(path, tag_column=1))[1] == (["Peter", "Blackburn"], ["NNP", "NNP"])


def test_crlf_trailing_spaces_blank_runs_and_no_final_newline(tmp_path):
    text = "\n\nAlice  B-PER \nMartin I-PER\t\n\n\n\nParis B-LOC\n.  O"  # no newline at the end
    path = _write(tmp_path / "data.txt", text, newline="\r\n")
    assert conll.looks_like_conll(path)
    dsd = conll.load(path)
    assert list(dsd) == ["train"]  # one file not named after a split is train
    assert _rows(dsd) == [(["Alice", "Martin"], ["B-PER", "I-PER"]), (["Paris", "."], ["B-LOC", "O"])]


def test_space_separated_conll2003_and_no_break_space_inside_a_token(tmp_path):
    path = _write(tmp_path / "test.txt", "-DOCSTART- -X- O O\n\n10\u00a0000 CD I-NP O\nfans NNS I-NP O\n")
    dsd = conll.load(path)
    assert list(dsd) == ["test"]
    assert _rows(dsd, "test") == [(["10\u00a0000", "fans"], ["O", "O"])]


def test_folder_of_split_files(tmp_path):
    _write(tmp_path / "train.conll", CONLL2003)
    _write(tmp_path / "dev.conll", "Bonn B-LOC\n")
    _write(tmp_path / "labels.txt", "O\nB-LOC\nB-PER\n")  # a label list beside the data is not data
    dsd = conll.load(tmp_path)
    assert set(dsd) == {"train", "validation"}
    assert len(dsd["train"]) == 3
    assert _rows(dsd, "validation") == [(["Bonn"], ["B-LOC"])]


def test_headers_and_prose_are_not_conll(tmp_path):
    assert not conll.looks_like_conll(_write(tmp_path / "a.tsv", "tokens\tner_tags\n['EU', 'rejects']\t[3, 0]\n"))
    assert not conll.looks_like_conll(_write(tmp_path / "b.tsv", "word\ttag\nEU\tB-ORG\n"))
    assert not conll.looks_like_conll(_write(tmp_path / "c.txt", "Alice went to Paris.\nShe liked it.\n"))
    assert not conll.looks_like_conll(_write(tmp_path / "d.tsv", "sentence\tlabel\nI loved it\t1\n"))
    assert conll.files(tmp_path) is None  # a folder with no CoNLL file is left to the other readers


@pytest.mark.parametrize("text,line,fragment", [
    ("EU B-ORG\nrejects\nGerman B-MISC\n", 2, "expected a token and a tag"),
    ("EU NNP B-ORG\nrejects O\n", 2, "2 columns where the lines above have 3"),
])
def test_malformed_line_names_file_and_line(tmp_path, text, line, fragment):
    path = _write(tmp_path / "train.conll", text)
    with pytest.raises(TaskcliError) as err:
        conll.load(path)
    assert f"{path}:{line}:" in str(err.value) and fragment in str(err.value)


def test_tag_column_out_of_range(tmp_path):
    path = _write(tmp_path / "train.conll", "EU B-ORG\n")
    for column in (2, 0, -2):
        with pytest.raises(TaskcliError, match="conll_tag_column"):
            conll.load(path, tag_column=column)


def test_common_column_names_are_recognised_and_explicit_columns_win(tmp_path):
    from taskcli import data, run as run_mod

    ds = conll.load(_write(tmp_path / "train.conll", "EU B-ORG\n"))["train"]
    ds = ds.rename_columns({"tokens": "words", "tags": "ner"}).add_column("labels", [["X"]])
    assert data._rename(ds, run_mod.prepare("ner", None, [], False)).column_names == ["tokens", "tags", "labels"]
    explicit = run_mod.prepare("ner", None, ["data.columns.tags=labels"], False)
    renamed = data._rename(ds, explicit)
    assert renamed.column_names == ["tokens", "ner", "tags"] and renamed["tags"] == [["X"]]


def test_finetune_and_eval_on_germeval_folder(cli, tmp_path):
    out = tmp_path / "germeval"
    result = cli("finetune", "ner", "--smoke", "--data", GERMEVAL, "--output-dir", out, "--json")
    assert result.exit_code == 0, result.stderr
    labels = set(json.loads((out / "config.json").read_text())["id2label"].values())
    assert {"O", "B-PER", "B-LOCderiv", "I-OTH"} <= labels  # I-OTH occurs in dev.txt only
    result = cli("eval", "ner", "--model", out, "--smoke", "--data", GERMEVAL, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["samples"] == 11 and 0.0 <= report["metrics"]["f1"] <= 1.0  # dev.txt is the eval split


def test_words_and_ner_columns_train_without_set(cli, tmp_path):
    out = tmp_path / "words-ner"
    result = cli("finetune", "ner", "--smoke", "--data", DATA / "conll/sample.json", "--output-dir", out, "--json")
    assert result.exit_code == 0, result.stderr
    labels = set(json.loads((out / "config.json").read_text())["id2label"].values())
    assert {"B-PER", "I-PER", "B-LOC", "B-ORG", "O"} <= labels


def test_malformed_conll_line_is_one_clean_error(cli, tmp_path):
    bad = _write(tmp_path / "train.conll", "EU B-ORG\nrejects O\n\nGermany\n")
    result = cli("finetune", "ner", "--smoke", "--data", bad, "--output-dir", tmp_path / "o")
    assert_clean_error(result, f"{bad}:4:", "token and a tag")
    assert len(result.stderr.strip().splitlines()) == 1
