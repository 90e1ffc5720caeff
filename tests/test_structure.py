"""The package's shape, read from its source (no imports of torch): modules import only downward (no cycles), and
nothing outside taskcli/tasks/ and the registry switches on a task's name or a modality string."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import taskcli

PACKAGE = Path(taskcli.__file__).parent


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return found


def _imports(name: str, tree: ast.Module, modules) -> set[str]:
    """taskcli modules `name` imports anywhere (function-level imports too: they still tie the modules together)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package upwards
                package = name.split(".")[: len(name.split(".")) - node.level + (name in _packages(modules))]
                base = ".".join([*package, base] if base else package)
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        out.update(t for t in targets if t in modules and t != name)
    return out


def _packages(modules) -> set[str]:
    return {n for n in modules if any(m.startswith(n + ".") for m in modules)}


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    packages = _packages(modules)
    # a package's __init__ re-exporting its children is not a cycle of concern: drop package -> child edges
    return {name: {t for t in _imports(name, tree, modules) if not (name in packages and t.startswith(name + "."))}
            for name, tree in modules.items()}


def test_the_import_graph_has_no_cycles():
    try:
        graphlib.TopologicalSorter(_import_graph()).prepare()
    except graphlib.CycleError as err:
        raise AssertionError(f"import cycle: {' -> '.join(err.args[1])}") from None


def test_the_cycle_check_finds_a_cycle():
    """The check above can fail: a graph with a loop through three modules is reported."""
    graph = _import_graph()
    first, second = "taskcli.data", "taskcli.errors"
    assert second in graph[first] or any(second in graph[m] for m in graph[first])
    graph[second] = {*graph[second], first}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError:
        return
    raise AssertionError("a cycle was not found")


def _outside_tasks(modules) -> dict[str, ast.Module]:
    return {n: t for n, t in modules.items()
            if not (n.startswith("taskcli.tasks") or n.startswith("taskcli.tiny") or n == "taskcli.registry")}


def test_no_task_is_named_outside_tasks_and_the_registry():
    from taskcli import registry

    names = {t.name for t in registry.all_tasks()}  # (short aliases such as "sum" are ordinary words too)
    found = [f"{module}:{node.lineno} {node.value!r}" for module, tree in _outside_tasks(_modules()).items()
             for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names]
    assert not found, f"task names outside taskcli/tasks/ and the registry: {found}"


def test_no_module_outside_tasks_switches_on_a_modality_string():
    """`x.modality == "image"` belongs to the modality object (taskcli/modality.py), not to string switches."""
    found = []
    for module, tree in _outside_tasks(_modules()).items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                if any(_names_a_modality(s) for s in sides) and any(_strings(s) for s in sides):
                    found.append(f"{module}:{node.lineno}")
    assert not found, f"modality string switches: {found}"


def _names_a_modality(node) -> bool:
    """`task.modality`, a variable `modality`, or `task.modality.name`."""
    if isinstance(node, ast.Attribute) and node.attr == "name":
        node = node.value
    return (isinstance(node, ast.Attribute) and node.attr == "modality") or (
        isinstance(node, ast.Name) and node.id == "modality")


def _strings(node) -> bool:
    """A string constant, or a tuple/list/set of them (`modality in ("image", "audio")`)."""
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return bool(items) and all(isinstance(i, ast.Constant) and isinstance(i.value, str) for i in items)


def test_modules_and_functions_stay_readable():
    """Issue 19's measures: no module over 450 lines, no function over 60 (split by concern when one grows)."""
    big, long = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 450:
            big.append(f"{path.relative_to(PACKAGE)} ({text.count(chr(10))} lines)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})")
    assert not big and not long, f"modules over 450 lines: {big}; functions over 60 lines: {long}"
