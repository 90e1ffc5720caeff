"""The shape every task module fills in: a small object of hook functions.

A task module (``taskcli/tasks/<name>.py``) builds one ``Task`` and exposes it as ``TASK``.
Task modules must stay cheap to import (no torch/transformers/datasets at module level):
``taskcli tasks`` and ``--help`` import them all. Heavy imports go inside the hooks.

The engine calls the hooks in this order:

finetune/eval: load_processor -> labels -> load_model -> preprocess -> collator -> metrics
infer:         load_processor -> load_model -> steps(run, model) -> one loop in taskcli/inference.py -> (render)

Inference is typed steps (`Steps`): the task says how to read, encode, forward and decode one input; the loop in
taskcli/inference.py does the rest for every task (chunks, length-sorted batches, device and precision,
inference_mode, order, --skip-bad).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterable

from pydantic import BaseModel, ConfigDict, Field


class InferOptions(BaseModel):
    """The `infer` / `serve` options every task reads, validated once where the session starts
    (taskcli/inference.py). A task declares a subclass with the fields its steps read (`Task.infer_options`), as
    transformers' Pipeline._sanitize_parameters names its own: a flag given to a task whose model lacks it is
    refused, naming the tasks whose models have it. A field's flag is `--its-name` unless its `flag` says; a field
    with a `recipe` key takes that recipe setting when no flag gives it. Adding an infer flag = one field here or in
    a task's model, plus its typer option in cli.py."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(32, ge=1, json_schema_extra={"recipe": "infer.batch_size"})  # inputs per forward pass
    skip_bad: bool = False  # an input that cannot be used gets an error row instead of stopping the run
    column: str | None = None  # tables: the main input's column


class RankedOptions(InferOptions):
    """Tasks that rank labels (or fills): how many per input."""

    top_k: int = Field(1, ge=1, json_schema_extra={"recipe": "infer.top_k"})


def flag(name: str, info) -> str:
    """The command-line flag of option field `name` (its FieldInfo `info`)."""
    return (info.json_schema_extra or {}).get("flag") or "--" + name.replace("_", "-")

from taskcli import modality as modality_mod


class NoParams(BaseModel):
    """Recipe ``params:`` for a task that has no task-specific settings."""

    model_config = ConfigDict(extra="forbid")


def load_pretrained(run, source: str, labels: list[str] | None, **head):
    """`run.task.auto_model`.from_pretrained(source); with labels, a fresh head sized and named for them (`head`:
    more config settings for it, e.g. its problem_type)."""
    import transformers

    auto = getattr(transformers, run.task.auto_model)
    if labels is None:  # a trained model: keep its head and label names
        return auto.from_pretrained(source, **run.pretrained_kwargs())
    return auto.from_pretrained(
        source,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        ignore_mismatched_sizes=True,  # a checkpoint fine-tuned on other labels gets a new head
        **head,
        **run.pretrained_kwargs(),
    )


@dataclass
class EpochClock:
    """Where training augmentations draw from: `random.Random` seeded by (seed, epoch, row), so a row gets the same
    crop or flip in an epoch whether the run went straight through or was resumed mid-epoch (a resumed run's first
    batch is drawn before the Trainer restores the global `random` state). The engine sets `epoch` as each epoch
    begins; tasks pass the row number along with the row (see `rows_numbered`)."""

    seed: int = 0
    epoch: int = 0

    def rng(self, row: int):
        import random

        return random.Random(f"{self.seed}/{self.epoch}/{row}")  # str seeds hash the same in every process


ROW = "__row"  # the column `rows_numbered` adds


def rows_numbered(ds):
    """The dataset with each row's number in a ROW column, for EpochClock.rng(row)."""
    return ds.add_column(ROW, list(range(len(ds))))


@dataclass
class Learned:
    """What a task's hooks learn along a run, for its later hooks and the engine: typed fields, not string keys."""

    model_loss: bool = False  # keep the model's own loss (e.g. regression's MSE), not the engine's cross-entropy
    best_metric: str | None = None  # replaces the task's best_metric as the default eval.metric_for_best_model
    greater_is_better: bool | None = None  # ... and its direction
    regression: bool = False  # text-classification: one real number per input
    universal: bool = False  # image-segmentation: a universal (Mask2Former-style) model, mask-and-class outputs
    asr_kind: str | None = None  # automatic-speech-recognition: "seq2seq" (Whisper) or "ctc"
    ctc_chars: list[str] | None = None  # ... a CTC vocabulary's characters, found in the training transcripts
    multi_label: bool = False  # classification: any number of labels per row (sigmoid per label, BCE loss)
    label_layout: str | None = None  # ... how the data gave them, for the run header ("one 0/1 column per label")
    threshold: float | None = None  # ... the score a label needs, chosen on the eval split; saved in the model's config


