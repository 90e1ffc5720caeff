"""The recipe's schema: one pydantic model per section, their validators, and `schema_for` (a task's Recipe with
its own `params`). Unknown keys are refused (extra="forbid") so a misspelt key is an error, not a silent default.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, create_model, field_validator, model_serializer,
                      model_validator)
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from taskcli.errors import did_you_mean


# YAML 1.1 reads a bare `no` as False; accept it where "no" is a valid choice.
_NoIsFalse = BeforeValidator(lambda v: "no" if v is False else v)
# "fp32" is the same as "no" (no mixed precision): accepted because users type it.
_Fp32IsNo = BeforeValidator(lambda v: "no" if v is False or (isinstance(v, str) and v.lower() == "fp32") else v)
Precision = Annotated[Literal["no", "bf16", "fp16"], _Fp32IsNo]
Strategy = Annotated[Literal["epoch", "steps", "no"], _NoIsFalse]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ModelSection(_Strict):
    checkpoint: str = Field(description="hub id or local path of the checkpoint to fine-tune")
    type: str = Field(description="transformers model_type (distilbert, bert, ...); --smoke builds a tiny one")
    revision: str | None = None
    trust_remote_code: bool = False
    infer_default: str | None = Field(None, description="model `infer` uses when no --model is given")


class DataSection(_Strict):
    dataset: str | None = Field(None, description="hub dataset id, or a local file/directory")
    config: str | None = Field(None, description="hub dataset configuration name")
    revision: str | None = Field(None, description="hub dataset revision (branch, tag or commit), e.g. "
                                                    "refs/convert/parquet for the Hub's parquet export")
    data_dir: str | None = Field(None, description="folder inside the hub dataset repo to read (e.g. the config "
                                                    "folder of a parquet export)")
    train_split: str = "train"
    eval_split: str | None = "validation"
    test_split: str | None = "test"
    eval_fraction: float = Field(0.1, gt=0, lt=1, description="share of train carved off when there is no eval split")
    columns: dict[str, str] = Field(default_factory=dict, description="task column role -> dataset column")
    group_column: str | None = Field(None, description="finetune --folds: rows sharing a value of this column (one "
                                                       "document, speaker...) stay in the same fold")
    labels: list[str] | None = Field(None, description="label names in id order (default: from the data)")
    label_separator: str | None = Field(None, min_length=1, description="multi-label classification: the label "
                                        "column is one string of labels split by this (e.g. '|' for 'sports|politics')")
    label_columns: list[str] | None = Field(None, min_length=1, description="multi-label classification: one 0/1 "
                                            "column per label, named by the label (default: found when every column "
                                            "besides the inputs holds only 0/1)")
    max_length: int = Field(256, gt=0)
    max_train_samples: int | None = Field(None, gt=0)
    max_eval_samples: int | None = Field(None, gt=0)
    field: str | None = Field(None, description="JSON key that holds the records (e.g. 'data' for SQuAD files)")
    read_options: dict[str, Any] = Field(default_factory=dict, description="passed to the datasets file reader")
    num_proc: int | None = Field(None, gt=0, description="worker processes for preprocessing (tokenising, feature "
                                                        "extraction); default: one")
    streaming: bool = Field(False, description="read the training split as it is consumed (hub or local files, "
                                               "never loaded whole); needs train.max_steps")
    shuffle_buffer: int = Field(10_000, gt=0, description="data.streaming: rows held for shuffling the stream")
    skip_bad: bool = Field(False, description="drop rows with a blank label or text, or an image/audio file that will "
                                              "not open, and count them (default: stop at the first, naming it)")
    encoding: str | None = Field(None, description="text encoding of local CSV/TSV/JSON/TXT files (default UTF-8), "
                                                   "e.g. latin-1")


class LoraSection(_Strict):
    """LoRA adapters (peft) on the pretrained body; the task head (a fresh classifier, box or span head) stays
    fully trainable. The output dir gets the merged model, and the adapter alone in `adapter/`."""

    r: int = Field(8, gt=0, description="rank of the update matrices")
    alpha: int = Field(16, gt=0, description="scaling: updates are multiplied by alpha / r")
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | str | None = Field(
        None, description="module names to adapt (e.g. [query, value]); default: peft's choice for the "
                          "architecture, else every linear layer ('all-linear')")


class FsdpSection(_Strict):
    """Fully sharded data parallel (FSDP2, through Accelerate and the Trainer): each GPU holds a shard of the
    weights, gradients and optimizer state. Needs CUDA GPUs; launch with --num-processes / torchrun as usual."""

    wrap: list[str] | None = Field(None, description="layer classes sharded as one unit each (e.g. [BertLayer]); "
                                                     "default: the architecture's own (transformers' _no_split_modules)")
    reshard_after_forward: bool = Field(True, description="false: keep gathered weights from forward to backward "
                                                          "(ZeRO-2-like: faster, more memory)")
    cpu_offload: bool = Field(False, description="park weights and gradients in CPU memory between uses")
    activation_checkpointing: bool = Field(False, description="recompute activations in backward to save memory")
    state_dict: Literal["full", "sharded"] = Field("full", description="checkpoint format: one file (full) or one "
                                                                      "per process (sharded, faster for big models)")


def _switch(value):
    """A section that can be turned on with `true` (its defaults) and off with `false`/`null`."""
    if value is True:
        return {}
    if value is False:
        return None
    return value


def _deepspeed(value):
    """train.deepspeed: a ZeRO stage (0-3, or 'zero2' / 'stage3'...) or the path of a DeepSpeed JSON config."""
    if isinstance(value, str):
        digits = value.lower().removeprefix("zero").removeprefix("stage").strip("-_ ")
        if digits.isdigit():
            return int(digits)
        if not value.endswith(".json"):
            raise ValueError(f"'{value}' is neither a ZeRO stage (0-3) nor a DeepSpeed .json config file")
    elif value is False:
        return None
    elif isinstance(value, int) and value not in (0, 1, 2, 3):
        raise ValueError(f"ZeRO stage {value} does not exist: use 0, 1, 2 or 3 (or a .json config file)")
    return value


Tracker = Literal["tensorboard", "wandb", "mlflow"]


def _trackers(value):
    """report_to: 'none' / [] -> []; 'tensorboard' -> ['tensorboard']; 'tensorboard,wandb' -> both."""
    if value is None or value is False or value == "none":
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip() and v.strip() != "none"]
    return value


class TrainSection(_Strict):
    output_dir: str | None = Field(None, description="default: runs/<task>-<recipe>")
    epochs: float = Field(3.0, gt=0)
    max_steps: int = -1
    learning_rate: float = Field(5e-5, gt=0)
    batch_size: int = Field(16, gt=0, description="per device")
    gradient_accumulation_steps: int = Field(1, gt=0)
    weight_decay: float = 0.01
    warmup_ratio: float = Field(0.0, ge=0, le=1)
    lr_scheduler: str = "linear"
    seed: int = 42
    precision: Precision = "no"
    eval_strategy: Strategy = "epoch"
    eval_steps: int | None = Field(None, gt=0)
    save_total_limit: int | None = Field(2, gt=0)
    logging_steps: int = Field(10, gt=0)
    dataloader_num_workers: int = Field(0, ge=0)
    early_stopping_patience: int | None = Field(None, gt=0, description="stop after this many evaluations without "
                                                "a better eval.metric_for_best_model (the best model is kept)")
    early_stopping_threshold: float = Field(0.0, ge=0, description="how much better counts as better")
    class_weights: Literal["auto"] | dict[str, float] | None = Field(
        None, description="classification tasks: loss weight per label; auto = balanced by the training label "
                          "counts (n_rows / (n_classes * n_label))")
    lora: LoraSection | None = Field(None, description="train LoRA adapters instead of every weight (peft); {} for "
                                                       "the defaults")
    report_to: Annotated[list[Tracker], BeforeValidator(_trackers)] = Field(
        default_factory=list, description="experiment trackers: tensorboard, wandb, mlflow (optional extras)")
    fsdp: Annotated[FsdpSection | None, BeforeValidator(_switch)] = Field(
        None, description="shard the model across GPUs with FSDP; true for the defaults")
    deepspeed: Annotated[int | str | None, BeforeValidator(_deepspeed)] = Field(
        None, description="DeepSpeed ZeRO: a stage (0-3) or a DeepSpeed .json config file (needs CUDA GPUs and the "
                          "deepspeed extra)")
    trainer_args: dict[str, Any] = Field(default_factory=dict, description="extra TrainingArguments, passed as-is")

    @model_validator(mode="after")
    def _consistent(self):
        if self.fsdp is not None and self.deepspeed is not None:
            raise ValueError("fsdp and deepspeed both shard the model: set one of them")
        if self.early_stopping_patience and self.eval_strategy == "no":
            raise ValueError("early_stopping_patience needs evaluations to compare: set train.eval_strategy to "
                             "epoch or steps")
        return self


class EvalSection(_Strict):
    metric_for_best_model: str | None = Field(None, description="default: the task's main metric")
    batch_size: int = Field(32, gt=0)
    extra_metrics: list[str] = Field(default_factory=list, description="`evaluate` metric names or local script paths")
    gates: list[str] = Field(default_factory=list, description="quality gates on the final metrics, e.g. "
                             "['f1>=0.9', 'loss<=0.5']: a failed one makes the command exit 3")
    label_map: dict[str, str] = Field(default_factory=dict, description="data label -> model label, to evaluate a "
                                      "model that names the same classes differently (e.g. {neg: NEGATIVE})")


class InferSection(_Strict):
    batch_size: int = Field(32, gt=0)
    top_k: int = Field(1, gt=0)
    precision: Precision = Field("no", description="weights and activations at inference: no (fp32), bf16 or "
                                                   "fp16 (CUDA only); bf16 roughly halves CPU time where the CPU "
                                                   "has bf16 instructions, at bf16's ~3 significant digits")
    compile: bool = Field(False, description="torch.compile the PyTorch model's forward (single-forward tasks; needs "
                          "a C++ compiler): faster forwards after 15-30 s of compiling per process, so for long "
                          "runs and serve (taskcli/compiled.py)")
    generation: dict[str, Any] = Field(default_factory=dict, description="generate() settings for generative tasks")


class SmokeSection(_Strict):
    """What `--smoke` changes: a tiny model of `model.type` and the bundled sample in place of hub ids (local
    paths in the recipe are used as they are), and these overrides."""

    enabled: bool = Field(False, description="run as if --smoke were given (set in the recipe.yaml of a smoke run, "
                                             "so that re-running it repeats the smoke run)")
    config: dict[str, Any] = Field(default_factory=dict, description="overrides for the tiny model config")
    sample: str | None = Field(None, description="bundled sample under taskcli/samples/ (default: the task's)")
    max_samples: int = Field(64, gt=0, description="rows of --data used in smoke mode")
    train: dict[str, Any] = Field(default_factory=dict, description="`train:` overrides")
    data: dict[str, Any] = Field(default_factory=dict, description="`data:` overrides")
    params: dict[str, Any] = Field(default_factory=dict, description="`params:` overrides")
    infer: dict[str, Any] = Field(default_factory=dict, description="`infer:` overrides")


class SearchRange(_Strict):
    """One searched field of `taskcli tune`: exactly one of these, e.g. {log_uniform: [1e-5, 1e-3]}."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), serialize_by_alias=True)

    log_uniform: tuple[float, float] | None = Field(None, description="a float between the two, sampled on a log "
                                                                      "scale (learning rates)")
    uniform: tuple[float, float] | None = Field(None, description="a float between the two")
    integer: tuple[int, int] | None = Field(None, alias="int", description="an integer between the two, both "
                                                                           "included")
    choice: list[Any] | None = Field(None, min_length=1, description="one of these values")

    @model_serializer(mode="wrap")
    def _given_only(self, handler):
        return {k: v for k, v in handler(self).items() if v is not None}  # {log_uniform: [...]}, as it was written

    @model_validator(mode="after")
    def _one_range(self):
        given = [name for name in RANGE_KINDS if getattr(self, RANGE_KINDS[name]) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(RANGE_KINDS)} (got {', '.join(given) or 'none'})")
        low_high = self.log_uniform or self.uniform or self.integer
        if low_high and low_high[0] >= low_high[1]:
            raise ValueError(f"{given[0]}: the low end {low_high[0]} is not below the high end {low_high[1]}")
        if self.log_uniform and self.log_uniform[0] <= 0:
            raise ValueError("log_uniform: both ends must be above 0")
        return self


