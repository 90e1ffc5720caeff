"""The preflight: one pass over the data a finetune or eval will use, before any model loads.

It stops with one line naming the file (or split), row and column of a row that cannot be used (a blank label or
text, an image or recording that does not open, a file that will not decode), or goes on and says, in a `note:`
line and in the run header, what a user could have meant either way (labels that differ only in spaces or case,
float labels that are class ids, train rows repeated in eval, a plan too short to learn).

`data.load` calls `files` before reading local files and `scan` on the rows as read (before an eval split is carved,
so row numbers are the file's); finetune/eval call `check` on the splits they use; `taskcli check` lists problems.
"""

from __future__ import annotations

import codecs
import math
import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from taskcli.errors import TaskcliError

SKIP_HINT = "fix it or remove it from the data, or set data.skip_bad: true to drop such rows (they are counted)"
MAX_CLASS_IDS = 20  # float labels that are whole numbers with at most this many values are read as class ids
STREAM_SAMPLE_ROWS = 1000  # a streamed training split: rows of it the preflight reads
MIN_STEPS = 100  # fewer optimizer steps than this on a --data swap gets a note
TEXT_SUFFIXES = {".csv", ".tsv", ".json", ".jsonl", ".txt", ""}


@dataclass
class Findings:
    """What the preflight found: notes for the run (stderr and header), and problems (collect mode only)."""

    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)  # (split, what) -> rows dropped by data.skip_bad
    collect: bool = False
    seconds: float = 0.0  # time spent in the checks (finetune --json reports it as preflight_s)

    @contextmanager
    def timed(self):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - started


# ----------------------------------------------------------------------------- files


def files(paths: list[Path], encoding: str | None) -> None:
    """Local data files that will not read, each said as such before the reader's generic error: an empty file, a
    CSV/TSV with a header and no rows, text that does not decode (named with its line and byte offset)."""
    for path in paths:
        size = path.stat().st_size
        if size == 0:
            raise TaskcliError(f"data file {path} is empty",
                               "give a file with rows (a header line, then one row a line)")
        suffix = path.suffix.lower()
        if suffix not in TEXT_SUFFIXES:
            continue
        _decodes(path, encoding or "utf-8")
        if suffix in (".csv", ".tsv") and size < 1 << 16:
            lines = [line for line in path.read_bytes().splitlines() if line.strip()]
            if len(lines) <= 1:
                raise TaskcliError(f"data file {path} holds only a header line, no rows",
                                   "add rows below the header (one a line)")


