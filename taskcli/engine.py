"""The one engine behind finetune / eval / infer, for every task.

Each verb resolves a recipe into a ``Run``, then drives the task's hooks (see ``taskcli.task.Task``) through
the Hugging Face Trainer (Seq2SeqTrainer for generative seq2seq tasks). Eval builds the same features and
the same metric function as training-time eval, so the numbers agree.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskcli import data as data_mod
from taskcli import preflight
from taskcli import recipe as recipe_mod
from taskcli import registry
from taskcli.errors import TaskcliError, disk_full, quoted
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
    sharding: str | None = None  # train.fsdp / train.deepspeed in words, for the run header
    _tmp: list = field(default_factory=list)

    @property
    def recipe(self):
        return self.resolved.recipe

    @property
    def params(self):
        return self.resolved.recipe.params

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


def prepare(task_name: str, recipe: str | None, sets: list[str] | None, smoke: bool) -> Run:
    task = registry.get(task_name)
    resolved = recipe_mod.resolve(task, recipe, sets, smoke)
    return Run(task=task, resolved=resolved, smoke=resolved.smoke)  # a smoke run's recipe.yaml turns smoke on


def uses_tiny_model(run: Run, model: str | None, default: str | None = None) -> bool:
    """--smoke builds a tiny model in place of a hub checkpoint; --model, or a local checkpoint the recipe names
    (e.g. a smoke run's recipe.yaml pointing at its own result), is used as it is."""
    ref = default or run.recipe.model.checkpoint
    return run.smoke and not model and not data_mod.is_local(ref)


# ----------------------------------------------------------------------------- models


SMOKE_STREAM_ROWS = 256


def smoke_texts(dsd) -> list[str]:
    """All strings in the data (also inside lists/dicts): the vocabulary source for tiny tokenizers."""
    out: list[str] = []

    def walk(value):
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)

    for ds in dsd.values():
        # a streamed train split never ends (data.streaming): a smoke run's worth of it
        for row in ds.take(SMOKE_STREAM_ROWS) if data_mod.is_streamed(ds) else ds:
            walk(row)
    return out


def build_smoke_model(run: Run, dsd=None) -> str:
    """A tiny checkpoint of the recipe's architecture, built in a temp dir, for --smoke runs."""
    from taskcli import tiny

    if dsd is None:
        dsd = data_mod.load(run, None)
    tmp = tempfile.TemporaryDirectory(prefix="taskcli-smoke-")
    run._tmp.append(tmp)
    tiny.build(run.recipe.model.type, Path(tmp.name), smoke_texts(dsd), run.recipe.smoke.config, run.recipe.train.seed)
    return tmp.name


def resolve_model_source(run: Run, model: str | None, default: str) -> str:
    """--model wins; a local dir is used as is; anything else is a hub id (checked when loaded)."""
    ref = model or default
    path = Path(ref).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise TaskcliError(f"{path} is not a saved model (no config.json)", "pass a `taskcli finetune` output dir")
        return str(path)
    # A path-like --model (./x, /x, ~/x, a/b/c, or runs/x where runs/ is a folder here) is never a hub id.
    parent = path.parent
    if model and (model.startswith((".", "/", "~")) or model.count("/") > 1 or (str(parent) != "." and parent.is_dir())):
        raise TaskcliError(f"no such directory: {model}", "check the path (a `taskcli finetune` output dir), or give a "
                           "hub model id ORG/NAME")
    return ref


def load_processor_and_model(run: Run, labels: list[str] | None):
    try:
        run.processor = run.task.load_processor(run)
        model = run.task.load_model(run, run.model_source, labels)
    except TaskcliError:
        raise
    except Exception as err:  # noqa: BLE001 - unreachable hub, unknown id, missing package, damaged weights...
        if os.environ.get("TASKCLI_DEBUG") == "1":
            raise
        from taskcli.hub import load_error

        raise load_error("model", run.model_source, err, run.pretrained_kwargs().get("revision")) from None
    # e.g. ASR: Whisper generates (Seq2SeqTrainer), a CTC model of the same task does not
    run.seq2seq = run.task.seq2seq and bool(getattr(model.config, "is_encoder_decoder", False))
    if not model_forward_uses_loss_function(model):
        # Models that average their loss inline ignore num_items_in_batch; letting the Trainer think they
        # accept loss kwargs multiplies the loss by the process count under DDP and skips the division by
        # gradient_accumulation_steps (platform-facts.md). This flag makes them match single-process runs.
        model.accepts_loss_kwargs = False
    return model


def model_forward_uses_loss_function(model) -> bool:
    import inspect

    try:
        return "self.loss_function" in inspect.getsource(type(model).forward)
    except (OSError, TypeError):
        return False


def task_head_classes(task, model_type: str) -> set[str]:
    """Class names that carry `task`'s head for `model_type`, from the task's Auto classes."""
    import transformers

    names: set[str] = set()
    for auto in (task.auto_model, *task.alt_auto_models):
        value = getattr(transformers, auto)._model_mapping._model_mapping.get(model_type)
        names.update(value if isinstance(value, (list, tuple)) else [value] if value else [])
    return names


def check_task_head(run: Run, explicit: bool) -> None:
    """eval/infer must not score a head the checkpoint lacks: from_pretrained would fill it with random weights.

    The checkpoint's config names the class it was saved from (`architectures`); when that class is not one of
    the task's heads for its model type (e.g. DistilBertForMaskedLM for token-classification), stop here.
    """
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(run.model_source, **run.pretrained_kwargs())
    except Exception as err:  # noqa: BLE001
        if os.environ.get("TASKCLI_DEBUG") == "1":
            raise
        from taskcli.hub import load_error

        raise load_error("model", run.model_source, err, run.pretrained_kwargs().get("revision")) from None
    archs = list(getattr(config, "architectures", None) or [])
    heads = task_head_classes(run.task, config.model_type)
    if not archs or not heads or heads & set(archs):
        return
    owner = _task_of(run.model_source, archs[0], config.model_type)
    if owner and explicit:  # a model fine-tuned for another task: name both
        raise TaskcliError(f"model '{run.model_source}' is a {owner} model ({archs[0]}), not a {run.task.name} one",
                           f"run `taskcli {{eval|infer}} {owner} --model {run.model_source}`, or pass a "
                           f"{run.task.name} model")
    what = f"model '{run.model_source}'" if explicit else (
        f"the recipe's default model '{run.model_source}' (model.{'infer_default' if run.recipe.model.infer_default else 'checkpoint'})")
    raise TaskcliError(
        f"{what} is a {archs[0]}, with no {run.task.name} head: its predictions would come from randomly "
        f"initialised weights",
        f"pass --model DIR with a fine-tuned model (e.g. the output of `taskcli finetune {run.task.name} --recipe "
        f"{run.resolved.name}`)" + ("" if explicit else ", or set model.infer_default in the recipe"),
    )


