"""Training controls users expect: early stopping, class weights, LoRA, trackers, quality gates, the run report."""

import json
import os

import pytest
import yaml
from PIL import Image

from conftest import assert_clean_error
from test_provenance import reviews

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_early_stopping_stops_a_run_that_cannot_improve(cli, tmp_path):
    out = tmp_path / "es"
    # a learning rate of ~0 cannot improve accuracy: patience 2 ends training at the third evaluation
    result = cli("finetune", "text-cls", "--smoke", "--early-stopping", "2", "--set", "train.learning_rate=1e-12",
                 "--set", "train.eval_strategy=epoch", "--set", "train.epochs=20", "-o", out, "--json")
    assert result.exit_code == 0, result.stderr
    scored = json.loads(result.stdout)["scored"]
    assert scored["checkpoint"] == "best" and scored["stopped_early_at"] == 18 and scored["planned_steps"] == 120
    saved = yaml.safe_load((out / "recipe.yaml").read_text())
    assert saved["train"]["early_stopping_patience"] == 2
    assert "Early stopping ended training at step 18 of 120" in (out / "README.md").read_text()


def test_early_stopping_without_evaluations_is_refused(cli, tmp_path):
    result = cli("finetune", "text-cls", "--smoke", "--early-stopping", "2", "--set", "train.eval_strategy=no",
                 "-o", tmp_path / "x")
    assert_clean_error(result, "early_stopping_patience needs evaluations", "eval_strategy")


def test_weighted_loss_is_the_hand_computed_one():
    import torch

    from taskcli.trainer import summed_cross_entropy

    torch.manual_seed(0)
    logits = torch.randn(6, 3)
    labels = torch.tensor([0, 1, 2, 2, -100, 1])
    weights = [0.5, 2.0, 1.5]
    got = summed_cross_entropy({"logits": logits}, labels, weights=weights)
    logp = torch.log_softmax(logits, -1)
    kept = [(i, int(y)) for i, y in enumerate(labels) if y != -100]
    by_hand = -sum(weights[y] * float(logp[i, y]) for i, y in kept) / len(kept)
    assert float(got) == pytest.approx(by_hand, abs=1e-6)
    plain = summed_cross_entropy({"logits": logits}, labels)
    assert float(plain) == pytest.approx(-sum(float(logp[i, y]) for i, y in kept) / len(kept), abs=1e-6)
    assert abs(float(got) - float(plain)) > 1e-3


def test_auto_class_weights_balance_the_training_counts(cli, tmp_path):
    data = reviews(tmp_path / "reviews.csv")  # 27 good / 9 bad / 9 meh; 40 training rows after the stratified split
    out = tmp_path / "cw"
    result = cli("finetune", "text-cls", "--smoke", "--data", data, "--class-weights", "auto",
                 "--set", "train.max_steps=2", "-o", out)
    assert result.exit_code == 0, result.stderr
    weights = yaml.safe_load((out / "recipe.yaml").read_text())["provenance"]["class_weights"]
    counts = {"good": 24, "bad": 8, "meh": 8}  # 10% held out per class, by stratification
    for name, n in counts.items():
        assert weights[name] == pytest.approx(40 / (3 * n)), name
    wrong = cli("finetune", "text-cls", "--smoke", "--data", data, "--set", "train.class_weights={great: 2}",
                "-o", tmp_path / "cw2")
    assert_clean_error(wrong, "unknown label 'great'", "bad, good, meh")


def test_lora_trains_few_parameters_and_saves_a_merged_model_equal_to_the_adapter(cli, trained, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    base = trained("text-classification")
    out = tmp_path / "lora"
    result = cli("finetune", "text-cls", "--model", base, "--smoke", "--lora", "--set", "train.epochs=2",
                 "--set", "train.eval_strategy=epoch", "-o", out)
    assert result.exit_code == 0, result.stderr
    prov = yaml.safe_load((out / "recipe.yaml").read_text())["provenance"]["model"]
    assert 0 < prov["trainable"] < prov["parameters"] / 3
    assert (out / "adapter" / "adapter_config.json").is_file()

    tok = AutoTokenizer.from_pretrained(out)
    batch = tok(["a wonderful film", "a dull and tedious plot"], return_tensors="pt", padding=True)
    merged = AutoModelForSequenceClassification.from_pretrained(out).eval()
    on_base = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(base), out / "adapter").eval()
    with torch.no_grad():
        assert torch.allclose(merged(**batch).logits, on_base(**batch).logits, atol=1e-5)
        # and the adapter changed something: the base model alone predicts differently
        plain = AutoModelForSequenceClassification.from_pretrained(base).eval()
        assert not torch.allclose(plain(**batch).logits, merged(**batch).logits, atol=1e-4)
    assert pipeline("text-classification", model=str(out))("a wonderful film")[0]["label"] in ("negative", "positive")

    more = cli("finetune", "text-cls", "--model", base, "--smoke", "--lora", "--set", "train.epochs=3",
               "--set", "train.eval_strategy=epoch", "-o", out, "--resume")
    assert more.exit_code == 0, more.stderr
    flat = "".join(more.stderr.split())
    assert f"continuingfrom{out}/checkpoint-" in flat and "of18)" in flat, more.stderr


