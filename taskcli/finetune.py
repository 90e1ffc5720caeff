"""`taskcli finetune`: a run in named phases, each one concern.

`finetune` resolves the run and its output folder, then a `Finetune` goes through `load` (data, preflight,
labels, model), `arguments` (TrainingArguments, --resume of a finished run), `start` (the folder, the header,
the features), `train` (the Trainer, Ctrl-C), `score` (the kept model's metrics) and `save` (model, processor,
report, recipe.yaml with provenance). A phase reads what the phases before it set on the object.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from taskcli import data as data_mod
from taskcli import collector, preflight
from taskcli import recipe as recipe_mod
from taskcli.distributed import check_processes_agree, is_main
from taskcli.errors import TaskcliError, disk_full
from taskcli.labels import class_weights
from taskcli.model_loading import build_smoke_model, load_processor_and_model, resolve_model_source
from taskcli.run import Run, prepare, quiet_libraries, uses_tiny_model
from taskcli.run_folder import (check_output_dir, default_output_dir, finished_run, interrupted, mark_run,
                                newest_checkpoint, no_space_left, start_run)
from taskcli.trainer import build_features, kept_model_metrics, make_trainer, report_step, scored_checkpoint, strip_prefix
from taskcli.training_args import check_train_section, ddp_arguments, device_name, sharding_arguments, training_arguments


def finetune(
    task: str,
    recipe: str | None = None,
    sets: list[str] | None = None,
    smoke: bool = False,
    flags: list[recipe_mod.Flag] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    dry_run: bool = False,
    command: str = "",
    log=None,
    callbacks: list | None = None,
    folds: int | None = None,
) -> dict:
    """Fine-tune; returns {"output_dir", "metrics", ...}. `log(renderable)` prints progress (stderr).

    `flags`: the options that stand for recipe fields (recipe.command_flags: --model, --data, --output-dir, --lora,
    --gate...), merged into the recipe with `sets` before its one validation. `callbacks`: more TrainerCallbacks
    (tune's pruning). `folds`: k-fold cross-validation (taskcli.folds), its result instead."""
    from taskcli import folds as folds_mod
    from taskcli import gates as gates_mod
    from taskcli import provenance

    run = prepare(task, recipe, sets, smoke, flags)
    checks = gates_mod.parse(run.recipe.eval.gates)  # a typo fails now, not after training
    out = Path(run.recipe.train.output_dir or default_output_dir(run))
    if dry_run:  # what would run: the recipe as recipe.yaml will record it (--model/--data/--set/--smoke folded in)
        return {"dry_run": True, "task": run.task.name, "recipe": run.resolved.name, "smoke": run.smoke,
                "output_dir": str(out), "output_dir_exists": out.exists(),
                "resolved": provenance.effective_recipe(run, out), **({"folds": folds} if folds else {})}
    check_train_section(run.recipe.train)  # DeepSpeed's package and GPUs, trainer_args' names: before any load
    # Under DDP only rank 0 judges the folder (and clears it: start_run); other ranks would see rank 0's files.
    resume_from = check_output_dir(out, resume, overwrite) if is_main() else (newest_checkpoint(out) if resume else None)
    job = Finetune(run, out, run.recipe.cli.model, run.recipe.cli.data, resume_from, log, callbacks)
    try:
        if folds:
            return folds_mod.cross_validate(job, folds, overwrite, command, sets, checks)
        job.load()
        finished = job.arguments()
        if finished:  # nothing to train, and nothing in the folder changes
            return {"task": run.task.name, "recipe": run.resolved.name, "output_dir": str(out), "finished": True,
                    **finished}
        job.start(replace=overwrite and not resume_from)
        result = job.train(command)
        metrics = job.score()
        job.save(metrics, result.training_loss, command, sets)
        args = job.args
        return {"task": run.task.name, "recipe": run.resolved.name, "output_dir": str(out), "metrics": metrics,
                "scored": job.scored, "gates_failed": gates_mod.check(checks, metrics, run.task.name),
                "train_loss": result.training_loss, "preprocess_s": round(job.preprocess_s, 3),
                "preflight_s": round(run.data_info.preflight_s, 3),
                "train_runtime_s": result.metrics.get("train_runtime"),
                "processes": args.world_size, "global_batch_size": args.train_batch_size * args.world_size
                * args.gradient_accumulation_steps}
    except Exception as err:
        if disk_full(err) and not isinstance(err, TaskcliError):
            raise no_space_left(err, [out, *run.temp_dirs()], job.began) from err
        raise
    finally:
        run.close()


class Finetune:
    """One fine-tuning run's phases and what they hand each other."""

    def __init__(self, run: Run, out: Path, model: str | None, data: str | None, resume_from: str | None, log,
                 callbacks: list | None = None):
        self.run, self.out, self.model_arg, self.data_arg = run, out, model, data
        self.resume_from, self.log, self.callbacks = resume_from, log, list(callbacks or [])
        self.began = time.time()  # files written after this are the run's (see no_space_left)
        self.progress: Any = None
        self.scored: dict = {}
        self.preprocess_s = 0.0

    def load(self) -> None:
        """Data (checked before any model loads), labels, then the model."""
        self.load_data()
        self.load_model()

    def load_data(self, folds: bool = False) -> None:
        """The data, checked (the preflight), and the label set it holds. `folds` (--folds): the train split alone,
        whole; the folds make the eval rows."""
        run = self.run
        quiet_libraries()
        run.reseed()
        self.dsd = data_mod.load(run, self.data_arg, carve_eval=not folds)
        if folds and "train" not in self.dsd:
            raise TaskcliError(f"--folds splits the training rows, and {run.data_info.source} has no train split",
                               "name it with --set data.train_split=NAME")
        if folds:
            import datasets

            self.dsd = datasets.DatasetDict(train=self.dsd["train"])
        preflight.check(run, self.dsd, self.data_arg)  # its notes are printed with the run header
        run.labels = run.recipe.data.labels or run.task.labels(run, data_mod.countable(self.dsd))

    def resolve_model(self) -> None:
        """Where the model loads from: --model, the recipe's checkpoint, or --smoke's tiny one, built now."""
        run = self.run
        self.tiny = uses_tiny_model(run, self.model_arg)
        run.model_source = build_smoke_model(run, self.dsd) if self.tiny else resolve_model_source(
            run, self.model_arg, run.recipe.model.checkpoint)
        # after the tiny model is built: once the process group exists, save_pretrained writes on rank 0 only
        check_processes_agree(run, self.model_arg, self.data_arg)

    def load_model(self) -> None:
        """The model (its source resolved unless a run of several models, --folds, did it once), class weights and
        LoRA."""
        run = self.run
        self.tiny = uses_tiny_model(run, self.model_arg)
        if run.model_source is None:
            self.resolve_model()
        self.model_desc = (f"a tiny randomly initialised {run.recipe.model.type} (--smoke)" if self.tiny
                           else data_mod.local_or_id(run.model_source))
        self.model = load_processor_and_model(run, run.labels)
        run.task.check(run)
        self.weights = class_weights(run, self.dsd["train"])
        if run.recipe.train.lora is not None:
            from taskcli import lora as lora_mod

            self.model = lora_mod.wrap(run, self.model)

    def arguments(self) -> dict | None:
        """TrainingArguments; {"step", "planned"} instead when --resume finds the run already did every step."""
        sharding, self.sharded_as = sharding_arguments(self.run, self.model)
        ddp = ddp_arguments(self.run, self.model)  # DDP's search for unused weights, only where a model has some
        self.args = training_arguments(self.run, str(self.out), sharding={**sharding, **ddp})
        if not self.resume_from:
            return None
        from taskcli.progress import planned_steps

        return finished_run(self.out, self.resume_from, planned_steps(self.args, self.run.data_info.train_rows)[0])

    def start(self, replace: bool) -> None:
        """The run begins: its folder (the one it replaces deleted only now), the header, the features."""
        from taskcli.progress import print_header

        run, main = self.run, is_main()
        if main:
            start_run(self.out, replace=replace)
        self.parameters = (sum(p.numel() for p in self.model.parameters()),
                           sum(p.numel() for p in self.model.parameters() if p.requires_grad))
        self.device = device_name(self.args)
        if main:
            print_header(run, self.model_desc, self.parameters, self.device, self.args, self.out, self.resume_from,
                         self.log, sharding=self.sharded_as)
        started = time.perf_counter()
        self.train_features = build_features(run, self.dsd["train"], True, self.log)
        self.eval_features = build_features(run, self.dsd["eval"], False, self.log)
        self.preprocess_s = time.perf_counter() - started

    def train(self, command: str):
        """trainer.train(); Ctrl-C is one line saying which checkpoint to resume from."""
        from taskcli.progress import EpochTicker, Evaluations, RichProgress

        run = self.run
        self.progress = RichProgress(log=self.log) if is_main() else None
        self.evaluations = Evaluations()
        self.trainer = make_trainer(run, self.model, self.args, self.train_features, self.eval_features,
                                    self.dsd["eval"], weights=self.weights,
                                    callbacks=[self.evaluations, EpochTicker(run.clock), *filter(None, [self.progress]),
                                               *self.callbacks])
        try:
            with collector.training():  # the loop's collections skip the libraries, the model and the data
                return self.trainer.train(resume_from_checkpoint=self.resume_from)
        except KeyboardInterrupt:
            if self.progress:
                self.progress.stop()
            raise interrupted(self.trainer, self.out, command) from None

    def score(self) -> dict:
        """The kept model's metrics: its training-time evaluation, else one pass now."""
        metrics = kept_model_metrics(self.run, self.trainer, self.evaluations.by_step)
        if metrics is None:  # no evaluation scored the kept model yet (eval_strategy no), or eval draws at random
            self.run.reseed()  # same random state as `taskcli eval` (e.g. MLM masks): same numbers
            metrics = strip_prefix(self.trainer.evaluate())  # the best (or, with eval_strategy=no, the last) model
        self.scored = scored_checkpoint(self.trainer)
        self.run.learned.threshold = metrics.get("threshold")  # multi-label: the kept model's, for its config
        return metrics

    def save(self, metrics: dict, train_loss: float, command: str, sets: list[str] | None) -> None:
        """Model (LoRA merged, the adapter beside it), processor, run report, recipe.yaml with provenance, metrics."""
        from taskcli import provenance, report, worst

        run, trainer, out = self.run, self.trainer, self.out
        # TASKCLI_REPORT=0: no run report (plots, worst examples), a few seconds less per run for CI smoke checks
        with_report = os.environ.get("TASKCLI_REPORT", "1") != "0"
        # the run report's worst examples, scored one process alone (a sharded loader would see a part of them)
        losses = report_step("worst examples", worst.ranked, trainer, self.eval_features) \
            if with_report and run.task.features_per_example and self.args.world_size == 1 else []
        if not trainer.is_world_process_zero():
            return
        final = trainer.model
        if run.recipe.train.lora is not None:  # the merged model where from_pretrained looks, the adapter beside it
            from taskcli import lora as lora_mod

            final = lora_mod.merge(trainer.model, out / "adapter")
        run.task.before_save(run, final)
        if run.recipe.train.lora is not None:
            final.save_pretrained(str(out))
        else:
            trainer.save_model(str(out))
        run.processor.save_pretrained(str(out))
        plots = report.write(out / "report", metrics, trainer.state.log_history) if with_report else []
        table = report_step("worst examples", worst.write, run, final.eval(), self.dsd["eval"], losses, out / "report")
        plots += [table] if table else []
        saved = provenance.effective_recipe(run, out, None if self.tiny else self.model.config.model_type)
        saved["provenance"] = provenance.record(
            run, command=command, sets=sets or [], model=self.model_arg, model_desc=self.model_desc, tiny=self.tiny,
            parameters=self.parameters, device=self.device, processes=self.args.world_size, scored=self.scored,
            class_weights=dict(zip(map(str, run.labels), self.weights)) if self.weights else None, features=self.dsd)
        provenance.write_run_files(run, out, saved, metrics, train_loss, plots)
        mark_run(out, status="finished", global_step=trainer.state.global_step,
                 max_steps=trainer.state.max_steps, last_checkpoint=Path(newest_checkpoint(out) or "").name)
