"""CoNLL-style column files for token-classification: one ``token ... tag`` row per line, a blank line
between sentences.

Columns are separated by tabs (a line with a tab is split on tabs only) or by runs of spaces; the token is
the first column and the tag the one ``params.conll_tag_column`` names (default -1: the last), so
CoNLL-2003's ``token POS chunk NER`` works as it is. ``-DOCSTART-`` lines are skipped. The result has the
task's column roles: ``tokens`` and ``tags`` (lists of strings). Cheap to import: datasets is imported
where it is used.
"""

from __future__ import annotations

from pathlib import Path

from taskcli import splits
from taskcli.errors import TaskcliError

SUFFIXES = (".conll", ".txt", ".tsv")  # .conll is always CoNLL; .txt/.tsv when their first rows look like it
_HEAD_ROWS = 5  # rows `looks_like_conll` checks
# A first row made of these is a CSV/TSV header, not a token and its tag.
_HEADER_NAMES = {"token", "tokens", "word", "words", "tag", "tags", "ner", "ner_tag", "ner_tags", "label",
                 "labels", "pos", "pos_tags", "chunk", "chunk_tags", "text", "sentence", "id"}
_EXPECTED = "one 'token tag' row per line (columns separated by spaces or tabs), a blank line between sentences"


def _fields(line: str) -> list[str]:
    """Columns of a stripped, non-empty line: tab-separated if it has a tab, else runs of spaces.

    Not ``str.split()``: that also splits on no-break spaces, which occur inside tokens.
    """
    if "\t" in line:
        return [f.strip(" ") for f in line.split("\t")]
    return [f for f in line.split(" ") if f]


def _lines(path: Path):
    """(line number, stripped line) for each line; CRLF/CR endings and a UTF-8 BOM are handled."""
    try:
        with path.open(encoding="utf-8-sig", newline=None) as fh:
            for number, line in enumerate(fh, 1):
                yield number, line.strip(" \t\r\n")
    except UnicodeDecodeError as err:
        raise TaskcliError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})",
                           "save the CoNLL file as UTF-8") from None


def _is_docstart(fields: list[str]) -> bool:
    return fields[0] == "-DOCSTART-"


def looks_like_conll(path: Path) -> bool:
    """True when the first rows (not blank, not -DOCSTART-) are `token<ws>tag` rows, not a header or prose."""
    rows = []
    try:
        for _, line in _lines(path):
            if line and not _is_docstart(fields := _fields(line)):
                rows.append(fields)
                if len(rows) == _HEAD_ROWS:
                    break
    except TaskcliError:
        return False
    if not rows or all(f.lower() in _HEADER_NAMES for f in rows[0]):
        return False
    width = len(rows[0])
    return width >= 2 and all(len(r) == width and all(f and " " not in f for f in r) for r in rows)


def files(path: Path) -> dict[str, list[Path]] | None:
    """CoNLL files of a file or folder by split, or None when `path` is not CoNLL (another reader takes it).

    In a folder, files named after a split are read as CoNLL once any file there is; other names are
    read (as train) only when they look like CoNLL, so e.g. a `labels.txt` next to them is left alone.
    """
    if path.is_file():
        if path.suffix.lower() == ".conll" or (path.suffix.lower() in SUFFIXES and looks_like_conll(path)):
            return {splits.of_file(path): [path]}
        return None
    candidates = sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    conll = {p for p in candidates if p.suffix.lower() == ".conll" or looks_like_conll(p)}
    if not conll:
        return None
    return splits.by_split(p for p in candidates if p in conll or splits.named(p.stem))


def read_file(path: Path, tag_column: int = -1) -> tuple[list[list[str]], list[list[str]]]:
    """Sentences of one CoNLL file as (tokens, tags); a bad line is a TaskcliError naming file:line."""
    sentences: list[list[str]] = []
    tags: list[list[str]] = []
    words: list[str] = []
    labels: list[str] = []
    width = None
    for number, line in _lines(path):
        fields = _fields(line) if line else []
        if not fields or _is_docstart(fields):
            if words:
                sentences.append(words)
                tags.append(labels)
                words, labels = [], []
            continue
        where = f"{path}:{number}"
        if len(fields) < 2:
            raise TaskcliError(f"{where}: expected a token and a tag, got {len(fields)} column: {line[:60]!r}",
                               _EXPECTED)
        if width is None:
            width = len(fields)
            column = tag_column + width if tag_column < 0 else tag_column
            if not 0 < column < width:
                raise TaskcliError(f"{where}: params.conll_tag_column={tag_column} is not a tag column of a "
                                   f"{width}-column file",
                                   f"columns count from 0 (the token) to {width - 1}; -1 is the last")
        elif len(fields) != width:
            raise TaskcliError(f"{where}: {len(fields)} columns where the lines above have {width}: {line[:60]!r}",
                               f"{_EXPECTED}; a token may not contain a space unless columns are tab-separated")
        if not fields[0] or not fields[column]:
            raise TaskcliError(f"{where}: empty token or tag: {line[:60]!r}", _EXPECTED)
        words.append(fields[0])
        labels.append(fields[column])
    if words:
        sentences.append(words)
        tags.append(labels)
    return sentences, tags


def read(by_split: dict[str, list[Path]], tag_column: int = -1):
    """DatasetDict (split -> `tokens`, `tags` as lists of strings) from `files(...)`."""
    import datasets

    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "tags": datasets.Sequence(datasets.Value("string"))})
    out = {}
    for split, paths in by_split.items():
        tokens: list[list[str]] = []
        tags: list[list[str]] = []
        for p in paths:
            t, g = read_file(p, tag_column)
            tokens += t
            tags += g
        out[split] = datasets.Dataset.from_dict({"tokens": tokens, "tags": tags}, features=features)
    return datasets.DatasetDict(out)


def load(path: Path, tag_column: int = -1):
    """DatasetDict of a CoNLL file or folder, or None when `path` is not CoNLL."""
    by_split = files(path)
    return None if by_split is None else read(by_split, tag_column)

