"""Recipes: YAML files validated by pydantic, with `--set` overrides and readable errors.

A recipe names the architecture, checkpoint, data and training settings for one task. Shipped recipes live
in ``recipes/<task>/<name>.yaml`` at the top of the repository, installed as the package ``taskcli.recipes``.
Validation reports every problem at once, each with its dotted path, file and line, and a "did you mean" for
misspelt keys.
"""

from __future__ import annotations

import copy
import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model, model_validator

from taskcli.errors import TaskcliError, did_you_mean


def _recipes_dir() -> Path:
    """The shipped recipes' folder: the repository's recipes/, which pyproject.toml installs as the data package
    taskcli.recipes, so a wheel, an editable install and a strict editable install all resolve it by import."""
    try:
        return Path(importlib.resources.files("taskcli.recipes"))
    except ModuleNotFoundError:
        # a checkout run without installing (PYTHONPATH=.), or an editable install made before recipes/ moved
        return Path(__file__).resolve().parent.parent / "recipes"


RECIPES_DIR = _recipes_dir()


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
    labels: list[str] | None = Field(None, description="label names in id order (default: from the data)")
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
    cli: CliSection = Field(default_factory=CliSection, exclude=True)  # not part of a dumped recipe
    # `params` (task-specific settings) is added per task by `schema_for`.

    @model_validator(mode="after")
    def _streaming_needs_steps(self):
        if self.data.streaming and self.train.max_steps <= 0:
            raise ValueError("data.streaming needs train.max_steps: a stream has no length to count epochs in")
        return self


@dataclass
class Resolved:
    """A validated recipe plus where it came from."""

    recipe: Any  # an instance of schema_for(task)
    name: str  # e.g. "token-classification/distilbert", or the file path for user recipes
    path: Path
    raw: dict  # the dict that was validated (after --set and smoke merges)
    smoke: bool


def schema_for(task) -> type[Recipe]:
    return create_model(
        f"Recipe_{task.name.replace('-', '_')}",
        __base__=Recipe,
        params=(task.params, Field(default_factory=task.params)),
    )


# ----------------------------------------------------------------------------- finding recipes


def shipped() -> list[Path]:
    """Every recipe shipped with the package, found recursively."""
    return sorted(RECIPES_DIR.rglob("*.yaml"))


def shipped_name(path: Path) -> str:
    return path.relative_to(RECIPES_DIR).with_suffix("").as_posix()


def find(task, recipe: str | None) -> Path:
    """Path of the recipe named by --recipe (name, task-relative name, or file), or the task default."""
    if recipe is None:
        recipe = task.default_recipe
    as_path = Path(recipe).expanduser()
    if as_path.suffix in (".yaml", ".yml") or as_path.exists():
        if not as_path.is_file():
            raise TaskcliError(f"recipe file not found: {recipe}", "check the path, or `taskcli recipes list`")
        return as_path
    for candidate in (RECIPES_DIR / task.name / f"{recipe}.yaml", RECIPES_DIR / f"{recipe}.yaml"):
        if candidate.is_file():
            return candidate
    known = [shipped_name(p) for p in shipped()]
    near = did_you_mean(f"{task.name}/{recipe}", known) or did_you_mean(recipe, known)
    raise TaskcliError(
        f"unknown recipe '{recipe}' for {task.name}{near}",
        f"`taskcli recipes list {task.name}` lists them; or pass a .yaml path",
    )


# ----------------------------------------------------------------------------- loading


def read_yaml(path: Path) -> tuple[dict, yaml.Node | None]:
    """The recipe as a dict, plus its YAML node tree (for line numbers in errors)."""
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise TaskcliError(f"malformed YAML in {where}: {problem}", "fix the YAML syntax") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TaskcliError(f"recipe {path} must be a mapping of sections, got {type(data).__name__}")
    return data, node


