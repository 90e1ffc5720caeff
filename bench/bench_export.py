"""Exported NER model vs PyTorch, whole processes: `taskcli infer ner FILE --json` over 1,000 mixed-length sentences
with the PyTorch model, its ONNX fp32 export and its ONNX int8 export (`taskcli export --quantize int8`), start-up and
model loading included; plus a one-line infer for each (start-up) and how often the int8 model's entity labels agree.

The model is DistilBERT-base size with random weights (speed does not depend on the weights; agreement of a random
model's labels says little: random logits sit close together). Targets (issue 20): onnx fp32 >= 1.3x torch,
int8 >= 3x torch.
"""

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench_ner_infer import build_model, sentences  # noqa: E402

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]


def taskcli(*args: str, out=subprocess.DEVNULL) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "taskcli", *args], check=True, stdout=out, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def labelled(texts: list[str], path: Path) -> None:
    """The rows export scores on: the recipe's columns (tokens, ner_tags), random tags (the gate is not the point
    here: a random-weight model has no F1 to keep)."""
    rng = random.Random(1)
    with path.open("w") as fh:
        for text in texts:
            tokens = text.split()
            fh.write(json.dumps({"tokens": tokens, "ner_tags": [rng.choice(LABELS) for _ in tokens]}) + "\n")


def labels_of(path: Path) -> list[list[str]]:
    return [[e["entity_group"] for e in json.loads(line)["entities"]] for line in path.read_text().splitlines()]


if __name__ == "__main__":
    texts = sentences(1000)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_model(str(tmp / "torch"), texts)
        labelled(texts[:200], tmp / "rows.jsonl")
        took = taskcli("export", "ner", "--model", str(tmp / "torch"), "--data", str(tmp / "rows.jsonl"), "--quantize",
                       "int8", "-o", str(tmp / "int8"), "--tolerance", "1", "--json",
                       out=(tmp / "export.json").open("w"))
        report = json.loads((tmp / "export.json").read_text())
        print(f"export (200 rows scored 3 times, int8 included): {took:.1f} s; largest output difference "
              + ", ".join(f"{k} {v:.3g}" for k, v in report["max_abs_diff"].items()))
        # the fp32 graph as its own folder: the same files, the manifest naming model.onnx
        shutil.copytree(tmp / "int8", tmp / "onnx")
        manifest = json.loads((tmp / "onnx" / "taskcli-export.json").read_text())
        (tmp / "onnx" / "taskcli-export.json").write_text(json.dumps({**manifest, "model_file": "model.onnx"}))
        (tmp / "sentences.txt").write_text("\n".join(texts) + "\n")
        (tmp / "one.txt").write_text(texts[0] + "\n")
        tokens = sum(len(t.split()) for t in texts)
        print(f"1,000 sentences ({tokens} words), batch 32, whole `taskcli infer` processes, "
              f"{os.cpu_count()} CPUs")
        runs, starts = {}, {}
        for fmt in ("torch", "onnx", "int8"):
            out = tmp / f"{fmt}.jsonl"
            args = ["infer", "ner", "--model", str(tmp / fmt), "--json", "--batch-size", "32", "--no-progress"]
            starts[fmt] = taskcli(*args, str(tmp / "one.txt"))
            runs[fmt] = taskcli(*args, str(tmp / "sentences.txt"), out=out.open("w"))
            size = sum(f.stat().st_size for f in (tmp / fmt).iterdir() if f.suffix in (".safetensors", ".onnx", ".data")
                       and (fmt != "onnx" or f.name.startswith("model.onnx")) and (fmt != "int8" or "int8" in f.name))
            print(f"{fmt:>5}: {runs[fmt]:6.1f} s ({1000 / runs[fmt]:6.1f} sentences/s), one-line infer "
                  f"{starts[fmt]:4.1f} s, weights {size / 2**20:6.1f} MB")
        for fmt, target in (("onnx", 1.3), ("int8", 3.0)):
            ratio = runs["torch"] / runs[fmt]
            print(f"{fmt} vs torch fp32, whole process: {ratio:.2f}x (target >= {target}x) "
                  f"{'OK' if ratio >= target else 'MISS'}")
        ref = labels_of(tmp / "torch.jsonl")
        for fmt in ("onnx", "int8"):
            same = sum(a == b for a, b in zip(ref, labels_of(tmp / f"{fmt}.jsonl")))
            print(f"{fmt}: same entity labels as torch on {same} of {len(ref)} sentences (random weights)")