def _task_of(source: str, arch: str, model_type: str) -> str | None:
    """The task a model was made for: its taskcli recipe.yaml, else the task whose head its class is."""
    import yaml

    saved = Path(source) / "recipe.yaml"
    if saved.is_file():
        try:
            task = (yaml.safe_load(saved.read_text()) or {}).get("task")
            if task:
                return registry.get(str(task)).name
        except Exception:  # noqa: BLE001 - a broken recipe.yaml only loses the better message
            pass
    return next((t.name for t in registry.all_tasks() if arch in task_head_classes(t, model_type)), None)


# ----------------------------------------------------------------------------- labels


def check_labels(run: Run, model) -> list[str] | None:
    """Labels of a trained model; error when the data holds labels the model does not know.

    A model whose labels are unnamed (transformers' LABEL_0, LABEL_1, ... defaults, as many Hub fine-tunes ship)
    and as many as the data's is read in the data's label order: its ids are all that names them.
    """
    import re

    model_labels = [model.config.id2label[i] for i in sorted(model.config.id2label)] if run.labels is not None else None
    if model_labels is None:
        return None
    generic = all(re.fullmatch(r"LABEL_\d+", str(name)) for name in model_labels)
    if generic and len(model_labels) == len(run.labels) and set(model_labels) != set(run.labels):
        print(f"note: {run.model_source} has unnamed labels ({', '.join(model_labels[:3])}...): reading them in "
              f"the data's order ({', '.join(map(str, run.labels[:4]))}{'...' if len(run.labels) > 4 else ''})",
              file=sys.stderr)
        return list(run.labels)
    unknown = sorted(set(run.labels) - set(model_labels))
    if unknown:
        raise TaskcliError(
            f"the model's labels don't match the data: {', '.join(map(str, unknown[:5]))} not among the model's "
            f"{len(model_labels)} labels ({', '.join(map(str, model_labels[:8]))}{'...' if len(model_labels) > 8 else ''})",
            f"evaluate on data with the model's label set, or pass --model with a model fine-tuned on this data "
            f"(`taskcli finetune {run.task.name} --recipe {run.resolved.name}`)",
        )
    return model_labels


def rename_labels(ds, label_map: dict[str, str]):
    """ClassLabel names of the data -> the model's names for the same classes (recipe `eval.label_map`)."""
    import datasets

    for column, feature in ds.features.items():
        inner = getattr(feature, "feature", None)
        names = getattr(feature, "names", None) or getattr(inner, "names", None)
        if names and any(n in label_map for n in names):
            renamed = datasets.ClassLabel(names=[label_map.get(n, n) for n in names])
            new = renamed if getattr(feature, "names", None) else datasets.Sequence(renamed)
            ds = ds.cast_column(column, new)
    return ds


def align_label_ids(ds, labels: list[str]):
    """Re-number ClassLabel columns (also lists of them, e.g. NER tags) to the model's label order.

    Hub data stores label ids in the dataset's own order; a model trained elsewhere (e.g. dslim/bert-base-NER on
    CoNLL-2003: O, B-MISC, I-MISC, B-PER, ...) numbers the same names differently.
    """
    for column, feature in ds.features.items():
        names = getattr(feature, "names", None) or getattr(getattr(feature, "feature", None), "names", None)
        if names and list(names) != list(labels) and set(names) <= set(labels):
            ds = ds.align_labels_with_mapping({name: i for i, name in enumerate(labels)}, column)
    return ds


# ----------------------------------------------------------------------------- trainer


def training_arguments(run: Run, output_dir: str, for_eval: bool = False, model=None):
    """TrainingArguments from the recipe; `model` (finetune) is needed for train.fsdp's per-architecture wrap."""
    import torch
    from transformers import Seq2SeqTrainingArguments, TrainingArguments

    t = run.recipe.train
    if t.precision == "fp16" and not torch.cuda.is_available():
        raise TaskcliError("fp16 needs a CUDA GPU and none is available", "use --set train.precision=bf16 or no")
    # a task can switch its best metric for a run (text-classification on real-valued labels: Pearson)
    default_metric = run.learned.best_metric or run.task.best_metric
    direction = run.task.greater_is_better if run.learned.greater_is_better is None else run.learned.greater_is_better
    metric = run.recipe.eval.metric_for_best_model or default_metric
    has_eval = t.eval_strategy != "no"
    kwargs = dict(
        output_dir=output_dir,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        learning_rate=t.learning_rate,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=run.recipe.eval.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_ratio,
        lr_scheduler_type=t.lr_scheduler,
        seed=t.seed,
        data_seed=t.seed,
        bf16=t.precision == "bf16",
        fp16=t.precision == "fp16",
        eval_strategy=t.eval_strategy,
        eval_steps=t.eval_steps,
        save_strategy=t.eval_strategy if has_eval else "epoch",
        save_steps=t.eval_steps or 500,
        # the best checkpoint and the last: with a limit of 1 the Trainer deletes the last one at the end (keeping
        # the best), and a later --resume that asks for more steps would train again from the best one's step
        save_total_limit=max(t.save_total_limit, 2) if has_eval and t.save_total_limit else t.save_total_limit,
        load_best_model_at_end=has_eval,
        metric_for_best_model=metric if has_eval else None,
        greater_is_better=direction if metric == default_metric else None,
        logging_steps=t.logging_steps,
        logging_strategy="steps",
        report_to=[] if for_eval else check_trackers(t.report_to),
        disable_tqdm=True,
        dataloader_num_workers=t.dataloader_num_workers,
        remove_unused_columns=not run.task.collator_reads_raw,
        batch_eval_metrics=run.task.batch_eval_metrics,
        use_cpu=not torch.cuda.is_available(),
    )
    if for_eval:
        kwargs.update(eval_strategy="no", save_strategy="no", load_best_model_at_end=False, metric_for_best_model=None)
    elif model is not None:
        kwargs.update(sharding_arguments(run, model))
    kwargs.update(t.trainer_args)
    if run.seq2seq:
        gen = run.recipe.infer.generation
        return Seq2SeqTrainingArguments(
            predict_with_generate=True,
            generation_max_length=gen.get("max_new_tokens"),
            generation_num_beams=gen.get("num_beams"),
            **kwargs,
        )
    return TrainingArguments(**kwargs)


