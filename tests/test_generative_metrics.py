"""ROUGE / sacreBLEU / chrF from taskcli.metrics equal the reference libraries on fixed inputs."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import math  # noqa: E402

import pytest  # noqa: E402

from taskcli import metrics  # noqa: E402

PREDS = [
    "The Met Office issued a yellow warning for ice across Wales.",
    "Sunderland beat Arsenal in a match shown on BBC One.",
    "police were called to the house on saturday",
    "",
]
REFS = [
    "The Met Office has issued a yellow weather warning for ice across most of Wales.",
    "Arsenal were beaten by Sunderland on Match of the Day.",
    "Police were called to a house in the town on Saturday night.",
    "An empty prediction scores zero.",
]


def test_rouge_equals_rouge_score_plain_mean_with_stemming():
    from rouge_score import rouge_scorer

    keys = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(keys, use_stemmer=True)
    per = [scorer.score(r, p) for p, r in zip(PREDS, REFS)]
    expected = {k: sum(s[k].fmeasure for s in per) / len(per) for k in keys}
    got = metrics.rouge(PREDS, REFS)
    assert set(got) == set(keys)
    for k in keys:
        assert got[k] == pytest.approx(expected[k], abs=1e-12)
    assert metrics.rouge(PREDS, REFS) == got  # deterministic (no bootstrap resampling)
    assert metrics.rouge(["the cats sat"], ["the cat sat"])["rouge1"] == 1.0  # stemming: cats -> cat


def test_bleu_and_chrf_equal_sacrebleu_corpus_scores():
    import sacrebleu

    got = metrics.bleu_chrf(PREDS, REFS)
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(PREDS, [REFS]).score, abs=1e-9)
    assert got["chrf"] == pytest.approx(sacrebleu.corpus_chrf(PREDS, [REFS]).score, abs=1e-9)
    perfect = metrics.bleu_chrf(REFS[:3], REFS[:3])
    assert perfect["bleu"] == pytest.approx(100.0) and perfect["chrf"] == pytest.approx(100.0)


def test_perplexity_callback_is_exp_of_eval_loss():
    from taskcli.tasks.lm_common import perplexity_callback

    m = {"eval_loss": 1.25, "eval_runtime": 0.1}
    perplexity_callback().on_evaluate(None, None, None, metrics=m)
    assert m["eval_perplexity"] == pytest.approx(math.exp(1.25))
