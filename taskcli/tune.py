"""`taskcli tune`: a hyperparameter search with Optuna over the recipe's `tune.space`.

Each trial is an ordinary fine-tuning run (taskcli.finetune, its recipe.yaml reproducing it) in DIR/trial-NNN/,
judged by the task's eval metric; a pruning callback reports every evaluation to the trial and stops the Trainer
when the pruner says so. The study lives in DIR/study.db (Optuna's RDB storage on SQLite), so `--resume` after a
kill (even kill -9) continues with the trials done. At the end: the trials' rows, DIR/best.yaml (the best trial's
recipe) and the plots (history.png, importance.png). Under torchrun / accelerate launch, process 0 alone owns the
study (its SQLite file, lock, ask and tell) and broadcasts each trial's parameters and each pruning verdict, so
that every process runs the same trial as one DDP fine-tune and stops it at the same step.
"""

from __future__ import annotations

import gc
import json
import math
import time
from pathlib import Path

from taskcli import gates as gates_mod
from taskcli.distributed import from_main, is_main
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
         resume: bool = False, command: str = "", log=None) -> dict | None:
    """Run trials until `trials` of them finished (complete or pruned) or `timeout` seconds passed; returns the
    table, the best trial and the gates' verdict on it. Under torchrun / accelerate launch process 0 alone owns the
    study and hands each trial to every process (one DDP fine-tune); the others return None."""
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
    how = dict(task=task, recipe=recipe, smoke=smoke, metric=metric, fallback=run.task.best_metric, folder=folder,
               base=[*(flags or []), *set_flags(sets or []), Flag(("tune",), None, "tune")],  # a trial: a plain run
               command=command)
    if not is_main():  # every check above failed on every process alike; what fails below, process 0 tells
        follow(how, log)
        return None
    study, lock = _telling_the_others(open_study, optuna, folder, search, settings, run.recipe.train.seed, resume)
    try:
        lead(study, trials, timeout, distributions(optuna, settings.space), how, log)
        return summary(study, folder, search, checks, run.task.name)
    finally:
        lock.release()


def lead(study, trials: int, timeout: float | None, space: dict, how: dict, log) -> None:
    """Process 0's loop: ask the study for a trial, hand it to the other processes, train it, tell its result."""
    started, ran = time.monotonic(), False
    while finished(study) < trials:
        if timeout is not None and time.monotonic() - started > timeout and ran:
            _say(log, f"tune: --timeout {timeout:g} s passed: {finished(study)} of {trials} trials finished")
            break
        trial = _telling_the_others(study.ask, space)
        from_main({"trial": trial.number, "params": trial.params})
        result, pruning, began = train_trial(trial.number, trial.params, how, log, study, trial)
        # the others wait for the next order now: a failure to record the trial is theirs too
        _telling_the_others(record_trial, study, trial, result, pruning, began, log)
        ran = True  # --timeout is checked between trials, as Optuna's: the first one always runs
    from_main({"stop": True})


def follow(how: dict, log) -> None:
    """Any other process's loop: train the trials process 0 hands out, in step with it, until it says stop."""
    while True:
        order = from_main()
        if "error" in order:
            raise TaskcliError(*order["error"])
        if "stop" in order:
            return
        train_trial(order["trial"], order["params"], how, log)


def _telling_the_others(step, *args):
    """`step(*args)` on process 0 while the other processes wait for its next order: a failure is sent to them as
    their error too (one line from each process, none left waiting), then raised here."""
    try:
        return step(*args)
    except Exception as err:
        message = [err.message, err.hint] if isinstance(err, TaskcliError) else [
            f"process 0 stopped the study: {type(err).__name__}: {err}", "see process 0's output"]
        from_main({"error": message})
        raise


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


def train_trial(number: int, params: dict, how: dict, log, study=None, trial=None):
    """One fine-tuning run with the trial's parameters, on every process of a distributed run; on process 0 (the
    one with the study and the trial), a failure is told to the study as such. Returns (result, pruning, began)."""
    from optuna.trial import TrialState

    out = how["folder"] / f"trial-{number:03d}"
    values = [Flag(tuple(path.split(".")), value, f"trial {number}: {path}={value}") for path, value in params.items()]
    pruning = pruning_callback(trial, how["metric"], how["fallback"])
    if study is not None:
        _say(log, f"tune: trial {number} -> {out}: " + ", ".join(f"{k}={_short(v)}" for k, v in params.items()))
    began = time.perf_counter()
    try:
        result = finetune(how["task"], how["recipe"], None, how["smoke"], [*how["base"], *values,
                          Flag(("train", "output_dir"), str(out), f"trial {number}")], command=how["command"],
                          log=log, callbacks=[pruning])
    except BaseException as err:
        kept = ""
        if study is not None:
            study.tell(trial, state=TrialState.FAIL)
            kept = f" {finished(study)}"
        if isinstance(err, (Interrupted, KeyboardInterrupt)):
            command = how["command"]
            raise Interrupted(f"interrupted in trial {number}; the study in {how['folder']} keeps its{kept} finished "
                              f"trials", f"resume with: {command}" + ("" if "--resume" in command else " --resume")
                              ) from None
        raise
    finally:
        release_memory()
    return result, pruning, began


def record_trial(study, trial, result: dict, pruning, began: float, log) -> None:
    """The trial's metrics and folder on the study, told as complete, pruned or failed."""
    from optuna.trial import TrialState

    metrics = {k: v for k, v in result["metrics"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    trial.set_user_attr("metrics", metrics)
    trial.set_user_attr("output_dir", str(Path(result["output_dir"])))
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
    `fallback`) to the trial, and stops training when the pruner says the trial is behind. `trial` None: a process
    other than 0 of a distributed run, which stops when process 0's pruner says so (every process, same step)."""
    from transformers import TrainerCallback

    class Pruning(TrainerCallback):
        def __init__(self):
            self.metric, self.pruned = metric, False

        def on_train_begin(self, args, state, control, **kwargs):
            if self.metric is None:  # the run's own (a task may switch it, e.g. Pearson for real-valued labels)
                self.metric = (args.metric_for_best_model or "").removeprefix("eval_") or fallback

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            value, stop = (metrics or {}).get(f"eval_{self.metric}"), False
            if trial is not None and value is not None and not self.pruned:
                trial.report(float(value), step=state.global_step)
                stop = trial.should_prune()
            if from_main(stop) and not self.pruned:  # asked at every evaluation of every process, pruned or not
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
