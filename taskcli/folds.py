"""`taskcli finetune TASK --folds K`: k-fold cross-validation. The training rows are split into K folds
(scikit-learn's StratifiedKFold by label for classification, GroupKFold / StratifiedGroupKFold when
`data.group_column` keeps a document's or speaker's rows together, else KFold); each fold trains a fresh model on
the other K-1 and is scored on its own. The output dir holds fold-1/ ... fold-K/ (each a complete run folder) and
folds.json: every fold's metrics and the mean and standard deviation of each, which --gate holds to.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from taskcli.errors import TaskcliError
from taskcli.splits import CARVED

SUMMARY = "folds.json"


def check_request(folds: int, resume: bool, push_to_hub: str | None = None) -> None:
    """What is wrong with `--folds K` whatever the data: one line, before anything loads."""
    if folds < 2:
        raise TaskcliError(f"--folds {folds}: cross-validation needs at least 2 folds",
                           "pass --folds 5, say, or drop --folds to train once")
    if resume:
        raise TaskcliError("--resume does not continue a --folds run", "run it again with --overwrite")
    if push_to_hub:
        raise TaskcliError("--push-to-hub pushes one model, and --folds trains one per fold",
                           "push a fold's folder afterwards with `taskcli push OUT/fold-1 ORG/NAME`")


def not_in_eval(task: str, folds: int) -> TaskcliError:
    """eval --folds: refused (a hidden option, so that it is this line and not click's usage error)."""
    return TaskcliError("eval has no --folds: cross-validation is a training-time estimate (K models, each scored "
                        "on its own fold)", f"run taskcli finetune {task} --folds {folds}")


def split(ds, k: int, label_column: str | None, group_column: str | None, seed: int) -> tuple[list, str]:
    """([(train rows, eval rows)] * k, how in words): row indices into `ds`, each list sorted (the data's order).

    Every row is in exactly one eval fold; with `group_column` no value of it is on both sides of a fold. Raises a
    TaskcliError naming the cause when the data cannot give k folds."""
    import numpy as np
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    rows = len(ds)
    if k > rows:
        raise TaskcliError(f"--folds {k}: the training data has only {rows} rows", f"use --folds {rows} or fewer")
    labels = ds[label_column] if label_column and label_column in ds.column_names else None
    categorical = labels is not None and all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in labels)
    how = f"{k} folds of {rows} rows"
    groups = None
    if group_column:
        groups = _groups(ds, group_column)
        distinct = len(set(groups))
        if k > distinct:
            raise TaskcliError(f"--folds {k}: the training data has only {distinct} distinct values of "
                               f"data.group_column '{group_column}'", f"use --folds {distinct} or fewer")
        how += f", grouped by {group_column} ({distinct} groups)"
    if categorical:
        counts: dict = {}
        for value in labels:
            counts[value] = counts.get(value, 0) + 1
        rarest = min(counts, key=counts.get)
        if counts[rarest] < k and groups is None:
            raise TaskcliError(f"--folds {k}: label '{rarest}' has only {counts[rarest]} rows, too few for {k} "
                               "stratified folds (each fold needs one)",
                               f"use --folds {counts[rarest]} or fewer, or add rows of that label")
        categorical = counts[rarest] >= k  # grouped: stratify where every label can reach every fold
    if groups is not None:
        splitter = StratifiedGroupKFold(k, shuffle=True, random_state=seed) if categorical else GroupKFold(k)
    else:
        splitter = StratifiedKFold(k, shuffle=True, random_state=seed) if categorical else \
            KFold(k, shuffle=True, random_state=seed)
    how += f", stratified by {label_column}" if categorical else ""
    how += f", seed {seed}" if categorical or groups is None else ""
    index = np.arange(rows)
    folds = [(sorted(map(int, tr)), sorted(map(int, ev)))
             for tr, ev in splitter.split(index, labels if categorical else None, groups)]
    return folds, how


def _groups(ds, column: str) -> list:
    if column not in ds.column_names:
        raise TaskcliError(f"data.group_column '{column}' is not a column of the training data; columns: "
                           f"{', '.join(ds.column_names)}", "set data.group_column to one of them")
    values = ds[column]
    empty = next((i for i, v in enumerate(values) if v is None or v == ""), None)
    if empty is not None:
        raise TaskcliError(f"data.group_column '{column}' is empty in training row {empty + 1}",
                           "give every row a group (a document, a speaker...)")
    return [json.dumps(v, sort_keys=True, default=str) if isinstance(v, (list, dict)) else v for v in values]


