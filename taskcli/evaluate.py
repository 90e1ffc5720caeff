"""`taskcli eval`: score a model on a split with the same features and metric function as training-time eval, so
the numbers agree; gates and an optional report (plots, worst examples)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from taskcli import data as data_mod
from taskcli import preflight
from taskcli import recipe as recipe_mod
from taskcli.errors import TaskcliError
from taskcli.labels import align_label_ids, check_labels, rename_labels
from taskcli.model_loading import build_smoke_model, check_task_head, load_processor_and_model, resolve_model_source
from taskcli.run import Run, prepare, quiet_libraries, uses_tiny_model
from taskcli.trainer import build_features, make_trainer, report_step, strip_prefix
from taskcli.training_args import training_arguments


def evaluate(
    task: str,
    recipe: str | None = None,
    sets: list[str] | None = None,
    smoke: bool = False,
    flags: list[recipe_mod.Flag] | None = None,
    split: str | None = None,
    report: str | None = None,
) -> dict:
    """Score a model (--model: recipe.cli.model, else the recipe's); eval.gates (with --gate's) are checked, `report`
    names a folder for the plots. `flags`: recipe.command_flags, merged with `sets` before the one validation."""
    from taskcli import gates as gates_mod

    run = prepare(task, recipe, sets, smoke, flags)
    model, data = run.recipe.cli.model, run.recipe.cli.data
    checks = gates_mod.parse(run.recipe.eval.gates)
    report_dir = Path(report) if report else None
    if report_dir and (report_dir.is_file() or (report_dir.is_dir() and any(report_dir.iterdir()))):
        raise TaskcliError(f"report folder {report_dir} is not empty", "choose a new folder for --report")
    quiet_libraries()
    try:
        dsd = load_eval_data(run, data, split)
        tiny, mdl = load_scored_model(run, model, dsd)
        preflight.say(run.data_info.notes)  # once the model loaded: an error before it is the only line
        features = build_features(run, dsd["eval"], False)
        with tempfile.TemporaryDirectory(prefix="taskcli-eval-") as tmp:
            trainer = make_trainer(run, mdl, training_arguments(run, tmp, for_eval=True), None, features, dsd["eval"])
            run.reseed()  # as finetune's final eval: random eval-time masking agrees
            metrics = strip_prefix(trainer.evaluate())
        plots = write_report(run, report_dir, metrics, trainer, mdl, features, dsd["eval"]) if report_dir else []
        info = run.data_info
        return {"task": run.task.name, "model": "tiny (untrained, --smoke)" if tiny else run.model_source,
                "data": info.source, "split": info.eval_split, "split_made": info.eval_made,
                "samples": len(dsd["eval"]), "metrics": metrics, "report": plots,
                "gates_failed": gates_mod.check(checks, metrics, run.task.name)}
    finally:
        run.close()


def load_eval_data(run: Run, data: str | None, split: str | None):
    """The split to score (only its files are fetched), checked, its labels renamed by eval.label_map."""
    dsd = data_mod.load(run, data, eval_split_name=split, only_eval=True)
    preflight.check(run, dsd, data, training=False)
    info = run.data_info
    if info.train_split and info.eval_split == info.train_split:
        print(f"note: scoring split '{info.eval_split}', the training rows: a model fine-tuned on this data scores "
              f"higher on them than on unseen data", file=sys.stderr)
    if run.recipe.eval.label_map and not run.smoke:
        for name in dsd:
            dsd[name] = rename_labels(dsd[name], run.recipe.eval.label_map)
    return dsd


def load_scored_model(run: Run, model: str | None, dsd):
    """(tiny, model): --smoke's tiny model, or --model / the recipe's, its head and labels checked against the data
    (the eval split re-numbered to the model's label ids)."""
    data_labels = run.recipe.data.labels or run.task.labels(run, data_mod.countable(dsd))
    default = run.recipe.model.infer_default or run.recipe.model.checkpoint
    run.labels = data_labels
    if uses_tiny_model(run, model, default):
        run.model_source = build_smoke_model(run, dsd)
        return True, load_processor_and_model(run, data_labels)
    run.model_source = resolve_model_source(run, model, default)
    check_task_head(run, explicit=bool(model))
    mdl = load_processor_and_model(run, None)
    run.labels = check_labels(run, mdl)
    if run.labels:
        dsd["eval"] = align_label_ids(dsd["eval"], run.labels)
    return False, mdl


def write_report(run: Run, report_dir: Path, metrics: dict, trainer, mdl, features, rows) -> list[str]:
    """--report DIR: the metric plots, and the worst examples for tasks with one feature row per example."""
    from taskcli import report as report_mod
    from taskcli import worst

    plots = [str(p) for p in report_mod.write(report_dir, metrics)]
    if run.task.features_per_example:
        losses = report_step("worst examples", worst.ranked, trainer, features)
        table = report_step("worst examples", worst.write, run, mdl, rows, losses, report_dir)
        plots += [str(table)] if table else []
    return plots
