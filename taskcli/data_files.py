"""Local data files: which datasets builder reads a file or folder (by suffix; files named after splits become those
splits), where whole-document JSON keeps its records, and the bundled smoke samples."""

from __future__ import annotations

import json
from pathlib import Path

from taskcli import splits as splits_mod
from taskcli.errors import TaskcliError

SAMPLES_DIR = Path(__file__).parent / "samples"

# file suffix -> datasets builder name and default reader options
READERS = {
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t", "quoting": 3}),  # GLUE TSVs are unquoted (csv.QUOTE_NONE)
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {}),
    ".txt": ("text", {}),
}


def sample_path(task, recipe=None) -> Path:
    """The bundled smoke sample: the recipe's `smoke.sample` if it names one, else the task's."""
    name = getattr(getattr(recipe, "smoke", None), "sample", None) or task.sample
    path = SAMPLES_DIR / name
    if not path.exists():
        raise TaskcliError(f"smoke sample not found: {name}", f"samples: {', '.join(sorted(p.name for p in SAMPLES_DIR.iterdir()))}")
    return path


def local_files(path: Path) -> tuple[str, dict[str, list[str]] | list[str], dict]:
    """Builder, data_files and reader options for a local file or folder."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in READERS and p.is_file())
        if not files:
            raise TaskcliError(
                f"no data files in {path}", f"expected {', '.join(READERS)} files (or a split name per file)"
            )
    else:
        files = [path]
    suffixes = {p.suffix.lower() for p in files}
    if len(suffixes) > 1:
        raise TaskcliError(f"mixed file types in {path}: {', '.join(sorted(suffixes))}", "keep one format per folder")
    suffix = suffixes.pop() or ".txt"  # an extension-less file (e.g. WikiExtractor's wiki_00) is plain text
    if suffix not in READERS:
        raise TaskcliError(
            f"unsupported data file type '{suffix}': {path}", f"use one of {', '.join(READERS)}"
        )
    builder, options = READERS[suffix]
    # Files named after splits (train.csv, validation.jsonl, dev.tsv...) become those splits.
    by_split = {split: [str(p) for p in group] for split, group in splits_mod.by_split(files).items()}
    return builder, by_split, dict(options)


def json_field(path: Path, encoding: str = "utf-8") -> str | None:
    """'data' for whole-document JSON like SQuAD's {"version":..., "data": [...]}; None for JSON Lines."""
    with path.open(encoding=encoding) as fh:
        first = fh.readline()
    try:
        json.loads(first)
        return None  # first line is a complete record: JSON Lines
    except json.JSONDecodeError:
        pass
    try:
        doc = json.loads(path.read_text(encoding=encoding))
    except json.JSONDecodeError as err:
        raise TaskcliError(f"{path} is not valid JSON or JSON Lines: {err}") from None
    if isinstance(doc, dict):
        lists = [k for k, v in doc.items() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
        raise TaskcliError(f"{path}: cannot tell which key holds the records", "set data.field in the recipe")
    return None