def _yaml_value(text: str) -> Any:
    """A command-line value typed as YAML (2 -> int, {a: 1} -> dict); text that is not YAML stays text."""
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def parse_set(item: str) -> tuple[list[str], Any]:
    """'train.epochs=3' -> (['train', 'epochs'], 3). Values are parsed as YAML, so types come out right."""
    key, sep, value = item.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(p.strip() for p in parts):
        raise TaskcliError(f"bad --set '{item}'", "use --set section.key=value, e.g. --set train.epochs=2")
    return [p.strip() for p in parts], _yaml_value(value)


@dataclass(frozen=True)
class Flag:
    """A command-line value for one recipe field. Flags are written into the recipe's dict before it is validated,
    so a bad value is reported with the file's errors, named by `source` (`--set train.epochs=x`, `--early-stopping
    0`)."""

    path: tuple[str, ...]
    value: Any
    source: str
    how: Literal["set", "default", "extend"] = "set"  # default: only where the recipe leaves the field unset (--lora);
    # extend: added to the recipe's list unless there already (--gate)


def set_flags(items: list[str]) -> list[Flag]:
    """--set items as flags."""
    return [Flag(tuple(parts), value, f"--set {item}") for item in items for parts, value in [parse_set(item)]]


def command_flags(*, model: str | None = None, data: str | None = None, output_dir: str | None = None,
                  lora: bool = False, gates: list[str] = (), early_stopping: int | None = None,
                  class_weights: str | None = None, report_to: str | None = None) -> list[Flag]:
    """The options that stand for a recipe field, in one table: each is merged and checked as its --set would be."""
    flags = [
        Flag(("cli", "model"), model, f"--model {model}"),
        Flag(("cli", "data"), data, f"--data {data}"),
        Flag(("train", "output_dir"), output_dir, f"--output-dir {output_dir}"),
        Flag(("train", "early_stopping_patience"), early_stopping, f"--early-stopping {early_stopping}"),
        # typed as YAML, as in --set: --class-weights '{pos: 2, neg: 1}' is a mapping
        Flag(("train", "class_weights"), None if class_weights is None else _yaml_value(class_weights),
             f"--class-weights {class_weights}"),
        Flag(("train", "report_to"), report_to, f"--report-to {report_to}"),
        Flag(("train", "lora"), {} if lora else None, "--lora", how="default"),  # peft's defaults
        *(Flag(("eval", "gates"), gate, f"--gate {gate}", how="extend") for gate in gates),
    ]
    return [f for f in flags if f.value is not None]


def apply_flags(data: dict, flags: list[Flag]) -> tuple[dict, list[tuple[tuple, str]]]:
    """`data` with the flags written in (later ones win), and (field, source) for each field a flag wrote."""
    data = copy.deepcopy(data)
    written: list[tuple[tuple, str]] = []
    for flag in flags:
        node = data
        for part in flag.path[:-1]:
            if not isinstance(node.get(part), dict):
                if part in node and node[part] is not None:
                    raise TaskcliError(f"bad {flag.source}: '{part}' is not a section")
                node[part] = {}
            node = node[part]
        key = flag.path[-1]
        if flag.how == "default" and node.get(key) is not None:
            continue
        if flag.how == "extend":
            if node.get(key) is None:
                node[key] = []
            have = node[key]
            if not isinstance(have, list):  # the file's own error is reported when it is validated
                continue
            if flag.value not in have:
                have.append(copy.deepcopy(flag.value))
            written.append(((*flag.path, have.index(flag.value)), flag.source))
            continue
        node[key] = copy.deepcopy(flag.value)
        written.append((flag.path, flag.source))
    return data, written


def merge(base: dict, over: dict) -> dict:
    """Deep merge (over wins); used for smoke overrides."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


SMOKE_SECTIONS = ("train", "data", "params", "infer")  # the sections a recipe's smoke: block overrides


def smoke_overrides(data: dict) -> dict:
    """The recipe's smoke: block, the sections it overrides only."""
    smoke = data.get("smoke") or {}
    if not isinstance(smoke, dict):
        return {}
    return {k: smoke[k] for k in SMOKE_SECTIONS if isinstance(smoke.get(k), dict)}


