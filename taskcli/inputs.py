"""Reading `taskcli infer` inputs, and the one rule every task keeps: each input gives exactly one output row.

Texts are literal arguments, text files (one input per line) or `-` for stdin, read lazily (`Entries`); a line
that is a JSON object is kept as a dict (structured inputs such as QA's question/context). Every line counts,
blank ones included, so rows out match lines in. Media tasks take file paths (the modality's expand_inputs).
Tables are read by column (taskcli/tables.py); what counts as a usable text is taskcli/texts.py's.

An input a task's `parse` step cannot use (an empty line, a fill-mask text without a mask, an unreadable image)
raises `BadInput` (or the media loader's own error, which names its file): taskcli/inference.py then stops the run
with an error naming where it is (`input 2`, `stdin line 3`, `notes.txt:3`, or the file), or with --skip-bad
reports it on stderr and puts an error row in its place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

from taskcli.errors import TaskcliError
from taskcli.tables import COUNTERS, TABLE_SUFFIXES, Table, check_tables, column_without_table, is_table
from taskcli.texts import (BadInput, Cell, Record, Unusable, count_lines, empty, file_lines, is_file, lines,
                           not_unicode, not_unicode_error, parsed_line, stdin_lines, text_of)

# what the tasks' parse steps and the loop import from here (tables.py and texts.py hold them)
__all__ = ["BadInput", "Cell", "Entries", "Record", "Table", "Unusable", "arg_entries", "check_tables", "empty", "lines",
           "media_paths", "text_entries", "text_of"]


_FILE_SUFFIXES = {".txt", *TABLE_SUFFIXES}


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
        raise column_without_table()
    return out


class Entries:
    """(where, input) pairs of `taskcli infer` arguments, read lazily: a file's lines (or a table's rows) as they
    are needed, stdin as it comes, so memory does not grow with the input count. `total` is known up front
    (files' lines are counted first, which is fast) unless stdin is among them."""

    def __init__(self, args: list[str], table: Table | None = None):
        self.parts = [_part(arg, n, table) for n, arg in enumerate(args, 1)]
        counts = [count for count, _ in self.parts]
        self.total = None if None in counts else sum(counts)
        if table is not None and table.column and not any(is_table(arg) for arg in args):
            raise column_without_table()

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
        return None, stdin_lines
    path = Path(arg).expanduser()
    if len(arg) < 1024 and "\n" not in arg and not arg.lstrip().startswith("{") and is_file(path):
        suffix = path.suffix.lower()
        if table is not None and suffix in TABLE_SUFFIXES:
            return COUNTERS[suffix](path, arg), lambda: table.entries(path, arg)
        return count_lines(path), lambda: file_lines(path, arg)
    if path.suffix.lower() in _FILE_SUFFIXES and " " not in arg:
        raise TaskcliError(f"input file not found: {arg}", "check the path (or quote the text you meant)")
    if not arg.lstrip().startswith("{"):
        found = [(f"input {n}", _argument(arg))]
    elif len(lines(arg)) == 1:
        found = [(f"input {n}", parsed_line(arg))]
    else:
        found = [(f"input {n} line {k}", parsed_line(line)) for k, line in enumerate(lines(arg), 1)]
    return len(found), lambda: iter(found)


def _argument(arg: str):
    """A literal text argument; one that is not valid Unicode (argv bytes that were not UTF-8) is Unusable."""
    bad = not_unicode(arg)
    return arg if bad is None else Unusable(arg, not_unicode_error(bad, from_bytes=True))


def arg_entries(arg: str, n: int, ctx) -> Iterator[tuple[str, Any]]:
    """(where, input) pairs of argument number `n` alone (see `Entries`)."""
    return _part(arg, n, Table.of(ctx))[1]()


def text_entries(args: list[str], ctx) -> Entries:
    """The (where, input) pairs of a text task's arguments, tables read as `ctx`'s task reads them."""
    return Entries(args, Table.of(ctx))
