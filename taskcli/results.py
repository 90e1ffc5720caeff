"""`infer --output FILE`: result rows written as they are made, in input order, to .jsonl, .csv or .parquet (by
suffix), and `--resume` to continue a run that was killed (kill -9 included) from what the file holds.

JSON Lines and CSV are appended a chunk at a time and flushed to disk (fsync) after each, so a killed run leaves
complete rows plus at most one cut-off line, which --resume drops before it appends the rest. Parquet is written
once, at the end (a parquet file is readable only when closed), so it cannot be resumed.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from taskcli.errors import TaskcliError, quoted

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


def row_of(item, result: dict) -> dict:
    return {"input": item, **result}


def json_line(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False, default=float) + "\n"


def check(path: Path, resume: bool, overwrite: bool) -> None:
    """Before any work: a known suffix, and an existing file only with --resume (continue it) or --overwrite."""
    if path.suffix.lower() not in SUFFIXES:
        raise TaskcliError(f"--output {path}: unknown file type '{path.suffix}'", f"use one of {', '.join(SUFFIXES)}")
    if resume and overwrite:
        raise TaskcliError("--resume and --overwrite contradict each other", "continue the file, or replace it")
    if resume and path.suffix.lower() == ".parquet":
        raise TaskcliError("--resume needs a .jsonl or .csv output: a parquet file is written whole at the end",
                           "write .jsonl to resume, and convert it afterwards")
    if path.is_dir():
        raise TaskcliError(f"--output {path} is a folder", "give a file path, e.g. results.jsonl")
    if path.exists() and not (resume or overwrite) and path.stat().st_size > 0:
        raise TaskcliError(f"{path} already exists", "pass --resume to continue it, or --overwrite to replace it")
    if not path.parent.exists():
        raise TaskcliError(f"no such folder: {path.parent}", "create it first")


class Writer:
    """Appends rows to an --output file; `done` is how many rows it already held (--resume)."""

    def __init__(self, path: Path, resume: bool):
        self.path = path
        self.kind = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}[path.suffix.lower()]
        self.header: list[str] | None = None
        self.kept: list[dict] = []  # parquet: rows until close
        self.last_input: Any = None
        self.done = self._recover() if resume and path.exists() else 0
        if self.done == 0 and self.kind != "parquet":
            path.write_text("", encoding="utf-8")

    def _recover(self) -> int:
        """Complete rows already in the file; a cut-off last line (the run was killed mid-write) is removed."""
        data = self.path.read_bytes()
        cut = data.rfind(b"\n") + 1
        if cut < len(data):
            with self.path.open("r+b") as fh:
                fh.truncate(cut)
            data = data[:cut]
        text = data.decode("utf-8")
        if self.kind == "jsonl":
            rows = []
            for k, line in enumerate(text.splitlines(), 1):
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    raise TaskcliError(f"{self.path}:{k} is not a JSON row: cannot resume it",
                                       "pass --overwrite to start again") from None
            self.last_input = rows[-1].get("input") if rows else None
            return len(rows)
        rows = list(csv.reader(io.StringIO(text)))
        if not rows:
            return 0
        self.header = rows[0]
        body = rows[1:]
        if body and len(body[-1]) != len(self.header):  # cut inside a quoted field that held a line break
            raise TaskcliError(f"{self.path}: its last row is incomplete", "remove it, or pass --overwrite")
        self.last_input = _cell_value(body[-1][0]) if body else None
        return len(body)

    def check_continues(self, total: int | None, before) -> None:
        """The file's last row is for the input the resumed run counts at that place (same inputs, same order):
        `before` is that input (None when there are fewer inputs than rows), `total` the inputs' count if known."""
        if not self.done:
            return
        if before is None or (total is not None and self.done > total):
            counted = f"the {total} inputs" if total is not None else "the inputs"
            raise TaskcliError(f"{self.path} holds {self.done} rows, more than {counted}",
                               "resume with the same inputs, or pass --overwrite")
        stored = self.last_input
        same = json.loads(json.dumps(before, default=float)) == stored if self.kind == "jsonl" else \
            _cell(before) == _cell(stored)
        if not same:
            raise TaskcliError(f"{self.path} row {self.done} is for another input ({quoted(stored, 40)}, here "
                               f"{quoted(before, 40)})", "resume with the same inputs in the same order, or pass "
                               "--overwrite")

    def write(self, rows: list[dict]) -> None:
        if not rows:
            return
        if self.kind == "parquet":
            self.kept.extend(rows)
            return
        if self.kind == "jsonl":
            text = "".join(json_line(r) for r in rows)
        else:
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            if self.header is None:
                keys = dict.fromkeys(k for r in rows for k in r if k not in ("input", "error"))
                self.header = ["input", *keys, "error", "extra"]  # the first rows' fields between
                writer.writerow(self.header)
            for r in rows:
                extra = {k: v for k, v in r.items() if k not in self.header}
                writer.writerow([_cell(r.get(k)) for k in self.header[:-1]] + [_cell(extra) if extra else ""])
            text = buffer.getvalue()
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    def close(self) -> None:
        if self.kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            # nested results (top-k lists, boxes) as JSON text: one schema whatever each row holds
            columns = list(dict.fromkeys(k for r in self.kept for k in r))
            table = pa.table({c: [_cell(r.get(c)) if isinstance(r.get(c), (dict, list)) else r.get(c)
                                  for r in self.kept] for c in columns})
            pq.write_table(table, self.path)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=float)


def _cell_value(text: str):
    try:
        return json.loads(text) if text[:1] in "{[" else text
    except json.JSONDecodeError:
        return text

