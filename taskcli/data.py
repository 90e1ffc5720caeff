"""Loading datasets: a hub id, local files (CSV/TSV/JSON/JSONL/Parquet/TXT) or a folder of them.

Returns a DatasetDict with canonical column names (the task's column roles) and the splits the engine
needs: ``train`` and ``eval`` (carved from train, seeded, when the data has no eval split).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from taskcli import modality as modality_mod
from taskcli import splits as splits_mod
from taskcli.data_files import READERS, json_field, local_files, sample_path
from taskcli.errors import TaskcliError

def load_raw(ref: str, recipe, modality=None, reader=None, streaming: bool = False, wanted=None, findings=None):
    """A DatasetDict from a hub id or a local path, before column mapping.

    `modality` (a taskcli.modality.Modality or its name; None: text): its folder datasets are read too. `reader`: the
    task's own file format (Task.read_data, e.g. CoNLL files), tried before the usual readers. `streaming`: data files
    and hub datasets come as IterableDatasets (folder layouts and a task's own formats, read whole anyway, stay
    Datasets). `wanted`: (split names) -> the splits to read, for a hub dataset (see _split_files); None reads them
    all.
    """
    import datasets

    data = recipe.data
    path = Path(ref).expanduser()
    if path.exists():
        # audiofolder / imagefolder layout: files + metadata, or one folder per label
        dsd = modality_mod.get(modality).folder(path)
        if dsd is None and reader is not None:
            dsd = reader(recipe, path)
        if dsd is not None:
            return dsd
        builder, files, options = local_files(path)
        from taskcli import preflight

        with findings.timed() if findings else contextlib.nullcontext():
            preflight.files([Path(f) for group in files.values() for f in group], data.encoding)
        if data.encoding and builder in ("csv", "json", "text"):
            options["encoding"] = data.encoding
        options.update(data.read_options)
        if builder == "json":
            key = data.field or json_field(Path(next(iter(files.values()))[0]), data.encoding or "utf-8")
            if key:
                options["field"] = key
        try:
            dsd = datasets.load_dataset(builder, data_files=files, streaming=streaming, **options)
        except Exception as err:  # noqa: BLE001 - reader errors are user data errors
            raise TaskcliError(f"could not read {path}: {str(err).splitlines()[0]}", "check the file format") from None
        return _absolute_paths(dsd, path if path.is_dir() else path.parent)
    if looks_like_path(ref):
        raise TaskcliError(f"data file not found: {ref}", "check the path (or give a hub dataset id)")
    options = dict(data.read_options)
    if data.revision:
        options["revision"] = data.revision
    if data.data_dir:
        options["data_dir"] = data.data_dir
    files = _split_files(ref, data.config, options, wanted) if wanted and not streaming else None
    try:
        return datasets.load_dataset(ref, data.config, streaming=streaming, **options, **files or {})
    except Exception as err:  # noqa: BLE001 - every failure gets its own one-line diagnosis
        from taskcli.hub import load_error

        raise load_error("dataset", ref, err, data.revision) from None


def _split_files(ref: str, config: str | None, options: dict, wanted) -> dict | None:
    """{"data_files": {split: files}} for the splits `wanted` picks, from the hub builder's own per-split file list
    (resolving it downloads no data): an eval fetches its split's files only, where a plain load_dataset downloads
    and prepares every split (vikhyatk/nyu_depth_v2: ~32 GB of train for a 654-row eval). None (read everything):
    the builder lists no files per split (a loading script), all are wanted, or the listing fails (the load that
    follows names the problem)."""
    import datasets

    try:
        files = datasets.load_dataset_builder(ref, config, **options).config.data_files or {}
    except Exception:  # noqa: BLE001
        return None
    keep = wanted(list(files)) if files else None
    if not keep or set(keep) >= set(files):
        return None
    return {"data_files": {split: list(files[split]) for split in keep}}


def _eval_split_only(eval_split_name: str | None, data):
    """`wanted` for load_raw when a run scores one split (eval): that split, or None (all) when it must be carved."""

    def wanted(names: list[str]) -> list[str] | None:
        name = eval_split_name or _eval_split_of(names, data, _train_split_of(names, data))
        return [name] if name in names else None

    return wanted


def _absolute_paths(dsd, base: Path):
    """String columns holding file paths relative to the data file (e.g. audio paths in a CSV) -> absolute."""
    for split, ds in dsd.items():
        first = next(iter(ds.take(1)), None) if is_streamed(ds) else ds[0] if len(ds) else None
        if first is None:
            continue
        cols = [c for c, v in first.items() if isinstance(v, str) and 0 < len(v) < 1024 and "\n" not in v
                and not Path(v).is_absolute() and Path(v).suffix and (base / v).is_file()]
        for col in cols:
            ds = ds.map(lambda row, c=col: {c: str((base / row[c]).resolve()) if row[c] else row[c]})
        dsd[split] = ds
    return dsd


def looks_like_path(ref: str) -> bool:
    return ref.startswith((".", "/", "~")) or Path(ref).suffix.lower() in READERS or ref.count("/") > 1


@dataclass
class DataInfo:
    """What a run's data really was: recorded in recipe.yaml and the model card, shown in the run header."""

    source: str  # hub id, absolute local path, or the bundled sample's path
    train_split: str | None  # split of the source used for training
    eval_split: str  # the name `eval --split` accepts for the eval rows: a split of the source, or "eval" (carved)
    eval_made: str  # how the eval rows were chosen, in words
    train_rows: int | None  # None: streamed (not counted)
    eval_rows: int
    notes: list[str] = field(default_factory=list)  # the preflight's notes (taskcli.preflight), for the run header
    preflight_s: float = 0.0  # seconds the preflight took


