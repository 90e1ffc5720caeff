"""The recipe's train section as the Trainer's TrainingArguments: precision, evaluation and saving, trackers, and
sharding (FSDP / DeepSpeed), each checked before Accelerate sees it."""

from __future__ import annotations

import json
from pathlib import Path

from taskcli.errors import TaskcliError, did_you_mean
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taskcli.run import Run


def training_arguments(run: Run, output_dir: str, for_eval: bool = False, sharding: dict | None = None):
    """TrainingArguments from the recipe; `sharding`: sharding_arguments' (finetune), which need the model."""
    import torch
    from transformers import Seq2SeqTrainingArguments, TrainingArguments

    t = run.recipe.train
    if t.precision == "fp16" and not torch.cuda.is_available():
        raise TaskcliError("fp16 needs a CUDA GPU and none is available", "use --set train.precision=bf16 or no")
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
        seed=run.seed,
        data_seed=run.seed,
        bf16=t.precision == "bf16",
        fp16=t.precision == "fp16",
        eval_strategy=t.eval_strategy,
        eval_steps=t.eval_steps,
        save_strategy=t.eval_strategy if has_eval else "epoch",
        save_steps=t.eval_steps or 500,
        # the best checkpoint and the last: with a limit of 1 the Trainer deletes the last one at the end (keeping
        # the best), and a later --resume that asks for more steps would train again from the best one's step
        save_total_limit=max(t.save_total_limit, 2) if has_eval and t.save_total_limit else t.save_total_limit,
        **best_model_settings(run, has_eval),
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
    else:
        kwargs.update(sharding or {})
    kwargs.update(trainer_args(t.trainer_args))
    if run.seq2seq:
        gen = run.recipe.infer.generation
        return Seq2SeqTrainingArguments(
            predict_with_generate=True,
            generation_max_length=gen.get("max_new_tokens"),
            generation_num_beams=gen.get("num_beams"),
            **kwargs,
        )
    return TrainingArguments(**kwargs)


def ddp_arguments(run: Run, model) -> dict:
    """DDP's find_unused_parameters from what the model really uses. The Trainer's default (True) makes every
    process warn and walk the autograd graph once more per step; it is needed only where a step can leave trainable
    weights without a gradient: by the task's design (Task.ddp_find_unused_parameters) or a config that skips
    layers at random (LayerDrop, on by default in wav2vec2-style speech checkpoints)."""
    declared = run.task.ddp_find_unused_parameters
    config = getattr(model, "config", None)
    drops = any((getattr(config, name, 0) or 0) > 0 for name in ("layerdrop", "encoder_layerdrop", "decoder_layerdrop"))
    return {"ddp_find_unused_parameters": bool(declared(run, model) if callable(declared) else declared) or drops}


def best_model_settings(run: Run, has_eval: bool) -> dict:
    """Which checkpoint the run keeps: the best by eval.metric_for_best_model, else the task's metric (a task can
    switch it for a run: text-classification on real-valued labels keeps the best Pearson)."""
    default_metric = run.learned.best_metric or run.task.best_metric
    direction = run.task.greater_is_better if run.learned.greater_is_better is None else run.learned.greater_is_better
    metric = run.recipe.eval.metric_for_best_model or default_metric
    return {"load_best_model_at_end": has_eval, "metric_for_best_model": metric if has_eval else None,
            "greater_is_better": direction if metric == default_metric else None}


def sharding_arguments(run: Run, model) -> tuple[dict, str | None]:
    """(TrainingArguments, the sharding in words for the run header) of train.fsdp / train.deepspeed, checked first: a wrap class the model lacks, a missing
    package or a machine without CUDA GPUs is one line here, not a traceback from deep inside Accelerate."""
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
        described = f"FSDP2 over {', '.join(wrap)} units" + (", CPU offload" if t.fsdp.cpu_offload else "")
        return {"fsdp": True, "fsdp_config": {
            "version": 2, "transformer_layer_cls_to_wrap": wrap, "reshard_after_forward": t.fsdp.reshard_after_forward,
            "cpu_offload": t.fsdp.cpu_offload, "activation_checkpointing": t.fsdp.activation_checkpointing,
            "state_dict_type": f"{t.fsdp.state_dict.upper()}_STATE_DICT"}}, described
    if t.deepspeed is not None:
        check_deepspeed(t.deepspeed)
        config = t.deepspeed
        if isinstance(config, int):  # the Trainer fills every "auto" from the recipe (batch, accumulation, precision)
            described = f"DeepSpeed ZeRO stage {config}"
            config = {"zero_optimization": {"stage": config}, "train_micro_batch_size_per_gpu": "auto",
                      "train_batch_size": "auto", "gradient_accumulation_steps": "auto", "gradient_clipping": "auto",
                      "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"}}
        else:
            described = f"DeepSpeed ({config})"
            config = str(Path(config).expanduser())
        return {"deepspeed": config}, described
    return {}, None