def sharding_arguments(run: Run, model) -> dict:
    """train.fsdp / train.deepspeed as TrainingArguments, checked first: a wrap class the model lacks, a missing
    package or a machine without CUDA GPUs is one line here, not a traceback from deep inside Accelerate."""
    import importlib.util

    import torch

    t = run.recipe.train
    if t.fsdp is not None:
        layers = {type(m).__name__ for m in model.modules()}
        wrap = t.fsdp.wrap or [c for c in (getattr(model, "_no_split_modules", None) or []) if c in layers] \
            or repeated_layers(model)
        unknown = [c for c in wrap if c not in layers]
        if unknown or not wrap:
            blocks = sorted(c for c in layers if c.endswith(("Layer", "Block")))
            raise TaskcliError(f"train.fsdp.wrap: {'no layer ' + repr(unknown[0]) if unknown else 'no default layer'}"
                               f" in {type(model).__name__}", f"name its repeated layer class, one of: "
                               f"{', '.join(blocks[:8]) or ', '.join(sorted(layers)[:8])}")
        if not torch.cuda.is_available():
            raise TaskcliError("train.fsdp shards the model across GPUs, and this machine has none (Accelerate runs "
                               "FSDP on GPUs only)", "drop train.fsdp to train data-parallel on CPU "
                               "(--num-processes N), or run on a GPU machine")
        run.sharding = f"FSDP2 over {', '.join(wrap)} units" + (", CPU offload" if t.fsdp.cpu_offload else "")
        return {"fsdp": True, "fsdp_config": {
            "version": 2, "transformer_layer_cls_to_wrap": wrap, "reshard_after_forward": t.fsdp.reshard_after_forward,
            "cpu_offload": t.fsdp.cpu_offload, "activation_checkpointing": t.fsdp.activation_checkpointing,
            "state_dict_type": f"{t.fsdp.state_dict.upper()}_STATE_DICT"}}
    if t.deepspeed is not None:
        config = t.deepspeed
        if isinstance(config, str):
            path = Path(config).expanduser()
            if not path.is_file():
                raise TaskcliError(f"train.deepspeed: no such file {config}", "give a DeepSpeed .json config or a "
                                   "ZeRO stage (0-3)")
            try:
                json.loads(path.read_text())
            except ValueError as err:
                raise TaskcliError(f"train.deepspeed: {config} is not valid JSON ({err})", "fix the file") from None
        if importlib.util.find_spec("deepspeed") is None:
            raise TaskcliError("train.deepspeed needs the deepspeed package, which is not installed",
                               "pip install 'taskcli[deepspeed]' (on a machine with CUDA GPUs)")
        if not torch.cuda.is_available():
            raise TaskcliError("train.deepspeed needs CUDA GPUs, and this machine has none",
                               "drop train.deepspeed to train data-parallel on CPU (--num-processes N), or run on "
                               "a GPU machine")
        if isinstance(config, int):  # the Trainer fills every "auto" from the recipe (batch, accumulation, precision)
            run.sharding = f"DeepSpeed ZeRO stage {config}"
            config = {"zero_optimization": {"stage": config}, "train_micro_batch_size_per_gpu": "auto",
                      "train_batch_size": "auto", "gradient_accumulation_steps": "auto", "gradient_clipping": "auto",
                      "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"}}
        else:
            run.sharding = f"DeepSpeed ({config})"
            config = str(Path(config).expanduser())
        return {"deepspeed": config}
    return {}


def repeated_layers(model) -> list[str]:
    """The classes of a model's layer stacks (ModuleLists of one class, e.g. DistilBERT's TransformerBlock): FSDP's
    wrap units where the architecture declares none (_no_split_modules)."""
    import torch

    found: list[str] = []
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > 1:
            names = {type(m).__name__ for m in module}
            if len(names) == 1 and any(True for _ in module[0].parameters()) and next(iter(names)) not in found:
                found.append(next(iter(names)))
    return found


TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def check_trackers(trackers: list[str]) -> list[str]:
    """train.report_to, each tracker's package present (they are optional extras)."""
    import importlib.util

    for name in trackers:
        if importlib.util.find_spec(TRACKER_PACKAGES[name]) is None:
            raise TaskcliError(f"--report-to {name} needs the {name} package, which is not installed",
                               f"pip install 'taskcli[{name}]'")
    return list(trackers)


def class_weights(run: Run, train_rows) -> list[float] | None:
    """train.class_weights as one weight per label id: 'auto' balances the training label counts
    (n_rows / (n_classes * n_label), scikit-learn's 'balanced'; a label with no row gets 1), a mapping names them
    (unnamed labels get 1)."""
    wanted = run.recipe.train.class_weights
    if wanted is None:
        return None
    if wanted == "auto" and data_mod.is_streamed(train_rows):
        raise TaskcliError("train.class_weights=auto counts the training labels, and a streamed dataset (data.streaming)"
                           " is not read ahead", "give a weight per label, e.g. --set 'train.class_weights={pos: 1, "
                           "neg: 3}'")
    if not run.task.cross_entropy_loss or run.labels is None or run.task.label_column is None or \
            run.learned.model_loss:
        raise TaskcliError(f"train.class_weights applies to classification with a cross-entropy loss; "
                           f"{run.task.name}{' on real-valued labels' if run.learned.model_loss else ''} has none",
                           "drop train.class_weights")
    names = [str(n) for n in run.labels]
    if isinstance(wanted, dict):
        unknown = [k for k in wanted if k not in names]
        if unknown:
            raise TaskcliError(f"train.class_weights names unknown label '{unknown[0]}'", f"labels: {', '.join(names)}")
        return [float(wanted.get(n, 1.0)) for n in names]
    import collections

    index = {n: i for i, n in enumerate(names)}
    counts: collections.Counter = collections.Counter()
    for value in train_rows[run.task.label_column]:
        for v in value if isinstance(value, list) else [value]:
            counts[v if isinstance(v, int) else index.get(str(v), -1)] += 1
    total = sum(c for i, c in counts.items() if 0 <= i < len(names))
    present = sum(1 for i in range(len(names)) if counts[i])
    return [total / (present * counts[i]) if counts[i] else 1.0 for i in range(len(names))]