def is_local(ref: str | None) -> bool:
    return bool(ref) and Path(ref).expanduser().exists()


def local_or_id(ref: str) -> str:
    """An existing local path made absolute (what a run records must work from any folder); a hub id as is."""
    return str(Path(ref).expanduser().resolve()) if is_local(ref) else ref


def load(run, ref: str | None, eval_split_name: str | None = None, findings=None, only_eval: bool = False,
         carve_eval: bool = True):
    """Train/eval DatasetDict for `run`, with canonical column names, checked up front; sets `run.data_info`.

    Smoke mode without --data uses the task's bundled sample as both train and eval (the smoke check is that the
    model learns, i.e. memorises, its sample), unless the recipe names local data: that is used, a few rows of it.
    The preflight's row checks (taskcli.preflight.scan) run on the rows as read, before an eval split is carved, so
    the rows they name are the file's; `findings` (a preflight.Findings) collects them for `taskcli check`.
    `only_eval`: the run scores the eval split alone (eval), so a hub dataset's other splits are not fetched.
    `carve_eval=False` (finetune --folds, which makes its own eval rows): data without an eval split keeps every
    train row, and its eval split is the train rows.
    """
    import datasets

    from taskcli import preflight

    recipe = run.recipe
    data = recipe.data
    findings = findings or preflight.Findings()
    if data.streaming and not run.task.modality.streams:
        raise TaskcliError(f"data.streaming is not supported for {run.task.name} yet",
                           f"drop data.streaming ({run.task.modality} rows are decoded lazily from the datasets cache "
                           "anyway)")
    if run.smoke and ref is None and not is_local(data.dataset):
        return _load_sample(run, findings)
    ref = ref or data.dataset
    if not ref:
        raise TaskcliError("no data given", "pass --data PATH|ID or set data.dataset in the recipe")
    ref = local_or_id(ref)
    if data.streaming:
        return _load_streamed(run, ref, eval_split_name, findings)
    raw = load_raw(ref, recipe, run.task.modality, run.task.read_data,
                   wanted=_eval_split_only(eval_split_name, data) if only_eval else None, findings=findings)
    splits = {}
    train_name, eval_name = _split_names(raw, ref, data, eval_split_name)
    if train_name:
        splits["train"] = raw[train_name]
    if eval_name:
        splits["eval"] = raw[eval_name]
    # Check columns and emptiness on what was read, before any carving.
    splits = dict(_checked(datasets.DatasetDict({k: _rename(v, run) for k, v in splits.items()}), run))
    names = {"train": train_name, "eval": eval_name}
    sources = split_sources(ref, names.values())
    splits = _checked(preflight.scan(run, splits, {k: sources.get(names[k]) for k in splits}, findings, names), run)
    made = f"the data's '{eval_name}' split"
    if not eval_name and not carve_eval:
        splits["eval"], made = splits["train"], "the training rows (not carved)"
    elif not eval_name:
        if len(splits["train"]) < 2:
            raise TaskcliError(f"{ref} has {len(splits['train'])} row(s): too few to carve an eval split",
                               "give more data, or a separate validation file")
        splits["train"], splits["eval"], made = carve(splits["train"], data.eval_fraction, run.seed,
                                                      run.task.label_column)
    splits = _limited(splits, run)
    if eval_name and eval_name == train_name:
        made += " (the training rows: a model fine-tuned on them scores higher there than on unseen data)"
    run.data_info = DataInfo(ref, train_name, eval_name or splits_mod.CARVED, made, len(splits.get("train", ())),
                             len(splits["eval"]), findings.notes, findings.seconds)
    return datasets.DatasetDict(splits)


