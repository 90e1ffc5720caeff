"""The whole-process speed table of bench_export*.py: `taskcli export --quantize int8`, then `taskcli infer` over the
same inputs with the PyTorch model, its ONNX fp32 graph and its ONNX int8 graph, one after the other in one run
(model load and start-up included), with the load average beside each figure: the machine may be shared."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

FORMATS = ("torch", "onnx", "int8")
NAMES = {"torch": "torch fp32", "onnx": "onnx fp32", "int8": "onnx int8",
         "torch-own": "torch fp32, TASKCLI_ONEDNN_LINEAR=0"}


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def taskcli(*args: str, out=subprocess.DEVNULL, env: dict | None = None, entry: list[str] | None = None) -> float:
    """Seconds for one whole `taskcli` process (or `python ENTRY...`, a script that runs taskcli's CLI); its stderr is
    kept for the error when it fails."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *(entry or ["-m", "taskcli"]), *args], stdout=out, stderr=subprocess.PIPE,
                          text=True, env={**os.environ, **(env or {})})
    if done.returncode not in (0, 3):  # 3: a failed parity gate, reported by the caller
        sys.exit(f"taskcli {' '.join(args[:2])} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return time.perf_counter() - start


def export(task: str, model: Path, tmp: Path, score_args: list[str], env: dict | None = None) -> dict:
    """`taskcli export TASK --model M --quantize int8` into tmp/int8, and tmp/onnx: the same folder with the manifest
    naming the fp32 graph. Returns export's --json report (parity metrics, largest output difference)."""
    with (tmp / "export.json").open("w") as fh:
        took = taskcli("export", task, "--model", str(model), "--quantize", "int8", "-o", str(tmp / "int8"), "--json",
                       *score_args, out=fh, env=env)
    report = json.loads((tmp / "export.json").read_text())
    report["wall_s"] = took
    shutil.copytree(tmp / "int8", tmp / "onnx")
    manifest = json.loads((tmp / "onnx" / "taskcli-export.json").read_text())
    (tmp / "onnx" / "taskcli-export.json").write_text(json.dumps({**manifest, "model_file": report["files"]["onnx"]}))
    return report


def print_parity(report: dict, main: str) -> None:
    metrics = report["metrics"]
    torch_value = metrics["torch"][main]
    cells = ", ".join(f"{fmt} {metrics[fmt][main]:.4f} ({metrics[fmt][main] - torch_value:+.4f})"
                      for fmt in ("onnx", "onnx-int8"))
    print(f"export {report['wall_s']:.0f} s; {main} on {report['samples']} {report['split']} rows: torch "
          f"{torch_value:.4f}, {cells}; tolerance {report['tolerance']}: "
          + ("; ".join(report["parity_failed"]) if report["parity_failed"] else "parity passed"))
    print("largest output difference: " + ", ".join(f"{k} {v:.3g}" for k, v in report["max_abs_diff"].items()),
          flush=True)


def weights_mb(folder: Path, fmt: str) -> float:
    """The weights' files on disk: the safetensors, or the graph(s) the folder's manifest names and their external
    data (a generating model's two graphs share theirs: taskcli.onnx_generate.share_weights)."""
    from taskcli.onnx_generate import graph_files
    from taskcli.onnx_runtime import manifest

    files = folder.glob("*.safetensors") if fmt == "torch" else graph_files(folder, manifest(folder)["model_file"])
    return sum(f.stat().st_size for f in files) / 2**20


def speed_table(task: str, tmp: Path, inputs: list[str], one: str, what: str, extra: tuple[str, ...] = (),
                env: dict | None = None) -> tuple[dict[str, Path], dict[str, float]]:
    """Whole `taskcli infer TASK INPUTS --json` per format, then one on the single input `one` (start-up); prints
    the rows and the ratios to torch fp32; returns each format's results file and seconds."""
    folders = {"torch": tmp / "torch", "onnx": tmp / "onnx", "int8": tmp / "int8"}
    runs, starts, results = {}, {}, {}
    print(f"{what}, whole `taskcli infer` processes (start-up and load included), {os.cpu_count()} CPUs, "
          f"load average 1/5/15 min before: {load()}", flush=True)
    print(f"| {what} | whole process | inputs/s | one-input infer | weights | load average after |")
    print("|---|---|---|---|---|---|")
    for fmt in FORMATS:
        args = ["infer", task, "--model", str(folders[fmt]), "--json", "--no-progress", *extra]
        results[fmt] = tmp / f"{fmt}.jsonl"
        with results[fmt].open("w") as fh:
            runs[fmt] = taskcli(*args, *inputs, out=fh, env=env)
        starts[fmt] = taskcli(*args, one, env=env)
        ratio = "" if fmt == "torch" else f" ({runs['torch'] / runs[fmt]:.2f}x)"
        print(f"| {NAMES[fmt]} | {runs[fmt]:.1f} s{ratio} | {n_inputs(results[fmt]) / runs[fmt]:.1f} | "
              f"{starts[fmt]:.1f} s | {weights_mb(folders[fmt], fmt):.0f} MB | {load()} |", flush=True)
    # taskcli's PyTorch path without its oneDNN linear layers (taskcli/cpu_linear.py): the baseline the ratio
    # targets were set against, so that both ratios are on record
    args = ["infer", task, "--model", str(folders["torch"]), "--json", "--no-progress", *extra, *inputs]
    runs["torch-own"] = taskcli(*args, env={**(env or {}), "TASKCLI_ONEDNN_LINEAR": "0"})
    print(f"| {NAMES['torch-own']} | {runs['torch-own']:.1f} s | {n_inputs(results['torch']) / runs['torch-own']:.1f} "
          f"| | | {load()} |", flush=True)
    return results, runs


def print_ratios(runs: dict[str, float], targets: dict[str, float]) -> None:
    for base in ("torch", "torch-own"):
        for fmt, target in targets.items():
            ratio = runs[base] / runs[fmt]
            print(f"{NAMES[fmt]} vs {NAMES[base]}, whole process: {ratio:.2f}x (target >= {target}x) "
                  f"{'OK' if ratio >= target else 'MISS'}")


def n_inputs(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
