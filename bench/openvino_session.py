"""OpenVINO in place of ONNX Runtime under taskcli's exported-model path, for bench_fp32_ceiling only: does another fp32
runtime reach the forward speed issue 20's "onnx fp32 >= 1.3x" needs? taskcli itself runs exported graphs in ONNX
Runtime; this adapter gives an OpenVINO compiled model the three session calls taskcli's `onnx_runtime.Graph` makes
(get_inputs, get_outputs, run), so the same tokenizing, batching and decoding run around it.

    python bench/openvino_session.py infer ner --model EXPORTED FILE --json   # a whole taskcli process, OpenVINO's

Needs `pip install openvino` (not a dependency of taskcli or of its bench extra: bench_fp32_ceiling skips its row).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

# OpenVINO's element type names -> the ONNX Runtime type strings onnx_runtime.Graph maps to numpy dtypes
_TYPES = {"i64": "tensor(int64)", "i32": "tensor(int32)", "f32": "tensor(float)", "f16": "tensor(float16)",
          "boolean": "tensor(bool)"}


def available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


class Session:
    """An OpenVINO CPU compiled model answering the ONNX Runtime session calls taskcli makes. fp32 is asked for
    explicitly: on CPUs with bf16 units (this Genoa) OpenVINO's default inference precision is bf16."""

    def __init__(self, path, threads: int | None = None):
        import openvino as ov

        from taskcli.onnx_runtime import torch_threads

        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        threads = threads or torch_threads()  # 0: OpenVINO's own default
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def get_inputs(self):
        return [SimpleNamespace(name=port.any_name, type=_TYPES.get(port.element_type.get_type_name()))
                for port in self.compiled.inputs]

    def get_outputs(self):
        return [SimpleNamespace(name=port.any_name) for port in self.compiled.outputs]

    def run(self, names, feeds: dict) -> list:
        results = self.request.infer(feeds)
        return [results[port] for port in self.compiled.outputs]


def use() -> None:
    """Make taskcli's exported-model path open its graphs with OpenVINO (Graph looks `session` up when it opens one)."""
    from taskcli import onnx_runtime

    onnx_runtime.session = lambda path, threads=None: Session(path, threads)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    use()
    from taskcli.cli import run

    sys.argv[0] = "taskcli"
    run()