def _load_sample(run, findings):
    """--smoke without --data: the bundled sample as both train and eval, a smoke run checks the model memorises it."""
    import datasets

    from taskcli import preflight

    recipe, data = run.recipe, run.recipe.data
    path = sample_path(run.task, recipe)
    raw = load_raw(str(path), recipe, run.task.modality, run.task.read_data, findings=findings)
    sample = _rename(raw[next(iter(raw))], run)
    limit = recipe.smoke.max_samples
    sample = sample.select(range(min(limit, len(sample))))
    _checked(datasets.DatasetDict(train=sample, eval=sample), run)
    sample = preflight.scan(run, {"train": sample}, {"train": None}, findings)["train"]
    run.data_info = DataInfo(str(path), "train", "eval", "the bundled smoke sample itself (train = eval: a smoke "
                             "run checks that the model memorises it)", len(sample), len(sample), findings.notes,
                             findings.seconds)
    train = _shuffled_stream(sample.to_iterable_dataset(), run) if data.streaming else sample
    return StreamedDict(train=train, eval=sample) if data.streaming else datasets.DatasetDict(train=train, eval=sample)


def _split_names(raw, ref: str, data, eval_split_name: str | None) -> tuple[str | None, str | None]:
    """(train split, eval split) of the data as read; eval None: carve one from train."""
    train_name = _train_split_of(raw, data)
    carve_asked = eval_split_name == splits_mod.CARVED and splits_mod.CARVED not in raw
    if eval_split_name and eval_split_name not in raw and not (carve_asked and train_name):
        extra = ", eval (carved from train)" if train_name and not _eval_split_of(raw, data, train_name) else ""
        raise TaskcliError(f"split '{eval_split_name}' not in {ref}", f"splits: {', '.join(raw)}{extra}")
    eval_name = None if carve_asked else eval_split_name or _eval_split_of(raw, data, train_name)
    if not train_name and not eval_name:
        raise TaskcliError(f"no usable split in {ref}", f"splits found: {', '.join(raw)}; set data.train_split")
    return train_name, eval_name


def _limited(splits: dict, run) -> dict:
    """--smoke with --data: a few rows only; data.max_train_samples / max_eval_samples."""
    recipe, data = run.recipe, run.recipe.data
    if run.smoke:
        splits = {k: v.select(range(min(recipe.smoke.max_samples, len(v)))) for k, v in splits.items()}
    if data.max_train_samples and "train" in splits:
        splits["train"] = splits["train"].select(range(min(data.max_train_samples, len(splits["train"]))))
    if data.max_eval_samples:
        splits["eval"] = splits["eval"].select(range(min(data.max_eval_samples, len(splits["eval"]))))
    return splits


