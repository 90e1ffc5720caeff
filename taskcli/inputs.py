"""Reading `taskcli infer` inputs, and the one rule every task keeps: each input gives exactly one output row.

Texts are literal arguments, text files (one input per line) or `-` for stdin; a line that is a JSON object is
kept as a dict (structured inputs such as QA's question/context). Every line counts, blank ones included, so
rows out match lines in. Media tasks read files the same way through files.read_media.

`gather` is the single mechanism for inputs that cannot be used (an empty line, a fill-mask text without a mask,
an unreadable image): without --skip-bad the first one stops the run with an error naming where it is
(`input 2`, `stdin line 3`, `notes.txt:3`, or the file); with --skip-bad it is reported on stderr and set aside
in `Inputs.bad`, and the engine (infer_stream) puts an error row in its place.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

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


class Inputs(list):
    """What predict takes, in input order; `bad` holds the inputs --skip-bad set aside, by their position among
    all the inputs, as their error rows ({"input": ..., "error": ...})."""

    def __init__(self, items: Iterable = ()):
        super().__init__(items)
        self.bad: dict[int, dict] = {}


def gather(entries: Iterable[tuple[str, Any]], use: Callable[[Any], Any], options: dict,
           errors: tuple[type[Exception], ...] = (BadInput,)) -> Inputs:
    """entries: (where, input) pairs in order; use(input) -> what predict takes, raising one of `errors` (BadInput,
    or a media loader's own error, which names its file) for an input that cannot be used."""
    out = Inputs()
    for position, (where, raw) in enumerate(entries):
        try:
            out.append(use(raw))
        except errors as err:
            located = err.at(where) if isinstance(err, BadInput) else err
            if not options.get("skip_bad"):
                raise located from None
            print(f"skipped: {getattr(located, 'message', located)}", file=sys.stderr)
            reason = err.reason if isinstance(err, BadInput) else getattr(err, "message", str(err))
            out.bad[position] = {"input": raw, "error": reason}
    if out.bad and not out:
        raise TaskcliError(f"none of the {len(out.bad)} inputs could be used", "see the messages above")
    return out


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


def arg_entries(arg: str, n: int) -> list[tuple[str, Any]]:
    """(where, input) for argument number `n`: '-' (stdin lines), an existing file (its lines), or the text itself
    (a JSON argument may hold several lines)."""
    if arg == "-":
        return [(f"stdin line {k}", _parsed(line)) for k, line in enumerate(lines(sys.stdin.read()), 1)]
    path = Path(arg).expanduser()
    if len(arg) < 1024 and "\n" not in arg and not arg.lstrip().startswith("{") and _is_file(path):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise TaskcliError(f"input file {arg} is not UTF-8 text", "pass a text file, one input per line") from None
        return [(f"{arg}:{k}", _parsed(line)) for k, line in enumerate(lines(text), 1)]
    if path.suffix.lower() in _FILE_SUFFIXES and " " not in arg:
        raise TaskcliError(f"input file not found: {arg}", "check the path (or quote the text you meant)")
    if not arg.lstrip().startswith("{"):
        return [(f"input {n}", arg)]
    found = lines(arg)
    if len(found) == 1:
        return [(f"input {n}", _parsed(found[0]))]
    return [(f"input {n} line {k}", _parsed(line)) for k, line in enumerate(found, 1)]


def text_entries(args: list[str]) -> list[tuple[str, Any]]:
    return [entry for n, arg in enumerate(args, 1) for entry in arg_entries(arg, n)]


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


def read_texts(args: list[str], options: dict, use: Callable[[Any], Any] = text_of,
               entries: list[tuple[str, Any]] | None = None) -> Inputs:
    """Text inputs through `gather`: blank ones are empty inputs; `use` turns each into what predict takes.
    `entries` replaces the arguments' own entries (a task that reads some arguments its own way)."""

    def checked(item):
        if isinstance(item, str) and not item.strip():
            raise empty()
        return use(item)

    return gather(text_entries(args) if entries is None else entries, checked, options)