def _decodes(path: Path, encoding: str, chunk: int = 1 << 20) -> None:
    """Decode the whole file as `encoding` (incrementally, a MB at a time); the first bad byte is an error naming its
    line and byte offset."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, lines = 0, 1
    with path.open("rb") as fh:
        while True:
            block = fh.read(chunk)
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as err:
                bad = offset - pending + err.start
                line = lines + block[:max(err.start - pending, 0)].count(b"\n")
                raise TaskcliError(
                    f"{path} is not {encoding} text: byte 0x{err.object[err.start]:02x} at line {line} (byte offset "
                    f"{bad}) does not decode", "set data.encoding to the file's encoding (e.g. --set "
                    "data.encoding=latin-1), or save the file as UTF-8") from None
            if not block:
                return
            offset += len(block)
            lines += block.count(b"\n")


# ----------------------------------------------------------------------------- rows


def _blank_rows(column, empty_list: bool = True) -> list[int]:
    """Rows of an Arrow column that are blank: null, NaN, a string of spaces only, an empty list unless `empty_list`
    is False (a multi-label row may have no label) (vectorised: 100k rows in milliseconds)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    mask = pc.is_null(column, nan_is_null=pa.types.is_floating(kind))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        mask = pc.or_(mask, pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(column)), 0))
    elif (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and empty_list:
        mask = pc.or_(mask, pc.equal(pc.list_value_length(column), 0))
    return pc.indices_nonzero(pc.fill_null(mask, True)).to_pylist()


def _media_problem(modality, value) -> str | None:
    """Why a media cell will not open (header-level: the modality's check, e.g. Pillow's open without decoding the
    pixels, soundfile's info), or None. Cells are paths or {"bytes", "path"} entries."""
    import io

    if value is None:
        return "no file given"
    if isinstance(value, dict):
        raw, name = value.get("bytes"), value.get("path")
        if raw is None and value.get("array") is not None:
            return None  # decoded audio
        source = io.BytesIO(raw) if raw else name
    else:
        source = name = value
    if source is None:
        return "the entry has neither bytes nor a path"
    if not isinstance(source, io.BytesIO):
        path = Path(str(source)).expanduser()
        if not path.is_file():
            return f"no such file: {name}"
        if path.stat().st_size == 0:
            return f"{name} is empty"
        if path.suffix.lower() == ".npy":  # depth maps as arrays
            return None
    return modality.header_problem(source, name)


def checked_roles(task) -> list[tuple[str, str]]:
    """(role, kind) of the columns checked row by row: 'label', 'text' (blank), or the modality's name: 'image',
    'audio' (opens)."""
    out = []
    if task.label_column and task.columns.get(task.label_column, "").startswith("class"):
        out.append((task.label_column, "label"))
    for role in task.columns:
        if role in task.modality.roles:
            out.append((role, task.modality.name))
        elif (not task.modality.media and role not in task.optional_columns and role != task.label_column
              and not task.packs_text and role not in ("answers", "objects")):
            out.append((role, "text"))
    return out


def _arrow_column(ds, column: str):
    """A column as one Arrow array, in the dataset's row order (datasets' own column access decodes images and is
    ~25x slower on 100k strings)."""
    return ds.select_columns([column]).with_format("arrow")[:].column(column).combine_chunks()


def column_values(ds, column: str) -> list:
    return _arrow_column(ds, column).to_pylist()


def distinct(ds, column: str) -> list:
    import pyarrow.compute as pc

    return pc.unique(_arrow_column(ds, column)).to_pylist()


def _where(source: str | None, split: str, row: int) -> str:
    """'train.csv row 3 (line 4)' for a local CSV/TSV, 'data.jsonl line 3', else "the train split's row 3"."""
    if source:
        path = Path(source)
        if path.suffix.lower() in (".csv", ".tsv"):
            return f"{path.name} row {row + 1} (line {row + 2})"
        if path.suffix.lower() in (".jsonl", ".txt"):
            return f"{path.name} line {row + 1}"
        return f"{path.name} row {row + 1}"
    return f"the {split} split's row {row + 1}"


def scan(run, splits: dict, sources: dict, findings: Findings, names: dict | None = None,
         offsets: dict | None = None) -> dict:
    """Row checks on materialised splits (split -> Dataset, canonical column names); returns the splits with bad rows
    dropped (data.skip_bad) and labels normalised. Raises at the first bad row unless `findings.collect`.
    `sources`: the file each split was read from (or None); `names`: the data's own name of each split; `offsets`:
    rows of the source before the split's first."""
    with findings.timed():
        return _scan(run, splits, sources, findings, names or {}, offsets or {})


def _scan(run, splits: dict, sources: dict, findings: Findings, names: dict, offsets: dict) -> dict:
    data = run.recipe.data
    for role, kind in checked_roles(run.task):
        col = data.columns.get(role, role)
        for split, ds in list(splits.items()):
            if role not in ds.column_names:
                continue
            if kind in ("label", "text"):
                bad = [(i, "blank") for i in _blank_rows(_arrow_column(ds, role), empty_list=kind == "text")]
                what = f"blank {'label' if kind == 'label' else 'text'}"
                if bad and len(bad) == len(ds):
                    where = _file_or_split(sources.get(split), names.get(split) or split)
                    _problem(findings, f"column '{col}' of {where} is empty in every row ({len(ds)})",
                             f"map the right column with --set data.columns.{role}=YOUR_COLUMN, or fill it")
                    continue
            else:
                values = column_values(ds, role)
                bad = [(i, why) for i, v in enumerate(values) if (why := _media_problem(run.task.modality, v))]
                what = f"unreadable {kind}"
            if not bad:
                continue
            if data.skip_bad and not findings.collect:
                drop = {i for i, _ in bad}
                splits[split] = ds.select([i for i in range(len(ds)) if i not in drop])
                findings.dropped[(split, what)] += len(drop)
                continue
            for i, why in bad[: 20 if findings.collect else 1]:
                detail = f"the {what.split()[1]} is blank" if why == "blank" else why
                where = _where(sources.get(split), names.get(split) or split, i + offsets.get(split, 0))
                _problem(findings, f"{where}, column '{col}': {detail}", SKIP_HINT)
    if findings.dropped:
        parts = ", ".join(f"{n} {what} in {split}" for (split, what), n in findings.dropped.items())
        findings.notes.append(f"data.skip_bad: dropped {sum(findings.dropped.values())} rows ({parts})")
    return _labels(run, splits, findings)


def _file_or_split(source: str | None, split: str) -> str:
    return Path(source).name if source else f"the {split} split"


def _problem(findings: Findings, message: str, hint: str) -> None:
    if not findings.collect:
        raise TaskcliError(message, hint)
    findings.problems.append(message)


def _labels(run, splits: dict, findings: Findings) -> dict:
    """One label per row: surrounding whitespace stripped (a note when that merged classes), labels differing only
    in case named, and whole-number float labels read as class ids unless regression is asked for."""
    import datasets

    role = run.task.label_column
    if (role, "label") not in checked_roles(run.task):
        return splits
    present = {s: ds for s, ds in splits.items() if role in ds.column_names}
    if not present:
        return splits
    dtype = getattr(next(iter(present.values())).features[role], "dtype", "")
    if dtype in ("string", "large_string"):
        seen = {v for ds in present.values() for v in distinct(ds, role) if v is not None}
        stripped = {v for v in seen if v != v.strip()}
        if stripped:
            merged = sorted(v for v in stripped if v.strip() in seen)
            for split, ds in present.items():
                splits[split] = ds.map(lambda b: {role: [v.strip() if v is not None else v for v in b[role]]},
                                       batched=True, desc="stripping labels")
            if merged:
                findings.notes.append("labels with surrounding spaces were merged into the class without them: "
                                      + ", ".join(f"{v!r} -> {v.strip()!r}" for v in merged[:5]))
            seen = {v.strip() for v in seen}
        by_case: dict[str, set] = {}
        for v in seen:
            by_case.setdefault(v.lower(), set()).add(v)
        alike = [sorted(group) for group in by_case.values() if len(group) > 1]
        if alike:
            findings.notes.append("labels differing only in case are separate classes: "
                                  + "; ".join(" / ".join(repr(v) for v in group) for group in sorted(alike)[:5])
                                  + " (make them one spelling in the data if they are one class)")
    elif dtype.startswith("float") and "regression" in type(run.params).model_fields and run.params.regression is None:
        seen = {v for ds in present.values() for v in distinct(ds, role) if v is not None and not math.isnan(v)}
        if seen and len(seen) <= MAX_CLASS_IDS and all(float(v).is_integer() and v >= 0 for v in seen):
            for split, ds in present.items():
                splits[split] = ds.cast_column(role, datasets.Value("int64"))
            shown = ", ".join(f"{v:g}" for v in sorted(seen)[:6]) + (", ..." if len(seen) > 6 else "")
            findings.notes.append(f"the labels are whole numbers written as floats ({shown}): read as {len(seen)} "
                                  f"classes; for regression (one number, MSE) set params.regression: true (--set "
                                  f"params.regression=true)")
    return splits


def stream_sample(run, stream, name: str, findings: Findings, source: str | None = None, offset: int = 0):
    """A streamed training split: its first STREAM_SAMPLE_ROWS rows get the row checks (`offset`: rows of the source
    before the stream, e.g. eval rows taken off its front). With data.skip_bad the stream comes back filtered: its
    bad rows are dropped as training reads it (a note says so; they cannot be counted ahead)."""
    import datasets

    data = run.recipe.data
    if data.skip_bad and not findings.collect:
        findings.notes.append("data.skip_bad: rows of the training stream with a blank label or text or an unreadable "
                              "file are dropped as it is read (not counted: the stream is not read ahead)")
        return stream.filter(lambda row: row_ok(run, row))
    with findings.timed():
        rows = list(stream.take(STREAM_SAMPLE_ROWS))
        if rows:
            sample = datasets.Dataset.from_list(rows, features=stream.features)
            scan(run, {name: sample}, {name: source}, Findings(collect=findings.collect, problems=findings.problems),
                 offsets={name: offset})
    return stream


def row_ok(run, row: dict) -> bool:
    """One row passes the row checks (for a stream filtered with data.skip_bad)."""
    for role, kind in checked_roles(run.task):
        value = row.get(role)
        if kind in ("label", "text"):
            if value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not
                    value.strip()) or (kind == "text" and isinstance(value, list) and not value):
                return False
        elif role in row and _media_problem(run.task.modality, value):
            return False
    return True


