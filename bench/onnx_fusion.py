"""Would offline graph fusion, or static int8, make an exported NER model faster? The export as written against the
same graph after onnxruntime's transformer optimizer (`optimize_model`, model_type bert) and after onnxscript's
`ort_fusions` (attention fused into one op), fp32 and dynamic int8 each, and the export statically quantized (QDQ,
activation scales calibrated on 128 other sentences), beside torch fp32: seconds for the forwards alone.

A DistilBERT-base-size model with random weights (the time does not depend on them), exported by `taskcli export
ner`; 1,000 of bench_export's held-out-name sentences, length-sorted batches of 32, 2 threads. Not in `make bench`.

    .venv/bin/python bench/onnx_fusion.py
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import ner_corpus  # noqa: E402
from taskcli import onnx_runtime  # noqa: E402
from bench_ner_infer import build_model  # noqa: E402
from profile_onnx_ops import batches_of  # noqa: E402


def export(tmp: Path) -> Path:
    build_model(str(tmp / "torch"), ner_corpus.vocab_texts(), pieces=tuple(ner_corpus.name_pieces()),
                embedding_std=1.0, sinusoidal_pos_embds=True)
    (tmp / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ner_corpus.rows(32, True, seed=1)))
    subprocess.run([sys.executable, "-m", "taskcli", "export", "ner", "--model", str(tmp / "torch"), "--data",
                    str(tmp / "rows.jsonl"), "-o", str(tmp / "out"), "--tolerance", "1"], check=True,
                   capture_output=True, env={**os.environ, "HF_DATASETS_CACHE": str(tmp / "ds")})
    return tmp / "out" / "model.onnx"


def fused(base: Path) -> dict[str, Path]:
    """The two fused graphs beside `base`; prints what each fusion found."""
    import onnx
    import onnxscript
    from onnxruntime.transformers.optimizer import optimize_model
    from onnxscript.rewriter import ort_fusions

    ortopt = optimize_model(str(base), model_type="bert", num_heads=12, hidden_size=768)
    found = {k: v for k, v in ortopt.get_fused_operator_statistics().items() if v}
    print(f"onnxruntime optimize_model fused: {found}")
    ortopt.save_model_to_file(str(base.with_name("ortopt.onnx")))
    graph, counts = ort_fusions.optimize_for_ort(onnxscript.ir.from_proto(onnx.load(str(base))))
    print(f"onnxscript ort_fusions fused: { {k: v for k, v in counts.items() if v} }")
    onnx.save(onnxscript.ir.to_proto(graph), str(base.with_name("osfuse.onnx")))
    return {"as exported": base, "optimize_model": base.with_name("ortopt.onnx"),
            "ort_fusions": base.with_name("osfuse.onnx")}


def static_int8(base: Path, calibration: list[dict]) -> Path:
    """`base` with int8 MatMuls whose activation scales come from `calibration` (onnxruntime's quantize_static)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Rows(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration)

        def get_next(self):
            return next(self.batches, None)

    # the symbolic shape pass cannot follow the dynamo graph's shapes ("Incomplete symbolic shape inference")
    quant_pre_process(str(base), str(base.with_name("pre.onnx")), skip_symbolic_shape=True)
    quantize_static(str(base.with_name("pre.onnx")), str(base.with_name("static.int8.onnx")), Rows(),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["MatMul", "Gemm"])
    return base.with_name("static.int8.onnx")


def timed(path: Path, batches: list[dict]) -> tuple[float, list]:
    session = onnx_runtime.session(path, threads=2)  # as taskcli opens its sessions
    names = {i.name for i in session.get_inputs()}
    session.run(None, {k: v for k, v in batches[0].items() if k in names})  # warm-up
    start = time.perf_counter()
    outs = [session.run(None, {k: v for k, v in b.items() if k in names})[0] for b in batches]
    return time.perf_counter() - start, outs


def torch_timed(folder: Path, batches: list[dict]) -> tuple[float, list]:
    import torch
    from transformers import AutoModelForTokenClassification

    torch.set_num_threads(2)
    mdl = AutoModelForTokenClassification.from_pretrained(folder).eval()
    with torch.inference_mode():
        mdl(**{k: torch.from_numpy(v) for k, v in batches[0].items()})
        start = time.perf_counter()
        outs = [mdl(**{k: torch.from_numpy(v) for k, v in b.items()}).logits.numpy() for b in batches]
    return time.perf_counter() - start, outs


def row(label: str, file: Path, batches: list[dict], reference: float, ref: list) -> None:
    """One table row: the graph's seconds, its speed-up and how far its logits are from torch's."""
    import numpy as np

    seconds, outs = timed(file, batches)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ref, outs))
    agree = np.mean([(a.argmax(-1) == b.argmax(-1)).mean() for a, b in zip(ref, outs)])
    print(f"{label:<26}{seconds:>9.2f}{reference / seconds:>9.2f}x{diff:>12.1e}{agree:>15.4f}", flush=True)


if __name__ == "__main__":
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="onnx-fusion-") as tmp:
        tmp = Path(tmp)
        graphs = fused(export(tmp))
        texts = [" ".join(r["tokens"]) for r in ner_corpus.rows(1000, held_out=True, seed=2)]
        batches = batches_of(tmp / "out", texts)
        print(f"{len(texts)} sentences, {sum(int(b['attention_mask'].sum()) for b in batches):,} tokens "
              f"({sum(b['input_ids'].size for b in batches):,} padded), load average {os.getloadavg()[0]:.1f}")
        reference, ref = torch_timed(tmp / "torch", batches)
        print(f"{'graph':<26}{'seconds':>9}{'vs torch':>10}{'max |diff|':>12}{'argmax agrees':>15}")
        print(f"{'torch fp32':<26}{reference:>9.2f}{1:>9.2f}x")
        for name, path in graphs.items():
            int8 = path.with_name(path.stem + ".int8.onnx")
            quantize_dynamic(str(path), str(int8), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
            row(f"{name} fp32", path, batches, reference, ref)
            row(f"{name} int8", int8, batches, reference, ref)
        calibration = batches_of(tmp / "out", [" ".join(r["tokens"]) for r in ner_corpus.rows(128, True, seed=7)])
        row("as exported static int8", static_int8(graphs["as exported"], calibration), batches, reference, ref)