def smoke_merged(data: dict) -> dict:
    return merge(data, smoke_overrides(data))


def _line_of(node: yaml.Node | None, loc: tuple) -> int | None:
    """Line (1-based) of the deepest YAML node found along `loc`."""
    line = None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == str(key)), None)
            key_node = next((k for k, v in node.value if k.value == str(key)), None)
            if match is None:
                break
            line = (key_node or match).start_mark.line + 1
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _holds(data: Any, loc: tuple) -> bool:
    """Whether the dict `data` has a value at `loc`."""
    for key in loc:
        if isinstance(data, dict) and key in data:
            data = data[key]
        elif isinstance(data, list) and isinstance(key, int) and key < len(data):
            data = data[key]
        else:
            return False
    return True


def _section_model(ann) -> type[BaseModel] | None:
    """The sub-model a field holds, also inside `Section | None` and Annotated[...] (e.g. train.lora, train.fsdp)."""
    import typing

    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    return next((m for m in map(_section_model, typing.get_args(ann)) if m is not None), None)


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the sub-model reached by `loc` (for "did you mean")."""
    for key in loc:
        field = model.model_fields.get(str(key))
        section = _section_model(getattr(field, "annotation", None))
        if section is None:
            return []
        model = section
    return list(model.model_fields)


def _written_by(loc: tuple, written: list[tuple[tuple, str]]) -> int | None:
    """Index in `written` of the last flag that wrote `loc` (or a section above or below it): its error is the
    command line's."""
    for i in range(len(written) - 1, -1, -1):
        parts = written[i][0]
        n = min(len(parts), len(loc))
        if tuple(str(p) for p in loc[:n]) == tuple(str(p) for p in parts[:n]):
            return i
    return None


def format_errors(err: ValidationError, schema: type[BaseModel], path: Path, node,
                  written: list[tuple[tuple, str]] = (), smoke_over: dict | None = None) -> list[str]:
    """One entry per error, in the file's line order (pydantic reports them in schema order), each followed by the
    line it names; then errors without a line, then those of flags (in their order). `smoke_over`: the smoke:
    overrides that were merged in; an error in a field they set is named by its line under `smoke:`."""
    try:
        source = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        source = []
    found = []
    for e in err.errors():
        loc = tuple(e["loc"])
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        by = _written_by(loc, list(written))
        in_smoke = by is None and smoke_over is not None and _holds(smoke_over, loc)
        line = (_line_of(node, ("smoke", *loc)) if in_smoke else None) or _line_of(node, loc)
        where = written[by][1] if by is not None else f"{path}:{line}" if line else str(path)
        if e["type"] == "extra_forbidden":
            msg = f"unknown key '{dotted}'{did_you_mean(loc[-1], _fields_at(schema, loc[:-1]))}"
        elif e["type"] == "missing":
            msg = f"missing required key '{dotted}'"
        else:  # a section's own check (e.g. train: fsdp with deepspeed) quotes no whole section back
            got = "" if isinstance(e.get("input"), dict) else f" (got {e.get('input')!r})"
            msg = f"'{dotted}': {e['msg'].removeprefix('Value error, ')}{got}"
        text = f"{where}: {msg}{' (in smoke overrides)' if in_smoke else ''}"
        if by is None and line and line <= len(source):
            text += f"\n    | {source[line - 1].rstrip()}"
        order = (2, by) if by is not None else (0, line) if line else (1, 0)
        found.append((order, text))
    return [text for _, text in sorted(found, key=lambda f: f[0])]  # stable: one line's errors keep their order


def _check_task(task, data: dict, path: Path) -> None:
    named = str(data.get("task", ""))
    if named and named not in (task.name, *task.aliases):
        raise TaskcliError(f"{path}: recipe is for task '{named}', not '{task.name}'",
                           f"run `taskcli finetune {named} --recipe {path}`, or pick a {task.name} recipe")


