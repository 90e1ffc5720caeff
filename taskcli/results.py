"""`infer --output FILE`: result rows written as they are made, in input order, to .jsonl, .csv or .parquet (by
suffix), and `--resume` to continue a run that was killed (kill -9 included) from what the file holds.

JSON Lines and CSV are appended a chunk at a time and flushed to disk (fsync) after each, so a killed run leaves
complete rows plus at most one cut-off line, which --resume drops before it appends the rest. Parquet is written
once, at the end (a parquet file is readable only when closed), so it cannot be resumed.

A new file (and --overwrite's) starts as a temporary file beside the target, moved over it (os.replace) once the
first rows are in it: a run that fails before its first rows leaves an existing file as it was. A CSV's columns
are the fields of all rows so far: a field that first appears in a later row widens the file (rewritten the same
way), so no value is hidden in a catch-all column.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from taskcli.errors import TaskcliError, disk_full, quoted

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


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
    if not path.parent.is_dir():
        raise TaskcliError(f"--output {path}: {path.parent} is a file, not a folder", "give a path in a folder")
    try:  # before the model loads: a folder the run could not write to fails now
        tempfile.TemporaryFile(dir=path.parent).close()
    except OSError as err:
        raise TaskcliError(f"cannot write --output {path}: {err.strerror or err}", "choose another folder") from None


class Writer:
    """Appends rows to an --output file; `done` is how many rows it already held (--resume)."""

    def __init__(self, path: Path, resume: bool):
        self.path = path
        self.kind = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}[path.suffix.lower()]
        self.header: list[str] | None = None
        self.kept: list[dict] = []  # parquet: rows until close
        self.last_input: Any = None
        self.done = self._recover() if resume and path.exists() else 0
        self.fresh = self.done == 0  # nothing of the target is kept: the first rows replace it (see _replace)
        if self.fresh:
            self.header = None

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
        try:
            if self.kind == "jsonl":
                text = "".join(json_line(r) for r in rows)
            else:
                text = self._csv(rows)
            if self.fresh:
                self._replace(lambda tmp: _write_synced(tmp, "w", text))
                self.fresh = False
            else:
                _write_synced(self.path, "a", text)
        except OSError as err:
            self._raise_full(err)
            raise

    def _csv(self, rows: list[dict]) -> str:
        """The rows as CSV lines (with the header first in a new file); new fields widen the file first."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        new = list(dict.fromkeys(k for r in rows for k in r if k not in (self.header or ("input", "error"))))
        if self.header is None:
            self.header = ["input", *new, "error"]
            writer.writerow(self.header)
        elif new:
            self._widen(new)
        for r in rows:
            writer.writerow([_cell(r.get(k)) for k in self.header])
        return buffer.getvalue()

    def _widen(self, keys: list[str]) -> None:
        """Rewrite the CSV file with `keys` as new columns (before `error`); earlier rows leave them empty."""
        at = self.header.index("error") if "error" in self.header else len(self.header)
        header = self.header[:at] + keys + self.header[at:]
        if not self.fresh:
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(header)
            for row in list(csv.reader(io.StringIO(self.path.read_text(encoding="utf-8"))))[1:]:
                cells = dict(zip(self.header, row))
                writer.writerow([cells.get(k, "") for k in header])
            self._replace(lambda tmp: _write_synced(tmp, "w", buffer.getvalue()))
        self.header = header

    def _replace(self, write) -> None:
        """`write(tmp)` fills a temporary file beside the target, which then replaces it in one step (os.replace):
        the target is the old file or the new one, never half of either."""
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".partial")
        os.close(fd)
        try:
            write(tmp)
            # mkstemp makes the file private (0600): give it the old file's mode, or a new file's
            if self.path.exists():
                os.chmod(tmp, self.path.stat().st_mode & 0o7777)
            else:
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _raise_full(self, err: OSError) -> None:
        """A full disk is one line naming the --output file (the temporary file beside it is an inner detail)."""
        if disk_full(err):
            raise TaskcliError(f"no space left on device writing {self.path}", "free some space, or write the rows "
                               "elsewhere (--output)") from err

    def close(self) -> None:
        try:
            if self.kind == "parquet":
                import pyarrow as pa
                import pyarrow.parquet as pq

                # nested results (top-k lists, boxes) as JSON text: one schema whatever each row holds
                columns = list(dict.fromkeys(k for r in self.kept for k in r))
                table = pa.table({c: [_cell(r.get(c)) if isinstance(r.get(c), (dict, list)) else r.get(c)
                                      for r in self.kept] for c in columns})
                self._replace(lambda tmp: pq.write_table(table, tmp))
            elif self.fresh:  # no rows at all: still an (empty) file, as asked
                self._replace(lambda tmp: _write_synced(tmp, "w", ""))
        except OSError as err:
            self._raise_full(err)
            raise


def _write_synced(path, mode: str, text: str) -> None:
    """Write (or append) `text` and flush it to disk: a kill -9 after this keeps it."""
    with open(path, mode, encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


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

