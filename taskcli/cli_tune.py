"""`taskcli tune`: the command line of the hyperparameter search (taskcli/tune.py does the work)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from taskcli import display
from taskcli.cli_common import DataOpt, GateOpt, ModelOpt, RecipeOpt, SetOpt, TaskArg, TinyOpt, gates_failed, guarded

EPILOG = ("Examples: `taskcli tune text-cls --smoke --trials 3 -o runs/tc-tune --set "
          "'tune.space={train.learning_rate: {log_uniform: [1e-4, 1e-2]}}'` · `taskcli tune ner --recipe my.yaml "
          "--trials 20 --timeout 3600 -o runs/ner-tune` · `taskcli tune ner --recipe my.yaml --trials 30 -o "
          "runs/ner-tune --resume` · `pip install 'taskcli[tune]'`")


@guarded
def tune(
    task: TaskArg,
    trials: int = typer.Option(..., "--trials", "-n", min=1, help="Trials to finish (complete or pruned), those of "
                                                                  "a resumed study included."),
    recipe: RecipeOpt = None,
    model: ModelOpt = None,
    data: DataOpt = None,
    set_: SetOpt = [],  # noqa: B006 - typer reads the default, never mutates it
    smoke: TinyOpt = False,
    timeout: Optional[float] = typer.Option(None, "--timeout", min=0.0, metavar="S",
                                            help="Start no new trial after S seconds."),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", "-o", metavar="DIR",
                                             help="The study's folder: study.db, trial-NNN/, best.yaml, plots "
                                                  "(default runs/TASK-RECIPE-tune; new or empty)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the study in DIR (after a kill too): its "
                                                        "finished trials count towards --trials."),
    gate: GateOpt = [],  # noqa: B006
    as_json: bool = typer.Option(False, "--json", help="Print the trials and the best one as JSON."),
):
    """Search the recipe's `tune.space` with Optuna: each trial a fine-tuning run, pruned when it falls behind;
    writes DIR/best.yaml (exit 3 if a gate fails on the best trial)."""
    from taskcli import tune as tune_mod
    from taskcli.recipe import command_flags

    # the command as typed: recorded in each trial's recipe.yaml, and the base of the resume line after Ctrl-C
    command = "taskcli " + shlex.join(sys.argv[1:]) if sys.argv and Path(sys.argv[0]).name in (
        "taskcli", "__main__.py") else f"taskcli tune {task} --trials {trials}"
    result = tune_mod.tune(task, trials, recipe=recipe, sets=set_, smoke=smoke, timeout=timeout, out=output_dir,
                           resume=resume, command=command, flags=command_flags(model=model, data=data, gates=gate))
    if result is None:  # a process other than 0 of a distributed run: process 0 prints the study
        return
    if as_json:
        print(json.dumps(result, default=float))
    else:
        display.print_tune(result)
    if result["best"] is None:
        from taskcli.errors import TaskcliError

        raise TaskcliError(f"no trial of the study in {result['output_dir']} completed",
                           "see the trials' lines on stderr; widen tune.space or lower train.learning_rate")
    gates_failed(result)
