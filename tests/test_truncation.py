"""Nothing is cut silently: NER reads a long text whole (overlapping windows), and the tasks that truncate their
inputs (text-classification, summarization, translation) say how many, on stderr and in the --json rows."""

import json

from conftest import REPO, assert_clean_error

NER_SAMPLE = REPO / "taskcli" / "samples" / "token-classification.jsonl"


def _json_rows(result):
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_ner_covers_a_text_longer_than_the_window(cli, trained, one_torch_thread, tmp_path):
    out = trained("token-classification")
    sentences = [" ".join(json.loads(line)["tokens"]) for line in NER_SAMPLE.read_text().splitlines() if line.strip()]
    text = " ".join(sentences * 2)  # ~900 tokens: dozens of 32-token windows, and more than any one 512-token pass
    last = sentences[-1]
    path = tmp_path / "long.txt"
    path.write_text(text + "\n")
    window = ("--model", out, "--json", "--set", "data.max_length=32")

    [whole] = _json_rows(cli("infer", "ner", path, *window))
    assert whole["input"] == text
    starts = [e["start"] for e in whole["entities"]]
    assert starts == sorted(set(starts))  # merged: no entity twice from two overlapping windows
    for e in whole["entities"]:  # offsets index the original text (the smoke tokenizer is uncased)
        assert text[e["start"]:e["end"]].lower() == e["word"], e

    # The last sentence, far past the first window, is tagged as when it is read alone.
    [alone] = _json_rows(cli("infer", "ner", last, *window))
    tail = len(text) - len(last)
    found = [(e["entity_group"], e["word"], e["start"] - tail, e["end"] - tail)
             for e in whole["entities"] if e["start"] >= tail]
    assert found, whole["entities"][-3:]
    assert found == [(e["entity_group"], e["word"], e["start"], e["end"]) for e in alone["entities"]]


def test_ner_stride_must_fit_the_window(cli, one_torch_thread):
    result = cli("infer", "ner", "Bob Stone works for Initech .", "--smoke",
                 "--set", "data.max_length=16", "--set", "params.stride=14")
    assert_clean_error(result, "params.stride is 14 tokens", "14 text tokens", "data.max_length")


def test_text_classification_says_what_it_truncated(cli, one_torch_thread, tmp_path):
    path = tmp_path / "in.txt"
    path.write_text(" ".join(["great"] * 600) + "\nfine .\n")  # the smoke model reads 512 tokens at most
    result = cli("infer", "text-classification", path, "--smoke", "--json")
    long, short = _json_rows(result)
    assert long["truncated"] is True and long["input_tokens"] > 512
    assert "truncated" not in short and "input_tokens" not in short
    assert "note: 1 of 2 inputs was longer than 512 tokens and was truncated to 512" in result.stderr


def test_seq2seq_says_what_it_truncated(cli, one_torch_thread, tmp_path):
    path = tmp_path / "in.jsonl"  # lines (a .txt file is one whole document to summarization)
    texts = [" ".join(["the report"] * 40), "a short one .", " ".join(["more text"] * 30)]
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    for task, key in (("summarization", "summary_text"), ("translation", "translation_text")):
        result = cli("infer", task, path, "--smoke", "--json", "--set", "data.max_length=64", "--max-new-tokens", "2")
        rows = _json_rows(result)
        assert [key in r for r in rows] == [True] * 3
        assert [r.get("truncated", False) for r in rows] == [True, False, True], task
        assert rows[0]["input_tokens"] > 64 and rows[2]["input_tokens"] > 64
        assert "note: 2 of 3 inputs were longer than 64 tokens and were truncated to 64 (data.max_length)" \
            in result.stderr, task
