"""Reading `taskcli infer` inputs, and the one rule every task keeps: each input gives exactly one output row.

Texts are literal arguments, text files (one input per line) or `-` for stdin, read lazily (`Entries`); a line
that is a JSON object is kept as a dict (structured inputs such as QA's question/context). Every line counts,
blank ones included, so rows out match lines in. Media tasks take file paths (files.expand_inputs).

An input a task's `parse` step cannot use (an empty line, a fill-mask text without a mask, an unreadable image)
raises `BadInput` (or the media loader's own error, which names its file): taskcli/inference.py then stops the run
with an error naming where it is (`input 2`, `stdin line 3`, `notes.txt:3`, or the file), or with --skip-bad
reports it on stderr and puts an error row in its place.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterator

from taskcli.errors import TaskcliError

_FILE_SUFFIXES = {".txt", ".jsonl", ".json", ".tsv", ".csv"}
SKIP_HINT = "or pass --skip-bad to get an error row for it and run the others"


class BadInput(TaskcliError):
    """One input that cannot be used: `says` completes a sentence naming where it is (`input 2` + ` is empty`),
    `reason` goes in its error row."""

    def __init__(self, says: str, reason: str, hint: str):
        self.says, self.reason = says, reason
        super().__init__(says, f"{hint}, {SKIP_HINT}")

    def at(self, where: str) -> TaskcliError:
        return TaskcliError(f"{where} {self.says}", self.hint)


def empty() -> BadInput:
    return BadInput("is empty", "empty input", "remove it")


def _parsed(line: str):
    stripped = line.strip()
    if stripped.startswith("{"):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            pass
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


def _lines_of(stream, where: str, what: str, hint: str) -> Iterator[tuple[str, Any]]:
    """(where:k, input) for each line of a binary stream, decoded one line at a time (only \\n ends a line, as in
    `lines`), so a bad byte is reported with its line."""
    for k, raw in enumerate(stream, 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise TaskcliError(f"{what} is not UTF-8 text (line {k})", hint) from None
        yield f"{where}{k}", _parsed(line.rstrip("\n").removesuffix("\r"))


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


class Entries:
    """(where, input) pairs of `taskcli infer` arguments, read lazily: a file's lines as they are needed, stdin as
    it comes, so memory does not grow with the input count. `total` is known up front (files' lines are counted
    first, which is fast) unless stdin is among them."""

    def __init__(self, args: list[str]):
        self.parts = [_part(arg, n) for n, arg in enumerate(args, 1)]
        counts = [count for count, _ in self.parts]
        self.total = None if None in counts else sum(counts)

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        for _, entries in self.parts:
            yield from entries()

    def __radd__(self, before: list) -> "Entries":
        """`[(where, input), ...] + entries`: those first (e.g. QA's --question/--context)."""
        out = Entries([])
        out.parts = [(len(before), lambda: iter(before)), *self.parts]
        out.total = None if self.total is None else len(before) + self.total
        return out


def _part(arg: str, n: int):
    """(how many entries, a function giving them) for argument number `n`: '-' (stdin lines), an existing file
    (its lines), or the text itself (a JSON argument may hold several lines)."""
    if arg == "-":
        return None, _stdin_lines
    path = Path(arg).expanduser()
    if len(arg) < 1024 and "\n" not in arg and not arg.lstrip().startswith("{") and _is_file(path):
        return _count_lines(path), lambda: _file_lines(path, arg)
    if path.suffix.lower() in _FILE_SUFFIXES and " " not in arg:
        raise TaskcliError(f"input file not found: {arg}", "check the path (or quote the text you meant)")
    if not arg.lstrip().startswith("{"):
        found = [(f"input {n}", arg)]
    elif len(lines(arg)) == 1:
        found = [(f"input {n}", _parsed(arg))]
    else:
        found = [(f"input {n} line {k}", _parsed(line)) for k, line in enumerate(lines(arg), 1)]
    return len(found), lambda: iter(found)


def arg_entries(arg: str, n: int) -> Iterator[tuple[str, Any]]:
    """(where, input) pairs of argument number `n` alone (see `Entries`)."""
    return _part(arg, n)[1]()


def text_entries(args: list[str]) -> Entries:
    return Entries(args)


def text_of(item, keys: tuple[str, ...] = ("text",)) -> str:
    """The text of one input: a plain line, or the first of `keys` in a JSON object; BadInput when it is missing
    or blank."""
    if isinstance(item, dict):
        key = next((k for k in keys if k in item), None)
        if key is None:
            names = " or ".join(repr(k) for k in keys)
            raise BadInput(f"is a JSON object without a {names} field (it has {', '.join(map(repr, item)) or 'none'})",
                           f"no {names} field", f"give it a {names} field")
        text = "" if item[key] is None else str(item[key])
        if not text.strip():
            raise BadInput(f"has an empty {key!r}", f"empty {key!r}", f"fill in its {key!r}")
        return text
    if not str(item).strip():
        raise empty()
    return str(item)
