"""What counts as a usable text input, and text read line by line.

Every text task's parse step takes its texts through `text_of`: a missing, blank, non-string or not-Unicode text is
a `BadInput` (one input that cannot be used: the loop stops naming where it is, or with --skip-bad gives it an error
row). Files and stdin are read one line at a time (only \\n ends a line, as `wc -l` counts); a line that is a JSON
object is kept as a dict; a line that is not UTF-8 is an `Unusable` input of its own.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterator

from taskcli.errors import TaskcliError


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
        out = super().__new__(cls, printable(shown))
        out.error = error
        return out


class Cell(str):
    """A table row's one input (a text or a media path); `table_id`, set when the table has an id column."""


class Record(dict):
    """A table row's inputs when the task reads several (text/text_pair, question/context)."""


def kind_of(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "a list" if isinstance(value, (list, tuple)) else "an object" if isinstance(value, dict) else \
        f"a {type(value).__name__}"


def not_unicode(value) -> str | None:
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
        return next((bad for k, v in value.items() for bad in (not_unicode(k), not_unicode(v)) if bad), None)
    if isinstance(value, (list, tuple)):
        return next((bad for v in value if (bad := not_unicode(v))), None)
    return None


def printable(text: str) -> str:
    """The text with each lone surrogate as U+FFFD, so that its row can be written."""
    return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text) if not_unicode(text) else text


def not_unicode_error(bad: str, where: str | None = None, column: str = "", from_bytes: bool = False) -> BadInput:
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
        kind = kind_of(text)
        raise BadInput(f"has{field} as {kind}, not text" if field else f"is {kind}, not text",
                       f"{field.strip() or 'input'} is {kind}, not text",
                       f"make{field} a string" if field else "give a text")
    if not text.strip():
        if field:
            raise BadInput(f"has an empty{field}", f"empty{field}", f"fill in its{field}")
        raise empty()
    if (bad := not_unicode(text)) is not None:
        raise not_unicode_error(bad)
    return text


def parsed_line(line: str):
    """A line that is a JSON object -> the dict (Unusable if it holds text that is not Unicode); others as is."""
    stripped = line.strip()
    if stripped.startswith("{"):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError:
            return line
        bad = not_unicode(value)
        return value if bad is None else Unusable(line, not_unicode_error(bad))
    return line


def lines(text: str) -> list[str]:
    """One entry per line as `wc -l` counts them (only \\n ends a line; a last line without one counts too)."""
    out = text.split("\n")
    if out[-1] == "":
        out.pop()
    return [line[:-1] if line.endswith("\r") else line for line in out]


def is_file(path: Path) -> bool:
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
            yield f"{where}{k}", parsed_line(raw.decode("utf-8"))
        except UnicodeDecodeError:
            yield f"{where}{k}", Unusable(raw.decode("utf-8", "replace"), _not_utf8(what, k, hint))


def file_lines(path: Path, arg: str) -> Iterator[tuple[str, Any]]:
    with path.open("rb") as fh:
        yield from _lines_of(fh, f"{arg}:", f"input file {arg}", "pass a text file, one input per line")


def stdin_lines() -> Iterator[tuple[str, Any]]:
    yield from _lines_of(sys.stdin.buffer, "stdin line ", "stdin", "pipe UTF-8 text, one input per line")


def count_lines(path: Path) -> int:
    n, last = 0, b"\n"
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            n, last = n + block.count(b"\n"), block[-1:]
    return n + (last != b"\n")
