"""Reading `taskcli infer` inputs, and the one rule every task keeps: each input gives exactly one output row.

Texts are literal arguments, text files (one input per line) or `-` for stdin, read lazily (`Entries`); a line
that is a JSON object is kept as a dict (structured inputs such as QA's question/context). Every line counts,
blank ones included, so rows out match lines in. Media tasks take file paths (files.expand_inputs).

Tables (.csv, .tsv, .jsonl, .json, .parquet files) are read by column (`Table`): each row gives one input made of
the task's input columns only (as the recipe maps them, else the usual names, or `--column`), never the header or
another column's value; an `id` column rides along into the row's result. A row that lacks its input (or a line
that is not UTF-8, or JSON holding a lone surrogate) is read as `Unusable`: an input that fails where every other
bad input fails, in the loop.

An input a task's `parse` step cannot use (an empty line, a fill-mask text without a mask, an unreadable image)
raises `BadInput` (or the media loader's own error, which names its file): taskcli/inference.py then stops the run
with an error naming where it is (`input 2`, `stdin line 3`, `notes.txt:3`, or the file), or with --skip-bad
reports it on stderr and puts an error row in its place.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from taskcli.errors import TaskcliError

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
_FILE_SUFFIXES = {".txt", *TABLE_SUFFIXES}
SKIP_HINT = "or pass --skip-bad to get an error row for it and run the others"


class BadInput(TaskcliError):
    """One input that cannot be used: `says` completes a sentence naming where it is (`input 2` + ` is empty`),
    `reason` goes in its error row. `where`, when the reader already knows it (a table's row), is used instead of
    the loop's."""

    def __init__(self, says: str, reason: str, hint: str, where: str | None = None):
        self.says, self.reason, self.where = says, reason, where
        super().__init__(says, f"{hint}, {SKIP_HINT}")

    def at(self, where: str) -> TaskcliError:
        return TaskcliError(f"{self.where or where} {self.says}", self.hint)


def empty() -> BadInput:
    return BadInput("is empty", "empty input", "remove it")


class Unusable(str):
    """An input as read that cannot be used (a line that is not UTF-8, a table row without its input): the text
    its row shows, and the BadInput the loop raises for it when it parses it, like any other bad input."""

    def __new__(cls, shown: str, error: BadInput):
        out = super().__new__(cls, _printable(shown))
        out.error = error
        return out


class Cell(str):
    """A table row's one input (a text or a media path); `table_id`, set when the table has an id column."""


class Record(dict):
    """A table row's inputs when the task reads several (text/text_pair, question/context)."""


# ----------------------------------------------------------------------------- what counts as text


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "a list" if isinstance(value, (list, tuple)) else "an object" if isinstance(value, dict) else \
        f"a {type(value).__name__}"


def _not_unicode(value) -> str | None:
    """The first string inside `value` (a JSON value, keys included) that cannot be written as UTF-8: a lone
    surrogate (JSON "\\ud800", or a byte of a non-UTF-8 file read with surrogateescape), which tokenizers refuse
    with a TypeError."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            return value[err.start:err.end]
        return None
    if isinstance(value, dict):
        return next((bad for k, v in value.items() for bad in (_not_unicode(k), _not_unicode(v)) if bad), None)
    if isinstance(value, (list, tuple)):
        return next((bad for v in value if (bad := _not_unicode(v))), None)
    return None


def _printable(text: str) -> str:
    """The text with each lone surrogate as U+FFFD, so that its row can be written."""
    return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text) if _not_unicode(text) else text


def _not_unicode_error(bad: str, where: str | None = None, column: str = "", from_bytes: bool = False) -> BadInput:
    """`from_bytes`: the text came from bytes that were not UTF-8 (argv, a CSV cell); else a JSON escape such
    as "\\ud800" that is half of a character."""
    within = f" in {column!r}" if column else ""
    if from_bytes:
        return BadInput(f"is not UTF-8 text{within}", "not UTF-8 text", "save it as UTF-8", where)
    codes = "".join(f"\\u{ord(c):04x}" for c in bad)
    return BadInput(f"is not valid Unicode text{within}: it holds {codes}, a lone surrogate",
                    f"not valid Unicode text (lone surrogate {codes})",
                    "write the character itself (a \\u escape must be a whole character or a surrogate pair)", where)


def text_of(item, keys: tuple[str, ...] = ("text",)) -> str:
    """The text of one input: a plain line, or the first of `keys` in a JSON object; BadInput when it is missing,
    blank, not a string (a list, a number, null: never silently str()-ed) or not valid Unicode. Every text task's
    parse step takes its texts through here."""
    if isinstance(item, Unusable):  # (the loop raises it before parse; a caller of parse alone gets it here)
        raise item.error
    if isinstance(item, dict):
        key = next((k for k in keys if k in item), None)
        if key is None:
            names = " or ".join(repr(k) for k in keys)
            raise BadInput(f"is a JSON object without a {names} field (it has {', '.join(map(repr, item)) or 'none'})",
                           f"no {names} field", f"give it a {names} field")
        text, field = item[key], f" {key!r}"
    else:
        text, field = item, ""
    if not isinstance(text, str):
        kind = _kind(text)
        raise BadInput(f"has{field} as {kind}, not text" if field else f"is {kind}, not text",
                       f"{field.strip() or 'input'} is {kind}, not text",
                       f"make{field} a string" if field else "give a text")
    if not text.strip():
        if field:
            raise BadInput(f"has an empty{field}", f"empty{field}", f"fill in its{field}")
        raise empty()
    if (bad := _not_unicode(text)) is not None:
        raise _not_unicode_error(bad)
    return text


# ----------------------------------------------------------------------------- lines


def _parsed(line: str):
    """A line that is a JSON object -> the dict (Unusable if it holds text that is not Unicode); others as is."""
    stripped = line.strip()
    if stripped.startswith("{"):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError:
            return line
        bad = _not_unicode(value)
        return value if bad is None else Unusable(line, _not_unicode_error(bad))
    return line


def lines(text: str) -> list[str]:
    """One entry per line as `wc -l` counts them (only \\n ends a line; a last line without one counts too)."""
    out = text.split("\n")
    if out[-1] == "":
        out.pop()
    return [line[:-1] if line.endswith("\r") else line for line in out]


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # e.g. a text too long to be a file name
        return False


def _not_utf8(what: str, k: int, hint: str) -> BadInput:
    return BadInput(f"is not UTF-8 text (line {k})", "not UTF-8 text", hint, where=what)


def _lines_of(stream, where: str, what: str, hint: str) -> Iterator[tuple[str, Any]]:
    """(where:k, input) for each line of a binary stream, decoded one line at a time (only \\n ends a line, as in
    `lines`); a line that is not UTF-8 is an Unusable input of its own, so --skip-bad runs the others."""
    for k, raw in enumerate(stream, 1):
        raw = raw.rstrip(b"\n").removesuffix(b"\r")
        try:
            yield f"{where}{k}", _parsed(raw.decode("utf-8"))
        except UnicodeDecodeError:
            yield f"{where}{k}", Unusable(raw.decode("utf-8", "replace"), _not_utf8(what, k, hint))


def _file_lines(path: Path, arg: str) -> Iterator[tuple[str, Any]]:
    with path.open("rb") as fh:
        yield from _lines_of(fh, f"{arg}:", f"input file {arg}", "pass a text file, one input per line")


def _stdin_lines() -> Iterator[tuple[str, Any]]:
    yield from _lines_of(sys.stdin.buffer, "stdin line ", "stdin", "pipe UTF-8 text, one input per line")


def _count_lines(path: Path) -> int:
    n, last = 0, b"\n"
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            n, last = n + block.count(b"\n"), block[-1:]
    return n + (last != b"\n")


# ----------------------------------------------------------------------------- tables

# input roles of text tasks (Task.columns) -> the usual column names for them, tried after the recipe's mapping;
# the role is also the key the task's parse step reads (QA's question/context, text-classification's text_pair)
_TEXT_ROLES = {"text": ("text",), "text_pair": ("text_pair",), "question": ("question",), "context": ("context",),
               "document": ("document", "text"), "source": ("source", "text")}
_FILE_COLUMNS = ("file_name", "path", "file", "filename")  # as in media folders' metadata files


@dataclass
class Table:
    """How a table file's rows become inputs: for each field the task's parse step reads, the columns tried in
    order (the first in the table is used) and whether a row must have it; the id column; media paths are
    relative to the table's folder."""

    fields: list[tuple[str, tuple, bool]]
    id_column: str = "id"
    media: bool = False
    column: str | None = None  # --column, for the error naming it

    @classmethod
    def of(cls, ctx) -> "Table":
        """The table reading of this run's task (`for_run` with the context's run and options)."""
        return cls.for_run(ctx.run, ctx.options)

    @classmethod
    def for_run(cls, run, options) -> "Table":
        """The table reading of `run`'s task: the recipe's data.columns first, then the usual names; --column
        NAME (options.column) is the main input's column. Needs the recipe only, no model."""
        task, mapped = run.task, run.recipe.data.columns
        if task.modality.media:
            roles = [task.modality.column]
        else:
            roles = [r for r in task.columns if r in _TEXT_ROLES] or ["text"]  # NER trains on word lists
        declared = task.infer_columns(run.params) if callable(task.infer_columns) else task.infer_columns
        fields = []
        for i, role in enumerate(roles):
            names: tuple = declared.get(role) or _TEXT_ROLES.get(role, (role, *_FILE_COLUMNS))
            if role in mapped:
                names = (mapped[role], *names)
            fields.append((role, tuple(dict.fromkeys(names)), i == 0 or role not in task.optional_columns))
        column = options.column
        if column:
            fields[0] = (fields[0][0], (column,), True)
        return cls(fields, mapped.get("id", "id"), task.modality.media, column)

    def resolve(self, columns: list[str], arg: str) -> list[tuple[str, Any]]:
        """(field, its column) for the fields this table has (a required one missing is an error listing the
        columns there are)."""
        out = []
        for field, names, required in self.fields:
            found = next((n for n in names if (n[0] if isinstance(n, tuple) else n) in columns), None)
            if found is None and required:
                wanted = " or ".join(repr(n) for n in names if isinstance(n, str))
                there = ", ".join(repr(c) for c in columns) or "none"
                hint = ("pass --column with one of them" if self.column else
                        f"pass --column NAME, or map it with --set data.columns.{field}=NAME")
                raise TaskcliError(f"{arg} has no {wanted} column (its columns: {there})",
                                   f"{hint}; a file of one input per line is read as lines when named .txt")
            if found is not None:
                out.append((field, found))
        return out

    def item(self, row: dict, resolved: list, where: str, base: Path, keep_id: bool, from_bytes: bool):
        """One row -> its input: a Cell (one field) or a Record (several), or Unusable naming what is wrong
        (`from_bytes`: a lone surrogate is a byte that was not UTF-8, as CSV cells are read)."""
        values: dict[str, Any] = {}
        problem = None
        for field, column in resolved:
            value = row.get(column[0]) if isinstance(column, tuple) else row.get(column)
            if isinstance(column, tuple):
                value = value.get(column[1]) if isinstance(value, dict) else None
                column = ".".join(column)
            if isinstance(value, str) and (bad := _not_unicode(value)) is not None:
                problem = problem or _not_unicode_error(bad, where, column, from_bytes)
                value = _printable(value)
            elif value is None or value == "":
                problem = problem or BadInput(f"has no {column!r} value", f"no {column!r} value",
                                              "fill it in, or drop the row", where)
                value = ""
            elif not isinstance(value, str):
                kind = _kind(value)
                problem = problem or BadInput(f"has {column!r} as {kind}, not text", f"{column!r} is {kind}, not "
                                              "text", f"make its {column!r} a string", where)
                value = ""
            elif self.media:
                path = Path(value).expanduser()
                value = value if path.is_absolute() else str(base / path)
            values[field] = value
        first = next(iter(values.values()), "")
        out = Unusable(first, problem) if problem else Cell(first) if len(values) == 1 else Record(values)
        if keep_id:
            out.table_id = row.get(self.id_column)
        return out

    def entries(self, path: Path, arg: str) -> Iterator[tuple[str, Any]]:
        """(where, input) for each row of the table at `path`, read as it is needed (parquet a batch at a time)."""
        reader = _READERS[path.suffix.lower()]
        rows = reader(path, arg)
        columns = next(rows)
        resolved = self.resolve(columns, arg)
        keep_id = self.id_column in columns
        base, from_bytes, n = path.parent, reader is _csv_rows, 0
        for n, (where, row) in enumerate(rows, 1):
            if isinstance(row, Unusable):
                yield where, row
            else:
                yield where, self.item(row, resolved, where, base, keep_id, from_bytes)
        if not n:
            raise _header_only(arg)

    def check(self, path: Path, arg: str) -> None:
        """The table at `path` read as far as its first row: a file that will not open or read, an empty or
        header-only one and a missing column are the same errors `entries` gives, before any model loads."""
        rows = _READERS[path.suffix.lower()](path, arg)
        try:
            self.resolve(next(rows), arg)
            if next(rows, None) is None:
                raise _header_only(arg)
        except OSError as err:  # no permission, a folder named .csv, an I/O error
            raise TaskcliError(f"cannot read {arg} ({err.strerror or err})", "check the path and its permissions") \
                from None
        finally:
            rows.close()


def _header_only(arg: str) -> TaskcliError:
    return TaskcliError(f"{arg} has a header but no rows", "add rows, or leave the file out")


def _csv_rows(path: Path, arg: str):
    """The header, then (file:line, row dict) per row; a row that is not UTF-8 is Unusable (the rest run)."""
    import csv

    # surrogateescape: a byte that is not UTF-8 becomes a lone surrogate, caught per cell (Table.item)
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ",", strict=True)
        with _csv_errors(arg, reader):
            if not reader.fieldnames:
                raise TaskcliError(f"{arg} is empty", "give a table with a header row")
            yield [c for c in reader.fieldnames if c is not None]
            for row in reader:
                yield f"{arg}:{reader.line_num}", row