@dataclass
class Context:
    """One infer run's settings, made once by the task's `setup` step before any input is read. Tasks subclass it
    with typed fields for what their later steps share (tokenizer, generation settings, where maps are saved...)."""

    run: Any
    model: Any
    options: InferOptions  # the task's typed options (flags over the recipe's defaults), validated once
    batch_size: int = 0  # most feature rows per forward pass (0: options.batch_size; audio caps it by length)
    # (limit, where it comes from) for tasks that cut long inputs: rows their decode marks "truncated" are counted
    # in one note at the end
    truncates: tuple[int, str] | None = None
    # the caller's display, not an option: where a task that can show text as it is made (text-generation, one
    # prompt) writes it, on_text(text, ended); None: nobody watches, results come back whole
    on_text: Callable[[str, bool], None] | None = None

    def __post_init__(self):
        self.batch_size = self.batch_size or self.options.batch_size


@dataclass
class Result:
    """One input's outcome as the loop hands it back: the task's fields (its JSON row after "input"), or a bad
    input's {"error": why}, and what is done beside printing them, as attributes, never keys of the row. `decode`
    returns one (or a plain dict of fields); the loop fills in `input` and `bad`."""

    fields: dict
    overlay: Any = None  # the --save-overlays picture (a Path) drawn for it: the JSON row names it last, "overlay"
    streamed: bool = False  # already shown through Context.on_text as it was made: a table does not print it again
    input: Any = None  # the input as read (a table's row carries its `table_id`)
    bad: bool = False  # an input --skip-bad set aside: `fields` is {"error": why}

    def json(self) -> dict:
        """The fields of its --json / --output / serve row after "input": a table's id first, the overlay last."""
        head = {"id": self.input.table_id} if hasattr(self.input, "table_id") else {}
        tail = {"overlay": str(self.overlay)} if self.overlay is not None else {}
        return {**head, **self.fields, **tail}

    def row(self) -> dict:
        """Its --json / --output row."""
        return {"input": self.input, **self.json()}


@dataclass
class Encoded:
    """One input, encoded: the model rows it needs and what `decode` needs to turn their outputs into its result.
    Tasks subclass it with typed fields (offsets, the decoded image, ...)."""

    features: list  # one model row (or several: windows of a long text or recording), as `collate` takes them
    lengths: list[int]  # per feature: tokens, samples... (batches are made of similar lengths)
    group: Hashable = None  # only inputs of one group share a batch (e.g. one image size, equal-length prompts)


def tensor_type(model) -> str:
    """The arrays a model takes and gives: "pt" (torch tensors), or "np" (numpy: onnx_lite's model, run without
    torch)."""
    return getattr(model, "tensor_type", "pt")


def pad_features(ctx: Context, features: list):
    """Default `collate`: the processor's own `pad` (tokenizer, feature extractor), as the model's tensor type."""
    return ctx.run.processor.pad(features, return_tensors=tensor_type(ctx.model))


def numpy_of(value):
    """A model output as a float32 numpy array on the CPU, whether torch or numpy (tensor_type "np") gave it."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.astype(np.float32, copy=False)
    return value.float().cpu().numpy()


def softmax(logits):
    """Softmax over the last axis in numpy, as the pipelines compute it: the same scores whichever runtime gave the
    logits (torch, or ONNX Runtime with or without torch)."""
    import numpy as np

    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def rows_of(output, n: int) -> list:
    """Default `forward` result: a model output split into its `n` rows (batch dimension kept, size 1), floating
    tensors in fp32 on the CPU whatever the model ran in, ready for the processors' post-processing."""
    import torch

    def row(value, j):
        if torch.is_tensor(value):
            value = value[j:j + 1].cpu()
            return value.float() if value.is_floating_point() else value
        return value

    return [type(output)(**{k: row(v, j) for k, v in output.items()}) for j in range(n)]


