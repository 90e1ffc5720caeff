"""`taskcli benchmark`: one table across formats and precisions (torch at fp32/bf16/fp16, ONNX fp32, ONNX int8) of a
fine-tuned model: size, the seconds the model takes to load, the task's main metric on the same rows, ms per input
(p50/p95), inputs/s, and pass/fail against the torch fp32 metric with --tolerance. The exported models are `taskcli
export`'s (in a temporary folder), scored by its gate; each torch precision is the model loaded and cast as `infer
--precision` casts it, scored by the same evaluation."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from taskcli import registry
from taskcli.errors import TaskcliError, did_you_mean

FORMATS = ("torch", "onnx", "onnx-int8")
PRECISIONS = ("fp32", "bf16", "fp16")
WEIGHTS = ("*.safetensors", "*.bin", "*.onnx", "*.onnx.data")


def parse_formats(text: str) -> list[str]:
    wanted = [f.strip() for f in text.split(",") if f.strip()]
    for fmt in wanted:
        if fmt not in FORMATS:
            raise TaskcliError(f"unknown format {fmt!r} in --formats{did_you_mean(fmt, FORMATS)}",
                               f"choose from {','.join(FORMATS)}")
    return wanted or list(FORMATS)


def parse_precisions(text: str | None, formats: list[str]) -> list[str]:
    """The torch rows' precisions, fp32 first (the reference every other row is held to); refused before anything
    loads."""
    if text is None:
        return ["fp32"] if "torch" in formats else []
    wanted = [p.strip() for p in text.split(",") if p.strip()]
    for precision in wanted:
        if precision not in PRECISIONS:
            raise TaskcliError(f"unknown precision {precision!r} in --precision{did_you_mean(precision, PRECISIONS)}",
                               f"choose from {','.join(PRECISIONS)}")
    if "torch" not in formats:
        raise TaskcliError("--precision applies to the torch format only (onnx runs fp32, onnx-int8 int8)",
                           "add torch to --formats, e.g. --formats torch,onnx")
    if "fp16" in wanted:
        import torch

        if not torch.cuda.is_available():  # CPU fp16 kernels are missing or slower than fp32: no useful row
            raise TaskcliError("--precision fp16 needs a CUDA GPU and none is available", "use --precision fp32,bf16")
    return list(dict.fromkeys(["fp32", *wanted]))


def benchmark(task: str, model: str, formats: str = ",".join(FORMATS), data: str | None = None,
              tolerance: float | None = None, recipe: str | None = None, sets: list[str] | None = None,
              smoke: bool = False, precision: str | None = None, plot: str | None = None) -> dict:
    """The table's rows: formats in the order asked, a torch row per precision; `plot` (a new file) gets the figure."""
    from taskcli import benchmark_plot
    from taskcli import export as export_mod

    wanted = parse_formats(formats)
    precisions = parse_precisions(precision, wanted)
    plot_path = benchmark_plot.check_target(plot)
    if not Path(model).is_dir():  # the torch rows' sizes are its files
        raise TaskcliError(f"no such model folder: {model}", "pass a `taskcli finetune` output dir")
    tolerance = export_mod.DEFAULT_TOLERANCE if tolerance is None else tolerance
    onnx = [fmt for fmt in wanted if fmt != "torch"]
    warm_imports(model)
    with tempfile.TemporaryDirectory(prefix="taskcli-benchmark-") as tmp:
        loaded: dict = {}
        report = export_mod.export(task, model, str(Path(tmp, "onnx")), "int8" if "onnx-int8" in onnx else None,
                                   tolerance, recipe, data, sets, smoke, loaded=loaded) if onnx else None
        scored, info = score_torch(task, model, precisions, data, recipe, sets, smoke, loaded, report) \
            if precisions else ({}, {})
        info = info or {k: report[k] for k in ("task", "data", "split", "samples")}
        reference = report["metrics"]["torch"] if report else scored["fp32"]["scores"]
        metric = main_metric(task, reference)
        if report:
            scored.update(onnx_scores(report, loaded))
    rows = [table_row(fmt, prec, scored[prec if fmt == "torch" else fmt], reference, metric, tolerance)
            for fmt in wanted
            for prec in (precisions if fmt == "torch" else ["int8" if fmt.endswith("int8") else "fp32"])]
    result = {**info, "model": model, "tolerance": tolerance, "reference": reference.get(metric), "rows": rows}
    if plot_path:
        benchmark_plot.write(result, plot_path)
        result["plot"] = str(plot_path)
    return result


