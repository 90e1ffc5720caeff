"""The GPU checks of issue 11, where a CUDA GPU is (the device tool's H200; on a machine without one this prints so and
exits 0): `taskcli finetune ner` of a BERT-base-size model in fp32, bf16 and fp16, each its samples/s, tokens/s and
MFU, and the final entity F1 of bf16 and fp16 against fp32's; then `taskcli benchmark ner` of the fp32 model in the
three precisions on the GPU, and a one-process FSDP smoke run under torchrun.

The model is bench_ner_infer.build_model's DistilBERT-architecture NER model with 12 layers: BERT-base's shape (dim
768, 12 heads, FFN 3,072, a 30,522-row embedding; no token-type embedding), random init, trained from scratch on
bench/ner_corpus.py's synthetic corpus (as bench_export, which reaches F1 0.90 with 6 layers): no Hub here.
MFU counts the useful work only: per training row of s real tokens, 3 x (2 x linear weights x s + 4 x layers x dim x
s^2) FLOPs (forward + backward; attention's QK^T and AV; embeddings are lookups), times rows per second from the
Trainer's train_runtime (which includes the data loading, the optimizer and the first steps' warm-up); padding to
the batch's longest row is waste, not work. The peak is measured here (torch.matmul, 8192^3, the mean of 10 after 3
warm-ups) and the datasheet's dense figure is printed beside it. Every figure is also written to --out as JSON.

    python bench/bench_gpu.py [--steps 600] [--batch-size 32] [--lr 2e-4] [--big-batch 256] [--out DIR]
"""

import argparse
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
from bench_ner_infer import build_model  # noqa: E402

PRECISIONS = ("no", "bf16", "fp16")
TOLERANCE = 0.02  # entity F1, absolute: three runs that round differently from the first step on
SPEC = {"bf16": 989.4e12, "fp16": 989.4e12, "no": 66.9e12}  # H100/H200 SXM datasheet, dense (fp32 without TF32)


