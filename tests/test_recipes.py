"""Every shipped recipe validates; recipe errors are complete, located and helpful."""

import importlib.util

import pytest

from taskcli import recipe, registry
from taskcli.errors import TaskcliError
from conftest import REPO, assert_clean_error

SHIPPED = recipe.shipped()


# Recipes per task: one per architecture the product names, 2 unless listed. Update when adding recipes, so a
# lost file cannot pass unnoticed.
RECIPES_PER_TASK = {"text-classification": 4,  # distilbert, bert (pairs), bert-stsb (regression), multi-label
                    "object-detection": 1,  # DETR
                    "depth-estimation": 1}  # GLPN: the one depth model transformers can train


def test_recipes_are_found_recursively_one_per_architecture():
    tasks = registry.all_tasks()
    assert len(SHIPPED) == sum(RECIPES_PER_TASK.get(t.name, 2) for t in tasks) == 26
    for task in tasks:
        mine = [p for p in SHIPPED if p.parent.name == task.name]
        assert len(mine) == RECIPES_PER_TASK.get(task.name, 2), task.name
        assert (recipe.RECIPES_DIR / task.name / f"{task.default_recipe}.yaml") in mine


def test_recipes_live_at_the_top_of_the_repository_and_are_found_by_import():
    """recipes/<task>/*.yaml (the layout the README shows), reached as the package taskcli.recipes: the editable
    install maps it there (a wheel holds it inside taskcli/: tests/test_packaging.py)."""
    assert recipe.RECIPES_DIR == REPO / "recipes"
    assert SHIPPED and all(p.is_relative_to(REPO / "recipes") for p in SHIPPED)
    spec = importlib.util.find_spec("taskcli.recipes")
    assert spec and spec.origin == str(REPO / "recipes" / "__init__.py"), \
        "taskcli.recipes does not import from recipes/: an editable install made before recipes/ moved; run make install"


@pytest.mark.parametrize("path", SHIPPED, ids=[recipe.shipped_name(p) for p in SHIPPED])
def test_every_shipped_name_resolves(cli, path):
    task_name, short = recipe.shipped_name(path).split("/")
    task = registry.get(task_name)
    assert recipe.find(task, short) == path  # --recipe bert
    assert recipe.find(task, f"{task_name}/{short}") == path  # --recipe token-classification/bert
    if short == task.default_recipe:
        assert recipe.find(task, None) == path  # no --recipe
    assert cli("recipes", "show", f"{task_name}/{short}").stdout == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", SHIPPED, ids=[recipe.shipped_name(p) for p in SHIPPED])
def test_shipped_recipe_validates_with_header_command(path):
    task_name, parsed = recipe.validate_file(path)
    assert parsed.model.checkpoint and parsed.data.dataset, "recipes name a real hub checkpoint and dataset"
    header = path.read_text().splitlines()[:6]
    assert header[0].startswith("#") and any("taskcli finetune" in line for line in header)
    recipe.resolve(registry.get(task_name), str(path), smoke=True)  # smoke overrides validate too


def _write(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


BASE = "task: token-classification\nmodel:\n  checkpoint: x\n  type: distilbert\n"


def test_all_errors_at_once_with_paths_lines_and_suggestions(tmp_path):
    p = _write(tmp_path, BASE + "train:\n  epochz: 3\n  learning_rate: fast\ndata:\n  max_lenght: 5\n")
    with pytest.raises(TaskcliError) as err:
        recipe.validate_file(p)
    text = str(err.value)
    assert "3 errors" in text
    assert "train.epochz" in text and "did you mean 'epochs'" in text and f"{p}:6" in text
    assert "train.learning_rate" in text and f"{p}:7" in text
    assert "data.max_lenght" in text and "did you mean 'max_length'" in text


def test_unknown_top_level_section_and_missing_model(tmp_path):
    p = _write(tmp_path, "task: ner\nmodle: {}\n")
    text = str(pytest.raises(TaskcliError, recipe.validate_file, p).value)
    assert "'modle'" in text and "did you mean 'model'" in text and "missing required key 'model'" in text


def test_task_specific_params_are_checked(tmp_path):
    p = _write(tmp_path, BASE.replace("token-classification", "question-answering") + "params:\n  doc_strid: 3\n")
    assert "did you mean 'doc_stride'" in str(pytest.raises(TaskcliError, recipe.validate_file, p).value)


def test_malformed_yaml_names_file_and_line(cli, tmp_path):
    p = _write(tmp_path, BASE + "train: [unclosed\n")
    assert_clean_error(cli("finetune", "ner", "--recipe", p, "--dry-run"), "malformed yaml", str(p))


def test_unknown_recipe_and_bad_set(cli):
    assert_clean_error(cli("finetune", "ner", "--recipe", "bertt", "--dry-run"), "unknown recipe", "did you mean")
    assert_clean_error(cli("finetune", "ner", "--set", "train.epochs", "--dry-run"), "bad --set")
    assert_clean_error(cli("finetune", "ner", "--set", "train.epochs=lots", "--dry-run"), "train.epochs")
    assert_clean_error(cli("finetune", "ner", "--set", "train.epoch=2", "--dry-run"), "did you mean 'epochs'")
    # an error in a --set value names the --set item, not a line of the recipe file it never was in
    result = cli("finetune", "ner", "--set", "train.epochs=lots", "--dry-run")
    assert "--set train.epochs=lots:" in result.stderr and ".yaml:" not in result.stderr


def test_recipe_for_another_task_is_refused(cli):
    path = recipe.RECIPES_DIR / "question-answering" / "distilbert.yaml"
    assert_clean_error(cli("finetune", "ner", "--recipe", path, "--dry-run"), "not 'token-classification'")


def test_validate_checks_every_file_and_takes_shipped_names(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: token-classification\nmodel: {checkpoint: x, type: bert}\ntrain: {epoch: 2}\n")
    good = tmp_path / "good.yaml"
    good.write_text("task: token-classification\nmodel: {checkpoint: x, type: bert}\n")
    result = cli("recipes", "validate", bad, "ner/bert", good, "text-classification/bert-stsb")
    assert result.exit_code == 1
    assert "ok  ner/bert" in result.stdout and f"ok  {good}" in result.stdout and "bert-stsb" in result.stdout
    assert "train.epoch" in result.stderr and "did you mean 'epochs'" in result.stderr
