"""Start-up cost: `taskcli --help` median wall time vs `python -c "import torch"` (target <= 0.25 s, <= 15%), and
issue 20's one-line `taskcli infer` (whole process) on a smoke NER model: PyTorch (target <= 3 s) and its ONNX
export (target <= 1.5 s; torch-free: tokenizers + ONNX Runtime + numpy), each with the heavy libraries it imports."""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
TASKCLI = str(BIN / "taskcli")


def median_wall(cmd: list[str], runs: int = 9) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def line(name: str, seconds: float, target: float) -> str:
    return f"{name:<26} median {seconds:.3f} s   (target <= {target:g} s)  {'OK' if seconds <= target else 'MISS'}"


def imports_of(args: list[str]) -> str:
    """How many modules `taskcli ARGS` imports (`python -X importtime`) and which of the heavy libraries: the ONNX
    path of an exported text model loads neither torch nor transformers (taskcli/onnx_lite.py)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "taskcli", *args], check=True,
                          capture_output=True, text=True)
    names = {row.rsplit("|", 1)[-1].strip() for row in done.stderr.splitlines() if row.startswith("import time:")}
    heavy = [m for m in ("torch", "transformers", "tokenizers", "onnxruntime") if m in names]
    return f"imports {len(names)} modules, of them {', '.join(heavy)}"


def one_line_infer(tmp: Path) -> None:
    """Fine-tune and export a smoke NER model, then time `infer ner --model M "..." --json` on each (5 runs)."""
    torch_dir, onnx_dir = tmp / "ner", tmp / "ner-onnx"
    subprocess.run([TASKCLI, "finetune", "ner", "--smoke", "-o", str(torch_dir)], check=True, capture_output=True)
    subprocess.run([TASKCLI, "export", "ner", "--model", str(torch_dir), "-o", str(onnx_dir)], check=True,
                   capture_output=True)
    for name, folder, target in (("infer ner (torch)", torch_dir, 3.0), ("infer ner (onnx)", onnx_dir, 1.5)):
        args = ["infer", "ner", "--model", str(folder), "Alice works in Paris .", "--json"]
        print(line(name, median_wall([TASKCLI, *args], runs=5), target), flush=True)
        print(f"{'':<26} {imports_of(args)}", flush=True)
    # the machine may be shared: the figures above mean little without it
    print("load average (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    help_s = median_wall([TASKCLI, "--help"])
    torch_s = median_wall([sys.executable, "-c", "import torch"])
    ratio = help_s / torch_s
    print(line("taskcli --help", help_s, 0.25))
    print(f"python -c import torch     median {torch_s:.3f} s")
    print(f"ratio                      {100 * ratio:.1f} %    (target <= 15 %)   {'OK' if ratio <= 0.15 else 'MISS'}",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        one_line_infer(Path(tmp))
