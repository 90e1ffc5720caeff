"""Adding a task is one module + one registry line + a recipe + a sample (README "Adding a task"): a toy task from
tests/toy/ is registered the way a real one is and runs every verb through the CLI."""

from __future__ import annotations

import json

import pytest

from taskcli import registry

RECIPE = """\
# A toy recipe: taskcli finetune language-identification --smoke --recipe THIS
task: language-identification
model: {checkpoint: distilbert/distilbert-base-uncased, type: distilbert}
data: {max_length: 32}
smoke:
  train: {epochs: 30, learning_rate: 3.0e-3, batch_size: 6, logging_steps: 10, save_total_limit: 1}
"""


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setattr(registry, "_MODULES", (*registry._MODULES, "toy.language_id"))
    registry.all_tasks.cache_clear()
    yield registry.get("langid")
    registry.all_tasks.cache_clear()


def test_the_registry_line_is_all_it_takes_to_be_listed(cli, toy):
    assert toy.name == "language-identification"
    listed = cli("tasks", "--json")
    assert listed.exit_code == 0, listed.stderr
    toy_row = [row for row in json.loads(listed.stdout) if row["task"] == "language-identification"]
    assert toy_row and toy_row[0]["aliases"] == ["langid"] and toy_row[0]["modality"] == "text"


def test_a_toy_task_finetunes_evaluates_and_infers(cli, toy, tmp_path, one_torch_thread):
    recipe = tmp_path / "toy.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / "run"
    trained = cli("finetune", "langid", "--smoke", "--recipe", recipe, "-o", out, "--json")
    assert trained.exit_code == 0, trained.stderr
    saved = json.loads((out / "config.json").read_text())
    assert sorted(saved["id2label"].values()) == ["de", "en", "fr"]
    assert (out / "recipe.yaml").read_text().count("task: language-identification") == 1
    scored = cli("eval", "langid", "--smoke", "--recipe", recipe, "--model", out, "--json")
    assert scored.exit_code == 0, scored.stderr
    assert json.loads(scored.stdout)["metrics"]["accuracy"] >= 0.8  # it learned (memorised) its sample
    rows = cli("infer", "langid", "--recipe", recipe, "--model", out, "--json", "le chat dort sur le canapé", "das ist ein gutes buch")
    assert rows.exit_code == 0, rows.stderr
    assert [json.loads(line)["label"] for line in rows.stdout.splitlines()] == ["fr", "de"]
    table = cli("infer", "langid", "--recipe", recipe, "--model", out, "we walk to the station")
    assert "language" in table.stdout and "confidence" in table.stdout  # the toy task's own render hook


def test_without_the_registry_line_the_task_is_unknown(cli):
    result = cli("finetune", "langid", "--smoke")
    assert result.exit_code != 0 and "unknown task 'langid'" in result.stderr
