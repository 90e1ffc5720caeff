"""A toy task added the way the README's "Adding a task" says: this module, one registry line (the test adds
"toy.language_id" to registry._MODULES), a recipe and a sample. It reuses text-classification's training and
inference hooks under its own name, with its own table rendering."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from taskcli.tasks import text_classification

SAMPLE = Path(__file__).parent / "language-id.jsonl"


def render(item, result):
    return [{"language": result["label"], "confidence": f"{result['score']:.0%}"}]


TASK = dataclasses.replace(
    text_classification.TASK,
    name="language-identification",
    aliases=("langid",),
    summary="Which language a sentence is in (a toy task from the tests)",
    sample=str(SAMPLE),
    default_recipe="toy",
    render=render,
)
