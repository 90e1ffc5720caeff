"""Tiny-model end-to-end runs for the encoder text tasks: finetune -> eval -> infer, pipeline parity,
and runs on real-format samples from tests/data."""

import json

import pytest

from conftest import assert_clean_error

THRESHOLDS = {  # the learning targets on the bundled sample
    ("text-classification", None): ("accuracy", 0.9),
    ("text-classification", "bert"): ("accuracy", 0.9),
    ("token-classification", None): ("f1", 0.8),
    ("token-classification", "bert"): ("f1", 0.8),
    ("question-answering", None): ("f1", 80.0),  # SQuAD scores are percentages
    ("question-answering", "bert"): ("f1", 80.0),
}


@pytest.mark.parametrize("task,recipe", list(THRESHOLDS), ids=[f"{t}-{r or 'default'}" for t, r in THRESHOLDS])
def test_smoke_finetune_learns_its_sample(cli, trained, task, recipe):
    out = trained(task, recipe)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "recipe.yaml", "metrics.json", "README.md"):
        assert (out / name).is_file(), name
    args = ["eval", task, "--model", out, "--smoke", "--json"] + (["--recipe", recipe] if recipe else [])
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    metric, target = THRESHOLDS[(task, recipe)]
    assert report["metrics"][metric] >= target, report
    # eval reuses training's preprocessing and metrics: the numbers agree with the saved final eval
    saved = json.loads((out / "metrics.json").read_text())
    assert saved[metric] == pytest.approx(report["metrics"][metric], abs=1e-6)
    assert report["samples"] == 48


def test_untrained_model_scores_below_the_targets(cli):
    """The smoke thresholds measure learning: an untrained tiny model stays well under them."""
    report = json.loads(cli("eval", "ner", "--smoke", "--json").stdout)
    assert report["metrics"]["f1"] < 0.5


def test_ner_infer_matches_pipeline(cli, trained):
    from transformers import pipeline

    out = trained("token-classification")
    texts = ["Alice Martin works for Globex in Tokyo .", "Nobody went there .",
             "Yesterday Hiro Tanaka met Emma Weber in Berlin and then flew to Oslo with Acme Corp people ."]
    result = cli("infer", "ner", *texts, "--model", out, "--json", "--batch-size", "2")
    ours = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["input"] for o in ours] == texts
    ref = pipeline("token-classification", model=str(out), aggregation_strategy="simple", device="cpu")(texts)
    for mine, theirs in zip(ours, ref):
        assert len(mine["entities"]) == len(theirs)
        for a, b in zip(mine["entities"], theirs):
            assert (a["entity_group"], a["word"], a["start"], a["end"]) == (b["entity_group"], b["word"], b["start"], b["end"])
            assert a["score"] == pytest.approx(float(b["score"]), abs=1e-4)
    assert any(e["entity_group"] == "PER" for e in ours[0]["entities"])


def test_text_classification_infer_matches_pipeline(cli, trained, tmp_path):
    from transformers import pipeline

    out = trained("text-classification")
    texts = ["I loved every minute of it .", "Rude staff and slow service .", "ok", "A brilliant , joyful ride ."]
    path = tmp_path / "in.txt"
    path.write_text("\n".join(texts) + "\n")
    result = cli("infer", "text-classification", path, "--model", out, "--json", "--top-k", "2")
    ours = [json.loads(line) for line in result.stdout.splitlines()]
    ref = pipeline("text-classification", model=str(out), device="cpu", top_k=2)(texts)
    for mine, theirs in zip(ours, ref):
        assert [r["label"] for r in mine["top_k"]] == [r["label"] for r in theirs]
        for a, b in zip(mine["top_k"], theirs):
            assert a["score"] == pytest.approx(b["score"], abs=1e-4)


def test_infer_reads_stdin_and_keeps_input_order(cli, trained):
    out = trained("text-classification")
    texts = ["short", "a much much longer sentence than the others in this list of inputs", "mid size text"]
    result = cli("infer", "text-cls", "-", "--model", out, "--json", "--batch-size", "1", input="\n".join(texts))
    assert [json.loads(l)["input"] for l in result.stdout.splitlines()] == texts