@dataclass(frozen=True)
class Steps:
    """A task's inference, in typed steps; taskcli/inference.py runs them for every task:

    setup -> read -> per chunk of inputs: parse each -> encode them -> collate batches -> forward -> decode each."""

    # (run, model, the task's InferOptions) -> the Context every other step gets
    setup: Callable[[Any, Any, Any], Context]
    # (ctx, input as read) -> what encode takes (a checked text, a decoded image or recording); raises
    # inputs.BadInput or one of `errors` for an input that cannot be used (an error row with --skip-bad)
    parse: Callable[[Any, Any], Any]
    # (ctx, parsed inputs of a chunk) -> one Encoded each, in order (tokenizers are fastest given many at once)
    encode: Callable[[Any, list], list[Encoded]]
    # (ctx, encoded input, one output per feature, in order) -> the input's JSON-able fields, or a Result with them
    decode: Callable[[Any, Any, list], dict | Result]
    # (ctx, batch from `collate`, moved to the model's device and dtype) -> one output per row, on the CPU
    forward: Callable[[Any, Any], list] = lambda ctx, batch: rows_of(ctx.model(**batch), len(next(iter(batch.values()))))
    # (ctx, features of one batch) -> dict of tensors for `forward`
    collate: Callable[[Any, list], Any] = pad_features
    # (ctx, CLI arguments) -> (where, input) pairs in order; None: lines of texts, or the modality's files
    read: Callable[[Any, list[str]], Iterable[tuple[str, Any]]] | None = None
    # exceptions `parse` raises for one unusable input, besides inputs.BadInput (e.g. images.BadImage)
    errors: tuple[type[Exception], ...] = ()
    # (ctx, the inputs as read, unusable ones left out) -> None: what is written per input (--save-maps,
    # --save-overlays) planned and checked before any is parsed; run on whatever the loop is given, CLI arguments
    # or (where, input) pairs alike
    plan: Callable[[Any, list], None] | None = None


