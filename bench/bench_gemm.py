"""Issue 20's "machine's own limit" for the PyTorch path: how close `taskcli infer ner FILE --json` gets to this
machine's fp32 GEMM peak.

The model and inputs are bench_ner_infer's: a DistilBERT-base-size NER model (random weights), 1,000 sentences of
mixed length. Figures, each with the load average (the machine may be shared):
- the GEMM peak: square fp32 products at the thread count `taskcli infer` runs with (torch's default), the best of
  torch.mm (MKL) and oneDNN's linear, which infer's large fp32 layers use (taskcli/cpu_linear.py);
- the useful work: FLOPs of every linear layer and of attention's QK^T and AV from the real token counts, and the
  same from the padded batch shapes the inference loop ran (padding waste = padded / real - 1);
- the compute seconds: time inside the model's forward calls of an in-process run of the real CLI code path, so the
  peak and the seconds are measured in one process under the same load; achieved = useful / seconds / peak
  (target >= 85%);
- the start-up of a one-line infer on the same model (bench_startup's timer).
"""

import contextlib
import os
import statistics
import sys
import tempfile
import time

from bench_ner_infer import build_model, sentences
from bench_startup import TASKCLI, median_wall

os.environ.setdefault("HF_HUB_OFFLINE", "1")
TARGET = 0.85
PROBE = 2048  # the GEMM timed after each forward call (~17 GFLOP: a fraction of a second)


def load() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def gemm_rate(n: int, kernel: str = "mm"):
    """A function timing one n x n fp32 product, in GFLOP/s (its matrices made once, a warm-up call done): torch.mm
    (MKL), or "onednn", oneDNN's linear (`mkldnn._linear_pointwise`), which infer's large fp32 layers use on CPU
    (taskcli/cpu_linear.py)."""
    import torch

    a, b, out = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    if kernel == "onednn":
        def product():
            torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
    else:
        def product():
            torch.mm(a, b, out=out)
    product()  # warm-up: first-call packing and allocation

    def rate(cpu: list | None = None) -> float:
        start, start_cpu = time.perf_counter(), time.process_time()
        product()
        if cpu is not None:  # GFLOP and CPU seconds (all threads): a rate the machine's other jobs barely move
            cpu.append((2 * n ** 3 / 1e9, time.process_time() - start_cpu))
        return 2 * n ** 3 / (time.perf_counter() - start) / 1e9

    return rate


def kernels() -> tuple[str, ...]:
    from taskcli import cpu_linear

    return ("mm", "onednn") if cpu_linear.available() else ("mm",)


def gemm_peak(sizes=(1024, 2048, 3072, 4096), repeats: int = 3) -> tuple[float, str]:
    """(best GFLOP/s, where it came from): square fp32 products through each kernel, the best of a few calls each."""
    return max((max(rate() for _ in range(repeats)), f"{kernel} {n}^2") for kernel in kernels() for n, rate in
               ((n, gemm_rate(n, kernel)) for n in sizes))


class Meter:
    """Forward hooks on a loaded model: seconds inside its forward calls, and the FLOPs of its linear layers and
    attention matmuls, counted from the padded batch shapes and from the real (unpadded) tokens."""

    def __init__(self, probe=None):
        self.probe, self.probed = probe, []  # a GEMM timed after each forward call: the peak under the same load
        self.probe_cpu: list = []  # its (GFLOP, CPU seconds)
        self.seconds = 0.0
        self.cpu_seconds = 0.0  # the forward calls' CPU time, all threads
        self.calls = 0
        self.tokens = {"real": 0, "padded": 0}
        self.linear = {"real": 0.0, "padded": 0.0}
        self.attention = {"real": 0.0, "padded": 0.0}
        self._batch_linear = 0.0
        self._start = self._start_cpu = 0.0
        self._mask = None

    def attach(self, model) -> list:
        """Hook the meter onto `model`; returns the hooks' handles (`.remove()` each to detach it)."""
        import torch

        layers, hidden = model.config.num_hidden_layers, model.config.hidden_size
        handles = [module.register_forward_hook(self._on_linear) for module in model.modules()
                   if isinstance(module, torch.nn.Linear)]

        def before(_module, _args, kwargs):
            self._mask = kwargs["attention_mask"]
            self._batch_linear = 0.0
            self._start, self._start_cpu = time.perf_counter(), time.process_time()

        def after(_module, _args, _kwargs, _output):
            self.seconds += time.perf_counter() - self._start
            self.cpu_seconds += time.process_time() - self._start_cpu
            self._count(self._mask, layers, hidden)
            if self.probe is not None:
                self.probed.append(self.probe(self.probe_cpu))

        handles.append(model.register_forward_pre_hook(before, with_kwargs=True))
        handles.append(model.register_forward_hook(after, with_kwargs=True))
        return handles

    def _on_linear(self, module, args, _output) -> None:
        rows = args[0].numel() // module.in_features  # every position of the (padded) batch
        self._batch_linear += 2.0 * rows * module.in_features * module.out_features

    def _count(self, mask, layers: int, hidden: int) -> None:
        """One batch: a linear layer does the same work per position, so its real share is real/padded tokens;
        QK^T and AV cost 2*L*L*hidden FLOPs each per sequence and layer (all heads together)."""
        batch, length = mask.shape
        lengths = mask.sum(-1).double()
        real, padded = int(lengths.sum()), batch * length
        self.calls += 1
        self.tokens["real"] += real
        self.tokens["padded"] += padded
        self.linear["padded"] += self._batch_linear
        self.linear["real"] += self._batch_linear * real / padded
        self.attention["padded"] += 4.0 * batch * length ** 2 * hidden * layers
        self.attention["real"] += 4.0 * float((lengths ** 2).sum()) * hidden * layers

    def flops(self, kind: str) -> float:
        return self.linear[kind] + self.attention[kind]