def _count_csv(path: Path, arg: str) -> int:
    import csv

    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ",", strict=True)
        with _csv_errors(arg, reader):
            return max(sum(1 for row in reader if row) - 1, 0)


@contextmanager
def _csv_errors(arg: str, reader):
    """csv.Error (an unclosed quote, say) as one line naming the file and line."""
    import csv

    try:
        yield
    except csv.Error as err:
        line = getattr(reader, "reader", reader).line_num  # (a DictReader counts only the rows it read whole)
        raise TaskcliError(f"{arg}:{line} is not valid CSV ({err})",
                           "check its quoting (a quoted cell must end with a quote)") from None


def _jsonl_rows(path: Path, arg: str):
    """The first object's keys, then (file:line, object) per non-blank line (Unusable: not UTF-8, not an object)."""
    def objects():
        for where, value in _file_lines(path, arg):
            if isinstance(value, str) and not isinstance(value, Unusable):
                if not value.strip():
                    continue
                value = Unusable(value, BadInput("is not a JSON object", "not a JSON object",
                                                 "write one JSON object per line", where))
            yield where, value

    todo, before = objects(), []
    for where, value in todo:  # the columns are the first object's keys
        before.append((where, value))
        if isinstance(value, dict):
            break
    if not before:
        raise TaskcliError(f"{arg} is empty", "give one JSON object per line")
    yield list(before[-1][1]) if isinstance(before[-1][1], dict) else []
    yield from before
    yield from todo