def warm_imports(model: str) -> None:
    """Import the model's and its tokenizer's code before any load is timed: else the first row's load seconds also
    pay for importing transformers' modules (seconds on a cold start) and the rows after it do not."""
    import json

    import transformers

    for name in ("config.json", "tokenizer_config.json", "preprocessor_config.json"):
        path = Path(model, name)
        saved = json.loads(path.read_text()) if path.is_file() else {}
        for cls in [*(saved.get("architectures") or []), saved.get("tokenizer_class"),
                    saved.get("image_processor_type"), saved.get("feature_extractor_type")]:
            if isinstance(cls, str):
                getattr(transformers, cls, None)


def onnx_scores(report: dict, loaded: dict) -> dict:
    """{format: its numbers} for the exported graphs, from export's report and the models it loaded."""
    from taskcli import onnx_generate

    folder, out = Path(report["output"]), {}
    for fmt, file in report["files"].items():
        out[fmt] = {"scores": report["metrics"][fmt], "load_s": loaded["load_seconds"][fmt],
                    "size_mb": size_mb(onnx_generate.graph_files(folder, file)),
                    "max_abs_diff": report["max_abs_diff"][fmt], **timings(loaded[fmt], loaded["batches"])}
    return out


def main_metric(task: str, scores: dict) -> str:
    """The task's best metric; for a regression or multi-label model, its first score besides the loss."""
    metric = registry.get(task).best_metric
    if metric not in scores:
        metric = next((k for k, v in scores.items() if k != "loss" and isinstance(v, (int, float))), metric)
    return metric


def table_row(fmt: str, precision: str, scored: dict, reference: dict, metric: str, tolerance: float) -> dict:
    from taskcli.export import parity_lines

    is_reference = (fmt, precision) == ("torch", "fp32")
    name = fmt if fmt.endswith(precision) or fmt == "onnx" else f"{fmt} {precision}"
    failed = [] if is_reference else parity_lines(reference, scored["scores"], name, tolerance)
    return {"format": fmt, "precision": precision, "size_mb": scored["size_mb"], "metric": metric,
            "value": scored["scores"].get(metric), "load_s": round(scored["load_s"], 2),
            **{k: scored[k] for k in ("ms_p50", "ms_p95", "inputs_per_s")}, "max_abs_diff": scored["max_abs_diff"],
            "parity": "–" if is_reference else "fail" if failed else "pass", "failed": failed}


def size_mb(files) -> float:
    return round(sum(p.stat().st_size for p in files if p.is_file()) / 2**20, 2)


def score_torch(task: str, model: str, precisions: list[str], data, recipe, sets, smoke, loaded: dict,
                report: dict | None) -> tuple[dict, dict]:
    """({precision: scores, load seconds, size, timings, largest output difference from fp32}, the data's info, or
    {} when export's says it). fp32 is export's model and scores when export ran; every other precision loads the
    model afresh (its load time includes the cast), one at a time."""
    from taskcli import export as export_mod
    from taskcli.evaluate import load_eval_data

    out: dict = {}
    if report:
        out["fp32"] = torch_row(model, "fp32", loaded["torch"], loaded["batches"], report["metrics"]["torch"],
                                loaded["load_seconds"]["torch"], None)
    if all(p in out for p in precisions):
        return out, {}
    run = export_mod.prepare_scoring(task, model, recipe, data, sets, smoke)
    try:
        dsd = load_eval_data(run, data, None)
        reference = loaded.get("torch")
        for precision in (p for p in precisions if p not in out):
            mdl, batches, scores, load_s = load_and_score(run, model, dsd, precision)
            out[precision] = torch_row(model, precision, mdl, batches, scores, load_s, reference)
            reference = reference or mdl
        return out, {"task": run.task.name, "data": run.data_info.source, "split": run.data_info.eval_split,
                     "samples": len(dsd["eval"])}
    finally:
        run.close()


