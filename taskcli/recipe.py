"""Recipes: YAML files validated by pydantic, with `--set` overrides and readable errors.

A recipe names the architecture, checkpoint, data and training settings for one task. Shipped recipes live
in ``recipes/<task>/<name>.yaml`` at the top of the repository, installed as the package ``taskcli.recipes``.
Validation reports every problem at once, each with its dotted path, file and line, and a "did you mean" for
misspelt keys.

This module is the one settings merge (the file, the command line's flags and --set, --smoke's overrides), its
single validation and the messages; the schema is in recipe_schema.py, finding and reading files in
recipe_files.py (their names are re-exported here for `from taskcli import recipe` callers).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError

from taskcli.errors import TaskcliError, did_you_mean
from taskcli.recipe_files import RECIPES_DIR, find, read_yaml, rebase_paths, shipped, shipped_name
from taskcli.recipe_schema import schema_for, section_model

# `from taskcli import recipe` callers (cli, run, tests) use these from here; recipe_files.py and recipe_schema.py
# hold the ones this module does not define
__all__ = ["RECIPES_DIR", "Flag", "Resolved", "apply_flags", "command_flags", "find", "format_errors", "merge",
           "parse_set", "read_yaml", "rebase_paths", "resolve", "schema_for", "set_flags", "shipped", "shipped_name",
           "smoke_merged", "smoke_overrides", "validate", "validate_file"]


@dataclass
class Resolved:
    """A validated recipe plus where it came from."""

    recipe: Any  # an instance of schema_for(task)
    name: str  # e.g. "token-classification/distilbert", or the file path for user recipes
    path: Path
    raw: dict  # the dict that was validated (after --set and smoke merges)
    smoke: bool


def _yaml_value(text: str) -> Any:
    """A command-line value typed as YAML (2 -> int, {a: 1} -> dict); text that is not YAML stays text."""
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def parse_set(item: str) -> tuple[list[str], Any]:
    """'train.epochs=3' -> (['train', 'epochs'], 3). Values are parsed as YAML, so types come out right."""
    key, sep, value = item.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(p.strip() for p in parts):
        raise TaskcliError(f"bad --set '{item}'", "use --set section.key=value, e.g. --set train.epochs=2")
    return [p.strip() for p in parts], _yaml_value(value)


@dataclass(frozen=True)
class Flag:
    """A command-line value for one recipe field. Flags are written into the recipe's dict before it is validated,
    so a bad value is reported with the file's errors, named by `source` (`--set train.epochs=x`, `--early-stopping
    0`)."""

    path: tuple[str, ...]
    value: Any
    source: str
    how: Literal["set", "default", "extend"] = "set"  # default: only where the recipe leaves the field unset (--lora);
    # extend: added to the recipe's list unless there already (--gate)


def set_flags(items: list[str]) -> list[Flag]:
    """--set items as flags."""
    return [Flag(tuple(parts), value, f"--set {item}") for item in items for parts, value in [parse_set(item)]]


def command_flags(*, model: str | None = None, data: str | None = None, output_dir: str | None = None,
                  lora: bool = False, gates: list[str] = (), early_stopping: int | None = None,
                  class_weights: str | None = None, report_to: str | None = None) -> list[Flag]:
    """The options that stand for a recipe field, in one table: each is merged and checked as its --set would be."""
    flags = [
        Flag(("cli", "model"), model, f"--model {model}"),
        Flag(("cli", "data"), data, f"--data {data}"),
        Flag(("train", "output_dir"), output_dir, f"--output-dir {output_dir}"),
        Flag(("train", "early_stopping_patience"), early_stopping, f"--early-stopping {early_stopping}"),
        # typed as YAML, as in --set: --class-weights '{pos: 2, neg: 1}' is a mapping
        Flag(("train", "class_weights"), None if class_weights is None else _yaml_value(class_weights),
             f"--class-weights {class_weights}"),
        Flag(("train", "report_to"), report_to, f"--report-to {report_to}"),
        Flag(("train", "lora"), {} if lora else None, "--lora", how="default"),  # peft's defaults
        *(Flag(("eval", "gates"), gate, f"--gate {gate}", how="extend") for gate in gates),
    ]
    return [f for f in flags if f.value is not None]


def apply_flags(data: dict, flags: list[Flag]) -> tuple[dict, list[tuple[tuple, str]]]:
    """`data` with the flags written in (later ones win), and (field, source) for each field a flag wrote."""
    data = copy.deepcopy(data)
    written: list[tuple[tuple, str]] = []
    for flag in flags:
        node = data
        for part in flag.path[:-1]:
            if not isinstance(node.get(part), dict):
                if part in node and node[part] is not None:
                    raise TaskcliError(f"bad {flag.source}: '{part}' is not a section")
                node[part] = {}
            node = node[part]
        key = flag.path[-1]
        if flag.how == "default" and node.get(key) is not None:
            continue
        if flag.how == "extend":
            if node.get(key) is None:
                node[key] = []
            have = node[key]
            if not isinstance(have, list):  # the file's own error is reported when it is validated
                continue
            if flag.value not in have:
                have.append(copy.deepcopy(flag.value))
            written.append(((*flag.path, have.index(flag.value)), flag.source))
            continue
        node[key] = copy.deepcopy(flag.value)
        written.append((flag.path, flag.source))
    return data, written


def merge(base: dict, over: dict) -> dict:
    """Deep merge (over wins); used for smoke overrides."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


SMOKE_SECTIONS = ("train", "data", "params", "infer")  # the sections a recipe's smoke: block overrides


def smoke_overrides(data: dict) -> dict:
    """The recipe's smoke: block, the sections it overrides only."""
    smoke = data.get("smoke") or {}
    if not isinstance(smoke, dict):
        return {}
    return {k: smoke[k] for k in SMOKE_SECTIONS if isinstance(smoke.get(k), dict)}


def smoke_merged(data: dict) -> dict:
    return merge(data, smoke_overrides(data))


def _line_of(node: yaml.Node | None, loc: tuple) -> int | None:
    """Line (1-based) of the deepest YAML node found along `loc`."""
    line = None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == str(key)), None)
            key_node = next((k for k, v in node.value if k.value == str(key)), None)
            if match is None:
                break
            line = (key_node or match).start_mark.line + 1
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _holds(data: Any, loc: tuple) -> bool:
    """Whether the dict `data` has a value at `loc`."""
    for key in loc:
        if isinstance(data, dict) and key in data:
            data = data[key]
        elif isinstance(data, list) and isinstance(key, int) and key < len(data):
            data = data[key]
        else:
            return False
    return True


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the sub-model reached by `loc` (for "did you mean")."""
    for key in loc:
        field = model.model_fields.get(str(key))
        section = section_model(getattr(field, "annotation", None))
        if section is None:
            return []
        model = section
    return list(model.model_fields)


def _written_by(loc: tuple, written: list[tuple[tuple, str]]) -> int | None:
    """Index in `written` of the last flag that wrote `loc` (or a section above or below it): its error is the
    command line's."""
    for i in range(len(written) - 1, -1, -1):
        parts = written[i][0]
        n = min(len(parts), len(loc))
        if tuple(str(p) for p in loc[:n]) == tuple(str(p) for p in parts[:n]):
            return i
    return None


def format_errors(err: ValidationError, schema: type[BaseModel], path: Path, node,
                  written: list[tuple[tuple, str]] = (), smoke_over: dict | None = None) -> list[str]:
    """One entry per error, in the file's line order (pydantic reports them in schema order), each followed by the
    line it names; then errors without a line, then those of flags (in their order). `smoke_over`: the smoke:
    overrides that were merged in; an error in a field they set is named by its line under `smoke:`."""
    try:
        source = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        source = []
    found = []
    for e in err.errors():
        loc = tuple(e["loc"])
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        by = _written_by(loc, list(written))
        in_smoke = by is None and smoke_over is not None and _holds(smoke_over, loc)
        line = (_line_of(node, ("smoke", *loc)) if in_smoke else None) or _line_of(node, loc)
        where = written[by][1] if by is not None else f"{path}:{line}" if line else str(path)
        if e["type"] == "extra_forbidden":
            msg = f"unknown key '{dotted}'{did_you_mean(loc[-1], _fields_at(schema, loc[:-1]))}"
        elif e["type"] == "missing":
            msg = f"missing required key '{dotted}'"
        else:  # a section's own check (e.g. train: fsdp with deepspeed) quotes no whole section back
            got = "" if isinstance(e.get("input"), dict) else f" (got {e.get('input')!r})"
            msg = f"'{dotted}': {e['msg'].removeprefix('Value error, ')}{got}"
        text = f"{where}: {msg}{' (in smoke overrides)' if in_smoke else ''}"
        if by is None and line and line <= len(source):
            text += f"\n    | {source[line - 1].rstrip()}"
        order = (2, by) if by is not None else (0, line) if line else (1, 0)
        found.append((order, text))
    return [text for _, text in sorted(found, key=lambda f: f[0])]  # stable: one line's errors keep their order


def _check_task(task, data: dict, path: Path) -> None:
    named = str(data.get("task", ""))
    if named and named not in (task.name, *task.aliases):
        raise TaskcliError(f"{path}: recipe is for task '{named}', not '{task.name}'",
                           f"run `taskcli finetune {named} --recipe {path}`, or pick a {task.name} recipe")


def _file_errors(data: dict, path: Path, node) -> list[str]:
    """What pydantic cannot say about a file: `cli:` is the command line's, never a recipe's."""
    if "cli" not in data:
        return []
    line = _line_of(node, ("cli",))
    return [f"{path}:{line}: 'cli' holds --model and --data as a command gave them, not a recipe key: use "
            f"model.checkpoint and data.dataset"]


def _raise(errors: list[str]) -> None:
    if errors:
        raise TaskcliError(
            f"invalid recipe ({len(errors)} error{'s' * (len(errors) > 1)}):\n  " + "\n  ".join(errors), None)


def _validated(schema, data: dict, path: Path, node, errors: list[str], written=(), smoke_over=None):
    """One pydantic validation; its errors are added to `errors` (the model is None then)."""
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        errors += format_errors(err, schema, path, node, written, smoke_over)
        return None


def validate(task, data: dict, path: Path, node=None) -> Any:
    """`recipes validate`: a recipe file, and its smoke-merged form; all errors at once."""
    _check_task(task, data, path)
    schema = schema_for(task)
    errors = _file_errors(data, path, node)
    recipe = _validated(schema, data, path, node, errors)
    if not errors:
        _validated(schema, smoke_merged(data), path, node, errors, smoke_over=smoke_overrides(data))
    _raise(errors)
    return recipe


def resolve(task, recipe: str | None = None, sets: list[str] | None = None, smoke: bool = False,
            flags: list[Flag] | None = None) -> Resolved:
    """Find and read a recipe, write the command line into it (`flags`, then --set: the last word wins; with
    --smoke the smoke overrides go under them), and validate it once, reporting every error at once."""
    path = find(task, recipe)
    data, node = read_yaml(path)
    shipped_recipe = path.resolve().is_relative_to(RECIPES_DIR.resolve())
    if not shipped_recipe:
        data = rebase_paths(data, path.parent)
    _check_task(task, data, path)
    errors = _file_errors(data, path, node)
    flags = [*(flags or []), *set_flags(sets or [])]
    final, written = apply_flags(data, flags)
    smoke = smoke or bool((final.get("smoke") or {}).get("enabled"))  # a smoke run's saved recipe.yaml
    smoke_over = smoke_overrides(final) if smoke else None
    if smoke:
        final, written = apply_flags(smoke_merged(final), flags)
    schema = schema_for(task)
    parsed = _validated(schema, final, path, node, errors, written, smoke_over)
    _raise(errors)
    name = shipped_name(path) if shipped_recipe else str(path)
    return Resolved(recipe=parsed, name=name, path=path, raw=final, smoke=smoke)


def validate_file(path: Path) -> tuple[str, Any]:
    """`taskcli recipes validate PATH`: finds the task from the file itself."""
    from taskcli import registry

    if not path.is_file():
        raise TaskcliError(f"recipe file not found: {path}")
    data, node = read_yaml(path)
    if "task" not in data:
        raise TaskcliError(f"{path}: missing required key 'task'", f"one of: {', '.join(registry.names())}")
    task = registry.get(str(data["task"]))
    return task.name, validate(task, data, path, node)
