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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskcli import data as data_mod
from taskcli import recipe as recipe_mod
from taskcli import registry
from taskcli.errors import TaskcliError


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
    state: dict = field(default_factory=dict)  # what a task's hooks learn along the way (e.g. ASR's model kind)
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
    import datasets
    import transformers
    from huggingface_hub.utils import disable_progress_bars

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    disable_progress_bars()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(transformers|torch|accelerate)\b")


def prepare(task_name: str, recipe: str | None, sets: list[str] | None, smoke: bool) -> Run:
    task = registry.get(task_name)
    return Run(task=task, resolved=recipe_mod.resolve(task, recipe, sets, smoke), smoke=smoke)


# ----------------------------------------------------------------------------- models


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
        for row in ds:
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


def training_arguments(run: Run, output_dir: str, for_eval: bool = False):
    import torch
    from transformers import Seq2SeqTrainingArguments, TrainingArguments

    t = run.recipe.train
    if t.precision == "fp16" and not torch.cuda.is_available():
        raise TaskcliError("fp16 needs a CUDA GPU and none is available", "use --set train.precision=bf16 or no")
    # a task can switch its best metric for a run (text-classification on real-valued labels: Pearson)
    default_metric = run.state.get("best_metric") or run.task.best_metric
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
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=has_eval,
        metric_for_best_model=metric if has_eval else None,
        greater_is_better=run.state.get("greater_is_better", run.task.greater_is_better) if metric == default_metric
        else None,
        logging_steps=t.logging_steps,
        logging_strategy="steps",
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=t.dataloader_num_workers,
        remove_unused_columns=not run.task.collator_reads_raw,
        batch_eval_metrics=run.task.batch_eval_metrics,
        use_cpu=not torch.cuda.is_available(),
    )
    if for_eval:
        kwargs.update(eval_strategy="no", save_strategy="no", load_best_model_at_end=False, metric_for_best_model=None)
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


def make_trainer(run: Run, model, args, train_features, eval_features, eval_examples, callbacks=()):
    from transformers import Seq2SeqTrainer, Trainer
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    cls = Seq2SeqTrainer if run.seq2seq else Trainer
    compute = run.task.metrics(run, eval_examples, eval_features) if eval_features is not None else None
    # Models that average their loss inline know nothing of other processes' label counts; for plain
    # cross-entropy tasks the engine does the averaging itself (see summed_cross_entropy).
    own_loss = (run.task.cross_entropy_loss and not run.state.get("model_loss")
                and not model_forward_uses_loss_function(model))
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
        compute_loss_func=summed_cross_entropy if own_loss else None,
    )
    for noisy in (PrinterCallback, ProgressCallback):  # taskcli prints its own progress and results
        trainer.pop_callback(noisy)
    trainer.gather_function = _metrics_gather(trainer.accelerator)
    return trainer


def _metrics_gather(accelerator):
    """The Trainer's eval gather, but lists (per-image detection targets, a universal segmenter's masks: tensors
    of different sizes per image) are gathered as Python objects; a tensor all-gather needs equal shapes."""

    def gather(obj):
        if isinstance(obj, tuple) and any(isinstance(o, list) for o in obj):
            return tuple(gather(o) for o in obj)
        return accelerator.gather_for_metrics(obj, use_gather_object=isinstance(obj, list))

    return gather


def summed_cross_entropy(outputs, labels, num_items_in_batch=None):
    """Cross-entropy summed over labelled positions, divided by the label count of the whole global batch.

    The Trainer passes `num_items_in_batch` counted across processes and accumulation steps, so the gradient
    equals a single-process run's over the same global batch (a mean of per-device means would not).
    """
    import torch.nn.functional as F

    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    labels = labels.to(logits.device)
    total = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=-100,
                            reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else labels.ne(-100).sum().clamp(min=1)
    return total / count


def strip_prefix(metrics: dict, prefix: str = "eval_") -> dict:
    skip = {"runtime", "samples_per_second", "steps_per_second", "epoch", "model_preparation_time"}
    out = {}
    for key, value in metrics.items():
        name = key[len(prefix):] if key.startswith(prefix) else key
        if name not in skip:
            out[name] = value
    return out


# ----------------------------------------------------------------------------- finetune