def _file_errors(data: dict, path: Path, node) -> list[str]:
    """What pydantic cannot say about a file: `cli:` is the command line's, never a recipe's."""
    if "cli" not in data:
        return []
    line = _line_of(node, ("cli",))
    return [f"{path}:{line}: 'cli' holds --model and --data as a command gave them, not a recipe key: use "
            f"model.checkpoint and data.dataset"]


def _raise(errors: list[str]) -> None:
    if errors:
        raise TaskcliError(
            f"invalid recipe ({len(errors)} error{'s' * (len(errors) > 1)}):\n  " + "\n  ".join(errors), None)


def _validated(schema, data: dict, path: Path, node, errors: list[str], written=(), smoke_over=None):
    """One pydantic validation; its errors are added to `errors` (the model is None then)."""
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        errors += format_errors(err, schema, path, node, written, smoke_over)
        return None


def validate(task, data: dict, path: Path, node=None) -> Any:
    """`recipes validate`: a recipe file, and its smoke-merged form; all errors at once."""
    _check_task(task, data, path)
    schema = schema_for(task)
    errors = _file_errors(data, path, node)
    recipe = _validated(schema, data, path, node, errors)
    if not errors:
        _validated(schema, smoke_merged(data), path, node, errors, smoke_over=smoke_overrides(data))
    _raise(errors)
    return recipe


def resolve(task, recipe: str | None = None, sets: list[str] | None = None, smoke: bool = False,
            flags: list[Flag] | None = None) -> Resolved:
    """Find and read a recipe, write the command line into it (`flags`, then --set: the last word wins; with
    --smoke the smoke overrides go under them), and validate it once, reporting every error at once."""
    path = find(task, recipe)
    data, node = read_yaml(path)
    shipped_recipe = path.resolve().is_relative_to(RECIPES_DIR.resolve())
    if not shipped_recipe:
        data = rebase_paths(data, path.parent)
    _check_task(task, data, path)
    errors = _file_errors(data, path, node)
    flags = [*(flags or []), *set_flags(sets or [])]
    final, written = apply_flags(data, flags)
    smoke = smoke or bool((final.get("smoke") or {}).get("enabled"))  # a smoke run's saved recipe.yaml
    smoke_over = smoke_overrides(final) if smoke else None
    if smoke:
        final, written = apply_flags(smoke_merged(final), flags)
    schema = schema_for(task)
    parsed = _validated(schema, final, path, node, errors, written, smoke_over)
    _raise(errors)
    name = shipped_name(path) if shipped_recipe else str(path)
    return Resolved(recipe=parsed, name=name, path=path, raw=final, smoke=smoke)


# recipe fields that may hold a local path: a relative one means "next to the recipe file"
PATH_FIELDS = (("data", "dataset"), ("model", "checkpoint"), ("model", "infer_default"))


def rebase_paths(data: dict, folder: Path) -> dict:
    """Relative local paths in a recipe file -> paths from the recipe's folder, so a recipe works from any working
    directory. A value is rebased when it names something that exists there, or is written as a path (./x, ../x,
    x.csv); hub ids (org/name) stay as they are. --set values are the command line's: relative to the cwd."""
    from taskcli.data import looks_like_path

    data = copy.deepcopy(data)
    for section, key in PATH_FIELDS:
        value = (data.get(section) or {}).get(key) if isinstance(data.get(section), dict) else None
        if not isinstance(value, str) or not value or Path(value).expanduser().is_absolute() or value.startswith("~"):
            continue
        candidate = folder / value
        if candidate.exists() or (section == "data" and looks_like_path(value)) or value.startswith((".", "..")):
            data[section][key] = str(candidate.resolve())
    return data


def validate_file(path: Path) -> tuple[str, Any]:
    """`taskcli recipes validate PATH`: finds the task from the file itself."""
    from taskcli import registry

    if not path.is_file():
        raise TaskcliError(f"recipe file not found: {path}")
    data, node = read_yaml(path)
    if "task" not in data:
        raise TaskcliError(f"{path}: missing required key 'task'", f"one of: {', '.join(registry.names())}")
    task = registry.get(str(data["task"]))
    return task.name, validate(task, data, path, node)
