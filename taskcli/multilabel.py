"""Multi-label classification: any number of labels per row, a sigmoid per label and BCE (issue 21).

The data gives a row's labels in one of three layouts, read here into one form, a list of label names per row in
the task's label column:

- a list per row (JSONL, Parquet, a hub `Sequence`): `{"text": ..., "label": ["sports", "politics"]}`;
- one string split by `data.label_separator` (CSV): `sports|politics`;
- one 0/1 column per label: `data.label_columns: [sports, politics, tech]`, or found when there is no label
  column and every column besides the task's inputs holds only 0/1 (two or more such columns).

A plain string (or id) label column stays single-label: without a separator `a|b` is one class of that name.
"""

from __future__ import annotations

from taskcli.errors import TaskcliError

MULTI = "multi_label_classification"  # transformers' config.problem_type: sigmoid scores, BCEWithLogitsLoss
METRICS = ("f1_micro", "f1_macro", "subset_accuracy", "loss")  # what eval.metric_for_best_model may name
DEFAULT_THRESHOLD = 0.5  # a model saved without a chosen one (a Hub multi-label model)
LISTED = "a list per row"  # the layout that needs no reading


def learn(run, layout: str | None = None) -> None:
    """The run is multi-label: the best checkpoint by micro F1 unless the recipe names another metric."""
    learned = run.learned
    learned.multi_label = True
    learned.label_layout = layout or learned.label_layout
    learned.best_metric, learned.greater_is_better = "f1_micro", True


def gather(ds, run):
    """`ds` (its columns already named by role) with a multi-label layout read into a list of labels per row; other
    data is returned as it is."""
    task, data = run.task, run.recipe.data
    role = task.label_column
    if not task.multi_label:
        if data.label_columns or data.label_separator:
            raise TaskcliError(f"data.label_columns / data.label_separator are for multi-label classification; "
                               f"{task.name} reads one label per row", "drop them from the recipe")
        return ds
    names = list(ds.column_names or [])
    layout = run.learned.label_layout
    if role in names and ds.features and _is_list(ds.features[role]) and layout and layout != LISTED:
        return ds  # read already: a stream's eval rows are taken off its training rows, which were read
    if data.label_columns:
        return _from_columns(ds, list(data.label_columns), run, found=False)
    if data.label_separator:
        return _split(ds, role, data.label_separator, run) if role in names else ds
    if role in names:
        feature = ds.features[role] if ds.features else None
        if _is_list(feature):
            _check_list(feature, role, run)
            learn(run, LISTED)
        elif type(feature).__name__ == "Json":  # datasets' type for a column of values of several kinds
            _mixed(ds, role, run)
        return ds
    columns = _binary_columns(ds, run)
    return _from_columns(ds, columns, run, found=True) if columns else ds


def _is_list(feature) -> bool:
    import datasets

    return isinstance(feature, (datasets.Sequence, datasets.LargeList, getattr(datasets, "List", datasets.Sequence))) \
        or isinstance(feature, list)


def _check_list(feature, role: str, run) -> None:
    """A list label column holds names or ids, not lists or records."""
    import datasets

    inner = feature[0] if isinstance(feature, list) else feature.feature
    if isinstance(inner, datasets.ClassLabel) or (isinstance(inner, datasets.Value) and (
            inner.dtype in ("string", "large_string") or inner.dtype.startswith("int"))):
        return
    column = run.recipe.data.columns.get(role, role)
    raise TaskcliError(f"column '{column}' holds lists of {getattr(inner, 'dtype', type(inner).__name__)}: a "
                       f"multi-label row lists its label names", 'write each row\'s labels as ["sports", "politics"]')


