"""`taskcli benchmark`: one table across formats (torch fp32, ONNX fp32, ONNX int8) of a fine-tuned model: size on
disk, the seconds the model takes to load, the task's main metric on the same rows, ms per input (p50/p95), inputs/s,
and pass/fail against the PyTorch metric with --tolerance. The exported models are `taskcli export`'s (in a temporary folder), scored by its gate."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from taskcli import registry
from taskcli.errors import TaskcliError, did_you_mean

FORMATS = ("torch", "onnx", "onnx-int8")
WEIGHTS = ("*.safetensors", "*.bin", "*.onnx", "*.onnx.data")


def parse_formats(text: str) -> list[str]:
    wanted = [f.strip() for f in text.split(",") if f.strip()]
    for fmt in wanted:
        if fmt not in FORMATS:
            raise TaskcliError(f"unknown format {fmt!r} in --formats{did_you_mean(fmt, FORMATS)}",
                               f"choose from {','.join(FORMATS)}")
    return wanted or list(FORMATS)


def benchmark(task: str, model: str, formats: str = ",".join(FORMATS), data: str | None = None,
              tolerance: float | None = None, recipe: str | None = None, sets: list[str] | None = None,
              smoke: bool = False) -> dict:
    """The table's rows, one per format, in the order asked; the ONNX formats are exported first."""
    from taskcli import export as export_mod

    wanted = parse_formats(formats)
    tolerance = export_mod.DEFAULT_TOLERANCE if tolerance is None else tolerance
    metric = registry.get(task).best_metric
    with tempfile.TemporaryDirectory(prefix="taskcli-benchmark-") as tmp:
        loaded: dict = {}
        report = export_mod.export(task, model, str(Path(tmp, "onnx")), "int8" if "onnx-int8" in wanted else None,
                                   tolerance, recipe, data, sets, smoke, loaded=loaded)
        folder = Path(report["output"])
        scored = report["metrics"]["torch"]
        if metric not in scored:  # a regression or multi-label model: its first score besides the loss
            metric = next((k for k, v in scored.items() if k != "loss" and isinstance(v, (int, float))), metric)
        files = {"torch": [p for pattern in WEIGHTS[:2] for p in Path(model).glob(pattern)],
                 **{fmt: [folder / f, folder / (f + ".data")] for fmt, f in report["files"].items()}}
        rows = []
        for fmt in wanted:
            scores = report["metrics"][fmt]
            failed = [] if fmt == "torch" else export_mod.parity_lines(report["metrics"]["torch"], scores, fmt,
                                                                       tolerance)
            rows.append({"format": fmt, "precision": "int8" if fmt.endswith("int8") else "fp32",
                         "size_mb": round(sum(p.stat().st_size for p in files[fmt] if p.is_file()) / 2**20, 2),
                         "metric": metric, "value": scores.get(metric),
                         "load_s": round(loaded["load_seconds"][fmt], 2), **timings(loaded[fmt], loaded["batches"]),
                         "max_abs_diff": report["max_abs_diff"].get(fmt, 0.0),
                         "parity": "–" if fmt == "torch" else "fail" if failed else "pass", "failed": failed})
    return {"task": report["task"], "model": model, "data": report["data"], "split": report["split"],
            "samples": report["samples"], "tolerance": tolerance, "rows": rows}


def timings(model, batches: list[dict]) -> dict:
    """ms per input (a batch's forward time over its rows: p50/p95 across the batches) and inputs/s, after one
    warm-up batch; the forward only, in the process's thread count."""
    import numpy as np
    import torch

    per_input, total, rows = [], 0.0, 0
    with torch.inference_mode():
        model(**batches[0])
        for batch in batches:
            n = len(next(iter(batch.values())))
            started = time.perf_counter()
            model(**batch)
            took = time.perf_counter() - started
            per_input.append(1000 * took / n)
            total, rows = total + took, rows + n
    return {"ms_p50": round(float(np.percentile(per_input, 50)), 3),
            "ms_p95": round(float(np.percentile(per_input, 95)), 3),
            "inputs_per_s": round(rows / total, 1) if total else None}