RANGE_KINDS = {"log_uniform": "log_uniform", "uniform": "uniform", "int": "integer", "choice": "choice"}


def _flat_space(space, prefix: str = ""):
    """tune.space keys are dotted field paths; nested groups ({train: {learning_rate: {...}}}, which is what
    `--set tune.space.train.learning_rate.log_uniform=[...]` writes) are flattened into them, a later key winning."""
    if not isinstance(space, dict):
        return space
    flat: dict = {}
    for key, value in space.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()) \
                and not set(value) & set(RANGE_KINDS):  # a group of fields, not a range
            flat.update(_flat_space(value, path + "."))
        else:
            flat.pop(path, None)  # re-inserted last: the later setting wins
            flat[path] = value
    return flat


class TuneSection(_Strict):
    """`taskcli tune`: the search space (recipe field path -> range) and what a trial is judged by."""

    space: Annotated[dict[str, SearchRange], BeforeValidator(_flat_space)] = Field(
        min_length=1, description="recipe field path -> range, e.g. train.learning_rate: {log_uniform: [1e-5, 1e-3]}")
    metric: str | None = Field(None, description="eval metric a trial is judged by (default: the run's "
                                                 "eval.metric_for_best_model, else the task's main metric)")
    direction: Literal["max", "min"] | None = Field(None, description="max or min (default: the task's own for its "
                                                                      "main metric; needed for another metric)")
    pruner: Literal["median", "hyperband", "none"] = Field("median", description="stops a trial whose evaluation "
                                                           "falls behind the others' at the same step")
    startup_trials: int = Field(2, ge=0, description="trials run to the end before the median pruner may stop one")
    sampler: Literal["tpe", "random"] = "tpe"
    seed: int | None = Field(None, description="the sampler's seed (default: train.seed)")


