"""`taskcli tune`: a hyperparameter search with Optuna over the recipe's `tune.space`.

Each trial is an ordinary fine-tuning run (taskcli.finetune, its recipe.yaml reproducing it) in DIR/trial-NNN/,
judged by the task's eval metric; a pruning callback reports every evaluation to the trial and stops the Trainer
when the pruner says so. The study lives in DIR/study.db (Optuna's RDB storage on SQLite), so `--resume` after a
kill (even kill -9) continues with the trials done. At the end: the trials' rows, DIR/best.yaml (the best trial's
recipe) and the plots (history.png, importance.png).
"""

from __future__ import annotations

import gc
import json
import math
import time
from pathlib import Path

from taskcli import gates as gates_mod
from taskcli.distributed import world_size
from taskcli.errors import TaskcliError, quoted
from taskcli.finetune import finetune
from taskcli.recipe import Flag, set_flags
from taskcli.run import prepare
from taskcli.run_folder import Interrupted, default_output_dir

STUDY_FILE = "study.db"
MARKER = ".taskcli-tune"  # what tells a folder holds a tune study (the only kind --resume continues)
STUDY_NAME = "taskcli-tune"
# Not part of what a study is: an older study resumed with a new value of these is the same search
_NOT_THE_SEARCH = ("startup_trials",)


def optuna_module():
    """optuna, or one line saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise TaskcliError("taskcli tune needs optuna, which is not installed", "pip install 'taskcli[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def tune(task: str, trials: int, recipe: str | None = None, sets: list[str] | None = None, smoke: bool = False,
         flags: list[Flag] | None = None, timeout: float | None = None, out: str | None = None,
         resume: bool = False, command: str = "", log=None) -> dict:
    """Run trials until `trials` of them finished (complete or pruned) or `timeout` seconds passed; returns the
    table, the best trial and the gates' verdict on it."""
    if world_size() > 1:  # each process would run a study of its own on the one SQLite file
        raise TaskcliError("taskcli tune runs its trials in one process: multi-process trials are not supported yet",
                           "run it without torchrun / accelerate launch")
    optuna = optuna_module()
    run = prepare(task, recipe, sets, smoke, flags)
    run.close()
    settings = run.recipe.tune
    if settings is None:
        raise TaskcliError(f"recipe {run.resolved.name} has no tune: section",
                           "add one, e.g. --set 'tune.space={train.learning_rate: {log_uniform: [1e-5, 1e-3]}}'")
    checks = gates_mod.parse(run.recipe.eval.gates)
    folder = Path(out) if out else default_output_dir(run).with_name(default_output_dir(run).name + "-tune")
    metric = settings.metric or run.recipe.eval.metric_for_best_model
    search = {**{k: v for k, v in settings.model_dump(mode="json").items() if k not in _NOT_THE_SEARCH},
              "task": run.task.name, "metric": metric, "direction": direction_of(run, settings, metric)}
    study, lock = open_study(optuna, folder, search, settings, run.recipe.train.seed, resume)
    base = [*(flags or []), *set_flags(sets or []), Flag(("tune",), None, "tune")]  # a trial is a plain run
    started, space, ran = time.monotonic(), distributions(optuna, settings.space), False
    try:
        while finished(study) < trials:
            if timeout is not None and time.monotonic() - started > timeout and ran:
                _say(log, f"tune: --timeout {timeout:g} s passed: {finished(study)} of {trials} trials finished")
                break
            how = dict(task=task, recipe=recipe, smoke=smoke, metric=metric, fallback=run.task.best_metric)
            one_trial(study, study.ask(space), folder, base, how, command, log)
            ran = True  # --timeout is checked between trials, as Optuna's: the first one always runs
        return summary(study, folder, search, checks, run.task.name)
    finally:
        lock.release()


def direction_of(run, settings, metric: str | None) -> str:
    """max or min: tune.direction, else the task's own for its main metric, else min for a loss."""
    if settings.direction:
        return settings.direction
    if metric in (None, run.task.best_metric):
        return "max" if run.task.greater_is_better else "min"
    if metric.endswith("loss"):
        return "min"
    raise TaskcliError(f"tune.direction: is a higher or a lower {metric} better?", "set tune.direction to max or min")