def torch_row(model: str, precision: str, mdl, batches: list[dict], scores: dict, load_s: float, reference) -> dict:
    """A torch precision's numbers; `reference`: the fp32 model its outputs are compared with (None: this one)."""
    from taskcli.export import largest_difference

    ready_for_any_input(mdl)
    weights = [p for pattern in WEIGHTS[:2] for p in Path(model).glob(pattern)]
    return {"scores": scores, "load_s": load_s, **timings(mdl, batches),
            "size_mb": size_mb(weights) if precision == "fp32" else parameter_mb(mdl),
            "max_abs_diff": largest_difference(reference, mdl, batches[:8]) if reference is not None else 0.0}


def load_and_score(run, model: str, dsd, precision: str):
    """(model, every eval batch's inputs, scores, load seconds): loaded and cast as `infer --precision` does it,
    scored by the Trainer evaluation `taskcli eval` runs."""
    import torch

    from taskcli.evaluate import load_scored_model
    from taskcli.export import model_inputs
    from taskcli.model_loading import cast_for_inference
    from taskcli.trainer import build_features, make_trainer, strip_prefix
    from taskcli.training_args import training_arguments

    started = time.perf_counter()
    _, mdl = load_scored_model(run, model, dsd)
    mdl.eval()
    if torch.cuda.is_available():
        mdl.to("cuda")
    cast_for_inference(mdl, precision)
    load_s = time.perf_counter() - started
    features = build_features(run, dsd["eval"], False)
    with tempfile.TemporaryDirectory(prefix="taskcli-benchmark-") as tmp:
        ready_for_any_input(mdl)
        trainer = make_trainer(run, mdl, training_arguments(run, tmp, for_eval=True), None, features, dsd["eval"])
        batches = [model_inputs(b, trainer.label_names) for b in trainer.get_eval_dataloader()]
        run.reseed()  # random eval-time masking (fill-mask) draws the same masks as export's torch fp32 score
        scores = strip_prefix(trainer.evaluate())
    return mdl, batches, scores, load_s


def ready_for_any_input(mdl) -> None:
    """Hooks so a bf16/fp16 model takes the collator's fp32 pixel values and audio (cast and moved to its device,
    as infer does) and gives fp32 outputs to the metric code (NumPy has no bf16); a no-op for fp32 on the CPU."""
    from taskcli.inference import to_model

    if getattr(mdl, "_taskcli_ready", False):
        return

    def inputs(module, args, kwargs):
        return args, to_model(kwargs, module)

    def outputs(module, args, kwargs, out):
        for key, value in list(out.items()):
            if hasattr(value, "is_floating_point") and value.is_floating_point():
                out[key] = value.float()
        return out

    mdl.register_forward_pre_hook(inputs, with_kwargs=True)
    mdl.register_forward_hook(outputs, with_kwargs=True)
    mdl._taskcli_ready = True


def parameter_mb(mdl) -> float:
    """The weights' size at the model's precision: what save_pretrained would write for it."""
    return round(sum(p.numel() * p.element_size() for p in mdl.parameters()) / 2**20, 2)


def timings(model, batches: list[dict]) -> dict:
    """ms per input (a batch's forward time over its rows: p50/p95 across the batches) and inputs/s, after one
    warm-up batch; the forward only, in the process's thread count, the batches already on the model's device."""
    import numpy as np
    import torch

    from taskcli.inference import to_model

    batches = [to_model(batch, model) for batch in batches]
    wait = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)  # CUDA runs asynchronously
    per_input, total, rows = [], 0.0, 0
    with torch.inference_mode():
        model(**batches[0])
        for batch in batches:
            n = len(next(iter(batch.values())))
            wait()
            started = time.perf_counter()
            model(**batch)
            wait()
            took = time.perf_counter() - started
            per_input.append(1000 * took / n)
            total, rows = total + took, rows + n
    return {"ms_p50": round(float(np.percentile(per_input, 50)), 3),
            "ms_p95": round(float(np.percentile(per_input, 95)), 3),
            "inputs_per_s": round(rows / total, 1) if total else None}
