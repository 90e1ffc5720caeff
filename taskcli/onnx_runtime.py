"""What running a `taskcli export` folder needs without torch: its manifest, an ONNX Runtime session, and a batch of
arrays fed to the graph. Both runtimes build on it: onnx_model.py (shaped like the PyTorch model, for the Trainer's
evaluation and infer) and onnx_lite.py (numpy in and out, for a one-line infer without torch or transformers).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

MANIFEST = "taskcli-export.json"  # what export wrote (not transformers.exporters' export.json)
ONNX_EXTRA = "pip install 'taskcli[onnx]'"


def is_exported(source) -> bool:
    return (Path(source) / MANIFEST).is_file()


def manifest(folder) -> dict:
    return json.loads((Path(folder) / MANIFEST).read_text())


def torch_threads() -> int:
    """The intra-op thread count torch uses, without importing it: torch's own count once it is loaded, else
    OMP_NUM_THREADS, else 0 (ONNX Runtime's default: a thread per physical core, which is torch's default too)."""
    if "torch" in sys.modules:
        return sys.modules["torch"].get_num_threads()
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() else 0


# Graph fusions ONNX Runtime applies whose CPU kernel is slower than the ops it replaces. SkipLayerNormalization (a
# residual Add and its LayerNorm in one op), onnxruntime 1.32 on the 2-core Genoa: 4.0 ms against 0.97 ms for the Add
# and LayerNormalization it fuses ([32, 63, 768], 2 threads); an exported DistilBERT-base NER model's int8 forwards
# 7.52 -> 6.9 s and fp32 21.96 -> 21.30 s without it (400 sentences, the same sessions interleaved).
SLOW_FUSIONS = ["SkipLayerNormFusion"]


def session(path: Path, threads: int | None = None):
    """An ONNX Runtime CPU session using as many threads as torch would (fair side-by-side timings), without the
    SLOW_FUSIONS."""
    from taskcli.errors import TaskcliError

    try:
        import onnxruntime as ort
    except ImportError:
        raise TaskcliError("running an exported (ONNX) model needs onnxruntime, which is not installed",
                           ONNX_EXTRA) from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch_threads()
    options.log_severity_level = 3  # its warnings about unused initializers are not the user's to act on
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                disabled_optimizers=SLOW_FUSIONS)


_NUMPY_TYPES = {"tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(float)": "float32",
                "tensor(float16)": "float16", "tensor(bool)": "bool"}


class Graph:
    """One ONNX graph of an exported folder: its session, input names and types, output names."""

    def __init__(self, folder, file: str | None = None):
        folder = Path(folder)
        self.folder, self.meta = folder, manifest(folder)
        self.file = file or self.meta["model_file"]
        self.session = session(folder / self.file)
        self.input_names = [i.name for i in self.session.get_inputs()]
        # the dtype each input was exported with: infer's collate may give int32 where eval's gave int64 (audio masks)
        self.input_types = {i.name: _NUMPY_TYPES.get(i.type) for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run_arrays(self, arrays: dict) -> dict:
        """{output name: numpy array} of a batch of numpy arrays; inputs the graph does not take (labels...) are
        left out, a missing one is one line."""
        missing = [n for n in self.input_names if n not in arrays]
        if missing:
            from taskcli.errors import TaskcliError

            raise TaskcliError(f"the exported model in {self.folder} needs input {missing[0]}, which the batch lacks",
                               "export the model again with this taskcli version")
        feeds = {n: _as_type(arrays[n], self.input_types[n]) for n in self.input_names}
        return dict(zip(self.output_names, self.session.run(None, feeds)))


def _as_type(array, dtype: str | None):
    return array if dtype is None or array.dtype == dtype else array.astype(dtype)
