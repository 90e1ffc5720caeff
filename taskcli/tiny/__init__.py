"""Tiny, randomly initialised checkpoints built offline, for `--smoke` runs and tests.

Each builder makes a scaled-down config of the real architecture, a tokenizer/processor built locally from
the sample's own texts, and base-model weights, all written with ``save_pretrained``. The task then loads
that folder through the same ``from_pretrained`` code path a hub checkpoint takes.

A builder is ``fn(out_dir: Path, texts: list[str], overrides: dict) -> None`` registered by model_type in
one of the modality modules below.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from taskcli.errors import TaskcliError

_MODULES = ("taskcli.tiny.text", "taskcli.tiny.lm", "taskcli.tiny.speech", "taskcli.tiny.vision")


def builders() -> dict:
    table: dict = {}
    for name in _MODULES:
        table.update(importlib.import_module(name).BUILDERS)
    return table


def build(model_type: str, out_dir: Path, texts: list[str], overrides: dict | None = None, seed: int = 0) -> Path:
    """Write a tiny `model_type` checkpoint into out_dir and return it."""
    import torch

    table = builders()
    if model_type not in table:
        raise TaskcliError(
            f"--smoke has no tiny builder for model type '{model_type}'",
            f"known types: {', '.join(sorted(table))}",
        )
    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table[model_type](out_dir, list(texts), dict(overrides or {}))
    return out_dir