def split_sources(ref: str | None, splits) -> dict[str, str | None]:
    """The one local file each split was read from (None for hub data or a split of several files)."""
    out: dict[str, str | None] = {name: None for name in splits}
    path = Path(ref).expanduser() if ref else None
    if path is None or not path.exists():
        return out
    if path.is_file():
        return {name: str(path) for name in splits}
    try:
        _, by_split, _ = local_files(path)
    except TaskcliError:
        return out
    for name in splits:
        files = by_split.get(name) or []
        out[name] = files[0] if len(files) == 1 else None
    return out


STREAM_EVAL_ROWS = 1000  # data.streaming without data.max_eval_samples: the fixed eval set's size


def is_streamed(ds) -> bool:
    import datasets

    return isinstance(ds, datasets.IterableDataset)


class StreamedDict(dict):
    """train: an IterableDataset, eval: a Dataset (a DatasetDict holds one kind only)."""


def countable(dsd):
    """The splits a labels hook may read whole: a streamed train split is left out (its eval rows are fixed and
    materialised; label names of a ClassLabel column are in their features)."""
    return {"eval": dsd["eval"]} if isinstance(dsd, StreamedDict) else dsd


def _load_streamed(run, ref: str, eval_split_name: str | None, findings):
    """data.streaming: the training split is read as training consumes it (never materialised) and shuffled through
    a buffer; the eval rows are fixed and materialised: the first data.max_eval_samples (default 1000) rows of the
    eval split, or, when the data has none, as many rows taken off the front of the stream and kept out of training."""
    import datasets

    recipe = run.recipe
    data = recipe.data
    raw = load_raw(ref, recipe, run.task.modality, run.task.read_data, streaming=True, findings=findings)
    train_name = _train_split_of(raw, data)
    if not train_name:
        raise TaskcliError(f"no training split in {ref}", f"splits found: {', '.join(raw)}; set data.train_split")
    carve_asked = eval_split_name == splits_mod.CARVED and splits_mod.CARVED not in raw
    if eval_split_name and eval_split_name not in raw and not carve_asked:
        raise TaskcliError(f"split '{eval_split_name}' not in {ref}", f"splits: {', '.join(raw)}, eval (carved from "
                           "the stream)")
    eval_name = None if carve_asked else eval_split_name or _eval_split_of(raw, data, train_name)
    n_eval = data.max_eval_samples or STREAM_EVAL_ROWS
    if run.smoke:
        n_eval = min(n_eval, recipe.smoke.max_samples)
    train = raw[train_name]
    train = (train.to_iterable_dataset() if not is_streamed(train) else train)._resolve_features()
    train = _rename(train, run)
    _check_columns(train, "train", run)
    if eval_name:
        held = raw[eval_name]
        held = held.to_iterable_dataset() if not is_streamed(held) else held
    else:
        held, train = train.take(n_eval), train.skip(n_eval)
    evals = _materialised(_rename(held._resolve_features(), run).take(n_eval))
    made = f"the first {len(evals)} rows of the data's '{eval_name}' split" if eval_name else \
        f"the first {len(evals)} rows of the '{train_name}' stream, kept out of training"
    _checked(datasets.DatasetDict(eval=evals), run)
    from taskcli import preflight

    evals = _checked(preflight.scan(run, {"eval": evals}, {"eval": None}, findings), run)["eval"]
    source = split_sources(ref, [train_name])[train_name]
    train = preflight.stream_sample(run, train, "train", findings, source, 0 if eval_name else len(evals))
    if run.smoke:
        train = train.take(recipe.smoke.max_samples)
    if data.max_train_samples:
        train = train.take(data.max_train_samples)
    run.data_info = DataInfo(ref, train_name, eval_name or splits_mod.CARVED, made, None, len(evals), findings.notes,
                             findings.seconds)
    return StreamedDict(train=_shuffled_stream(train, run), eval=evals)