def _count_jsonl(path: Path, arg: str) -> int:
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def _json_records(path: Path, arg: str) -> list:
    """A .json file's records: a list of objects, the first list in an object, or JSON lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise TaskcliError(f"{arg} is not UTF-8 text (byte {err.start})", "save it as UTF-8") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return None  # JSON lines, read as such
    if isinstance(doc, dict):
        doc = next((v for v in doc.values() if isinstance(v, list)), [doc])
    return doc if isinstance(doc, list) else [doc]


def _json_rows(path: Path, arg: str):
    records = _json_records(path, arg)
    if records is None:  # not one JSON document: JSON lines
        yield from _jsonl_rows(path, arg)
        return
    if not records:
        raise TaskcliError(f"{arg} holds no records", "give a list of JSON objects")
    yield list(records[0]) if isinstance(records[0], dict) else []
    for k, record in enumerate(records, 1):
        where = f"{arg} record {k}"
        if not isinstance(record, dict):
            record = Unusable(json.dumps(record), BadInput("is not a JSON object", "not a JSON object",
                                                           "give a list of JSON objects", where))
        elif (bad := _not_unicode(record)) is not None:
            record = Unusable(json.dumps(record), _not_unicode_error(bad, where))
        yield where, record


def _count_json(path: Path, arg: str) -> int:
    records = _json_records(path, arg)
    return _count_jsonl(path, arg) if records is None else len(records)


def _parquet_rows(path: Path, arg: str):
    """The schema's columns, then (file row k, row dict) per row, read a batch of rows at a time."""
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except Exception as err:  # noqa: BLE001 - pyarrow's errors about a file that is not parquet
        raise TaskcliError(f"{arg} is not a parquet file ({err})", "check the file") from None
    yield list(table.schema_arrow.names)
    k = 0
    for batch in table.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            k += 1
            yield f"{arg} row {k}", row