@dataclass(frozen=True)
class Task:
    name: str  # Hub pipeline tag, e.g. "token-classification"
    aliases: tuple[str, ...]
    summary: str
    # declared by name ("text", "image", "audio"); the Task holds the object (taskcli/modality.py: its files, reader,
    # dataset folders, example input, infer chunk size)
    modality: modality_mod.Modality
    metric_names: tuple[str, ...]  # metric names reported by eval (shown in `taskcli tasks`)
    best_metric: str  # default `eval.metric_for_best_model`
    columns: dict[str, str]  # column role -> what it holds; recipes map roles to dataset columns
    sample: str  # bundled smoke dataset under taskcli/samples/ (file or folder)
    default_recipe: str  # recipe name under recipes/<task>/ used when --recipe is absent
    auto_model: str  # transformers Auto class used to load a checkpoint, e.g. "AutoModelForTokenClassification"

    # --- hooks; `run` is a taskcli.engine.Run (recipe, processor, labels, paths...) ---
    # (run) -> tokenizer / image processor / feature extractor / processor
    load_processor: Callable[[Any], Any]
    # (run, dataset: datasets.Dataset, training: bool) -> tokenized datasets.Dataset
    preprocess: Callable[[Any, Any, bool], Any]
    # (run) -> data collator
    collator: Callable[[Any], Any]
    # (run, examples: Dataset, features: Dataset) -> fn(EvalPrediction) -> dict of metrics
    metrics: Callable[[Any, Any, Any], Callable[[Any], dict]]
    # (input, result) -> rows for the human table: list of dicts column -> str
    render: Callable[[Any, dict], list[dict]]

    # (run, model) -> the task's inference Steps (a task may pick them by model, e.g. Whisper or CTC)
    steps: Callable[[Any, Any], Steps] = None  # type: ignore[assignment]  (every task sets it)
    # (run, model_source: str, labels: list[str] | None) -> PreTrainedModel; default: `auto_model`.from_pretrained
    load_model: Callable[[Any, str, Any], Any] = lambda run, source, labels: load_pretrained(run, source, labels)
    # (run, datasets.DatasetDict) -> ordered label names, or None for tasks without a label set
    labels: Callable[[Any, Any], list[str] | None] = lambda run, data: None
    # (recipe, local file or folder) -> DatasetDict of a file format of the task's own (token-classification: CoNLL
    # column files), or None to leave the path to the usual readers (data files, the modality's folders)
    read_data: Callable[[Any, Any], Any] | None = None
    # True when the texts are packed into blocks (language modelling): a blank row there is a paragraph break, which
    # the preflight keeps, not a bad row
    packs_text: bool = False
    optional_columns: tuple[str, ...] = ()  # roles in `columns` the data may lack
    # other Auto classes whose heads also serve this task (e.g. CTC next to seq2seq for speech recognition)
    alt_auto_models: tuple[str, ...] = ()
    # role -> common column names tried in order when the recipe's `data.columns` column is absent from the data
    column_aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # role -> the columns an infer table is read from, where the parse step reads another key first
    # (text-generation: {"text": ("prompt", "text")}); default: tables.TEXT_ROLES' usual names. Or (params) -> that
    # dict, where the columns depend on the recipe (translation: one named for params.source_lang); a (column, key)
    # pair reads a key of a nested record
    infer_columns: dict[str, tuple] | Callable[[Any], dict[str, tuple]] = field(default_factory=dict)
    # True when evaluation draws at random (fill-mask's masks): the final metrics then come from a seeded pass of their
    # own, as `taskcli eval` makes, instead of the training-time evaluation of the kept checkpoint
    random_eval: bool = False
    # False when eval features are not one per example (QA's windows of long contexts, packed language-model
    # blocks): the run report then has no worst-examples table
    features_per_example: bool = True
    # column role holding the class labels (classification: "label"; NER: "tags", a list per row): the carved eval
    # split is stratified by it where it holds one label per row, and train.class_weights counts it
    label_column: str | None = None
    # True when the label column may hold several labels per row (a list, a separated string, one 0/1 column per
    # label: taskcli/multilabel.py reads them into a list); the run is then multi-label (sigmoid, BCE)
    multi_label: bool = False
    params: type[BaseModel] = NoParams  # schema of the recipe's `params:` section
    # two inputs as a `serve` client sends them, for warming a compiled forward up, where the modality's plain texts
    # do not suit the task (QA's question and context, fill-mask's mask); empty: the modality's
    warm_up: tuple = ()
    seq2seq: bool = False  # generative: Seq2SeqTrainer + predict_with_generate when the model is encoder-decoder
    # True when the loss is plain cross-entropy of `logits` against `labels` (-100 = ignore) and the model
    # needs no labels to run its forward: the engine then computes it as a sum over the global label count,
    # so data-parallel and gradient-accumulated runs match single-process ones exactly.
    cross_entropy_loss: bool = False
    # True when a training step may leave trainable weights without a gradient (a head part some batches skip), or
    # (run, model) -> that, where it depends on the model: DDP must then look for them after every backward. False
    # (the default) spares that extra pass over the graph and the Trainer's default's warning per process. Models
    # that skip layers at random (LayerDrop) get the search whatever the task says (training_args.ddp_arguments)
    ddp_find_unused_parameters: bool | Callable[[Any, Any], bool] = False
    # True when preprocess leaves raw columns (e.g. image paths) for the collator to decode per batch: the Trainer
    # must then pass every column through instead of dropping those the model's forward does not name
    collator_reads_raw: bool = False
    # True when the metrics function is called per eval batch, fn(pred, compute_result), and keeps its own running
    # totals (e.g. a pixel confusion matrix): the Trainer then holds no logits/labels for the whole eval set
    batch_eval_metrics: bool = False
    greater_is_better: bool = True
    # (run, model) -> None, just before a fine-tuned model is saved: record in its config what `from_pretrained`
    # users need to run it (e.g. T5's task prefix)
    before_save: Callable[[Any, Any], None] = lambda run, model: None
    # zero-argument factories of TrainerCallbacks this task adds (e.g. perplexity from eval_loss)
    callbacks: tuple[Callable[[], Any], ...] = ()
    # the `infer` options this task reads (an InferOptions subclass; generating tasks share
    # taskcli.generation.GenerationOptions); any other flag given to it is refused, naming the tasks it is for
    infer_options: type[InferOptions] = InferOptions
    # True when the task's Steps also run a numpy model with a `tokenizers`-only tokenizer (taskcli/onnx_lite.py):
    # infer and serve then run an exported folder without importing torch or transformers
    numpy_steps: bool = False
    # (run) -> None: settings checked against the loaded model and processor before finetune shows or does any work
    # (e.g. a causal LM's block_size against its context), so a bad one is the only line on stderr
    check: Callable[[Any], None] = lambda run: None

    def __post_init__(self):
        object.__setattr__(self, "modality", modality_mod.get(self.modality))
