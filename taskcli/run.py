"""A run: one task, its validated recipe, and what a command loaded so far (the hooks' `run`).

`prepare` resolves the recipe into a Run; `quiet_libraries` silences the HF libraries before they load.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskcli import data as data_mod
from taskcli import deferred_imports, import_cache
from taskcli import recipe as recipe_mod
from taskcli import registry
from taskcli.task import EpochClock, Learned


@dataclass
class Run:
    """Everything the task hooks need: the task, its validated recipe, and what was loaded so far."""

    task: Any
    resolved: recipe_mod.Resolved
    smoke: bool = False
    model_source: str | None = None  # local dir or hub id the processor/model load from
    processor: Any = None
    labels: list[str] | None = None
    seq2seq: bool = False  # Seq2SeqTrainer + generate: a seq2seq task on an encoder-decoder model
    learned: Learned = field(default_factory=Learned)  # what a task's hooks learn along the way (e.g. ASR's model kind)
    data_info: data_mod.DataInfo | None = None  # what data.load really read (source, splits, sizes)
    clock: EpochClock = field(default_factory=EpochClock)  # the epoch training augmentations draw for
    _tmp: list = field(default_factory=list)

    @property
    def recipe(self):
        return self.resolved.recipe

    @property
    def params(self):
        return self.resolved.recipe.params

    def __post_init__(self):
        self.clock.seed = self.seed

    @property
    def seed(self) -> int:
        """train.seed, the one seed every random draw of a run derives from: the library RNGs (`reseed`), the carved
        eval split, a stream's shuffle, MLM masks, training augmentations (`clock`) and the smoke model's weights."""
        return self.recipe.train.seed

    def reseed(self) -> None:
        """Python, NumPy and torch RNGs back to the run's seed: before loading and training, and before an evaluation
        that draws at random (fill-mask's masks), so eval, finetune's score and export's parity see the same draws."""
        from transformers import set_seed

        set_seed(self.seed)

    def tokenizer(self):
        """The text tokenizer, whether `processor` is a tokenizer or a multimodal processor."""
        return getattr(self.processor, "tokenizer", self.processor)

    def pretrained_kwargs(self) -> dict:
        """Keyword arguments for every from_pretrained call of this run."""
        m = self.recipe.model
        kw: dict = {"trust_remote_code": m.trust_remote_code}
        if m.revision and self.model_source == m.checkpoint:  # the revision is the checkpoint's, not --model's
            kw["revision"] = m.revision
        return kw

    def map(self, ds, fn, **kwargs):
        """Rows -> features, the one way every task's preprocess does it: datasets' map, with data.num_proc worker
        processes (a streamed dataset maps lazily as training reads it). Its cache is datasets' own: the same rows
        through the same function, processor and settings are read back on the next run instead of recomputed."""
        if self.recipe.data.num_proc and not data_mod.is_streamed(ds):
            kwargs["num_proc"] = self.recipe.data.num_proc
        return ds.map(fn, **kwargs)

    def temp_dir(self, prefix: str) -> str:
        """A new temporary folder, removed when the run closes (e.g. a CTC vocabulary written for its tokenizer)."""
        import tempfile

        tmp = tempfile.TemporaryDirectory(prefix=prefix)
        self._tmp.append(tmp)
        return tmp.name

    def temp_dirs(self) -> list[Path]:
        """The run's temporary folders so far (a full disk is searched there for the file being written)."""
        return [Path(t.name) for t in self._tmp]

    def close(self):
        for tmp in self._tmp:
            tmp.cleanup()


def hub_reachable(timeout: float = 3.0) -> bool:
    """Can we open a TCP connection to the Hub endpoint? (DNS failure or refusal answers at once.)"""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
        return True
    except OSError:
        return False


def quiet_libraries() -> None:
    """Silence the libraries' own progress bars and info logs: taskcli shows its own progress.

    Also: with no route to the Hub, switch the HF libraries to offline mode before they are imported, so a
    hub id fails at once with taskcli's clear message instead of after a minute of retries (cached files
    still load).
    """
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if "huggingface_hub" not in sys.modules and not os.environ.get("HF_HUB_OFFLINE") and not hub_reachable():
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["HF_DATASETS_OFFLINE"] = "1"
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}:
        # transformers 5 swaps layers for the Hub's `kernels` when a model on a GPU switches to eval mode, fetching
        # them then: offline, with none cached, that raised after training had finished (seen on an H200).
        # USE_HUB_KERNELS=YES keeps them for a user who cached them while online.
        os.environ.setdefault("USE_HUB_KERNELS", "NO")
    import_cache.install()
    deferred_imports.install()
    import transformers
    from huggingface_hub.utils import disable_progress_bars

    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    else:  # infer never needs datasets (its import is ~1.3 s): the settings wait in the environment for finetune/eval
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("DATASETS_VERBOSITY", "error")
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    disable_progress_bars()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(transformers|torch|accelerate|peft)\b")


def prepare(task_name: str, recipe: str | None, sets: list[str] | None, smoke: bool,
            flags: list[recipe_mod.Flag] | None = None) -> Run:
    """The task and its recipe with the command line merged in (`flags`: recipe_mod.command_flags), validated."""
    task = registry.get(task_name)
    resolved = recipe_mod.resolve(task, recipe, sets, smoke, flags)
    return Run(task=task, resolved=resolved, smoke=resolved.smoke)  # a smoke run's recipe.yaml turns smoke on


def uses_tiny_model(run: Run, model: str | None, default: str | None = None) -> bool:
    """--smoke builds a tiny model in place of a hub checkpoint; --model, or a local checkpoint the recipe names
    (e.g. a smoke run's recipe.yaml pointing at its own result), is used as it is."""
    ref = default or run.recipe.model.checkpoint
    return run.smoke and not model and not data_mod.is_local(ref)

