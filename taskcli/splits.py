"""Split names: the one table of what a file or folder name means (train.csv, dev/, eval.jsonl...), shared by every
reader of local data (data files, CoNLL files, media folders), and the names a run gives its own splits.

The aliases are the `datasets` library's split keywords (datasets.data_files.SPLIT_KEYWORDS) except `eval` and
`evaluation`, which `datasets` files under test: here they are the validation split, as taskcli's media folders
always read them, because the rows taskcli evaluates on are its `eval` split. Cheap to import.
"""

from __future__ import annotations

from pathlib import Path

TRAIN, VALIDATION, TEST = "train", "validation", "test"
CARVED = "eval"  # the eval split a run carves from train when the data has none (`eval --split eval` names it)
EVAL_ORDER = (VALIDATION, TEST)  # where a run takes its eval rows from, in order, when the recipe names no split

ALIASES = {
    "train": TRAIN, "training": TRAIN,
    "validation": VALIDATION, "valid": VALIDATION, "val": VALIDATION, "dev": VALIDATION,
    "eval": VALIDATION, "evaluation": VALIDATION,
    "test": TEST, "testing": TEST,
}


def named(name: str) -> str | None:
    """The split a file stem or folder name stands for (case-insensitive), or None when it names no split."""
    return ALIASES.get(name.lower())


def of_file(path: Path) -> str:
    """The split a data file's name picks (train.csv, dev.tsv, val.jsonl...); any other name is train."""
    return named(Path(path).stem) or TRAIN


def by_split(paths) -> dict[str, list[Path]]:
    """Files grouped by the split their names pick, in the order given."""
    out: dict[str, list[Path]] = {}
    for path in paths:
        out.setdefault(of_file(path), []).append(path)
    return out
