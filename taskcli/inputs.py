"""Reading `taskcli infer` inputs: literal texts, text files (one input per line), `-` for stdin.

A line that is a JSON object is kept as a dict (structured inputs such as QA's question/context).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from taskcli.errors import TaskcliError

_FILE_SUFFIXES = {".txt", ".jsonl", ".json", ".tsv", ".csv"}


def _lines(text: str) -> list:
    out: list = []
    for line in text.splitlines():
        if not line.strip():
            continue
        stripped = line.strip()
        if stripped.startswith("{"):
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError:
                value = line
            out.append(value)
        else:
            out.append(line)
    return out


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # e.g. a text too long to be a file name
        return False


def read_text_inputs(args: list[str]) -> list:
    """Each arg: '-' (stdin lines), an existing file (its lines), or the text itself."""
    items: list = []
    for arg in args:
        if arg == "-":
            items.extend(_lines(sys.stdin.read()))
            continue
        path = Path(arg).expanduser()
        is_file = len(arg) < 1024 and "\n" not in arg and not arg.lstrip().startswith("{") and _is_file(path)
        if is_file:
            try:
                items.extend(_lines(path.read_text(encoding="utf-8")))
            except UnicodeDecodeError:
                raise TaskcliError(f"input file {arg} is not UTF-8 text", "pass a text file, one input per line") from None
        elif path.suffix.lower() in _FILE_SUFFIXES and " " not in arg:
            raise TaskcliError(f"input file not found: {arg}", "check the path (or quote the text you meant)")
        else:
            items.extend(_lines(arg) if arg.lstrip().startswith("{") else [arg])
    return items