def open_study(optuna, folder: Path, search: dict, settings, seed: int, resume: bool):
    """The study in `folder` and its lock: new (the folder new or empty), or with --resume the one there, the same
    search; a trial a kill left running is marked failed and its parameters are tried again."""
    marker = folder / MARKER
    if folder.exists() and not folder.is_dir():
        raise TaskcliError(f"output path {folder} is a file", "choose another --output-dir")
    held = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    if resume and not marker.is_file():
        raise TaskcliError(f"nothing to resume in {folder}: no tune study there ({MARKER} and {STUDY_FILE})",
                           "drop --resume")
    if held and not resume and marker.is_file():
        raise TaskcliError(f"output dir {folder} holds a tune study",
                           "pass --resume to continue it, or choose another --output-dir")
    if held and not resume:
        raise TaskcliError(f"output dir {folder} is not empty and holds no tune study (it holds {quoted(held[0])})",
                           "choose another --output-dir: tune writes only into a new or empty folder")
    if resume:
        before = json.loads(marker.read_text(encoding="utf-8"))
        if before != search:
            changed = sorted(k for k in {*before, *search} if before.get(k) != search.get(k))
            raise TaskcliError(f"the study in {folder} searched with other settings ({', '.join(changed)}: "
                               f"{quoted(before.get(changed[0]))} then, {quoted(search.get(changed[0]))} now)",
                               "resume with the same recipe and --set, or choose another --output-dir")
    folder.mkdir(parents=True, exist_ok=True)
    lock = in_use_lock(folder)
    storage = optuna.storages.RDBStorage(f"sqlite:///{(folder / STUDY_FILE).resolve()}")
    seed = settings.seed if settings.seed is not None else seed
    sampler = (optuna.samplers.TPESampler if settings.sampler == "tpe" else optuna.samplers.RandomSampler)(seed=seed)
    pruner = {"median": lambda: optuna.pruners.MedianPruner(n_startup_trials=settings.startup_trials),
              "hyperband": optuna.pruners.HyperbandPruner, "none": optuna.pruners.NopPruner}[settings.pruner]()
    study = optuna.create_study(storage=storage, study_name=STUDY_NAME, sampler=sampler, pruner=pruner,
                                direction="maximize" if search["direction"] == "max" else "minimize",
                                load_if_exists=resume)
    if not resume:
        marker.write_text(json.dumps(search) + "\n", encoding="utf-8")
    from optuna.trial import TrialState

    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_state_values(stale._trial_id, TrialState.FAIL)
        study.enqueue_trial(stale.params)
    return study, lock


