"""CLI wiring: commands, help, version, task lookup, recipes commands, start-up imports."""

import json
import subprocess
import sys

from conftest import NOT_FOR_INFER, REPO, assert_clean_error, modules_loaded


def test_help_imports_no_heavy_libraries():
    code = ("import sys; from taskcli.cli import app\n"
            "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'datasets', 'accelerate') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert "HEAVY []" in out.stdout


def test_tasks_command_imports_no_heavy_libraries():
    code = ("import sys; from taskcli.cli import app\n"
            "try:\n    app(['tasks', '--json'])\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert "HEAVY []" in out.stdout


def test_one_line_infer_imports_no_training_data_or_report_code(trained):
    """Issue 20's start-up: infer with a PyTorch model loads its model code, not the Trainer's (whose callbacks
    pull in training_args and peft, ~0.4 s), datasets, metrics or the report."""
    model = trained("token-classification")
    args = ["infer", "ner", "--model", model, "Alice works in Paris .", "--json"]
    assert modules_loaded(args, NOT_FOR_INFER + ("transformers.modeling_utils",)) == ["transformers.modeling_utils"]


def test_version(cli):
    from taskcli import __version__

    result = cli("--version")
    assert result.exit_code == 0 and __version__ in result.stdout


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "taskcli", "tasks", "--json"], capture_output=True, text=True,
                         cwd=REPO, check=True)
    assert {"task": "token-classification"}.items() <= json.loads(out.stdout)[1].items()


def test_every_verb_has_help_with_examples(cli):
    for verb in ("finetune", "eval", "infer"):
        result = cli(verb, "--help")
        assert result.exit_code == 0
        assert "Examples" in result.stdout and "--set" in result.stdout


def test_tasks_table_lists_every_registered_task(cli):
    from taskcli import registry

    rows = json.loads(cli("tasks", "--json").stdout)
    assert [r["task"] for r in rows] == registry.names()
    ner = next(r for r in rows if r["task"] == "token-classification")
    assert "ner" in ner["aliases"] and ner["default_architecture"] == "distilbert" and ner["default_recipe"] == "distilbert"
    assert ner["recipes"][0] == "distilbert" and "bert" in ner["recipes"]
    assert "f1" in ner["metrics"]


def test_aliases_resolve_to_tasks():
    from taskcli import registry

    assert registry.get("ner").name == "token-classification"
    assert registry.get("QA").name == "question-answering"
    assert registry.get("text_classification").name == "text-classification"


def test_unknown_task_suggests_the_closest(cli):
    result = cli("finetune", "token-clasification", "--dry-run")
    assert_clean_error(result, "unknown task", "did you mean 'token-classification'")


def test_recipes_list_show_validate(cli, tmp_path):
    listing = json.loads(cli("recipes", "list", "ner", "--json").stdout)
    assert {r["recipe"] for r in listing} == {"token-classification/distilbert", "token-classification/bert"}
    assert cli("recipes", "list").exit_code == 0
    shown = cli("recipes", "show", "token-classification/distilbert")
    assert shown.exit_code == 0 and shown.stdout.startswith("#") and "checkpoint:" in shown.stdout
    path = tmp_path / "mine.yaml"
    path.write_text(shown.stdout)
    ok = cli("recipes", "validate", path)
    assert ok.exit_code == 0 and "ok" in ok.stdout


def test_dry_run_applies_set_with_types(cli):
    result = cli("finetune", "ner", "--dry-run", "--json", "--set", "train.epochs=1.5",
                 "--set", "train.precision=bf16", "--set", "data.max_train_samples=10")
    assert result.exit_code == 0, result.stderr
    resolved = json.loads(result.stdout)["resolved"]
    assert resolved["train"]["epochs"] == 1.5 and resolved["train"]["precision"] == "bf16"
    assert resolved["data"]["max_train_samples"] == 10


def test_smoke_dry_run_merges_smoke_overrides(cli):
    result = cli("finetune", "qa", "--dry-run", "--json", "--smoke", "--set", "train.epochs=2")
    resolved = json.loads(result.stdout)["resolved"]
    assert resolved["data"]["max_length"] == 96  # from the recipe's smoke section
    assert resolved["train"]["epochs"] == 2  # --set wins over smoke overrides
    assert json.loads(result.stdout)["output_dir"].endswith("question-answering-distilbert-smoke")