def default_output_dir(run: Run) -> Path:
    name = run.resolved.name.replace("/", "-") if run.resolved.name.count("/") == 1 else Path(run.resolved.name).stem
    if not name.startswith(run.task.name):
        name = f"{run.task.name}-{name}"
    return Path("runs") / (name + ("-smoke" if run.smoke else ""))


def newest_checkpoint(output_dir: Path) -> str | None:
    """Newest checkpoint-N that finished saving (has trainer_state.json); a kill mid-save leaves one without."""
    complete = [p for p in output_dir.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    complete.sort(key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)
    return str(complete[-1]) if complete else None


def check_output_dir(out: Path, resume: bool, overwrite: bool) -> str | None:
    """Refuse to clobber a user's folder; return the checkpoint to resume from, if any."""
    if out.exists() and not out.is_dir():
        raise TaskcliError(f"output path {out} is a file", "choose another --output-dir")
    busy = out.is_dir() and any(out.iterdir())
    if resume:
        ckpt = newest_checkpoint(out) if busy else None
        if ckpt is None:
            raise TaskcliError(f"nothing to resume in {out}: no complete checkpoint-* folder", "drop --resume")
        return ckpt
    if busy and not overwrite:
        raise TaskcliError(
            f"output dir {out} is not empty",
            "pass --resume to continue it, --overwrite to replace it, or choose another --output-dir",
        )
    if busy and overwrite:
        shutil.rmtree(out)
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
) -> dict:
    """Fine-tune; returns {"output_dir", "metrics", ...}. `log(renderable)` prints progress (stderr)."""
    run = prepare(task, recipe, sets, smoke)
    out = Path(output_dir or run.recipe.train.output_dir or default_output_dir(run))
    if dry_run:
        return {"dry_run": True, "task": run.task.name, "recipe": run.resolved.name, "output_dir": str(out),
                "output_dir_exists": out.exists(), "resolved": run.recipe.model_dump(mode="json")}
    is_main = int(os.environ.get("RANK", "0")) == 0
    # Under DDP only rank 0 may judge/clear the folder; other ranks would see rank 0's fresh files.
    resume_from = check_output_dir(out, resume, overwrite) if is_main else (newest_checkpoint(out) if resume else None)
    quiet_libraries()
    from transformers import set_seed

    from taskcli.progress import RichProgress

    set_seed(run.recipe.train.seed)
    try:
        dsd = data_mod.load(run, data)
        run.labels = run.recipe.data.labels or run.task.labels(run, dsd)
        run.model_source = build_smoke_model(run, dsd) if smoke and not model else resolve_model_source(
            run, model, run.recipe.model.checkpoint)
        mdl = load_processor_and_model(run, run.labels)
        train_features = run.task.preprocess(run, dsd["train"], True)
        eval_features = run.task.preprocess(run, dsd["eval"], False)
        args = training_arguments(run, str(out))
        progress = RichProgress(log=log) if is_main else None
        trainer = make_trainer(run, mdl, args, train_features, eval_features, dsd["eval"],
                               callbacks=[progress] if progress else [])
        result = trainer.train(resume_from_checkpoint=resume_from)
        set_seed(run.recipe.train.seed)  # same random state as `taskcli eval` (e.g. MLM masks): same numbers
        metrics = strip_prefix(trainer.evaluate())  # the best (or, with eval_strategy=no, the last) model
        if trainer.is_world_process_zero():
            trainer.save_model(str(out))
            run.processor.save_pretrained(str(out))
            write_run_files(run, out, metrics, result, command, len(dsd["train"]), len(dsd["eval"]))
        return {"task": run.task.name, "recipe": run.resolved.name, "output_dir": str(out), "metrics": metrics,
                "train_loss": result.training_loss, "train_runtime_s": result.metrics.get("train_runtime"),
                "processes": args.world_size, "global_batch_size": args.train_batch_size * args.world_size
                * args.gradient_accumulation_steps}
    finally:
        run.close()