# Sections no trial can vary: what the command line and `tune` itself hold
_NOT_SEARCHED = ("task", "description", "tune", "cli", "provenance", "smoke")


def section_model(ann) -> type[BaseModel] | None:
    """The sub-model a field holds, also inside `Section | None` and Annotated[...] (e.g. train.lora, train.fsdp)."""
    import typing

    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    return next((m for m in map(section_model, typing.get_args(ann)) if m is not None), None)


def field_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted field path of a recipe model (train.learning_rate, train.lora.r, params.stride, ...)."""
    paths = []
    for name, field in model.model_fields.items():
        if not prefix and name in _NOT_SEARCHED:
            continue
        paths.append(prefix + name)
        section = section_model(field.annotation)
        if section is not None:
            paths += field_paths(section, f"{prefix}{name}.")
    return paths


class CliSection(_Strict):
    """--model and --data, kept as the command line gave them: they change what other fields mean (--smoke builds
    a tiny model unless --model names one; the recipe's hub options are not a local --data's). Set by the command,
    never by a recipe file; recipe.yaml folds them into model.checkpoint and data.dataset."""

    model: str | None = Field(None, description="--model: the checkpoint to start from (finetune, check) or to "
                                                "score (eval)")
    data: str | None = Field(None, description="--data: hub id, file or folder")


class Recipe(_Strict):
    task: str
    description: str = ""
    model: ModelSection
    data: DataSection = Field(default_factory=DataSection)
    train: TrainSection = Field(default_factory=TrainSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    infer: InferSection = Field(default_factory=InferSection)
    smoke: SmokeSection = Field(default_factory=SmokeSection)
    provenance: dict[str, Any] = Field(default_factory=dict, description="written by `taskcli finetune` into a run's "
                                       "recipe.yaml: what the run really used (model, data, --set, versions...); "
                                       "informational, ignored when the recipe is read")
    tune: TuneSection | None = Field(None, description="`taskcli tune`'s search (ignored by the other commands)")
    cli: CliSection = Field(default_factory=CliSection, exclude=True)  # not part of a dumped recipe
    # `params` (task-specific settings) is added per task by `schema_for`.

    @field_validator("tune", mode="wrap")
    @classmethod
    def _searched_fields_exist(cls, value, handler):
        """Each tune.space key names a field of this task's recipe (`cls`: schema_for's model, with its params),
        reported with the section's other errors."""
        try:
            tune, errors = handler(value), []
        except ValidationError as err:
            tune, errors = None, [InitErrorDetails(type=e["type"], loc=e["loc"], input=e["input"], ctx=e.get("ctx"))
                                  if "ctx" in e else InitErrorDetails(type=e["type"], loc=e["loc"], input=e["input"])
                                  for e in err.errors()]
            if not isinstance(value, dict):
                raise
        space = _flat_space(value.get("space")) if isinstance(value, dict) else None
        known = field_paths(cls) if isinstance(space, dict) else []
        for key in [k for k in space or {} if k not in known]:
            why = PydanticCustomError("unknown_field", "'{key}'{hint} is not a recipe field (write section.field, "
                                      "e.g. train.learning_rate)", {"key": key, "hint": did_you_mean(key, known)})
            errors.append(InitErrorDetails(type=why, loc=("space", key), input=space[key]))
        if errors:
            raise ValidationError.from_exception_data("tune", errors)
        return tune

    @model_validator(mode="after")
    def _streaming_needs_steps(self):
        if self.data.streaming and self.train.max_steps <= 0:
            raise ValueError("data.streaming needs train.max_steps: a stream has no length to count epochs in")
        return self


def schema_for(task) -> type[Recipe]:
    """The Recipe model of one task: the shared sections plus the task's own `params` model."""
    return create_model(
        f"Recipe_{task.name.replace('-', '_')}",
        __base__=Recipe,
        params=(task.params, Field(default_factory=task.params)),
    )
