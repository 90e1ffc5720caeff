"""Where a run's model comes from and how it loads: --model or the recipe's checkpoint, --smoke's tiny model,
the task-head check (no random head is ever scored), and the model made ready for inference (device, precision).
"""

from __future__ import annotations

import os
from pathlib import Path

from taskcli import data as data_mod
from taskcli import registry
from taskcli.errors import TaskcliError
from taskcli.onnx_runtime import is_exported
from taskcli.run import Run, prepare, quiet_libraries, uses_tiny_model


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
    from taskcli.distributed import files_from_main, group_started, is_main

    folder = run.temp_dir("taskcli-smoke-")
    # Once a process group exists (tune's trials under torchrun), save_pretrained writes the weights on process 0
    # only: it builds the model and every other process gets a copy of its files.
    shared = group_started()
    if is_main() or not shared:
        if dsd is None:
            dsd = data_mod.load(run, None)
        tiny.build(run.recipe.model.type, Path(folder), smoke_texts(dsd), run.recipe.smoke.config, run.seed)
    if shared:
        files_from_main(folder)
    return folder


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
        if is_exported(run.model_source):
            if labels is not None:  # finetune, check: the graph has no gradients
                raise TaskcliError(f"{run.model_source} is an exported (ONNX) model, which does not train",
                                   "pass the model it was exported from (its taskcli-export.json names it)")
            from taskcli import onnx_model  # a `taskcli export` folder: ONNX Runtime runs the forward

            model = onnx_model.load(run.model_source)
        else:
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
    """Does the model's forward call `self.loss_function`? Read from its bytecode's names, nested code included (the
    source text said the same for all 1,079 head classes of transformers 5.25's Auto mappings; reading the source
    tokenized a whole modeling file: 0.064 s of a one-line infer under cProfile)."""
    import inspect
    import types

    def names(code) -> set[str]:
        return set(code.co_names).union(*(names(c) for c in code.co_consts if isinstance(c, types.CodeType)))

    code = getattr(inspect.unwrap(type(model).forward), "__code__", None)
    return code is not None and "loss_function" in names(code)


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


def load_for_inference(task: str, model: str | None, recipe: str | None, sets: list[str] | None, smoke: bool,
                       run: Run | None = None):
    """(run, model) ready for predict; smoke without --model gives an untrained tiny model. `run`: the one
    `prepare` already made for these arguments."""
    run = run or prepare(task, recipe, sets, smoke)
    if run.recipe.infer.compile:
        from taskcli import compiled

        compiled.check(run, model)
    from taskcli import onnx_lite

    lite = onnx_lite.load(run, model)  # an exported text model, without torch or transformers (issue 20's start-up)
    if lite is not None:
        return run, lite
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
    """Cast for `infer.precision`; bf16 on CPU also takes the bf16-friendly attention path (see attention.py).
    `infer.compile` compiles the forward (compiled.py)."""
    cast_for_inference(mdl, run.recipe.infer.precision, run.recipe.infer.compile)


def cast_for_inference(mdl, precision: str, compile_forward: bool = False) -> None:
    """`mdl` in bf16 or fp16, as infer runs it (also benchmark's torch rows); fp32 on CPU: its large linear layers
    through oneDNN. A compiled forward keeps torch's own layers and attention: inductor packs and fuses them itself."""
    import torch

    if precision in ("no", "fp32"):
        if mdl.device.type == "cpu" and not compile_forward:
            from taskcli import cpu_linear

            cpu_linear.use_for(mdl)  # oneDNN's fused-bias kernel for the large layers (~1.2x a forward: cpu_linear.py)
    else:
        if precision == "fp16" and mdl.device.type != "cuda":
            raise TaskcliError("fp16 inference needs a CUDA GPU and none is available", "use --precision bf16 or no")
        mdl.to(torch.bfloat16 if precision == "bf16" else torch.float16)
        if mdl.device.type == "cpu" and not compile_forward:
            from taskcli import attention

            attention.use_for(mdl)
    if compile_forward:
        from taskcli import compiled

        compiled.compile_model(mdl)