def test_qa_infer_finds_the_answer_span(cli, trained):
    out = trained("question-answering")
    row = {"question": "Where was Jonas Berg born ?",
           "context": "Nobody remembers the weather that day . Jonas Berg was born in Sydney and later worked for Initech ."}
    result = cli("infer", "qa", "--question", row["question"], "--context", row["context"], "--model", out, "--json")
    answer = json.loads(result.stdout)
    assert answer["answer"] == "Sydney"
    assert row["context"][answer["start"]:answer["end"]] == "Sydney" and 0 < answer["score"] <= 1


def test_qa_long_context_is_searched_over_all_windows(cli, trained):
    """An answer far past the first window is still found (overflow windows + stride)."""
    out = trained("question-answering")
    filler = " ".join(["Nobody remembers the weather that day ."] * 12)
    context = filler + " Jonas Berg was born in Sydney and later worked for Initech ."
    item = json.dumps({"question": "Where was Jonas Berg born ?", "context": context})
    answer = json.loads(cli("infer", "qa", item, "--model", out, "--json").stdout)
    assert answer["answer"] == "Sydney" and answer["start"] > 400


def test_qa_input_without_context_is_a_clear_error(cli, trained):
    out = trained("question-answering")
    assert_clean_error(cli("infer", "qa", '{"question": "Who?"}', "--model", out), "'question' and 'context'")


# ----------------------------------------------------------------- real-format samples (tests/data)


def test_ner_on_conll_sample(cli, realdata, tmp_path):
    out = tmp_path / "conll"
    result = cli("finetune", "ner", "--smoke", "--data", realdata / "conll/sample.json", "--output-dir", out,
                 "--set", "data.columns.tags=ner", "--set", "data.columns.tokens=words", "--set", "train.epochs=30",
                 "--json")
    assert result.exit_code == 0, result.stderr
    labels = json.loads((out / "config.json").read_text())["id2label"].values()
    assert {"B-PER", "I-PER", "B-LOC", "B-ORG", "O"} <= set(labels)
    report = json.loads(cli("eval", "ner", "--model", out, "--smoke", "--data", realdata / "conll/sample.json",
                            "--set", "data.columns.tags=ner", "--set", "data.columns.tokens=words", "--json").stdout)
    assert report["samples"] == 1 and 0.0 <= report["metrics"]["f1"] <= 1.0  # 10 rows -> 9 train / 1 carved eval


def test_qa_on_squad_v2_sample_with_unanswerable_questions(cli, realdata, tmp_path):
    out = tmp_path / "squad"
    result = cli("finetune", "qa", "--smoke", "--data", realdata / "SQUAD/sample.json", "--output-dir", out,
                 "--set", "data.eval_fraction=0.5", "--json")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)["metrics"]
    assert {"exact_match", "f1", "HasAns_f1", "NoAns_f1"} <= set(metrics)  # v2 breakdown: data has no-answer rows


def test_sentence_pairs_on_mrpc_tsv(cli, realdata, tmp_path):
    out = tmp_path / "mrpc"
    cols = ["--set", "data.columns={text: '#1 String', text_pair: '#2 String', label: Quality}"]
    result = cli("finetune", "text-classification", "--recipe", "bert", "--smoke", "--data", realdata / "MRPC/train.tsv",
                 "--output-dir", out, *cols, "--set", "smoke.data={}", "--set", "data.eval_fraction=0.34", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "0", "1": "1"}
    pair = json.dumps({"text": "He left early.", "text_pair": "He went away early."})
    answer = json.loads(cli("infer", "text-classification", pair, "--model", out, "--json").stdout)
    assert answer["label"] in {"0", "1"} and answer["input"]["text_pair"] == "He went away early."
    dev = cli("eval", "text-classification", "--recipe", "bert", "--model", out, "--data", realdata / "MRPC/dev.csv",
              "--set", "data.columns={text: sentence1, text_pair: sentence2, label: label}", "--json")
    assert_clean_error(dev, "labels don't match")  # dev.csv labels are words, the model knows 0/1


# ----------------------------------------------------------------------------- regression (STS-B style)


