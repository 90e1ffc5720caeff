"""The Trainer a run trains and evaluates with: the task's collator, metrics and callbacks, the exact cross-entropy
across processes, checkpoints restored the way from_pretrained reads them, and the metrics of the kept model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from taskcli.distributed import world_size
from taskcli.model_loading import model_forward_uses_loss_function
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taskcli.run import Run


def make_trainer(run: Run, model, args, train_features, eval_features, eval_examples, callbacks=(), weights=None):
    import functools

    from transformers import EarlyStoppingCallback, Seq2SeqTrainer, Trainer
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    cls = taskcli_trainer(Seq2SeqTrainer if run.seq2seq else Trainer)
    compute = run.task.metrics(run, eval_examples, eval_features) if eval_features is not None else None
    # Models that average their loss inline know nothing of other processes' label counts; for plain
    # cross-entropy tasks the engine does the averaging itself (see summed_cross_entropy). Class weights need
    # it too: the model's own loss has no weights.
    own_loss = run.task.cross_entropy_loss and not run.learned.model_loss and (
        weights is not None or not model_forward_uses_loss_function(model))
    # multi-label: always the engine's BCE, exact across processes too, with class weights as its pos_weight
    loss = functools.partial(summed_bce, pos_weight=weights) if run.learned.multi_label else \
        functools.partial(summed_cross_entropy, weights=weights) if own_loss else None
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
        compute_loss_func=loss,
    )
    for noisy in (PrinterCallback, ProgressCallback):  # taskcli prints its own progress and results
        trainer.pop_callback(noisy)
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
        return False  # LoRA (peft saves its adapter) or sharded checkpoints: the Trainer's own way
    saved = type(model).from_pretrained(str(folder), config=model.config)
    model.load_state_dict(saved.state_dict(), strict=True)
    return True


def taskcli_trainer(trainer_class):
    """The Trainer class, restoring checkpoints with load_converted where it applies, and gathering every
    evaluation's outputs across processes with _metrics_gather."""

    class TaskcliTrainer(trainer_class):
        def _sharded(self) -> bool:
            # FSDP2 keeps the model's class (as FSDP<Name>, still a PreTrainedModel) with its weights split across
            # processes: a whole state dict does not load into it (one process on an H200 failed so at the end of
            # a smoke run). FSDP's and DeepSpeed's own checkpoint loading is the Trainer's.
            return self.is_fsdp_enabled or self.is_deepspeed_enabled

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            if self._sharded() or not load_converted(model or self.model, resume_from_checkpoint):
                super()._load_from_checkpoint(resume_from_checkpoint, model)

        def _load_best_model(self):
            if self._sharded() or not load_converted(self.model, self.state.best_model_checkpoint):
                super()._load_best_model()

        def evaluation_loop(self, *args, **kwargs):
            # Set for each pass, as the Trainer replaces it: Seq2SeqTrainer.evaluate/predict with a plain
            # accelerator.gather, which keeps the rows accelerate repeats to give every process an equal last
            # batch (a two-process Whisper eval of 16 rows scored 32 hypotheses against 16 references; summaries
            # and translations scored some rows twice). It does so for num_return_sequences > 1, whose extra rows
            # gather_for_metrics would cut; evaluate() below asks for one sequence per row, as the metrics score.
            # evaluation_loop itself resets it to a gather_for_metrics without use_gather_object after each pass.
            self.gather_function = _metrics_gather(self.accelerator)
            return super().evaluation_loop(*args, **kwargs)

        def evaluate(self, *args, **kwargs):
            if getattr(self.args, "predict_with_generate", False):  # Seq2SeqTrainer: generate()'s settings
                kwargs = {"num_return_sequences": 1, **kwargs}  # one hypothesis per reference, as the metrics score
            return super().evaluate(*args, **kwargs)

    TaskcliTrainer.__name__ = trainer_class.__name__
    return TaskcliTrainer


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


def summed_bce(outputs, labels, num_items_in_batch=None, pos_weight=None):
    """Multi-label loss: binary cross-entropy of each label's logit against its 0/1 target (BCEWithLogitsLoss, with
    `pos_weight` per label), summed and divided by the targets of the whole global batch (the Trainer counts every
    target: none is -100), so it is the mean over targets and exact across processes, as summed_cross_entropy."""
    import torch
    import torch.nn.functional as F

    logits = (outputs["logits"] if isinstance(outputs, dict) else outputs[0]).float()
    labels = labels.to(logits.device, torch.float32)
    weight = torch.tensor(pos_weight, dtype=torch.float32, device=logits.device) if pos_weight is not None else None
    total = F.binary_cross_entropy_with_logits(logits, labels, pos_weight=weight, reduction="sum")
    return total / (num_items_in_batch if num_items_in_batch is not None else max(labels.numel(), 1))


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


def build_features(run: Run, ds, training: bool, log=None):
    """The task's preprocess hook, with its progress shown (rows/s, ETA) and, under DDP, done by the main process
    first: the others then read its result from datasets' cache instead of all computing it at once."""
    import contextlib

    from taskcli.counting import preprocessing

    first = contextlib.nullcontext()
    if world_size() > 1:
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