def write_run_files(run: Run, out: Path, metrics: dict, result, command: str, n_train: int, n_eval: int):
    """recipe.yaml (resolved), metrics.json and a model card README.md next to the model."""
    import yaml

    header = f"# Resolved recipe of this run ({run.resolved.name}).\n# Re-run: {command or 'taskcli finetune ' + run.task.name}\n"
    (out / "recipe.yaml").write_text(header + yaml.safe_dump(run.recipe.model_dump(mode="json"), sort_keys=False))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    rows = "\n".join(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items())
    base = "a tiny randomly initialised model (--smoke)" if run.smoke else f"`{run.recipe.model.checkpoint}`"
    dataset = "the bundled smoke sample" if run.smoke else f"`{run.recipe.data.dataset}`"
    card = f"""---
library_name: transformers
pipeline_tag: {run.task.name}
tags: [taskcli, {run.task.name}]
---

# {out.name}

Fine-tuned with [taskcli](https://pypi.org/project/taskcli/) from {base} on {dataset}
({n_train} training / {n_eval} evaluation examples), recipe `{run.resolved.name}`.

```bash
{command or 'taskcli finetune ' + run.task.name}
```

## Evaluation

| metric | value |
|---|---|
{rows}

Training loss: {result.training_loss:.4f}. The full resolved recipe is in `recipe.yaml`.

## Use

```bash
taskcli infer {run.task.name} --model {out} "..."
```
"""
    (out / "README.md").write_text(card)


# ----------------------------------------------------------------------------- eval


def evaluate(
    task: str,
    model: str | None = None,
    recipe: str | None = None,
    data: str | None = None,
    split: str | None = None,
    sets: list[str] | None = None,
    smoke: bool = False,
) -> dict:
    run = prepare(task, recipe, sets, smoke)
    quiet_libraries()
    from transformers import set_seed

    try:
        dsd = data_mod.load(run, data, eval_split_name=split)
        if run.recipe.eval.label_map and not smoke:
            for name in dsd:
                dsd[name] = rename_labels(dsd[name], run.recipe.eval.label_map)
        data_labels = run.recipe.data.labels or run.task.labels(run, dsd)
        if smoke and not model:
            run.model_source = build_smoke_model(run, dsd)
            run.labels = data_labels
            mdl = load_processor_and_model(run, data_labels)
        else:
            run.model_source = resolve_model_source(run, model, run.recipe.model.infer_default or run.recipe.model.checkpoint)
            check_task_head(run, explicit=bool(model))
            run.labels = data_labels
            mdl = load_processor_and_model(run, None)
            run.labels = check_labels(run, mdl)
            if run.labels:
                dsd["eval"] = align_label_ids(dsd["eval"], run.labels)
        features = run.task.preprocess(run, dsd["eval"], False)
        with tempfile.TemporaryDirectory(prefix="taskcli-eval-") as tmp:
            trainer = make_trainer(run, mdl, training_arguments(run, tmp, for_eval=True), None, features, dsd["eval"])
            set_seed(run.recipe.train.seed)  # as finetune's final eval: random eval-time masking agrees
            metrics = strip_prefix(trainer.evaluate())
        return {"task": run.task.name, "model": run.model_source if not (smoke and not model) else "tiny (untrained, --smoke)",
                "split": split or ("smoke sample" if smoke and not data else run.recipe.data.eval_split or "eval"),
                "samples": len(dsd["eval"]), "metrics": metrics}
    finally:
        run.close()


# ----------------------------------------------------------------------------- infer


def load_for_inference(task: str, model: str | None, recipe: str | None, sets: list[str] | None, smoke: bool):
    """(run, model) ready for predict; smoke without --model gives an untrained tiny model."""
    run = prepare(task, recipe, sets, smoke)
    quiet_libraries()
    import torch

    if smoke and not model:
        dsd = data_mod.load(run, None)
        run.labels = run.recipe.data.labels or run.task.labels(run, dsd)
        run.model_source = build_smoke_model(run, dsd)
        mdl = load_processor_and_model(run, run.labels)
    else:
        default = run.recipe.model.infer_default or run.recipe.model.checkpoint
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


def infer(
    task: str,
    inputs: list[str],
    model: str | None = None,
    recipe: str | None = None,
    sets: list[str] | None = None,
    smoke: bool = False,
    options: dict | None = None,
) -> tuple[Any, list[Any], list[dict]]:
    """(task, inputs as read, results in input order)."""
    options = dict(options or {})
    run, mdl = load_for_inference(task, model, recipe, sets, smoke)
    try:
        options.setdefault("batch_size", run.recipe.infer.batch_size)
        options.setdefault("top_k", run.recipe.infer.top_k)
        items = run.task.read_inputs(run, inputs, options)
        if not items:
            raise TaskcliError("no inputs given", "pass texts/files as arguments, or - to read stdin")
        results = run.task.predict(run, mdl, items, options)
        return run.task, items, results
    finally:
        run.close()