def _mixed(ds, role: str, run) -> None:
    """A label column of lists in some rows and something else in others: one line naming the first odd row."""
    from taskcli.errors import quoted

    values = ds[role] if hasattr(ds, "__len__") else []
    lists = [i for i, v in enumerate(values) if isinstance(v, list)]
    odd = next((i for i, v in enumerate(values) if not isinstance(v, (list, str))), None) if not lists else \
        next((i for i, v in enumerate(values) if not isinstance(v, list)), None)
    column = run.recipe.data.columns.get(role, role)
    where = f"row {odd + 1} holds {quoted(values[odd])}" if odd is not None else "its values are of several kinds"
    mixed = f" and row {lists[0] + 1} a list" if lists and odd is not None else ""
    raise TaskcliError(f"column '{column}' mixes kinds of labels: {where}{mixed}",
                       'write every row\'s labels as a list (["sports"] for one label, [] for none), or one label '
                       'per row')


def _split(ds, role: str, sep: str, run):
    """data.label_separator: 'sports|politics' -> ['sports', 'politics'] (spaces around a name dropped); an empty
    cell is a row with no label (a CSV has no other way to write one)."""
    import datasets

    column = run.recipe.data.columns.get(role, role)
    feature = ds.features[role] if ds.features else None
    if not (isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")):
        held = "lists already" if _is_list(feature) else f"{getattr(feature, 'dtype', 'no strings')} values"
        raise TaskcliError(f"data.label_separator '{sep}' splits a text label column, and column '{column}' holds "
                           f"{held}", "drop data.label_separator" if _is_list(feature) else
                           "map the column of separated labels with --set data.columns.label=COLUMN")

    def split(batch):
        return {role: [[p.strip() for p in (v or "").split(sep) if p.strip()] for v in batch[role]]}

    features = ds.features.copy()
    features[role] = datasets.List(datasets.Value("string"))
    learn(run, f"split by '{sep}'")
    return ds.map(split, batched=True, features=features)


def _binary_columns(ds, run) -> list[str]:
    """With no label column: the columns besides the task's inputs when all of them hold only 0/1 (two or more);
    [] when none does; an error when some do and others do not (which are labels is then a guess)."""
    if ds.features is None or not hasattr(ds, "__len__"):  # a stream: its values are not read ahead
        return []
    rest = [c for c in ds.column_names if c not in run.task.columns and c != "id"]
    binary = [c for c in rest if _bad_value(ds, c) is None]
    if not binary:
        return []
    if len(binary) >= 2 and len(binary) == len(rest):
        return binary
    others = [c for c in rest if c not in binary]
    why = f"and {', '.join(others)} {'does' if len(others) == 1 else 'do'} not" if others else "and only one"
    raise TaskcliError(f"no '{run.task.label_column}' column; {', '.join(binary)} "
                       f"{'holds' if len(binary) == 1 else 'hold'} only 0/1 {why}: which columns are labels is "
                       f"ambiguous", f"name the 0/1 label columns: --set 'data.label_columns=[{', '.join(binary)}]', "
                       f"or map a label column with --set data.columns.label=COLUMN")


def _bad_value(ds, column: str):
    """None when `column` is an integer/bool column of 0/1 only, else (row, value) of its first other value."""
    import datasets

    from taskcli.preflight import column_values

    feature = ds.features[column]
    if not (isinstance(feature, datasets.Value) and (feature.dtype == "bool" or feature.dtype.startswith("int"))):
        return 0, f"{getattr(feature, 'dtype', type(feature).__name__)} values"
    values = column_values(ds, column)
    return next(((i, v) for i, v in enumerate(values) if v not in (0, 1)), None)


def _from_columns(ds, columns: list[str], run, found: bool):
    """One 0/1 column per label -> a list of label ids per row (ClassLabel named by the columns, in their order)."""
    import datasets

    role = run.task.label_column
    names = list(ds.column_names or [])
    if not found and role in names:
        raise TaskcliError(f"data.label_columns and a '{role}' column both give labels: which to read is ambiguous",
                           f"drop data.label_columns, or the '{role}' column")
    missing = [c for c in columns if c not in names]
    if missing:
        raise TaskcliError(f"data.label_columns: no column '{missing[0]}' in the data; columns: {', '.join(names)}",
                           "list the 0/1 label columns the data has")
    if hasattr(ds, "__len__"):
        for column in columns:
            bad = _bad_value(ds, column)
            if bad is not None:
                row, value = bad
                at = f"holds {value}" if isinstance(value, str) else f"row {row + 1} holds {value!r}"
                raise TaskcliError(f"label column '{column}' {at}: data.label_columns are 0/1 columns (1: the row "
                                   f"has that label)", "write 0 or 1 in every row, or leave the column out")

    def hot(batch):
        rows = len(batch[columns[0]])
        return {role: [[k for k, c in enumerate(columns) if batch[c][i]] for i in range(rows)]}

    features = ds.features.copy()
    for c in columns:
        del features[c]
    features[role] = datasets.List(datasets.ClassLabel(names=columns))
    learn(run, f"one 0/1 column per label{' (found)' if found else ''}")
    return ds.map(hot, batched=True, remove_columns=columns, features=features)


def multi_hot(value, index: dict[str, int], names=None) -> list[float]:
    """A row's labels (a list, or one label for a single-label row) -> 1.0 at each label's id, 0.0 elsewhere;
    `names`: the ClassLabel names when the row holds ids."""
    from taskcli.tasks.label_sets import label_id

    hot = [0.0] * len(index)
    for v in value if isinstance(value, list) else [value]:
        hot[label_id(names[int(v)] if names and not isinstance(v, str) else v, index)] = 1.0
    return hot


def check(run) -> None:
    """A multi-label run's eval.metric_for_best_model must be one it reports."""
    wanted = run.recipe.eval.metric_for_best_model
    if run.learned.multi_label and run.recipe.train.eval_strategy != "no" and wanted and wanted not in METRICS:
        raise TaskcliError(f"eval.metric_for_best_model '{wanted}' is not a multi-label metric",
                           f"use one of {', '.join(METRICS)}: --set eval.metric_for_best_model=f1_micro")


def before_save(run, model) -> None:
    """The threshold chosen on the eval split goes into the model's config, where infer reads it."""
    if run.learned.multi_label and run.learned.threshold is not None:
        model.config.multi_label_threshold = float(run.learned.threshold)


def header(run) -> str:
    """The run header's line: 'multi-label: 12 labels (a list per row), sigmoid, BCE'."""
    layout = f" ({run.learned.label_layout})" if run.learned.label_layout else ""
    weights = " with pos_weight" if run.recipe.train.class_weights else ""
    return f"multi-label: {len(run.labels or [])} labels{layout}, sigmoid, BCE{weights}"


def threshold(run, model, given: float | None) -> float | None:
    """The score a label needs in infer: --threshold, else the one the model's config records; None for a
    single-label model (an error when --threshold was given)."""
    config = model.config
    if getattr(config, "problem_type", None) != MULTI:
        if given is not None:
            raise TaskcliError(f"--threshold applies to multi-label models, and {run.model_source} is single-label",
                               "drop --threshold (--top-k sets how many labels a row lists)")
        return None
    return float(given if given is not None else getattr(config, "multi_label_threshold", None) or DEFAULT_THRESHOLD)


def over(scores, threshold: float, id2label: dict) -> dict:
    """Every label scoring at least `threshold`, highest first (ties in id order, as the pipeline sorts)."""
    values = [float(s) for s in scores]
    ranked = sorted(range(len(values)), key=lambda i: -values[i])
    return {"labels": [{"label": id2label[i], "score": values[i]} for i in ranked if values[i] >= threshold],
            "threshold": threshold}


def pos_weight(counts, rows: int, n: int) -> list[float]:
    """BCE's pos_weight per label: its negative rows over its positive ones (a label no row has gets 1)."""
    return [(rows - counts[i]) / counts[i] if counts[i] else 1.0 for i in range(n)]