def _count_parquet(path: Path, arg: str) -> int:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception as err:  # noqa: BLE001
        raise TaskcliError(f"{arg} is not a parquet file ({err})", "check the file") from None


_READERS: dict[str, Callable] = {".csv": _csv_rows, ".tsv": _csv_rows, ".jsonl": _jsonl_rows, ".json": _json_rows,
                                 ".parquet": _parquet_rows}
_COUNTERS: dict[str, Callable] = {".csv": _count_csv, ".tsv": _count_csv, ".jsonl": _count_jsonl,
                                  ".json": _count_json, ".parquet": _count_parquet}


def is_table(arg: str) -> bool:
    return arg != "-" and Path(arg).suffix.lower() in TABLE_SUFFIXES and _is_file(Path(arg).expanduser())


def media_paths(ctx, args: list[str], expand: Callable[[list[str]], list[str]]) -> list[str]:
    """Media tasks' paths: `expand` (files, folders, globs, `-`) for each argument, and a table's rows' paths
    (relative to its folder) for a table file; a row without one is Unusable."""
    table = Table.of(ctx)
    out: list[str] = []
    for arg in args:
        if is_table(arg):
            path = Path(arg).expanduser()
            out.extend(item for _, item in table.entries(path, arg))
        else:
            out.extend(expand([arg]))
    if table.column and not any(is_table(arg) for arg in args):
        raise _column_without_table()
    return out