def cli_run(args: list[str], meter: Meter | None, out_path: str) -> float:
    """Wall seconds of `taskcli ARGS` run in this process through the CLI's own code (stdout into out_path), with
    `meter` (if any) hooked onto the model the inference session gets."""
    from taskcli import inference
    from taskcli.cli import app

    original = inference.session

    def hooked(run, mdl, *rest, **kwargs):
        if meter is not None:
            meter.attach(mdl)
        return original(run, mdl, *rest, **kwargs)

    inference.session = hooked
    start = time.perf_counter()
    try:
        with open(out_path, "w", encoding="utf-8") as fh, contextlib.redirect_stdout(fh):
            app(args, standalone_mode=False)
    finally:
        inference.session = original
    return time.perf_counter() - start


def report(meter: Meter, peak: float, wall: float) -> None:
    """Print the work, the waste and the achieved fraction of a metered run, of the peak and of the GEMM rate
    measured between its forward calls (the same load)."""
    real, padded = meter.flops("real"), meter.flops("padded")
    achieved = real / meter.seconds / 1e9
    print(f"tokens: {meter.tokens['real']:,} real, {meter.tokens['padded']:,} in {meter.calls} padded batches")
    print(f"useful work: {real / 1e9:,.0f} GFLOP (linear {meter.linear['real'] / 1e9:,.0f}, attention "
          f"{meter.attention['real'] / 1e9:,.1f}: attention share {100 * meter.attention['real'] / real:.2f} %)")
    print(f"padded work: {padded / 1e9:,.0f} GFLOP   padding waste {100 * (padded / real - 1):.1f} %")
    print(f"compute (inside the model's forward): {meter.seconds:.2f} s of the run's {wall:.2f} s in process (GEMMs timed between "
          f"forward calls included)   "
          f"{padded / meter.seconds / 1e9:.1f} GFLOP/s executed, {achieved:.1f} GFLOP/s useful")
    for name, rate in (("the GEMM peak", peak), ("the GEMM rate between forward calls (mean)",
                                                  statistics.mean(meter.probed))):
        fraction = achieved / rate
        print(f"achieved fraction of {name} ({rate:.1f} GFLOP/s): {100 * fraction:.1f} %  (target >= "
              f"{100 * TARGET:.0f} %)  {'OK' if fraction >= TARGET else 'MISS'}   {load()}", flush=True)
    # per CPU second (all threads) rather than per wall second: time other jobs take from the cores counts in
    # neither (spin-waiting threads still count in both)
    gemm_cpu = sum(g for g, _ in meter.probe_cpu) / sum(c for _, c in meter.probe_cpu)
    print(f"per CPU second: forward {real / 1e9 / meter.cpu_seconds:.1f} useful GFLOP, the GEMM between calls "
          f"{gemm_cpu:.1f}: {100 * real / 1e9 / meter.cpu_seconds / gemm_cpu:.1f} %")


def main() -> None:
    import torch

    texts = sentences(1000)
    with tempfile.TemporaryDirectory() as tmp:
        build_model(tmp, texts)
        path = os.path.join(tmp, "sentences.txt")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("\n".join(texts) + "\n")
        before, where = gemm_peak()
        print(f"fp32 GEMM peak: {before:.1f} GFLOP/s ({where}, {torch.get_num_threads()} threads)   "
              f"{load()}", flush=True)
        meter = Meter(gemm_rate(PROBE, kernels()[-1]))  # the kernel the forward's large layers use
        wall = cli_run(["infer", "ner", path, "--model", tmp, "--json", "--no-progress"], meter,
                       os.path.join(tmp, "rows.jsonl"))
        after, _ = gemm_peak()
        peak = max(before, after, *meter.probed)  # the best seen: the fairer (higher) denominator
        print(f"fp32 GEMM peak after the run: {after:.1f} GFLOP/s, between its forward calls up to "
              f"{max(meter.probed):.1f}: the peak is {peak:.1f}   {load()}")
        report(meter, peak, wall)
        one_line = median_wall([TASKCLI, "infer", "ner", "--model", tmp, "Alice works in Paris .", "--json"], runs=3)
        print(f"start-up, one-line infer (whole process, this model): median {one_line:.2f} s (target <= 3 s)  "
              f"{'OK' if one_line <= 3 else 'MISS'}   {load()}")


if __name__ == "__main__":
    sys.exit(main())