def test_regression_recipe_learns_scores_and_infers_numbers(cli, trained):
    from transformers import pipeline

    out = trained("text-classification", "bert-stsb")
    assert json.loads((out / "config.json").read_text())["problem_type"] == "regression"
    before = json.loads(cli("eval", "text-cls", "--recipe", "bert-stsb", "--smoke", "--json").stdout)["metrics"]
    after = json.loads(cli("eval", "text-cls", "--recipe", "bert-stsb", "--smoke", "--model", out, "--json").stdout)
    assert after["samples"] == 40 and before["pearson"] < 0.5 and after["metrics"]["pearson"] >= 0.9, (before, after)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["pearson"] == pytest.approx(after["metrics"]["pearson"], abs=1e-6)
    pairs = [{"text": "Great acting and a clever story .", "text_pair": "Great acting and a clever story ."},
             {"text": "Rude staff and slow service .", "text_pair": "Acme Corp opened a new office in Oslo ."}]
    rows = [json.loads(line) for line in cli("infer", "text-cls", *map(json.dumps, pairs), "--model", out,
                                              "--json").stdout.splitlines()]
    assert rows[0]["label"] == "score" and rows[0]["score"] > 3.5 > 1.5 > rows[1]["score"]  # raw numbers, 0-5 scale
    pipe = pipeline("text-classification", model=str(out), device="cpu", function_to_apply="none")
    for pair, row in zip(pairs, rows):
        assert pipe(pair)["score"] == pytest.approx(row["score"], abs=1e-4)


def test_a_one_output_model_without_problem_type_infers_the_number(cli, trained, tmp_path):
    """textattack/bert-base-uncased-STS-B (bert-stsb's infer default) has one output and no problem_type: infer
    gives its raw number, as transformers' loss treats such a head, not a sigmoid in (0, 1); the recipe's
    params.regression decides when set."""
    import shutil

    out = tmp_path / "no-problem-type"
    shutil.copytree(trained("text-classification", "bert-stsb"), out)
    config = json.loads((out / "config.json").read_text())
    del config["problem_type"]
    (out / "config.json").write_text(json.dumps(config))
    pair = json.dumps({"text": "Great acting and a clever story .", "text_pair": "Great acting and a clever story ."})

    def score(*args):
        result = cli("infer", "text-cls", pair, "--model", out, "--json", *args)
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)["score"]

    raw = score()
    assert raw > 3.5  # the 0-5 scale (a sigmoid would give < 1)
    assert score("--recipe", "bert-stsb") == pytest.approx(raw, abs=1e-6)
    assert score("--set", "params.regression=false") < 1.0  # asked for a single-logit classifier: a sigmoid


def test_real_valued_labels_switch_to_regression(cli, realdata, tmp_path):
    """The default (classification) recipe on STS-B's float scores: regression without being told."""
    result = cli("finetune", "text-cls", "--smoke", "--data", realdata / "STS-B" / "train.tsv", "--output-dir",
                 tmp_path / "m", "--set", "data.columns={text: sentence1, text_pair: sentence2, label: score}", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"pearson", "spearman", "mse"} <= set(report["metrics"]) and "accuracy" not in report["metrics"]
    assert json.loads((tmp_path / "m" / "config.json").read_text())["id2label"] == {"0": "score"}


def test_correlation_scores_equal_numpy():
    import numpy as np
    from sklearn.metrics import mean_squared_error

    from taskcli.metrics import correlation

    rng = np.random.default_rng(0)
    refs = rng.uniform(0, 5, 50)
    preds = refs + rng.normal(0, 1, 50)
    got = correlation(preds, refs)
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731 - distinct values: ranks are argsort of argsort
    assert got["pearson"] == pytest.approx(np.corrcoef(preds, refs)[0, 1], abs=1e-12)
    assert got["spearman"] == pytest.approx(np.corrcoef(rank(preds), rank(refs))[0, 1], abs=1e-12)
    assert got["mse"] == pytest.approx(mean_squared_error(refs, preds), abs=1e-12)
    assert correlation([1.0, 1.0, 1.0], [0.0, 2.0, 4.0])["pearson"] == 0.0  # constant prediction: 0, not NaN