def matmul_peak(dtype, n: int = 8192, repeats: int = 10) -> float:
    """FLOP/s of one n^3 torch.matmul in dtype, the mean of `repeats` after 3 warm-ups (fp32: TF32 off, torch's
    default, as the Trainer runs it)."""
    import torch

    a, b = torch.randn(n, n, device="cuda", dtype=dtype), torch.randn(n, n, device="cuda", dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n ** 3 * repeats / (time.perf_counter() - start)


def work(base: Path, data: Path) -> dict:
    """FLOPs of one pass over the training split (forward + backward, real tokens), and its rows and tokens."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForTokenClassification.from_pretrained(base)
    import torch

    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    layers, dim = model.config.n_layers, model.config.dim
    lengths = [len(tok(json.loads(line)["tokens"], is_split_into_words=True, truncation=True,
                       max_length=512)["input_ids"]) for line in (data / "train.jsonl").open()]
    flops = sum(3 * (2 * linear * s + 4 * layers * dim * s * s) for s in lengths)
    return {"rows": len(lengths), "tokens": sum(lengths), "flops": flops, "linear_params": linear,
            "params": sum(p.numel() for p in model.parameters())}


def taskcli(*args: str, timeout: int) -> tuple[dict | None, float, str]:
    """One whole `taskcli ... --json` process: its report (None when it failed), seconds, the end of its stderr."""
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "taskcli", *args, "--json"], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, time.perf_counter() - start, f"timed out after {timeout} s"
    took = time.perf_counter() - start
    if done.returncode not in (0, 3):
        return None, took, done.stderr.strip()[-1500:]
    return json.loads(done.stdout), took, done.stderr.strip()[-300:]


def finetune(tmp: Path, precision: str, steps: int, batch: int, lr: float, timeout: int) -> tuple[dict | None, float,
                                                                                                    str]:
    return taskcli("finetune", "ner", "--model", str(tmp / "base"), "--data", str(tmp / "data"), "-o",
                   str(tmp / f"out-{precision}-{batch}"), "--set", f"train.precision={precision}", "--set",
                   f"train.max_steps={steps}", "--set", f"train.batch_size={batch}", "--set",
                   f"train.learning_rate={lr}", "--set", "train.warmup_ratio=0.1", "--set", "train.seed=0", "--set",
                   "train.eval_strategy=no", "--set", "train.trainer_args.save_strategy=no", "--set",
                   "train.trainer_args.train_sampling_strategy=group_by_length", "--set", "train.logging_steps=50",
                   timeout=timeout)


def main(args: argparse.Namespace) -> None:
    import torch

    if not torch.cuda.is_available() and not args.dry_run:
        print("bench_gpu: no CUDA GPU here: skipped (run it where one is)")
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    figures: dict = {"gpu": gpu, "torch": torch.__version__}

    def save():
        (out / "gpu.json").write_text(json.dumps(figures, indent=1))

    if args.dry_run:  # the script's own check on a CPU: fp32 only, tiny sizes, no peak
        peak, precisions = {"no": 1.0}, ("no",)
    else:
        peak, precisions = {"bf16": matmul_peak(torch.bfloat16), "fp16": matmul_peak(torch.float16),
                            "no": matmul_peak(torch.float32, repeats=3)}, PRECISIONS
    figures["matmul_peak_tflops"] = {k: round(v / 1e12, 1) for k, v in peak.items()}
    print(f"{figures['gpu']}, torch {torch.__version__}; torch.matmul 8192^3 TFLOP/s: "
          + ", ".join(f"{'fp32' if k == 'no' else k} {v / 1e12:.1f} (datasheet {SPEC[k] / 1e12:.0f})"
                      for k, v in peak.items()), flush=True)
    save()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        os.environ["HF_DATASETS_CACHE"] = str(tmp / "datasets-cache")
        ner_corpus.write(tmp / "data", n_train=4000, n_eval=500)
        build_model(str(tmp / "base"), ner_corpus.vocab_texts(), pieces=tuple(ner_corpus.name_pieces()),
                    embedding_std=1.0, sinusoidal_pos_embds=True, dropout=0.0, attention_dropout=0.0,
                    n_layers=args.layers)
        one_pass = work(tmp / "base", tmp / "data")
        figures["model"] = {k: one_pass[k] for k in ("params", "linear_params")}
        print(f"model: {one_pass['params'] / 1e6:.1f} M parameters ({one_pass['linear_params'] / 1e6:.1f} M in linear "
              f"layers); training split {one_pass['rows']} rows, {one_pass['tokens']} tokens "
              f"({one_pass['tokens'] / one_pass['rows']:.1f} a row), {one_pass['flops'] / 1e12:.2f} TFLOP a pass",
              flush=True)
        runs = [(p, args.batch_size, args.steps) for p in precisions]
        runs += [] if args.dry_run else [("bf16", args.big_batch, args.big_steps)]
        figures["finetune"] = []
        for precision, batch, steps in runs:
            report, took, err = finetune(tmp, precision, steps, batch, args.lr, args.timeout)
            if report is None:
                print(f"finetune {precision} batch {batch}: FAILED after {took:.0f} s: {err}", flush=True)
                figures["finetune"].append({"precision": precision, "batch": batch, "error": err})
                save()
                continue
            rows_s = steps * batch / report["train_runtime_s"]
            flops_s = rows_s * one_pass["flops"] / one_pass["rows"]
            tokens_s = rows_s * one_pass["tokens"] / one_pass["rows"]
            row = {"precision": precision, "batch": batch, "steps": steps, "f1": report["metrics"]["f1"],
                   "train_runtime_s": report["train_runtime_s"], "process_s": round(took, 1),
                   "samples_per_s": round(rows_s, 1), "tokens_per_s": round(tokens_s),
                   "model_tflops": round(flops_s / 1e12, 2), "mfu_measured_peak": round(flops_s / peak[precision], 4),
                   "mfu_datasheet": round(flops_s / SPEC[precision], 4), "train_loss": report["train_loss"]}
            figures["finetune"].append(row)
            save()
            print(f"finetune {'fp32' if precision == 'no' else precision} batch {batch}, {steps} steps: entity F1 "
                  f"{row['f1']:.4f}; {row['samples_per_s']} samples/s, {row['tokens_per_s']} tokens/s, "
                  f"{row['model_tflops']} TFLOP/s = MFU {row['mfu_measured_peak']:.1%} of the measured peak, "
                  f"{row['mfu_datasheet']:.1%} of the datasheet's; train {report['train_runtime_s']:.1f} s, "
                  f"whole process {took:.0f} s", flush=True)
        scored = {r["precision"]: r["f1"] for r in figures["finetune"] if "f1" in r and r["batch"] == args.batch_size}
        if "no" in scored:
            for p in ("bf16", "fp16"):
                if p in scored:
                    moved = abs(scored[p] - scored["no"])
                    print(f"parity {p} vs fp32: entity F1 {scored[p]:.4f} vs {scored['no']:.4f}, moved {moved:.4f} "
                          f"(tolerance {TOLERANCE}) {'PASS' if moved <= TOLERANCE else 'FAIL'}", flush=True)
            figures["parity"] = {p: round(scored[p] - scored["no"], 4) for p in scored if p != "no"}
            save()
            model = tmp / f"out-no-{args.batch_size}"
            report, took, err = taskcli("benchmark", "ner", "--model", str(model), "--formats", "torch",
                                        "--precision", ",".join("fp32" if p == "no" else p for p in precisions),
                                        "--data", str(tmp / "data" / "validation.jsonl"), "--tolerance", str(TOLERANCE),
                                        timeout=args.timeout)
            figures["benchmark"] = report if report is not None else {"error": err}
            save()
            print(f"benchmark ner (the fp32 model, 500 rows, whole process {took:.0f} s):", flush=True)
            print(json.dumps(report, indent=1) if report is not None else f"FAILED: {err}", flush=True)
        # FSDP through Accelerate needs a distributed launch; one process on one GPU shows the config runs on CUDA
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "-m", "taskcli",
                               "finetune", "ner", "--smoke", "-o", str(tmp / "fsdp"), "--set", "train.fsdp=true",
                               "--set", "train.max_steps=20", "--json"], capture_output=True, text=True,
                              timeout=args.timeout)
        fsdp = {"rc": done.returncode, "seconds": round(time.perf_counter() - start, 1),
                "errors": [line for line in done.stderr.splitlines() if "error" in line.lower()][:5]}
        if done.returncode == 0:
            fsdp["metrics"] = json.loads(done.stdout).get("metrics")
        figures["fsdp_one_gpu"] = fsdp
        save()
        print(f"fsdp, torchrun 1 process: rc {fsdp['rc']} in {fsdp['seconds']} s; {fsdp.get('metrics')}"
              + ("" if done.returncode == 0 else "\n" + "\n".join(fsdp["errors"])), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--big-batch", type=int, default=256)
    parser.add_argument("--big-steps", type=int, default=100)
    parser.add_argument("--timeout", type=int, default=240, help="seconds each taskcli process may take")
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--out", default="runs/bench-gpu")
    parser.add_argument("--dry-run", action="store_true", help="check the script on a CPU (fp32 only; use small "
                        "--layers/--steps)")
    main(parser.parse_args())
