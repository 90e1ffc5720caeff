"""A disk cache for transformers' import-structure scan: about 0.5 s of every command's start-up.

`import transformers`, and then `transformers.models`, each read all ~1,100 of its model files to collect their
`__all__` (transformers.utils.import_utils.define_import_structure), in every process. The answer depends only on
those files, so it is kept in ~/.cache/taskcli (or $XDG_CACHE_HOME/taskcli) with a fingerprint of every file and
folder scanned (name, size, mtime): an upgraded or edited transformers misses and is scanned again, as before.

`install()` must run before transformers is imported (run.quiet_libraries calls it). It wraps the function as its
module is loaded; a transformers without it, an unreadable or unwritable cache, or TASKCLI_IMPORT_CACHE=0 all
leave transformers' own scan in place.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.abc
import json
import os
import sys
from pathlib import Path

MODULE = "transformers.utils.import_utils"
FUNCTION = "define_import_structure"
FORMAT = 1  # bump when the cached file's layout changes
stats = {"hits": 0, "misses": 0}  # read by the tests: was the cache used?


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "taskcli"


def install() -> None:
    """Wrap transformers' scan when its module loads (nothing to do once transformers is imported, or when off)."""
    if os.environ.get("TASKCLI_IMPORT_CACHE", "1") == "0" or MODULE in sys.modules:
        return
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


class _Finder(importlib.abc.MetaPathFinder):
    """Finds transformers.utils.import_utils with the other finders, then wraps its loader."""

    def find_spec(self, fullname, path, target=None):
        if fullname != MODULE:
            return None
        sys.meta_path.remove(self)  # once: the module loads once per process
        for finder in sys.meta_path:
            spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _Loader(spec.loader)
        return spec


class _Loader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):  # get_source, get_filename, ...: the real loader's
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        original = getattr(module, FUNCTION, None)
        if callable(original):
            setattr(module, FUNCTION, _cached(original, Path(module.__file__)))


def _cached(original, scanner: Path):
    """transformers' function (an lru_cache too), answering the big `models` scan from disk."""

    @functools.lru_cache
    def define_import_structure(module_path, prefix=None):
        folder = Path(module_path)
        folder = folder if folder.is_dir() else folder.parent
        if folder.name != "models":  # the small per-model scans cost ~1 ms: not worth a file each
            return original(module_path, prefix)
        return load_or_scan(lambda: original(module_path, prefix), folder, prefix, scanner)

    define_import_structure.__wrapped__ = original
    return define_import_structure


def fingerprint(folder: Path, prefix: str | None, scanner: Path) -> str:
    """Every file and folder the scan reads (name, size, mtime), the scanning code's own file, and Python."""
    digest = hashlib.blake2b(repr((FORMAT, sys.version, str(folder), prefix)).encode(), digest_size=16)
    stat = scanner.stat()
    digest.update(f"{stat.st_size} {stat.st_mtime_ns}\n".encode())
    todo = [str(folder)]
    while todo:
        with os.scandir(todo.pop()) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.name == "__pycache__":
                    continue
                stat = entry.stat()
                digest.update(f"{entry.path} {stat.st_size} {stat.st_mtime_ns}\n".encode())
                if entry.is_dir():
                    todo.append(entry.path)
    return digest.hexdigest()


def load_or_scan(scan, folder: Path, prefix: str | None, scanner: Path):
    """The cached structure when its fingerprint matches, else `scan()`, written back for the next process."""
    try:
        key = fingerprint(folder, prefix, scanner)
    except OSError:
        return scan()
    name = hashlib.blake2b(repr((str(folder), prefix)).encode(), digest_size=8).hexdigest()
    path = cache_dir() / f"import-structure-{name}.json"
    try:
        stored = json.loads(path.read_text())
        if stored["fingerprint"] == key:
            structure = {frozenset(_strings(backends)): {module: set(_strings(names))
                                                         for module, names in modules.items()}
                         for backends, modules in stored["structure"]}
            stats["hits"] += 1
            return structure
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # none yet, another version's, or damaged: scan
    stats["misses"] += 1
    structure = scan()
    _write(path, key, structure)
    return structure


def _strings(values) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError("not a list of names")
    return values


def _write(path: Path, key: str, structure) -> None:
    try:
        rows = [[sorted(backends), {module: sorted(names) for module, names in modules.items()}]
                for backends, modules in structure.items()]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # then renamed: a concurrent reader never sees half a file
        tmp.write_text(json.dumps({"fingerprint": key, "structure": rows}))
        os.replace(tmp, path)
    except (OSError, TypeError, AttributeError):
        pass  # a read-only home, or a structure of another shape: the next process scans again