def _shuffled_stream(ds, run):
    """The training stream, repeated without end and shuffled through the buffer (the buffer mixes across passes).
    The Trainer then sees one endless epoch that train.max_steps ends, and a --resume skips exactly the batches
    already trained: with a stream that ends, a resume past the end of a pass skipped into the wrong pass."""
    if next(iter(ds.take(1)), None) is None:
        raise TaskcliError("the train split is empty", "check the data files / split names")
    return ds.repeat(None).shuffle(seed=run.seed, buffer_size=run.recipe.data.shuffle_buffer)


def _materialised(stream):
    import datasets

    rows = list(stream)
    return datasets.Dataset.from_list(rows, features=stream.features)


def _train_split_of(raw, data) -> str | None:
    """The recipe's train split if the data has it, else `train`; None when there is none."""
    return data.train_split if data.train_split in raw else ("train" if "train" in raw else None)


def _eval_split_of(raw, data, train_name: str | None) -> str | None:
    """The recipe's eval split if the data has it, else validation or test; None when eval must be carved."""
    if data.eval_split in raw:
        return data.eval_split
    return next((s for s in splits_mod.EVAL_ORDER if s in raw and s != train_name), None)


def carve(ds, fraction: float, seed: int, stratify_by: str | None):
    """(train, eval, how) with `fraction` of the rows held out, seeded; stratified by the label column when the task
    has one and every class can give rows to both sides (scikit-learn's train_test_split), so a small dataset's
    eval split still holds every class. Both keep the data's row order."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    index = np.arange(len(ds))
    values = ds[stratify_by] if stratify_by and stratify_by in ds.column_names else None
    categorical = values is not None and all(isinstance(v, (str, int)) for v in values)  # not regression scores
    how = f"carved from train: {fraction:.0%} of {len(ds)} rows, seed {seed}"
    try:
        train, held = train_test_split(index, test_size=fraction, random_state=seed,
                                       stratify=values if categorical else None)
        how += f", stratified by {stratify_by}" if categorical else ""
    except ValueError:  # a class with one row, or fewer eval rows than classes
        train, held = train_test_split(index, test_size=fraction, random_state=seed)
        how += f", not stratified (too few rows of some {stratify_by})"
    return ds.select(sorted(train)), ds.select(sorted(held)), how


def _rename(ds, run):
    """Dataset columns -> the task's column roles, per `data.columns` (role: column); a role whose mapped
    column is absent takes the first of the task's `column_aliases` present (e.g. `words` for `tokens`); a
    multi-label layout read into a list of labels per row."""
    names = ds.column_names
    mapping = {col: role for role, col in run.recipe.data.columns.items() if col != role and col in names}
    for role, aliases in run.task.column_aliases.items():
        if role not in names and role not in mapping.values():
            alias = next((a for a in aliases if a in names and a not in mapping), None)
            if alias:
                mapping[alias] = role
    unknown = [r for r in run.recipe.data.columns if r not in run.task.columns]
    if unknown:
        from taskcli.errors import did_you_mean

        raise TaskcliError(
            f"data.columns: '{unknown[0]}' is not a column role of {run.task.name}{did_you_mean(unknown[0], run.task.columns)}",
            f"roles: {', '.join(run.task.columns)}",
        )
    from taskcli import multilabel

    # several labels per row (a list, a separated string, 0/1 columns) -> a list in the label column
    return multilabel.gather(ds.rename_columns(mapping) if mapping else ds, run)


def _checked(dsd, run):
    for split, ds in dsd.items():
        if len(ds) == 0:
            raise TaskcliError(f"the {split} split is empty", "check the data file / split names")
        _check_columns(ds, split, run)
    return dsd


def _check_columns(ds, split: str, run) -> None:
    missing = [r for r in run.task.columns if r not in run.task.optional_columns and r not in ds.column_names]
    if missing:
        role = missing[0]
        col = run.recipe.data.columns.get(role, role)
        raise TaskcliError(
            f"missing column '{col}' ({run.task.columns[role]}) in the {split} data; columns: {', '.join(ds.column_names)}",
            f"map it with --set data.columns.{role}=YOUR_COLUMN",
        )