# ----------------------------------------------------------------------------- the splits a run uses


def input_roles(task, ds) -> list[str]:
    """The columns that make a row's input (what train/eval overlap compares): every role but labels/targets."""
    if task.modality.media:  # the image or recording (ASR's text is its transcript)
        return [r for r in task.modality.roles[:1] if r in ds.column_names]
    targets = {task.label_column, "summary", "target", "answers", "objects", "tags", "id"}
    roles = [r for r in task.columns if r in ds.column_names and r not in targets]
    return roles or [r for r in task.columns if r in ds.column_names][:1]


def input_keys(task, ds):
    """One Arrow string per row standing for its input (columns joined, word lists joined), or a Python list of
    keys where a column is neither text nor a list of texts (e.g. image bytes)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = []
    for role in input_roles(task, ds):
        column = _arrow_column(ds, role)
        if pa.types.is_list(column.type) and pa.types.is_string(column.type.value_type):
            column = pc.binary_join(column, "\x1f")
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            columns = [column_values(ds, r) for r in input_roles(task, ds)]
            return [repr(values) for values in zip(*columns)]
        parts.append(pc.cast(column, pa.large_string()))
    if not parts:
        return []
    return parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, pa.scalar("\x1e", pa.large_string()))


def duplicates(task, ds) -> int:
    """Rows whose input an earlier row of the split already had."""
    import pyarrow.compute as pc

    keys = input_keys(task, ds)
    return len(keys) - (len(set(keys)) if isinstance(keys, list) else pc.count_distinct(keys, mode="all").as_py())


def overlap(task, train, evals) -> int:
    """Eval rows whose input is also a training row's (exact duplicates)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    keys = input_keys(task, evals)
    base, rows = _unindexed(train)
    seen = input_keys(task, base)
    if isinstance(seen, pa.Array) and isinstance(keys, pa.Array):
        # table rows whose input is an eval input, kept when the train split holds them
        hits = np.flatnonzero(pc.fill_null(pc.is_in(seen, value_set=keys), False).to_numpy(zero_copy_only=False))
        if rows is not None:
            hits = np.intersect1d(hits, rows)
        return pc.sum(pc.is_in(keys, value_set=seen.take(pa.array(hits, pa.int64())))).as_py() or 0
    seen = seen.to_pylist() if isinstance(seen, pa.Array) else seen
    seen = {seen[i] for i in (rows if rows is not None else range(len(seen)))}
    return sum(1 for key in (keys.to_pylist() if isinstance(keys, pa.Array) else keys) if key in seen)