def test_tensorboard_tracker_writes_events_and_a_missing_tracker_names_its_extra(cli, tmp_path):
    out = tmp_path / "tb"
    result = cli("finetune", "text-cls", "--smoke", "--report-to", "tensorboard", "--set", "train.max_steps=10",
                 "--set", "train.logging_steps=2", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert list(out.rglob("events.out.tfevents.*"))
    assert yaml.safe_load((out / "recipe.yaml").read_text())["train"]["report_to"] == ["tensorboard"]
    missing = cli("finetune", "text-cls", "--smoke", "--report-to", "wandb", "-o", tmp_path / "w")
    assert_clean_error(missing, "wandb package", "pip install 'taskcli[wandb]'")


@pytest.fixture(scope="module")
def reported(cli, tmp_path_factory):
    """A smoke text-classification run with its report (conftest turns the report off for other tests)."""
    out = tmp_path_factory.mktemp("reported") / "tc"
    os.environ["TASKCLI_REPORT"] = "1"
    try:
        result = cli("finetune", "text-cls", "--smoke", "-o", out)
    finally:
        os.environ["TASKCLI_REPORT"] = "0"
    assert result.exit_code == 0, result.stderr
    return out


def test_run_report_is_written_and_listed_in_the_model_card(cli, reported, tmp_path):
    out = reported
    card = (out / "README.md").read_text()
    for name in ("training_curves", "confusion_matrix", "per_class_f1", "metrics"):
        png = out / "report" / f"{name}.png"
        Image.open(png).verify()
        assert f"(report/{name}.png)" in card, name
    folder = tmp_path / "evrep"
    result = cli("eval", "text-cls", "--model", out, "--smoke", "--report", folder, "--json")
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["confusion_matrix.png", "metrics.png", "per_class_f1.png",
                                                        "worst_examples.md"]
    again = cli("eval", "text-cls", "--model", out, "--smoke", "--report", folder)
    assert_clean_error(again, "not empty")


def test_gates(cli, trained, tmp_path):
    model = trained("text-classification")
    ok = cli("eval", "text-cls", "--model", model, "--smoke", "--gate", "accuracy>=0.5", "--gate", "loss<=100")
    assert ok.exit_code == 0, ok.stderr
    failed = cli("eval", "text-cls", "--model", model, "--smoke", "--gate", "accuracy>1", "--gate", "f1>=0", "--json")
    assert failed.exit_code == 3
    assert json.loads(failed.stdout)["metrics"]["accuracy"] <= 1  # the results are still printed
    lines = [line for line in failed.stderr.splitlines() if line.startswith("gate failed")]
    assert len(lines) == 1 and lines[0].startswith("gate failed: accuracy = ") and "needs > 1" in lines[0]
    unknown = cli("eval", "text-cls", "--model", model, "--smoke", "--gate", "bleu>=1")
    assert_clean_error(unknown, "'bleu'", "accuracy", "f1")
    # a malformed gate fails before any training
    bad = cli("finetune", "text-cls", "--smoke", "--gate", "f1 => 0.9", "-o", tmp_path / "never")
    assert_clean_error(bad, "bad gate", "'f1 => 0.9'")
    assert not (tmp_path / "never").exists()
    fine = cli("finetune", "text-cls", "--smoke", "--set", "train.max_steps=2", "--gate", "accuracy>1.5",
               "-o", tmp_path / "g")
    assert fine.exit_code == 3 and "gate failed: accuracy" in fine.stderr
    assert yaml.safe_load((tmp_path / "g" / "recipe.yaml").read_text())["eval"]["gates"] == ["accuracy>1.5"]


@pytest.mark.parametrize("task", ["summarization", "object-detection", "automatic-speech-recognition", "fill-mask"])
def test_lora_works_beyond_classification(cli, tmp_path, task):
    """Encoder-decoder generation, a detection head, Whisper, a tied language-model head: adapters on the body,
    a merged model that loads as it is."""
    import transformers

    out = tmp_path / "lora"
    result = cli("finetune", task, "--smoke", "--lora", "--set", "train.max_steps=2", "--set", "train.eval_strategy=no",
                 "-o", out)
    assert result.exit_code == 0, result.stderr
    assert "UserWarning" not in result.stderr
    prov = yaml.safe_load((out / "recipe.yaml").read_text())["provenance"]["model"]
    assert 0 < prov["trainable"] < prov["parameters"] / 2
    config = transformers.AutoConfig.from_pretrained(out)
    model_class = getattr(transformers, config.architectures[0])
    assert not any("lora_" in name for name, _ in model_class.from_pretrained(out).named_parameters())


def test_worst_examples_are_the_highest_losses_with_predictions(reported):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = reported
    table = (out / "report" / "worst_examples.md").read_text()
    assert "(report/worst_examples.md)" in (out / "README.md").read_text()
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 5
    losses = [float(r[2]) for r in rows]
    assert losses == sorted(losses, reverse=True)
    # the first row's loss is that text's cross-entropy under the saved model, and its prediction is infer's
    text, reference, prediction = rows[0][3], rows[0][4], rows[0][5].rstrip(" |")
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        logits = model(**tok(text, return_tensors="pt")).logits[0]
    label = model.config.label2id[reference]
    assert float(-torch.log_softmax(logits, -1)[label]) == pytest.approx(losses[0], abs=2e-4)
    assert prediction.split()[0] == model.config.id2label[int(logits.argmax())]


def test_worst_examples_of_a_vision_task_are_drawn(cli, tmp_path, report_on):
    out = tmp_path / "det"
    result = cli("finetune", "object-detection", "--smoke", "--set", "train.max_steps=2", "-o", out)
    assert result.exit_code == 0, result.stderr
    drawn = sorted((out / "report" / "worst").rglob("*.png"))
    assert len(drawn) == 5
    assert all(f"({p.relative_to(out / 'report').as_posix()})" in (out / "report" / "worst_examples.md").read_text()
               for p in drawn)


@pytest.mark.parametrize("task", ["text-classification", "text-generation"])
def test_the_kept_model_is_not_evaluated_twice(cli, tmp_path, task):
    """The final metrics are the training-time evaluation of the kept checkpoint (with what the task's callbacks add,
    e.g. perplexity), and equal a separate `taskcli eval` of the saved model."""
    out = tmp_path / "run"
    result = cli("finetune", task, "--smoke", "--set", "train.epochs=2", "--set", "train.eval_strategy=epoch",
                 "-o", out, "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("eval @ epoch") == 2  # one per epoch, none after training
    final = json.loads(result.stdout)["metrics"]
    again = json.loads(cli("eval", task, "--model", out, "--smoke", "--json").stdout)["metrics"]
    scalars = {k for k, v in final.items() if isinstance(v, float)}
    assert scalars == {k for k, v in again.items() if isinstance(v, float)}
    for key in scalars:
        assert final[key] == pytest.approx(again[key], rel=1e-5, abs=1e-6), key


@pytest.mark.parametrize("given, fragments", [
    ("save_stratgy=steps", ["train.trainer_args.save_stratgy", "did you mean 'save_strategy'"]),
    # a recipe field's setting given again: checkpoints out of the run's folder, or a run unlike its recipe.yaml
    ("output_dir=elsewhere", ["train.trainer_args.output_dir", "train.output_dir (or -o) sets it"]),
    ("learning_rate=0.1", ["train.trainer_args.learning_rate", "set train.learning_rate instead"]),
    ("warmup_ratio=0.1", ["train.trainer_args.warmup_ratio", "train.warmup_ratio sets it"]),
])
def test_a_wrong_trainer_arg_is_one_line_before_anything_loads(cli, tmp_path, given, fragments):
    result = cli("finetune", "ner", "--smoke", "-o", tmp_path / "out", "--set", f"train.trainer_args.{given}")
    assert_clean_error(result, *fragments)
    assert not (tmp_path / "out").exists()  # stopped before the output dir, the data and the model


def test_yamls_no_is_the_strategy_no_and_stays_false_elsewhere():
    """`--set train.trainer_args.save_strategy=no` reaches the recipe as false (YAML 1.1), which the Trainer refused
    ("False is not a valid SaveStrategy"); a boolean argument keeps its false."""
    from taskcli.training_args import trainer_args

    given = {"save_strategy": False, "logging_strategy": "epoch", "greater_is_better": False, "save_steps": 50}
    assert trainer_args(given) == {"save_strategy": "no", "logging_strategy": "epoch", "greater_is_better": False,
                                   "save_steps": 50}