def make_trainer(run: Run, model, args, train_features, eval_features, eval_examples, callbacks=(), weights=None):
    import functools

    from transformers import EarlyStoppingCallback, Seq2SeqTrainer, Trainer
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    cls = checkpoint_loading(Seq2SeqTrainer if run.seq2seq else Trainer)
    compute = run.task.metrics(run, eval_examples, eval_features) if eval_features is not None else None
    # Models that average their loss inline know nothing of other processes' label counts; for plain
    # cross-entropy tasks the engine does the averaging itself (see summed_cross_entropy). Class weights need
    # it too: the model's own loss has no weights.
    own_loss = run.task.cross_entropy_loss and not run.learned.model_loss and (
        weights is not None or not model_forward_uses_loss_function(model))
    stopping = run.recipe.train.early_stopping_patience
    if stopping and train_features is not None:  # (the recipe check refuses it without evaluations)
        callbacks = [*callbacks, EarlyStoppingCallback(stopping, run.recipe.train.early_stopping_threshold)]
    trainer = cls(
        model=model,
        args=args,
        train_dataset=train_features,
        eval_dataset=eval_features,
        processing_class=run.processor,
        data_collator=run.task.collator(run),
        compute_metrics=compute,
        # the task's own callbacks first, so the progress display sees what they add to the metrics
        callbacks=[make() for make in run.task.callbacks] + list(callbacks),
        compute_loss_func=functools.partial(summed_cross_entropy, weights=weights) if own_loss else None,
    )
    for noisy in (PrinterCallback, ProgressCallback):  # taskcli prints its own progress and results
        trainer.pop_callback(noisy)
    trainer.gather_function = _metrics_gather(trainer.accelerator)
    return trainer


def load_converted(model, folder) -> bool:
    """Load a Trainer checkpoint into `model` the way from_pretrained reads it; False when this does not apply.

    The Trainer restores checkpoints (--resume, the best model at the end) with a plain load_state_dict of the
    saved tensors. Some models save their weights under other names than they hold them (DETR's backbone is saved
    as model.backbone.conv_encoder.*, held as model.backbone.model.*); from_pretrained renames them back, a plain
    load_state_dict skips them (with a warning): a resumed DETR went on with an untrained backbone, and the "best"
    model kept the last step's backbone. Loading through from_pretrained restores every weight."""
    from pathlib import Path

    from transformers import PreTrainedModel

    folder = Path(folder or "")
    if not isinstance(model, PreTrainedModel) or not (folder / "config.json").is_file() or not any(
            (folder / name).is_file() for name in ("model.safetensors", "pytorch_model.bin")):
        return False  # LoRA (peft saves its adapter), sharded or FSDP checkpoints: the Trainer's own way
    saved = type(model).from_pretrained(str(folder), config=model.config)
    model.load_state_dict(saved.state_dict(), strict=True)
    return True


def checkpoint_loading(trainer_class):
    """The Trainer class, restoring checkpoints with load_converted where it applies."""

    class ConvertingTrainer(trainer_class):
        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            if not load_converted(model or self.model, resume_from_checkpoint):
                super()._load_from_checkpoint(resume_from_checkpoint, model)

        def _load_best_model(self):
            if not load_converted(self.model, self.state.best_model_checkpoint):
                super()._load_best_model()

    ConvertingTrainer.__name__ = trainer_class.__name__
    return ConvertingTrainer


def _metrics_gather(accelerator):
    """The Trainer's eval gather, but lists (per-image detection targets, a universal segmenter's masks: tensors
    of different sizes per image) are gathered as Python objects; a tensor all-gather needs equal shapes."""

    def gather(obj):
        if isinstance(obj, tuple) and any(isinstance(o, list) for o in obj):
            return tuple(gather(o) for o in obj)
        return accelerator.gather_for_metrics(obj, use_gather_object=isinstance(obj, list))

    return gather


def summed_cross_entropy(outputs, labels, num_items_in_batch=None, weights=None):
    """Cross-entropy summed over labelled positions, divided by the label count of the whole global batch.

    The Trainer passes `num_items_in_batch` counted across processes and accumulation steps, so the gradient
    equals a single-process run's over the same global batch (a mean of per-device means would not). With class
    weights each position's term is multiplied by its label's weight; the divisor stays the label count (not the
    sum of weights, which differs per batch), so the loss is still exact across processes and accumulation.
    """
    import torch
    import torch.nn.functional as F

    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    labels = labels.to(logits.device)
    weight = torch.tensor(weights, dtype=torch.float32, device=logits.device) if weights is not None else None
    total = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1), weight=weight,
                            ignore_index=-100, reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else labels.ne(-100).sum().clamp(min=1)
    return total / count


def kept_model_metrics(run: Run, trainer, evaluations: dict) -> dict | None:
    """The training-time evaluation of the model the run keeps (the best checkpoint, loaded at the end), so the
    final metrics need no second pass over the eval set; None when there is none to reuse: no evaluations, one made
    before a --resume, or a task whose evaluation draws at random (fill-mask's masks: a seeded pass of its own gives
    the numbers `taskcli eval` gives). `evaluations`: step -> metrics, as the callbacks completed them."""
    best = trainer.state.best_model_checkpoint
    if run.task.random_eval or not trainer.args.load_best_model_at_end or not best:
        return None
    scored = evaluations.get(int(Path(best).name.rsplit("-", 1)[-1]))
    return strip_prefix(scored) if scored else None


def strip_prefix(metrics: dict, prefix: str = "eval_") -> dict:
    skip = {"runtime", "samples_per_second", "steps_per_second", "epoch", "step", "model_preparation_time"}
    out = {}
    for key, value in metrics.items():
        name = key[len(prefix):] if key.startswith(prefix) else key
        if name not in skip:
            out[name] = value
    return out


# ----------------------------------------------------------------------------- finetune


def default_output_dir(run: Run) -> Path:
    """runs/<task>-<recipe>[-smoke]; repeating a run from its recipe.yaml writes next to it, to <run>-rerun."""
    path = run.resolved.path
    if path.name == "recipe.yaml" and (path.parent / "config.json").is_file():
        return path.parent.with_name(path.parent.name + "-rerun")
    name = run.resolved.name.replace("/", "-") if run.resolved.name.count("/") == 1 else Path(run.resolved.name).stem
    if not name.startswith(run.task.name):
        name = f"{run.task.name}-{name}"
    return Path("runs") / (name + ("-smoke" if run.smoke else ""))