def _unindexed(ds):
    """(the dataset over its whole Arrow table, the table rows it holds, or None for all): a carved or selected split
    keeps an index mapping, and reading a column through it gathers every value (0.4 s for 90k texts)."""
    import datasets

    if ds._indices is None:
        return ds, None
    return datasets.Dataset(ds.data, info=ds.info), ds._indices.column(0).to_numpy()


def planned_steps(args, train_rows: int | None) -> tuple[int, str]:
    """(optimizer steps, how they were counted), as the Trainer counts them (no dropped last batch)."""
    if args.max_steps > 0:
        return args.max_steps, "train.max_steps"
    batches = math.ceil(train_rows / (args.per_device_train_batch_size * args.world_size))
    per_epoch = max(batches // args.gradient_accumulation_steps + int(batches % args.gradient_accumulation_steps > 0), 1)
    total = math.ceil(args.num_train_epochs * per_epoch)
    return total, f"{args.num_train_epochs:g} epochs x {per_epoch} steps"


def plan(recipe, train_rows: int) -> tuple[int, int]:
    """(optimizer steps per epoch, total) as the Trainer counts them, from the recipe alone."""
    from types import SimpleNamespace

    from taskcli.distributed import world_size

    t = recipe.train
    args = SimpleNamespace(max_steps=t.max_steps, per_device_train_batch_size=t.batch_size, world_size=world_size(),
                           gradient_accumulation_steps=t.gradient_accumulation_steps, num_train_epochs=t.epochs)
    total, _ = planned_steps(args, train_rows)
    args.max_steps = -1
    one_epoch_args = SimpleNamespace(**{**vars(args), "num_train_epochs": 1})
    return planned_steps(one_epoch_args, train_rows)[0], total


def check(run, dsd, data_given: str | None, training: bool = True) -> list[str]:
    """Notes on the splits the run uses (train/eval overlap; a --data run too short to learn), added to the notes
    data.load found (run.data_info.notes), for the run header and `say`."""
    import datasets

    started = time.perf_counter()
    info = run.data_info
    notes = info.notes
    train, evals = dsd.get("train"), dsd.get("eval")
    same = info.train_split is not None and info.eval_split == info.train_split or run.smoke and data_given is None
    streamed = isinstance(train, datasets.IterableDataset)
    if train is not None and evals is not None and not streamed and not same:
        n = overlap(run.task, train, evals)
        if n:
            notes.append(f"{n} of {len(evals)} eval rows have the same input as a training row: their scores "
                         f"overstate how the model does on unseen data")
    if training and data_given and run.recipe.data.dataset and not run.smoke and info.train_rows and \
            run.recipe.train.max_steps <= 0:
        per_epoch, total = plan(run.recipe, info.train_rows)
        if total < MIN_STEPS:
            epochs = math.ceil(MIN_STEPS / per_epoch)
            t = run.recipe.train
            notes.append(f"--data has {info.train_rows} training rows: {t.epochs:g} epochs x {per_epoch} steps = "
                         f"{total} optimizer steps (the recipe was made for {run.recipe.data.dataset}), few to learn "
                         f"from; raise train.epochs (e.g. --set train.epochs={epochs}) or lower train.batch_size "
                         f"({t.batch_size})")
    info.preflight_s += time.perf_counter() - started
    return notes


def say(notes: list[str]) -> None:
    """The notes as `note:` lines on stderr (main process only), once the run goes on: a later error in the set-up
    stays the only line."""
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
