"""Where an exported NER model's time goes, by ONNX op type, fp32 graph vs int8 graph (onnxruntime's profiler): why
int8 is not 4x faster than fp32. A DistilBERT-base-size model with random weights (op times do not depend on the
weights), exported by `taskcli export ner --quantize int8`; 256 of bench_export's sentences, batches of 32 as infer
runs them (length-sorted, padded per batch), 2 threads.

    .venv/bin/python bench/profile_onnx_ops.py
"""

import json
import os
import random
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import ner_corpus  # noqa: E402
from taskcli.onnx_runtime import SLOW_FUSIONS  # noqa: E402
from bench_ner_infer import build_model  # noqa: E402


def profile(model_file: Path, batches: list[dict]) -> dict[str, float]:
    """Milliseconds per op type over all batches (the second pass: the first warms the session up)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.enable_profiling = True
    opts.profile_file_prefix = str(model_file.with_suffix(""))
    # the fusions taskcli's sessions leave out (onnx_runtime.SLOW_FUSIONS), left out here too
    session = ort.InferenceSession(str(model_file), opts, providers=["CPUExecutionProvider"],
                                   disabled_optimizers=SLOW_FUSIONS)
    names = {i.name for i in session.get_inputs()}
    for batch in batches:  # warm-up, profiled too: the first half of the events, dropped below
        session.run(None, {k: v for k, v in batch.items() if k in names})
    for batch in batches:
        session.run(None, {k: v for k, v in batch.items() if k in names})
    events = json.loads(Path(session.end_profiling()).read_text())
    by_op: dict[str, float] = defaultdict(float)
    kernel = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    for e in kernel[len(kernel) // 2:]:  # the second pass
        by_op[e["args"]["op_name"]] += e["dur"] / 1000
    return dict(by_op)


def batches_of(folder: Path, texts: list[str]) -> list[dict]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    texts = sorted(texts, key=len)
    return [dict(tok([t.split() for t in texts[i:i + 32]], is_split_into_words=True, padding=True,
                     return_tensors="np")) for i in range(0, len(texts), 32)]


if __name__ == "__main__":
    rows = ner_corpus.rows(256, held_out=True, seed=2)
    texts = [" ".join(r["tokens"]) for r in rows]
    with tempfile.TemporaryDirectory(prefix="profile-onnx-") as tmp:
        tmp = Path(tmp)
        build_model(str(tmp / "torch"), ner_corpus.vocab_texts(), sinusoidal_pos_embds=True)
        rng = random.Random(0)  # tags for export's scoring rows: random weights have no F1 to keep
        (tmp / "rows.jsonl").write_text("".join(json.dumps({"tokens": r["tokens"], "ner_tags": [
            rng.choice(ner_corpus.TAGS) for _ in r["tokens"]]}) + "\n" for r in rows[:32]))
        subprocess.run([sys.executable, "-m", "taskcli", "export", "ner", "--model", str(tmp / "torch"), "--data",
                        str(tmp / "rows.jsonl"), "--quantize", "int8", "-o", str(tmp / "out"), "--tolerance", "1"],
                       check=True, capture_output=True, env={**os.environ, "HF_DATASETS_CACHE": str(tmp / "ds")})
        batches = batches_of(tmp / "out", texts)
        fp32, int8 = profile(tmp / "out" / "model.onnx", batches), profile(tmp / "out" / "model.int8.onnx", batches)
        total32, total8 = sum(fp32.values()), sum(int8.values())
        print(f"{len(texts)} sentences, {sum(b['input_ids'].size for b in batches):,} padded tokens: kernel time "
              f"fp32 {total32:.0f} ms, int8 {total8:.0f} ms ({total32 / total8:.2f}x)")
        print(f"{'op type':<24}{'fp32 ms':>10}{'int8 ms':>10}{'int8 share':>12}")
        for op in sorted(set(fp32) | set(int8), key=lambda o: -max(fp32.get(o, 0), int8.get(o, 0))):
            a, b = fp32.get(op, 0), int8.get(op, 0)
            if max(a, b) >= 0.005 * total32:
                print(f"{op:<24}{a:>10.0f}{b:>10.0f}{100 * b / total8:>11.1f}%")