def check_tables(run, options, args: list[str]) -> None:
    """Every table argument's header read (and its first row) before the model loads, so a missing column, an
    empty, header-only or unreadable table, or --column without a table, is one line before anything heavy."""
    table = Table.for_run(run, options)
    tables = [arg for arg in args if is_table(arg)]
    for arg in tables:
        table.check(Path(arg).expanduser(), arg)
    if table.column and not tables:
        raise _column_without_table()


def _column_without_table() -> TaskcliError:
    return TaskcliError("--column applies to table files (" + ", ".join(TABLE_SUFFIXES) + ")",
                        "drop --column, or pass a table")


# ----------------------------------------------------------------------------- arguments


class Entries:
    """(where, input) pairs of `taskcli infer` arguments, read lazily: a file's lines (or a table's rows) as they
    are needed, stdin as it comes, so memory does not grow with the input count. `total` is known up front
    (files' lines are counted first, which is fast) unless stdin is among them."""

    def __init__(self, args: list[str], table: Table | None = None):
        self.parts = [_part(arg, n, table) for n, arg in enumerate(args, 1)]
        counts = [count for count, _ in self.parts]
        self.total = None if None in counts else sum(counts)
        if table is not None and table.column and not any(is_table(arg) for arg in args):
            raise _column_without_table()

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        for _, entries in self.parts:
            yield from entries()

    def __radd__(self, before: list) -> "Entries":
        """`[(where, input), ...] + entries`: those first (e.g. QA's --question/--context)."""
        out = Entries([])
        out.parts = [(len(before), lambda: iter(before)), *self.parts]
        out.total = None if self.total is None else len(before) + self.total
        return out


def _part(arg: str, n: int, table: Table | None):
    """(how many entries, a function giving them) for argument number `n`: '-' (stdin lines), a table file (its
    rows), another existing file (its lines), or the text itself (a JSON argument may hold several lines)."""
    if arg == "-":
        return None, _stdin_lines
    path = Path(arg).expanduser()
    if len(arg) < 1024 and "\n" not in arg and not arg.lstrip().startswith("{") and _is_file(path):
        suffix = path.suffix.lower()
        if table is not None and suffix in TABLE_SUFFIXES:
            return _COUNTERS[suffix](path, arg), lambda: table.entries(path, arg)
        return _count_lines(path), lambda: _file_lines(path, arg)
    if path.suffix.lower() in _FILE_SUFFIXES and " " not in arg:
        raise TaskcliError(f"input file not found: {arg}", "check the path (or quote the text you meant)")
    if not arg.lstrip().startswith("{"):
        found = [(f"input {n}", _argument(arg))]
    elif len(lines(arg)) == 1:
        found = [(f"input {n}", _parsed(arg))]
    else:
        found = [(f"input {n} line {k}", _parsed(line)) for k, line in enumerate(lines(arg), 1)]
    return len(found), lambda: iter(found)


def _argument(arg: str):
    """A literal text argument; one that is not valid Unicode (argv bytes that were not UTF-8) is Unusable."""
    bad = _not_unicode(arg)
    return arg if bad is None else Unusable(arg, _not_unicode_error(bad, from_bytes=True))


def arg_entries(arg: str, n: int, ctx) -> Iterator[tuple[str, Any]]:
    """(where, input) pairs of argument number `n` alone (see `Entries`)."""
    return _part(arg, n, Table.of(ctx))[1]()


def text_entries(args: list[str], ctx) -> Entries:
    """The (where, input) pairs of a text task's arguments, tables read as `ctx`'s task reads them."""
    return Entries(args, Table.of(ctx))
