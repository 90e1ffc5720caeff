"""Finding and reading recipe files: the shipped recipes' folder, lookup by name or path, the YAML (with its node
tree, for line numbers in errors), and relative paths in a file read from the file's folder."""

from __future__ import annotations

import copy
import importlib.resources
from pathlib import Path

import yaml

from taskcli.errors import TaskcliError, did_you_mean


def _recipes_dir() -> Path:
    """The shipped recipes' folder: the repository's recipes/, which pyproject.toml installs as the data package
    taskcli.recipes, so a wheel, an editable install and a strict editable install all resolve it by import."""
    try:
        return Path(importlib.resources.files("taskcli.recipes"))
    except ModuleNotFoundError:
        # a checkout run without installing (PYTHONPATH=.), or an editable install made before recipes/ moved
        return Path(__file__).resolve().parent.parent / "recipes"


RECIPES_DIR = _recipes_dir()


def shipped() -> list[Path]:
    """Every recipe shipped with the package, found recursively."""
    return sorted(RECIPES_DIR.rglob("*.yaml"))


def shipped_name(path: Path) -> str:
    return path.relative_to(RECIPES_DIR).with_suffix("").as_posix()


def find(task, recipe: str | None) -> Path:
    """Path of the recipe named by --recipe (name, task-relative name, or file), or the task default."""
    if recipe is None:
        recipe = task.default_recipe
    as_path = Path(recipe).expanduser()
    if as_path.suffix in (".yaml", ".yml") or as_path.exists():
        if not as_path.is_file():
            raise TaskcliError(f"recipe file not found: {recipe}", "check the path, or `taskcli recipes list`")
        return as_path
    for candidate in (RECIPES_DIR / task.name / f"{recipe}.yaml", RECIPES_DIR / f"{recipe}.yaml"):
        if candidate.is_file():
            return candidate
    known = [shipped_name(p) for p in shipped()]
    near = did_you_mean(f"{task.name}/{recipe}", known) or did_you_mean(recipe, known)
    raise TaskcliError(
        f"unknown recipe '{recipe}' for {task.name}{near}",
        f"`taskcli recipes list {task.name}` lists them; or pass a .yaml path",
    )


# ----------------------------------------------------------------------------- loading


def read_yaml(path: Path) -> tuple[dict, yaml.Node | None]:
    """The recipe as a dict, plus its YAML node tree (for line numbers in errors)."""
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise TaskcliError(f"malformed YAML in {where}: {problem}", "fix the YAML syntax") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TaskcliError(f"recipe {path} must be a mapping of sections, got {type(data).__name__}")
    return data, node


# recipe fields that may hold a local path: a relative one means "next to the recipe file"
PATH_FIELDS = (("data", "dataset"), ("model", "checkpoint"), ("model", "infer_default"))


def rebase_paths(data: dict, folder: Path) -> dict:
    """Relative local paths in a recipe file -> paths from the recipe's folder, so a recipe works from any working
    directory. A value is rebased when it names something that exists there, or is written as a path (./x, ../x,
    x.csv); hub ids (org/name) stay as they are. --set values are the command line's: relative to the cwd."""
    from taskcli.data import looks_like_path

    data = copy.deepcopy(data)
    for section, key in PATH_FIELDS:
        value = (data.get(section) or {}).get(key) if isinstance(data.get(section), dict) else None
        if not isinstance(value, str) or not value or Path(value).expanduser().is_absolute() or value.startswith("~"):
            continue
        candidate = folder / value
        if candidate.exists() or (section == "data" and looks_like_path(value)) or value.startswith((".", "..")):
            data[section][key] = str(candidate.resolve())
    return data
