"""What fusing the forward's small ops would buy taskcli's PyTorch path (issue 20's "compute >= 85 % of the GEMM peak"):
torch.compile (inductor, weights frozen) against infer's eager forward (oneDNN linear layers: taskcli/cpu_linear.py)
on bench_gemm's model and sentences, and what the compilation costs, cold (an empty inductor cache) and warm (the
cache a first run left); then whole `taskcli infer` processes with and without `--set infer.compile=true`.

Useful work is bench_gemm's count (every linear layer, attention's two products, real tokens), measured on the eager
model; both forwards run the batches `taskcli infer ner FILE --json` runs (captured from the CLI), in a process each;
the GEMM peak is bench_gemm's. Eager ops around the products (attention's softmax, GELU, LayerNorm, residual adds)
are separate passes over memory; inductor fuses them, which is the gap between the rows.

    .venv/bin/python bench/bench_compiled_forward.py
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

def batches(folder: str) -> list[dict]:
    """The batches `taskcli infer ner FILE --json` runs the model on (its own length-sorted cuts), captured from an
    in-process run of the CLI."""
    from bench_gemm import cli_run
    from bench_ner_infer import sentences

    captured = []

    class Capture:
        def attach(self, model):
            model.register_forward_pre_hook(lambda _m, _a, kwargs: captured.append(
                {k: v.clone() for k, v in kwargs.items() if k in ("input_ids", "attention_mask")}), with_kwargs=True)

    path = os.path.join(folder, "sentences.txt")
    Path(path).write_text("\n".join(sentences(1000)) + "\n", encoding="utf-8")
    cli_run(["infer", "ner", path, "--model", folder, "--json", "--no-progress"], Capture(),
            os.path.join(folder, "rows.jsonl"))
    return captured


def run(folder: str, compiled: bool) -> dict:
    """One process's figures: the first call (compilation included), then two timed passes over every batch."""
    import torch
    from transformers import AutoModelForTokenClassification

    from bench_gemm import Meter
    from taskcli import cpu_linear

    data = torch.load(os.path.join(folder, "batches.pt"))
    model = AutoModelForTokenClassification.from_pretrained(folder).eval()
    figures = {}
    if compiled:  # what `infer.compile: true` does
        from taskcli import compiled as compiled_mod

        compiled_mod.compile_model(model)
    else:
        cpu_linear.use_for(model)  # infer's eager path
    with torch.inference_mode():
        start = time.perf_counter()
        model(**data[0])
        figures["first_call"] = time.perf_counter() - start
        if not compiled:  # the useful work of all batches, counted once
            meter = Meter()
            hooks = meter.attach(model)
            for batch in data:
                model(**batch)
            figures["work"] = meter.flops("real")
            for hook in hooks:  # the timed passes below run without them
                hook.remove()
        passes = []
        for _ in range(2):
            start = time.perf_counter()
            for batch in data:
                model(**batch)
            passes.append(time.perf_counter() - start)
    figures["seconds"] = min(passes)
    return figures


def in_process(folder: str, compiled: bool, cache: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--one", folder, str(int(compiled))], check=True,
                          capture_output=True, text=True, env={**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)})
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    from bench_gemm import gemm_peak, load
    from bench_ner_infer import build_model, sentences

    with tempfile.TemporaryDirectory(prefix="bench-compiled-") as tmp:
        build_model(tmp, sentences(1000))
        import torch

        torch.save(batches(tmp), os.path.join(tmp, "batches.pt"))
        cache = Path(tmp) / "inductor"
        eager = in_process(tmp, False, cache)
        cold = in_process(tmp, True, cache)
        warm = in_process(tmp, True, cache)
        peak, where = gemm_peak()
        work = eager["work"]
        print(f"1,000 sentences (bench_gemm's), infer's batches, DistilBERT-base size; useful work "
              f"{work / 1e9:,.0f} GFLOP; fp32 GEMM peak {peak:.1f} GFLOP/s ({where})   {load()}")
        print("| forward | first call | all batches (best of 2) | useful GFLOP/s | of the GEMM peak |")
        print("|---|---|---|---|---|")
        for name, f in (("eager (infer's)", eager), ("torch.compile, cold cache", cold),
                        ("torch.compile, warm cache", warm)):
            rate = work / f["seconds"] / 1e9
            print(f"| {name} | {f['first_call']:.1f} s | {f['seconds']:.2f} s | {rate:.1f} | "
                  f"{100 * rate / peak:.1f} % |")
        saved = eager["seconds"] - warm["seconds"]
        cost = warm["first_call"] - eager["first_call"]
        if saved > 0:
            print(f"compiling saves {saved:.2f} s per 1,000 sentences and costs {cost:.1f} s even with a warm cache: "
                  f"it pays after ~{1000 * cost / saved:,.0f} sentences")
        else:
            print(f"compiling saves nothing here ({saved:+.2f} s per 1,000 sentences)")
        whole_processes(tmp)


def whole_processes(folder: str) -> None:
    """Whole `taskcli infer ner FILE --json` processes over the same 1,000 sentences, eager and with
    `--set infer.compile=true` (an empty inductor cache, then the one it left), interleaved with eager runs."""
    import export_table as table

    infer = ["infer", "ner", os.path.join(folder, "sentences.txt"), "--model", folder, "--json", "--no-progress"]
    cache = {"TORCHINDUCTOR_CACHE_DIR": os.path.join(folder, "inductor-whole")}
    eager = [table.taskcli(*infer)]
    cold = table.taskcli(*infer, "--set", "infer.compile=true", env=cache)
    eager.append(table.taskcli(*infer))
    warm = table.taskcli(*infer, "--set", "infer.compile=true", env=cache)
    print("| whole `taskcli infer ner FILE` (1,000 sentences) | seconds |")
    print("|---|---|")
    for name, t in (("eager (runs 1, 2)", " / ".join(f"{x:.1f}" for x in eager)),
                    ("infer.compile, cold cache", f"{cold:.1f}"), ("infer.compile, warm cache", f"{warm:.1f}")):
        print(f"| {name} | {t} |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(run(sys.argv[2], sys.argv[3] == "1")))
    else:
        main()
