"""text-generation (causal LM) and fill-mask (masked LM): smoke learning, pipeline parity, packing on real
WikiExtractor text, streaming, and the task-specific errors."""

import json

import pytest

from conftest import assert_clean_error


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _eval(cli, task, *args):
    result = cli("eval", task, "--smoke", "--json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["metrics"]


@pytest.mark.parametrize("task,recipe", [("text-generation", None), ("text-generation", "gpt2"),
                                         ("fill-mask", None), ("fill-mask", "bert")])
def test_smoke_finetune_cuts_perplexity_fivefold(cli, trained, task, recipe):
    pick = ["--recipe", recipe] if recipe else []
    untrained = _eval(cli, task, *pick)
    out = trained(task, recipe)
    after = _eval(cli, task, "--model", out, *pick)
    assert set(after) >= {"loss", "perplexity"}
    assert after["perplexity"] <= untrained["perplexity"] / 5, (untrained, after)
    # same number as training-time eval (masked LM too: both evals seed the random masks alike)
    assert json.loads((out / "metrics.json").read_text())["perplexity"] == pytest.approx(after["perplexity"], rel=1e-4)


def test_text_generation_infer_equals_pipeline_greedy(cli, trained):
    from transformers import pipeline

    out = trained("text-generation")
    prompts = ["Alice walked to the", "On a sunny morning,", "The market was", "Bob told a friend"]
    result = cli("infer", "clm", *prompts, "--model", out, "--max-new-tokens", "12", "--greedy", "--json")
    assert result.exit_code == 0, result.stderr
    ours = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["input"] for r in ours] == prompts  # input order kept (batches are grouped by length)
    pipe = pipeline("text-generation", model=str(out))
    for prompt, row in zip(prompts, ours):
        expected = pipe(prompt, max_new_tokens=12, do_sample=False)[0]["generated_text"]
        assert row["generated_text"] == expected
        assert row["generated_text"].startswith(prompt) and len(row["generated_text"]) > len(prompt)


def test_text_generation_streams_a_single_prompt_and_sampling_is_seeded(cli, trained, monkeypatch):
    import taskcli.display

    out = trained("text-generation")
    monkeypatch.setattr(taskcli.display, "interactive", lambda: True)  # stdout is a terminal
    shown = cli("infer", "clm", "Alice walked to the", "--model", out, "--max-new-tokens", "8")
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout.startswith("Alice walked to the")  # streamed to stdout as generated, and no table after
    assert "Alice walked to the" not in shown.stderr
    as_json = cli("infer", "clm", "Alice walked to the", "--model", out, "--max-new-tokens", "8", "--json")
    assert as_json.stderr.strip() == ""  # --json: no streaming
    assert shown.stdout == json.loads(as_json.stdout)["generated_text"] + "\n"  # greedy: the same text, once
    runs = [cli("infer", "clm", "Alice", "--model", out, "--do-sample", "--seed", "7", "--temperature", "1.5",
                "--top-k", "20", "--max-new-tokens", "10", "--json").stdout for _ in range(2)]
    assert runs[0] == runs[1]


@pytest.mark.parametrize("recipe", [None, "bert"])
def test_fill_mask_infer_equals_pipeline_and_accepts_generic_masks(cli, trained, recipe):
    from transformers import AutoTokenizer, pipeline

    out = trained("fill-mask", recipe)
    mask = AutoTokenizer.from_pretrained(out).mask_token  # <mask> (RoBERTa) or [MASK] (BERT)
    texts = ["Alice walked to the <mask> and bought 3 apples.", "The day was [MASK].",
             "Bob told a friend that the market sells the best [mask] in town."]
    result = cli("infer", "mlm", *texts, "--model", out, "--top-k", "4", "--json")
    assert result.exit_code == 0, result.stderr
    ours = [json.loads(line) for line in result.stdout.splitlines()]
    pipe = pipeline("fill-mask", model=str(out), top_k=4)
    for text, row in zip(texts, ours):
        expected = pipe(text.replace("<mask>", mask).replace("[MASK]", mask).replace("[mask]", mask))
        got = row["masks"][0]
        assert [f["token"] for f in got] == [e["token"] for e in expected]
        assert [f["sequence"] for f in got] == [e["sequence"] for e in expected]
        assert [f["token_str"] for f in got] == [e["token_str"] for e in expected]
        assert [f["score"] for f in got] == pytest.approx([e["score"] for e in expected], abs=1e-5)
    text = f"The {mask} was sunny, so Bob {mask} at home."
    two = json.loads(cli("infer", "mlm", text, "--model", out, "--top-k", "4", "--json").stdout)
    assert len(two["masks"]) == 2
    expected = pipe(text)  # several masks: one list per mask, the other mask kept in the sequence
    assert [[f["sequence"] for f in m] for m in two["masks"]] == [[e["sequence"] for e in m] for m in expected]


def test_packing_on_wikiextractor_text(realdata):
    """wiki_00 (no file suffix) reads as text; <doc> lines dropped; every block has block_size tokens."""
    from taskcli import data as data_mod
    from taskcli import model_loading, run as run_mod

    run = run_mod.prepare("text-generation", None, ["params.block_size=64"], smoke=True)
    try:
        dsd = data_mod.load(run, str(realdata / "wiki_text" / "wiki_00"))
        run.model_source = model_loading.build_smoke_model(run, dsd)
        run.processor = run.task.load_processor(run)
        blocks = run.task.preprocess(run, dsd["train"], True)
        assert len(blocks) > 10 and {len(b) for b in blocks["input_ids"]} == {64}
        text = run.tokenizer().decode(sum(blocks["input_ids"], []))
        assert "<doc" not in text and "</doc>" not in text
        assert "Anarchism" in text
    finally:
        run.close()


@pytest.mark.parametrize("task,recipe", [("clm", "gpt2"), ("mlm", "bert"), ("mlm", "distilroberta")])
def test_real_wiki_text_finetune_and_eval(cli, realdata, tmp_path, task, recipe):
    wiki = realdata / "wiki_text" / "wiki_00"
    result = cli("finetune", task, "--recipe", recipe, "--smoke", "--data", wiki, "--output-dir", tmp_path / "m",
                 "--set", "train.max_steps=3", "--json")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)["metrics"]
    assert metrics["perplexity"] > 1 and metrics["loss"] > 0


def test_lm_errors(cli, tmp_path, trained):
    assert_clean_error(cli("infer", "mlm", "--smoke", "no mask in this text"), "no mask token")
    assert_clean_error(cli("finetune", "clm", "--smoke", "--set", "params.block_size=5000",
                           "--output-dir", tmp_path / "x"), "block_size 5000 is larger than the model's context")
    out = trained("text-generation")
    long_prompt = " ".join(["Alice walked to the market."] * 80)
    assert_clean_error(cli("infer", "clm", long_prompt, "--model", out), "longer than the model's context")
    assert_clean_error(cli("infer", "clm", "Alice", "--model", out, "--max-new-tokens", "1000"),
                       "exceed the model's context")
