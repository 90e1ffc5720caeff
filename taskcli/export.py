"""`taskcli export`: a fine-tuned model to ONNX (fp32, and int8 with --quantize int8), checked by a parity gate.

The exporter is torch.onnx.export with dynamo=True (torch.export), every axis Dim.AUTO: the axes that vary (batch,
sequence, an image's padded size) stay symbolic, the ones the model fixes stay fixed. TorchScript export
(dynamo=False) is deprecated since torch 2.9; transformers 5's own `transformers.exporters.OnnxExporter` wraps the
same torch.onnx.export in patches, is marked experimental and warns of version drift here (see README: Export). A
decoder-only generating model is the exception: its KV-cache graphs come from that exporter (onnx_generate.py).

The gate: the exported model and the PyTorch one are scored on the same rows by the same Trainer evaluation as
`taskcli eval` (the recipe's eval split, --data, or with --smoke the bundled sample); a metric that moves by more
than --tolerance is one line and exit 3, as a failed --gate. The largest output difference is reported too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

from taskcli import registry
from taskcli.errors import TaskcliError
from taskcli.onnx_model import forward_facts
from taskcli.onnx_runtime import MANIFEST, ONNX_EXTRA, manifest

DEFAULT_TOLERANCE = 0.005  # absolute on F1/accuracy-like metrics (0..1), relative on metrics above 1
NOT_SCORES = {"loss"}  # the exported graph has no loss for most tasks (the Trainer then reads NaN)
# Why encoder-decoders do not export yet: transformers.exporters' export_for_generation traces their decoder steps only
# (the encoder, which generate() runs first, stays PyTorch) and fixes the decoder's first step at one token, so
# neither a torch-free generate() nor eval's teacher-forced scoring would run on the graphs.
ENCODER_DECODER = ("transformers.exporters traces an encoder-decoder's decoder steps but not its encoder, which "
                   "generate() runs first; taskcli exports decoder-only generating models (text-generation) so far")


def require_packages() -> None:
    """The [onnx] extra, named in one line when a package of it is missing."""
    missing = [name for name in ("onnx", "onnxruntime", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise TaskcliError(f"export needs {', '.join(missing)}, not installed", ONNX_EXTRA)


def check_exportable(task, model: str, revision: str | None = None) -> None:
    """Encoder-decoder generating models (summarization, translation, Whisper) are refused in one line, before
    anything loads (a hub model's config.json alone is fetched). Decoder-only ones (text-generation) export with their
    KV cache (onnx_generate.py)."""
    from taskcli.generation import GenerationOptions

    if not issubclass(task.infer_options, GenerationOptions):
        return  # (DETR's config says is_encoder_decoder too, and predicts in one pass)
    # summarization and translation load Seq2SeqLM classes only; speech recognition's Whisper says so in its config
    if task.seq2seq and not task.alt_auto_models or _config_json(model, revision).get("is_encoder_decoder"):
        raise encoder_decoder_refused(model, "export a CTC speech model (wav2vec2, HuBERT) instead"
                                      if task.alt_auto_models else None)
    if importlib.util.find_spec("transformers.exporters") is None:
        raise TaskcliError(f"exporting a generating model needs transformers.exporters, which this transformers "
                           f"{_version('transformers')} lacks", "pip install -U 'transformers>=5.24'")


def encoder_decoder_refused(model: str, hint: str | None = None) -> TaskcliError:
    return TaskcliError(f"{model} is an encoder-decoder model, which does not export yet: {ENCODER_DECODER}",
                        hint or "export a decoder-only text-generation model or a single-pass task's model (taskcli "
                        "tasks lists them)")


def _config_json(model: str, revision: str | None) -> dict:
    """The model's config.json, a folder's or a hub id's; {} when it cannot be read (loading then says why)."""
    config = Path(model, "config.json")
    try:
        if not config.is_file():
            from huggingface_hub import hf_hub_download

            config = Path(hf_hub_download(model, "config.json", revision=revision))
        return json.loads(config.read_text())
    except Exception:  # noqa: BLE001 - a missing or unreadable config is the model loader's to report
        return {}


def output_folder(model: str, out: str | None) -> Path:
    """OUT, default MODEL-onnx (a hub id's NAME-onnx here); never a folder holding something already (nothing a user
    made is overwritten)."""
    local = Path(model).is_dir()
    folder = Path(out) if out else Path((str(Path(model)).rstrip("/") if local else model.split("/")[-1]) + "-onnx")
    if folder.is_file() or (folder.is_dir() and any(folder.iterdir())):
        raise TaskcliError(f"output folder {folder} is not empty", "choose a new folder with -o")
    return folder


def export(task: str, model: str | None, out: str | None = None, quantize: str | None = None,
           tolerance: float = DEFAULT_TOLERANCE, recipe: str | None = None, data: str | None = None,
           sets: list[str] | None = None, smoke: bool = False, loaded: dict | None = None) -> dict:
    """Export `model` (a folder or hub id; None: the recipe's default model) to OUT and score it against the PyTorch
    model; `parity_failed` lists the moved metrics. `loaded`: see _export."""
    from taskcli.model_loading import resolve_model_source

    require_packages()
    task_obj = registry.get(task)
    if quantize not in (None, "int8"):
        raise TaskcliError(f"unknown --quantize {quantize!r}", "use --quantize int8")
    run = prepare_scoring(task, model, recipe, data, sets, smoke)
    try:
        # a missing folder, or a path that is no hub id, is one line before anything loads
        source = resolve_model_source(run, model, run.recipe.model.infer_default or run.recipe.model.checkpoint)
        check_exportable(task_obj, source, run.recipe.model.revision if source == run.recipe.model.checkpoint
                         else None)
        folder = output_folder(source, out)
        return _export(run, source, data, folder, quantize, tolerance, loaded)
    finally:
        run.close()


def prepare_scoring(task: str, model: str | None, recipe: str | None, data: str | None, sets: list[str] | None,
                    smoke: bool):
    """The Run that scores `model` (export's gate, benchmark's rows): the model's own recipe (its eval split,
    max_length, labels) unless --recipe says otherwise. The caller closes it."""
    from taskcli.recipe import command_flags
    from taskcli.run import prepare, quiet_libraries

    if recipe is None and model and Path(model, "recipe.yaml").is_file():
        recipe = str(Path(model, "recipe.yaml"))
    run = prepare(task, recipe, sets, smoke, command_flags(model=model, data=data))
    quiet_libraries()
    return run


def _export(run, model: str, data: str | None, folder: Path, quantize: str | None, tolerance: float,
            loaded: dict | None = None) -> dict:
    """Export and score; `loaded` (benchmark) receives each format's loaded model, every eval batch and the seconds
    each model took to load (with its tokenizer/processor for torch)."""
    from taskcli import onnx_model
    from taskcli.evaluate import load_eval_data, load_scored_model
    from taskcli.trainer import build_features, make_trainer, strip_prefix
    from taskcli.training_args import training_arguments

    dsd = load_eval_data(run, data, None)
    started = time.perf_counter()
    _, mdl = load_scored_model(run, model, dsd)
    load_seconds = {"torch": time.perf_counter() - started}
    if run.seq2seq:  # (an encoder-decoder config was refused above; a config that hides it is caught here)
        raise encoder_decoder_refused(model)
    mdl.eval()
    features = build_features(run, dsd["eval"], False)
    with tempfile.TemporaryDirectory(prefix="taskcli-export-") as tmp:
        args = training_arguments(run, tmp, for_eval=True)
        trainer = make_trainer(run, mdl, args, None, features, dsd["eval"])
        # every eval batch for benchmark's timings; 8 for the output comparison
        every = [model_inputs(b, trainer.label_names) for b in
                 itertools.islice(trainer.get_eval_dataloader(), None if loaded is not None else 8)]
        batches = every[:8]
        run.reseed()  # random eval-time masking (fill-mask) draws the same masks for each model
        scores = {"torch": strip_prefix(trainer.evaluate())}
        files, seconds = _write_exports(run, mdl, model, folder, batches[0], quantize)
        diffs = {}
        for fmt, file in files.items():
            started = time.perf_counter()
            exported = onnx_model.load(folder, file)
            load_seconds[fmt] = time.perf_counter() - started
            diffs[fmt] = largest_difference(mdl, exported, batches)
            trainer = make_trainer(run, exported, args, None, features, dsd["eval"])
            run.reseed()
            scores[fmt] = strip_prefix(trainer.evaluate())
            if loaded is not None:
                loaded[fmt] = exported
    if loaded is not None:
        loaded.update(torch=mdl, batches=every, load_seconds=load_seconds)
    failed = [line for fmt in files for line in parity_lines(scores["torch"], scores[fmt], fmt, tolerance)]
    result = {"task": run.task.name, "model": model, "output": str(folder), "files": files,
              "exporter": f"{exporter_name(mdl)} {_version('torch')}", "export_seconds": round(seconds, 1),
              "data": run.data_info.source, "split": run.data_info.eval_split, "samples": len(dsd["eval"]),
              "tolerance": tolerance, "metrics": scores, "max_abs_diff": diffs, "parity_failed": failed}
    write_card(folder, result)
    _update_manifest(folder, {"parity": {k: result[k] for k in ("data", "split", "samples", "tolerance", "metrics",
                                                                "max_abs_diff", "parity_failed")}})
    return result


def _write_exports(run, mdl, model: str, folder: Path, batch: dict, quantize: str | None) -> tuple[dict, float]:
    """The graph (and its int8 twin) written into `folder` with what infer needs beside it: ({format: file}, the
    seconds the export took). A generating model's format names its graphs' manifest (onnx_generate.py). A failed
    export leaves no folder it made."""
    from taskcli import onnx_generate

    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    generating = mdl.can_generate()
    try:
        with exporting(mdl):
            if generating:
                files = {"onnx": onnx_generate.export(mdl, batch, folder)}
                outputs, output_class = ["logits"], None
            else:
                with eager_attention(mdl):
                    outputs, output_class = export_graph(mdl, batch, folder / "model.onnx",
                                                         batch_only=fixed_size(run.processor))
                files = {"onnx": "model.onnx"}
    except TaskcliError:
        if made:  # nothing of the user's was there: leave no empty folder behind
            shutil.rmtree(folder, ignore_errors=True)
        raise
    if quantize and generating:
        files["onnx-int8"] = onnx_generate.quantize(folder, quantize_int8)
    elif quantize:
        quantize_int8(folder / "model.onnx", folder / "model.int8.onnx")
        files["onnx-int8"] = "model.int8.onnx"
    seconds = time.perf_counter() - started
    write_folder(run, mdl, model, folder, files, outputs, output_class, quantize)
    return files, seconds


def model_inputs(batch: dict, label_names) -> dict:
    """A Trainer eval batch without its labels: what the model's forward reads."""
    import torch

    return {k: v for k, v in batch.items() if torch.is_tensor(v) and k not in label_names and k != "labels"}


def fixed_size(processor) -> bool:
    """Whether the image processor resizes every image to one height x width (ViT, SegFormer, Mask2Former): then
    only the batch axis varies."""
    size = getattr(processor, "size", None)
    return bool(getattr(processor, "do_resize", False)) and isinstance(size, dict) and {"height", "width"} <= set(
        size) and not getattr(processor, "do_pad", False)


@contextlib.contextmanager
def eager_attention(mdl):
    """`mdl` with eager attention while it is traced, its own attention again afterwards (the parity check and
    benchmark's torch rows run the model as the user has it). Why: torch.onnx decomposes sdpa into the same matmuls
    and softmax as eager plus a NaN guard after every softmax (IsNaN + Where over each score matrix), which eager
    attention, masking with the dtype's minimum instead of -inf, does not need: an exported DistilBERT-base NER model
    ran 11 % faster in int8 and 3 % in fp32 without it (onnxruntime, 400 sentences, interleaved). And Swin's reshape
    of sdpa's output, traced as a view, does not export at all ("Cannot view a tensor with shape ..."). A model that
    refuses eager attention exports with its own."""
    own = _attn_implementations(mdl.config)
    refused = (ValueError, NotImplementedError, AttributeError)
    with contextlib.suppress(*refused):  # refused: it exports with its own attention
        mdl.set_attn_implementation("eager")
    try:
        yield mdl
    finally:
        with contextlib.suppress(*refused):  # (also undoes a switch that failed half-way)
            mdl.set_attn_implementation(own)


def _attn_implementations(config) -> dict:
    """The config's attention implementation and its sub-configs', nested as set_attn_implementation takes them (a
    sub-model may not support the top one: DETR's ResNet backbone refuses sdpa)."""
    found = {"": getattr(config, "_attn_implementation", None)}
    for key in getattr(config, "sub_configs", {}):
        if (sub := getattr(config, key, None)) is not None:
            found[key] = _attn_implementations(sub)
    return found


@contextlib.contextmanager
def exporting(mdl):
    """torch.onnx's progress lines and warnings silenced (a failure raises); its error, long and coloured, becomes
    one line naming the model and the first line of the cause."""
    import io
    import logging
    import os
    import warnings

    # "torchvision is not installed. Skipping torchvision::nms", onnx_ir's "Attribute type is ambiguous ..." (audio)
    loggers = {logging.getLogger(name): logging.getLogger(name).level for name in ("torch.onnx", "onnx_ir",
                                                                                    "onnxscript", "transformers")}
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            yield
        except TaskcliError:
            raise
        except Exception as err:  # noqa: BLE001 - the exporter's errors are long; name the model and the cause
            if os.environ.get("TASKCLI_DEBUG") == "1":
                raise
            text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()  # torch.onnx colours its messages
            first = text.splitlines()[0][:200] if text else type(err).__name__
            raise TaskcliError(f"{type(mdl).__name__} did not export to ONNX: {first}",
                               "TASKCLI_DEBUG=1 shows the exporter's trace") from None
        finally:
            for logger, level in loggers.items():
                logger.setLevel(level)


def export_graph(mdl, sample: dict, path: Path, batch_only: bool = False) -> tuple[list[str], str]:
    """`mdl` on `sample`'s inputs to an ONNX file (Dim.AUTO on every axis, or on the batch axis alone when the
    processor fixes the rest); returns the output names (the model output's fields, in order) and the output
    class's import path, which the exported model returns too. Run it inside `exporting`."""
    import torch

    with torch.inference_mode():
        reference = mdl(**sample)
    names = [k for k, v in reference.items() if k != "loss"]
    if not all(torch.is_tensor(reference[k]) for k in names):
        raise TaskcliError(f"{type(mdl).__name__}'s outputs are not all tensors ({', '.join(names)})",
                           "this model does not export yet")
    auto = torch.export.Dim.AUTO
    # symbolic image sizes cost time for nothing when the processor fixes them (Mask2Former's window padding: 191 s
    # to export the smoke model with every axis symbolic, 74 s with the batch alone)
    shapes = {k: {i: auto for i in range(1 if batch_only else v.dim())} for k, v in sample.items()}
    program = torch.onnx.export(mdl, (), kwargs=dict(sample), dynamo=True, dynamic_shapes=shapes,
                                input_names=list(sample), output_names=names)
    program.save(str(path))
    cls = type(reference)
    return names, f"{cls.__module__}.{cls.__qualname__}"


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantization (weights int8, activations quantized per batch): no calibration data needed. The
    embedding tables (Gather) too: they were half of a DistilBERT-base int8 file (138 -> 67 MB), at the same speed."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()  # quantize_dynamic's "Please consider to run pre-processing" goes to the root logger
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        # the linear layers (MatMul/Gemm: most of a transformer's work) and the embeddings; convolutions stay fp32:
        # wav2vec2's weight-normed conv weight is computed in the graph, which quantize_dynamic refuses ("Expected ...
        # to be an initializer")
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm", "Gather"])
    finally:
        root.setLevel(level)


def largest_difference(mdl, exported, batches: list[dict]) -> float:
    """The largest absolute difference between the two models' outputs (every field, up to 8 eval batches)."""
    import torch

    worst = 0.0
    with torch.inference_mode():
        for batch in batches:
            a, b = mdl(**batch), exported(**batch)
            for key, value in a.items():
                if torch.is_tensor(value) and key != "loss" and key in b:
                    worst = max(worst, float((value.float() - b[key].float()).abs().max()))
    return worst


def parity_lines(reference: dict, exported: dict, fmt: str, tolerance: float) -> list[str]:
    """One line per score that moved by more than `tolerance`, as a failed --gate reads."""
    from taskcli.metrics import scalar_metrics

    lines = []
    for key, value in scalar_metrics(reference).items():
        other = exported.get(key)
        if key in NOT_SCORES or value is None or not isinstance(other, (int, float)):
            continue
        # F1/accuracy-like scores (0..1) move by absolute amounts; others (perplexity, WER over 1, MAE) relative ones
        allowed = tolerance * max(1.0, abs(value))
        if abs(other - value) > allowed:
            lines.append(f"parity failed: {key} = {other:.6g} for {fmt}, {value:.6g} for torch: moved "
                         f"{abs(other - value):.4g}, more than --tolerance {tolerance:g}"
                         + (f" (x {abs(value):.4g}: relative above 1)" if abs(value) > 1 else ""))
    return lines


def write_folder(run, mdl, model: str, folder: Path, files: dict, outputs: list[str], output_class: str,
                 quantize: str | None) -> None:
    """Beside the graph: config.json (labels), the tokenizer/processor, the source's recipe.yaml, and the manifest
    saying what the folder came from and which graph `infer`/`eval`/`serve` run."""
    from taskcli import onnx_lite, provenance

    mdl.config.save_pretrained(folder)
    if mdl.can_generate():  # generate()'s settings (max length, eos/pad ids, sampling defaults) as the model had them
        mdl.generation_config.save_pretrained(folder)
    run.processor.save_pretrained(str(folder))
    if Path(model, "recipe.yaml").is_file():
        shutil.copy(Path(model, "recipe.yaml"), folder / "recipe.yaml")
    source = str(Path(model).resolve()) if Path(model).is_dir() else model  # a folder, or a hub id
    meta = {"task": run.task.name, "source": source, "format": "onnx",
            "model_file": files["onnx-int8" if quantize else "onnx"], "files": files,
            "quantize": quantize, "outputs": outputs, "output_class": output_class,
            **forward_facts(mdl.config),
            # what infer needs to run a text model without torch or transformers (taskcli/onnx_lite.py)
            "tokenizer": onnx_lite.tokenizer_facts(run.processor, folder),
            "exporter": exporter_name(mdl),
            "versions": {**provenance.versions(), **{n: _version(n) for n in ("onnx", "onnxruntime", "onnxscript")}}}
    (folder / MANIFEST).write_text(json.dumps(meta, indent=2) + "\n")


def exporter_name(mdl) -> str:
    return ("transformers.exporters OnnxExporter.export_for_generation, torch.onnx.export(dynamo=True)"
            if mdl.can_generate() else "torch.onnx.export(dynamo=True)")


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def _update_manifest(folder: Path, extra: dict) -> None:
    (folder / MANIFEST).write_text(json.dumps({**manifest(folder), **extra}, indent=2, default=float) + "\n")


def write_card(folder: Path, result: dict) -> None:
    """OUT/README.md: what was exported from what, and the parity numbers."""
    from taskcli.metrics import scalar_metrics

    formats = list(result["metrics"])
    keys = [k for k in scalar_metrics(result["metrics"]["torch"]) if k not in NOT_SCORES]
    rows = "\n".join(f"| {k} | " + " | ".join(_cell(result["metrics"][f].get(k)) for f in formats) + " |" for k in keys)
    diffs = ", ".join(f"{f} {d:.3g}" for f, d in result["max_abs_diff"].items())
    verdict = "FAILED: " + "; ".join(result["parity_failed"]) if result["parity_failed"] else \
        f"passed: no metric moved by more than {result['tolerance']:g}"
    folder.joinpath("README.md").write_text(f"""# {result['task']} · ONNX export of {result['model']}

Exported by `taskcli export` ({result['exporter']}). Files: {', '.join(result['files'].values())};
`taskcli infer|eval|serve {result['task']} --model {folder}` runs `{manifest(folder)['model_file']}` with ONNX Runtime.

## Parity with the PyTorch model

Scored on {result['samples']} rows of {result['data']} (split {result['split']}), the same rows and evaluation as
`taskcli eval`. Parity {verdict}. Largest absolute output difference: {diffs}.

| metric | {' | '.join(formats)} |
|---|{'---|' * len(formats)}
{rows}
""")


def _cell(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "–" if value is None else str(value)
