"""`taskcli tasks` and `taskcli recipes list|show|validate`: what the registry and the shipped recipes hold."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer

from taskcli import display
from taskcli.cli_common import guarded

recipes_app = typer.Typer(help="List, show and validate recipes.", no_args_is_help=True)


@guarded
def tasks(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")):
    """List the tasks: aliases, default architecture, recipes and metrics."""
    from taskcli import recipe as recipe_mod
    from taskcli import registry

    rows = []
    for t in registry.all_tasks():
        names = sorted(recipe_mod.shipped_name(p).split("/", 1)[1] for p in recipe_mod.shipped()
                       if p.parent.name == t.name)
        names.sort(key=lambda n: n != t.default_recipe)
        default_type = ""
        default_path = recipe_mod.RECIPES_DIR / t.name / f"{t.default_recipe}.yaml"
        if default_path.is_file():
            data, _ = recipe_mod.read_yaml(default_path)
            default_type = str(data.get("model", {}).get("type", ""))
        rows.append({"task": t.name, "aliases": list(t.aliases), "modality": t.modality.name,
                     "default_recipe": t.default_recipe, "default_architecture": default_type, "recipes": names,
                     "metrics": list(t.metric_names)})
    if as_json:
        print(json.dumps(rows))
        return
    from rich.table import Table

    table = Table(header_style="bold")
    for col in ("task", "aliases", "recipes (default first)", "architecture", "metrics"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["task"], ", ".join(r["aliases"]), ", ".join(r["recipes"]), r["default_architecture"],
                      ", ".join(r["metrics"]))
    display.stdout().print(table)


@recipes_app.command("list")
@guarded
def recipes_list(
    task: Optional[str] = typer.Argument(None, help="Only this task's recipes."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
):
    """List shipped recipes (name, task, checkpoint, dataset)."""
    from rich.table import Table

    from taskcli import recipe as recipe_mod
    from taskcli import registry

    only = registry.get(task).name if task else None
    rows = []
    for path in recipe_mod.shipped():
        data, _ = recipe_mod.read_yaml(path)
        if not only or data.get("task") == only:
            rows.append({"recipe": recipe_mod.shipped_name(path), "task": str(data.get("task")),
                         "checkpoint": str(data.get("model", {}).get("checkpoint")),
                         "dataset": str((data.get("data") or {}).get("dataset"))})
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(header_style="bold")
    for col in ("recipe", "task", "checkpoint", "dataset"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row.values())
    display.stdout().print(table)


@recipes_app.command("show")
@guarded
def recipes_show(name: str = typer.Argument(..., help="Recipe name (task/name) or path.")):
    """Print a recipe's YAML."""
    from taskcli import recipe as recipe_mod
    from taskcli import registry

    path = recipe_mod.RECIPES_DIR / f"{name}.yaml"
    if not path.is_file():
        task_name, _, rest = name.partition("/")
        path = recipe_mod.find(registry.get(task_name), rest or None)
    print(path.read_text(encoding="utf-8"), end="")


@recipes_app.command("validate")
@guarded
def recipes_validate(paths: list[str] = typer.Argument(..., help="Recipe YAML files or shipped names (task/name).")):
    """Validate recipes (files, or shipped names such as `ner/bert`); every file is checked and every error is
    reported with its dotted path and line; the exit code is 1 when any recipe is invalid."""
    from pathlib import Path

    from taskcli import recipe as recipe_mod
    from taskcli.errors import TaskcliError

    failed = 0
    for p in paths:
        try:
            path = Path(p)
            if not path.exists() and "/" in p and not p.endswith((".yaml", ".yml")):  # a shipped name
                from taskcli import registry

                task, _, name = p.partition("/")
                path = recipe_mod.find(registry.get(task), name)
            task_name, _ = recipe_mod.validate_file(path)
            print(f"ok  {p}  ({task_name})")
        except TaskcliError as err:
            failed += 1
            print(f"error: {p}: {err}", file=sys.stderr)
    if failed:
        raise typer.Exit(1)


