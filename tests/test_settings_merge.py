"""One settings merge (issue 19): the recipe file, --set, the options that stand for recipe fields and --smoke
become one dict, validated once; --model and --data live in the validated recipe (its `cli` section)."""

import json

import pytest

from conftest import assert_clean_error
from taskcli import recipe, registry


def test_bad_flag_values_are_recipe_errors_naming_the_flag_all_at_once(cli):
    result = cli("finetune", "text-cls", "--dry-run", "--class-weights", "lots", "--report-to", "slack",
                 "--set", "train.epochs=-1")
    assert_clean_error(result, "invalid recipe (")
    entries = [line.strip() for line in result.stderr.splitlines()[1:]]
    # each names the option as typed (not a --set string made from it), in the command line's order
    named = [e.split(": ")[0] for e in entries]
    order = ["--class-weights lots", "--report-to slack", "--set train.epochs=-1"]
    assert set(named) == set(order) and named == sorted(named, key=order.index)
    assert any(e.startswith("--class-weights lots: 'train.class_weights") for e in entries)


def test_options_that_are_recipe_fields_show_in_the_resolved_recipe(cli, tmp_path):
    result = cli("finetune", "text-cls", "--dry-run", "--json", "--lora", "--gate", "accuracy>=0.5",
                 "--early-stopping", "2", "--set", "train.early_stopping_patience=3", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    resolved = shown["resolved"]
    assert resolved["train"]["lora"]["r"] == 8  # --lora: peft's defaults
    assert resolved["eval"]["gates"] == ["accuracy>=0.5"]
    assert resolved["train"]["early_stopping_patience"] == 3  # --set has the last word
    assert shown["output_dir"] == str(tmp_path / "out") and resolved["train"]["output_dir"] is None
    # --lora keeps the recipe's own LoRA settings
    kept = cli("finetune", "text-cls", "--dry-run", "--json", "--lora", "--set", "train.lora.r=4")
    assert json.loads(kept.stdout)["resolved"]["train"]["lora"]["r"] == 4


def test_model_and_data_live_in_the_validated_recipe(tmp_path):
    task = registry.get("text-classification")
    flags = recipe.command_flags(model="org/model", data=str(tmp_path / "d.csv"))
    resolved = recipe.resolve(task, flags=flags, sets=["train.epochs=1"])
    assert (resolved.recipe.cli.model, resolved.recipe.cli.data) == ("org/model", str(tmp_path / "d.csv"))
    assert "cli" not in resolved.recipe.model_dump()  # a dumped recipe (recipe.yaml) never holds it
    mine = tmp_path / "mine.yaml"
    mine.write_text("task: text-classification\nmodel:\n  checkpoint: x\n  type: bert\ncli:\n  model: y\n")
    with pytest.raises(Exception, match=rf"{mine}:5: 'cli' holds --model and --data"):
        recipe.resolve(task, str(mine))


def test_resolve_builds_the_schema_once_and_validates_once(monkeypatch):
    built, validated = [], []
    schema_for = recipe.schema_for

    def counting(task):
        schema = schema_for(task)
        built.append(schema)

        class Counted(schema):
            @classmethod
            def model_validate(cls, *args, **kwargs):
                validated.append(args[0])
                return schema.model_validate(*args, **kwargs)

        return Counted

    monkeypatch.setattr(recipe, "schema_for", counting)
    resolved = recipe.resolve(registry.get("question-answering"), sets=["train.epochs=2"], smoke=True,
                              flags=recipe.command_flags(early_stopping=2))
    assert (len(built), len(validated)) == (1, 1)
    assert resolved.recipe.data.max_length == 96 and resolved.recipe.train.epochs == 2  # smoke, then --set


def test_smoke_override_error_names_its_line_under_smoke(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("task: token-classification\nmodel:\n  checkpoint: x\n  type: distilbert\ntrain:\n"
                    "  epochz: 1\nsmoke:\n  train:\n    epochs: many\n")
    with pytest.raises(Exception) as err:
        recipe.resolve(registry.get("token-classification"), str(path), smoke=True)
    text = str(err.value)
    assert f"{path}:6: unknown key 'train.epochz'" in text and "epochz: 1 (in smoke" not in text
    assert f"{path}:9: 'train.epochs'" in text and "(in smoke overrides)\n    |     epochs: many" in text


def test_shared_options_are_declared_once():
    """finetune, eval, check and infer take --model, --recipe, --data, --set, --smoke and --gate as one declaration
    each: the same flags and help everywhere."""
    import typer.main

    from taskcli.cli import app

    commands = {c.name: c for c in typer.main.get_command(app).commands.values()}
    for name in ("model", "recipe", "data", "set_", "smoke", "gate"):
        seen = {(tuple(p.opts), p.help) for verb in ("finetune", "eval", "check", "infer")
                for p in commands[verb].params if p.name == name}
        assert len(seen) == 1, (name, seen)