def summarise(per_fold: list[dict]) -> tuple[dict, dict]:
    """(mean, std) of every single-number metric all folds report, in the first fold's order. The standard deviation
    is the population one (numpy's and scikit-learn's cross-validation reports' default, ddof=0)."""
    import numpy as np

    from taskcli.metrics import scalar_metrics

    scalars = [{k: v for k, v in scalar_metrics(f["metrics"]).items() if v is not None and not isinstance(v, bool)}
               for f in per_fold]
    names = [name for name in scalars[0] if all(name in s for s in scalars[1:])]
    mean = {name: float(np.mean([s[name] for s in scalars])) for name in names}
    std = {name: float(np.std([s[name] for s in scalars])) for name in names}
    return mean, std


def cross_validate(job, k: int, replace_out: bool, command: str, sets: list[str] | None, checks: list) -> dict:
    """Train and score the K folds of `job`'s data (a finetune.Finetune whose output dir is the folds' parent);
    returns the --json result. The folds are checked before any model loads."""
    from taskcli import gates as gates_mod
    from taskcli.distributed import is_main
    from taskcli.run_folder import mark_run, start_run

    run, out = job.run, job.out
    check_request(k, job.resume_from is not None)  # (the command checked it already; here for other callers)
    if run.recipe.data.streaming:
        raise TaskcliError("--folds needs the training rows counted and split, and data.streaming reads them as a "
                           "stream", "drop data.streaming (or --set data.streaming=false) to cross-validate")
    job.load_data(folds=True)
    if is_main() and run.data_info.eval_split != CARVED:  # the folds are the eval rows: say the data's are unused
        print(f"note: --folds cross-validates on the '{run.data_info.train_split}' split; the data's "
              f"'{run.data_info.eval_split}' split is not used", file=sys.stderr)
    data = job.dsd["train"]
    group_column = run.recipe.data.group_column
    folds, how = split(data, k, run.task.label_column, group_column, run.seed)
    job.resolve_model()  # once: the folds share the tiny --smoke model (or the checkpoint's source)
    if is_main():
        start_run(out, replace=replace_out)
    keep = [c for c in data.column_names if c != group_column or c in run.task.columns]
    info, per_fold = run.data_info, []
    for i, (train_rows, eval_rows) in enumerate(folds, start=1):
        if is_main():
            print(f"fold {i} of {k}: training on {len(train_rows)} rows, scoring {len(eval_rows)}", file=sys.stderr)
        run.data_info = replace(info, eval_split=f"fold-{i}", train_rows=len(train_rows), eval_rows=len(eval_rows),
                                eval_made=f"fold {i} of {how}")
        dsd = {"train": data.select(train_rows).select_columns(keep), "eval": data.select(eval_rows).select_columns(keep)}
        per_fold.append({"fold": i, "output_dir": str(out / f"fold-{i}"), "train_rows": len(train_rows),
                         "eval_rows": len(eval_rows), **_train_fold(job, dsd, out / f"fold-{i}", command, sets)})
    run.data_info = info
    mean, std = summarise(per_fold)
    result = {"task": run.task.name, "recipe": run.resolved.name, "output_dir": str(out), "folds": k, "split": how,
              "per_fold": per_fold, "mean": mean, "std": std}
    if is_main():  # written before the gates are judged: a gate naming a metric the task lacks keeps the folds' work
        Path(out / SUMMARY).write_text(json.dumps(result, indent=2, default=float) + "\n", encoding="utf-8")
        mark_run(out, status="finished", folds=k)
    return {**result, "gates_failed": gates_mod.check(checks, mean, run.task.name)}


def _train_fold(base, dsd: dict, out: Path, command: str, sets: list[str] | None) -> dict:
    """One fold: a fresh model from the seed, trained and scored like any run, saved in `out`."""
    import datasets

    job = type(base)(base.run, out, base.model_arg, base.data_arg, None, base.log, base.callbacks)  # a Finetune
    job.dsd = datasets.DatasetDict(dsd)
    base.run.reseed()  # every fold's model starts from the same draw
    job.load_model()
    job.arguments()
    job.start(replace=False)
    result = job.train(command)
    metrics = job.score()
    job.save(metrics, result.training_loss, command, sets)
    return {"metrics": metrics, "train_loss": result.training_loss, "scored": job.scored}
