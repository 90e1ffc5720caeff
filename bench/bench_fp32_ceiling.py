"""How much faster than taskcli's PyTorch fp32 path any fp32 runtime could run `taskcli infer ner FILE` here (issue
20's "onnx fp32 >= 1.3x" beside its "PyTorch compute >= 85 % of the GEMM peak").

The model and sentences are bench_export's (a DistilBERT-base-size NER model over its 1,000 synthetic sentences,
batch 32), with random weights: an fp32 forward costs the same whatever the weights. One run measures, side by side:
- whole `taskcli infer` processes with the PyTorch model and with its ONNX fp32 export (`taskcli export`),
  interleaved, and a one-line infer with each (start-up);
- the seconds inside the forwards of an in-process run of each (the torch model's forward calls; ONNX Runtime's
  session runs) and the run's useful work (bench_gemm's count: linear layers and attention's two products, real
  tokens);
- the machine's fp32 GEMM peak (bench_gemm: the better of torch.mm and oneDNN on square matrices).
The ceiling is the ONNX process with its forwards replaced by a perfect runtime doing all the useful work at the
GEMM peak: T_torch / (T_onnx - forwards_onnx + work / peak). Tokenizing, batching, decoding and writing stay
taskcli's; the start-up stays the torch-free path's. It also prints the share of the peak a runtime's whole forward
would need for the target (1.3x): the PyTorch path's products already run close to the peak.
Where OpenVINO is installed (`pip install openvino`; not a taskcli dependency), a third row runs the same ONNX graph
in OpenVINO's fp32 CPU runtime under taskcli's exported-model path (bench/openvino_session.py): another fp32 runtime,
measured rather than guessed.

    .venv/bin/python bench/bench_fp32_ceiling.py [--rounds 2]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import export_table as table  # noqa: E402
import ner_corpus  # noqa: E402
import openvino_session  # noqa: E402
from bench_gemm import Meter, cli_run, gemm_peak  # noqa: E402
from bench_ner_infer import build_model  # noqa: E402

TARGET = 1.3
NAMES = {"torch": "torch fp32", "onnx": "onnx fp32 (ONNX Runtime)", "openvino": "onnx fp32 (OpenVINO)"}
# each format's folder under the run's temp dir, and the script its whole processes run (OpenVINO: taskcli's CLI with
# onnx_runtime.session swapped)
FOLDERS = {"torch": "torch", "onnx": "onnx", "openvino": "onnx"}
ENTRY = {"openvino": [str(Path(__file__).resolve().parent / "openvino_session.py")]}


def forwards(fmt: str, args: list[str], out_path: str) -> dict:
    """Seconds inside the forwards of `taskcli ARGS` run in this process, and the useful work (torch: the meter's
    count; ONNX Runtime's session runs are timed as a whole)."""
    if fmt == "torch":
        meter = Meter()
        cli_run(args, meter, out_path)
        return {"seconds": meter.seconds, "work": meter.flops("real"), "tokens": meter.tokens["real"]}
    if fmt == "openvino":
        openvino_session.use()
    from taskcli.onnx_runtime import Graph

    original, spent = Graph.run_arrays, [0.0]

    def timed(self, arrays):
        start = time.perf_counter()
        try:
            return original(self, arrays)
        finally:
            spent[0] += time.perf_counter() - start

    Graph.run_arrays = timed
    cli_run(args, None, out_path)
    return {"seconds": spent[0]}


def metered(fmt: str, infer: list[str], tmp: Path) -> dict:
    """forwards() in a process of its own: one run's threads do not slow the next (ONNX Runtime measured after
    PyTorch in one process ran slower than its whole process)."""
    done = subprocess.run([sys.executable, __file__, "--forwards", fmt, json.dumps(infer), str(tmp)], check=True,
                          capture_output=True, text=True,
                          env={**os.environ, "HF_DATASETS_CACHE": str(tmp / "datasets")})
    return json.loads(done.stdout.splitlines()[-1])


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-fp32-ceiling-") as tmp:
        tmp = Path(tmp)
        env = {"HF_DATASETS_CACHE": str(tmp / "datasets")}
        build_model(str(tmp / "torch"), ner_corpus.vocab_texts(), pieces=tuple(ner_corpus.name_pieces()),
                    sinusoidal_pos_embds=True)
        rows = ner_corpus.rows(1000, held_out=False, seed=2)
        texts = [" ".join(r["tokens"]) for r in rows]
        (tmp / "sentences.txt").write_text("\n".join(texts) + "\n")
        (tmp / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:32]))
        # random weights have no metric to keep: the gate is opened (--tolerance 1); the fp32 graph is what is timed
        table.taskcli("export", "ner", "--model", str(tmp / "torch"), "--data", str(tmp / "rows.jsonl"),
                      "--tolerance", "1", "-o", str(tmp / "onnx"), env=env)
        infer = ["infer", "ner", str(tmp / "sentences.txt"), "--json", "--no-progress", "--batch-size", "32"]
        print(f"1,000 NER sentences ({sum(len(t.split()) for t in texts):,} words, batch 32), DistilBERT-base size, "
              f"{os.cpu_count()} CPUs, load average before {table.load()}", flush=True)

        whole = {"torch": [], "onnx": []}
        if openvino_session.available():
            whole["openvino"] = []
        else:
            print("OpenVINO is not installed: its row is left out (pip install openvino)")

        def timed(fmt: str, *rest: str) -> float:
            return table.taskcli(*rest, "--model", str(tmp / FOLDERS[fmt]), env=env, entry=ENTRY.get(fmt))

        for _ in range(args.rounds):  # interleaved: the machine's speed drifts
            for fmt in whole:
                whole[fmt].append(timed(fmt, *infer))
        one_line = {fmt: statistics.median(timed(fmt, "infer", "ner", texts[0], "--json") for _ in range(3))
                    for fmt in whole}
        inside = {fmt: metered(fmt, [*infer, "--model", str(tmp / FOLDERS[fmt])], tmp) for fmt in whole}
        peak, where = gemm_peak()
        work = inside["torch"]["work"]

        t_torch, t_onnx = (statistics.median(whole[fmt]) for fmt in ("torch", "onnx"))
        print(f"| whole process (median of {args.rounds}) | seconds | one-line infer | inside the forwards "
              f"(in process) | useful GFLOP/s there | of the GEMM peak |")
        print("|---|---|---|---|---|---|")
        for fmt in whole:
            t, fwd = statistics.median(whole[fmt]), inside[fmt]["seconds"]
            print(f"| {NAMES[fmt]} | {t:.1f} s | {one_line[fmt]:.2f} s | {fwd:.2f} s | {work / fwd / 1e9:.1f} | "
                  f"{100 * work / fwd / 1e9 / peak:.1f} % |")
        perfect = work / (peak * 1e9)
        onnx_forwards = inside["onnx"]["seconds"]
        best = t_onnx - onnx_forwards + perfect
        print(f"useful work {work / 1e9:,.0f} GFLOP ({inside['torch']['tokens']:,} tokens); fp32 GEMM peak {peak:.1f} "
              f"GFLOP/s ({where}): a perfect runtime's forwards {perfect:.2f} s")
        for fmt in [f for f in whole if f != "torch"]:
            ratio = t_torch / statistics.median(whole[fmt])
            print(f"{NAMES[fmt]} vs torch fp32, whole process: {ratio:.2f}x measured (target >= {TARGET}x) "
                  f"{'OK' if ratio >= TARGET else 'MISS'}")
        print(f"ceiling for any fp32 runtime in taskcli's ONNX path: {t_onnx:.1f} - {onnx_forwards:.1f} + "
              f"{perfect:.1f} = {best:.1f} s: {t_torch / best:.2f}x torch fp32   load average after {table.load()}")
        needed = t_torch / TARGET - (t_onnx - onnx_forwards)  # forward seconds that would make the target
        if needed > 0:
            print(f"{TARGET}x needs the forwards in {needed:.1f} s: {work / needed / 1e9:.1f} useful GFLOP/s, "
                  f"{100 * work / needed / 1e9 / peak:.1f} % of the GEMM peak for the whole forward (attention, GELU "
                  f"and LayerNorm included)")
        else:
            print(f"{TARGET}x is out of reach even with no forward at all")

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="interleaved whole-process runs per format")
    parser.add_argument("--forwards", nargs=3, metavar=("FMT", "ARGS", "TMP"), help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.forwards:  # metered(): one in-process run, its figures as the last line of stdout
        fmt, infer, tmp = parsed.forwards
        print(json.dumps(forwards(fmt, json.loads(infer), str(Path(tmp) / f"{fmt}.jsonl"))))
    else:
        main(parsed)
