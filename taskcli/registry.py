"""The one list of tasks. Adding a task = one line in ``_MODULES`` (plus its module, recipes, sample, tests).

Every other list of tasks (the CLI's help, which tasks take an infer option, the README's table) is derived
from this one; tests/test_toy_task.py adds a task from a test module through it."""

from __future__ import annotations

import importlib
from functools import lru_cache

from taskcli import modality
from taskcli.errors import TaskcliError, did_you_mean
from taskcli.task import Task

# Modules holding a TASK: a bare name is under taskcli/tasks/; a dotted one anywhere importable. In the order
# `taskcli tasks` lists them.
_MODULES = (
    "text_classification",
    "token_classification",
    "question_answering",
    "text_generation",
    "fill_mask",
    "summarization",
    "translation",
    "image_classification",
    "image_segmentation",
    "object_detection",
    "depth_estimation",
    "audio_classification",
    "speech_recognition",
)


@lru_cache(maxsize=None)
def all_tasks() -> tuple[Task, ...]:
    return tuple(importlib.import_module(m if "." in m else f"taskcli.tasks.{m}").TASK for m in _MODULES)


def modalities() -> tuple[modality.Modality, ...]:
    """The kinds of input tasks read (taskcli/modality.py); a task declares one by name."""
    return modality.ALL


def names() -> list[str]:
    return [t.name for t in all_tasks()]


def get(name: str) -> Task:
    """Task by pipeline tag or alias (case-insensitive, '_' accepted for '-')."""
    key = name.strip().lower().replace("_", "-")
    for task in all_tasks():
        if key == task.name or key in task.aliases:
            return task
    known = [t.name for t in all_tasks()] + [a for t in all_tasks() for a in t.aliases]
    raise TaskcliError(
        f"unknown task '{name}'{did_you_mean(key, known)}",
        "run `taskcli tasks` to list the tasks",
    )
