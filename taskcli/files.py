"""Media files, shared by the audio and image tasks: expanding `taskcli infer` arguments into file paths, and
reading a local dataset folder (the Hub's audiofolder/imagefolder layout).

A folder dataset is either files plus a metadata.csv/jsonl (a `file_name` column and any others), or one
sub-folder per label; split sub-folders (train/, validation/, dev/, test/...: taskcli/splits.py) are recognised.
Files stay absolute path strings in the task's media column (e.g. 'audio', 'image') until a task decodes them.
"""

from __future__ import annotations

import glob
import sys
from pathlib import Path

from taskcli import splits
from taskcli.errors import TaskcliError

_META_NAMES = ("metadata.jsonl", "metadata.csv", "metadata.json", "metadata.tsv")
_FILE_KEYS = ("file_name", "audio", "image", "path", "file", "filename")


def _is_media(path: Path, suffixes: set[str]) -> bool:
    return path.is_file() and path.suffix.lower() in suffixes


def expand_inputs(args: list[str], suffixes: set[str], kind: str) -> list[str]:
    """Arguments -> paths, in order: files as given (any suffix: decoding judges them), directories (their
    `suffixes` files, recursively, sorted), globs, and '-' (one path per stdin line)."""
    out: list[str] = []
    for arg in args:
        if arg == "-":
            lines = [line.strip() for line in sys.stdin.read().splitlines() if line.strip()]
            out.extend(expand_inputs(lines, suffixes, kind))
            continue
        if not arg.strip():  # Path("") is the current folder: never read it for an empty argument
            raise TaskcliError(f"an input argument is empty (expected a {kind} file, a folder or a glob)",
                               "remove it, or quote the path you meant")
        path = Path(arg).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if _is_media(p, suffixes))
            if not found:
                raise TaskcliError(f"no {kind} files in {arg}", f"expected {', '.join(sorted(suffixes))} files")
            out.extend(str(p) for p in found)
        elif path.exists():
            out.append(str(path))
        elif glob.has_magic(arg):
            found = sorted(p for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
            if not found:
                raise TaskcliError(f"no files match {arg}", "check the pattern (quote it so the shell leaves it alone)")
            out.extend(found)
        else:
            out.append(arg)  # decoding reports it as missing (or --skip-bad gives it an error row)
    return out


def output_paths(folder: str, sources: list[str], suffixes: tuple[str, ...],
                 option: str = "--save-maps") -> dict[str, list[Path]]:
    """Where `infer --save-maps DIR` (or `option` DIR, e.g. --save-overlays) writes each input's files:
    DIR/<input stem><suffix>. Checked before any work: a file already there is never replaced, and two inputs
    with the same stem are refused."""
    out = {src: [Path(folder).expanduser() / (Path(src).stem + sfx) for sfx in suffixes] for src in sources}
    clash = next((p for paths in out.values() for p in paths if p.exists()), None)
    if clash is not None:
        raise TaskcliError(f"{clash} already exists", f"choose another {option} folder or move the old files")
    if len({paths[0] for paths in out.values()}) < len(out):
        raise TaskcliError("two inputs share a file name, so their outputs would overwrite each other",
                           "run them separately or rename one")
    return out


def has_media(folder: Path, suffixes: set[str]) -> bool:
    return any(_is_media(p, suffixes) for p in folder.rglob("*"))


def _read_metadata(path: Path) -> list[dict]:
    import csv
    import json

    if path.suffix == ".jsonl" or path.suffix == ".json":
        text = path.read_text(encoding="utf-8")
        try:
            doc = json.loads(text)
            rows = doc if isinstance(doc, list) else next(v for v in doc.values() if isinstance(v, list))
        except (json.JSONDecodeError, StopIteration):
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t" if path.suffix == ".tsv" else ","))
    if not rows:
        raise TaskcliError(f"{path} holds no rows")
    return rows


def _resolved(value, base: Path):
    """A metadata value naming a file relative to the metadata file -> its absolute path; others unchanged."""
    if not isinstance(value, str) or not value or "\n" in value or len(value) > 1024:
        return value
    path = Path(value).expanduser()
    if path.is_absolute():
        return value
    return str((base / path).resolve()) if (base / path).is_file() else value


def _folder_rows(root: Path, suffixes: set[str], column: str) -> list[dict]:
    """Rows of one split folder: from its metadata file, or one folder per label."""
    meta = next((root / n for n in _META_NAMES if (root / n).is_file()), None)
    if meta is not None:
        rows = _read_metadata(meta)
        key = next((k for k in _FILE_KEYS if k in rows[0]), None)
        if key is None:
            raise TaskcliError(f"{meta} has no file_name column", f"columns: {', '.join(rows[0])}")
        out = []
        for row in rows:
            path = Path(str(row.pop(key))).expanduser()
            file = str(path if path.is_absolute() else (meta.parent / path).resolve())
            # other columns naming files next to it (e.g. a segmentation mask) become absolute paths too
            out.append({column: file, **{k: _resolved(v, meta.parent) for k, v in row.items()}})
        return out
    found = sorted(p for p in root.rglob("*") if _is_media(p, suffixes))
    rows = [{column: str(p.resolve()), "label": p.parent.name} for p in found if p.parent != root]
    if not rows:
        raise TaskcliError(
            f"no metadata file and no label folders in {root}",
            "add metadata.csv/jsonl (file_name + columns), or put files in one folder per label",
        )
    return rows


def load_folder(root: Path, suffixes: set[str], column: str):
    """DatasetDict from a media folder: split sub-folders (train/, dev/, test/...) or one split 'train'."""
    import datasets

    by_split: dict[str, list] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        split = splits.named(sub.name)
        if split and has_media(sub, suffixes):
            by_split.setdefault(split, []).extend(_folder_rows(sub, suffixes, column))
    if not by_split:
        by_split = {"train": _folder_rows(root, suffixes, column)}
    return datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in by_split.items()})
