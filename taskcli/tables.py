"""Tables as `taskcli infer` inputs (.csv, .tsv, .jsonl, .json, .parquet), read by column.

Each row gives one input made of the task's input columns only (as the recipe maps them, else the usual names, or
`--column`), never the header or another column's value; an `id` column rides along into the row's result. A row that
lacks its input is read as `Unusable`. `check_tables` reads each table's header and first row before the model loads.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from taskcli.errors import TaskcliError
from taskcli.texts import (BadInput, Cell, Record, Unusable, file_lines, is_file, kind_of, not_unicode,
                           not_unicode_error, printable)


TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


# input roles of text tasks (Task.columns) -> the usual column names for them, tried after the recipe's mapping;
# the role is also the key the task's parse step reads (QA's question/context, text-classification's text_pair)
TEXT_ROLES = {"text": ("text",), "text_pair": ("text_pair",), "question": ("question",), "context": ("context",),
               "document": ("document", "text"), "source": ("source", "text")}


FILE_COLUMNS = ("file_name", "path", "file", "filename")  # as in media folders' metadata files


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
            roles = [r for r in task.columns if r in TEXT_ROLES] or ["text"]  # NER trains on word lists
        declared = task.infer_columns(run.params) if callable(task.infer_columns) else task.infer_columns
        fields = []
        for i, role in enumerate(roles):
            names: tuple = declared.get(role) or TEXT_ROLES.get(role, (role, *FILE_COLUMNS))
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
            if isinstance(value, str) and (bad := not_unicode(value)) is not None:
                problem = problem or not_unicode_error(bad, where, column, from_bytes)
                value = printable(value)
            elif value is None or value == "":
                problem = problem or BadInput(f"has no {column!r} value", f"no {column!r} value",
                                              "fill it in, or drop the row", where)
                value = ""
            elif not isinstance(value, str):
                kind = kind_of(value)
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
        for where, value in file_lines(path, arg):
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
        elif (bad := not_unicode(record)) is not None:
            record = Unusable(json.dumps(record), not_unicode_error(bad, where))
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


COUNTERS: dict[str, Callable] = {".csv": _count_csv, ".tsv": _count_csv, ".jsonl": _count_jsonl,
                                  ".json": _count_json, ".parquet": _count_parquet}


def is_table(arg: str) -> bool:
    return arg != "-" and Path(arg).suffix.lower() in TABLE_SUFFIXES and is_file(Path(arg).expanduser())


def check_tables(run, options, args: list[str]) -> None:
    """Every table argument's header read (and its first row) before the model loads, so a missing column, an
    empty, header-only or unreadable table, or --column without a table, is one line before anything heavy."""
    table = Table.for_run(run, options)
    tables = [arg for arg in args if is_table(arg)]
    for arg in tables:
        table.check(Path(arg).expanduser(), arg)
    if table.column and not tables:
        raise column_without_table()


def column_without_table() -> TaskcliError:
    return TaskcliError("--column applies to table files (" + ", ".join(TABLE_SUFFIXES) + ")",
                        "drop --column, or pass a table")