# TrainingArguments that recipe fields set (training_arguments): given again in trainer_args, the run would do one
# thing while recipe.yaml, the run header and the model card said another; output_dir would also take checkpoints
# out of the folder that --overwrite and --resume look after.
RECIPE_OWNS = {"output_dir": "train.output_dir (or -o)", "num_train_epochs": "train.epochs",
               "max_steps": "train.max_steps", "learning_rate": "train.learning_rate",
               "per_device_train_batch_size": "train.batch_size", "per_device_eval_batch_size": "eval.batch_size",
               "gradient_accumulation_steps": "train.gradient_accumulation_steps",
               "weight_decay": "train.weight_decay", "warmup_steps": "train.warmup_ratio",
               "warmup_ratio": "train.warmup_ratio", "lr_scheduler_type": "train.lr_scheduler", "seed": "train.seed",
               "data_seed": "train.seed", "bf16": "train.precision", "fp16": "train.precision",
               "eval_strategy": "train.eval_strategy", "eval_steps": "train.eval_steps",
               "save_total_limit": "train.save_total_limit", "logging_steps": "train.logging_steps",
               "report_to": "train.report_to", "dataloader_num_workers": "train.dataloader_num_workers",
               "metric_for_best_model": "eval.metric_for_best_model", "fsdp": "train.fsdp",
               "fsdp_config": "train.fsdp", "deepspeed": "train.deepspeed"}


def check_train_section(t) -> None:
    """What of the train section can be checked before the data and the model load: DeepSpeed's pieces and the names
    in train.trainer_args (a typo there failed only once the model had loaded)."""
    check_deepspeed(t.deepspeed)
    if t.trainer_args:
        from taskcli.run import quiet_libraries

        quiet_libraries()  # first: it decides offline mode before transformers (and huggingface_hub) load
        trainer_args(t.trainer_args)


def trainer_args(extra: dict) -> dict:
    """train.trainer_args as the Trainer takes them. A name a recipe field sets (RECIPE_OWNS) is one line naming the
    field, a name TrainingArguments lacks one line naming the closest; an unquoted `no` or `off`, which YAML reads as
    false, is the string "no" where the argument takes a string (`save_strategy: no` raised "False is not a valid
    SaveStrategy")."""
    import dataclasses
    import enum

    from transformers import Seq2SeqTrainingArguments

    fields = {f.name: f for f in dataclasses.fields(Seq2SeqTrainingArguments) if f.init}
    out = {}
    for key, value in extra.items():
        if key in RECIPE_OWNS:  # one place per setting: recipe.yaml, the header and the card show the field
            raise TaskcliError(f"train.trainer_args.{key}: the recipe's {RECIPE_OWNS[key]} sets it",
                               f"set {RECIPE_OWNS[key].split(' ')[0]} instead")
        if key not in fields:
            raise TaskcliError(f"train.trainer_args.{key}: TrainingArguments has no argument '{key}'"
                               f"{did_you_mean(key, fields)}", "see transformers' TrainingArguments for the names")
        takes_text = isinstance(fields[key].default, (str, enum.Enum))
        out[key] = "no" if value is False and takes_text else value
    return out


def check_deepspeed(config: int | str | None) -> None:
    """train.deepspeed's file, package and GPUs: checked before the data and the model load (sharding_arguments
    needs the model; these need nothing), so a missing piece is one line within the start-up, not after it."""
    if config is None:
        return
    import importlib.util

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
    import torch

    if not torch.cuda.is_available():
        raise TaskcliError("train.deepspeed needs CUDA GPUs, and this machine has none",
                           "drop train.deepspeed to train data-parallel on CPU (--num-processes N), or run on "
                           "a GPU machine")


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


def device_name(args) -> str:
    import torch

    if args.device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(args.device)})"
    return args.device.type

