"""`infer.compile: true` (`--set infer.compile=true`, infer and serve): the PyTorch model's forward compiled by
torch.compile (inductor, weights frozen as constants), for long infer runs and servers.

Why opt-in: inductor fuses the small ops around the matrix products (softmax, GELU, LayerNorm, residual adds), which
eager PyTorch runs as separate passes over memory. On the 2-core Genoa (bench/bench_compiled_forward.py, a
DistilBERT-base-size NER model, the batches `taskcli infer ner FILE` runs over 1,000 sentences) the forwards took
84-95 % of the fp32 GEMM peak against eager's 77-84 %, but the first call compiles for 15-27 s in every process
(freezing re-runs most of the pipeline: inductor's caches save little), so compiling paid after 10,000-43,000
sentences in three runs. Not measured on a GPU (none was lent).
Single-forward tasks only: a generating model's forward runs once per new token on a growing cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from taskcli.errors import TaskcliError

# inductor's C++ compiler on Linux (torch._inductor.config.cpp.cxx): $CXX, else g++ (clang++ on macOS)
_CXX_DEFAULT = "clang++" if sys.platform == "darwin" else "g++"


def check(run, model: str | None) -> None:
    """Refuse `infer.compile` in one line before anything loads, where it cannot run."""
    from taskcli.generation import GenerationOptions
    from taskcli.onnx_runtime import is_exported

    # text-generation, summarization and translation take only the generation options: their models always
    # generate. Speech recognition's models generate with Whisper only: the loaded model decides (compile_model).
    if run.task.infer_options is GenerationOptions:
        raise TaskcliError(f"infer.compile compiles single-forward models; {run.task.name} generates token by token "
                           "(a forward per new token)", "leave infer.compile off for this task")
    if model and is_exported(model):
        raise TaskcliError(f"infer.compile compiles PyTorch models; {model} holds an exported (ONNX) model",
                           "leave infer.compile off, or give the PyTorch model's folder")
    compiler = os.environ.get("CXX") or _CXX_DEFAULT
    if not _works(compiler):
        raise TaskcliError(f"infer.compile needs a C++ compiler for torch.compile's kernels and {compiler} was not "
                           "found or does not run", "install one (e.g. apt install g++), set CXX to it, or leave "
                           "infer.compile off")


def _works(compiler: str) -> bool:
    """inductor's own test of a compiler (cpp_builder.cpp_compiler_search): `CXX --version` runs."""
    path = shutil.which(compiler)
    if path is None:
        return False
    try:
        return subprocess.run([path, "--version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def compile_model(mdl) -> None:
    """Compile `mdl`'s forward in place; the first batches compile it (once per new rank of shapes, then every
    batch and sequence length reuse it)."""
    import torch._inductor.config as inductor

    if mdl.can_generate():  # a task that may or may not generate (speech recognition: CTC or Whisper)
        raise TaskcliError(f"infer.compile compiles single-forward models; {type(mdl).__name__} generates token by "
                           "token (a forward per new token)", "leave infer.compile off for this model")
    print("infer.compile: compiling the forward (torch.compile, inductor); the first batches wait for it, tens of "
          "seconds on a small CPU", file=sys.stderr)
    # weights as constants: oneDNN-packed, bias and GELU folded into the products. Process-wide, and this process
    # only runs inference: frozen graphs need no gradients.
    inductor.freezing = True
    # Text batches change length every batch: every dimension dynamic from the start, one compilation. Image processors
    # give one size (DETR's a few): a static graph first, then torch's automatic dynamic for the dimensions that
    # change. Marking an image's dimensions dynamic up front fails in inductor for SegFormer and GLPN (torch 2.13:
    # "ValueRangeError: Invalid ranges [0:-1]").
    mdl.compile(dynamic=None if mdl.main_input_name == "pixel_values" else True)