def newest_checkpoint(output_dir: Path) -> str | None:
    """Newest checkpoint-N that finished saving (has trainer_state.json); a kill mid-save leaves one without."""
    complete = [p for p in output_dir.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    complete.sort(key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)
    return str(complete[-1]) if complete else None


# Written into the output dir at the start of every run and rewritten when it finishes: what tells a folder a
# taskcli run wrote (the only kind --overwrite deletes) and whether the run there finished, at which step.
RUN_MARKER = ".taskcli-run"


def run_record(out: Path) -> dict | None:
    """The output dir's run marker, or None (no marker: not a run folder, or a run of an older taskcli)."""
    try:
        record = json.loads((out / RUN_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def mark_run(out: Path, **record) -> None:
    """Write the run marker (atomically: a kill leaves the old one or the new one)."""
    from taskcli import __version__

    tmp = out / (RUN_MARKER + ".tmp")
    tmp.write_text(json.dumps({"taskcli": __version__, **record}) + "\n", encoding="utf-8")
    os.replace(tmp, out / RUN_MARKER)


def _written_by_taskcli(out: Path) -> bool:
    """A folder a taskcli run wrote: its marker, or (runs of versions before the marker) a recipe.yaml with
    taskcli's provenance or the Trainer's checkpoints."""
    if (out / RUN_MARKER).is_file() or any((p / "trainer_state.json").is_file() for p in out.glob("checkpoint-*")):
        return True
    try:
        head = (out / "recipe.yaml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return "\nprovenance:" in head and "\ntask:" in "\n" + head


def check_overwrite(out: Path) -> None:
    """--overwrite deletes only a folder a taskcli run wrote, and never one that holds the current folder, the
    home folder or a git repository: anything else is refused before a file is touched."""
    where, here, home = out.resolve(), Path.cwd().resolve(), Path.home().resolve()
    held = "the whole disk" if where == Path(where.anchor) else "your home folder" if where == home else \
        "the current folder" if where == here or where in here.parents else None
    if held:
        raise TaskcliError(f"--overwrite refused: deleting {out} would delete {held}",
                           "choose a new folder for --output-dir")
    if out.is_symlink() or (out / ".git").exists():
        raise TaskcliError(f"--overwrite refused: {out} is {'a link' if out.is_symlink() else 'a git repository'}",
                           "choose another --output-dir")
    if not _written_by_taskcli(out):
        some = sorted(p.name for p in out.iterdir())
        raise TaskcliError(f"--overwrite refused: {out} was not written by a taskcli run (it holds {quoted(some[0])}"
                           + (f" and {len(some) - 1} more" if len(some) > 1 else "") + ")",
                           "choose another --output-dir, or empty the folder yourself")


def check_output_dir(out: Path, resume: bool, overwrite: bool) -> str | None:
    """Before anything heavy: refuse to clobber a user's folder and check the folder can be written, changing
    nothing yet (start_run does, once the run really starts); return the checkpoint to resume from, if any."""
    if out.exists() and not out.is_dir():
        raise TaskcliError(f"output path {out} is a file", "choose another --output-dir")
    busy, ckpt = _busy(out), None
    if resume:
        ckpt = newest_checkpoint(out) if busy else None
        if ckpt is None:
            raise TaskcliError(f"nothing to resume in {out}: no complete checkpoint-* folder", "drop --resume")
    elif busy and not overwrite:
        raise TaskcliError(
            f"output dir {out} is not empty",
            "pass --resume to continue it, --overwrite to replace it, or choose another --output-dir",
        )
    elif busy:
        check_overwrite(out)
    _check_writable(out)
    return ckpt


def _busy(out: Path) -> bool:
    return out.is_dir() and any(p.name != RUN_MARKER for p in out.iterdir())


def _check_writable(out: Path) -> None:
    """A file made and deleted at once in the folder, or in the nearest one above it that exists (where it would
    be made): `-o /proc/x`, a path under a file or a folder without permission fail here, in one line."""
    folder = out
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        if not folder.is_dir():
            raise NotADirectoryError(f"{folder} is a file")
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        raise TaskcliError(f"cannot write to output dir {out}: {err.strerror or err}",
                           "choose another --output-dir") from None


def start_run(out: Path, replace: bool) -> None:
    """The run starts (its model is loaded): the folder of the run it replaces (--overwrite) is deleted only now,
    so a run that fails before keeps it, and the folder gets its run marker."""
    if replace and _busy(out):
        check_overwrite(out)  # again: the folder may have changed while the model loaded
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    mark_run(out, status="running")


def no_space_left(err: BaseException, folders: list[Path], since: float) -> TaskcliError:
    """A full disk, named by the file being written: the error's own file name, else the file last written in
    `folders` (the output dir, the run's temporary folders) after `since` (time.time()): torch.save's and
    safetensors' errors name none, and the half-written file is the one touched last."""
    name = getattr(err, "filename", None)
    if not name:
        newest = (since - 2.0, None)  # file times can lag the clock by a tick
        for folder in folders:
            for root, _, names in os.walk(folder):
                for f in names:
                    try:
                        newest = max(newest, (os.stat(os.path.join(root, f)).st_mtime, os.path.join(root, f)))
                    except OSError:  # gone meanwhile
                        pass
        name = newest[1]
    where = f"writing {name}" if name else "(run with TASKCLI_DEBUG=1 to see which write)"
    return TaskcliError(f"no space left on device {where}", "free some space, or pass another --output-dir")


def finished_run(out: Path, resume_from: str, planned: int) -> dict | None:
    """--resume of a run that finished: {"step", "planned"} when it already did the `planned` steps asked for
    (nothing to do), None when it has steps left. A finished run asked for more steps continues from its
    last step, which must still be there: resuming from an older checkpoint would train those steps again."""
    record = run_record(out)
    try:
        state = json.loads((Path(resume_from) / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {}
    if record is not None:
        if record.get("status") != "finished":
            return None
        last, did = int(record["global_step"]), int(record["max_steps"])
    elif (out / "metrics.json").is_file():  # a run of an older taskcli that finished (no marker yet then)
        last = did = int(state.get("max_steps") or 0)
    else:
        return None
    if planned <= did:
        return {"step": last, "planned": did}
    at = int(state.get("global_step") or 0)
    if at < last:
        raise TaskcliError(f"cannot continue the finished run in {out} from its last step {last}: its newest "
                           f"checkpoint is {Path(resume_from).name} (step {at}), resuming would train steps "
                           f"{at + 1}-{last} again", "start a new run with --overwrite or another --output-dir")
    return None


def finetune(
    task: str,
    recipe: str | None = None,
    sets: list[str] | None = None,
    smoke: bool = False,
    model: str | None = None,
    data: str | None = None,
    output_dir: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    dry_run: bool = False,
    command: str = "",
    log=None,
    gates: list[str] | None = None,
    lora: bool = False,
) -> dict:
    """Fine-tune; returns {"output_dir", "metrics", ...}. `log(renderable)` prints progress (stderr).

    `gates`: extra quality gates (--gate) on top of the recipe's eval.gates; `lora`: --lora (train.lora with peft's
    defaults unless the recipe sets it)."""
    from taskcli import gates as gates_mod
    from taskcli import provenance

    run = prepare(task, recipe, sets, smoke)
    if lora and run.recipe.train.lora is None:
        run.recipe.train.lora = recipe_mod.LoraSection()
    run.recipe.eval.gates = [*run.recipe.eval.gates, *(g for g in gates or [] if g not in run.recipe.eval.gates)]
    checks = gates_mod.parse(run.recipe.eval.gates)  # a typo fails now, not after training
    out = Path(output_dir or run.recipe.train.output_dir or default_output_dir(run))
    if dry_run:  # what would run: the recipe as recipe.yaml will record it (--model/--data/--set/--smoke folded in)
        return {"dry_run": True, "task": run.task.name, "recipe": run.resolved.name, "smoke": run.smoke,
                "output_dir": str(out), "output_dir_exists": out.exists(),
                "resolved": provenance.effective_recipe(run, model, data, out)}
    is_main = int(os.environ.get("RANK", "0")) == 0
    # Under DDP only rank 0 judges the folder (and clears it: start_run); other ranks would see rank 0's files.
    resume_from = check_output_dir(out, resume, overwrite) if is_main else (newest_checkpoint(out) if resume else None)
    began = time.time()  # files written after this are the run's (see no_space_left)
    quiet_libraries()
    from transformers import set_seed

    from taskcli.progress import EpochTicker, Evaluations, RichProgress, print_header

    set_seed(run.recipe.train.seed)
    progress = None
    try:
        dsd = data_mod.load(run, data)
        preflight.check(run, dsd, data)  # before any model loads; its notes are printed with the run header
        run.labels = run.recipe.data.labels or run.task.labels(run, data_mod.countable(dsd))
        tiny = uses_tiny_model(run, model)
        run.model_source = build_smoke_model(run, dsd) if tiny else resolve_model_source(
            run, model, run.recipe.model.checkpoint)
        # after the tiny model is built: once the process group exists, save_pretrained writes on rank 0 only
        check_processes_agree(run, model, data)
        model_desc = (f"a tiny randomly initialised {run.recipe.model.type} (--smoke)" if tiny
                      else data_mod.local_or_id(run.model_source))
        mdl = load_processor_and_model(run, run.labels)
        run.task.check(run)
        weights = class_weights(run, dsd["train"])
        if run.recipe.train.lora is not None:
            from taskcli import lora as lora_mod

            mdl = lora_mod.wrap(run, mdl)
        args = training_arguments(run, str(out), model=mdl)
        if resume_from:
            from taskcli.progress import planned_steps

            finished = finished_run(out, resume_from, planned_steps(args, run.data_info.train_rows)[0])
            if finished:  # nothing to train, and nothing in the folder changes
                return {"task": run.task.name, "recipe": run.resolved.name, "output_dir": str(out),
                        "finished": True, **finished}
        if is_main:
            start_run(out, replace=overwrite and not resume_from)
        parameters = (sum(p.numel() for p in mdl.parameters()),
                      sum(p.numel() for p in mdl.parameters() if p.requires_grad))
        device = _device_name(args)
        if is_main:
            print_header(run, model_desc, parameters, device, args, out, resume_from, log)
        started = time.perf_counter()
        train_features = build_features(run, dsd["train"], True, log)
        eval_features = build_features(run, dsd["eval"], False, log)
        preprocess_s = time.perf_counter() - started
        progress = RichProgress(log=log) if is_main else None
        evaluations = Evaluations()
        run.clock.seed = run.recipe.train.seed
        trainer = make_trainer(run, mdl, args, train_features, eval_features, dsd["eval"],
                               callbacks=[evaluations, EpochTicker(run.clock), *([progress] if progress else [])],
                               weights=weights)
        try:
            result = trainer.train(resume_from_checkpoint=resume_from)
        except KeyboardInterrupt:
            if progress:
                progress.stop()
            raise interrupted(trainer, out, command) from None
        metrics = kept_model_metrics(run, trainer, evaluations.by_step)
        if metrics is None:  # no evaluation scored the kept model yet (eval_strategy no), or eval draws at random
            set_seed(run.recipe.train.seed)  # same random state as `taskcli eval` (e.g. MLM masks): same numbers
            metrics = strip_prefix(trainer.evaluate())  # the best (or, with eval_strategy=no, the last) model
        scored = scored_checkpoint(trainer)
        from taskcli import worst

        # the run report's worst examples, scored one process alone (a sharded loader would see a part of them)
        # TASKCLI_REPORT=0: no run report (plots, worst examples), a few seconds less per run for CI smoke checks
        with_report = os.environ.get("TASKCLI_REPORT", "1") != "0"
        losses = report_step("worst examples", worst.ranked, trainer, eval_features) \
            if with_report and run.task.features_per_example and args.world_size == 1 else []
        if trainer.is_world_process_zero():
            if run.recipe.train.lora is not None:  # the merged model where from_pretrained looks, the adapter beside it
                final = lora_mod.merge(trainer.model, out / "adapter")
                run.task.before_save(run, final)
                final.save_pretrained(str(out))
            else:
                final = trainer.model
                run.task.before_save(run, final)
                trainer.save_model(str(out))
            run.processor.save_pretrained(str(out))
            from taskcli import report

            plots = report.write(out / "report", metrics, trainer.state.log_history) if with_report else []
            table = report_step("worst examples", worst.write, run, final.eval(), dsd["eval"], losses, out / "report")
            plots += [table] if table else []
            saved = provenance.effective_recipe(run, model, data, out, None if tiny else mdl.config.model_type)
            saved["provenance"] = provenance.record(
                run, command=command, sets=sets or [], model=model, model_desc=model_desc, tiny=tiny, parameters=parameters,
                class_weights=dict(zip(map(str, run.labels), weights)) if weights else None,
                device=device, processes=args.world_size, scored=scored, features=dsd)
            provenance.write_run_files(run, out, saved, metrics, result.training_loss, plots)
            mark_run(out, status="finished", global_step=trainer.state.global_step,
                     max_steps=trainer.state.max_steps, last_checkpoint=Path(newest_checkpoint(out) or "").name)
        return {"task": run.task.name, "recipe": run.resolved.name, "output_dir": str(out), "metrics": metrics,
                "scored": scored, "gates_failed": gates_mod.check(checks, metrics, run.task.name),
                "train_loss": result.training_loss, "preprocess_s": round(preprocess_s, 3),
                "preflight_s": round(run.data_info.preflight_s, 3),
                "train_runtime_s": result.metrics.get("train_runtime"),
                "processes": args.world_size, "global_batch_size": args.train_batch_size * args.world_size
                * args.gradient_accumulation_steps}
    except Exception as err:
        if disk_full(err) and not isinstance(err, TaskcliError):
            raise no_space_left(err, [out, *(Path(t.name) for t in run._tmp)], began) from err
        raise
    finally:
        run.close()


def check_processes_agree(run: Run, model: str | None, data: str | None) -> None:
    """Every process of a distributed run (every node of a multi-node one) must train the same recipe on the same
    label set: a node with another recipe file, taskcli version or data snapshot would average gradients of a
    different model into everyone's. Compared once, before any model is loaded; a mismatch names the field."""
    if int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return
    import torch.distributed as dist
    from accelerate import PartialState

    from taskcli import __version__

    PartialState()  # joins the process group torchrun / accelerate launch describe in the environment
    mine = {f"recipe.{k}": v for k, v in _flat(run.recipe.model_dump(mode="json")).items()}
    mine.update({"labels": run.labels, "--model": model, "--data": data, "taskcli version": __version__,
                 "train rows": run.data_info.train_rows if run.data_info else None})
    everyone: list = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    for rank, theirs in enumerate(everyone[1:], start=1):
        differ = sorted(k for k in mine.keys() | theirs.keys() if everyone[0].get(k) != theirs.get(k))
        if differ:
            key = differ[0]
            raise TaskcliError(f"process {rank} resolved a different run than process 0: {key} is "
                               f"{quoted(theirs.get(key))} there, {quoted(everyone[0].get(key))} on process 0"
                               + (f" (and {len(differ) - 1} more)" if len(differ) > 1 else ""),
                               "give every node the same taskcli version, recipe, --set values and data")


def _flat(tree: dict, prefix: str = "") -> dict:
    out: dict = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def build_features(run: Run, ds, training: bool, log=None):
    """The task's preprocess hook, with its progress shown (rows/s, ETA) and, under DDP, done by the main process
    first: the others then read its result from datasets' cache instead of all computing it at once."""
    import contextlib

    from taskcli.progress import preprocessing

    first = contextlib.nullcontext()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        first = PartialState().main_process_first()
    rows = len(ds) if hasattr(ds, "__len__") else None
    with first, preprocessing(f"features {'train' if training else 'eval'}", rows, log):
        return run.task.preprocess(run, ds, training)


def report_step(what: str, fn, *args):
    """Run one optional part of the report: its failure is a note on stderr, never a failed run (the model is
    trained and saved by then). TASKCLI_DEBUG=1 raises it."""
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001
        if os.environ.get("TASKCLI_DEBUG") == "1":
            raise
        print(f"note: the report's {what} were skipped: {type(err).__name__}: {str(err).splitlines()[0][:200]}",
              file=sys.stderr)
        return None


def _device_name(args) -> str:
    import torch

    if args.device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(args.device)})"
    return args.device.type


def scored_checkpoint(trainer) -> dict:
    """Which weights the final metrics scored: the best checkpoint (load_best_model_at_end) or the last step."""
    state = trainer.state
    stopped = {"stopped_early_at": state.global_step, "planned_steps": state.max_steps} \
        if state.global_step < state.max_steps else {}
    best = state.best_model_checkpoint
    if trainer.args.load_best_model_at_end and best:
        step = int(Path(best).name.rsplit("-", 1)[-1])
        return {"checkpoint": "best", "step": step, "metric": trainer.args.metric_for_best_model,
                "value": state.best_metric, **stopped}
    return {"checkpoint": "last", "step": state.global_step, **stopped}


class Interrupted(TaskcliError):
    """Ctrl-C during training: one line saying where it stopped and how to go on."""

    exit_code = 130


def interrupted(trainer, out: Path, command: str) -> Interrupted:
    import shlex

    step = trainer.state.global_step
    ckpt = newest_checkpoint(out)
    if not ckpt:
        return Interrupted(f"interrupted at step {step}, before the first checkpoint: nothing to resume",
                           f"run `{command or 'the same command'}` again (add --overwrite if {out} is not empty)")
    words = [w for w in shlex.split(command) if w != "--overwrite"] if command else []
    again = shlex.join(words + ([] if "--resume" in words else ["--resume"])) if words else "the same command with --resume"
    if words and not any(w in ("-o", "--output-dir") or w.startswith("--output-dir=") for w in words):
        again += f" -o {shlex.quote(str(out))}"
    return Interrupted(f"interrupted at step {step}; {Path(ckpt).name} is saved in {out}", f"resume with: {again}")


# ----------------------------------------------------------------------------- eval


def evaluate(
    task: str,
    model: str | None = None,
    recipe: str | None = None,
    data: str | None = None,
    split: str | None = None,
    sets: list[str] | None = None,
    smoke: bool = False,
    gates: list[str] | None = None,
    report: str | None = None,
) -> dict:
    """Score a model; `gates` (--gate, added to eval.gates) are checked, `report` names a folder for the plots."""
    from taskcli import gates as gates_mod

    run = prepare(task, recipe, sets, smoke)
    checks = gates_mod.parse([*run.recipe.eval.gates, *(gates or [])])
    report_dir = Path(report) if report else None
    if report_dir and (report_dir.is_file() or (report_dir.is_dir() and any(report_dir.iterdir()))):
        raise TaskcliError(f"report folder {report_dir} is not empty", "choose a new folder for --report")
    quiet_libraries()
    from transformers import set_seed

    try:
        dsd = data_mod.load(run, data, eval_split_name=split, only_eval=True)
        preflight.check(run, dsd, data, training=False)
        info = run.data_info
        if info.train_split and info.eval_split == info.train_split:
            print(f"note: scoring split '{info.eval_split}', the training rows: a model fine-tuned on this data scores "
                  f"higher on them than on unseen data", file=sys.stderr)
        if run.recipe.eval.label_map and not run.smoke:
            for name in dsd:
                dsd[name] = rename_labels(dsd[name], run.recipe.eval.label_map)
        data_labels = run.recipe.data.labels or run.task.labels(run, data_mod.countable(dsd))
        default = run.recipe.model.infer_default or run.recipe.model.checkpoint
        tiny = uses_tiny_model(run, model, default)
        if tiny:
            run.model_source = build_smoke_model(run, dsd)
            run.labels = data_labels
            mdl = load_processor_and_model(run, data_labels)
        else:
            run.model_source = resolve_model_source(run, model, default)
            check_task_head(run, explicit=bool(model))
            run.labels = data_labels
            mdl = load_processor_and_model(run, None)
            run.labels = check_labels(run, mdl)
            if run.labels:
                dsd["eval"] = align_label_ids(dsd["eval"], run.labels)
        preflight.say(run.data_info.notes)  # once the model loaded: an error before it is the only line
        features = build_features(run, dsd["eval"], False)
        with tempfile.TemporaryDirectory(prefix="taskcli-eval-") as tmp:
            trainer = make_trainer(run, mdl, training_arguments(run, tmp, for_eval=True), None, features, dsd["eval"])
            set_seed(run.recipe.train.seed)  # as finetune's final eval: random eval-time masking agrees
            metrics = strip_prefix(trainer.evaluate())
        plots = []
        if report_dir:
            from taskcli import report as report_mod
            from taskcli import worst

            plots = [str(p) for p in report_mod.write(report_dir, metrics)]
            if run.task.features_per_example:
                losses = report_step("worst examples", worst.ranked, trainer, features)
                table = report_step("worst examples", worst.write, run, mdl, dsd["eval"], losses, report_dir)
                plots += [str(table)] if table else []
        return {"task": run.task.name, "model": "tiny (untrained, --smoke)" if tiny else run.model_source,
                "data": info.source, "split": info.eval_split, "split_made": info.eval_made,
                "samples": len(dsd["eval"]), "metrics": metrics, "report": plots,
                "gates_failed": gates_mod.check(checks, metrics, run.task.name)}
    finally:
        run.close()


# ----------------------------------------------------------------------------- infer


def load_for_inference(task: str, model: str | None, recipe: str | None, sets: list[str] | None, smoke: bool,
                       run: Run | None = None):
    """(run, model) ready for predict; smoke without --model gives an untrained tiny model. `run`: the one
    `prepare` already made for these arguments."""
    run = run or prepare(task, recipe, sets, smoke)
    quiet_libraries()
    import torch

    default = run.recipe.model.infer_default or run.recipe.model.checkpoint
    if uses_tiny_model(run, model, default):
        dsd = data_mod.load(run, None)
        run.labels = run.recipe.data.labels or run.task.labels(run, data_mod.countable(dsd))
        run.model_source = build_smoke_model(run, dsd)
        mdl = load_processor_and_model(run, run.labels)
    else:
        run.model_source = resolve_model_source(run, model, default)
        check_task_head(run, explicit=bool(model))
        mdl = load_processor_and_model(run, None)
    mdl.eval()
    if torch.cuda.is_available():
        mdl.to("cuda")
    set_inference_precision(run, mdl)
    return run, mdl


def set_inference_precision(run: Run, mdl) -> None:
    """Cast for `infer.precision`; bf16 on CPU also takes the bf16-friendly attention path (see attention.py)."""
    import torch

    precision = run.recipe.infer.precision
    if precision == "no":
        return
    if precision == "fp16" and mdl.device.type != "cuda":
        raise TaskcliError("fp16 inference needs a CUDA GPU and none is available", "use --precision bf16 or no")
    mdl.to(torch.bfloat16 if precision == "bf16" else torch.float16)
    if mdl.device.type == "cpu":
        from taskcli import attention

        attention.use_for(mdl)


COMMON_INFER_OPTIONS = frozenset({"batch_size", "skip_bad", "as_json", "interactive", "column"})


def flag_of(option: str) -> str:
    return "--do-sample/--greedy" if option == "do_sample" else "--" + option.replace("_", "-")


def check_infer_options(task, options: dict) -> None:
    """An `infer` option the task does not read is an error naming the tasks it is for (never silently ignored)."""
    for option in options:
        if option in COMMON_INFER_OPTIONS or task.takes(option):
            continue
        users = [t.name for t in registry.all_tasks() if t.takes(option)]
        raise TaskcliError(f"{flag_of(option)} does not apply to {task.name}: it is for {', '.join(users)}",
                           f"drop {flag_of(option)}")


def infer_defaults(run: Run, options: dict) -> dict:
    """The recipe's infer settings under what the command line gave: batch size, and labels per input (top_k) for
    the tasks that rank labels; generate()'s top-k is taskcli.generation's."""
    options.setdefault("batch_size", run.recipe.infer.batch_size)
    if run.task.takes("top_k") and not run.task.generates:
        options.setdefault("top_k", run.recipe.infer.top_k)
    return options


@dataclass
class Inference:
    """What `infer_stream` hands back: the task, how many inputs there are (None: not known before the end, as
    with stdin), the input just before `start` as its row names it (what an --output file's last row must be
    for), and the rows a chunk at a time."""

    task: Any
    total: int | None
    before_start: Any
    chunks: Any  # iterator of lists of (input, result, is_error)


def infer_session(run: Run, mdl, options: dict):
    """(steps, context) of the task's inference for this model, with the recipe's defaults under `options`."""
    steps = run.task.steps(run, mdl)
    return steps, steps.setup(run, mdl, infer_defaults(run, options))


def infer_stream(
    task: str,
    inputs: list[str],
    model: str | None = None,
    recipe: str | None = None,
    sets: list[str] | None = None,
    smoke: bool = False,
    options: dict | None = None,
    start: int = 0,
    chunk_size: int | None = None,
) -> Inference:
    """Inference a chunk of inputs at a time, in input order (taskcli/inference.py): the model is loaded once,
    inputs are read lazily and parsed (media decoded) a chunk at a time, and each chunk's rows are handed back
    before the next begins, so the first rows come out early and memory does not grow with the input count.
    `start` skips the inputs an --output file already holds (--resume)."""
    import itertools

    from taskcli import inference, inputs as inputs_mod

    options = dict(options or {})
    check_infer_options(registry.get(task), options)
    run = prepare(task, recipe, sets, smoke)
    inputs_mod.check_tables(run, options, inputs)  # a table without its column is one line before the model loads
    run, mdl = load_for_inference(task, model, recipe, sets, smoke, run)
    try:
        steps, ctx = infer_session(run, mdl, options)
        found = inference.entries(ctx, steps, inputs)
        total = len(found) if isinstance(found, list) else found.total
        todo = iter(found)
        skipped = list(itertools.islice(todo, start))
        first = next(todo, None)
        if first is None and not skipped:
            raise TaskcliError("no inputs given", "pass texts/files as arguments, or - to read stdin")
    except BaseException:
        run.close()
        raise
    # decoded images and recordings are far bigger than lines of text: media chunks hold a few batches
    size = chunk_size or (max(8 * ctx.batch_size, 256) if run.task.modality == "text" else 4 * ctx.batch_size)

    def chunks():
        try:
            if first is not None:
                yield from inference.stream(ctx, steps, itertools.chain([first], todo), size)
        finally:
            run.close()

    before = skipped[-1][1] if len(skipped) == start and start else None
    return Inference(run.task, total, before, chunks())


def infer(task: str, inputs: list[str], **kwargs) -> tuple[Any, list[Any], list[dict]]:
    """(task, the inputs that could be used, their results in input order): `infer_stream` (same arguments) in
    one piece."""
    done = infer_stream(task, inputs, **kwargs)
    rows = [(raw, result) for chunk in done.chunks for raw, result, bad in chunk if not bad]
    return done.task, [raw for raw, _ in rows], [result for _, result in rows]