def in_use_lock(folder: Path):
    """The study's lock, held while a tune runs on it: a second `tune --resume` on the same folder would take the
    first one's running trial for one a kill left. (An flock: the system drops it when its process dies, kill -9
    too.)"""
    from filelock import FileLock, Timeout

    lock = FileLock(folder / (MARKER + ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise TaskcliError(f"the study in {folder} is in use by another taskcli tune",
                           "wait for it to end, or stop it first") from None
    return lock


def distributions(optuna, space) -> dict:
    """tune.space as Optuna distributions, by field path."""
    d = optuna.distributions
    out = {}
    for path, r in space.items():
        if r.log_uniform or r.uniform:
            low, high = r.log_uniform or r.uniform
            out[path] = d.FloatDistribution(low, high, log=bool(r.log_uniform))
        elif r.integer:
            out[path] = d.IntDistribution(*r.integer)
        else:
            out[path] = d.CategoricalDistribution(r.choice)
    return out


def finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def one_trial(study, trial, folder: Path, base: list[Flag], how: dict, command: str, log):
    """One fine-tuning run with the trial's parameters, told to the study as complete, pruned or failed."""
    from optuna.trial import TrialState

    out = folder / f"trial-{trial.number:03d}"
    params = [Flag(tuple(path.split(".")), value, f"trial {trial.number}: {path}={value}")
              for path, value in trial.params.items()]
    pruning = pruning_callback(trial, how["metric"], how["fallback"])
    _say(log, f"tune: trial {trial.number} -> {out}: " + ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items()))
    began = time.perf_counter()
    try:
        result = finetune(how["task"], how["recipe"], None, how["smoke"], [*base, *params,
                          Flag(("train", "output_dir"), str(out), f"trial {trial.number}")], command=command,
                          log=log, callbacks=[pruning])
    except BaseException as err:
        study.tell(trial, state=TrialState.FAIL)
        if isinstance(err, (Interrupted, KeyboardInterrupt)):
            raise Interrupted(f"interrupted in trial {trial.number}; the study in {folder} keeps its "
                              f"{finished(study)} finished trials",
                              f"resume with: {command}" + ("" if "--resume" in command else " --resume")) from None
        raise
    finally:
        release_memory()
    metrics = {k: v for k, v in result["metrics"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    trial.set_user_attr("metrics", metrics)
    trial.set_user_attr("output_dir", str(out))
    trial.set_user_attr("seconds", round(time.perf_counter() - began, 2))
    trial.set_user_attr("rss_mb", round(_rss_mb(), 1))
    value = metrics.get(pruning.metric, math.nan)
    state = TrialState.PRUNED if pruning.pruned else TrialState.COMPLETE if math.isfinite(value) else TrialState.FAIL
    study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
    if pruning.metric not in metrics:
        raise TaskcliError(f"tune.metric '{pruning.metric}' is not a metric of this run",
                           f"its metrics: {', '.join(metrics)}")
    _say(log, f"tune: trial {trial.number} {state.name.lower()}: {pruning.metric} = {value:.6g} "
              f"({time.perf_counter() - began:.1f} s)")


def pruning_callback(trial, metric: str | None, fallback: str):
    """A TrainerCallback that reports each evaluation's `metric` (None: the run's metric_for_best_model, else
    `fallback`) to the trial, and stops training when the pruner says the trial is behind."""
    from transformers import TrainerCallback

    class Pruning(TrainerCallback):
        def __init__(self):
            self.metric, self.pruned = metric, False

        def on_train_begin(self, args, state, control, **kwargs):
            if self.metric is None:  # the run's own (a task may switch it, e.g. Pearson for real-valued labels)
                self.metric = (args.metric_for_best_model or "").removeprefix("eval_") or fallback

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            value = (metrics or {}).get(f"eval_{self.metric}")
            if value is None or self.pruned:
                return
            trial.report(float(value), step=state.global_step)
            if trial.should_prune():
                self.pruned = control.should_training_stop = True

    return Pruning()


def release_memory() -> None:
    """Free the finished trial's model, optimizer and Trainer before the next one loads its own."""
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _rss_mb() -> float:
    import psutil  # (accelerate's dependency)

    return psutil.Process().memory_info().rss / 2**20


def _say(log, text: str) -> None:
    import sys

    if log is None:
        print(text, file=sys.stderr, flush=True)
    else:
        log(text)


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def summary(study, folder: Path, search: dict, checks, task: str) -> dict:
    """The trials' rows, the best trial (its recipe written to DIR/best.yaml), the plots, the gates' verdict."""
    rows = [{"trial": t.number, "state": t.state.name.lower(), "value": t.value, "params": t.params,
             "metrics": t.user_attrs.get("metrics", {}), "output_dir": t.user_attrs.get("output_dir"),
             "seconds": t.user_attrs.get("seconds"), "rss_mb": t.user_attrs.get("rss_mb")}
            for t in study.get_trials(deepcopy=False)]
    result = {"task": task, "output_dir": str(folder), "metric": search["metric"], "direction": search["direction"],
              "trials": rows, "finished": finished(study), "best": None, "plots": [], "gates_failed": []}
    if not any(r["state"] == "complete" for r in rows):
        return result
    best = study.best_trial
    result["best"] = {"trial": best.number, "value": best.value, "params": best.params,
                      "output_dir": best.user_attrs["output_dir"], "recipe": str(write_best(folder, best, task))}
    result["metric"] = result["metric"] or _judged_metric(best)
    result["plots"] = [str(p) for p in plots(study, folder)]
    result["gates_failed"] = gates_mod.check(checks, best.user_attrs["metrics"], task)
    return result


def _judged_metric(best) -> str | None:
    """The metric name a trial's value came from (tune.metric unset: the run's own)."""
    return next((k for k, v in best.user_attrs.get("metrics", {}).items() if v == best.value), None)


def write_best(folder: Path, best, task: str) -> Path:
    """DIR/best.yaml: the best trial's recipe.yaml (which repeats that run), under a header saying so."""
    import os

    source = Path(best.user_attrs["output_dir"]) / "recipe.yaml"
    body = "\n".join(line for line in source.read_text(encoding="utf-8").splitlines() if not line.startswith("#"))
    header = (f"# The best trial of the tune study in {folder}: trial {best.number} ({source.parent.name}), "
              f"value {best.value:.6g}.\n# Repeat:  taskcli finetune {task} --recipe {folder / 'best.yaml'}\n")
    tmp = folder / "best.yaml.tmp"
    tmp.write_text(header + body + "\n", encoding="utf-8")
    os.replace(tmp, folder / "best.yaml")
    return folder / "best.yaml"


def plots(study, folder: Path) -> list[Path]:
    """history.png (each trial's value and the best so far) and importance.png (how much each searched field
    mattered; needs two complete trials), with Optuna's matplotlib plots."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    written = []
    for name, draw in (("history.png", vis.plot_optimization_history), ("importance.png", vis.plot_param_importances)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ExperimentalWarning on every matplotlib plot
            try:
                axes = draw(study)
            except (ValueError, RuntimeError, ZeroDivisionError):  # too few complete trials to say
                continue
        figure = getattr(axes, "figure", None) or plt.gcf()
        figure.tight_layout()
        figure.savefig(folder / name, dpi=100)
        plt.close(figure)
        written.append(folder / name)
    return written
